//! `soa order-view get|list|stats|rebuild`: the shop's read model, asked
//! through its own contract (`shop.order-view.v1.*`). The view is built
//! from the shop's events only; none of these commands asks the services
//! that own the orders.
//!
//! Exits 0 with the answer, 1 when the order is unknown (or a rebuild did
//! not catch up), 2 on a bad argument or when no order view answers.

use std::io::Write;
use std::time::Duration;

use bus_services::runtime::{CallError, CallOptions, ServiceClient};
use clap::{Args, Subcommand};
use contracts::shop::order_view::{
    self, GetOrderView, GetViewStats, LagSummary, ListOrderViews, OrderView, RebuildOrderView, ViewStats, ViewStatus,
};
use contracts::shop::{FlowMode, OrderId};
use contracts::{ErrorCode, OperationType};
use tokio_util::sync::CancellationToken;

use super::registry_client::{close, connect, until_cancelled, write_json};
use super::table::write_table;
use super::{Exit, NatsOptions, UsageError};

/// How long a query waits for its reply.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a rebuild may take before the command gives up waiting.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(180);

/// `soa order-view ...`.
#[derive(Debug, Subcommand)]
pub enum OrderViewCommand {
    /// Show one order as the read model holds it: status, items, amounts, when each step happened, the mode.
    ///
    /// Exits 0 when shown, 1 when the view has no such order, 2 on a
    /// malformed id or when no order view answers.
    Get(OrderViewGetArgs),
    /// List orders of the read model, by status and mode, a page at a time (in order id order).
    ///
    /// Exits 0 with the page (empty too), 2 on a bad filter or when no order view answers.
    List(OrderViewListArgs),
    /// Show how many events the view applied, how far it lags behind them, and how far each stream is read.
    Stats(OrderViewJsonArgs),
    /// Delete the view and build it again from the start of the shop's event streams.
    ///
    /// Answers once the view has caught up with every stream's last message
    /// at the time of the request. Exits 0 when rebuilt, 1 when it did not
    /// catch up in time, 2 when no order view answers.
    Rebuild(OrderViewJsonArgs),
}

