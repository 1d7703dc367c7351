//! The HTTP API through its router, without a socket or NATS: a registry on
//! a memory store with the shop's contracts, and one request per call.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use contracts::ContractId;
use contracts::registry_api::HeartbeatRequest;

use super::test_support::{OWNER, Reply, get, send, shop_document, shop_registry};
use super::{CorsPolicy, HttpConfig, HttpState, router};

const WRITE_TOKEN: &str = "write-s3cret";

/// The shop's registry behind a router, with the write token configured.
async fn shop_api() -> Router {
    router(HttpState::new(
        shop_registry().await,
        HttpConfig {
            write_token: Some(WRITE_TOKEN.to_owned()),
            cors: CorsPolicy::Disabled,
        },
    ))
}

impl Reply {
    /// Asserts an error reply: the status, the bus's code, and a phrase of the message.
    fn assert_error(&self, status: StatusCode, code: &str, phrase: &str) {
        assert_eq!(self.status, status, "{:?}", String::from_utf8_lossy(&self.body));
        assert!(
            self.header(header::CONTENT_TYPE).starts_with("application/json"),
            "{:?}",
            self.headers
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{body:#}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(phrase), "{message:?} lacks {phrase:?}");
    }
}

async fn get_if_none_match(api: &Router, uri: &str, etag: &str) -> Reply {
    let request = Request::get(uri)
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .unwrap();
    send(api, request).await
}

fn post(uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.into()).unwrap()
}

fn bearer() -> String {
    format!("Bearer {WRITE_TOKEN}")
}

fn names(services: &Value) -> Vec<String> {
    services
        .as_array()
        .unwrap()
        .iter()
        .map(|service| service["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A compatible next version of inventory: one optional property more.
fn inventory_update() -> Value {
    let mut update = shop_document("inventory");
    update["version"] = json!("1.2.0");
    update["$defs"]["ReserveStock"]["properties"]["note"] = json!({"type": "string", "description": "Optional."});
    update
}

/// A breaking next version of inventory: a new required request property.
fn inventory_breaking() -> Value {
    let mut update = shop_document("inventory");
    update["version"] = json!("1.2.0");
    update["$defs"]["ReserveStock"]["properties"]["warehouse"] = json!({"type": "string"});
    update["$defs"]["ReserveStock"]["required"] = json!(["order_id", "items", "warehouse"]);
    update
}

#[tokio::test]
async fn services_are_listed_by_name_a_page_at_a_time() {
    let api = shop_api().await;
    let all = get(&api, "/v1/services").await;
    assert_eq!(all.status, StatusCode::OK);
    let body = all.json();
    assert_eq!(
        names(&body["services"]),
        ["inventory", "notifications", "orders", "payments", "shipping"]
    );
    assert!(body.get("next").is_none(), "{body:#}");
    assert!(!all.headers.contains_key(header::LINK));
    assert_eq!(body["services"][0]["owner"], "fulfilment-team");
    assert_eq!(body["services"][0]["latest"], "1.1.0");

    // Follow the pages as a client would: by `next`, and by the Link header.
    let first = get(&api, "/v1/services?limit=2").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(names(&first.json()["services"]), ["inventory", "notifications"]);
    assert_eq!(first.json()["next"], "notifications");
    assert_eq!(
        first.header(header::LINK),
        "</v1/services?after=notifications&limit=2>; rel=\"next\""
    );
    let second = get(&api, "/v1/services?after=notifications&limit=2").await;
    assert_eq!(names(&second.json()["services"]), ["orders", "payments"]);
    let link = second.header(header::LINK).to_owned();
    let next = link.trim_start_matches('<').split_once('>').unwrap().0;
    let last = get(&api, next).await;
    assert_eq!(names(&last.json()["services"]), ["shipping"]);
    assert!(last.json().get("next").is_none());

    // An empty parameter counts as absent.
    assert_eq!(get(&api, "/v1/services?after=&limit=").await.status, StatusCode::OK);
    // Bad parameters are 400 with the bus's error body.
    get(&api, "/v1/services?limit=0")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "limit");
    get(&api, "/v1/services?limit=many")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "limit");
    get(&api, "/v1/services?after=Not_A_Name").await.assert_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
        "service name",
    );
    get(&api, "/v1/services?page=2").await.assert_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
        "unknown field `page`",
    );
}

