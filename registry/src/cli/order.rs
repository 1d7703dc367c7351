//! `soa order timeline ORDER_ID`: what happened to one order of the shop, in
//! order, with timings, rebuilt the way each flow mode allows.
//!
//! The order comes from the orders service (`shop.orders.v1.get`), which
//! says its mode. An orchestrated order's timeline is its workflow
//! instance's history: one query (`soa.orchestrator.v1.show`) once the
//! instance is known, from the orders service's record or else from
//! `soa.orchestrator.v1.list` by correlation id. A choreographed order has
//! nobody who knows the whole flow: every shop event stream is scanned for
//! the messages whose `Soa-Correlation-Id` is the order id, and the output
//! says how many streams and messages that took, which is the trade-off
//! `soa demo` measures.
//!
//! Exits 0 when shown, 1 when the order is unknown (or its instance is),
//! 2 on a malformed order id or when nothing answers.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use bus_services::runtime::{CallError, CallOptions, ServiceClient};
use bus_services::shop::{EventScan, StreamScan};
use clap::{Args, Subcommand};
use contracts::orchestrator_api::{
    InstanceState, InstanceStatus, ListInstancesRequest, ShowRequest, ops as orchestrator,
};
use contracts::shop::orders::{self, GetOrder, Order};
use contracts::shop::{FailureReason, FlowMode, OrderId, OrderStatus};
use contracts::{ContractDocument, ErrorCode, MemberName, OperationType};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::registry_client::{close, connect, until_cancelled, write_json};
use super::table::write_table;
use super::{Exit, NatsOptions, UsageError};

/// How long each call waits for its reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The most instances `list` is asked for when looking one up by correlation id.
const LIST_LIMIT: u32 = 10_000;

/// The longest payload summary shown in a row.
const SUMMARY_CHARS: usize = 96;

/// `soa order ...`.
#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// Show what happened to one order, in order, with timings.
    ///
    /// Orchestrated: the fulfilment instance's history (one query).
    /// Choreographed: the shop's event streams scanned for the order's
    /// correlation id (the output says how much was read). Exits 0 when
    /// shown, 1 when the order is unknown, 2 on a malformed order id or when
    /// nothing answers.
    Timeline(TimelineArgs),
}

/// Arguments of `soa order timeline`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// The order's id, as it was placed.
    #[arg(value_name = "ORDER_ID")]
    pub order_id: String,
    /// Print the timeline as JSON: the order, where it was read from, and every entry.
    #[arg(long)]
    pub json: bool,
}

/// Runs `soa order ...`.
pub(super) async fn run(
    nats: &NatsOptions,
    command: &OrderCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let OrderCommand::Timeline(args) = command;
    let client = connect(nats, "soa-order-timeline", "read an order's timeline").await?;
    let built = until_cancelled(&shutdown, build(&client, &nats.nats_url, &args.order_id)).await;
    close(client).await;
    let timeline = built?;
    if args.json {
        write_json(out, &timeline)?;
    } else {
        write_text(out, &timeline)?;
    }
    if timeline.status == OrderStatus::Placed {
        writeln!(
            err,
            "Order {} is still under way; run the command again for the rest.",
            timeline.order_id
        )?;
    }
    Ok(Exit::Success)
}

/// Reads the order, then its timeline the way its mode allows.
async fn build(nats: &async_nats::Client, url: &str, order_id: &str) -> anyhow::Result<Timeline> {
    let orders_contract =
        orders::contract().map_err(|error| anyhow::anyhow!("the orders contract does not build: {error}"))?;
    let orders_client = ServiceClient::new(nats.clone(), orders_contract).with_options(call_options());
    let order = orders_client
        .call::<orders::Get>(&GetOrder {
            order_id: OrderId(order_id.to_owned()),
        })
        .await
        .map_err(|error| match error {
            CallError::Service { body, .. } if body.code == ErrorCode::NotFound => anyhow::anyhow!(
                "{} (asked {} at {url}); check the id, or list the orders with \
                 `soa request shop.orders.v1.list '{{}}'`",
                body.message,
                subject_of::<orders::Get>(orders_client.contract())
            ),
            other => call_failed::<orders::Get>(other, url, order_id, "the orders service"),
        })?;
    match order.mode {
        FlowMode::Orchestrated => {
            let contract = contracts::orchestrator_api::contract()
                .map_err(|error| anyhow::anyhow!("the orchestrator's own contract does not build: {error}"))?;
            let orchestrator_client = ServiceClient::new(nats.clone(), contract).with_options(call_options());
            let (instance, found_by, queries) = find_instance(nats, &orchestrator_client, url, order_id).await?;
            let read_with = subject_of::<orchestrator::Show>(orchestrator_client.contract());
            let shown = orchestrator_client
                .call::<orchestrator::Show>(&ShowRequest {
                    instance: instance.clone(),
                })
                .await
                .map_err(|error| call_failed::<orchestrator::Show>(error, url, &instance, "the orchestrator"))?;
            Ok(Timeline::from_history(
                &order,
                &shown.instance,
                Reading {
                    found_by,
                    read_with,
                    queries: queries + 1,
                },
            ))
        }
        FlowMode::Choreographed => {
            let scan = bus_services::shop::scan_events(nats, order_id)
                .await
                .with_context(|| format!("scanning the shop's event streams at {url} for order {order_id}"))?;
            Ok(Timeline::from_scan(&order, scan))
        }
    }
}

