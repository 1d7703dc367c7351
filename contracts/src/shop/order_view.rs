//! The `order-view` service: the shop's read model. A query-optimised view
//! of every order built only from the events the shop services publish (in
//! both modes), answering `get` and `list`, rebuilt from the streams on
//! request, and measuring how far it lags behind the events.
//!
//! It is not one of the five services an order meets ([`super::contracts`]
//! leaves it out); it consumes every one of their events and calls nobody.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::notifications::NotificationKind;
use super::{DOMAIN, FailureReason, FlowMode, LineItem, Money, OWNER, OrderId};
use crate::catalog::{ContractBuilder, OperationSpec};
use crate::document::ContractDocument;
use crate::names::NameError;

/// The service's name, as in its contract.
pub const SERVICE: &str = "order-view";

/// The largest page `list` returns.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Where an order stands, as the events tell it. Derived from which facts
/// are known, with a fixed precedence (the first that applies):
/// `cancelled`, `completed`, `cancelling`, `shipped`, `paid`, `reserved`,
/// `placed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ViewStatus {
    /// Placed (or only some step of it heard of): nothing reserved yet.
    Placed,
    /// Its stock is reserved.
    Reserved,
    /// Its payment is charged.
    Paid,
    /// Its shipment is scheduled.
    Shipped,
    /// A step failed and what was done is being undone.
    Cancelling,
    /// Completed: the orders service said so.
    Completed,
    /// Cancelled: the orders service said so.
    Cancelled,
}

impl ViewStatus {
    /// The status as it is spelt on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Reserved => "reserved",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Cancelling => "cancelling",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status spelt `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Placed,
            Self::Reserved,
            Self::Paid,
            Self::Shipped,
            Self::Cancelling,
            Self::Completed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// When each step of an order happened: the time JetStream stored the event
/// that announced it (RFC 3339, UTC, microseconds), never the time the view
/// applied it, so a rebuilt view has the same times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepTimes {
    /// `orders#placed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed: Option<String>,
    /// `inventory#reserved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<String>,
    /// `inventory#out-of-stock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_stock: Option<String>,
    /// `inventory#released`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    /// `payments#charged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged: Option<String>,
    /// `payments#declined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined: Option<String>,
    /// `payments#refunded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded: Option<String>,
    /// `shipping#scheduled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<String>,
    /// `shipping#failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_failed: Option<String>,
    /// `orders#completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<String>,
    /// `orders#cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<String>,
    /// `notifications#sent` of the confirmation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_sent: Option<String>,
    /// `notifications#sent` of the cancellation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_sent: Option<String>,
}

/// One order as the events tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderView {
    /// The order.
    pub order_id: OrderId,
    /// Where it stands.
    pub status: ViewStatus,
    /// How it is fulfilled (from `placed`, else from the first event that names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
    /// Who is buying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// What is bought (empty until `placed` is heard of).
    pub items: Vec<LineItem>,
    /// What it costs in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
    /// Why it was (or is being) cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReason>,
    /// Its stock reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    /// Whether the release gave stock back (once released).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_released: Option<bool>,
    /// Its payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// What was charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged: Option<Money>,
    /// What was refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded: Option<Money>,
    /// Its shipment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<String>,
    /// Who carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// What the customer was told, in kind order.
    pub notifications: Vec<NotificationKind>,
    /// When each step happened.
    pub steps: StepTimes,
    /// How many distinct facts the view holds of it.
    pub facts: u32,
}

/// Fetch one order's view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOrderView {
    /// The order.
    pub order_id: OrderId,
}

/// List order views, a page at a time, in order id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListOrderViews {
    /// Only orders with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ViewStatus>,
    /// Only orders fulfilled this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
    /// Page size (50 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// Start after this order id: the `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<OrderId>,
}

/// A page of order views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderViewPage {
    /// The orders on this page, by order id.
    pub orders: Vec<OrderView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<OrderId>,
}

/// Throw the view away and build it again from the start of the streams.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildOrderView {}

/// How far the view has read one event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamProgress {
    /// The stream.
    pub stream: String,
    /// Its last sequence when asked.
    pub last_sequence: u64,
    /// Every message up to this sequence is applied.
    pub applied_through: u64,
}