#[tokio::test]
async fn a_contract_is_read_with_its_digest_as_etag() {
    let api = shop_api().await;
    let latest = get(&api, "/v1/services/inventory").await;
    assert_eq!(latest.status, StatusCode::OK);
    let body = latest.json();
    assert_eq!(body["document"]["service"], "inventory");
    assert_eq!(body["document"]["version"], "1.1.0");
    let digest = body["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(latest.header(header::ETAG), format!("\"{digest}\""));
    assert_eq!(latest.header(header::CACHE_CONTROL), "no-cache");

    // Revalidation: the same tag is 304 with no body; a weak match counts too.
    for condition in [format!("\"{digest}\""), format!("W/\"{digest}\", \"other\"")] {
        let unchanged = get_if_none_match(&api, "/v1/services/inventory", &condition).await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED, "{condition}");
        assert!(unchanged.body.is_empty());
        assert_eq!(unchanged.header(header::ETAG), format!("\"{digest}\""));
    }
    let changed = get_if_none_match(&api, "/v1/services/inventory", "\"sha256:old\"").await;
    assert_eq!(changed.status, StatusCode::OK);

    // The exact version: the same document and tag.
    let exact = get(&api, "/v1/services/inventory/versions/1.1.0").await;
    assert_eq!(exact.status, StatusCode::OK);
    assert_eq!(exact.json(), body);
    assert_eq!(exact.header(header::ETAG), format!("\"{digest}\""));
    let major = get(&api, "/v1/services/inventory?major=1").await;
    assert_eq!(major.json(), body);

    let versions = get(&api, "/v1/services/inventory/versions").await;
    assert_eq!(versions.status, StatusCode::OK);
    assert_eq!(
        versions.json(),
        json!({
            "service": "inventory",
            "versions": [{"version": "1.1.0", "digest": digest, "registered_at_ms": body["registered_at_ms"]}]
        })
    );
}

#[tokio::test]
async fn unknown_or_malformed_names_are_404_and_400_with_the_error_body() {
    let api = shop_api().await;
    get(&api, "/v1/services/warehouse")
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no service warehouse");
    get(&api, "/v1/services/warehouse/versions")
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND", "warehouse");
    get(&api, "/v1/services/warehouse/instances")
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND", "warehouse");
    get(&api, "/v1/services/inventory/versions/9.9.9").await.assert_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "registered: 1.1.0",
    );
    get(&api, "/v1/services/inventory?major=7")
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND", "major 7");
    get(&api, "/v1/services/Inventory").await.assert_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
        "invalid service name",
    );
    get(&api, "/v1/services/inventory/versions/one").await.assert_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
        "invalid",
    );
    get(&api, "/v1/nothing/here").await.assert_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no route GET /v1/nothing/here",
    );
    let wrong_method = send(&api, Request::delete("/v1/services").body(Body::empty()).unwrap()).await;
    wrong_method.assert_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "DELETE");
}