/// The subject of `Op` in `contract`, as the contract declares it.
fn subject_of<Op: OperationType>(contract: &ContractDocument) -> String {
    MemberName::parse(Op::NAME)
        .ok()
        .and_then(|name| contract.operations.get(&name))
        .map_or_else(|| Op::NAME.to_owned(), |operation| operation.subject.to_string())
}

/// How an instance's history was reached.
#[derive(Debug, Clone)]
struct Reading {
    /// How the instance was found.
    found_by: String,
    /// The subject its history was read with.
    read_with: String,
    /// Orchestrator queries made, the `show` included.
    queries: u32,
}

fn call_options() -> CallOptions {
    CallOptions {
        timeout: CALL_TIMEOUT,
        max_attempts: 2,
        ..CallOptions::default()
    }
}

/// The fulfilment instance of an orchestrated order, how it was found, and
/// how many orchestrator queries that took: the orders service's record
/// names it once the order ended; until then (or without the record) `list`
/// finds it by correlation id.
async fn find_instance(
    nats: &async_nats::Client,
    orchestrator_client: &ServiceClient,
    url: &str,
    order_id: &str,
) -> anyhow::Result<(String, String, u32)> {
    match bus_services::shop::stored_order(nats, order_id).await {
        Ok(Some(stored)) => {
            if let Some(instance) = stored.instance {
                return Ok((instance, "the orders service's record".to_owned(), 0));
            }
        }
        Ok(None) => {}
        // The record is a shortcut; the orchestrator can answer without it.
        Err(error) => tracing::debug!(error = %error, "Could not read the order's record."),
    }
    let listed = orchestrator_client
        .call::<orchestrator::List>(&ListInstancesRequest {
            workflow: Some(contracts::shop::fulfilment::NAME.to_owned()),
            status: None,
            limit: Some(LIST_LIMIT),
        })
        .await
        .map_err(|error| call_failed::<orchestrator::List>(error, url, order_id, "the orchestrator"))?;
    let found = listed
        .instances
        .into_iter()
        .find(|instance| instance.correlation_id.as_deref() == Some(order_id));
    match found {
        Some(instance) => Ok((
            instance.instance,
            format!(
                "{} by correlation id",
                subject_of::<orchestrator::List>(orchestrator_client.contract())
            ),
            1,
        )),
        None => Err(anyhow::anyhow!(
            "order {order_id} is orchestrated, but neither the orders service's record nor the orchestrator \
             at {url} names a fulfilment instance for it; was the orchestrator running when it was placed? \
             Place it again (same id and contents) to start its fulfilment"
        )),
    }
}

/// A call's error for the command to return: nobody answering is a usage
/// error (exit 2) that says what to start, a malformed id too; `NOT_FOUND`
/// and anything else a failure (exit 1).
fn call_failed<Op: OperationType>(error: CallError, url: &str, key: &str, who: &str) -> anyhow::Error {
    match error {
        CallError::Unavailable { subject, .. } => anyhow::Error::new(UsageError(format!(
            "{who} does not answer on {subject} at {url}; is the shop running (`soa up`)? Pass --nats-url if it \
             runs elsewhere"
        ))),
        CallError::Timeout { subject, timeout } => anyhow::Error::new(UsageError(format!(
            "{who} did not answer on {subject} at {url} within {timeout:?}; is it overloaded, or cut off from \
             JetStream?"
        ))),
        CallError::Service { body, .. } if body.code == ErrorCode::NotFound => anyhow::anyhow!("{}", body.message),
        CallError::Service { body, .. } if body.code == ErrorCode::ValidationFailed => {
            let details: Vec<String> = body.details.iter().map(ToString::to_string).collect();
            anyhow::Error::new(UsageError(format!(
                "{key:?} is not an order id ({}); an order id is 1 to 64 letters, digits, '-' or '_'",
                details.join("; ")
            )))
        }
        other => anyhow::anyhow!("{who} failed to answer {}: {other}", Op::NAME),
    }
}

