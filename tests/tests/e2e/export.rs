//! `soa asyncapi` and `soa graph` against a real nats-server and an
//! in-process registry holding the shop's contracts: the AsyncAPI documents
//! validate against the official schema, the graph has the shop's edges, and
//! the exit codes say what went wrong.

use registry::cli::Exit;
use registry::export::asyncapi;
use serde_json::Value;
use tests::registry::shop_bus;

use crate::cli::{assert_exit, soa_at};

#[track_caller]
fn assert_valid(document: &Value) {
    if let Err(problems) = asyncapi::validate(document) {
        panic!("not a valid AsyncAPI 3.0.0 document:\n{}", problems.join("\n"));
    }
}

#[tokio::test]
async fn the_registry_exports_asyncapi_documents_and_the_graph() {
    tests::init_tracing();
    let (server, registry, _client) = shop_bus().await.unwrap();
    let url = server.url();

    // One service: its own operations and events, and the events it consumes.
    let run = soa_at(
        &url,
        &["asyncapi", "inventory", "--server", "nats://nats.example.com:4222"],
    )
    .await;
    assert_exit(&run, Exit::Success);
    assert_eq!(run.stderr, "");
    let document: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_valid(&document);
    assert_eq!(document["asyncapi"], "3.0.0");
    assert_eq!(document["info"]["title"], "inventory");
    assert_eq!(document["info"]["version"], "1.1.0");
    assert_eq!(document["servers"]["nats"]["host"], "nats.example.com:4222");
    assert_eq!(
        document["operations"]["reserve"]["bindings"]["nats"]["queue"],
        "inventory"
    );
    assert_eq!(
        document["channels"]["orders.v1.placed"]["address"],
        "shop.orders.v1.placed"
    );
    assert_eq!(document["operations"]["consume.orders.v1.placed"]["action"], "receive");
    // The same as exporting the documents directly.
    let contracts = tests::registry::shop_contracts().unwrap();
    let inventory = contracts
        .iter()
        .find(|document| document.service.as_str() == "inventory")
        .unwrap();
    let options = asyncapi::ExportOptions {
        server: Some(asyncapi::ServerAddress::parse("nats://nats.example.com:4222").unwrap()),
    };
    assert_eq!(document, asyncapi::service_document(inventory, &contracts, &options));

    // The whole system, into a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("system.asyncapi.json");
    let run = soa_at(&url, &["asyncapi", "--out", path.to_str().unwrap()]).await;
    assert_exit(&run, Exit::Success);
    assert_eq!(run.stdout, "");
    let system: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_valid(&system);
    assert_eq!(
        system["info"]["x-soa-contracts"],
        serde_json::json!([
            "inventory@1.1.0",
            "notifications@1.1.0",
            "orders@1.2.0",
            "payments@1.2.0",
            "shipping@1.2.0"
        ])
    );
    assert_eq!(
        system,
        asyncapi::system_document(&contracts, &asyncapi::ExportOptions::default())
    );

    // Unknown service: 1; a bad name or server URL: 2.
    let run = soa_at(&url, &["asyncapi", "nope"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stdout, "");
    let run = soa_at(&url, &["asyncapi", "Nope"]).await;
    assert_exit(&run, Exit::Usage);
    let run = soa_at(&url, &["asyncapi", "inventory", "--server", "http://example.com"]).await;
    assert_exit(&run, Exit::Usage);

    // The graph: orders' placed event flows to inventory, which consumes it.
    let run = soa_at(&url, &["graph", "--format", "mermaid"]).await;
    assert_exit(&run, Exit::Success);
    assert!(run.stdout.starts_with("flowchart LR\n"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("    svc_orders ==>|\"consumes placed\"| svc_inventory\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("    svc_inventory[\"inventory@1.1.0\"]\n"),
        "{}",
        run.stdout
    );
    // The shop's flow has cycles (an order's outcome flows back to orders); they are warned about.
    for warning in run.stderr.lines() {
        assert!(warning.starts_with("warning: "), "{}", run.stderr);
        assert!(
            run.stdout.contains(&format!("%% {warning}\n")),
            "{warning} is not in\n{}",
            run.stdout
        );
    }

    let run = soa_at(&url, &["graph", "--format", "dot", "--service", "payments"]).await;
    assert_exit(&run, Exit::Success);
    assert!(run.stdout.contains("digraph soa {\n"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("    \"inventory\" -> \"payments\" [label=\"consumes reserved\", style=bold];\n"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("\"notifications\" [label"), "{}", run.stdout);

    let run = soa_at(&url, &["graph", "--format", "json"]).await;
    assert_exit(&run, Exit::Success);
    let graph: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 5);
    assert!(
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|edge| edge["from"] == "inventory"
                && edge["to"] == "orders"
                && edge["kind"] == "consumes"
                && edge["reference"] == "orders@1#placed"),
        "{graph}"
    );

    let run = soa_at(&url, &["graph", "--service", "nope"]).await;
    assert_exit(&run, Exit::Failure);
    assert_eq!(run.stdout, "");
    let run = soa_at(&url, &["graph", "--format", "svgz"]).await;
    assert_exit(&run, Exit::Usage);

    registry.stop().await.unwrap();

    // Without a registry, both say how to start one: exit 2.
    let run = soa_at(&url, &["asyncapi", "inventory"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(run.stderr.contains("soa registry serve"), "{}", run.stderr);
    let run = soa_at(&url, &["graph"]).await;
    assert_exit(&run, Exit::Usage);
}

#[tokio::test]
async fn the_graph_renders_to_svg_when_graphviz_is_installed() {
    let graphviz =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("dot").is_file()));
    let (server, registry, _client) = shop_bus().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("graph.svg");
    let run = soa_at(&server.url(), &["graph", "--svg", svg.to_str().unwrap()]).await;
    // --svg alone prints nothing but the warnings.
    assert_eq!(run.stdout, "");
    if graphviz {
        assert_exit(&run, Exit::Success);
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg"), "{text}");
    } else {
        assert_exit(&run, Exit::Failure);
        assert!(
            run.stderr.contains(
                "error: Graphviz is not installed: `apt-get install graphviz` (Debian/Ubuntu) or `brew install graphviz` (macOS); or use --format dot and render it elsewhere"
            ),
            "{}",
            run.stderr
        );
        assert!(!svg.exists());
    }
    registry.stop().await.unwrap();
}
