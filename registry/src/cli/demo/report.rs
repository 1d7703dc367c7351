//! The comparison: per mode the counts, messages per order, latency,
//! throughput and coupling (from the registry's graph), the trade-offs as
//! figures, the side-by-side table, and `report.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use bus_services::shop::{Audit, OrderAudit};
use contracts::registry_api::{EdgeKind, GraphEdge, GraphResponse};
use contracts::shop::{FlowMode, OrderStatus};
use serde::Serialize;

use super::orders::OrderSet;
use super::run::{ModeRun, Outage, READ_MODEL, mode_name};
use super::view::OrderViewReport;

/// The workflow's service name in the graph.
const WORKFLOW: &str = "fulfilment";

/// Everything `soa demo` measured, as written to `report.json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// This run's id (it prefixes order ids and products).
    pub run: String,
    /// Orders per mode.
    pub orders: usize,
    /// The settings.
    pub settings: Settings,
    /// The machine's load average before and after.
    pub load: [String; 2],
    /// Per mode.
    pub modes: BTreeMap<String, ModeReport>,
    /// Orders whose business outcome differs between the modes.
    pub outcome_mismatches: Vec<String>,
    /// Broken invariants (stock, money, shipments) found by the audit.
    pub violations: Vec<String>,
    /// The trade-offs, as figures.
    pub tradeoffs: Tradeoffs,
    /// The read model: its lag behind the events (`lag_p50_ms`, `lag_p99_ms`,
    /// ... over both modes, and `by_mode`) and its comparison with the
    /// owning services.
    pub order_view: OrderViewReport,
}

/// How the demo ran.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    /// Orders in flight at once.
    pub concurrency: usize,
    /// Share of payments declined.
    pub decline_rate: f64,
    /// Share of orders asking for a sold-out product.
    pub out_of_stock_rate: f64,
    /// Share of shipments that cannot be scheduled.
    pub shipping_failure_rate: f64,
    /// The seed of the orders and failures.
    pub seed: u64,
    /// Seconds between orchestrator kills, if any.
    pub kill_orchestrator_every_s: Option<u64>,
    /// The service restarted during each mode, if any.
    pub restart_service: Option<String>,
}

/// One mode's figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModeReport {
    /// Orders completed.
    pub completed: usize,
    /// Orders cancelled with their effects undone.
    pub compensated: usize,
    /// Orders that did not end.
    pub stuck: usize,
    /// Compensated orders by reason.
    pub failures: BTreeMap<String, usize>,
    /// Place calls that failed.
    pub place_errors: u64,
    /// Every message on the bus while the mode ran, per order, but the
    /// read model's own (its KV writes, acks and queries), which are no part
    /// of fulfilment. `None` when they were not counted
    /// (`--no-message-count`).
    pub messages_per_order: Option<f64>,
    /// The same by kind (service messages, replies, JetStream, KV...);
    /// empty when they were not counted.
    pub messages_per_order_by_kind: BTreeMap<String, f64>,
    /// Placed to ended, from the orders service's records.
    pub latency_ms: Percentiles,
    /// Orders ended per second, first placed to last ended.
    pub throughput_per_s: f64,
    /// How long the mode ran.
    pub elapsed_ms: u64,
    /// For each service, the other services it must know.
    pub coupling: BTreeMap<String, Vec<String>>,
    /// Dependencies in all (edges of the mode's graph).
    pub dependencies: usize,
    /// Parts that were down, and how many orders ended meanwhile.
    pub outages: Vec<OutageReport>,
}

/// Latency percentiles, in ms.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// The slowest.
    pub max: u64,
}

/// One outage and what went on meanwhile.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutageReport {
    /// What was down, when.
    #[serde(flatten)]
    pub outage: Outage,
    /// Orders that ended while it was down.
    pub ended_meanwhile: usize,
    /// Their rate while it was down, orders/s.
    pub rate_meanwhile: f64,
}