/// Arguments of `soa order-view get`.
#[derive(Debug, Args)]
pub struct OrderViewGetArgs {
    /// The order's id.
    #[arg(value_name = "ORDER_ID")]
    pub order_id: String,
    /// Print the view as JSON, as the service answers it.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `soa order-view list`.
#[derive(Debug, Args)]
pub struct OrderViewListArgs {
    /// Only orders with this status: placed, reserved, paid, shipped, cancelling, completed, cancelled.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only orders fulfilled this way: orchestrated or choreographed.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Orders per page (1 to 500).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Start after this order id (the cursor a previous page printed).
    #[arg(long, value_name = "ORDER_ID")]
    pub cursor: Option<String>,
    /// Print the page as JSON, as the service answers it.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `soa order-view stats` and `rebuild`.
#[derive(Debug, Args)]
pub struct OrderViewJsonArgs {
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `soa order-view ...`.
pub(super) async fn run(
    nats: &NatsOptions,
    command: &OrderViewCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    // Arguments first: a bad one needs no server.
    let list = match command {
        OrderViewCommand::List(args) => Some(list_request(args)?),
        _ => None,
    };
    if let OrderViewCommand::Get(args) = command {
        order_id(&args.order_id)?;
    }
    let client = connect(nats, "soa-order-view", "ask the order view").await?;
    let contract = order_view::contract()?;
    let view = ServiceClient::new(client.clone(), contract);
    let url = nats.nats_url.as_str();
    let result = until_cancelled(&shutdown, async {
        match command {
            OrderViewCommand::Get(args) => {
                let request = GetOrderView {
                    order_id: order_id(&args.order_id)?,
                };
                match view
                    .with_options(query_options())
                    .call::<order_view::Get>(&request)
                    .await
                {
                    Ok(found) => {
                        if args.json {
                            write_json(out, &found)?;
                        } else {
                            write_order(out, &found)?;
                        }
                        Ok(Exit::Success)
                    }
                    Err(CallError::Service { body, .. }) if body.code == ErrorCode::NotFound => {
                        writeln!(err, "{}", body.message)?;
                        Ok(Exit::Failure)
                    }
                    Err(error) => Err(call_failed::<order_view::Get>(error, url)),
                }
            }
            OrderViewCommand::List(args) => {
                let request = list.clone().unwrap_or_default();
                let page = view
                    .with_options(query_options())
                    .call::<order_view::List>(&request)
                    .await
                    .map_err(|error| call_failed::<order_view::List>(error, url))?;
                if args.json {
                    write_json(out, &page)?;
                } else {
                    let mut rows = vec![[
                        "ORDER".to_owned(),
                        "STATUS".to_owned(),
                        "MODE".to_owned(),
                        "TOTAL".to_owned(),
                        "PLACED".to_owned(),
                        "FACTS".to_owned(),
                    ]];
                    for order in &page.orders {
                        rows.push([
                            order.order_id.0.clone(),
                            order.status.as_str().to_owned(),
                            mode_name(order.mode).to_owned(),
                            order
                                .total
                                .as_ref()
                                .map_or_else(|| "-".to_owned(), |total| money(total.amount_cents, &total.currency)),
                            order.steps.placed.clone().unwrap_or_else(|| "-".to_owned()),
                            order.facts.to_string(),
                        ]);
                    }
                    write_table(out, 0, &rows, &[false, false, false, true, false, true])?;
                    match &page.next_cursor {
                        Some(cursor) => writeln!(out, "\nMore: --cursor {}", cursor.0)?,
                        None => writeln!(out, "\n{} order(s), the last page.", page.orders.len())?,
                    }
                }
                Ok(Exit::Success)
            }
            OrderViewCommand::Stats(args) => {
                let stats = view
                    .with_options(query_options())
                    .call::<order_view::Stats>(&GetViewStats {})
                    .await
                    .map_err(|error| call_failed::<order_view::Stats>(error, url))?;
                if args.json {
                    write_json(out, &stats)?;
                } else {
                    write_stats(out, &stats)?;
                }
                Ok(Exit::Success)
            }
            OrderViewCommand::Rebuild(args) => {
                let options = CallOptions {
                    timeout: REBUILD_TIMEOUT,
                    max_attempts: 1,
                    ..CallOptions::default()
                };
                match view
                    .with_options(options)
                    .call::<order_view::Rebuild>(&RebuildOrderView {})
                    .await
                {
                    Ok(report) => {
                        if args.json {
                            write_json(out, &report)?;
                        } else {
                            writeln!(
                                out,
                                "Rebuilt the order view from the streams in {} ms: {} orders from {} events.",
                                report.took_ms, report.orders, report.events
                            )?;
                            let mut rows =
                                vec![["STREAM".to_owned(), "LAST SEQUENCE".to_owned(), "APPLIED".to_owned()]];
                            for stream in &report.streams {
                                rows.push([
                                    stream.stream.clone(),
                                    stream.last_sequence.to_string(),
                                    stream.applied_through.to_string(),
                                ]);
                            }
                            write_table(out, 2, &rows, &[false, true, true])?;
                        }
                        Ok(Exit::Success)
                    }
                    Err(CallError::Service { body, .. }) if body.code == ErrorCode::Unavailable => {
                        writeln!(err, "The rebuild did not finish: {}", body.message)?;
                        Ok(Exit::Failure)
                    }
                    Err(error) => Err(call_failed::<order_view::Rebuild>(error, url)),
                }
            }
        }
    })
    .await;
    close(client).await;
    result
}

fn query_options() -> CallOptions {
    CallOptions {
        timeout: QUERY_TIMEOUT,
        max_attempts: 2,
        ..CallOptions::default()
    }
}

/// An order id as the contracts define one.
fn order_id(text: &str) -> anyhow::Result<OrderId> {
    let valid =
        (1..=64).contains(&text.len()) && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(UsageError(format!(
            "{text:?} is not an order id; an order id is 1 to 64 letters, digits, '-' or '_'"
        ))
        .into());
    }
    Ok(OrderId(text.to_owned()))
}

/// The `list` request of the arguments; a bad filter is a usage error.
fn list_request(args: &OrderViewListArgs) -> anyhow::Result<ListOrderViews> {
    let status = match &args.status {
        None => None,
        Some(text) => Some(ViewStatus::parse(text).ok_or_else(|| {
            UsageError(format!(
                "--status {text:?} is no status; use placed, reserved, paid, shipped, cancelling, completed or cancelled"
            ))
        })?),
    };
    let mode = match args.mode.as_deref() {
        None => None,
        Some("orchestrated") => Some(FlowMode::Orchestrated),
        Some("choreographed") => Some(FlowMode::Choreographed),
        Some(other) => {
            return Err(UsageError(format!(
                "--mode {other:?} is no mode; use orchestrated or choreographed"
            ))
            .into());
        }
    };
    if !(1..=order_view::MAX_PAGE_SIZE).contains(&args.limit) {
        return Err(UsageError(format!(
            "--limit {} is out of range; use 1 to {}",
            args.limit,
            order_view::MAX_PAGE_SIZE
        ))
        .into());
    }
    let cursor = args.cursor.as_deref().map(order_id).transpose()?;
    Ok(ListOrderViews {
        status,
        mode,
        limit: Some(args.limit),
        cursor,
    })
}

fn call_failed<Op: OperationType>(error: CallError, url: &str) -> anyhow::Error {
    match error {
        CallError::Unavailable { subject, .. } => anyhow::Error::new(UsageError(format!(
            "no order view answers on {subject} at {url}; is the shop running (`soa up`)? Pass --nats-url if it \
             runs elsewhere"
        ))),
        CallError::Timeout { subject, timeout } => anyhow::Error::new(UsageError(format!(
            "the order view did not answer on {subject} at {url} within {timeout:?}"
        ))),
        other => anyhow::anyhow!("the order view failed to answer {}: {other}", Op::NAME),
    }
}

fn mode_name(mode: Option<FlowMode>) -> &'static str {
    match mode {
        Some(FlowMode::Orchestrated) => "orchestrated",
        Some(FlowMode::Choreographed) => "choreographed",
        None => "-",
    }
}

fn money(cents: u64, currency: &str) -> String {
    format!("{}.{:02} {currency}", cents / 100, cents % 100)
}

fn write_order(out: &mut dyn Write, order: &OrderView) -> anyhow::Result<()> {
    writeln!(
        out,
        "Order {}: {} ({}), {} fact(s) from the shop's events",
        order.order_id.0,
        order.status.as_str(),
        mode_name(order.mode),
        order.facts
    )?;
    if let Some(customer) = &order.customer_id {
        writeln!(out, "  customer      {customer}")?;
    }
    for item in &order.items {
        writeln!(
            out,
            "  item          {} × {} at {}",
            item.quantity,
            item.sku,
            money(item.unit_price.amount_cents, &item.unit_price.currency)
        )?;
    }
    let amounts = [
        ("total", order.total.as_ref()),
        ("charged", order.charged.as_ref()),
        ("refunded", order.refunded.as_ref()),
    ];
    for (name, amount) in amounts {
        if let Some(amount) = amount {
            writeln!(out, "  {name:<13} {}", money(amount.amount_cents, &amount.currency))?;
        }
    }
    if let Some(failure) = order.failure {
        writeln!(
            out,
            "  failure       {}",
            serde_json::to_value(failure)?.as_str().unwrap_or_default()
        )?;
    }
    let steps = serde_json::to_value(&order.steps)?;
    let mut times: Vec<(String, String)> = steps
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(step, at)| Some((at.as_str()?.to_owned(), step.replace('_', "-"))))
                .collect()
        })
        .unwrap_or_default();
    times.sort();
    writeln!(out, "Steps (when JetStream stored each event):")?;
    let rows: Vec<[String; 2]> = times.into_iter().map(|(at, step)| [at, step]).collect();
    write_table(out, 2, &rows, &[false, false])?;
    Ok(())
}

