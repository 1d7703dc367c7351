//! The demo domain, order fulfilment: the message types of orders, inventory,
//! payments, shipping and notifications, their contracts, the
//! `fulfilment` workflow that drives them when an order is orchestrated, and
//! `order-view`, the read model built from their events.
//!
//! Requests are closed (`deny_unknown_fields`) so a typo is a validation
//! error; responses and events stay open so a later minor version may add
//! fields without breaking readers.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::document::ContractDocument;
use crate::names::NameError;

pub mod fulfilment;
pub mod inventory;
pub mod notifications;
pub mod order_view;
pub mod orders;
pub mod payments;
pub mod shipping;

/// The domain token every shop subject starts with.
pub const DOMAIN: &str = "shop";

/// The team that owns the shop services.
pub const OWNER: &str = "fulfilment-team";

/// Identifies an order across every service: the correlation id of its flow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub String);

impl JsonSchema for OrderId {
    fn schema_name() -> Cow<'static, str> {
        "OrderId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Identifies an order in every service; chosen by the caller, so placing an order is idempotent.",
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]{1,64}$"
        })
    }
}

/// An amount of money in minor units (cents) of one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    /// Minor units (cents).
    #[schemars(range(min = 0))]
    pub amount_cents: u64,
    /// ISO 4217 currency code.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
}

/// One line of an order: a product, how many, at what price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LineItem {
    /// Stock keeping unit.
    #[schemars(length(min = 1, max = 64))]
    pub sku: String,
    /// How many units.
    #[schemars(range(min = 1, max = 1000))]
    pub quantity: u32,
    /// Price of one unit.
    pub unit_price: Money,
}

/// One product and a quantity of it, without a price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockLine {
    /// Stock keeping unit.
    #[schemars(length(min = 1, max = 64))]
    pub sku: String,
    /// How many units.
    #[schemars(range(min = 1, max = 1000))]
    pub quantity: u32,
}

/// How an order's fulfilment is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FlowMode {
    /// By the central `fulfilment` workflow.
    Orchestrated,
    /// By services reacting to each other's events.
    Choreographed,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    /// Accepted, fulfilment under way.
    Placed,
    /// Stock reserved, payment charged, shipment scheduled, customer told.
    Completed,
    /// Fulfilment failed and every completed step was undone.
    Cancelled,
}

/// Why an order could not be fulfilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureReason {
    /// Not enough stock.
    OutOfStock,
    /// The payment was declined.
    PaymentDeclined,
    /// No shipment could be scheduled.
    ShippingUnavailable,
}

/// The contracts of every shop service, in dependency order.
pub fn contracts() -> Result<Vec<ContractDocument>, NameError> {
    Ok(vec![
        orders::contract()?,
        inventory::contract()?,
        payments::contract()?,
        shipping::contract()?,
        notifications::contract()?,
    ])
}
