//! The `payments` service: charges and refunds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DOMAIN, FlowMode, Money, OWNER, OrderId, StockLine};
use crate::catalog::{ContractBuilder, OperationSpec};
use crate::document::ContractDocument;
use crate::names::NameError;

/// Charge a customer for an order. Idempotent per order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargePayment {
    /// The order paid for.
    pub order_id: OrderId,
    /// Who pays.
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    /// How much.
    pub amount: Money,
}

/// Proof of a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentReceipt {
    /// The payment.
    pub payment_id: String,
    /// The order paid for.
    pub order_id: OrderId,
    /// How much was charged.
    pub amount: Money,
}

/// Give an order's money back. Idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundPayment {
    /// The order to refund.
    pub order_id: OrderId,
}

/// Proof of a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefundReceipt {
    /// The refund.
    pub refund_id: String,
    /// The order refunded.
    pub order_id: OrderId,
    /// How much went back; zero when nothing had been charged.
    pub amount: Money,
}

/// A customer was charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentCharged {
    /// The order paid for.
    pub order_id: OrderId,
    /// Who paid.
    pub customer_id: String,
    /// The payment.
    pub payment_id: String,
    /// How much.
    pub amount: Money,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
    /// What the order's parcel holds, carried from its `reserved` event so
    /// the choreography's shipping need not remember it (choreographed
    /// orders, since 1.3.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<StockLine>>,
}

/// A charge was declined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentDeclined {
    /// The order.
    pub order_id: OrderId,
    /// Why, in words.
    pub reason: String,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
}

/// Money went back to a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRefunded {
    /// The order refunded.
    pub order_id: OrderId,
    /// Who got the money back.
    pub customer_id: String,
    /// The refund.
    pub refund_id: String,
    /// How much.
    pub amount: Money,
    /// How the order is fulfilled: whatever drove this change, an orchestrated
    /// order's events say `orchestrated`, and the choreography ignores them (since 1.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FlowMode>,
}

crate::operations! {
    /// `charge`: ChargePayment -> PaymentReceipt.
    Charge = "charge": ChargePayment => PaymentReceipt;
    /// `refund`: RefundPayment -> RefundReceipt.
    Refund = "refund": RefundPayment => RefundReceipt;
}

crate::events! {
    /// `charged`: PaymentCharged.
    Charged = "charged": PaymentCharged;
    /// `declined`: PaymentDeclined.
    Declined = "declined": PaymentDeclined;
    /// `refunded`: PaymentRefunded.
    Refunded = "refunded": PaymentRefunded;
}

/// The `payments@1` contract.
pub fn contract() -> Result<ContractDocument, NameError> {
    Ok(
        ContractBuilder::new(DOMAIN, "payments", "1.3.0", "Charges customers and refunds them", OWNER)?
            .tags(&["shop", "money"])
            .operation::<Charge>(OperationSpec {
                description: "Charge a customer for an order",
                errors: &["PAYMENT_DECLINED"],
                idempotent: true,
            })?
            .operation::<Refund>(OperationSpec {
                description: "Refund what was charged for an order",
                idempotent: true,
                ..Default::default()
            })?
            .event::<Charged>("A customer was charged for an order")?
            .event::<Declined>("A charge for an order was declined")?
            .event::<Refunded>("A charge for an order was refunded")?
            .consumes("inventory@1#reserved")?
            .consumes("shipping@1#failed")?
            .build(),
    )
}
