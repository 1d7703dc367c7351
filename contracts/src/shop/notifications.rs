//! The `notifications` service: tells customers what happened, and remembers
//! what it told them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DOMAIN, FlowMode, OWNER, OrderId};
use crate::catalog::{ContractBuilder, OperationSpec};
use crate::document::ContractDocument;
use crate::names::NameError;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationKind {
    /// The order is on its way.
    OrderConfirmed,
    /// The order was cancelled.
    OrderCancelled,
}

/// Send a notification. Idempotent per order and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendNotification {
    /// The order it is about.
    pub order_id: OrderId,
    /// Who is told.
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    /// What about.
    pub kind: NotificationKind,
    /// The text.
    #[schemars(length(min = 1, max = 2000))]
    pub message: String,
}

/// A notification that was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Notification {
    /// The notification.
    pub notification_id: String,
    /// The order it is about.
    pub order_id: OrderId,
    /// Who was told.
    pub customer_id: String,
    /// What about.
    pub kind: NotificationKind,
    /// The text.
    pub message: String,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
}

/// List what was sent, for one order or all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListNotifications {
    /// Only notifications about this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
}

/// The notifications sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationLog {
    /// Oldest first.
    pub notifications: Vec<Notification>,
}

crate::operations! {
    /// `send`: SendNotification -> Notification.
    Send = "send": SendNotification => Notification;
    /// `list`: ListNotifications -> NotificationLog.
    List = "list": ListNotifications => NotificationLog;
}

crate::events! {
    /// `sent`: Notification.
    Sent = "sent": Notification;
}

/// The `notifications@1` contract.
pub fn contract() -> Result<ContractDocument, NameError> {
    Ok(ContractBuilder::new(
        DOMAIN,
        "notifications",
        "1.1.0",
        "Tells customers what happened to their orders",
        OWNER,
    )?
    .tags(&["shop", "customers"])
    .operation::<Send>(OperationSpec {
        description: "Send a notification to a customer",
        idempotent: true,
        ..Default::default()
    })?
    .operation::<List>(OperationSpec {
        description: "List the notifications sent, for one order or all",
        idempotent: true,
        ..Default::default()
    })?
    .event::<Sent>("A notification was sent to a customer")?
    .consumes("orders@1#completed")?
    .consumes("orders@1#cancelled")?
    .build())
}