/// One order's timeline, as printed and as `--json` writes it.
#[derive(Debug, Clone, Serialize)]
struct Timeline {
    /// The order.
    order_id: String,
    /// How it is fulfilled.
    mode: FlowMode,
    /// Where it stands.
    status: OrderStatus,
    /// Why it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<FailureReason>,
    /// Where the entries were read from, and what that took.
    source: Source,
    /// What happened, oldest first.
    entries: Vec<Entry>,
}

/// Where a timeline was read from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Source {
    /// The workflow instance's history.
    WorkflowHistory {
        /// The instance.
        instance: String,
        /// Its workflow, `name@version`.
        workflow: String,
        /// Its status.
        status: InstanceStatus,
        /// How the instance was found.
        found_by: String,
        /// The subject its history was read with.
        read_with: String,
        /// Orchestrator queries made, the `show` included.
        queries: u32,
    },
    /// A scan of the shop's event streams.
    EventScan {
        /// Every stream and what was read from it.
        streams: Vec<StreamScan>,
        /// Streams that exist and were read.
        streams_read: usize,
        /// Messages read, all streams together.
        messages_read: u64,
        /// Messages about this order.
        matched: usize,
    },
}

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
struct Entry {
    /// Milliseconds since the first entry.
    offset_ms: f64,
    /// When, ms since the Unix epoch.
    at_ms: u64,
    /// When, as an RFC 3339 UTC time.
    at: String,
    /// What.
    #[serde(flatten)]
    what: What,
}

/// What happened: a workflow history event or a stored event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum What {
    /// From the instance's history.
    Workflow {
        /// `step-started`, `step-succeeded`, `compensation-started`, `completed`...
        kind: String,
        /// The step concerned.
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        /// The attempt concerned.
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
        /// An error or a choice.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// From a service's event stream.
    Event {
        /// The service that published it.
        producer: String,
        /// The event's name.
        event: String,
        /// Its subject.
        subject: String,
        /// The producer's contract, from `Soa-Contract`.
        #[serde(skip_serializing_if = "Option::is_none")]
        contract: Option<String>,
        /// The stream and sequence it is stored at.
        stream: String,
        /// Its sequence in the stream.
        sequence: u64,
        /// The payload in a line.
        summary: String,
        /// The payload.
        payload: Value,
    },
}

impl Timeline {
    /// The timeline of an orchestrated order from its instance.
    fn from_history(order: &Order, instance: &InstanceState, reading: Reading) -> Self {
        let first = instance.history.first().map_or(0, |event| event.at_ms);
        let entries = instance
            .history
            .iter()
            .map(|event| Entry {
                offset_ms: event.at_ms.saturating_sub(first) as f64,
                at_ms: event.at_ms,
                at: bus_services::shop::utc_time(event.at_ms),
                what: What::Workflow {
                    kind: event.kind.clone(),
                    step: event.step.clone(),
                    attempt: event.attempt,
                    detail: event.detail.clone(),
                },
            })
            .collect();
        Self {
            order_id: order.order_id.0.clone(),
            mode: order.mode,
            status: order.status,
            failure: order.failure,
            source: Source::WorkflowHistory {
                instance: instance.id.clone(),
                workflow: instance.workflow.clone(),
                status: instance.status,
                found_by: reading.found_by,
                read_with: reading.read_with,
                queries: reading.queries,
            },
            entries,
        }
    }