#[tokio::test]
async fn subjects_resolve_exactly_or_by_wildcard() {
    let api = shop_api().await;
    let exact = get(&api, "/v1/subjects/shop.inventory.v1.reserve").await;
    assert_eq!(exact.status, StatusCode::OK);
    assert_eq!(
        exact.json(),
        json!({"bindings": [{
            "subject": "shop.inventory.v1.reserve",
            "contract": "inventory@1.1.0",
            "kind": "operation",
            "name": "reserve"
        }]})
    );
    // `*` may be sent as it is; `>` is not a URI character and is sent percent-encoded.
    for uri in ["/v1/subjects/shop.inventory.v1.%3E", "/v1/subjects/shop.*.v1.%3E"] {
        let every = get(&api, uri).await;
        assert_eq!(every.status, StatusCode::OK, "{uri}");
        let subjects: Vec<String> = every.json()["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|binding| binding["subject"].as_str().unwrap().to_owned())
            .collect();
        assert!(subjects.len() >= 6, "{subjects:?}");
        assert!(subjects.iter().all(|subject| subject.starts_with("shop.")));
    }
    let inventory = get(&api, "/v1/subjects/shop.inventory.v1.%3E").await.json();
    assert_eq!(inventory["bindings"].as_array().unwrap().len(), 6, "{inventory:#}");
    let events = get(&api, "/v1/subjects/shop.%2A.v1.placed").await;
    assert_eq!(events.json()["bindings"][0]["contract"], "orders@1.2.0");
    // A pattern matching nothing is an empty answer; a concrete subject nobody declares is 404.
    assert_eq!(
        get(&api, "/v1/subjects/billing.%3E").await.json(),
        json!({"bindings": []})
    );
    get(&api, "/v1/subjects/shop.inventory.v1.teleport").await.assert_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "shop.inventory.v1.teleport",
    );
    get(&api, "/v1/subjects/shop..v1")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "invalid");
}

#[tokio::test]
async fn search_combines_its_criteria() {
    let api = shop_api().await;
    let search = |query: &'static str| {
        let api = api.clone();
        async move {
            let reply = get(&api, &format!("/v1/search?{query}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.json());
            names(&reply.json()["services"])
        }
    };
    assert_eq!(search("tag=money").await, ["payments"]);
    assert_eq!(search("tag=shop&subject=shop.*.v1.reserve").await, ["inventory"]);
    assert_eq!(search("owner=fulfilment-team&tag=logistics").await, ["shipping"]);
    assert_eq!(search("q=").await.len(), 5);
    assert!(search("tag=nothing").await.is_empty());
    let text = search("q=stock").await;
    assert!(text.contains(&"inventory".to_owned()), "{text:?}");
    get(&api, "/v1/search?subject=a..b")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "invalid");
    get(&api, "/v1/search?tags=shop").await.assert_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
        "unknown field `tags`",
    );
}

#[tokio::test]
async fn consumers_and_the_graph_show_who_depends_on_whom() {
    let api = shop_api().await;
    let consumers = get(&api, "/v1/events/orders/placed/consumers").await;
    assert_eq!(consumers.status, StatusCode::OK);
    assert_eq!(
        consumers.json(),
        json!({"reference": "orders@1#placed", "kind": "event", "consumers": ["inventory@1.1.0", "payments@1.2.0"], "callers": []})
    );
    let declined = get(&api, "/v1/events/payments/declined/consumers?major=1").await;
    assert_eq!(declined.json()["consumers"], json!(["inventory@1.1.0", "orders@1.2.0"]));
    get(&api, "/v1/events/orders/teleported/consumers").await.assert_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "teleported",
    );
    get(&api, "/v1/events/orders/placed/consumers?major=2")
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND", "major version 2");

    let graph = get(&api, "/v1/graph").await;
    assert_eq!(graph.status, StatusCode::OK);
    let body = graph.json();
    assert_eq!(body["nodes"].as_array().unwrap().len(), 5);
    assert!(
        body["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|edge| edge["from"] == "inventory" && edge["to"] == "orders" && edge["kind"] == "consumes")
    );
    assert_eq!(get(&api, "/v1/graph?format=json").await.json(), body);
    let only = get(&api, "/v1/graph?service=shipping").await.json();
    assert!(
        only["edges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|edge| edge["from"] == "shipping" || edge["to"] == "shipping")
    );

    let mermaid = get(&api, "/v1/graph?format=mermaid").await;
    assert_eq!(mermaid.status, StatusCode::OK);
    assert!(mermaid.header(header::CONTENT_TYPE).starts_with("text/vnd.mermaid"));
    assert!(String::from_utf8_lossy(&mermaid.body).contains("inventory"));
    let dot = get(&api, "/v1/graph?format=dot").await;
    assert_eq!(dot.status, StatusCode::OK);
    assert!(dot.header(header::CONTENT_TYPE).starts_with("text/vnd.graphviz"));
    assert!(String::from_utf8_lossy(&dot.body).contains("digraph"));
    get(&api, "/v1/graph?format=svg").await.assert_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
        "unknown graph format",
    );
}

