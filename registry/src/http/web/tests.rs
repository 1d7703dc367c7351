//! The web page through the router, without a socket: a registry on a memory
//! store with the shop's contracts, one request per call, and the HTML
//! searched for what a reader must see.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use contracts::registry_api::{GraphEdge, GraphNode, GraphResponse, HeartbeatRequest};
use contracts::{ContractId, ServiceName, Version};

use super::super::test_support::{self, register, shop_document, shop_registry};
use super::super::{HttpConfig, HttpState, router};
use crate::server::Registry;

fn web(registry: &Arc<Registry>) -> Router {
    router(HttpState::new(Arc::clone(registry), HttpConfig::default()))
}

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Page {
    /// Asserts an HTML page with `status` that contains every phrase.
    fn assert_html(&self, status: StatusCode, phrases: &[&str]) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert!(self.text.starts_with("<!DOCTYPE html>"), "{}", self.text);
        for phrase in phrases {
            assert!(self.text.contains(phrase), "{phrase:?} missing in {}", self.text);
        }
    }

    fn header(&self, name: header::HeaderName) -> &str {
        test_support::header(&self.headers, name)
    }

    /// How many rows the catalogue table lists.
    fn rows(&self) -> usize {
        self.text.matches("<tr data-search=").count()
    }
}

async fn get(api: &Router, uri: &str) -> Page {
    let reply = test_support::get(api, uri).await;
    Page {
        status: reply.status,
        text: String::from_utf8(reply.body.to_vec()).unwrap(),
        headers: reply.headers,
    }
}

#[tokio::test]
async fn the_catalogue_lists_services_with_search_and_tag_chips() {
    let api = web(&shop_registry().await);
    let page = get(&api, "/").await;
    page.assert_html(
        StatusCode::OK,
        &[
            "<h1>Services</h1>",
            r#"<label for="q">Search services</label>"#,
            r#"<input id="q" type="search" name="q""#,
            r#"<th scope="row"><a href="/services/inventory">inventory</a></th>"#,
            r#"<a href="/services/inventory/versions/1.1.0">1.1.0</a>"#,
            "fulfilment-team",
            "Stock levels and reservations",
            r#"<a class="chip" href="/?tag=shop""#,
            "5 of 5 services",
        ],
    );
    assert_eq!(page.rows(), 5);
    // Pages are locked down and never cached stale.
    assert!(page.header(header::CACHE_CONTROL).contains("no-cache"));
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );

    let search = get(&api, "/?q=stock").await;
    search.assert_html(
        StatusCode::OK,
        &[
            "Services matching “stock”",
            r#"href="/services/inventory""#,
            r#"value="stock""#,
        ],
    );
    assert!(search.rows() < 5, "{}", search.text);

    let tagged = get(&api, "/?tag=money").await;
    tagged.assert_html(
        StatusCode::OK,
        &[
            "Services tagged money",
            r#"href="/services/payments""#,
            r#"aria-current="page""#,
        ],
    );
    assert_eq!(tagged.rows(), 1);
    let nothing = get(&api, "/?q=teleportation").await;
    nothing.assert_html(StatusCode::OK, &["No service matches."]);
    assert_eq!(nothing.rows(), 0);
    // An unknown parameter is ignored; an empty one counts as absent.
    assert_eq!(get(&api, "/?q=&utm_source=mail").await.rows(), 5);
}

