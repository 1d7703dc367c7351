//! A service in another language: the Python loyalty example
//! (`examples/python-loyalty`, nats-py and jsonschema, nothing of this
//! repository but its contract document) on a bus with the registry and the
//! shop. It registers and heartbeats, shows in `soa services` and `soa
//! discover`, answers `soa request` and the Rust `ServiceClient` with the same
//! reply and error headers and bodies as a Rust service, counts points from
//! payments' events exactly once, and deregisters on SIGTERM.
//!
//! Also here: the README's protocol section is regenerated from the contracts
//! and compared, and the Python source is checked to use the same names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use bus_services::runtime::micro::{InfoResponse, StatsResponse};
use bus_services::runtime::{CallError, ServiceClient};
use bus_services::shop::{Audit, ShopConfig};
use bus_services::wire;
use contracts::envelope::headers;
use contracts::registry_api::{InstanceInfo, InstancesRequest, ops};
use contracts::shop::FlowMode;
use contracts::shop::orders::PlaceOrder;
use contracts::{ErrorBody, ErrorCode, MemberName, MessageKey, SchemaSet, ServiceName, compile_contract};
use registry::cli::Exit;
use serde_json::{Value, json};
use tests::harness::workspace_root;
use tests::protocol;
use tests::python::{self, LoyaltyConfig, LoyaltyService};
use tests::registry::registry_client;
use tests::shop::{SOLD_OUT, ShopBus, order, shop_config, shop_events};

use crate::cli::{assert_exit, soa_at};

/// The Python service's operation as a Rust client types it. (`pub`, as the
/// operation marker's types must be; nothing outside this file sees them.)
#[allow(unreachable_pub)]
mod loyalty_ops {
    use serde::{Deserialize, Serialize};

    /// What `get-points` takes.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
    pub struct GetPoints {
        /// Whose points.
        pub customer_id: String,
    }

    /// What `get-points` answers.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
    pub struct Points {
        /// Whose points.
        pub customer_id: String,
        /// Points held.
        pub points: u64,
        /// Charges counted.
        pub charges: u64,
        /// Refunds counted.
        pub refunds: u64,
    }

    contracts::operations! {
        /// A customer's points.
        GetPointsOp = "get-points": GetPoints => Points;
    }
}
use loyalty_ops::{GetPoints, GetPointsOp, Points};

/// Asks for `customer`'s points with the typed client.
async fn points_of(client: &ServiceClient, customer: &str) -> Result<Points, CallError> {
    client
        .call::<GetPointsOp>(&GetPoints {
            customer_id: customer.to_owned(),
        })
        .await
}

const CUSTOMERS: [&str; 3] = ["cust-ada", "cust-bob", "cust-cyd"];

/// Order `n` of `prefix` for one of [`CUSTOMERS`]: a kettle or two at a
/// price that changes per order, and every seventh also asks for a product
/// that is sold out (so it is never charged).
fn loyalty_order(prefix: &str, n: usize, mode: FlowMode) -> PlaceOrder {
    let id = format!("{prefix}-{n}");
    let cents = 1_250 + 333 * n as u64;
    let quantity = 1 + (n % 2) as u32;
    let mut placed = if n % 7 == 3 {
        order(&id, mode, &[("sku-kettle", quantity, cents), (SOLD_OUT, 1, 100)])
    } else {
        order(&id, mode, &[("sku-kettle", quantity, cents)])
    };
    placed.customer_id = CUSTOMERS[n % CUSTOMERS.len()].to_owned();
    placed
}

/// The points the rule gives each customer for `orders`, read from the
/// payments service's books: one point per whole unit charged, for each order
/// charged and not refunded.
fn expected_points(books: &Audit, orders: &[PlaceOrder]) -> BTreeMap<String, Points> {
    let mut points: BTreeMap<String, Points> = CUSTOMERS
        .iter()
        .map(|customer| {
            let zero = Points {
                customer_id: (*customer).to_owned(),
                ..Points::default()
            };
            ((*customer).to_owned(), zero)
        })
        .collect();
    for placed in orders {
        let audit = &books.orders[&placed.order_id.0];
        let entry = points.get_mut(&placed.customer_id).unwrap();
        if audit.charged_cents > 0 {
            entry.charges += 1;
            if audit.refunded_cents > 0 {
                entry.refunds += 1;
            } else {
                entry.points += audit.charged_cents / 100;
            }
        }
    }
    points
}

