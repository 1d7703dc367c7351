//! The `shipping` service: schedules and cancels shipments.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DOMAIN, FlowMode, OWNER, OrderId, StockLine};
use crate::catalog::{ContractBuilder, OperationSpec};
use crate::document::ContractDocument;
use crate::names::NameError;

/// Schedule the shipment of an order. Idempotent per order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleShipment {
    /// The order shipped.
    pub order_id: OrderId,
    /// What goes in the parcel.
    #[schemars(length(min = 1, max = 100))]
    pub items: Vec<StockLine>,
}

/// A scheduled shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Shipment {
    /// The shipment.
    pub shipment_id: String,
    /// The order shipped.
    pub order_id: OrderId,
    /// Who carries it.
    pub carrier: String,
}

/// Cancel an order's shipment. Idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelShipment {
    /// The order whose shipment is cancelled.
    pub order_id: OrderId,
}

/// The answer to a cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentCancelled {
    /// The order.
    pub order_id: OrderId,
    /// False when there was nothing to cancel.
    pub cancelled: bool,
}

/// A shipment was scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentScheduled {
    /// The order shipped.
    pub order_id: OrderId,
    /// The shipment.
    pub shipment_id: String,
    /// Who carries it.
    pub carrier: String,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
}

/// No shipment could be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentFailed {
    /// The order.
    pub order_id: OrderId,
    /// Why, in words.
    pub reason: String,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
}

crate::operations! {
    /// `schedule`: ScheduleShipment -> Shipment.
    Schedule = "schedule": ScheduleShipment => Shipment;
    /// `cancel`: CancelShipment -> ShipmentCancelled.
    Cancel = "cancel": CancelShipment => ShipmentCancelled;
}

crate::events! {
    /// `scheduled`: ShipmentScheduled.
    Scheduled = "scheduled": ShipmentScheduled;
    /// `failed`: ShipmentFailed.
    Failed = "failed": ShipmentFailed;
}

/// The `shipping@1` contract.
pub fn contract() -> Result<ContractDocument, NameError> {
    Ok(
        ContractBuilder::new(DOMAIN, "shipping", "1.3.0", "Schedules and cancels shipments", OWNER)?
            .tags(&["shop", "logistics"])
            .operation::<Schedule>(OperationSpec {
                description: "Schedule the shipment of an order",
                errors: &["SHIPPING_UNAVAILABLE"],
                idempotent: true,
            })?
            .operation::<Cancel>(OperationSpec {
                description: "Cancel the shipment of an order",
                idempotent: true,
                ..Default::default()
            })?
            .event::<Scheduled>("A shipment was scheduled for an order")?
            .event::<Failed>("No shipment could be scheduled for an order")?
            .consumes("payments@1#charged")?
            .build(),
    )
}
