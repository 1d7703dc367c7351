//! The demo's stand-in for the orders service: `shop.orders.v1.place`,
//! validated in and out against the orders contract.
//!
//! It has the shape the runtime will give every operation: a plain function
//! from request to `Result<response, error>` ([`accept_order`]), and one
//! function ([`PlaceOrderResponder::reply`]) that decodes and validates the
//! request, calls it, validates the response and encodes the reply or the
//! error. When the runtime lands, this file goes and the demo asks the runtime
//! for the real orders service instead.

use std::sync::Arc;

use async_nats::{Client, HeaderMap, Message, Subscriber};
use bus_services::wire::{self, Envelope};
use contracts::shop::orders::{OrderAccepted, PlaceOrder};
use contracts::shop::{Money, OrderStatus};
use contracts::{
    CompiledContract, ContractDocument, ContractId, ErrorBody, ErrorCode, ErrorDetail, MemberName, MessageKey,
    MessageValidator,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Answers `place` requests of one orders contract.
#[derive(Debug, Clone)]
pub(crate) struct PlaceOrderResponder {
    contract: ContractId,
    operation: MemberName,
    request: Arc<MessageValidator>,
    response: Arc<MessageValidator>,
}

/// A reply, ready to publish.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Vec<u8>,
    /// The error code, when the reply is an error.
    pub(crate) error: Option<ErrorCode>,
}

impl PlaceOrderResponder {
    /// A responder for the `place` operation of `document`, whose messages `compiled` holds.
    pub(crate) fn new(document: &ContractDocument, compiled: &CompiledContract) -> anyhow::Result<Self> {
        let operation = MemberName::parse("place")?;
        let validator = |key: MessageKey| {
            compiled
                .validators
                .get(&key)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{} declares no {key}", document.id()))
        };
        Ok(Self {
            contract: document.id(),
            request: validator(MessageKey::Request(operation.clone()))?,
            response: validator(MessageKey::Response(operation.clone()))?,
            operation,
        })
    }

    /// The reply to one request: its headers carry the contract, the
    /// operation, a fresh message id and the request's correlation id, plus
    /// the NATS micro error headers when the reply is an error.
    pub(crate) fn reply(&self, request_headers: Option<&HeaderMap>, payload: &[u8]) -> Reply {
        let envelope = Envelope::operation(self.contract.clone(), self.operation.clone())
            .with_correlation_id(wire::correlation_id(request_headers));
        let mut headers = envelope.to_headers();
        match self.handle(payload) {
            Ok(payload) => Reply {
                headers,
                payload,
                error: None,
            },
            Err(body) => {
                wire::write_error_headers(&mut headers, &body);
                Reply {
                    headers,
                    payload: encode_error(&body),
                    error: Some(body.code),
                }
            }
        }
    }

    /// Decode, validate, call, validate, encode.
    fn handle(&self, payload: &[u8]) -> Result<Vec<u8>, ErrorBody> {
        let request = self.request.validate_bytes(payload).map_err(ErrorBody::from)?;
        let order: PlaceOrder = serde_json::from_value(request).map_err(|error| {
            tracing::error!(error = %error, "A request that matches the schema does not decode; the contract and the Rust type disagree.");
            internal_error()
        })?;
        let accepted = accept_order(&order)?;
        let response = serde_json::to_value(&accepted).map_err(|error| {
            tracing::error!(error = %error, "The response could not be encoded.");
            internal_error()
        })?;
        // Never send what the contract does not allow, even if the code says so.
        self.response.validate(&response).map_err(|failure| {
            tracing::error!(error = %failure, "The response does not match its schema; sending an error instead.");
            internal_error()
        })?;
        serde_json::to_vec(&response).map_err(|error| {
            tracing::error!(error = %error, "The response could not be encoded.");
            internal_error()
        })
    }
}

/// What the caller hears when something broke on our side: no internals.
fn internal_error() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Internal,
        "the orders service failed to answer; it has logged why",
    )
}

fn encode_error(body: &ErrorBody) -> Vec<u8> {
    // An error body is plain strings; encoding it cannot fail, but if it did
    // the headers still carry the code and message.
    serde_json::to_vec(body).unwrap_or_default()
}

