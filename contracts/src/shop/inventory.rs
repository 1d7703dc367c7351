//! The `inventory` service: stock levels and reservations.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DOMAIN, FlowMode, Money, OWNER, OrderId, StockLine};
use crate::catalog::{ContractBuilder, OperationSpec};
use crate::document::ContractDocument;
use crate::names::NameError;

/// Reserve stock for an order. Idempotent per order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveStock {
    /// The order the stock is for.
    pub order_id: OrderId,
    /// What to reserve.
    #[schemars(length(min = 1, max = 100))]
    pub items: Vec<StockLine>,
}

/// Stock held for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reservation {
    /// The reservation.
    pub reservation_id: String,
    /// The order it is for.
    pub order_id: OrderId,
    /// What is held.
    pub items: Vec<StockLine>,
}

/// Give back the stock held for an order. Idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseStock {
    /// The order whose stock goes back.
    pub order_id: OrderId,
}

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockReleased {
    /// The order.
    pub order_id: OrderId,
    /// False when nothing was held (already released, or never reserved).
    pub released: bool,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
}

/// Ask how much of a product is in stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetStock {
    /// Stock keeping unit.
    #[schemars(length(min = 1, max = 64))]
    pub sku: String,
}

/// How much of a product there is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockLevel {
    /// Stock keeping unit.
    pub sku: String,
    /// Units free to reserve.
    pub available: u64,
    /// Units held for orders.
    pub reserved: u64,
}

/// Stock was reserved for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockReserved {
    /// The order.
    pub order_id: OrderId,
    /// The reservation.
    pub reservation_id: String,
    /// What is held.
    pub items: Vec<StockLine>,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
    /// Who pays for the order, carried from its `placed` event so the
    /// choreography's payments need not remember it (choreographed orders,
    /// since 1.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// What the order costs, carried from its `placed` event like
    /// `customer_id` (choreographed orders, since 1.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
}

/// An order asked for more than there is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockShortage {
    /// The order.
    pub order_id: OrderId,
    /// The product that ran short.
    pub sku: String,
    /// Units asked for.
    pub requested: u64,
    /// Units free.
    pub available: u64,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
}

crate::operations! {
    /// `reserve`: ReserveStock -> Reservation.
    Reserve = "reserve": ReserveStock => Reservation;
    /// `release`: ReleaseStock -> StockReleased.
    Release = "release": ReleaseStock => StockReleased;
    /// `stock`: GetStock -> StockLevel.
    Stock = "stock": GetStock => StockLevel;
}

crate::events! {
    /// `reserved`: StockReserved.
    Reserved = "reserved": StockReserved;
    /// `out-of-stock`: StockShortage.
    OutOfStock = "out-of-stock": StockShortage;
    /// `released`: StockReleased.
    Released = "released": StockReleased;
}

/// The `inventory@1` contract.
pub fn contract() -> Result<ContractDocument, NameError> {
    Ok(
        ContractBuilder::new(DOMAIN, "inventory", "1.2.0", "Stock levels and reservations", OWNER)?
            .tags(&["shop", "stock"])
            .operation::<Reserve>(OperationSpec {
                description: "Reserve stock for an order",
                errors: &["OUT_OF_STOCK"],
                idempotent: true,
            })?
            .operation::<Release>(OperationSpec {
                description: "Give back the stock reserved for an order",
                idempotent: true,
                ..Default::default()
            })?
            .operation::<Stock>(OperationSpec {
                description: "How much of a product is free and reserved",
                idempotent: true,
                ..Default::default()
            })?
            .event::<Reserved>("Stock was reserved for an order")?
            .event::<OutOfStock>("An order asked for more stock than there is")?
            .event::<Released>("Stock reserved for an order was given back")?
            .consumes("orders@1#placed")?
            .consumes("payments@1#declined")?
            .consumes("shipping@1#failed")?
            .build(),
    )
}