#[tokio::test]
async fn instances_are_listed_per_service() {
    let registry = shop_registry().await;
    let api = router(HttpState::new(Arc::clone(&registry), HttpConfig::default()));
    let none = get(&api, "/v1/services/inventory/instances").await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.json(), json!({"instances": []}));

    let digest = get(&api, "/v1/services/inventory").await.json()["digest"].clone();
    let beat = HeartbeatRequest {
        instance_id: "inventory-1".to_owned(),
        contract: ContractId::parse("inventory@1.1.0").unwrap(),
        digest: digest.as_str().unwrap().to_owned(),
        ttl_ms: 60_000,
    };
    registry.catalog().heartbeat(&beat, Instant::now(), true).unwrap();
    let one = get(&api, "/v1/services/inventory/instances").await.json();
    assert_eq!(one["instances"].as_array().unwrap().len(), 1);
    assert_eq!(one["instances"][0]["instance_id"], "inventory-1");
    assert_eq!(one["instances"][0]["healthy"], true);
    assert_eq!(one["instances"][0]["drift"], false);
    assert_eq!(
        get(&api, "/v1/services/orders/instances").await.json(),
        json!({"instances": []})
    );
    let health = get(&api, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        health.json(),
        json!({"status": "ok", "services": 5, "versions": 5, "instances": 1})
    );
    assert_eq!(health.header(header::CACHE_CONTROL), "no-store");
}

#[tokio::test]
async fn a_breaking_candidate_is_reported_not_stored() {
    let api = shop_api().await;
    let check = send(
        &api,
        post("/v1/compatibility/inventory", &[], inventory_breaking().to_string()),
    )
    .await;
    assert_eq!(check.status, StatusCode::OK);
    let answer = check.json();
    assert_eq!(answer["accepted"], false, "{answer:#}");
    // Its own history and the consumers of its events.
    assert!(
        answer["against"]
            .as_array()
            .unwrap()
            .contains(&json!("inventory@1.1.0")),
        "{answer:#}"
    );
    let breaking = answer["breaking"].as_array().unwrap();
    assert!(
        breaking.iter().any(|change| change["message"] == "request of reserve"
            && change["pointer"]
                .as_str()
                .unwrap()
                .starts_with("/operations/reserve/request")
            && change["reason"]
                .as_str()
                .unwrap()
                .contains("\"warehouse\" became required")),
        "{answer:#}"
    );
    // Nothing was stored.
    assert_eq!(
        get(&api, "/v1/services/inventory").await.json()["document"]["version"],
        "1.1.0"
    );

    let fine = send(
        &api,
        post("/v1/compatibility/inventory", &[], inventory_update().to_string()),
    )
    .await;
    assert_eq!(fine.json()["accepted"], true, "{:#}", fine.json());
    // With an owner credential, ownership is checked too.
    let intruder = send(
        &api,
        post(
            "/v1/compatibility/inventory",
            &[("x-soa-owner-token", "intruder")],
            inventory_update().to_string(),
        ),
    )
    .await;
    assert_eq!(intruder.json()["accepted"], false);
    assert!(!intruder.json()["refusals"].as_array().unwrap().is_empty());

    send(
        &api,
        post("/v1/compatibility/orders", &[], inventory_update().to_string()),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "not of orders");
    send(&api, post("/v1/compatibility/inventory", &[], "{\"service\": "))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "request body:1:");
    send(&api, post("/v1/compatibility/inventory", &[], ""))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "empty");
    send(&api, post("/v1/compatibility/inventory", &[], "[1, 2]"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "JSON object");
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    send(&api, post("/v1/compatibility/inventory", &[], deep))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "deep");
}