/// Asks the Python service for every customer's points until they are
/// `expected` (events arrive asynchronously); fails with what it last said.
async fn wait_for_points(client: &ServiceClient, expected: &BTreeMap<String, Points>, loyalty: &LoyaltyService) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut actual = BTreeMap::new();
        for customer in expected.keys() {
            let points = points_of(client, customer)
                .await
                .unwrap_or_else(|err| panic!("{err}\nlog:\n{}", loyalty.logs()));
            actual.insert(customer.clone(), points);
        }
        if actual == *expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "points never matched the books:\nexpected {expected:#?}\nactual {actual:#?}\nlog:\n{}",
            loyalty.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks `subject` with an empty request; a failure shows the service's log.
async fn ask(nats: &async_nats::Client, subject: &str, loyalty: &LoyaltyService) -> async_nats::Message {
    nats.request(subject.to_owned(), "".into())
        .await
        .unwrap_or_else(|err| panic!("{subject}: {err}\nlog:\n{}", loyalty.logs()))
}

/// The registry's instances of `loyalty`.
async fn loyalty_instances(registry: &ServiceClient) -> Vec<InstanceInfo> {
    let request = InstancesRequest {
        service: Some(ServiceName::parse("loyalty").unwrap()),
    };
    registry.call::<ops::Instances>(&request).await.unwrap().instances
}

/// Waits until the registry holds exactly `instance` of loyalty, healthy and not drifting.
async fn wait_registered(registry: &ServiceClient, instance: &str, loyalty: &LoyaltyService) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let instances = loyalty_instances(registry).await;
        if let [only] = instances.as_slice()
            && only.instance_id == instance
            && only.healthy
            && !only.drift
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "loyalty never registered as {instance}: {instances:?}\nlog:\n{}",
            loyalty.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the durable consumer has nothing pending or unacknowledged.