#[tokio::test]
async fn a_service_page_shows_operations_schemas_events_and_dependencies() {
    let registry = shop_registry().await;
    let api = web(&registry);
    let page = get(&api, "/services/inventory").await;
    page.assert_html(
        StatusCode::OK,
        &[
            "<title>inventory@1.1.0 · soabus registry</title>",
            "Stock levels and reservations",
            "<dd>BACKWARD</dd>",
            "sha256:",
            r#"<a class="chip small" href="/?tag=stock">stock</a>"#,
            // The reserve operation, its request schema followed through `$ref`s.
            r#"<article class="member" id="op-reserve">"#,
            "<code>shop.inventory.v1.reserve</code>",
            "<code>OUT_OF_STOCK</code>",
            "yes — callers may retry it",
            r#"<span class="ref" title="defined in $defs">ReserveStock</span>"#,
            r#"<code class="name">order_id</code> <strong class="required">required</strong>"#,
            r#"<span class="ref" title="defined in $defs">OrderId</span>"#,
            "pattern <code>^[A-Za-z0-9_-]{1,64}$</code>",
            "items 1–100",
            // Events and who consumes them.
            r#"<article class="member" id="event-reserved">"#,
            "<code>shop.inventory.v1.reserved</code>",
            r#"<a href="/services/payments">payments</a>"#,
            // What it consumes, linked to the producer's event.
            r#"<a href="/services/orders#event-placed"><code>orders@1#placed</code></a>"#,
            // Versions and instances.
            r#"<a href="/services/inventory/versions/1.1.0" aria-current="page">1.1.0</a>"#,
            "first version",
            "No instance is beating right now.",
        ],
    );
    assert!(!page.text.contains("Drift:"), "{}", page.text);
    let exact = get(&api, "/services/inventory/versions/1.1.0").await;
    exact.assert_html(StatusCode::OK, &[r#"id="op-reserve""#]);

    // An instance serving unregistered content shows the drift banner.
    let beat = |instance: &str, digest: &str| HeartbeatRequest {
        instance_id: instance.to_owned(),
        contract: ContractId::parse("inventory@1.1.0").unwrap(),
        digest: digest.to_owned(),
        ttl_ms: 60_000,
    };
    let digest = registry
        .catalog()
        .get(&contracts::registry_api::GetRequest {
            service: ServiceName::parse("inventory").unwrap(),
            version: None,
            major: None,
        })
        .unwrap()
        .digest;
    registry
        .catalog()
        .heartbeat(&beat("inventory-a", &digest), Instant::now(), false)
        .unwrap();
    registry
        .catalog()
        .heartbeat(&beat("inventory-b", "sha256:0000"), Instant::now(), false)
        .unwrap();
    let drifting = get(&api, "/services/inventory").await;
    drifting.assert_html(
        StatusCode::OK,
        &[
            r#"<div class="banner warn" role="alert"><strong>Drift: </strong>1 of 2 instances"#,
            "<code>inventory-a</code>",
            "<code>inventory-b</code>",
            "⚠ drifting",
        ],
    );
    let catalogue = get(&api, "/").await;
    catalogue.assert_html(
        StatusCode::OK,
        &[r#"<td class="num">2/2</td><td class="num warn">⚠ 1</td>"#],
    );
}

#[tokio::test]
async fn unknown_services_and_versions_are_html_404_pages() {
    let api = web(&shop_registry().await);
    for (uri, phrase) in [
        ("/services/warehouse", "no service warehouse is registered"),
        ("/services/Inventory", "there is no service &quot;Inventory&quot;"),
        (
            "/services/inventory/versions/9.9.9",
            "inventory has no version 9.9.9; registered: 1.1.0",
        ),
        (
            "/services/inventory/versions/one",
            "there is no version &quot;one&quot;",
        ),
        ("/services/warehouse/diff", "no service warehouse is registered"),
        (
            "/services/inventory/diff?from=1.1.0&to=7.0.0",
            "inventory has no version 7.0.0",
        ),
    ] {
        let page = get(&api, uri).await;
        page.assert_html(StatusCode::NOT_FOUND, &["<h1>Not found</h1>", phrase]);
    }
    let bad = get(&api, "/services/inventory/diff?from=latest").await;
    bad.assert_html(StatusCode::BAD_REQUEST, &["<h1>Bad request</h1>", "latest"]);
    let bad = get(&api, "/graph?service=Not_A_Name").await;
    bad.assert_html(StatusCode::BAD_REQUEST, &["invalid service name"]);
    // The API keeps its JSON errors.
    let api_error = get(&api, "/v1/services/warehouse").await;
    assert!(api_error.header(header::CONTENT_TYPE).starts_with("application/json"));
}

#[tokio::test]
async fn user_text_is_escaped_everywhere_it_is_shown() {
    let registry = shop_registry().await;
    let mut update = shop_document("inventory");
    update["version"] = json!("1.2.0");
    update["description"] = json!("<script>alert(1)</script>");
    update["$defs"]["ReserveStock"]["description"] = json!("Reserve <img src=x onerror=alert(2)> stock");
    register(&registry, update).await;
    let api = web(&registry);
    for uri in [
        "/",
        "/services/inventory",
        "/services/inventory/diff?from=1.1.0&to=1.2.0",
    ] {
        let page = get(&api, uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert!(!page.text.contains("<script>alert(1)"), "{uri}: {}", page.text);
        assert!(!page.text.contains("<img src=x"), "{uri}: {}", page.text);
    }
    get(&api, "/services/inventory").await.assert_html(
        StatusCode::OK,
        &[
            r#"<p class="lead">&lt;script&gt;alert(1)&lt;/script&gt;</p>"#,
            "Reserve &lt;img src=x onerror=alert(2)&gt; stock",
        ],
    );
    get(&api, "/")
        .await
        .assert_html(StatusCode::OK, &["<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"]);
    // The older version still shows its own description.
    get(&api, "/services/inventory/versions/1.1.0").await.assert_html(
        StatusCode::OK,
        &["Stock levels and reservations", "This is version 1.1.0; the latest is"],
    );
}

#[tokio::test]
async fn the_graph_json_cannot_end_its_script_block() {
    let graph = GraphResponse {
        nodes: vec![GraphNode {
            service: ServiceName::parse("orders").unwrap(),
            latest: Version::new(1, 0, 0),
        }],
        edges: Vec::<GraphEdge>::new(),
        warnings: vec!["</script><script>alert(1)</script><!--".to_owned()],
    };
    let html = super::pages::graph(None, &graph).into_string();
    assert!(!html.contains("</script><script>alert(1)"), "{html}");
    assert!(!html.contains("<!--"), "{html}");
    assert!(
        html.contains(r#"\u003c/script\u003e\u003cscript\u003ealert(1)"#),
        "{html}"
    );
    // The list of warnings shows the text, escaped.
    assert!(
        html.contains("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!--"),
        "{html}"
    );
}

#[tokio::test]
async fn the_diff_page_lists_each_change_with_its_verdict() {
    let registry = shop_registry().await;
    let api = web(&registry);
    get(&api, "/services/inventory/diff").await.assert_html(
        StatusCode::OK,
        &["has a single version; there is nothing to compare yet"],
    );

    // 1.2.0 adds an optional request property (compatible) and narrows a
    // response string (the response is read by old callers: fine under
    // BACKWARD), and 1.3.0 then requires a new request property (breaking).
    let mut compatible = shop_document("inventory");
    compatible["version"] = json!("1.2.0");
    compatible["$defs"]["ReserveStock"]["properties"]["note"] = json!({"type": "string", "description": "Optional."});
    register(&registry, compatible.clone()).await;

    let page = get(&api, "/services/inventory/diff?from=1.1.0&to=1.2.0").await;
    page.assert_html(
        StatusCode::OK,
        &[
            "<h1>inventory: changes between versions</h1>",
            r#"<option value="1.1.0" selected>1.1.0</option>"#,
            r#"<option value="1.2.0" selected>1.2.0</option>"#,
            "judged by 1.2.0's policy, <strong>BACKWARD</strong>",
            "<td>request</td><td><code>reserve</code></td><td><code>property-added</code></td>",
            "<code>/operations/reserve/request/$ref/properties/note</code>",
            r#"<td class="breaking no">no</td>"#,
            "Compatible: the one change does not break BACKWARD.",
        ],
    );
    // Without versions: the latest against the one before; newest first is turned around.
    let default = get(&api, "/services/inventory/diff").await;
    default.assert_html(StatusCode::OK, &["<code>property-added</code>"]);
    let swapped = get(&api, "/services/inventory/diff?from=1.2.0&to=1.1.0").await;
    swapped.assert_html(StatusCode::OK, &["Shown oldest first", "<code>property-added</code>"]);
    get(&api, "/services/inventory/diff?from=1.2.0&to=1.2.0")
        .await
        .assert_html(StatusCode::OK, &["nothing changed"]);
    get(&api, "/services/inventory/diff?to=1.1.0")
        .await
        .assert_html(StatusCode::OK, &["pick two versions to compare"]);

    // A breaking change is accepted only under policy NONE; the page then
    // says so and marks it as BACKWARD would.
    let mut breaking = compatible;
    breaking["version"] = json!("1.3.0");
    breaking["compatibility"] = json!("NONE");
    breaking["$defs"]["ReserveStock"]["properties"]["warehouse"] = json!({"type": "string"});
    breaking["$defs"]["ReserveStock"]["required"] = json!(["order_id", "items", "warehouse"]);
    register(&registry, breaking).await;
    let page = get(&api, "/services/inventory/diff?from=1.2.0&to=1.3.0").await;
    page.assert_html(
        StatusCode::OK,
        &[
            "Policy NONE checks nothing",
            "<code>required-added</code>",
            r#"<td class="breaking yes">yes</td>"#,
            "<code>policy-changed</code>",
            "changes break BACKWARD",
        ],
    );
    // The service page links each version to its diff with the one before.
    get(&api, "/services/inventory").await.assert_html(
        StatusCode::OK,
        &[r#"<a href="/services/inventory/diff?from=1.2.0&amp;to=1.3.0">diff with 1.2.0</a>"#],
    );
}

#[tokio::test]
async fn the_graph_page_embeds_the_graph_for_the_script_and_lists_it() {
    let api = web(&shop_registry().await);
    let page = get(&api, "/graph").await;
    page.assert_html(
        StatusCode::OK,
        &[
            "<h1>Dependency graph</h1>",
            r#"<div id="graph-canvas""#,
            r#"<script id="graph-data" type="application/json">{"nodes":[{"service":"inventory","latest":"1.1.0"}"#,
            r#"<td><a href="/services/inventory">inventory</a></td><td>consumes</td><td><a href="/services/orders#event-placed"><code>orders@1#placed</code></a></td>"#,
            "5 services,",
            r#"<script src="/assets/app.js?v="#,
        ],
    );
    let start = page.text.find(r#"type="application/json">"#).unwrap() + r#"type="application/json">"#.len();
    let end = start + page.text[start..].find("</script>").unwrap();
    let embedded: Value = serde_json::from_str(&page.text[start..end]).unwrap();
    let served = get(&api, "/v1/graph").await;
    assert_eq!(embedded, serde_json::from_str::<Value>(&served.text).unwrap());

    let one = get(&api, "/graph?service=shipping").await;
    one.assert_html(
        StatusCode::OK,
        &["<h1>Dependencies of shipping</h1>", "Show every service"],
    );
}

#[tokio::test]
async fn assets_are_embedded_and_cached_for_long() {
    let api = web(&shop_registry().await);
    for (uri, content_type, phrase) in [
        ("/assets/style.css", "text/css; charset=utf-8", ".schema"),
        ("/assets/app.js", "text/javascript; charset=utf-8", "drawGraph"),
    ] {
        let asset = get(&api, uri).await;
        assert_eq!(asset.status, StatusCode::OK, "{uri}");
        assert_eq!(asset.header(header::CONTENT_TYPE), content_type);
        assert_eq!(
            asset.header(header::CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
        assert!(asset.text.contains(phrase), "{uri}");
    }
    assert_eq!(get(&api, "/assets/other.js").await.status, StatusCode::NOT_FOUND);
    // Pages name the assets by content, so a new build is never served a stale copy.
    let page = get(&api, "/").await;
    let version = super::asset_version();
    assert_eq!(version.len(), 12);
    assert!(
        page.text.contains(&format!("/assets/style.css?v={version}")),
        "{}",
        page.text
    );
}
