//! The `orders` service: places orders, answers questions about them, and
//! announces their outcome.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DOMAIN, FailureReason, FlowMode, LineItem, Money, OWNER, OrderId, OrderStatus};
use crate::catalog::{ContractBuilder, OperationSpec};
use crate::document::ContractDocument;
use crate::names::NameError;

/// Place an order. Idempotent: the caller chooses the order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = example_place_order())]
pub struct PlaceOrder {
    /// The new order's id.
    pub order_id: OrderId,
    /// Who is buying.
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    /// What is bought.
    #[schemars(length(min = 1, max = 100))]
    pub items: Vec<LineItem>,
    /// How to fulfil it.
    pub mode: FlowMode,
}

fn example_place_order() -> PlaceOrder {
    PlaceOrder {
        order_id: OrderId("ord-1001".into()),
        customer_id: "cust-42".into(),
        items: vec![LineItem {
            sku: "sku-kettle".into(),
            quantity: 1,
            unit_price: Money {
                amount_cents: 2999,
                currency: "EUR".into(),
            },
        }],
        mode: FlowMode::Orchestrated,
    }
}

/// The answer to a placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderAccepted {
    /// The order.
    pub order_id: OrderId,
    /// Its status now.
    pub status: OrderStatus,
    /// What it costs in all.
    pub total: Money,
}

/// Fetch one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOrder {
    /// The order.
    pub order_id: OrderId,
}

/// An order as the orders service knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    /// The order.
    pub order_id: OrderId,
    /// Who bought.
    pub customer_id: String,
    /// What was bought.
    pub items: Vec<LineItem>,
    /// What it costs in all.
    pub total: Money,
    /// How it is fulfilled.
    pub mode: FlowMode,
    /// Where it stands.
    pub status: OrderStatus,
    /// Why it was cancelled, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReason>,
}

/// List orders, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListOrders {
    /// Only orders with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
    /// Start after this order id (from the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<OrderId>,
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

/// A page of orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPage {
    /// The orders on this page.
    pub orders: Vec<Order>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<OrderId>,
}

/// An order was placed and its fulfilment starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: OrderId,
    /// Who is buying.
    pub customer_id: String,
    /// What is bought.
    pub items: Vec<LineItem>,
    /// What it costs in all.
    pub total: Money,
    /// How it is fulfilled.
    pub mode: FlowMode,
}

/// An order was fulfilled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCompleted {
    /// The order.
    pub order_id: OrderId,
    /// The shipment that carries it.
    pub shipment_id: String,
    /// Who bought it, so the customer can be told without asking orders (since 1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
}

/// An order could not be fulfilled; every completed step was undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: OrderId,
    /// Why.
    pub reason: FailureReason,
    /// Who bought it, so the customer can be told without asking orders (since 1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
}

crate::operations! {
    /// `place`: PlaceOrder -> OrderAccepted.
    Place = "place": PlaceOrder => OrderAccepted;
    /// `get`: GetOrder -> Order.
    Get = "get": GetOrder => Order;
    /// `list`: ListOrders -> OrderPage.
    List = "list": ListOrders => OrderPage;
}

crate::events! {
    /// `placed`: OrderPlaced.
    Placed = "placed": OrderPlaced;
    /// `completed`: OrderCompleted.
    Completed = "completed": OrderCompleted;
    /// `cancelled`: OrderCancelled.
    Cancelled = "cancelled": OrderCancelled;
}

/// The `orders@1` contract.
pub fn contract() -> Result<ContractDocument, NameError> {
    Ok(ContractBuilder::new(
        DOMAIN,
        "orders",
        "1.2.0",
        "Takes orders and tracks them to completion or cancellation",
        OWNER,
    )?
    .tags(&["shop", "orders"])
    .operation::<Place>(OperationSpec {
        description: "Place an order; fulfilment starts in the order's mode",
        idempotent: true,
        ..Default::default()
    })?
    .operation::<Get>(OperationSpec {
        description: "Fetch one order",
        idempotent: true,
        ..Default::default()
    })?
    .operation::<List>(OperationSpec {
        description: "List orders, optionally by status, a page at a time",
        idempotent: true,
        ..Default::default()
    })?
    .event::<Placed>("An order was placed and its fulfilment starts")?
    .event::<Completed>("An order was fulfilled")?
    .event::<Cancelled>("An order could not be fulfilled and was undone")?
    .consumes("shipping@1#scheduled")?
    .consumes("inventory@1#out-of-stock")?
    .consumes("payments@1#declined")?
    .consumes("shipping@1#failed")?
    .consumes("fulfilment@1#finished")?
    .calls("fulfilment@1#start")?
    .calls("notifications@1#send")?
    .build())
}