/// The classic trade-offs, measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Tradeoffs {
    /// Where an order's state is read, per mode.
    pub read_state: BTreeMap<String, String>,
    /// Deployable units that change to add a step after the reservation, per mode.
    pub units_to_add_a_step: BTreeMap<String, usize>,
    /// What stops while a part is down, per mode.
    pub while_down: BTreeMap<String, String>,
}

/// Builds the report from the runs, the audit and the registry's graph.
pub(crate) fn build(
    set: &OrderSet,
    settings: Settings,
    load: [String; 2],
    runs: &[ModeRun],
    audit: &Audit,
    graph: &GraphResponse,
    order_view: OrderViewReport,
) -> Report {
    let mut modes = BTreeMap::new();
    for run in runs {
        let prefix = set.prefix(run.mode);
        let orders: Vec<&OrderAudit> = audit
            .orders
            .values()
            .filter(|order| order.order_id.starts_with(&prefix))
            .collect();
        modes.insert(mode_name(run.mode).to_owned(), mode_report(set, run, &orders, graph));
    }
    let outcome_mismatches = mismatches(set, audit);
    let violations = audit.violations();
    let tradeoffs = tradeoffs(graph, &modes, &order_view);
    Report {
        run: set.run.clone(),
        orders: set.templates.len(),
        settings,
        load,
        modes,
        outcome_mismatches,
        violations,
        tradeoffs,
        order_view,
    }
}

fn mode_report(set: &OrderSet, run: &ModeRun, orders: &[&OrderAudit], graph: &GraphResponse) -> ModeReport {
    let count = set.templates.len();
    let completed = orders
        .iter()
        .filter(|order| order.status == Some(OrderStatus::Completed))
        .count();
    let compensated = orders
        .iter()
        .filter(|order| order.status == Some(OrderStatus::Cancelled))
        .count();
    let mut failures = BTreeMap::new();
    for order in orders
        .iter()
        .filter(|order| order.status == Some(OrderStatus::Cancelled))
    {
        let reason = order
            .failure
            .map_or_else(|| "unknown".to_owned(), |failure| enum_text(&failure));
        *failures.entry(reason).or_insert(0) += 1;
    }
    let mut latencies: Vec<u64> = orders.iter().filter_map(|order| order.latency_ms()).collect();
    latencies.sort_unstable();
    let per_order = |n: u64| if count == 0 { 0.0 } else { n as f64 / count as f64 };
    let total: Option<u64> = run.messages.as_ref().map(|messages| {
        messages
            .iter()
            .filter(|(kind, _)| kind.as_str() != READ_MODEL)
            .map(|(_, n)| n)
            .sum()
    });
    let elapsed_ms = u64::try_from(run.elapsed.as_millis()).unwrap_or(u64::MAX);
    let edges = mode_edges(graph, run.mode);
    let mut coupling: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for node in &graph.nodes {
        if is_shop(node.service.as_str()) {
            coupling.entry(node.service.to_string()).or_default();
        }
    }
    for edge in &edges {
        coupling
            .entry(edge.from.to_string())
            .or_default()
            .insert(edge.to.to_string());
    }
    let outages = run
        .outages
        .iter()
        .map(|outage| {
            let ended = run
                .ended_at_ms
                .iter()
                .filter(|at| (outage.from_ms..outage.until_ms).contains(at))
                .count();
            let seconds = outage.until_ms.saturating_sub(outage.from_ms) as f64 / 1000.0;
            OutageReport {
                outage: outage.clone(),
                ended_meanwhile: ended,
                rate_meanwhile: if seconds > 0.0 { ended as f64 / seconds } else { 0.0 },
            }
        })
        .collect();
    ModeReport {
        completed,
        compensated,
        stuck: count.saturating_sub(completed + compensated),
        failures,
        place_errors: run.place_errors,
        messages_per_order: total.map(per_order),
        messages_per_order_by_kind: run
            .messages
            .iter()
            .flatten()
            .map(|(kind, n)| (kind.clone(), per_order(*n)))
            .collect(),
        latency_ms: Percentiles {
            p50: percentile(&latencies, 0.50),
            p95: percentile(&latencies, 0.95),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or(0),
        },
        throughput_per_s: if run.elapsed.is_zero() {
            0.0
        } else {
            (completed + compensated) as f64 / run.elapsed.as_secs_f64()
        },
        elapsed_ms,
        dependencies: edges.len(),
        coupling: coupling
            .into_iter()
            .map(|(service, known)| (service, known.into_iter().collect()))
            .collect(),
        outages,
    }
}

