//! The orders service: takes orders (create-only, by the caller's order id),
//! starts their fulfilment in the order's mode, and records how each ended.
//!
//! - Choreographed: `place` publishes `placed`; the order ends on the
//!   services' events (`scheduled` completes it; `out-of-stock`, `declined`
//!   or `failed` cancels it) and orders announces `completed` or `cancelled`.
//! - Orchestrated: `place` publishes `placed` (mode `orchestrated`, which
//!   every reaction ignores) and starts the `fulfilment` workflow
//!   (idempotency key and correlation id = the order id, so placing again
//!   starts nothing new); the workflow's `finished` event ends the order,
//!   announced as `completed` or `cancelled` with mode `orchestrated`. A
//!   cancelled order's customer is told by calling notifications, as the
//!   choreography's `cancelled` event does, so both modes end alike.
//!
//! Every change of an order is a compare-and-set from `placed`: an order
//! ends once, and a repeated event finds it ended and announces the same end
//! again (with the same message id, which JetStream drops as a duplicate).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use contracts::orchestrator_api::{InstanceStatus, StartWorkflowRequest, WorkflowFinished};
use contracts::shop::inventory::{self, StockShortage};
use contracts::shop::notifications::{self as notifications_api, NotificationKind, SendNotification};
use contracts::shop::orders::{
    self, GetOrder, ListOrders, Order, OrderAccepted, OrderCancelled, OrderCompleted, OrderPage, OrderPlaced,
    PlaceOrder,
};
use contracts::shop::payments::{self, PaymentDeclined};
use contracts::shop::shipping::{self, ShipmentFailed, ShipmentScheduled};
use contracts::shop::{FailureReason, FlowMode, Money, OrderStatus, fulfilment};
use contracts::workflow::contract::ops as workflow_ops;
use contracts::{ContractDocument, ErrorCode, ErrorDetail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::ShopError;
use super::config::ShopConfig;
use super::flow::{Announce, Tasks, driven_by_workflow, order_flow, publisher, service_config, set_up, spawn_consumer};
use super::notifications::cancelled_message;
use super::state::{Bucket, Change, ORDERS_BUCKET, StoreError, is_order_id, now_ms};
use crate::runtime::{
    CallError, CallOptions, EventContext, EventPublisher, Propagation, Service, ServiceClient, ServiceError,
};

/// The page size of `list` when the request names none.
const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page `list` returns, as the contract's `limit` allows.
const MAX_PAGE_SIZE: u32 = 500;

/// One order as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrderRecord {
    /// The order as `get` answers it.
    pub(crate) order: Order,
    /// When it was placed, ms since the Unix epoch.
    pub(crate) placed_at_ms: u64,
    /// When it was completed or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) finished_at_ms: Option<u64>,
    /// The shipment that carries it, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shipment_id: Option<String>,
    /// The fulfilment workflow instance, once an orchestrated order ended
    /// (from the workflow's `finished` event; until then `soa order
    /// timeline` finds it by correlation id). Storing it at the start cost
    /// every order a write of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) instance: Option<String>,
}

/// How an order ends.
#[derive(Debug, Clone)]
enum Ending {
    Completed { shipment_id: String },
    Cancelled(FailureReason),
}

/// The orders' state and the clients it starts fulfilment with.
#[derive(Clone)]
struct Orders {
    orders: Bucket,
    publisher: EventPublisher,
    fulfilment: ServiceClient,
    notifications: ServiceClient,
}

impl Orders {
    async fn record(&self, order: &str) -> Result<Option<OrderRecord>, StoreError> {
        self.orders.get(order).await
    }

