//! The demo's orders service: the whole `orders@1` contract served by the
//! service runtime, with the orders it accepts kept in memory.
//!
//! The handlers are plain calls into an [`OrderBook`], a small synchronous
//! core with its own tests; the runtime decodes and validates each request,
//! calls them, validates and encodes the response, and turns a
//! [`ServiceError`] into the wire error. Nothing here builds a reply.
//!
//! Memory is this process's own: a second instance in the same queue group
//! keeps other orders, which is why the real orders service will keep them in
//! JetStream instead.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bus_services::runtime::{BuildError, Service, ServiceConfig, ServiceError};
use contracts::shop::orders::{self, GetOrder, ListOrders, Order, OrderAccepted, OrderPage, PlaceOrder};
use contracts::shop::{Money, OrderId, OrderStatus};
use contracts::{ContractDocument, ErrorDetail, SchemaSet};

/// The most orders the demo keeps; past it, `place` answers `UNAVAILABLE`
/// rather than let a caller grow the process without bound.
pub(crate) const MAX_ORDERS: usize = 10_000;

/// The page size of `list` when the request names none.
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 50;

/// The largest page `list` returns, as the contract's `limit` allows.
const MAX_PAGE_SIZE: u32 = 500;

/// The orders accepted so far, by order id (so `list` pages in id order).
#[derive(Debug, Default)]
pub(crate) struct OrderBook {
    orders: Mutex<BTreeMap<OrderId, Order>>,
}

impl OrderBook {
    /// The map, whatever an earlier holder did: no code under this lock can
    /// panic half-way through a change, so a poisoned lock still holds whole orders.
    fn orders(&self) -> MutexGuard<'_, BTreeMap<OrderId, Order>> {
        self.orders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `place`: accepts the order and remembers it. Placing the same order
    /// again returns the first answer (the caller chose the id, so a retry is
    /// safe); placing other contents under a known id is a conflict.
    pub(crate) fn place(&self, request: PlaceOrder) -> Result<OrderAccepted, ServiceError> {
        let accepted = accept_order(&request)?;
        let mut orders = self.orders();
        if let Some(known) = orders.get(&request.order_id) {
            let same =
                known.customer_id == request.customer_id && known.items == request.items && known.mode == request.mode;
            return if same {
                Ok(OrderAccepted {
                    order_id: known.order_id.clone(),
                    status: known.status,
                    total: known.total.clone(),
                })
            } else {
                Err(ServiceError::conflict(format!(
                    "order {} was already placed with other contents; place it again only with the same customer, \
                     items and mode, or choose a new order id",
                    request.order_id.0
                )))
            };
        }
        if orders.len() >= MAX_ORDERS {
            return Err(ServiceError::unavailable(format!(
                "the demo's orders service keeps at most {MAX_ORDERS} orders in memory and has no room for more"
            )));
        }
        orders.insert(
            request.order_id.clone(),
            Order {
                order_id: request.order_id,
                customer_id: request.customer_id,
                items: request.items,
                total: accepted.total.clone(),
                mode: request.mode,
                status: accepted.status,
                failure: None,
            },
        );
        Ok(accepted)
    }

    /// `get`: the order, or `NOT_FOUND` when none was accepted under that id.
    pub(crate) fn get(&self, request: &GetOrder) -> Result<Order, ServiceError> {
        self.orders()
            .get(&request.order_id)
            .cloned()
            .ok_or_else(|| ServiceError::not_found(format!("no order {} has been placed here", request.order_id.0)))
    }

    /// `list`: the orders after `after` (in id order) with `status` when
    /// given, `limit` at a time; `next` is set when more remain.
    pub(crate) fn list(&self, request: &ListOrders) -> OrderPage {
        let limit = request.limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE);
        // A u32 of at most 500 always fits a usize.
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let start = request.after.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let orders = self.orders();
        let mut matching = orders
            .range((start, Bound::Unbounded))
            .map(|(_, order)| order)
            .filter(|order| request.status.is_none_or(|status| order.status == status));
        let page: Vec<Order> = matching.by_ref().take(limit).cloned().collect();
        let next = match (matching.next(), page.last()) {
            (Some(_), Some(last)) => Some(last.order_id.clone()),
            _ => None,
        };
        OrderPage { orders: page, next }
    }

    /// How many orders are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.orders().len()
    }
}