/// The shop's services and the workflow: the nodes the comparison is about.
fn is_shop(service: &str) -> bool {
    matches!(
        service,
        "orders" | "inventory" | "payments" | "shipping" | "notifications" | WORKFLOW
    )
}

/// The dependencies one mode relies on: calls, and the workflow's event,
/// when orchestrated; the services' events among themselves, when
/// choreographed.
pub(crate) fn mode_edges(graph: &GraphResponse, mode: FlowMode) -> Vec<GraphEdge> {
    let mut edges: Vec<GraphEdge> = graph
        .edges
        .iter()
        .filter(|edge| is_shop(edge.from.as_str()) && is_shop(edge.to.as_str()))
        .filter(|edge| match mode {
            FlowMode::Orchestrated => edge.kind == EdgeKind::Calls || edge.to.as_str() == WORKFLOW,
            FlowMode::Choreographed => edge.kind == EdgeKind::Consumes && edge.to.as_str() != WORKFLOW,
        })
        .cloned()
        .collect();
    // One edge per pair and kind is enough to draw and count.
    edges.sort_by(|a, b| (&a.from, &a.to, a.kind).cmp(&(&b.from, &b.to, b.kind)));
    edges.dedup_by(|a, b| a.from == b.from && a.to == b.to && a.kind == b.kind);
    edges
}

/// The graph of one mode, for its Mermaid diagram.
pub(crate) fn mode_graph(graph: &GraphResponse, mode: FlowMode) -> GraphResponse {
    let edges = mode_edges(graph, mode);
    let used: BTreeSet<&str> = edges
        .iter()
        .flat_map(|edge| [edge.from.as_str(), edge.to.as_str()])
        .collect();
    let nodes = graph
        .nodes
        .iter()
        .filter(|node| used.contains(node.service.as_str()))
        .cloned()
        .collect();
    GraphResponse {
        nodes,
        edges,
        warnings: Vec::new(),
    }
}