async fn wait_consumed(nats: &async_nats::Client, consumer: &str) {
    let js = jetstream::new(nats.clone());
    let stream = js.get_stream("SOA_EVENTS_PAYMENTS_V1").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let info = stream.consumer_info(consumer).await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{consumer} still has {} pending and {} unacknowledged",
            info.num_pending,
            info.num_ack_pending
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Places `orders` and waits until the shop's books settle; the books.
async fn place_and_settle(bus: &ShopBus, orders: &[PlaceOrder]) -> Audit {
    for placed in orders {
        bus.place(placed).await.unwrap();
    }
    let ids: Vec<&str> = orders.iter().map(|placed| placed.order_id.0.as_str()).collect();
    bus.settled(&ids, Duration::from_secs(60)).await.unwrap()
}

#[tokio::test]
async fn a_python_service_registers_answers_like_rust_and_counts_points_once() {
    tests::init_tracing();
    let python = python::interpreter().unwrap_or_else(|err| panic!("{err}"));
    let document = python::contract().unwrap();
    let bus = ShopBus::start(ShopConfig {
        decline_rate: 0.25,
        shipping_failure_rate: 0.3,
        ..shop_config(11)
    })
    .await
    .unwrap();
    let url = bus.server.url();
    let registry = registry_client(&bus.server).await.unwrap();
    let mut loyalty = LoyaltyService::start(&python, LoyaltyConfig::new(&url, "loyalty-py-1"), &bus.nats)
        .await
        .unwrap();
    wait_registered(&registry, "loyalty-py-1", &loyalty).await;

    // The registry and NATS micro discovery both know it.
    let run = soa_at(&url, &["services"]).await;
    assert_exit(&run, Exit::Success);
    assert!(
        run.stdout
            .lines()
            .any(|line| line.starts_with("loyalty ") && line.contains(" 1.0.0 ") && line.contains(" 1/1 ")),
        "{}",
        run.stdout
    );
    let run = soa_at(&url, &["discover"]).await;
    assert_exit(&run, Exit::Success);
    assert!(
        run.stdout.lines().any(|line| line.starts_with("loyalty ")
            && line.contains(" loyalty-py-1 ")
            && line.contains(" loyalty@1.0.0 ")
            && line.contains("get-points (shop.loyalty.v1.get-points)")),
        "{}",
        run.stdout
    );
    // Its INFO reply decodes as the runtime's, with the digest Rust computes.
    let info = ask(&bus.nats, "$SRV.INFO.loyalty.loyalty-py-1", &loyalty).await;
    let info: InfoResponse = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info.identity.metadata["soa.contract"], "loyalty@1.0.0");
    assert_eq!(info.identity.metadata["soa.digest"], document.digest());
    assert_eq!(info.endpoints[0].queue_group, "loyalty");
    assert_eq!(info.endpoints[0].metadata["soa.idempotent"], "true");

    // soa request: a valid payload gets the reply.
    let run = soa_at(
        &url,
        &[
            "request",
            "shop.loyalty.v1.get-points",
            r#"{"customer_id": "cust-nobody"}"#,
        ],
    )
    .await;
    assert_exit(&run, Exit::Success);
    let reply: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        reply,
        json!({"customer_id": "cust-nobody", "points": 0, "charges": 0, "refunds": 0})
    );
    // An invalid one is refused by soa itself; sent anyway, the Python
    // service answers VALIDATION_FAILED with the pointers Rust finds.
    let invalid = r#"{"customer_id": "", "tier": "gold"}"#;
    let run = soa_at(&url, &["request", "shop.loyalty.v1.get-points", invalid]).await;
    assert_exit(&run, Exit::Failure);
    assert!(run.stderr.contains("nothing was sent"), "{}", run.stderr);
    let run = soa_at(
        &url,
        &[
            "request",
            "shop.loyalty.v1.get-points",
            invalid,
            "--no-validate",
            "--json",
        ],
    )
    .await;
    assert_exit(&run, Exit::Failure);
    assert!(
        run.stderr.starts_with(
            "error: the service replied VALIDATION_FAILED: the request of get-points does not match loyalty@1.0.0\n"
        ),
        "{}",
        run.stderr
    );
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    let python_body: ErrorBody = serde_json::from_value(answer["error"].clone()).unwrap();
    let get_points = MemberName::parse("get-points").unwrap();
    let compiled = compile_contract(&document, &SchemaSet::default()).unwrap();
    let rust_failure = compiled.validators[&MessageKey::Request(get_points)]
        .validate(&serde_json::from_str(invalid).unwrap())
        .unwrap_err();
    let rust_body = ErrorBody::from(rust_failure);
    assert_eq!(python_body.code, rust_body.code);
    assert_eq!(python_body.message, rust_body.message);
    let pointers = |body: &ErrorBody| -> BTreeSet<String> { body.details.iter().map(|d| d.pointer.clone()).collect() };
    assert_eq!(pointers(&python_body), pointers(&rust_body));
    assert_eq!(
        pointers(&python_body),
        BTreeSet::from(["".to_owned(), "/customer_id".to_owned()])
    );

    // The reply's headers, read raw: the envelope, the flow, the error headers.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut sent = async_nats::HeaderMap::new();
    sent.insert(headers::CORRELATION_ID, "flow-42");
    sent.insert(
        headers::TRACEPARENT,
        format!("00-{trace_id}-00f067aa0ba902b7-01").as_str(),
    );
    let reply = bus
        .nats
        .request_with_headers("shop.loyalty.v1.get-points", sent.clone(), invalid.into())
        .await
        .unwrap_or_else(|err| panic!("{err}\nlog:\n{}", loyalty.logs()));
    let received = reply.headers.as_ref();
    assert_eq!(wire::header(received, headers::CONTRACT), Some("loyalty@1.0.0"));
    assert_eq!(wire::header(received, headers::OPERATION), Some("get-points"));
    assert_eq!(wire::header(received, headers::CORRELATION_ID), Some("flow-42"));
    assert_eq!(wire::header(received, headers::MESSAGE_ID).map(str::len), Some(22));
    let traceparent = wire::header(received, headers::TRACEPARENT).unwrap();
    assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "{traceparent}");
    assert!(!traceparent.contains("00f067aa0ba902b7"), "a child span: {traceparent}");
    assert_eq!(wire::header(received, headers::SERVICE_ERROR_CODE), Some("400"));
    assert_eq!(
        wire::header(received, headers::SERVICE_ERROR),
        Some(rust_body.message.as_str())
    );
    assert_eq!(wire::decode_error(received, &reply.payload), Some(python_body.clone()));
    let reply = bus
        .nats
        .request_with_headers("shop.loyalty.v1.get-points", sent, "{not json".into())
        .await
        .unwrap_or_else(|err| panic!("{err}\nlog:\n{}", loyalty.logs()));
    let body = wire::decode_error(reply.headers.as_ref(), &reply.payload).unwrap();
    assert_eq!(body.code, ErrorCode::ValidationFailed);
    assert_eq!(body.details[0].pointer, "");
    assert!(
        body.details[0].message.starts_with("the payload is not valid JSON"),
        "{body}"
    );

    // The Rust client calls it like any service, errors typed.
    let client = ServiceClient::new(bus.nats.clone(), document.clone());
    let points = points_of(&client, "cust-ada").await.unwrap();
    assert_eq!(
        points,
        Points {
            customer_id: "cust-ada".to_owned(),
            ..Points::default()
        }
    );
    // A request the Rust types allow but the contract does not (an empty id):
    // the service's own validation answers.
    let error = points_of(&client, "").await.unwrap_err();
    let CallError::Service { body, .. } = &error else {
        panic!("not the service's error reply: {error:?}")
    };
    assert_eq!(body.code, ErrorCode::ValidationFailed);
    assert_eq!(body.details.len(), 1, "{body}");
    assert_eq!(body.details[0].pointer, "/customer_id");

    // Orders of both modes (payments announces its charges and refunds in
    // each): declines are never charged, shipping failures are refunded,
    // sold-out orders never reach payments.
    let first: Vec<PlaceOrder> = (0..15)
        .flat_map(|n| {
            [
                loyalty_order("chor", n, FlowMode::Choreographed),
                loyalty_order("orch", n, FlowMode::Orchestrated),
            ]
        })
        .collect();
    let books = place_and_settle(&bus, &first).await;
    let expected = expected_points(&books, &first);
    let (charges, refunds): (u64, u64) = expected
        .values()
        .fold((0, 0), |(c, r), points| (c + points.charges, r + points.refunds));
    assert!(
        charges >= 10 && refunds >= 2,
        "the seed must give charges and refunds: {expected:#?}"
    );
    for prefix in ["chor-", "orch-"] {
        let audits: Vec<_> = first
            .iter()
            .filter(|placed| placed.order_id.0.starts_with(prefix))
            .map(|placed| &books.orders[&placed.order_id.0])
            .collect();
        let charged = audits.iter().filter(|audit| audit.charged_cents > 0).count();
        let refunded = audits.iter().filter(|audit| audit.refunded_cents > 0).count();
        assert!(
            charged >= 5 && refunded >= 1,
            "the seed must give {prefix} orders charged ({charged}) and refunded ({refunded})"
        );
    }
    assert!(
        first
            .iter()
            .any(|placed| books.orders[&placed.order_id.0].charged_cents == 0),
        "the seed must give an order that is never charged"
    );
    wait_for_points(&client, &expected, &loyalty).await;

    // The same charge published again (a new message id, so JetStream keeps
    // it) is consumed and changes nothing.
    let events = shop_events(&bus.nats).await.unwrap();
    let charged = events
        .iter()
        .find(|event| event.subject == "shop.payments.v1.charged")
        .unwrap();
    let mut copy = async_nats::HeaderMap::new();
    copy.insert(headers::MESSAGE_ID, "a-second-copy-of-a-charge");
    jetstream::new(bus.nats.clone())
        .publish_with_headers(
            charged.subject.clone(),
            copy,
            serde_json::to_vec(&charged.payload).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // A charge that breaks payments' contract is moved to the dead letters
    // with the reason a Rust consumer gives, and counts for nothing.
    let js = jetstream::new(bus.nats.clone());
    let mut broken = async_nats::HeaderMap::new();
    broken.insert(headers::MESSAGE_ID, "a-broken-charge");
    js.publish_with_headers("shop.payments.v1.charged", broken, r#"{"order_id": "broken"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    wait_consumed(&bus.nats, "loyalty-payments-charged").await;
    wait_consumed(&bus.nats, "loyalty-payments-refunded").await;
    wait_for_points(&client, &expected, &loyalty).await;
    let dead_letters = js.get_stream(contracts::subjects::DEAD_LETTER_STREAM).await.unwrap();
    let letter = dead_letters
        .get_last_raw_message_by_subject(&contracts::subjects::dead_letter(
            "SOA_EVENTS_PAYMENTS_V1",
            "loyalty-payments-charged",
        ))
        .await
        .unwrap();
    let header = |name: &str| letter.headers.get(name).map(|value| value.as_str().to_owned());
    let reason = header(headers::DEAD_LETTER_REASON).unwrap();
    assert!(
        reason.starts_with("VALIDATION_FAILED: the event charged does not match payments@1.")
            && reason.contains("at (root): "),
        "{reason}"
    );
    assert_eq!(
        header(headers::DEAD_LETTER_SUBJECT).unwrap(),
        "shop.payments.v1.charged"
    );
    assert_eq!(
        header(headers::DEAD_LETTER_CONSUMER).unwrap(),
        "loyalty-payments-charged"
    );
    assert_eq!(header(headers::DEAD_LETTER_DELIVERIES).unwrap(), "1");
    assert_eq!(&letter.payload[..], br#"{"order_id": "broken"}"#);

    // SIGTERM: it deregisters (no waiting for the TTL) and exits 0.
    let status = loyalty.terminate(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "{status}\nlog:\n{}", loyalty.logs());
    assert_eq!(loyalty_instances(&registry).await, Vec::new());
    assert!(loyalty.logs().contains("Deregistered."), "{}", loyalty.logs());

    // Orders placed while it is down are counted by the next instance, from
    // where the durable consumers stopped.
    let second: Vec<PlaceOrder> = (15..21)
        .map(|n| loyalty_order("chor", n, FlowMode::Choreographed))
        .collect();
    place_and_settle(&bus, &second).await;
    let mut loyalty = LoyaltyService::start(&python, LoyaltyConfig::new(&url, "loyalty-py-2"), &bus.nats)
        .await
        .unwrap();
    let all: Vec<PlaceOrder> = first.iter().chain(&second).cloned().collect();
    let books = bus
        .settled(
            &all.iter().map(|placed| placed.order_id.0.as_str()).collect::<Vec<_>>(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let expected = expected_points(&books, &all);
    wait_for_points(&client, &expected, &loyalty).await;
    wait_registered(&registry, "loyalty-py-2", &loyalty).await;

    // Its STATS count what it answered, the last error as Rust writes it.
    let stats = ask(&bus.nats, "$SRV.STATS.loyalty.loyalty-py-2", &loyalty).await;
    let stats: StatsResponse = serde_json::from_slice(&stats.payload).unwrap();
    assert_eq!(stats.endpoints[0].name, "get-points");
    assert!(stats.endpoints[0].num_requests >= 3, "{stats:?}");
    assert_eq!(stats.endpoints[0].num_errors, 0, "{stats:?}");
    client.call_json("get-points", &json!({})).await.unwrap_err();
    let stats = ask(&bus.nats, "$SRV.STATS.loyalty.loyalty-py-2", &loyalty).await;
    let stats: StatsResponse = serde_json::from_slice(&stats.payload).unwrap();
    assert_eq!(stats.endpoints[0].num_errors, 1, "{stats:?}");
    assert_eq!(
        stats.endpoints[0].last_error,
        "VALIDATION_FAILED: the request of get-points does not match loyalty@1.0.0"
    );

    let status = loyalty.terminate(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "{status}\nlog:\n{}", loyalty.logs());
    bus.stop().await.unwrap();
}

/// The README's "Writing a service in another language" lists what the
/// contracts define; `SOA_UPDATE_README=1` rewrites the generated part.
#[test]
fn the_readme_section_is_generated_from_the_contracts() {
    let path = workspace_root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let generated = protocol::readme_section().unwrap();
    let current = protocol::section_in(&readme).unwrap_or_else(|| {
        panic!(
            "README.md has no generated protocol section between\n{}\nand\n{}",
            protocol::BEGIN_MARKER,
            protocol::END_MARKER
        )
    });
    if current == generated {
        return;
    }
    if std::env::var_os("SOA_UPDATE_README").is_some() {
        std::fs::write(&path, readme.replace(current, &generated)).unwrap();
        return;
    }
    panic!(
        "README.md's protocol section is out of date with the contracts; run\n  SOA_UPDATE_README=1 cargo test -p tests --test e2e polyglot\nExpected:\n{generated}"
    );
}

/// The Python example uses the header names, codes and numbers the
/// contracts define, and its contract document is one the registry accepts
/// and digests as Python does.
#[test]
fn the_python_example_speaks_the_contracts_names() {
    let source = std::fs::read_to_string(python::example_dir().join("loyalty.py")).unwrap();
    for (name, _, _) in protocol::header_rows() {
        if name == headers::EVENT || name == headers::IDEMPOTENCY_KEY {
            // Loyalty publishes no events, and its one operation is read-only.
            continue;
        }
        assert!(
            source.contains(&format!("= \"{name}\"")),
            "loyalty.py does not name {name}"
        );
    }
    for code in ErrorCode::COMMON {
        let entry = format!("\"{code}\": {},", code.status());
        assert!(source.contains(&entry), "loyalty.py does not map {entry}");
    }
    let declared = format!("DECLARED_STATUS = {}", ErrorCode::Declared("X".to_owned()).status());
    assert!(source.contains(&declared), "loyalty.py has no {declared}");
    for (verb, kind) in [
        ("PING", bus_services::runtime::micro::PING_RESPONSE_TYPE),
        ("INFO", bus_services::runtime::micro::INFO_RESPONSE_TYPE),
        ("STATS", bus_services::runtime::micro::STATS_RESPONSE_TYPE),
    ] {
        assert!(
            source.contains(&format!("\"{verb}\": \"{kind}\"")),
            "loyalty.py has no {kind}"
        );
    }
    for constant in [
        format!("REGISTRY_API = \"{}\"", contracts::subjects::REGISTRY_API_PREFIX),
        format!("DEAD_LETTER_STREAM = \"{}\"", contracts::subjects::DEAD_LETTER_STREAM),
        format!(
            "DEAD_LETTER_SUBJECTS = \"{}\"",
            contracts::subjects::DEAD_LETTER_SUBJECTS
        ),
    ] {
        assert!(source.contains(&constant), "loyalty.py has no {constant}");
    }

    // The document is exactly what the model writes back, so the digest
    // Python takes of the file is the registry's.
    let document = python::contract().unwrap();
    let raw: Value = serde_json::from_str(&python::contract_text().unwrap()).unwrap();
    assert_eq!(document.to_value(), raw);
    let (_, findings) = contracts::check_document(
        "loyalty.v1.json",
        &python::contract_text().unwrap(),
        &contracts::Limits::default(),
        &SchemaSet::default(),
    )
    .unwrap();
    assert_eq!(findings, Vec::new(), "soa contract check would report these");
}