/// What a rebuild came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RebuildReport {
    /// Orders in the rebuilt view.
    pub orders: u64,
    /// Events applied by the rebuild.
    pub events: u64,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
    /// Each stream, read up to its last sequence at the time of the request.
    pub streams: Vec<StreamProgress>,
}

/// Ask for the view's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetViewStats {}

/// How far behind the events the view was: for each applied event, the
/// time it was applied minus the time JetStream stored it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LagSummary {
    /// Events measured.
    pub events: u64,
    /// Median lag, ms.
    pub lag_p50_ms: f64,
    /// 90th percentile, ms.
    pub lag_p90_ms: f64,
    /// 99th percentile, ms.
    pub lag_p99_ms: f64,
    /// Largest lag, ms.
    pub lag_max_ms: f64,
}

/// The view's figures since it started (or was rebuilt).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ViewStats {
    /// Orders in the view.
    pub orders: u64,
    /// Events applied live (a rebuild's replay is not lag and not counted here).
    pub events: u64,
    /// Events that changed nothing (a copy of a fact already known).
    pub duplicates: u64,
    /// Events that could not be read and went to the dead letters.
    pub dead_letters: u64,
    /// The lag of every live event.
    pub lag: LagSummary,
    /// The lag of orchestrated orders' events.
    pub orchestrated: LagSummary,
    /// The lag of choreographed orders' events.
    pub choreographed: LagSummary,
    /// How far each stream is applied.
    pub streams: Vec<StreamProgress>,
    /// Whether every stream is applied up to its last sequence.
    pub caught_up: bool,
}

crate::operations! {
    /// `get`: GetOrderView -> OrderView.
    Get = "get": GetOrderView => OrderView;
    /// `list`: ListOrderViews -> OrderViewPage.
    List = "list": ListOrderViews => OrderViewPage;
    /// `rebuild`: RebuildOrderView -> RebuildReport.
    Rebuild = "rebuild": RebuildOrderView => RebuildReport;
    /// `stats`: GetViewStats -> ViewStats.
    Stats = "stats": GetViewStats => ViewStats;
}

/// Every shop event the view is built from.
pub const CONSUMES: [&str; 12] = [
    "orders@1#placed",
    "orders@1#completed",
    "orders@1#cancelled",
    "inventory@1#reserved",
    "inventory@1#out-of-stock",
    "inventory@1#released",
    "payments@1#charged",
    "payments@1#declined",
    "payments@1#refunded",
    "shipping@1#scheduled",
    "shipping@1#failed",
    "notifications@1#sent",
];

/// The `order-view@1` contract.
pub fn contract() -> Result<ContractDocument, NameError> {
    let mut builder = ContractBuilder::new(
        DOMAIN,
        SERVICE,
        "1.0.0",
        "Every order as the shop's events tell it, in both modes: a read model rebuilt from the streams",
        OWNER,
    )?
    .tags(&["shop", "orders", "read-model"])
    .operation::<Get>(OperationSpec {
        description: "Fetch one order's view",
        idempotent: true,
        ..Default::default()
    })?
    .operation::<List>(OperationSpec {
        description: "List order views by status and mode, a page at a time, in order id order",
        idempotent: true,
        ..Default::default()
    })?
    .operation::<Rebuild>(OperationSpec {
        description: "Delete the view and build it again from the start of the shop's event streams; answers once caught up",
        idempotent: true,
        ..Default::default()
    })?
    .operation::<Stats>(OperationSpec {
        description: "How many events the view applied and how far it lags behind them",
        idempotent: true,
        ..Default::default()
    })?;
    for reference in CONSUMES {
        builder = builder.consumes(reference)?;
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_their_spelling() {
        for status in [
            ViewStatus::Placed,
            ViewStatus::Reserved,
            ViewStatus::Paid,
            ViewStatus::Shipped,
            ViewStatus::Cancelling,
            ViewStatus::Completed,
            ViewStatus::Cancelled,
        ] {
            assert_eq!(ViewStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(ViewStatus::parse("shipping"), None);
    }

    #[test]
    fn the_contract_builds_with_four_operations_and_no_events() {
        let contract = contract().unwrap();
        assert_eq!(contract.id().to_string(), "order-view@1.0.0");
        assert_eq!(contract.operations.len(), 4);
        assert!(contract.events.is_empty());
        assert_eq!(contract.consumes.len(), 12);
    }
}