    /// `place`: stores the order once, then (while it is still `placed`)
    /// starts its fulfilment; placing it again starts it again, which the
    /// workflow's idempotency key and the event's message id make harmless.
    async fn place(&self, propagation: &Propagation, request: PlaceOrder) -> Result<OrderAccepted, ServiceError> {
        let order = price(&request)?;
        let key = request.order_id.0.clone();
        let record = OrderRecord {
            order,
            placed_at_ms: now_ms(),
            finished_at_ms: None,
            shipment_id: None,
            instance: None,
        };
        let record = if self.orders.create(&key, &record).await? {
            record
        } else {
            let Some(known) = self.record(&key).await? else {
                return Err(ServiceError::unavailable(format!(
                    "order {key} is being stored; place it again"
                )));
            };
            let same = known.order.customer_id == request.customer_id
                && known.order.items == request.items
                && known.order.mode == request.mode;
            if !same {
                return Err(ServiceError::conflict(format!(
                    "order {key} was already placed with other contents; place it again only with the same \
                     customer, items and mode, or choose a new order id"
                )));
            }
            known
        };
        if record.order.status == OrderStatus::Placed {
            let flow = order_flow(propagation, &key);
            // Announced in both modes (the read model learns of every order
            // from it); only the choreography reacts to it.
            self.announce_placed(&flow, &record.order).await?;
            if record.order.mode == FlowMode::Orchestrated {
                self.start_fulfilment(&flow, &record.order).await?;
            }
        }
        Ok(OrderAccepted {
            order_id: record.order.order_id,
            status: record.order.status,
            total: record.order.total,
        })
    }

    async fn announce_placed(&self, flow: &Propagation, order: &Order) -> Result<(), ServiceError> {
        self.publisher
            .in_flow(flow)
            .announce::<orders::Placed>(
                &order.order_id.0,
                order.mode,
                &OrderPlaced {
                    order_id: order.order_id.clone(),
                    customer_id: order.customer_id.clone(),
                    items: order.items.clone(),
                    total: order.total.clone(),
                    mode: order.mode,
                },
            )
            .await
    }

    async fn start_fulfilment(&self, flow: &Propagation, order: &Order) -> Result<(), ServiceError> {
        let key = order.order_id.0.as_str();
        let request = StartWorkflowRequest {
            input: json!({
                "order_id": order.order_id,
                "customer_id": order.customer_id,
                "items": order.items,
                "total": order.total,
            }),
            idempotency_key: Some(key.to_owned()),
            correlation_id: Some(key.to_owned()),
        };
        self.fulfilment
            .in_flow(flow)
            .call::<workflow_ops::Start>(&request)
            .await
            .map_err(|error| start_failed(key, &error))?;
        Ok(())
    }

    /// Ends `order` once: from `placed` to completed or cancelled, if it is
    /// driven in `mode` (the other mode's messages never end an order),
    /// naming the workflow `instance` that drove it, if any. Returns the
    /// record as it is after, or `None` for an order never placed here.
    async fn end(
        &self,
        order: &str,
        mode: FlowMode,
        ending: &Ending,
        instance: Option<&str>,
    ) -> Result<Option<OrderRecord>, StoreError> {
        self.orders
            .modify(order, |current: Option<&OrderRecord>| match current {
                None => Change::Keep(None),
                Some(record) if record.order.status != OrderStatus::Placed || record.order.mode != mode => {
                    Change::Keep(Some(record.clone()))
                }
                Some(record) => {
                    let mut next = record.clone();
                    next.finished_at_ms = Some(now_ms());
                    if let Some(instance) = instance {
                        next.instance.get_or_insert_with(|| instance.to_owned());
                    }
                    match ending {
                        Ending::Completed { shipment_id } => {
                            next.order.status = OrderStatus::Completed;
                            next.shipment_id = Some(shipment_id.clone());
                        }
                        Ending::Cancelled(reason) => {
                            next.order.status = OrderStatus::Cancelled;
                            next.order.failure = Some(*reason);
                        }
                    }
                    Change::Write(next.clone(), Some(next))
                }
            })
            .await
    }

    /// The choreography's end of an order: record it and announce it.
    async fn end_choreographed(&self, context: &EventContext, order: &str, ending: Ending) -> Result<(), ServiceError> {
        let Some(record) = self.end(order, FlowMode::Choreographed, &ending, None).await? else {
            tracing::debug!(order, "An event about an order never placed here; ignored.");
            return Ok(());
        };
        if record.order.mode != FlowMode::Choreographed {
            tracing::warn!(order, "A choreography event about an orchestrated order; ignored.");
            return Ok(());
        }
        self.announce_end(&order_flow(context.propagation(), order), record)
            .await
    }