/// Places an order: every item in one currency, the total summed.
pub(crate) fn accept_order(order: &PlaceOrder) -> Result<OrderAccepted, ErrorBody> {
    let Some(first) = order.items.first() else {
        return Err(ErrorBody {
            details: vec![ErrorDetail {
                pointer: "/items".to_owned(),
                schema_path: None,
                message: "an order needs at least one item".to_owned(),
            }],
            ..ErrorBody::new(ErrorCode::ValidationFailed, "the order has no items")
        });
    };
    let currency = &first.unit_price.currency;
    let mismatched: Vec<ErrorDetail> = order
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| &item.unit_price.currency != currency)
        .map(|(index, item)| ErrorDetail {
            pointer: format!("/items/{index}/unit_price/currency"),
            schema_path: None,
            message: format!("priced in {}, but the order is in {currency}", item.unit_price.currency),
        })
        .collect();
    if !mismatched.is_empty() {
        return Err(ErrorBody {
            details: mismatched,
            ..ErrorBody::new(
                ErrorCode::Conflict,
                format!("every item of an order must be priced in one currency, here {currency}"),
            )
        });
    }
    let total = order.items.iter().try_fold(0_u64, |total, item| {
        u64::from(item.quantity)
            .checked_mul(item.unit_price.amount_cents)
            .and_then(|line| total.checked_add(line))
    });
    let Some(amount_cents) = total else {
        return Err(ErrorBody {
            details: vec![ErrorDetail {
                pointer: "/items".to_owned(),
                schema_path: None,
                message: "the sum of quantity × unit price does not fit in 64 bits".to_owned(),
            }],
            ..ErrorBody::new(ErrorCode::ValidationFailed, "the order's total is too large")
        });
    };
    Ok(OrderAccepted {
        order_id: order.order_id.clone(),
        status: OrderStatus::Placed,
        total: Money {
            amount_cents,
            currency: currency.clone(),
        },
    })
}

/// Answers requests from `subscriber` until `stop` is cancelled, then drains
/// the subscription (requests already delivered are still answered) and
/// returns how many requests it answered.
pub(crate) async fn serve(
    client: Client,
    mut subscriber: Subscriber,
    responder: PlaceOrderResponder,
    stop: CancellationToken,
) -> u64 {
    let mut answered = 0;
    let mut draining = false;
    loop {
        let next = tokio::select! {
            () = stop.cancelled(), if !draining => None,
            message = subscriber.next() => Some(message),
        };
        match next {
            None => {
                draining = true;
                if let Err(error) = subscriber.drain().await {
                    tracing::warn!(error = %error, "Could not drain the subscription; stopping at once.");
                    break;
                }
            }
            Some(None) => break,
            Some(Some(message)) => {
                answer(&client, &responder, message).await;
                answered += 1;
            }
        }
    }
    answered
}

/// Answers one request message.
async fn answer(client: &Client, responder: &PlaceOrderResponder, message: Message) {
    let correlation_id = wire::correlation_id(message.headers.as_ref());
    let span = tracing::info_span!(
        "request",
        subject = %message.subject,
        correlation_id = correlation_id.as_ref().map(|id| id.as_str()),
    );
    async {
        let Some(reply_to) = message.reply else {
            tracing::warn!("A request without a reply subject was ignored.");
            return;
        };
        let reply = responder.reply(message.headers.as_ref(), &message.payload);
        match &reply.error {
            None => tracing::debug!("Answered the request."),
            Some(code) => tracing::debug!(code = %code, "Refused the request."),
        }
        if let Err(error) = client
            .publish_with_headers(reply_to, reply.headers, reply.payload.into())
            .await
        {
            tracing::warn!(error = %error, "Could not send the reply.");
        }
    }
    .instrument(span)
    .await;
}

#[cfg(test)]
mod tests {
    use contracts::shop::{FlowMode, LineItem, OrderId};
    use contracts::{SchemaSet, compile_contract};

    use super::*;

    fn item(sku: &str, quantity: u32, cents: u64, currency: &str) -> LineItem {
        LineItem {
            sku: sku.to_owned(),
            quantity,
            unit_price: Money {
                amount_cents: cents,
                currency: currency.to_owned(),
            },
        }
    }

    fn order(items: Vec<LineItem>) -> PlaceOrder {
        PlaceOrder {
            order_id: OrderId("ord-1".to_owned()),
            customer_id: "cust-1".to_owned(),
            items,
            mode: FlowMode::Orchestrated,
        }
    }

