//! Realistic contracts for the registry's own tests: the shop's five as
//! they stood at a fixed point (`registry/tests/data/shop/`), so the
//! registry's tests do not change whenever the shop's contracts take a new
//! version. The end-to-end tests read the same files
//! (`tests::registry::shop_contracts`); this crate cannot use theirs.

use contracts::{ContractDocument, Limits};

/// The frozen shop contracts, by file name and text.
const SHOP: [(&str, &str); 5] = [
    ("orders.v1.json", include_str!("../tests/data/shop/orders.v1.json")),
    (
        "inventory.v1.json",
        include_str!("../tests/data/shop/inventory.v1.json"),
    ),
    ("payments.v1.json", include_str!("../tests/data/shop/payments.v1.json")),
    ("shipping.v1.json", include_str!("../tests/data/shop/shipping.v1.json")),
    (
        "notifications.v1.json",
        include_str!("../tests/data/shop/notifications.v1.json"),
    ),
];

/// The frozen shop contracts, in the order `contracts::shop::contracts`
/// returns the live ones.
pub(crate) fn shop_contracts() -> Vec<ContractDocument> {
    SHOP.iter()
        .map(|(name, text)| {
            ContractDocument::parse(name, text, &Limits::default())
                .unwrap_or_else(|error| panic!("the frozen sample {name} does not parse: {error}"))
        })
        .collect()
}

/// The frozen shop contract of `service`.
pub(crate) fn shop_contract(service: &str) -> ContractDocument {
    shop_contracts()
        .into_iter()
        .find(|document| document.service.as_str() == service)
        .unwrap_or_else(|| panic!("no frozen sample contract of {service}"))
}