    /// Announces how `record` ended (`completed` or `cancelled`, in the
    /// order's mode); nothing while it is still placed.
    async fn announce_end(&self, flow: &Propagation, record: OrderRecord) -> Result<(), ServiceError> {
        let publisher = self.publisher.in_flow(flow);
        let order = record.order.order_id.0.as_str();
        let mode = record.order.mode;
        let customer_id = Some(record.order.customer_id.clone());
        match (record.order.status, record.order.failure) {
            (OrderStatus::Completed, _) => {
                publisher
                    .announce::<orders::Completed>(
                        order,
                        mode,
                        &OrderCompleted {
                            order_id: record.order.order_id.clone(),
                            shipment_id: record.shipment_id.clone().unwrap_or_default(),
                            customer_id,
                            mode: Some(mode),
                        },
                    )
                    .await
            }
            (OrderStatus::Cancelled, Some(reason)) => {
                publisher
                    .announce::<orders::Cancelled>(
                        order,
                        mode,
                        &OrderCancelled {
                            order_id: record.order.order_id.clone(),
                            reason,
                            customer_id,
                            mode: Some(mode),
                        },
                    )
                    .await
            }
            _ => Ok(()),
        }
    }

    /// The workflow's end of an orchestrated order: record it, and tell the
    /// customer of a cancellation (the workflow tells only of a success).
    async fn finished(&self, context: EventContext, finished: WorkflowFinished) -> Result<(), ServiceError> {
        let Some(order) = finished.correlation_id.as_deref().filter(|id| is_order_id(id)) else {
            return Ok(());
        };
        let ending = match finished.status {
            InstanceStatus::Completed => Ending::Completed {
                shipment_id: finished
                    .output
                    .as_ref()
                    .and_then(|output| output.get("shipment_id"))
                    .and_then(|id| id.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            },
            InstanceStatus::Compensated | InstanceStatus::Cancelled => {
                match failure_of(finished.reason.as_deref().unwrap_or_default()) {
                    Some(reason) => Ending::Cancelled(reason),
                    None => {
                        tracing::error!(order, instance = %finished.instance, reason = ?finished.reason, "The fulfilment was undone for a reason the shop does not know; the order stays placed.");
                        return Ok(());
                    }
                }
            }
            status => {
                tracing::error!(order, instance = %finished.instance, status = status.as_str(), reason = ?finished.reason, "The fulfilment failed without undoing everything; the order stays placed for someone to look at.");
                return Ok(());
            }
        };
        // `end` leaves an order of the other mode as it is, and finds none
        // for an order never placed here.
        let Some(record) = self
            .end(order, FlowMode::Orchestrated, &ending, Some(&finished.instance))
            .await?
        else {
            tracing::debug!(order, "A fulfilment ended for an order never placed here; ignored.");
            return Ok(());
        };
        if record.order.mode != FlowMode::Orchestrated {
            return Ok(());
        }
        let flow = order_flow(context.propagation(), order);
        self.announce_end(&flow, record.clone()).await?;
        if let (OrderStatus::Cancelled, Some(reason)) = (record.order.status, record.order.failure) {
            let request = SendNotification {
                order_id: record.order.order_id.clone(),
                customer_id: record.order.customer_id.clone(),
                kind: NotificationKind::OrderCancelled,
                message: cancelled_message(reason).to_owned(),
            };
            self.notifications
                .in_flow(&flow)
                .call::<notifications_api::Send>(&request)
                .await
                .map_err(|error| {
                    tracing::warn!(order, error = %error, "Could not tell the customer of the cancellation; retrying.");
                    ServiceError::unavailable("the notifications service did not answer")
                })?;
        }
        Ok(())
    }

    async fn list(&self, request: &ListOrders) -> Result<OrderPage, StoreError> {
        let limit = request.limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut orders: Vec<Order> = self
            .orders
            .all::<OrderRecord>()
            .await?
            .into_iter()
            .map(|(_, record)| record.order)
            .filter(|order| request.status.is_none_or(|status| order.status == status))
            .filter(|order| request.after.as_ref().is_none_or(|after| order.order_id > *after))
            .collect();
        orders.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        let more = orders.len() > limit;
        orders.truncate(limit);
        let next = if more {
            orders.last().map(|order| order.order_id.clone())
        } else {
            None
        };
        Ok(OrderPage { orders, next })
    }
}

/// Why the workflow was undone, from its reason (`step <id> failed: <CODE>:
/// ...`): the declared error code when it is the shop's, otherwise the
/// failing step (a reserve that kept timing out is still the stock that
/// could not be had).
fn failure_of(reason: &str) -> Option<FailureReason> {
    let rest = reason.strip_prefix("step ")?;
    let (step, rest) = rest.split_once(" failed: ")?;
    let code = rest.split(':').next().unwrap_or_default().trim();
    match code {
        "OUT_OF_STOCK" => return Some(FailureReason::OutOfStock),
        "PAYMENT_DECLINED" => return Some(FailureReason::PaymentDeclined),
        "SHIPPING_UNAVAILABLE" => return Some(FailureReason::ShippingUnavailable),
        _ => {}
    }
    match step {
        "reserve" => Some(FailureReason::OutOfStock),
        "charge" => Some(FailureReason::PaymentDeclined),
        "ship" => Some(FailureReason::ShippingUnavailable),
        _ => None,
    }
}

/// A failed start: the order is stored, so the caller may place it again.
fn start_failed(order: &str, error: &CallError) -> ServiceError {
    tracing::warn!(order, error = %error, "Could not start the fulfilment workflow.");
    match error.code() {
        ErrorCode::Unavailable | ErrorCode::Timeout => ServiceError::unavailable(format!(
            "order {order} is stored but its fulfilment did not start (is the orchestrator running with the \
             fulfilment workflow loaded?); place it again"
        )),
        _ => ServiceError::internal(format!("starting the fulfilment of {order}: {error}")),
    }
}

/// The order with its total: every item in one currency, the total summed.
/// A mixed currency or a total beyond 64 bits is the caller's error.
fn price(request: &PlaceOrder) -> Result<Order, ServiceError> {
    let Some(first) = request.items.first() else {
        return Err(ServiceError::invalid(
            "the order has no items",
            vec![detail("/items", "an order needs at least one item")],
        ));
    };
    let currency = first.unit_price.currency.clone();
    let mismatched: Vec<ErrorDetail> = request
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.unit_price.currency != currency)
        .map(|(index, item)| {
            detail(
                &format!("/items/{index}/unit_price/currency"),
                &format!("priced in {}, but the order is in {currency}", item.unit_price.currency),
            )
        })
        .collect();
    if !mismatched.is_empty() {
        return Err(ServiceError::invalid(
            format!("every item of an order must be priced in one currency, here {currency}"),
            mismatched,
        ));
    }
    let total = request.items.iter().try_fold(0_u64, |total, item| {
        u64::from(item.quantity)
            .checked_mul(item.unit_price.amount_cents)
            .and_then(|line| total.checked_add(line))
    });
    let Some(amount_cents) = total else {
        return Err(ServiceError::invalid(
            "the order's total is too large",
            vec![detail(
                "/items",
                "the sum of quantity × unit price does not fit in 64 bits",
            )],
        ));
    };
    Ok(Order {
        order_id: request.order_id.clone(),
        customer_id: request.customer_id.clone(),
        items: request.items.clone(),
        total: Money { amount_cents, currency },
        mode: request.mode,
        status: OrderStatus::Placed,
        failure: None,
    })
}

