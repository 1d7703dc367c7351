//! How the shop runs, and the deterministic rules that decide which orders
//! fail: the same seed and order ids give the same declines and shipping
//! failures in every process and in both flow modes.

use std::time::Duration;

use crate::runtime::RegistrationConfig;

/// The salt of the payment decline rule.
const DECLINE_SALT: &str = "payments/decline";
/// The salt of the shipping failure rule.
const SHIPPING_SALT: &str = "shipping/unavailable";
/// The salt of the carrier choice.
const CARRIER_SALT: &str = "shipping/carrier";
/// The carriers a shipment goes with.
const CARRIERS: [&str; 3] = ["parcel-post", "speedy-freight", "cargo-bike"];

/// How the shop's five services run.
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// Seeds the failure rules: the same seed fails the same orders.
    pub seed: u64,
    /// The share of orders whose payment is declined, from 0 to 1.
    pub decline_rate: f64,
    /// How long the payment gateway takes to decide a new charge.
    pub payment_latency: Duration,
    /// The share of orders no shipment can be scheduled for, from 0 to 1.
    pub shipping_failure_rate: f64,
    /// Order id prefixes left out of the failure rules, so `chor-17` and
    /// `orch-17` (with prefixes `chor-` and `orch-`) are the same order to
    /// them and fail alike in both modes. Empty by default: the whole id counts.
    pub outcome_prefixes: Vec<String>,
    /// Stock put on the shelves when a product has no stock record yet
    /// (`(sku, units)`); a restarted inventory keeps what it has.
    pub initial_stock: Vec<(String, u64)>,
    /// Copies of each KV bucket and event stream on a cluster (1 on one
    /// server, 3 on a three-node cluster); existing ones with fewer are
    /// raised ([`crate::replicas`]).
    pub replicas: usize,
    /// Registration with the registry; `None` to run unregistered.
    pub registration: Option<RegistrationConfig>,
    /// The longest an operation's handler may run.
    pub handler_timeout: Duration,
    /// Deliveries of an event before it goes to the dead letters. Generous:
    /// a reaction that waits for another service's earlier event (payments
    /// waits for the order's `placed`, shipping for its `reserved`) is retried
    /// until that event has been handled.
    pub max_deliveries: u64,
    /// Consumers pulling from each durable consumer at once, per service instance.
    pub consumers_per_event: usize,
    /// How long shutdown waits for in-flight handlers.
    pub shutdown_timeout: Duration,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            decline_rate: 0.0,
            payment_latency: Duration::ZERO,
            shipping_failure_rate: 0.0,
            outcome_prefixes: Vec::new(),
            initial_stock: Vec::new(),
            replicas: 1,
            registration: Some(RegistrationConfig::default()),
            handler_timeout: Duration::from_secs(4),
            max_deliveries: 30,
            consumers_per_event: 4,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl ShopConfig {
    /// Whether payments declines `order_id`'s charge.
    pub fn declines(&self, order_id: &str) -> bool {
        self.decline_rate > 0.0 && self.unit(DECLINE_SALT, order_id) < self.decline_rate
    }

    /// Whether no shipment can be scheduled for `order_id`.
    pub fn shipping_fails(&self, order_id: &str) -> bool {
        self.shipping_failure_rate > 0.0 && self.unit(SHIPPING_SALT, order_id) < self.shipping_failure_rate
    }

    /// The carrier `order_id` ships with.
    pub fn carrier(&self, order_id: &str) -> &'static str {
        // The unit interval times three is below three; the cast only drops the fraction.
        let index = (self.unit(CARRIER_SALT, order_id) * CARRIERS.len() as f64) as usize;
        CARRIERS.get(index).copied().unwrap_or(CARRIERS[0])
    }

    /// The order id as the failure rules see it: without the first
    /// configured prefix it starts with.
    pub fn outcome_key<'a>(&self, order_id: &'a str) -> &'a str {
        self.outcome_prefixes
            .iter()
            .find_map(|prefix| order_id.strip_prefix(prefix.as_str()))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(order_id)
    }

    /// A number in `[0, 1)` fixed by the seed, the rule and the order.
    fn unit(&self, salt: &str, order_id: &str) -> f64 {
        unit_interval(self.seed, salt, self.outcome_key(order_id))
    }
}

/// A stable number in `[0, 1)` for `(seed, salt, key)`: FNV-1a over the
/// three, then the SplitMix64 finaliser so nearby keys land far apart. Not
/// `DefaultHasher`, whose keys change from process to process.
pub fn unit_interval(seed: u64, salt: &str, key: &str) -> f64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let separated = seed
        .to_le_bytes()
        .into_iter()
        .chain(salt.bytes())
        .chain(std::iter::once(0xff))
        .chain(key.bytes());
    for byte in separated {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    // The top 53 bits fit an f64's mantissa exactly.
    (hash >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_depend_on_the_seed_and_the_order_only() {
        let config = ShopConfig {
            seed: 7,
            decline_rate: 0.3,
            shipping_failure_rate: 0.2,
            ..ShopConfig::default()
        };
        let again = config.clone();
        let ids: Vec<String> = (0..1000).map(|n| format!("ord-{n}")).collect();
        let declined = ids.iter().filter(|id| config.declines(id)).count();
        assert!((250..350).contains(&declined), "{declined} of 1000 declined at 0.3");
        let failed = ids.iter().filter(|id| config.shipping_fails(id)).count();
        assert!((150..250).contains(&failed), "{failed} of 1000 failed at 0.2");
        assert!(ids.iter().all(|id| config.declines(id) == again.declines(id)));
        let other_seed = ShopConfig {
            seed: 8,
            ..config.clone()
        };
        assert!(ids.iter().any(|id| config.declines(id) != other_seed.declines(id)));
        // The two rules are independent draws.
        let both = ids
            .iter()
            .filter(|id| config.declines(id) && config.shipping_fails(id))
            .count();
        assert!((30..100).contains(&both), "{both}");
    }

    #[test]
    fn the_value_is_pinned_across_processes_and_versions() {
        // A change here changes every seeded demo's outcome.
        assert_eq!(
            unit_interval(1, "payments/decline", "ord-1").to_bits(),
            0x3fc2_b8bb_fd21_9fc0
        );
    }

    #[test]
    fn prefixes_make_orders_of_both_modes_the_same_order() {
        let config = ShopConfig {
            decline_rate: 0.5,
            shipping_failure_rate: 0.5,
            outcome_prefixes: vec!["chor-".to_owned(), "orch-".to_owned()],
            ..ShopConfig::default()
        };
        assert_eq!(config.outcome_key("chor-17"), "17");
        assert_eq!(config.outcome_key("orch-17"), "17");
        assert_eq!(config.outcome_key("chor-"), "chor-");
        assert_eq!(config.outcome_key("other-17"), "other-17");
        for n in 0..200 {
            let (chor, orch) = (format!("chor-{n}"), format!("orch-{n}"));
            assert_eq!(config.declines(&chor), config.declines(&orch));
            assert_eq!(config.shipping_fails(&chor), config.shipping_fails(&orch));
            assert_eq!(config.carrier(&chor), config.carrier(&orch));
        }
    }

    #[test]
    fn zero_and_one_are_never_and_always() {
        let never = ShopConfig::default();
        let always = ShopConfig {
            decline_rate: 1.0,
            shipping_failure_rate: 1.0,
            ..ShopConfig::default()
        };
        for n in 0..100 {
            let id = format!("o-{n}");
            assert!(!never.declines(&id) && !never.shipping_fails(&id));
            assert!(always.declines(&id) && always.shipping_fails(&id));
        }
    }
}