#[tokio::test]
async fn writes_need_the_configured_bearer_token() {
    let api = shop_api().await;
    let body = inventory_update().to_string();

    let missing = send(
        &api,
        post("/v1/services", &[("x-soa-owner-token", OWNER)], body.clone()),
    )
    .await;
    missing.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Bearer");
    assert_eq!(
        missing.header(header::WWW_AUTHENTICATE),
        "Bearer realm=\"soa-registry\""
    );
    let wrong = send(
        &api,
        post(
            "/v1/services",
            &[("authorization", "Bearer guess"), ("x-soa-owner-token", OWNER)],
            body.clone(),
        ),
    )
    .await;
    wrong.assert_error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "not the registry's write token",
    );
    assert!(wrong.header(header::WWW_AUTHENTICATE).contains("invalid_token"));
    assert_eq!(
        get(&api, "/v1/services/inventory").await.json()["document"]["version"],
        "1.1.0",
        "nothing was stored"
    );

    // Without a configured token, writes are off whatever is sent.
    let read_only = router(HttpState::new(shop_registry().await, HttpConfig::default()));
    send(
        &read_only,
        post(
            "/v1/services",
            &[("authorization", &bearer()), ("x-soa-owner-token", OWNER)],
            body,
        ),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "UNAUTHORIZED", "--http-token");
}