fn tradeoffs(graph: &GraphResponse, modes: &BTreeMap<String, ModeReport>, view: &OrderViewReport) -> Tradeoffs {
    let choreographed = mode_edges(graph, FlowMode::Choreographed);
    let producers: BTreeSet<&str> = choreographed.iter().map(|edge| edge.to.as_str()).collect();
    let events_per_order = modes
        .get("choreographed")
        .and_then(|mode| mode.messages_per_order_by_kind.get("service messages"))
        .map_or_else(String::new, |n| {
            format!("{n:.1} service messages per order on the bus; ")
        });
    let read_state = BTreeMap::from([
        (
            "orchestrated".to_owned(),
            "1 query: the instance (soa workflow show, or soa.orchestrator.v1.show) holds every step, attempt and timing"
                .to_owned(),
        ),
        (
            "choreographed".to_owned(),
            format!(
                "rebuilt from events: the order's correlation id across the event streams of {} services ({}); {events_per_order}or 1 query of the order view (soa order-view get), which reads those events for every order, {:.1} ms behind them at p99",
                producers.len(),
                producers.iter().copied().collect::<Vec<_>>().join(", "),
                view.by_mode.get("choreographed").map_or(0.0, |lag| lag.lag_p99_ms)
            ),
        ),
    ]);
    // A step added right after the reservation: the workflow's definition
    // changes when orchestrated; every consumer of `reserved` changes when
    // choreographed (it must wait for the new step's event instead).
    let reserved_consumers: BTreeSet<&str> = graph
        .edges
        .iter()
        // The flow's services only: the read model follows every event anyway.
        .filter(|edge| is_shop(edge.from.as_str()))
        .filter(|edge| edge.kind == EdgeKind::Consumes && edge.reference == "inventory@1#reserved")
        .map(|edge| edge.from.as_str())
        .collect();
    let units_to_add_a_step = BTreeMap::from([
        ("orchestrated".to_owned(), 1),
        ("choreographed".to_owned(), reserved_consumers.len()),
    ]);
    let while_down = modes
        .iter()
        .map(|(mode, report)| {
            let text = if report.outages.is_empty() {
                "not measured: run with --kill-orchestrator-every SECS or --restart-service NAME".to_owned()
            } else {
                // One line per kind of outage, however often it happened.
                let mut kinds: BTreeMap<&str, (usize, u64, usize)> = BTreeMap::new();
                for outage in &report.outages {
                    let entry = kinds.entry(outage.outage.what.as_str()).or_default();
                    entry.0 += 1;
                    entry.1 += outage.outage.until_ms.saturating_sub(outage.outage.from_ms);
                    entry.2 += outage.ended_meanwhile;
                }
                kinds
                    .iter()
                    .map(|(what, (times, down_ms, ended))| {
                        let rate = if *down_ms == 0 {
                            0.0
                        } else {
                            *ended as f64 * 1000.0 / *down_ms as f64
                        };
                        format!(
                            "{what} {times} time(s), {down_ms} ms down in all: {ended} orders ended meanwhile ({rate:.0}/s, against {:.0}/s overall)",
                            report.throughput_per_s
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            (mode.clone(), text)
        })
        .collect();
    Tradeoffs {
        read_state,
        units_to_add_a_step,
        while_down,
    }
}

/// Orders (by number) whose outcome differs between the modes.
fn mismatches(set: &OrderSet, audit: &Audit) -> Vec<String> {
    let orchestrated = set.prefix(FlowMode::Orchestrated);
    let choreographed = set.prefix(FlowMode::Choreographed);
    set.templates
        .iter()
        .filter_map(|template| {
            let a = audit.orders.get(&format!("{orchestrated}{}", template.number))?;
            let b = audit.orders.get(&format!("{choreographed}{}", template.number))?;
            (a.outcome() != b.outcome()).then(|| {
                format!(
                    "order {}: orchestrated {:?}/{:?}, choreographed {:?}/{:?}",
                    template.number, a.status, a.failure, b.status, b.failure
                )
            })
        })
        .collect()
}

/// Writes the side-by-side table and the trade-offs.
pub(crate) fn print(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let (Some(orch), Some(chor)) = (report.modes.get("orchestrated"), report.modes.get("choreographed")) else {
        return writeln!(out, "   (a mode did not run)");
    };
    let row = |out: &mut dyn Write, name: &str, a: String, b: String| writeln!(out, "   {name:<34} {a:>16} {b:>16}");
    row(out, "", "orchestrated".into(), "choreographed".into())?;
    row(out, "", "(SOA)".into(), "(microservices)".into())?;
    writeln!(out, "   {}", "-".repeat(68))?;
    row(out, "completed", orch.completed.to_string(), chor.completed.to_string())?;
    row(
        out,
        "compensated",
        orch.compensated.to_string(),
        chor.compensated.to_string(),
    )?;
    row(out, "stuck", orch.stuck.to_string(), chor.stuck.to_string())?;
    let counted = |mode: &ModeReport| {
        mode.messages_per_order
            .map_or_else(|| "not counted".to_owned(), |n| format!("{n:.1}"))
    };
    row(out, "messages on the bus per order", counted(orch), counted(chor))?;
    let kinds: &[&str] = if orch.messages_per_order.is_some() || chor.messages_per_order.is_some() {
        &[
            "service messages",
            "replies",
            "jetstream acks",
            "kv writes",
            "jetstream api",
            "orchestrator work",
        ]
    } else {
        &[]
    };
    for &kind in kinds {
        let get = |mode: &ModeReport| mode.messages_per_order_by_kind.get(kind).copied().unwrap_or(0.0);
        row(
            out,
            &format!("  of which {kind}"),
            format!("{:.1}", get(orch)),
            format!("{:.1}", get(chor)),
        )?;
    }
    row(
        out,
        "latency p50 / p95 / p99 (ms)",
        format!(
            "{} / {} / {}",
            orch.latency_ms.p50, orch.latency_ms.p95, orch.latency_ms.p99
        ),
        format!(
            "{} / {} / {}",
            chor.latency_ms.p50, chor.latency_ms.p95, chor.latency_ms.p99
        ),
    )?;
    row(
        out,
        "throughput (orders/s)",
        format!("{:.0}", orch.throughput_per_s),
        format!("{:.0}", chor.throughput_per_s),
    )?;
    let lag = |mode: &str| {
        report.order_view.by_mode.get(mode).map_or_else(String::new, |lag| {
            format!("{:.1} / {:.1}", lag.lag_p50_ms, lag.lag_p99_ms)
        })
    };
    row(
        out,
        "order view lag p50 / p99 (ms)",
        lag("orchestrated"),
        lag("choreographed"),
    )?;
    row(
        out,
        "dependencies between services",
        orch.dependencies.to_string(),
        chor.dependencies.to_string(),
    )?;
    writeln!(out)?;
    writeln!(out, "   Who must know whom (from the registry's graph):")?;
    let services: BTreeSet<&String> = orch.coupling.keys().chain(chor.coupling.keys()).collect();
    for service in services {
        let known = |mode: &ModeReport| {
            mode.coupling
                .get(service)
                .filter(|known| !known.is_empty())
                .map_or_else(|| "nobody".to_owned(), |known| known.join(", "))
        };
        writeln!(
            out,
            "   {service:<14} orchestrated: {:<42} choreographed: {}",
            known(orch),
            known(chor)
        )?;
    }
    writeln!(out)?;
    writeln!(out, "   The trade-offs in figures:")?;
    for (mode, text) in &report.tradeoffs.read_state {
        writeln!(out, "   - an order's state, {mode}: {text}")?;
    }
    for (mode, units) in &report.tradeoffs.units_to_add_a_step {
        writeln!(
            out,
            "   - adding a step after the reservation, {mode}: {units} deployable unit(s) change, plus the new service"
        )?;
    }
    for (mode, text) in &report.tradeoffs.while_down {
        writeln!(out, "   - while a part is down, {mode}: {text}")?;
    }
    if !report.outcome_mismatches.is_empty() {
        writeln!(
            out,
            "   ! {} order(s) ended differently in the two modes, e.g. {}",
            report.outcome_mismatches.len(),
            report.outcome_mismatches[0]
        )?;
    }
    let view = &report.order_view;
    if view.mismatch_count == 0 {
        writeln!(
            out,
            "   The order view (built from events only) matches the owning services for all {} orders; lag p50 {:.1} ms, p99 {:.1} ms over {} events.",
            view.orders_checked, view.lag.lag_p50_ms, view.lag.lag_p99_ms, view.lag.events
        )?;
    } else {
        writeln!(
            out,
            "   ! the order view differs from the owning services {} time(s){}:",
            view.mismatch_count,
            if view.caught_up { "" } else { " (it had not caught up)" }
        )?;
        for mismatch in view.mismatches.iter().take(10) {
            writeln!(out, "     {mismatch}")?;
        }
    }
    if report.violations.is_empty() {
        writeln!(
            out,
            "   Stock, money and shipments add up in both modes (audited from every service's store)."
        )?;
    } else {
        writeln!(out, "   ! {} broken invariant(s):", report.violations.len())?;
        for violation in report.violations.iter().take(10) {
            writeln!(out, "     {violation}")?;
        }
    }
    Ok(())
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// An enum's serde name (`payment-declined`), for the report.
fn enum_text<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}