fn lag_row(name: &str, lag: &LagSummary) -> [String; 6] {
    [
        name.to_owned(),
        lag.events.to_string(),
        format!("{:.1}", lag.lag_p50_ms),
        format!("{:.1}", lag.lag_p90_ms),
        format!("{:.1}", lag.lag_p99_ms),
        format!("{:.1}", lag.lag_max_ms),
    ]
}

fn write_stats(out: &mut dyn Write, stats: &ViewStats) -> anyhow::Result<()> {
    writeln!(
        out,
        "The order view holds {} orders; {} events applied live ({} duplicates, {} dead letters); {}.",
        stats.orders,
        stats.events,
        stats.duplicates,
        stats.dead_letters,
        if stats.caught_up {
            "caught up with every stream"
        } else {
            "still catching up"
        }
    )?;
    writeln!(out, "Lag behind the events (ms):")?;
    let rows = vec![
        [
            "ORDERS".to_owned(),
            "EVENTS".to_owned(),
            "P50".to_owned(),
            "P90".to_owned(),
            "P99".to_owned(),
            "MAX".to_owned(),
        ],
        lag_row("all", &stats.lag),
        lag_row("orchestrated", &stats.orchestrated),
        lag_row("choreographed", &stats.choreographed),
    ];
    write_table(out, 2, &rows, &[false, true, true, true, true, true])?;
    writeln!(out, "Streams:")?;
    let mut rows = vec![["STREAM".to_owned(), "LAST SEQUENCE".to_owned(), "APPLIED".to_owned()]];
    for stream in &stats.streams {
        rows.push([
            stream.stream.clone(),
            stream.last_sequence.to_string(),
            stream.applied_through.to_string(),
        ]);
    }
    write_table(out, 2, &rows, &[false, true, true])?;
    Ok(())
}
