//! `soa graph`: who calls whom and who consumes whose events, from the
//! registry's `graph`, as JSON, Mermaid or Graphviz DOT, and as SVG through
//! Graphviz when it is installed.
//!
//! The registry's warnings (event cycles, dangling references) go to
//! standard error, and into the Mermaid and DOT text as comments.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use clap::Args;
use contracts::ServiceName;
use contracts::registry_api::{GraphRequest, GraphResponse, ops};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::registry_client::{RegistryClient, close, until_cancelled};
use super::{Exit, NatsOptions, UsageError};
use crate::export::graph;

/// The Graphviz program that lays out DOT.
const GRAPHVIZ: &str = "dot";

/// What to say when Graphviz is missing.
const NO_GRAPHVIZ: &str = "Graphviz is not installed: `apt-get install graphviz` (Debian/Ubuntu) or `brew install graphviz` (macOS); or use --format dot and render it elsewhere";

/// The formats `soa graph` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// The registry's answer: nodes, edges (`from` depends on `to`) and warnings.
    Json,
    /// A Mermaid flowchart, which GitHub and many wikis draw.
    #[default]
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// Arguments of `soa graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The output format [default: mermaid].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<GraphFormat>,
    /// Only the dependencies of this service and on it.
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Write the output to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Render the graph to FILE as SVG with Graphviz (`dot -Tsvg`). Alone, nothing else is printed.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// Runs `soa graph`.
pub(super) async fn run(
    nats: &NatsOptions,
    args: &GraphArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let service = args
        .service
        .as_deref()
        .map(ServiceName::parse)
        .transpose()
        .map_err(|error| UsageError(error.to_string()))?;
    let (registry, client) = RegistryClient::connect(nats, "soa-graph").await?;
    let answered = until_cancelled(
        &shutdown,
        registry.call::<ops::Graph>(&GraphRequest {
            service: service.clone(),
        }),
    )
    .await;
    close(client).await;
    let graph = answered?;
    if let Some(service) = &service
        && !mentions(&graph, service)
    {
        writeln!(
            err,
            "No service {service} is registered, and no registered service depends on it; `soa services` lists the registered services."
        )?;
        return Ok(Exit::Failure);
    }
    for warning in &graph.warnings {
        writeln!(err, "warning: {warning}")?;
    }
    // `--svg` alone asks for the picture only.
    if args.format.is_some() || args.out.is_some() || args.svg.is_none() {
        let text = render(&graph, args.format.unwrap_or_default())?;
        match &args.out {
            Some(path) => tokio::fs::write(path, text)
                .await
                .with_context(|| format!("could not write {}", path.display()))?,
            None => out.write_all(text.as_bytes())?,
        }
    }
    if let Some(path) = &args.svg {
        render_svg(Path::new(GRAPHVIZ), &graph::dot(&graph), path).await?;
    }
    Ok(Exit::Success)
}

/// True when `service` is a node of `graph` or an end of one of its edges.
fn mentions(graph: &GraphResponse, service: &ServiceName) -> bool {
    graph.nodes.iter().any(|node| &node.service == service)
        || graph
            .edges
            .iter()
            .any(|edge| &edge.from == service || &edge.to == service)
}

/// The graph in `format`, ending with a line break.
fn render(graph: &GraphResponse, format: GraphFormat) -> anyhow::Result<String> {
    Ok(match format {
        GraphFormat::Json => {
            let mut text = serde_json::to_string_pretty(graph)?;
            text.push('\n');
            text
        }
        GraphFormat::Mermaid => graph::mermaid(graph),
        GraphFormat::Dot => graph::dot(graph),
    })
}

/// Lays `dot_text` out with `program -Tsvg` into `path`.
async fn render_svg(program: &Path, dot_text: &str, path: &Path) -> anyhow::Result<()> {
    let spawned = tokio::process::Command::new(program)
        .arg("-Tsvg")
        .arg("-o")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(NO_GRAPHVIZ),
        Err(error) => return Err(error).with_context(|| format!("could not run {}", program.display())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot_text.as_bytes())
            .await
            .with_context(|| format!("could not send the graph to {}", program.display()))?;
        // Dropping stdin closes it, which tells Graphviz the graph is complete.
    }
    let output = child
        .wait_with_output()
        .await
        .with_context(|| format!("{} did not finish", program.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "{} could not render {}: {}",
            program.display(),
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_graphviz_the_svg_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dot");
        let error = render_svg(&missing, "digraph {}", &dir.path().join("graph.svg"))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), NO_GRAPHVIZ);
    }

    #[test]
    fn json_is_the_registry_answer() {
        let graph = GraphResponse {
            nodes: Vec::new(),
            edges: Vec::new(),
            warnings: vec!["a cycle".to_owned()],
        };
        assert_eq!(
            render(&graph, GraphFormat::Json).unwrap(),
            "{\n  \"nodes\": [],\n  \"edges\": [],\n  \"warnings\": [\n    \"a cycle\"\n  ]\n}\n"
        );
    }
}
