//! `soa demo`: the shop's contracts compiled and linted, then the orders
//! service run on the service runtime against a real NATS server and called
//! as any client calls it, with every request and reply validated against the
//! contract.
//!
//! It uses the server at `--nats-url` or starts the installed nats-server,
//! serves the whole `orders@1` contract (`place`, `get`, `list`) in the queue
//! group `orders`, then, from a second connection and with plain async-nats so
//! the output shows exactly what travels, places a valid order, an invalid one
//! and one that is not JSON, fetches the order it placed and the one it could
//! not, lists what was placed, checks that every reply is what the contract
//! promises, and shuts down in order.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::Client;
use bus_services::connection::{self, ConnectConfig, ConnectError};
use bus_services::local_server::{LocalNatsServer, LocalServerConfig};
use bus_services::runtime::{RunError, Service, ServiceConfig};
use bus_services::wire::{self, CorrelationId, Envelope};
use clap::Args;
use contracts::envelope::headers;
use contracts::shop::orders::{GetOrder, ListOrders, PlaceOrder};
use contracts::shop::{FlowMode, LineItem, Money, OrderId, OrderStatus};
use contracts::subjects::{self, DiscoveryVerb};
use contracts::{
    CompiledContract, ContractDocument, ErrorCode, MemberName, MessageKey, MessageValidator, SchemaSet, Severity,
    compile_contract, lint,
};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::discover::{self, Window};
use super::{Exit, NatsOptions, UsageError};

mod orders;

use orders::OrderBook;

/// How long one request may wait for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long each start-up or shutdown step may take before the demo gives up waiting.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the demo listens for other orders instances on the bus.
const OTHERS_WINDOW: Window = Window {
    quiet: Duration::from_millis(200),
    timeout: Duration::from_secs(1),
};

/// Arguments of `soa demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// After the requests, keep serving the orders contract until Ctrl-C.
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
        "soa demo: the shop's contracts, and the orders service run and called on NATS\n"
    )?;
    let catalogue = compile_catalogue(out)?;
    let book = Arc::new(OrderBook::default());
    let config = ServiceConfig {
        // The demo runs without a registry to register with.
        registration: None,
        shutdown_timeout: STEP_TIMEOUT,
        ..ServiceConfig::default()
    };
    let service = orders::service(catalogue.orders.clone(), catalogue.schemas.clone(), config, book)
        .context("the orders service does not build from its contract")?;
    let bus = Bus::connect(nats, args, out).await?;
    let served = serve_and_call(&bus, &catalogue, service, args, out, &shutdown).await;
    let closed = bus.close(out).await;
    let exit = served?;
    closed?;
    Ok(exit)
}

/// The shop catalogue as the demo uses it.
struct Catalogue {
    /// The orders contract, which the demo serves.
    orders: ContractDocument,
    /// Its compiled schemas, which the caller checks replies with.
    compiled: CompiledContract,
    /// Every shop contract, for `soa://` references between them.
    schemas: SchemaSet,
}