    /// The timeline of a choreographed order from a scan of the streams.
    fn from_scan(order: &Order, scan: EventScan) -> Self {
        let first = scan.events.first().map_or(0, |event| event.published_at_us);
        let (streams_read, messages_read, matched) = (scan.streams_read(), scan.messages_read(), scan.events.len());
        let entries = scan
            .events
            .into_iter()
            .map(|event| {
                let at_ms = event.published_at_us / 1_000;
                Entry {
                    offset_ms: (event.published_at_us.saturating_sub(first) as f64 / 1_000.0 * 10.0).round() / 10.0,
                    at_ms,
                    at: bus_services::shop::utc_time(at_ms),
                    what: What::Event {
                        summary: summarize(&event.payload),
                        producer: event.service,
                        event: event.event,
                        subject: event.subject,
                        contract: event.contract,
                        stream: event.stream,
                        sequence: event.sequence,
                        payload: event.payload,
                    },
                }
            })
            .collect();
        Self {
            order_id: order.order_id.0.clone(),
            mode: order.mode,
            status: order.status,
            failure: order.failure,
            source: Source::EventScan {
                streams: scan.streams,
                streams_read,
                messages_read,
                matched,
            },
            entries,
        }
    }
}

/// Prints the timeline as a heading, a table and how it was rebuilt.
fn write_text(out: &mut dyn Write, timeline: &Timeline) -> anyhow::Result<()> {
    let failure = timeline
        .failure
        .map(|failure| format!(" ({})", kebab(&failure)))
        .unwrap_or_default();
    writeln!(
        out,
        "Order {}: {}, {}{failure}.",
        timeline.order_id,
        kebab(&timeline.mode),
        kebab(&timeline.status)
    )?;
    match &timeline.source {
        Source::WorkflowHistory {
            instance,
            workflow,
            status,
            ..
        } => writeln!(out, "Workflow instance {instance} ({workflow}, {}).", kebab(status))?,
        Source::EventScan { .. } => {}
    }
    writeln!(out)?;
    if timeline.entries.is_empty() {
        writeln!(out, "   Nothing has happened to it yet.")?;
    } else {
        match &timeline.source {
            Source::WorkflowHistory { .. } => write_history_rows(out, &timeline.entries)?,
            Source::EventScan { .. } => write_event_rows(out, &timeline.entries)?,
        }
    }
    writeln!(out)?;
    match &timeline.source {
        Source::WorkflowHistory {
            found_by,
            read_with,
            queries,
            ..
        } => {
            let queries = if *queries == 1 {
                "1 query".to_owned()
            } else {
                format!("{queries} queries")
            };
            writeln!(
                out,
                "Rebuilt from {queries} to the orchestrator: the instance (found through {found_by}) keeps its own \
                 history, read with {read_with}."
            )?;
        }
        Source::EventScan {
            streams,
            streams_read,
            messages_read,
            matched,
        } => {
            let names: Vec<&str> = streams
                .iter()
                .filter(|stream| stream.exists)
                .map(|stream| stream.stream.stream.as_str())
                .collect();
            writeln!(
                out,
                "Rebuilt by scanning {streams_read} stream{} ({}) from their first message to their last: \
                 {messages_read} message{} read, {matched} about this order.",
                if *streams_read == 1 { "" } else { "s" },
                names.join(", "),
                if *messages_read == 1 { "" } else { "s" },
            )?;
            let missing: Vec<&str> = streams
                .iter()
                .filter(|stream| !stream.exists)
                .map(|stream| stream.stream.stream.as_str())
                .collect();
            if !missing.is_empty() {
                writeln!(
                    out,
                    "Not found (their services never ran here): {}.",
                    missing.join(", ")
                )?;
            }
        }
    }
    Ok(())
}

fn write_history_rows(out: &mut dyn Write, entries: &[Entry]) -> std::io::Result<()> {
    let mut rows = vec![["OFFSET", "AT (UTC)", "WHAT", "STEP", "DETAIL"].map(str::to_owned)];
    for entry in entries {
        if let What::Workflow {
            kind,
            step,
            attempt,
            detail,
        } = &entry.what
        {
            let step = match (step, attempt) {
                (Some(step), Some(attempt)) => format!("{step} (attempt {attempt})"),
                (Some(step), None) => step.clone(),
                (None, _) => String::new(),
            };
            rows.push([
                offset(entry.offset_ms),
                entry.at.clone(),
                kind.clone(),
                step,
                detail
                    .as_deref()
                    .map(|detail| cut(detail, SUMMARY_CHARS))
                    .unwrap_or_default(),
            ]);
        }
    }
    write_table(out, 3, &rows, &[true, false, false, false, false])
}