fn detail(pointer: &str, message: &str) -> ErrorDetail {
    ErrorDetail {
        pointer: pointer.to_owned(),
        schema_path: None,
        message: message.to_owned(),
    }
}

/// The operations.
fn service(orders: &Orders, config: &ShopConfig) -> Result<Service, ShopError> {
    let (for_place, for_get, for_list) = (orders.clone(), orders.clone(), orders.clone());
    Ok(Service::builder(orders::contract()?)
        .config(service_config(config))
        .handle::<orders::Place, _, _>(move |context, request: PlaceOrder| {
            let orders = for_place.clone();
            async move { orders.place(context.propagation(), request).await }
        })
        .handle::<orders::Get, _, _>(move |_context, request: GetOrder| {
            let orders = for_get.clone();
            async move {
                orders
                    .record(&request.order_id.0)
                    .await?
                    .map(|record| record.order)
                    .ok_or_else(|| ServiceError::not_found(format!("no order {} has been placed", request.order_id.0)))
            }
        })
        .handle::<orders::List, _, _>(move |_context, request: ListOrders| {
            let orders = for_list.clone();
            async move { Ok(orders.list(&request).await?) }
        })
        .build()?)
}

/// Calls made while handling a request: short, so a call that finds
/// nobody is answered well within the caller's own timeout.
fn call_options() -> CallOptions {
    CallOptions {
        timeout: Duration::from_secs(2),
        max_attempts: 2,
        ..CallOptions::default()
    }
}