#[tokio::test]
async fn a_registration_over_http_follows_the_bus_rules_and_is_visible() {
    let api = shop_api().await;
    let authorized = bearer();
    let headers = [("authorization", authorized.as_str()), ("x-soa-owner-token", OWNER)];

    let created = send(&api, post("/v1/services", &headers, inventory_update().to_string())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.json());
    assert_eq!(created.json()["id"], "inventory@1.2.0");
    assert_eq!(created.json()["created"], true);
    assert_eq!(
        created.header(header::LOCATION),
        "/v1/services/inventory/versions/1.2.0"
    );
    let latest = get(&api, "/v1/services/inventory").await.json();
    assert_eq!(latest["document"]["version"], "1.2.0");
    assert_eq!(latest["digest"], created.json()["digest"]);
    assert_eq!(get(&api, created.header(header::LOCATION)).await.json(), latest);

    // The same content again: idempotent, 200.
    let again = send(&api, post("/v1/services", &headers, inventory_update().to_string())).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["created"], false);

    // Other content under a stored version: 409.
    let mut changed = inventory_update();
    changed["description"] = json!("Something else");
    send(&api, post("/v1/services", &headers, changed.to_string()))
        .await
        .assert_error(StatusCode::CONFLICT, "CONFLICT", "immutable");

    // A breaking change: 422 with every change in the details.
    let mut breaking = inventory_breaking();
    breaking["version"] = json!("1.3.0");
    let refused = send(&api, post("/v1/services", &headers, breaking.to_string())).await;
    refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "INCOMPATIBLE", "inventory@1.3.0");
    assert!(
        refused.json()["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|detail| detail["message"]
                .as_str()
                .unwrap()
                .contains("\"warehouse\" became required")),
        "{:#}",
        refused.json()
    );

    // Someone else's service: the owner rule is 403 (the bearer token was fine).
    let mut payments = shop_document("payments");
    payments["version"] = json!("1.0.1");
    send(
        &api,
        post(
            "/v1/services",
            &[
                ("authorization", authorized.as_str()),
                ("x-soa-owner-token", "intruder"),
            ],
            payments.to_string(),
        ),
    )
    .await
    .assert_error(
        StatusCode::FORBIDDEN,
        "UNAUTHORIZED",
        "credential that registered it first",
    );

    // Not a contract document: 400 with the pointers.
    let invalid = send(
        &api,
        post("/v1/services", &headers, json!({"service": "x"}).to_string()),
    )
    .await;
    invalid.assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "not valid");
    assert!(!invalid.json()["details"].as_array().unwrap().is_empty());
    send(&api, post("/v1/services", &headers, "not json"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", "request body:1:");

    // A brand-new service over HTTP.
    let mut warehouse = shop_document("shipping");
    warehouse["service"] = json!("warehouse");
    let text = warehouse.to_string().replace("shop.shipping.v1.", "shop.warehouse.v1.");
    let new_service = send(&api, post("/v1/services", &headers, text)).await;
    assert_eq!(new_service.status, StatusCode::CREATED, "{:#}", new_service.json());
    assert_eq!(
        names(&get(&api, "/v1/services").await.json()["services"]),
        [
            "inventory",
            "notifications",
            "orders",
            "payments",
            "shipping",
            "warehouse"
        ]
    );

    // Every outcome was counted.
    let metrics = String::from_utf8(get(&api, "/metrics").await.body.to_vec()).unwrap();
    for line in [
        r#"soa_registry_registrations_total{via="http",outcome="created"} 2"#,
        r#"soa_registry_registrations_total{via="http",outcome="unchanged"} 1"#,
        r#"soa_registry_registrations_total{via="http",outcome="refused"} 4"#,
        r#"soa_registry_registration_refusals_total{via="http",code="INCOMPATIBLE"} 1"#,
        r#"soa_registry_registration_refusals_total{via="http",code="CONFLICT"} 1"#,
        r#"soa_registry_registration_refusals_total{via="http",code="UNAUTHORIZED"} 1"#,
        r#"soa_registry_registration_refusals_total{via="http",code="VALIDATION_FAILED"} 1"#,
        "soa_registry_services 6",
        "soa_registry_versions 7",
    ] {
        assert!(
            metrics.lines().any(|candidate| candidate == line),
            "{line} missing in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn every_read_has_an_etag_and_answers_revalidation_with_304() {
    let api = shop_api().await;
    for uri in [
        "/v1/services",
        "/v1/services/orders",
        "/v1/services/orders/versions",
        "/v1/services/orders/versions/1.2.0",
        "/v1/services/orders/instances",
        "/v1/subjects/shop.orders.v1.place",
        "/v1/search?tag=shop",
        "/v1/events/orders/placed/consumers",
        "/v1/graph",
        "/v1/asyncapi",
        "/v1/asyncapi/orders",
        "/openapi.json",
    ] {
        let first = get(&api, uri).await;
        assert_eq!(first.status, StatusCode::OK, "{uri}");
        let etag = first.header(header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{uri}: {etag}");
        let second = get(&api, uri).await;
        assert_eq!(second.header(header::ETAG), etag, "{uri}: the tag is stable");
        let head = send(&api, Request::head(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(head.status, StatusCode::OK, "{uri}");
        assert!(head.body.is_empty(), "{uri}");
        assert_eq!(head.header(header::ETAG), etag, "{uri}: HEAD tags as GET does");
        let unchanged = get_if_none_match(&api, uri, &etag).await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED, "{uri}");
        assert!(unchanged.body.is_empty(), "{uri}");
        assert!(!unchanged.headers.contains_key(header::CONTENT_TYPE), "{uri}");
    }
    // Errors are never tagged.
    let missing = get(&api, "/v1/services/warehouse").await;
    assert!(!missing.headers.contains_key(header::ETAG));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let api = shop_api().await;
    get(&api, "/v1/services/orders").await;
    get(&api, "/v1/services/orders").await;
    get(&api, "/v1/services/warehouse").await;
    get(&api, "/no/such/route").await;
    let reply = get(&api, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .header(header::CONTENT_TYPE)
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    for line in [
        r#"soa_registry_http_requests_total{method="GET",route="/v1/services/{name}",status="200"} 2"#,
        r#"soa_registry_http_requests_total{method="GET",route="/v1/services/{name}",status="404"} 1"#,
        r#"soa_registry_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"soa_registry_http_request_duration_seconds_count{method="GET",route="/v1/services/{name}",status="200"} 2"#,
        "soa_registry_services 5",
        "soa_registry_versions 5",
        "soa_registry_instances 0",
        "soa_registry_instances_healthy 0",
    ] {
        assert!(
            text.lines().any(|candidate| candidate == line),
            "{line} missing in\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE soa_registry_http_request_duration_seconds histogram"),
        "{text}"
    );
}

#[tokio::test]
async fn cors_is_off_by_default_and_allows_the_configured_origins() {
    let preflight = || {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/services")
            .header(header::ORIGIN, "https://catalog.example.com")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization, content-type")
            .body(Body::empty())
            .unwrap()
    };
    let closed = shop_api().await;
    let reply = send(&closed, preflight()).await;
    assert!(!reply.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    let open = router(HttpState::new(
        shop_registry().await,
        HttpConfig {
            write_token: None,
            cors: CorsPolicy::parse(&["https://catalog.example.com".to_owned()]).unwrap(),
        },
    ));
    let reply = send(&open, preflight()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "https://catalog.example.com"
    );
    assert!(reply.header(header::ACCESS_CONTROL_ALLOW_METHODS).contains("POST"));
    let read = send(
        &open,
        Request::get("/v1/services")
            .header(header::ORIGIN, "https://catalog.example.com")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        read.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "https://catalog.example.com"
    );
    assert!(read.header(header::ACCESS_CONTROL_EXPOSE_HEADERS).contains("etag"));
    let other = send(
        &open,
        Request::get("/v1/services")
            .header(header::ORIGIN, "https://evil.example.com")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!other.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    assert_eq!(CorsPolicy::parse(&[]).unwrap(), CorsPolicy::Disabled);
    assert_eq!(CorsPolicy::parse(&["*".to_owned()]).unwrap(), CorsPolicy::AnyOrigin);
    assert!(CorsPolicy::parse(&["catalog.example.com".to_owned()]).is_err());
    assert!(CorsPolicy::parse(&["*".to_owned(), "https://a.example".to_owned()]).is_err());
}

/// Every route the router serves, as the OpenAPI document must list it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/services"),
    ("post", "/v1/services"),
    ("get", "/v1/services/{name}"),
    ("get", "/v1/services/{name}/versions"),
    ("get", "/v1/services/{name}/versions/{version}"),
    ("get", "/v1/services/{name}/instances"),
    ("get", "/v1/subjects/{subject}"),
    ("get", "/v1/search"),
    ("get", "/v1/events/{service}/{event}/consumers"),
    ("get", "/v1/graph"),
    ("get", "/v1/asyncapi"),
    ("get", "/v1/asyncapi/{name}"),
    ("post", "/v1/compatibility/{name}"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_is_valid_openapi_3_1() {
    let api = shop_api().await;
    let reply = get(&api, "/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    let document = reply.json();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["title"], "soabus registry");

    // Exactly the routes above, each with its method and an operation id.
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(operation["operationId"].is_string(), "{method} {path}");
            assert!(operation["responses"].is_object(), "{method} {path}");
            documented.insert((method.clone(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    // Each documented route is served: the router answers it, never with
    // its unknown-route or wrong-method reply.
    let mut checked_replies = 0;
    for (method, path) in &documented {
        let uri = path
            .replace("{name}", "orders")
            .replace("{service}", "orders")
            .replace("{event}", "placed")
            .replace("{version}", "1.1.0")
            .replace("{subject}", "shop.orders.v1.place");
        let request = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .body(Body::from(shop_document("orders").to_string()))
            .unwrap();
        let reply = send(&api, request).await;
        assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if reply.status == StatusCode::NOT_FOUND {
            assert!(
                !reply.json()["message"].as_str().unwrap().contains("no route"),
                "{method} {uri}"
            );
        }
        // A JSON answer matches the schema the document gives for it.
        let status = reply.status.as_str().to_owned();
        let documented = &document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
        if reply.status.is_success() && documented.get("$ref").is_some() {
            let schema = json!({"$ref": documented["$ref"], "components": document["components"]});
            let validator = jsonschema::validator_for(&schema).unwrap();
            let body = reply.json();
            let errors: Vec<String> = validator.iter_errors(&body).map(|error| error.to_string()).collect();
            assert!(errors.is_empty(), "{method} {uri}: {errors:#?}");
            checked_replies += 1;
        }
    }
    assert!(checked_replies >= 10, "{checked_replies}");
    // The request body's schema accepts the shop's documents and refuses a non-document.
    let request_body =
        &document["paths"]["/v1/services"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let validator =
        jsonschema::validator_for(&json!({"$ref": request_body["$ref"], "components": document["components"]}))
            .unwrap();
    for contract in crate::sample::shop_contracts() {
        assert!(validator.is_valid(&contract.to_value()), "{}", contract.service);
    }
    assert!(!validator.is_valid(&json!({"service": "x"})));

    // The document is valid against the OpenAPI 3.1 schema (vendored, see
    // registry/tests/data/README.md) ...
    let schema: Value = serde_json::from_str(include_str!("../../tests/data/openapi-3.1.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    // ... every schema in it is a valid JSON Schema 2020-12 ...
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for (name, schema) in schemas {
        jsonschema::draft202012::meta::validate(schema).unwrap_or_else(|err| panic!("{name}: {err}"));
    }
    // ... and every reference in it resolves to one of its components.
    let mut references = Vec::new();
    collect_references(&document, &mut references);
    assert!(references.len() > 20, "{references:?}");
    for reference in references {
        if let Some(name) = reference.strip_prefix("#/components/schemas/") {
            assert!(schemas.contains_key(name), "{reference} does not resolve");
        } else {
            panic!("{reference} is not a component");
        }
    }
    for name in [
        "ListResponse",
        "GetResponse",
        "RegisterResponse",
        "CheckResponse",
        "ErrorBody",
        "ContractDocument",
        "Health",
    ] {
        assert!(schemas.contains_key(name), "{name} missing among {:?}", schemas.keys());
    }
    assert_eq!(
        document["paths"]["/v1/services"]["post"]["security"],
        json!([{"bearer": []}])
    );
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(
        schemas["GetResponse"]["properties"]["document"]["$ref"],
        "#/components/schemas/ContractDocument"
    );
    // The served document is the one `openapi_document` gives.
    assert_eq!(document, super::openapi_document());
}

fn collect_references(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "$ref" {
                    if let Some(reference) = value.as_str() {
                        into.push(reference.to_owned());
                    }
                } else {
                    collect_references(value, into);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, into)),
        _ => {}
    }
}

#[tokio::test]
async fn graceful_shutdown_stops_the_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(super::serve_http(listener, shop_api().await, shutdown.clone()));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn asyncapi_documents_of_a_service_and_of_the_system_are_valid() {
    let api = shop_api().await;
    for uri in ["/v1/asyncapi/inventory", "/v1/asyncapi/orders?major=1", "/v1/asyncapi"] {
        let reply = get(&api, uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        let document = reply.json();
        assert_eq!(document["asyncapi"], "3.0.0", "{uri}");
        crate::export::asyncapi::validate(&document).unwrap_or_else(|problems| panic!("{uri}: {problems:#?}"));
    }
    let inventory = get(&api, "/v1/asyncapi/inventory").await.json();
    assert!(
        inventory["operations"].as_object().unwrap().contains_key("reserve"),
        "{inventory:#}"
    );
    assert_eq!(get(&api, "/v1/asyncapi/teleporter").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&api, "/v1/asyncapi/Bad_Name").await.status, StatusCode::BAD_REQUEST);
}