fn write_event_rows(out: &mut dyn Write, entries: &[Entry]) -> std::io::Result<()> {
    let mut rows = vec![["OFFSET", "AT (UTC)", "PRODUCER", "EVENT", "SUBJECT", "SUMMARY"].map(str::to_owned)];
    for entry in entries {
        if let What::Event {
            producer,
            event,
            subject,
            summary,
            ..
        } = &entry.what
        {
            rows.push([
                offset(entry.offset_ms),
                entry.at.clone(),
                producer.clone(),
                event.clone(),
                subject.clone(),
                summary.clone(),
            ]);
        }
    }
    write_table(out, 3, &rows, &[true, false, false, false, false, false])
}

/// `+12.3 ms`.
fn offset(ms: f64) -> String {
    format!("+{ms:.1} ms")
}

/// A value's name as serde writes it: `orchestrated`, `payment-declined`.
fn kebab(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// A payload in a line: its fields but the order id, money as `12.34 EUR`,
/// lists by their length.
fn summarize(payload: &Value) -> String {
    let text = match payload {
        Value::Object(fields) => fields
            .iter()
            .filter(|(name, _)| name.as_str() != "order_id")
            .map(|(name, value)| format!("{name}={}", short(value)))
            .collect::<Vec<_>>()
            .join(" "),
        other => short(other),
    };
    cut(&text, SUMMARY_CHARS)
}

fn short(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => format!("[{} item{}]", items.len(), if items.len() == 1 { "" } else { "s" }),
        Value::Object(fields) => match (
            fields.get("amount_cents").and_then(Value::as_u64),
            fields.get("currency").and_then(Value::as_str),
        ) {
            (Some(cents), Some(currency)) => format!("{}.{:02} {currency}", cents / 100, cents % 100),
            _ => "{…}".to_owned(),
        },
        other => other.to_string(),
    }
}

