//! The demo's orders: the same seeded orders for both modes, told apart only
//! by their id's prefix, so their business outcomes can be compared.

use contracts::shop::orders::PlaceOrder;
use contracts::shop::{FlowMode, LineItem, Money, OrderId};

/// Products on the shelves, plenty of each.
const PRODUCTS: usize = 40;

/// Units of each product: never the reason an order fails.
const PLENTY: u64 = 1_000_000_000;

/// The orders of one demo run and the stock they need.
#[derive(Debug, Clone)]
pub(crate) struct OrderSet {
    /// Tells this run's orders and products from earlier runs on the same server.
    pub run: String,
    /// One template per order; [`OrderSet::order`] makes it an order of a mode.
    pub templates: Vec<Template>,
}

/// One order before it has a mode.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// Its number in the run.
    pub number: usize,
    /// Who buys.
    pub customer_id: String,
    /// What is bought.
    pub items: Vec<LineItem>,
}

impl OrderSet {
    /// `count` orders from `seed`; a share `out_of_stock_rate` asks for a
    /// product nobody has.
    pub(crate) fn generate(run: String, count: usize, seed: u64, out_of_stock_rate: f64) -> Self {
        let mut random = SplitMix(seed ^ 0x05ee_d0f0_bde5);
        let templates = (0..count)
            .map(|number| {
                let lines = 1 + random.below(3);
                let mut items: Vec<LineItem> = (0..lines)
                    .map(|_| LineItem {
                        sku: format!("sku-{run}-{}", random.below(PRODUCTS as u64)),
                        quantity: 1 + random.below(3) as u32,
                        unit_price: Money {
                            amount_cents: 199 + 100 * random.below(50),
                            currency: "EUR".to_owned(),
                        },
                    })
                    .collect();
                items.sort_by(|a, b| a.sku.cmp(&b.sku));
                items.dedup_by(|a, b| a.sku == b.sku);
                if random.unit() < out_of_stock_rate {
                    items.push(LineItem {
                        sku: Self::gone(&run),
                        quantity: 1,
                        unit_price: Money {
                            amount_cents: 999,
                            currency: "EUR".to_owned(),
                        },
                    });
                }
                Template {
                    number,
                    customer_id: format!("cust-{}", random.below(500)),
                    items,
                }
            })
            .collect();
        Self { run, templates }
    }

    /// The product nobody has.
    fn gone(run: &str) -> String {
        format!("sku-{run}-sold-out")
    }

    /// The stock to seed: plenty of every product, none of the sold-out one.
    pub(crate) fn stock(&self) -> Vec<(String, u64)> {
        let mut stock: Vec<(String, u64)> = (0..PRODUCTS)
            .map(|n| (format!("sku-{}-{n}", self.run), PLENTY))
            .collect();
        stock.push((Self::gone(&self.run), 0));
        stock
    }

    /// The id prefix of a mode's orders in this run.
    pub(crate) fn prefix(&self, mode: FlowMode) -> String {
        match mode {
            FlowMode::Orchestrated => format!("orch-{}-", self.run),
            FlowMode::Choreographed => format!("chor-{}-", self.run),
        }
    }

    /// The order of `template` in `mode`.
    pub(crate) fn order(&self, template: &Template, mode: FlowMode) -> PlaceOrder {
        PlaceOrder {
            order_id: OrderId(format!("{}{}", self.prefix(mode), template.number)),
            customer_id: template.customer_id.clone(),
            items: template.items.clone(),
            mode,
        }
    }
}

/// A small seeded generator (SplitMix64): the same seed, the same orders.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_orders_and_modes_differ_only_by_prefix() {
        let a = OrderSet::generate("r1".into(), 50, 7, 0.2);
        let b = OrderSet::generate("r1".into(), 50, 7, 0.2);
        let orders = |set: &OrderSet, mode| set.templates.iter().map(|t| set.order(t, mode)).collect::<Vec<_>>();
        assert_eq!(orders(&a, FlowMode::Orchestrated), orders(&b, FlowMode::Orchestrated));
        let orchestrated = orders(&a, FlowMode::Orchestrated);
        let choreographed = orders(&a, FlowMode::Choreographed);
        for (o, c) in orchestrated.iter().zip(&choreographed) {
            assert_eq!(o.items, c.items);
            assert_eq!(
                o.order_id.0.trim_start_matches("orch-"),
                c.order_id.0.trim_start_matches("chor-")
            );
        }
        let sold_out = a
            .templates
            .iter()
            .filter(|t| t.items.iter().any(|item| item.sku.ends_with("sold-out")))
            .count();
        assert!(
            (3..=20).contains(&sold_out),
            "{sold_out} of 50 ask for the sold-out product"
        );
        let other = OrderSet::generate("r1".into(), 50, 8, 0.2);
        assert_ne!(orders(&other, FlowMode::Orchestrated), orchestrated);
    }
}
