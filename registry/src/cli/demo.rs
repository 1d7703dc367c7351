//! `soa demo`, foundation edition: the shop's contracts compiled and linted,
//! then one operation served and called on a real NATS server, with every
//! request and reply validated against the contract.
//!
//! Until the runtime and the five shop services exist, the demo shows what is
//! real today and nothing more: it uses the server at `--nats-url` or starts
//! the installed nats-server, serves `shop.orders.v1.place` in the queue group
//! `orders`, sends it a valid order, an invalid one and one that is not JSON
//! from a second connection, prints what came back, checks that it was what
//! the contract promises, and shuts down in order.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::Client;
use bus_services::connection::{self, ConnectConfig, ConnectError};
use bus_services::local_server::{LocalNatsServer, LocalServerConfig};
use bus_services::wire::{self, CorrelationId, Envelope};
use clap::Args;
use contracts::envelope::headers;
use contracts::shop::orders::PlaceOrder;
use contracts::shop::{FlowMode, LineItem, Money, OrderId};
use contracts::{
    CompiledContract, ContractDocument, ErrorCode, MemberName, MessageKey, SchemaSet, Severity, compile_contract, lint,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Exit, NatsOptions, UsageError};

mod responder;

use responder::PlaceOrderResponder;

/// The queue group the demo's orders responder joins; every instance of a
/// service shares one, so requests are spread over them.
const QUEUE_GROUP: &str = "orders";

/// How long one request may wait for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long each start-up or shutdown step may take before the demo gives up waiting.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments of `soa demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// After the requests, keep serving shop.orders.v1.place until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// Where a nats-server started by the demo keeps its JetStream store and its log (in nats/).
    #[arg(long, value_name = "DIR", default_value = ".data")]
    pub data_dir: PathBuf,
}

/// Runs `soa demo`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &DemoArgs,
    out: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    writeln!(
        out,
        "soa demo (foundation edition): the shop's contracts, and one operation served and called on NATS\n"
    )?;
    let (orders, compiled) = compile_catalogue(out)?;
    let responder = PlaceOrderResponder::new(&orders, &compiled)?;
    let bus = Bus::connect(nats, args, out).await?;
    let served = serve_and_call(&bus, &orders, &compiled, responder, args, out, &shutdown).await;
    let closed = bus.close(out).await;
    let exit = served?;
    closed?;
    Ok(exit)
}

/// Step 1: every shop contract compiled and linted, as a table. Returns the
/// orders contract, which the rest of the demo serves.
fn compile_catalogue(out: &mut dyn Write) -> anyhow::Result<(ContractDocument, CompiledContract)> {
    let documents = contracts::shop::contracts().context("the shop's contracts do not build")?;
    let mut external = SchemaSet::default();
    for document in &documents {
        external.add_contract(document);
    }
    writeln!(
        out,
        "1. The shop catalogue, built from the Rust types, linted and compiled:\n"
    )?;
    let mut rows = vec![[
        "contract".to_owned(),
        "operations".to_owned(),
        "events".to_owned(),
        "subjects".to_owned(),
        "digest".to_owned(),
    ]];
    let mut problems = Vec::new();
    let mut warnings = 0;
    let mut orders = None;
    for document in &documents {
        for finding in lint(document, None, &external) {
            match finding.severity {
                Severity::Error => problems.push(format!("{}: {finding}", document.id())),
                Severity::Warning => warnings += 1,
            }
        }
        match compile_contract(document, &external) {
            Ok(compiled) => {
                if document.service.as_str() == "orders" {
                    orders = Some((document.clone(), compiled));
                }
            }
            Err(schema_problems) => {
                problems.extend(schema_problems.iter().map(ToString::to_string));
            }
        }
        let digest = document.digest();
        rows.push([
            document.id().to_string(),
            document.operations.len().to_string(),
            document.events.len().to_string(),
            subjects_of(document),
            digest.chars().take("sha256:".len() + 12).collect(),
        ]);
    }
    write_table(out, &rows, &[false, true, true, false, false])?;
    if !problems.is_empty() {
        anyhow::bail!("the shop catalogue does not check out:\n  {}", problems.join("\n  "));
    }
    writeln!(
        out,
        "\n   {} contracts, no errors, {warnings} warnings; every message schema compiled.\n",
        documents.len()
    )?;
    orders.context("the shop catalogue has no orders contract")
}