/// `text`, cut to `max` characters with an ellipsis.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use bus_services::shop::{EventStream, FlowEvent};
    use contracts::orchestrator_api::HistoryEvent;
    use contracts::shop::{LineItem, Money};
    use expect_test::expect;
    use serde_json::json;

    use super::*;

    fn order(mode: FlowMode, status: OrderStatus, failure: Option<FailureReason>) -> Order {
        Order {
            order_id: OrderId("o-1".to_owned()),
            customer_id: "cust-1".to_owned(),
            items: vec![LineItem {
                sku: "sku-tea".to_owned(),
                quantity: 2,
                unit_price: Money {
                    amount_cents: 499,
                    currency: "EUR".to_owned(),
                },
            }],
            total: Money {
                amount_cents: 998,
                currency: "EUR".to_owned(),
            },
            mode,
            status,
            failure,
        }
    }

    fn text(timeline: &Timeline) -> String {
        let mut out = Vec::new();
        write_text(&mut out, timeline).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_orchestrated_timeline_is_the_instance_history() {
        let at = 1_738_326_896_000;
        let event = |offset: u64, kind: &str, step: Option<&str>, detail: Option<&str>| HistoryEvent {
            at_ms: at + offset,
            kind: kind.to_owned(),
            step: step.map(str::to_owned),
            attempt: step.map(|_| 1),
            detail: detail.map(str::to_owned),
        };
        let instance: InstanceState = serde_json::from_value(json!({
            "id": "fulfilment-o-1",
            "workflow": "fulfilment@1.0.0",
            "status": "compensated",
            "input": {},
            "created_at_ms": at,
            "updated_at_ms": at + 40,
            "steps": {},
            "completed": [],
            "choices": {},
            "history": [],
        }))
        .unwrap();
        let instance = InstanceState {
            history: vec![
                event(0, "started", None, None),
                event(1, "step-started", Some("reserve"), None),
                event(5, "step-succeeded", Some("reserve"), None),
                event(6, "step-started", Some("charge"), None),
                event(
                    17,
                    "step-failed",
                    Some("charge"),
                    Some("DECLINED: the card was declined"),
                ),
                event(18, "compensation-started", None, Some("charge failed")),
                event(40, "compensated", None, None),
            ],
            ..instance
        };
        let timeline = Timeline::from_history(
            &order(
                FlowMode::Orchestrated,
                OrderStatus::Cancelled,
                Some(FailureReason::PaymentDeclined),
            ),
            &instance,
            Reading {
                found_by: "the orders service's record".to_owned(),
                read_with: "soa.orchestrator.v1.show".to_owned(),
                queries: 1,
            },
        );
        expect![[r#"
            Order o-1: orchestrated, cancelled (payment-declined).
            Workflow instance fulfilment-o-1 (fulfilment@1.0.0, compensated).

                 OFFSET  AT (UTC)                  WHAT                  STEP                 DETAIL
                +0.0 ms  2025-01-31T12:34:56.000Z  started
                +1.0 ms  2025-01-31T12:34:56.001Z  step-started          reserve (attempt 1)
                +5.0 ms  2025-01-31T12:34:56.005Z  step-succeeded        reserve (attempt 1)
                +6.0 ms  2025-01-31T12:34:56.006Z  step-started          charge (attempt 1)
               +17.0 ms  2025-01-31T12:34:56.017Z  step-failed           charge (attempt 1)   DECLINED: the card was declined
               +18.0 ms  2025-01-31T12:34:56.018Z  compensation-started                       charge failed
               +40.0 ms  2025-01-31T12:34:56.040Z  compensated

            Rebuilt from 1 query to the orchestrator: the instance (found through the orders service's record) keeps its own history, read with soa.orchestrator.v1.show.
        "#]]
        .assert_eq(&text(&timeline));
        let json = serde_json::to_value(&timeline).unwrap();
        assert_eq!(json["source"]["kind"], "workflow-history");
        assert_eq!(json["entries"][1]["type"], "workflow");
        assert_eq!(json["entries"][1]["step"], "reserve");
        assert_eq!(json["entries"][4]["offset_ms"], 17.0);
    }

    #[test]
    fn a_choreographed_timeline_says_what_the_scan_read() {
        let at_us = 1_738_326_896_000_000;
        let stream = |service: &str| EventStream {
            service: service.to_owned(),
            stream: format!("SOA_EVENTS_{}_V1", service.to_ascii_uppercase()),
        };
        let event = |offset_us: u64, service: &str, name: &str, payload: Value| FlowEvent {
            service: service.to_owned(),
            stream: stream(service).stream,
            sequence: 7,
            subject: format!("shop.{service}.v1.{name}"),
            contract: Some(format!("{service}@1.0.0")),
            event: name.to_owned(),
            published_at_us: at_us + offset_us,
            payload,
        };
        let scan = EventScan {
            streams: vec![
                StreamScan {
                    stream: stream("orders"),
                    exists: true,
                    last_sequence: 40,
                    messages_read: 40,
                },
                StreamScan {
                    stream: stream("inventory"),
                    exists: true,
                    last_sequence: 30,
                    messages_read: 30,
                },
                StreamScan {
                    stream: stream("shipping"),
                    exists: false,
                    last_sequence: 0,
                    messages_read: 0,
                },
            ],
            events: vec![
                event(
                    0,
                    "orders",
                    "placed",
                    json!({"order_id": "o-1", "customer_id": "cust-1", "items": [{}],
                           "total": {"amount_cents": 998, "currency": "EUR"}, "mode": "choreographed"}),
                ),
                event(
                    1_250,
                    "inventory",
                    "reserved",
                    json!({"order_id": "o-1", "reservation_id": "r-1"}),
                ),
            ],
        };
        let timeline = Timeline::from_scan(&order(FlowMode::Choreographed, OrderStatus::Placed, None), scan);
        expect![[r#"
            Order o-1: choreographed, placed.

                OFFSET  AT (UTC)                  PRODUCER   EVENT     SUBJECT                     SUMMARY
               +0.0 ms  2025-01-31T12:34:56.000Z  orders     placed    shop.orders.v1.placed       customer_id=cust-1 items=[1 item] mode=choreographed total=9.98 EUR
               +1.3 ms  2025-01-31T12:34:56.001Z  inventory  reserved  shop.inventory.v1.reserved  reservation_id=r-1

            Rebuilt by scanning 2 streams (SOA_EVENTS_ORDERS_V1, SOA_EVENTS_INVENTORY_V1) from their first message to their last: 70 messages read, 2 about this order.
            Not found (their services never ran here): SOA_EVENTS_SHIPPING_V1.
        "#]]
        .assert_eq(&text(&timeline));
        let json = serde_json::to_value(&timeline).unwrap();
        assert_eq!(json["source"]["kind"], "event-scan");
        assert_eq!(json["source"]["messages_read"], 70);
        assert_eq!(json["entries"][1]["event"], "reserved");
        assert_eq!(json["entries"][1]["offset_ms"], 1.3);
    }

    #[test]
    fn long_summaries_are_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
