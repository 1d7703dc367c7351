//! The dependency graph drawn: Mermaid ([`mermaid`]) and Graphviz DOT
//! ([`dot`]).
//!
//! Arrows follow what travels: a call points from the caller to the
//! service called (labelled `calls <operation>`), an event from its
//! producer to its consumer (`consumes <event>`, drawn thick or bold). A
//! reference no registered version declares is drawn dashed, and a service
//! only known from such a reference is marked as not registered. The
//! registry's warnings (event cycles, dangling references) become comments.
//! Nodes and edges are sorted, so the same graph is always the same text.

use std::collections::{BTreeMap, BTreeSet};

use contracts::ContractRef;
use contracts::registry_api::{EdgeKind, GraphEdge, GraphResponse};

/// The header comment of both formats.
const LEGEND: &str = "soa graph: calls point from the caller to the service called; consumes point from an event's producer to its consumer (the way events flow); dashed edges are references no registered version declares.";

/// One service to draw.
#[derive(Debug)]
struct Node {
    name: String,
    /// `inventory@1.2.0`, or `None` when no version is registered.
    label: Option<String>,
}

/// One arrow to draw.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Arrow {
    tail: String,
    head: String,
    kind: EdgeKind,
    label: String,
    resolved: bool,
}

/// The graph as it is drawn, sorted.
#[derive(Debug)]
struct Drawing {
    nodes: Vec<Node>,
    arrows: Vec<Arrow>,
    warnings: Vec<String>,
}

impl Drawing {
    fn of(graph: &GraphResponse) -> Self {
        let latest: BTreeMap<&str, &contracts::Version> = graph
            .nodes
            .iter()
            .map(|node| (node.service.as_str(), &node.latest))
            .collect();
        let mut names: BTreeSet<&str> = latest.keys().copied().collect();
        let mut arrows: Vec<Arrow> = graph
            .edges
            .iter()
            .map(|edge| {
                names.insert(edge.from.as_str());
                names.insert(edge.to.as_str());
                arrow(edge, latest.get(edge.to.as_str()).map(|version| version.major()))
            })
            .collect();
        arrows.sort();
        arrows.dedup();
        let nodes = names
            .into_iter()
            .map(|name| Node {
                name: name.to_owned(),
                label: latest.get(name).map(|version| format!("{name}@{version}")),
            })
            .collect();
        Self {
            nodes,
            arrows,
            warnings: graph.warnings.iter().map(|warning| one_line(warning)).collect(),
        }
    }
}

/// The arrow of one edge; `latest_major` is the major of the registered
/// latest version of the service depended on, if any, so a reference into
/// an older major says which.
fn arrow(edge: &GraphEdge, latest_major: Option<u64>) -> Arrow {
    let (verb, tail, head) = match edge.kind {
        EdgeKind::Calls => ("calls", &edge.from, &edge.to),
        EdgeKind::Consumes => ("consumes", &edge.to, &edge.from),
    };
    let label = match ContractRef::parse(&edge.reference) {
        Ok(reference) if latest_major.is_none_or(|major| major == reference.major) => {
            format!("{verb} {}", reference.member)
        }
        Ok(reference) => format!("{verb} {} (v{})", reference.member, reference.major),
        Err(_) => format!("{verb} {}", edge.reference),
    };
    Arrow {
        tail: tail.to_string(),
        head: head.to_string(),
        kind: edge.kind,
        label,
        resolved: edge.resolved,
    }
}

/// Text on one line: comments end at the line's end in both formats.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r']).collect::<Vec<_>>().join(" ")
}

/// The graph as a Mermaid `flowchart LR`: calls solid, consumes thick,
/// unresolved references dotted, unregistered services dashed.
pub fn mermaid(graph: &GraphResponse) -> String {
    let drawing = Drawing::of(graph);
    let mut text = String::from("flowchart LR\n");
    text.push_str(&format!("    %% {LEGEND}\n"));
    for warning in &drawing.warnings {
        text.push_str(&format!("    %% warning: {warning}\n"));
    }
    for node in &drawing.nodes {
        let id = mermaid_id(&node.name);
        match &node.label {
            Some(label) => text.push_str(&format!("    {id}[\"{}\"]\n", mermaid_text(label))),
            None => text.push_str(&format!(
                "    {id}[\"{} (not registered)\"]:::missing\n",
                mermaid_text(&node.name)
            )),
        }
    }
    for arrow in &drawing.arrows {
        let link = match (arrow.resolved, arrow.kind) {
            (false, _) => "-.->",
            (true, EdgeKind::Calls) => "-->",
            (true, EdgeKind::Consumes) => "==>",
        };
        text.push_str(&format!(
            "    {} {link}|\"{}\"| {}\n",
            mermaid_id(&arrow.tail),
            mermaid_text(&arrow.label),
            mermaid_id(&arrow.head)
        ));
    }
    if drawing.nodes.iter().any(|node| node.label.is_none()) {
        text.push_str("    classDef missing stroke-dasharray: 5 5\n");
    }
    text
}

/// A Mermaid node id for a service: prefixed, so that no name (`end`) is a
/// keyword, and with `_` for `-`, which Mermaid could read as part of an arrow.
fn mermaid_id(service: &str) -> String {
    let safe: String = service
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("svc_{safe}")
}

/// Text inside a quoted Mermaid label: quotes, `#` and angle brackets as
/// entity codes, so they are shown, not read.
fn mermaid_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in one_line(text).chars() {
        match c {
            '"' => escaped.push_str("#quot;"),
            '#' => escaped.push_str("#35;"),
            '<' => escaped.push_str("#lt;"),
            '>' => escaped.push_str("#gt;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The graph in Graphviz DOT: calls solid, consumes bold, unresolved
/// references dashed, unregistered services dashed boxes.
pub fn dot(graph: &GraphResponse) -> String {
    let drawing = Drawing::of(graph);
    let mut text = format!("// {LEGEND}\n");
    for warning in &drawing.warnings {
        text.push_str(&format!("// warning: {warning}\n"));
    }
    text.push_str("digraph soa {\n");
    text.push_str("    rankdir=LR;\n");
    text.push_str("    node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    text.push_str("    edge [fontname=\"Helvetica\", fontsize=10];\n");
    for node in &drawing.nodes {
        let id = dot_string(&node.name);
        match &node.label {
            Some(label) => text.push_str(&format!("    {id} [label={}];\n", dot_string(label))),
            None => text.push_str(&format!(
                "    {id} [label={}, style=\"rounded,dashed\"];\n",
                dot_string(&format!("{} (not registered)", node.name))
            )),
        }
    }
    for arrow in &drawing.arrows {
        let style = match (arrow.kind, arrow.resolved) {
            (EdgeKind::Calls, true) => "",
            (EdgeKind::Calls, false) => ", style=dashed",
            (EdgeKind::Consumes, true) => ", style=bold",
            (EdgeKind::Consumes, false) => ", style=\"bold,dashed\"",
        };
        text.push_str(&format!(
            "    {} -> {} [label={}{style}];\n",
            dot_string(&arrow.tail),
            dot_string(&arrow.head),
            dot_string(&arrow.label)
        ));
    }
    text.push_str("}\n");
    text
}

/// A DOT quoted string: backslashes and quotes escaped, one line.
fn dot_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in one_line(text).chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}