    fn responder() -> PlaceOrderResponder {
        let document = contracts::shop::orders::contract().unwrap();
        let compiled = compile_contract(&document, &SchemaSet::default()).unwrap();
        PlaceOrderResponder::new(&document, &compiled).unwrap()
    }

    #[test]
    fn the_total_is_the_sum_of_the_lines() {
        let accepted = accept_order(&order(vec![item("a", 2, 850, "EUR"), item("b", 1, 2999, "EUR")])).unwrap();
        assert_eq!(accepted.total.amount_cents, 4699);
        assert_eq!(accepted.total.currency, "EUR");
        assert_eq!(accepted.status, OrderStatus::Placed);
    }

    #[test]
    fn mixed_currencies_conflict_at_each_odd_item() {
        let error = accept_order(&order(vec![
            item("a", 1, 1, "EUR"),
            item("b", 1, 1, "USD"),
            item("c", 1, 1, "EUR"),
        ]))
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::Conflict);
        let pointers: Vec<&str> = error.details.iter().map(|detail| detail.pointer.as_str()).collect();
        assert_eq!(pointers, ["/items/1/unit_price/currency"]);
    }

    #[test]
    fn a_total_too_large_is_refused_not_wrapped() {
        let error = accept_order(&order(vec![item("a", 1000, u64::MAX / 10, "EUR")])).unwrap_err();
        assert_eq!(error.code, ErrorCode::ValidationFailed);
        assert!(accept_order(&order(Vec::new())).is_err());
    }

    #[test]
    fn a_valid_request_gets_a_reply_with_the_envelope() {
        let mut request_headers = HeaderMap::new();
        request_headers.insert("Soa-Correlation-Id", "ord-1");
        let payload = serde_json::to_vec(&order(vec![item("a", 2, 100, "EUR")])).unwrap();
        let reply = responder().reply(Some(&request_headers), &payload);
        assert_eq!(reply.error, None);
        assert_eq!(wire::header(Some(&reply.headers), "Soa-Contract"), Some("orders@1.0.0"));
        assert_eq!(wire::header(Some(&reply.headers), "Soa-Operation"), Some("place"));
        assert_eq!(wire::header(Some(&reply.headers), "Soa-Correlation-Id"), Some("ord-1"));
        assert!(wire::header(Some(&reply.headers), "Nats-Msg-Id").is_some());
        assert_eq!(wire::decode_error(Some(&reply.headers), &reply.payload), None);
        let accepted: OrderAccepted = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(accepted.total.amount_cents, 200);
    }

    #[test]
    fn an_invalid_request_gets_every_failing_pointer() {
        let payload = serde_json::json!({
            "order_id": "ord-2",
            "customer_id": "cust-1",
            "mode": "choreographed",
            "coupon": "FREE",
            "items": [{"sku": "a", "quantity": 0, "unit_price": {"amount_cents": 100, "currency": "eur"}}]
        });
        let reply = responder().reply(None, &serde_json::to_vec(&payload).unwrap());
        assert_eq!(reply.error, Some(ErrorCode::ValidationFailed));
        assert_eq!(
            wire::header(Some(&reply.headers), "Nats-Service-Error-Code"),
            Some("400")
        );
        let error = wire::decode_error(Some(&reply.headers), &reply.payload).unwrap();
        let pointers: Vec<&str> = error.details.iter().map(|detail| detail.pointer.as_str()).collect();
        for expected in ["", "/items/0/quantity", "/items/0/unit_price/currency"] {
            assert!(pointers.contains(&expected), "{pointers:?} lacks {expected:?}");
        }

        let not_json = responder().reply(None, b"two kettles, please");
        let error = wire::decode_error(Some(&not_json.headers), &not_json.payload).unwrap();
        assert_eq!(error.code, ErrorCode::ValidationFailed);
        assert_eq!(error.details[0].pointer, "");
        assert!(error.details[0].message.contains("not valid JSON"), "{error:?}");
    }

    #[test]
    fn mixed_currencies_get_a_conflict_reply() {
        let payload = serde_json::to_vec(&order(vec![item("a", 1, 1, "EUR"), item("b", 1, 1, "USD")])).unwrap();
        let reply = responder().reply(None, &payload);
        assert_eq!(reply.error, Some(ErrorCode::Conflict));
        assert_eq!(
            wire::header(Some(&reply.headers), "Nats-Service-Error-Code"),
            Some("409")
        );
    }
}