/// Prices an order: every item in one currency, the total summed. A mixed
/// currency or a total beyond 64 bits is the caller's error, named by the
/// pointers of the values at fault.
pub(crate) fn accept_order(order: &PlaceOrder) -> Result<OrderAccepted, ServiceError> {
    let Some(first) = order.items.first() else {
        return Err(ServiceError::invalid(
            "the order has no items",
            vec![detail("/items", "an order needs at least one item")],
        ));
    };
    let currency = &first.unit_price.currency;
    let mismatched: Vec<ErrorDetail> = order
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| &item.unit_price.currency != currency)
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
    let total = order.items.iter().try_fold(0_u64, |total, item| {
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
    Ok(OrderAccepted {
        order_id: order.order_id.clone(),
        status: OrderStatus::Placed,
        total: Money {
            amount_cents,
            currency: currency.clone(),
        },
    })
}

fn detail(pointer: &str, message: &str) -> ErrorDetail {
    ErrorDetail {
        pointer: pointer.to_owned(),
        schema_path: None,
        message: message.to_owned(),
    }
}

/// The orders service for `document` (the `orders@1` contract), with
/// `external` holding the contracts its `soa://` references point into, and
/// `book` as its memory.
pub(crate) fn service(
    document: ContractDocument,
    external: SchemaSet,
    config: ServiceConfig,
    book: Arc<OrderBook>,
) -> Result<Service, BuildError> {
    let (for_place, for_get, for_list) = (Arc::clone(&book), Arc::clone(&book), book);
    Service::builder(document)
        .schemas(external)
        .config(config)
        .handle::<orders::Place, _, _>(move |_ctx, request| std::future::ready(for_place.place(request)))
        .handle::<orders::Get, _, _>(move |_ctx, request| std::future::ready(for_get.get(&request)))
        .handle::<orders::List, _, _>(move |_ctx, request| std::future::ready(Ok(for_list.list(&request))))
        .build()
}

#[cfg(test)]
mod tests {
    use contracts::ErrorCode;
    use contracts::shop::{FlowMode, LineItem};

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

    fn order(id: &str, items: Vec<LineItem>) -> PlaceOrder {
        PlaceOrder {
            order_id: OrderId(id.to_owned()),
            customer_id: "cust-1".to_owned(),
            items,
            mode: FlowMode::Orchestrated,
        }
    }

    fn list(status: Option<OrderStatus>, after: Option<&str>, limit: Option<u32>) -> ListOrders {
        ListOrders {
            status,
            after: after.map(|after| OrderId(after.to_owned())),
            limit,
        }
    }

    fn ids(page: &OrderPage) -> Vec<&str> {
        page.orders.iter().map(|order| order.order_id.0.as_str()).collect()
    }

    #[test]
    fn the_total_is_the_sum_of_the_lines() {
        let accepted = accept_order(&order(
            "ord-1",
            vec![item("a", 2, 850, "EUR"), item("b", 1, 2999, "EUR")],
        ))
        .unwrap();
        assert_eq!(accepted.total.amount_cents, 4699);
        assert_eq!(accepted.total.currency, "EUR");
        assert_eq!(accepted.status, OrderStatus::Placed);
    }

    #[test]
    fn mixed_currencies_are_invalid_at_each_odd_item() {
        let error = accept_order(&order(
            "ord-1",
            vec![item("a", 1, 1, "EUR"), item("b", 1, 1, "USD"), item("c", 1, 1, "EUR")],
        ))
        .unwrap_err();
        assert_eq!(error.code(), &ErrorCode::ValidationFailed);
        let body = error.to_body();
        let pointers: Vec<&str> = body.details.iter().map(|detail| detail.pointer.as_str()).collect();
        assert_eq!(pointers, ["/items/1/unit_price/currency"]);
        assert_eq!(body.details[0].message, "priced in USD, but the order is in EUR");
    }

    #[test]
    fn a_total_too_large_is_refused_not_wrapped() {
        let error = accept_order(&order("ord-1", vec![item("a", 1000, u64::MAX / 10, "EUR")])).unwrap_err();
        assert_eq!(error.code(), &ErrorCode::ValidationFailed);
        assert_eq!(error.to_body().details[0].pointer, "/items");
        assert!(accept_order(&order("ord-1", Vec::new())).is_err());
    }

    #[test]
    fn placed_orders_can_be_fetched_and_refused_ones_cannot() {
        let book = OrderBook::default();
        book.place(order("ord-1", vec![item("a", 2, 100, "EUR")])).unwrap();
        book.place(order("ord-2", vec![item("a", 1, 1, "EUR"), item("b", 1, 1, "USD")]))
            .unwrap_err();
        let fetched = book
            .get(&GetOrder {
                order_id: OrderId("ord-1".to_owned()),
            })
            .unwrap();
        assert_eq!(fetched.total.amount_cents, 200);
        assert_eq!(fetched.customer_id, "cust-1");
        assert_eq!(fetched.status, OrderStatus::Placed);
        assert_eq!(fetched.failure, None);
        let missing = book
            .get(&GetOrder {
                order_id: OrderId("ord-2".to_owned()),
            })
            .unwrap_err();
        assert_eq!(missing.code(), &ErrorCode::NotFound);
        assert_eq!(missing.to_body().message, "no order ord-2 has been placed here");
    }

    #[test]
    fn placing_again_is_idempotent_and_other_contents_conflict() {
        let book = OrderBook::default();
        let first = book.place(order("ord-1", vec![item("a", 2, 100, "EUR")])).unwrap();
        let again = book.place(order("ord-1", vec![item("a", 2, 100, "EUR")])).unwrap();
        assert_eq!(first, again);
        let other = book.place(order("ord-1", vec![item("a", 3, 100, "EUR")])).unwrap_err();
        assert_eq!(other.code(), &ErrorCode::Conflict);
        assert_eq!(book.len(), 1);
        assert_eq!(
            book.get(&GetOrder {
                order_id: OrderId("ord-1".to_owned())
            })
            .unwrap()
            .items[0]
                .quantity,
            2,
            "a conflicting place changes nothing"
        );
    }

    #[test]
    fn the_book_has_a_ceiling() {
        let book = OrderBook::default();
        for index in 0..MAX_ORDERS {
            book.place(order(&format!("ord-{index}"), vec![item("a", 1, 1, "EUR")]))
                .unwrap();
        }
        let full = book
            .place(order("one-too-many", vec![item("a", 1, 1, "EUR")]))
            .unwrap_err();
        assert_eq!(full.code(), &ErrorCode::Unavailable);
        // A retry of a kept order is still answered.
        book.place(order("ord-0", vec![item("a", 1, 1, "EUR")])).unwrap();
    }

    #[test]
    fn list_pages_in_id_order_by_status() {
        let book = OrderBook::default();
        for id in ["ord-c", "ord-a", "ord-e", "ord-b", "ord-d"] {
            book.place(order(id, vec![item("a", 1, 1, "EUR")])).unwrap();
        }
        let all = book.list(&list(None, None, None));
        assert_eq!(ids(&all), ["ord-a", "ord-b", "ord-c", "ord-d", "ord-e"]);
        assert_eq!(all.next, None);

        let first = book.list(&list(Some(OrderStatus::Placed), None, Some(2)));
        assert_eq!(ids(&first), ["ord-a", "ord-b"]);
        assert_eq!(first.next, Some(OrderId("ord-b".to_owned())));
        let second = book.list(&list(Some(OrderStatus::Placed), Some("ord-b"), Some(2)));
        assert_eq!(ids(&second), ["ord-c", "ord-d"]);
        let last = book.list(&list(None, Some("ord-d"), Some(2)));
        assert_eq!(ids(&last), ["ord-e"]);
        assert_eq!(last.next, None, "no next page after the last order");
        let exact = book.list(&list(None, Some("ord-c"), Some(2)));
        assert_eq!(ids(&exact), ["ord-d", "ord-e"]);
        assert_eq!(exact.next, None, "a page that ends with the last order has no next");

        // `after` need not be a known id: paging resumes at the next one.
        assert_eq!(ids(&book.list(&list(None, Some("ord-bb"), Some(1)))), ["ord-c"]);
        // Nothing is completed or cancelled yet: the demo does no fulfilment.
        let completed = book.list(&list(Some(OrderStatus::Completed), None, None));
        assert!(completed.orders.is_empty());
        assert_eq!(completed.next, None);
    }
}