/// Runs orders (its operations and its reactions) until `shutdown`.
pub(crate) async fn run(
    config: Arc<ShopConfig>,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), ShopError> {
    let js = jetstream::new(nats.clone());
    let bucket = set_up("opening orders' bucket", || {
        Bucket::open(&js, ORDERS_BUCKET, "soabus shop: one order per key", config.replicas)
    })
    .await?;
    let workflow: ContractDocument = fulfilment::contract()?;
    let orders = Arc::new(Orders {
        orders: bucket,
        publisher: publisher(&nats, orders::contract()?, config.replicas).await?,
        fulfilment: ServiceClient::new(nats.clone(), workflow.clone()).with_options(call_options()),
        notifications: ServiceClient::new(nats.clone(), notifications_api::contract()?).with_options(call_options()),
    });
    let service = service(&orders, &config)?;
    let mut tasks = Tasks::new(&shutdown);
    let on_scheduled = Arc::clone(&orders);
    spawn_consumer::<shipping::Scheduled, _, _>(
        &mut tasks,
        &nats,
        &config,
        &shipping::contract()?,
        "orders-shipping-scheduled",
        move |context, scheduled: ShipmentScheduled| {
            let orders = Arc::clone(&on_scheduled);
            async move {
                if driven_by_workflow(scheduled.mode) {
                    return Ok(());
                }
                let ending = Ending::Completed {
                    shipment_id: scheduled.shipment_id,
                };
                orders.end_choreographed(&context, &scheduled.order_id.0, ending).await
            }
        },
    );
    let on_out_of_stock = Arc::clone(&orders);
    spawn_consumer::<inventory::OutOfStock, _, _>(
        &mut tasks,
        &nats,
        &config,
        &inventory::contract()?,
        "orders-inventory-out-of-stock",
        move |context, shortage: StockShortage| {
            let orders = Arc::clone(&on_out_of_stock);
            async move {
                if driven_by_workflow(shortage.mode) {
                    return Ok(());
                }
                let ending = Ending::Cancelled(FailureReason::OutOfStock);
                orders.end_choreographed(&context, &shortage.order_id.0, ending).await
            }
        },
    );
    let on_declined = Arc::clone(&orders);
    spawn_consumer::<payments::Declined, _, _>(
        &mut tasks,
        &nats,
        &config,
        &payments::contract()?,
        "orders-payments-declined",
        move |context, declined: PaymentDeclined| {
            let orders = Arc::clone(&on_declined);
            async move {
                if driven_by_workflow(declined.mode) {
                    return Ok(());
                }
                let ending = Ending::Cancelled(FailureReason::PaymentDeclined);
                orders.end_choreographed(&context, &declined.order_id.0, ending).await
            }
        },
    );
    let on_failed = Arc::clone(&orders);
    spawn_consumer::<shipping::Failed, _, _>(
        &mut tasks,
        &nats,
        &config,
        &shipping::contract()?,
        "orders-shipping-failed",
        move |context, failed: ShipmentFailed| {
            let orders = Arc::clone(&on_failed);
            async move {
                if driven_by_workflow(failed.mode) {
                    return Ok(());
                }
                let ending = Ending::Cancelled(FailureReason::ShippingUnavailable);
                orders.end_choreographed(&context, &failed.order_id.0, ending).await
            }
        },
    );
    let on_finished = orders;
    spawn_consumer::<workflow_ops::Finished, _, _>(
        &mut tasks,
        &nats,
        &config,
        &workflow,
        "orders-fulfilment-finished",
        move |context, finished: WorkflowFinished| {
            let orders = Arc::clone(&on_finished);
            async move { orders.finished(context, finished).await }
        },
    );
    tasks.serve(service, nats).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_comes_from_the_code_or_else_the_step() {
        assert_eq!(
            failure_of("step charge failed: PAYMENT_DECLINED: the card issuer declined the charge"),
            Some(FailureReason::PaymentDeclined)
        );
        assert_eq!(
            failure_of("step reserve failed: OUT_OF_STOCK: 3 units of a asked for, 0 free"),
            Some(FailureReason::OutOfStock)
        );
        assert_eq!(
            failure_of("step ship failed: SHIPPING_UNAVAILABLE: no carrier"),
            Some(FailureReason::ShippingUnavailable)
        );
        assert_eq!(
            failure_of("step reserve failed: TIMEOUT: no reply"),
            Some(FailureReason::OutOfStock)
        );
        assert_eq!(failure_of("step notify failed: INTERNAL: oops"), None);
        assert_eq!(failure_of("cancelled: by hand"), None);
    }
}