/// The subjects of a contract in short: `shop.orders.v1.*` when they share
/// their first three tokens, as the lint rules require.
fn subjects_of(document: &ContractDocument) -> String {
    let subjects: Vec<String> = document
        .operations
        .values()
        .map(|operation| operation.subject.to_string())
        .chain(document.events.values().map(|event| event.subject.to_string()))
        .collect();
    let prefixes: std::collections::BTreeSet<String> = subjects
        .iter()
        .map(|subject| {
            subject
                .rsplit_once('.')
                .map_or(subject.as_str(), |(prefix, _)| prefix)
                .to_owned()
        })
        .collect();
    match prefixes.into_iter().collect::<Vec<_>>().as_slice() {
        [prefix] => format!("{prefix}.* ({})", subjects.len()),
        _ => subjects.join(", "),
    }
}

/// Writes rows as aligned columns; `right[i]` right-aligns column `i`.
fn write_table<const N: usize>(out: &mut dyn Write, rows: &[[String; N]], right: &[bool; N]) -> std::io::Result<()> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::from("  ");
        for (index, cell) in row.iter().enumerate() {
            let width = widths[index];
            // Writing to a String cannot fail.
            let _ = if right[index] {
                write!(line, " {cell:>width$} ")
            } else {
                write!(line, " {cell:<width$} ")
            };
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The two connections of the demo, and the server they talk to when the
/// demo started it.
struct Bus {
    url: String,
    service: Client,
    caller: Client,
    local: Option<LocalNatsServer>,
}

impl Bus {
    /// Step 2: connects to the server at `--nats-url`, or starts one when
    /// nothing answers there. A server that answers but is refused (too old,
    /// wrong credentials) is an error: starting another would hide the problem.
    async fn connect(nats: &NatsOptions, args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<Self> {
        writeln!(out, "2. The NATS server:\n")?;
        let service_config = nats.connect_config("soa-demo-orders");
        let (url, service, local, config) = match connection::connect(&service_config).await {
            Ok(client) => {
                let version = client.try_server_info().map(|info| info.version).unwrap_or_default();
                writeln!(out, "   Using nats-server {version} at {}.\n", nats.nats_url)?;
                (nats.nats_url.clone(), client, None, service_config)
            }
            Err(ConnectError::Unreachable { url, .. }) => {
                let local = LocalNatsServer::start(LocalServerConfig::new(&args.data_dir))
                    .await
                    .with_context(|| format!("no NATS server answered at {url}, and none could be started here"))?;
                writeln!(
                    out,
                    "   No NATS server answered at {url}, so the demo started nats-server {} (pid {}) at {}.\n   \
                     Its JetStream store and log are in {}; it stops when the demo ends.\n",
                    local.version(),
                    local.pid(),
                    local.url(),
                    local.dir().display()
                )?;
                // The credentials and TLS options were for the server that did not answer.
                let config = ConnectConfig {
                    name: Some("soa-demo-orders".to_owned()),
                    ..ConnectConfig::for_url(local.url())
                };
                match connection::connect(&config).await {
                    Ok(client) => (local.url(), client, Some(local), config),
                    Err(error) => {
                        stop_local(local).await;
                        return Err(error).context("could not connect to the nats-server the demo started");
                    }
                }
            }
            Err(
                error @ (ConnectError::IncompleteUserAndPassword { .. }
                | ConnectError::IncompleteClientCertificate { .. }),
            ) => {
                return Err(anyhow::Error::new(error)
                    .context(UsageError("the NATS connection options are incomplete".to_owned())));
            }
            Err(error) => return Err(error.into()),
        };
        let caller_config = ConnectConfig {
            name: Some("soa-demo-caller".to_owned()),
            ..config
        };
        match connection::connect(&caller_config).await {
            Ok(caller) => Ok(Self {
                url,
                service,
                caller,
                local,
            }),
            Err(error) => {
                close_client(&service).await;
                if let Some(local) = local {
                    stop_local(local).await;
                }
                Err(error).context("could not open the caller's connection")
            }
        }
    }

    /// Step 5: drains both connections, then stops the server the demo started.
    async fn close(self, out: &mut dyn Write) -> anyhow::Result<()> {
        let caller = close_client(&self.caller).await;
        let service = close_client(&self.service).await;
        let mut said = if caller && service {
            String::from("   Drained both connections")
        } else {
            String::from("   Closed both connections (not all could be drained; see the log)")
        };
        if let Some(mut local) = self.local {
            let pid = local.pid();
            if let Some(status) = local.exit_status() {
                let _ = write!(said, "; nats-server (pid {pid}) had already exited ({status})");
            } else {
                local
                    .shutdown()
                    .await
                    .context("could not stop the nats-server the demo started")?;
                let _ = write!(said, " and stopped nats-server (pid {pid})");
            }
        }
        writeln!(out, "{said}.")?;
        Ok(())
    }
}

/// Flushes what the client still holds, drains it, and waits for the
/// connection to close. Returns whether it was drained; a step that hangs is
/// logged and skipped, so shutdown always ends.
async fn close_client(client: &Client) -> bool {
    if client.connection_state() != async_nats::connection::State::Connected {
        // Nothing can be flushed or drained without the server; async-nats
        // stops reconnecting once the last handle to the client is dropped.
        tracing::warn!("The connection is down; closing it without draining.");
        return false;
    }
    if tokio::time::timeout(STEP_TIMEOUT, client.flush()).await.is_err() {
        tracing::warn!("Flushing the connection timed out.");
    }
    if let Err(error) = client.drain().await {
        tracing::warn!(error = %error, "Could not drain the connection.");
        return false;
    }
    // async-nats reports no state change when a drained connection closes,
    // but a closed connection can no longer flush: that is the signal.
    let closed = tokio::time::timeout(STEP_TIMEOUT, async {
        while client.flush().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if closed.is_err() {
        tracing::warn!("The connection did not close after draining.");
        return false;
    }
    true
}

/// Stops a local server on an error path, where its own error would only
/// hide the one being reported.
async fn stop_local(local: LocalNatsServer) {
    if let Err(error) = local.shutdown().await {
        tracing::warn!(error = %error, "Could not stop the local nats-server.");
    }
}

/// Steps 3 and 4: serve `place`, call it three times, keep serving when asked,
/// then stop the responder.
async fn serve_and_call(
    bus: &Bus,
    orders: &ContractDocument,
    compiled: &CompiledContract,
    responder: PlaceOrderResponder,
    args: &DemoArgs,
    out: &mut dyn Write,
    shutdown: &CancellationToken,
) -> anyhow::Result<Exit> {
    let place = MemberName::parse("place")?;
    let subject = orders
        .operations
        .get(&place)
        .map(|operation| operation.subject.to_string())
        .context("the orders contract has no place operation")?;
    let subscriber = bus
        .service
        .queue_subscribe(subject.clone(), QUEUE_GROUP.to_owned())
        .await
        .with_context(|| format!("could not subscribe to {subject}"))?;
    // The subscription must be in effect on the server before the first request arrives.
    wire::round_trip(&bus.service, STEP_TIMEOUT)
        .await
        .context("the server did not confirm the subscription")?;
    writeln!(
        out,
        "3. Serving {subject} ({}) in queue group {QUEUE_GROUP:?}: each request is\n   \
         validated against the contract before the handler sees it, and each reply before it is sent.\n",
        orders.id()
    )?;

    let stop_responder = CancellationToken::new();
    let tracker = TaskTracker::new();
    let responder_task = tracker.spawn(responder::serve(
        bus.service.clone(),
        subscriber,
        responder,
        stop_responder.clone(),
    ));
    tracker.close();

    writeln!(
        out,
        "4. Three requests from a second connection, as any caller sends them:"
    )?;
    let response_validator = compiled
        .validators
        .get(&MessageKey::Response(place.clone()))
        .cloned()
        .context("the orders contract has no response schema for place")?;
    let caller = Caller {
        client: &bus.caller,
        orders,
        place: &place,
        subject: &subject,
        response: &response_validator,
    };
    let requests = tokio::select! {
        result = caller.send_all(out) => Some(result),
        () = shutdown.cancelled() => None,
    };
    let exit = match requests {
        Some(Ok(all_as_promised)) => {
            if all_as_promised {
                writeln!(out, "\n   Every reply was what the contract promises.\n")?;
                Ok(Exit::Success)
            } else {
                writeln!(
                    out,
                    "\n   Some replies were not what the contract promises (marked above).\n"
                )?;
                Ok(Exit::Failure)
            }
        }
        Some(Err(error)) => Err(error),
        None => {
            writeln!(out, "\n   Interrupted before the requests were done.\n")?;
            Ok(Exit::Failure)
        }
    };
    if args.keep_running && matches!(exit, Ok(Exit::Success)) && !shutdown.is_cancelled() {
        writeln!(
            out,
            "   Serving {subject} at {} until Ctrl-C. Try it from another client with the\n   \
             headers above; the reply says what the contract thinks of the request.\n",
            bus.url
        )?;
        out.flush()?;
        shutdown.cancelled().await;
    }

    writeln!(out, "5. Shutting down:\n")?;
    stop_responder.cancel();
    let abort_responder = responder_task.abort_handle();
    // Draining needs the server; without it, waiting for the drain is pointless.
    let drain_timeout = if bus.service.connection_state() == async_nats::connection::State::Connected {
        STEP_TIMEOUT
    } else {
        Duration::ZERO
    };
    let said = match tokio::time::timeout(drain_timeout, responder_task).await {
        Ok(Ok(answered)) => {
            format!("   Unsubscribed from {subject} after answering {answered} requests.")
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "The responder task failed.");
            format!("   The responder of {subject} failed: {error}.")
        }
        Err(_elapsed) => {
            abort_responder.abort();
            format!(
                "   The responder of {subject} could not drain its subscription (is the server \
                 gone?), so it was stopped."
            )
        }
    };
    tracker.wait().await;
    writeln!(out, "{said}")?;
    exit
}

/// What the demo expects a request's reply to be.
enum Expect {
    /// A success reply, with this total in cents.
    Accepted { total_cents: u64 },
    /// An error reply with this code, naming at least these pointers.
    Rejected {
        code: ErrorCode,
        pointers: &'static [&'static str],
    },
}

/// One request of the demo.
struct Case {
    title: &'static str,
    correlation_id: &'static str,
    payload: Vec<u8>,
    expect: Expect,
}

/// The three requests: valid, invalid in three ways, and not JSON.
fn cases() -> anyhow::Result<Vec<Case>> {
    let valid = PlaceOrder {
        order_id: OrderId("ord-demo-1".to_owned()),
        customer_id: "cust-42".to_owned(),
        items: vec![
            LineItem {
                sku: "sku-kettle".to_owned(),
                quantity: 1,
                unit_price: Money {
                    amount_cents: 2999,
                    currency: "EUR".to_owned(),
                },
            },
            LineItem {
                sku: "sku-mug".to_owned(),
                quantity: 2,
                unit_price: Money {
                    amount_cents: 850,
                    currency: "EUR".to_owned(),
                },
            },
        ],
        mode: FlowMode::Orchestrated,
    };
    let mut invalid = serde_json::to_value(&valid)?;
    invalid["order_id"] = Value::from("ord-demo-2");
    invalid["coupon"] = Value::from("FREE-KETTLE");
    invalid["items"][0]["quantity"] = Value::from(0);
    invalid["items"][0]["unit_price"]["currency"] = Value::from("eur");
    Ok(vec![
        Case {
            title: "a valid order: a kettle and two mugs, in EUR",
            correlation_id: "ord-demo-1",
            payload: serde_json::to_vec(&valid)?,
            expect: Expect::Accepted { total_cents: 4699 },
        },
        Case {
            title: "quantity 0, an unknown field \"coupon\" and the currency \"eur\"",
            correlation_id: "ord-demo-2",
            payload: serde_json::to_vec(&invalid)?,
            expect: Expect::Rejected {
                code: ErrorCode::ValidationFailed,
                pointers: &["", "/items/0/quantity", "/items/0/unit_price/currency"],
            },
        },
        Case {
            title: "a request that is not JSON at all",
            correlation_id: "ord-demo-3",
            payload: b"place order ord-demo-3: one kettle, please".to_vec(),
            expect: Expect::Rejected {
                code: ErrorCode::ValidationFailed,
                pointers: &[""],
            },
        },
    ])
}

/// The calling side of the demo: sends requests as a client of the contract.
struct Caller<'a> {
    client: &'a Client,
    orders: &'a ContractDocument,
    place: &'a MemberName,
    subject: &'a str,
    response: &'a contracts::MessageValidator,
}

impl Caller<'_> {
    /// Sends every case; true when every reply was as expected.
    async fn send_all(&self, out: &mut dyn Write) -> anyhow::Result<bool> {
        let mut all_as_promised = true;
        for (number, case) in cases()?.into_iter().enumerate() {
            all_as_promised &= self.send(number + 1, &case, out).await?;
        }
        Ok(all_as_promised)
    }

    /// Sends one case and prints the request and the reply; true when the
    /// reply was as expected.
    async fn send(&self, number: usize, case: &Case, out: &mut dyn Write) -> anyhow::Result<bool> {
        let envelope = Envelope::operation(self.orders.id(), self.place.clone())
            .with_correlation_id(Some(CorrelationId::parse(case.correlation_id)?));
        let request_headers = envelope.to_headers();
        writeln!(out, "\n   → #{number} {}", case.title)?;
        writeln!(
            out,
            "     {}: {}  {}: {}  {}: {}  {}: {}",
            headers::CONTRACT,
            envelope.contract,
            headers::OPERATION,
            self.place,
            headers::CORRELATION_ID,
            case.correlation_id,
            headers::MESSAGE_ID,
            envelope.message_id
        )?;
        writeln!(out, "     {}", String::from_utf8_lossy(&case.payload))?;

        let started = Instant::now();
        let reply = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.client
                .request_with_headers(self.subject.to_owned(), request_headers, case.payload.clone().into()),
        )
        .await
        .with_context(|| format!("no reply to request #{number} within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("request #{number} to {} failed", self.subject))?;
        let elapsed = started.elapsed();
        let took = format!("{:.1} ms", elapsed.as_secs_f64() * 1000.0);

        let as_expected = match wire::decode_error(reply.headers.as_ref(), &reply.payload) {
            Some(error) => {
                let status = wire::header(reply.headers.as_ref(), headers::SERVICE_ERROR_CODE).unwrap_or("?");
                writeln!(out, "   ← {status} {} in {took}: {}", error.code, error.message)?;
                for detail in &error.details {
                    let pointer = if detail.pointer.is_empty() {
                        "(root)"
                    } else {
                        &detail.pointer
                    };
                    writeln!(out, "       {pointer}: {}", detail.message)?;
                }
                match &case.expect {
                    Expect::Rejected { code, pointers } => {
                        let missing: Vec<&str> = pointers
                            .iter()
                            .copied()
                            .filter(|pointer| !error.details.iter().any(|detail| detail.pointer == *pointer))
                            .collect();
                        if *code != error.code || !missing.is_empty() {
                            writeln!(out, "   ✗ expected {code} naming {pointers:?}")?;
                            false
                        } else {
                            true
                        }
                    }
                    Expect::Accepted { .. } => {
                        writeln!(out, "   ✗ expected the order to be accepted")?;
                        false
                    }
                }
            }
            None => {
                // A caller checks replies too: a service may be older or newer than its contract says.
                let checked = self.response.validate_bytes(&reply.payload);
                match &checked {
                    Ok(_) => writeln!(
                        out,
                        "   ← OK in {took}; the reply matches the response schema of {}",
                        self.orders.id()
                    )?,
                    Err(failure) => writeln!(out, "   ← OK in {took}, but {failure}")?,
                }
                writeln!(out, "     {}", String::from_utf8_lossy(&reply.payload))?;
                let total = checked
                    .ok()
                    .and_then(|value| value.pointer("/total/amount_cents").and_then(Value::as_u64));
                match case.expect {
                    Expect::Accepted { total_cents } if total == Some(total_cents) => true,
                    Expect::Accepted { total_cents } => {
                        writeln!(out, "   ✗ expected a valid reply with a total of {total_cents} cents")?;
                        false
                    }
                    Expect::Rejected { ref code, .. } => {
                        writeln!(out, "   ✗ expected a {code} error")?;
                        false
                    }
                }
            }
        };
        Ok(as_expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_compiles_and_prints_a_row_per_contract() {
        let mut out = Vec::new();
        let (orders, compiled) = compile_catalogue(&mut out).unwrap();
        assert_eq!(orders.id().to_string(), "orders@1.0.0");
        assert_eq!(compiled.validators.len(), orders.messages().count());
        let table = String::from_utf8(out).unwrap();
        for expected in [
            "orders@1.0.0",
            "inventory@1.0.0",
            "shop.orders.v1.* (6)",
            "sha256:",
            "5 contracts, no errors",
        ] {
            assert!(table.contains(expected), "{table}");
        }
    }

    #[test]
    fn the_demo_cases_are_what_they_claim() {
        let cases = cases().unwrap();
        assert_eq!(cases.len(), 3);
        let invalid: Value = serde_json::from_slice(&cases[1].payload).unwrap();
        assert_eq!(invalid["items"][0]["quantity"], 0);
        assert!(serde_json::from_slice::<Value>(&cases[2].payload).is_err());
    }
}