/// Step 1: every shop contract compiled and linted, as a table. Returns the
/// orders contract, which the rest of the demo serves, and the schemas.
fn compile_catalogue(out: &mut dyn Write) -> anyhow::Result<Catalogue> {
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
    write_table(out, 3, &rows, &[false, true, true, false, false])?;
    if !problems.is_empty() {
        anyhow::bail!("the shop catalogue does not check out:\n  {}", problems.join("\n  "));
    }
    writeln!(
        out,
        "\n   {} contracts, no errors, {warnings} warnings; every message schema compiled.\n",
        documents.len()
    )?;
    let (orders, compiled) = orders.context("the shop catalogue has no orders contract")?;
    Ok(Catalogue {
        orders,
        compiled,
        schemas: external,
    })
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

/// Writes rows as aligned columns, two spaces apart, each line after
/// `indent` spaces; `right[i]` right-aligns column `i`.
pub(super) fn write_table<const N: usize>(
    out: &mut dyn Write,
    indent: usize,
    rows: &[[String; N]],
    right: &[bool; N],
) -> std::io::Result<()> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = " ".repeat(indent);
        for (index, cell) in row.iter().enumerate() {
            let width = widths[index];
            let gap = if index == 0 { "" } else { "  " };
            // Writing to a String cannot fail.
            let _ = if right[index] {
                write!(line, "{gap}{cell:>width$}")
            } else {
                write!(line, "{gap}{cell:<width$}")
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

/// How the orders service's start went.
enum Started {
    /// It answers discovery, so its operations are served.
    Serving,
    /// It stopped before serving (it could not subscribe, say).
    Stopped(Result<Result<(), RunError>, tokio::task::JoinError>),
    /// It did not answer within [`STEP_TIMEOUT`].
    Slow,
}

/// Steps 3 to 5: runs the orders service, calls it, keeps serving when
/// asked, then stops it and says how many requests it answered. The
/// connections are closed afterwards, by [`Bus::close`].
async fn serve_and_call(
    bus: &Bus,
    catalogue: &Catalogue,
    service: Service,
    args: &DemoArgs,
    out: &mut dyn Write,
    shutdown: &CancellationToken,
) -> anyhow::Result<Exit> {
    let stop_service = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut running = tracker.spawn(service.clone().run(bus.service.clone(), stop_service.clone()));
    tracker.close();

    let exit = match until_serving(&bus.caller, &service, &mut running).await {
        Started::Serving => call_while_serving(bus, catalogue, &service, args, out, shutdown).await,
        Started::Stopped(joined) => {
            tracker.wait().await;
            return Err(match joined {
                Ok(Ok(())) => anyhow::anyhow!("the orders service stopped before it served"),
                Ok(Err(error)) => anyhow::Error::new(error).context("the orders service could not start"),
                Err(error) => anyhow::Error::new(error).context("the orders service's task failed"),
            });
        }
        Started::Slow => Err(anyhow::anyhow!(
            "the orders service did not answer discovery within {STEP_TIMEOUT:?}"
        )),
    };

    writeln!(out, "5. Shutting down:\n")?;
    stop_service.cancel();
    let abort_service = running.abort_handle();
    // Draining needs the server; without it, waiting for the drain is pointless.
    // The service gives up on its handlers after STEP_TIMEOUT; this waits a little longer.
    let drain_timeout = if bus.service.connection_state() == async_nats::connection::State::Connected {
        STEP_TIMEOUT + Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    let stopped = tokio::time::timeout(drain_timeout, running).await;
    // Read after the drain: requests delivered before the service stopped taking
    // more are answered during it, and count.
    let answered = answered(&service);
    let said = match stopped {
        Ok(Ok(Ok(()))) => format!(
            "   The orders service stopped taking requests and finished those in flight.\n   It answered {answered}."
        ),
        Ok(Ok(Err(error))) => {
            tracing::warn!(error = %error, "The orders service failed.");
            format!("   The orders service failed: {error}.\n   It had answered {answered}.")
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "The orders service's task failed.");
            format!("   The orders service's task failed: {error}.\n   It had answered {answered}.")
        }
        Err(_elapsed) => {
            abort_service.abort();
            format!(
                "   The orders service could not drain its subscriptions (is the server gone?), so it was \
                 stopped.\n   It had answered {answered}."
            )
        }
    };
    tracker.wait().await;
    writeln!(out, "{said}")?;
    exit
}

/// `N requests (place 3, get 2, list 1), M of them with an error reply`, from
/// the service's own `$SRV.STATS` counters.
fn answered(service: &Service) -> String {
    let stats = service.stats();
    let requests: u64 = stats.endpoints.iter().map(|endpoint| endpoint.num_requests).sum();
    let errors: u64 = stats.endpoints.iter().map(|endpoint| endpoint.num_errors).sum();
    let per_operation: Vec<String> = stats
        .endpoints
        .iter()
        .map(|endpoint| format!("{} {}", endpoint.name, endpoint.num_requests))
        .collect();
    format!(
        "{requests} {} ({}), {errors} of them with an error reply",
        if requests == 1 { "request" } else { "requests" },
        per_operation.join(", ")
    )
}

/// Waits until the instance answers `$SRV.PING.<service>.<id>`. The runtime
/// subscribes to its operations before its discovery subjects, on one
/// connection, so once the ping is answered the operations are served too.
async fn until_serving(caller: &Client, service: &Service, running: &mut JoinHandle<Result<(), RunError>>) -> Started {
    let ping = subjects::discovery(
        DiscoveryVerb::Ping,
        Some(service.contract().service.as_str()),
        Some(service.instance_id()),
    );
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let attempt = async {
            let reply = tokio::time::timeout(Duration::from_millis(250), caller.request(ping.clone(), "".into())).await;
            let answered = matches!(reply, Ok(Ok(_)));
            if !answered {
                // Nobody listens yet: the server said so at once.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answered
        };
        tokio::select! {
            joined = &mut *running => return Started::Stopped(joined),
            answered = attempt => if answered {
                return Started::Serving;
            },
        }
        if tokio::time::Instant::now() >= deadline {
            return Started::Slow;
        }
    }
}

/// The ids of the other orders instances on the bus. They share the queue
/// group but not this instance's memory, which the demo must say.
async fn other_instances(caller: &Client, service: &Service, shutdown: &CancellationToken) -> Vec<String> {
    let subject = subjects::discovery(DiscoveryVerb::Ping, Some(service.contract().service.as_str()), None);
    match discover::gather(caller, &subject, OTHERS_WINDOW, shutdown).await {
        Ok(gathered) => gathered
            .replies
            .iter()
            .filter_map(|reply| {
                let reply: Value = serde_json::from_slice(&reply.payload).ok()?;
                reply.get("id")?.as_str().map(str::to_owned)
            })
            .filter(|id| id != service.instance_id())
            .collect(),
        Err(error) => {
            tracing::warn!(error = %error, "Could not look for other orders instances.");
            Vec::new()
        }
    }
}

/// Steps 3 and 4: says what is served, sends the requests, and keeps serving
/// when asked.
async fn call_while_serving(
    bus: &Bus,
    catalogue: &Catalogue,
    service: &Service,
    args: &DemoArgs,
    out: &mut dyn Write,
    shutdown: &CancellationToken,
) -> anyhow::Result<Exit> {
    let info = service.info();
    let queue_group = info
        .endpoints
        .first()
        .map_or_else(String::new, |endpoint| endpoint.queue_group.clone());
    writeln!(
        out,
        "3. The orders service ({}) on the service runtime, instance {}, queue group {queue_group:?}:\n",
        catalogue.orders.id(),
        info.identity.id
    )?;
    let rows: Vec<[String; 2]> = info
        .endpoints
        .iter()
        .map(|endpoint| [endpoint.name.clone(), endpoint.subject.clone()])
        .collect();
    write_table(out, 3, &rows, &[false, false])?;
    writeln!(
        out,
        "\n   The runtime validates each request against the contract before a handler sees it, and each\n   \
         reply before it is sent. place keeps the orders it accepts in memory; get and list read them.\n   \
         The instance answers NATS micro discovery ({}, {}, {}); `soa discover` lists it.\n",
        subjects::discovery(DiscoveryVerb::Ping, None, None),
        subjects::discovery(DiscoveryVerb::Info, None, None),
        subjects::discovery(DiscoveryVerb::Stats, None, None),
    )?;
    let others = other_instances(&bus.caller, service, shutdown).await;
    if !others.is_empty() {
        writeln!(
            out,
            "   Note: other orders instances serve this bus in the same queue group: {}.\n   \
             Each keeps its own orders in memory, so get and list below may be answered by one\n   \
             that never saw the order.\n",
            others.join(", ")
        )?;
    }

    let cases = cases()?;
    writeln!(
        out,
        "4. The requests, from a second connection, as any caller sends them:"
    )?;
    let caller = Caller {
        client: &bus.caller,
        catalogue,
    };
    let requests = tokio::select! {
        result = caller.send_all(&cases, out) => Some(result),
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
                if !others.is_empty() {
                    writeln!(
                        out,
                        "   Other orders instances shared the requests (see the note above); run the demo\n   \
                         where it is the only one.\n"
                    )?;
                }
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
        let subjects: Vec<&str> = info
            .endpoints
            .iter()
            .map(|endpoint| endpoint.subject.as_str())
            .collect();
        writeln!(
            out,
            "   Serving {}\n   at {} until Ctrl-C. Call them from another client with the headers above,\n   \
             and watch the counters with `soa discover --nats-url {}`.\n",
            subjects.join(", "),
            bus.url,
            bus.url
        )?;
        out.flush()?;
        shutdown.cancelled().await;
    }
    exit
}

/// What the demo expects a request's reply to be.
enum Expect {
    /// A success reply for which `check` holds; `promise` says what that means.
    Reply {
        promise: &'static str,
        check: fn(&Value) -> bool,
    },
    /// An error reply with this code, naming at least these pointers.
    Rejected {
        code: ErrorCode,
        pointers: &'static [&'static str],
    },
}

/// One request of the demo.
struct Case {
    operation: &'static str,
    title: &'static str,
    correlation_id: Option<&'static str>,
    payload: Vec<u8>,
    expect: Expect,
}

/// The requests: three orders placed (valid, invalid in three ways, not
/// JSON), the valid one and the refused one fetched, and the placed ones listed.
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
    let get = |id: &str| {
        serde_json::to_vec(&GetOrder {
            order_id: OrderId(id.to_owned()),
        })
    };
    let list = ListOrders {
        status: Some(OrderStatus::Placed),
        after: None,
        limit: Some(10),
    };
    Ok(vec![
        Case {
            operation: "place",
            title: "a valid order: a kettle and two mugs, in EUR",
            correlation_id: Some("ord-demo-1"),
            payload: serde_json::to_vec(&valid)?,
            expect: Expect::Reply {
                promise: "the order placed, with a total of 4699 cents",
                check: |reply| {
                    reply["status"] == "placed"
                        && reply.pointer("/total/amount_cents").and_then(Value::as_u64) == Some(4699)
                },
            },
        },
        Case {
            operation: "place",
            title: "quantity 0, an unknown field \"coupon\" and the currency \"eur\"",
            correlation_id: Some("ord-demo-2"),
            payload: serde_json::to_vec(&invalid)?,
            expect: Expect::Rejected {
                code: ErrorCode::ValidationFailed,
                pointers: &["", "/items/0/quantity", "/items/0/unit_price/currency"],
            },
        },
        Case {
            operation: "place",
            title: "a request that is not JSON at all",
            correlation_id: Some("ord-demo-3"),
            payload: b"place order ord-demo-3: one kettle, please".to_vec(),
            expect: Expect::Rejected {
                code: ErrorCode::ValidationFailed,
                pointers: &[""],
            },
        },
        Case {
            operation: "get",
            title: "the order placed in #1",
            correlation_id: Some("ord-demo-1"),
            payload: get("ord-demo-1")?,
            expect: Expect::Reply {
                promise: "order ord-demo-1 with its two lines and a total of 4699 cents",
                check: |reply| {
                    reply["order_id"] == "ord-demo-1"
                        && reply["items"].as_array().map(Vec::len) == Some(2)
                        && reply.pointer("/total/amount_cents").and_then(Value::as_u64) == Some(4699)
                },
            },
        },
        Case {
            operation: "get",
            title: "the order refused in #2, which was never stored",
            correlation_id: Some("ord-demo-2"),
            payload: get("ord-demo-2")?,
            expect: Expect::Rejected {
                code: ErrorCode::NotFound,
                pointers: &[],
            },
        },
        Case {
            operation: "list",
            title: "the placed orders, ten to a page",
            correlation_id: None,
            payload: serde_json::to_vec(&list)?,
            expect: Expect::Reply {
                promise: "one page holding ord-demo-1 alone",
                check: |reply| {
                    let ids: Option<Vec<&str>> = reply["orders"]
                        .as_array()
                        .map(|orders| orders.iter().filter_map(|order| order["order_id"].as_str()).collect());
                    ids == Some(vec!["ord-demo-1"]) && reply.get("next").is_none()
                },
            },
        },
    ])
}

/// The calling side of the demo: sends requests as any client of the
/// contract does, with plain async-nats, so what is shown is what travels.
struct Caller<'a> {
    client: &'a Client,
    catalogue: &'a Catalogue,
}

impl Caller<'_> {
    /// Sends every case; true when every reply was as expected.
    async fn send_all(&self, cases: &[Case], out: &mut dyn Write) -> anyhow::Result<bool> {
        let mut all_as_promised = true;
        for (number, case) in cases.iter().enumerate() {
            all_as_promised &= self.send(number + 1, case, out).await?;
        }
        Ok(all_as_promised)
    }

    /// Sends one case and prints the request and the reply; true when the
    /// reply was as expected.
    async fn send(&self, number: usize, case: &Case, out: &mut dyn Write) -> anyhow::Result<bool> {
        let orders = &self.catalogue.orders;
        let operation = MemberName::parse(case.operation)?;
        let subject = orders
            .operations
            .get(&operation)
            .map(|declared| declared.subject.to_string())
            .with_context(|| format!("the orders contract has no {operation} operation"))?;
        let response: &MessageValidator = self
            .catalogue
            .compiled
            .validators
            .get(&MessageKey::Response(operation.clone()))
            .with_context(|| format!("the orders contract has no response schema for {operation}"))?;
        let correlation_id = case.correlation_id.map(CorrelationId::parse).transpose()?;
        let envelope = Envelope::operation(orders.id(), operation.clone()).with_correlation_id(correlation_id.clone());
        let request_headers = envelope.to_headers();
        writeln!(out, "\n   → #{number} {subject}: {}", case.title)?;
        let mut shown = format!(
            "     {}: {}  {}: {operation}",
            headers::CONTRACT,
            envelope.contract,
            headers::OPERATION
        );
        if let Some(correlation_id) = &correlation_id {
            let _ = write!(shown, "  {}: {correlation_id}", headers::CORRELATION_ID);
        }
        let _ = write!(shown, "  {}: {}", headers::MESSAGE_ID, envelope.message_id);
        writeln!(out, "{shown}")?;
        writeln!(out, "     {}", String::from_utf8_lossy(&case.payload))?;

        let started = Instant::now();
        let reply = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.client
                .request_with_headers(subject.clone(), request_headers, case.payload.clone().into()),
        )
        .await
        .with_context(|| format!("no reply to request #{number} within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("request #{number} to {subject} failed"))?;
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
                            if pointers.is_empty() {
                                writeln!(out, "   ✗ expected {code}")?;
                            } else {
                                writeln!(out, "   ✗ expected {code} naming {pointers:?}")?;
                            }
                            false
                        } else {
                            true
                        }
                    }
                    Expect::Reply { promise, .. } => {
                        writeln!(out, "   ✗ expected {promise}")?;
                        false
                    }
                }
            }
            None => {
                // A caller checks replies too: a service may be older or newer than its contract says.
                let checked = response.validate_bytes(&reply.payload);
                match &checked {
                    Ok(_) => writeln!(
                        out,
                        "   ← OK in {took}; the reply matches the response schema of {}",
                        orders.id()
                    )?,
                    Err(failure) => writeln!(out, "   ← OK in {took}, but {failure}")?,
                }
                writeln!(out, "     {}", String::from_utf8_lossy(&reply.payload))?;
                match &case.expect {
                    Expect::Reply { promise, check } => {
                        let kept = checked.as_ref().is_ok_and(check);
                        if !kept {
                            writeln!(out, "   ✗ expected {promise}")?;
                        }
                        kept
                    }
                    Expect::Rejected { code, .. } => {
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
        let catalogue = compile_catalogue(&mut out).unwrap();
        assert_eq!(catalogue.orders.id().to_string(), "orders@1.1.0");
        assert_eq!(catalogue.compiled.validators.len(), catalogue.orders.messages().count());
        let table = String::from_utf8(out).unwrap();
        for expected in [
            "orders@1.1.0",
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
        let operations: Vec<&str> = cases.iter().map(|case| case.operation).collect();
        assert_eq!(operations, ["place", "place", "place", "get", "get", "list"]);
        let invalid: Value = serde_json::from_slice(&cases[1].payload).unwrap();
        assert_eq!(invalid["items"][0]["quantity"], 0);
        assert!(serde_json::from_slice::<Value>(&cases[2].payload).is_err());
    }

    /// Runs the cases through the order book as the runtime would (request
    /// schema first), so the expectations are checked without a server.
    #[test]
    fn the_cases_expect_what_the_order_book_answers() {
        let catalogue = compile_catalogue(&mut Vec::new()).unwrap();
        let book = OrderBook::default();
        for case in cases().unwrap() {
            let operation = MemberName::parse(case.operation).unwrap();
            let validator = catalogue
                .compiled
                .validators
                .get(&MessageKey::Request(operation))
                .unwrap();
            let answer = match validator.validate_bytes(&case.payload) {
                Err(_) => Err(ErrorCode::ValidationFailed),
                Ok(request) => {
                    let answered = match case.operation {
                        "place" => book
                            .place(serde_json::from_value(request).unwrap())
                            .map(|accepted| serde_json::to_value(accepted).unwrap()),
                        "get" => book
                            .get(&serde_json::from_value(request).unwrap())
                            .map(|order| serde_json::to_value(order).unwrap()),
                        "list" => {
                            Ok(serde_json::to_value(book.list(&serde_json::from_value(request).unwrap())).unwrap())
                        }
                        other => panic!("no such operation {other}"),
                    };
                    answered.map_err(|error| error.code().clone())
                }
            };
            match (&case.expect, answer) {
                (Expect::Reply { promise, check }, Ok(reply)) => {
                    assert!(check(&reply), "{}: expected {promise}, got {reply}", case.title);
                }
                (Expect::Rejected { code, .. }, Err(actual)) => assert_eq!(code, &actual, "{}", case.title),
                (_, answer) => panic!("{}: unexpected {answer:?}", case.title),
            }
        }
    }
}
