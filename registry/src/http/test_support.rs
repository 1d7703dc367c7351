//! Set-up shared by the tests of the HTTP API and of the web page: a
//! registry on a memory store holding the shop's contracts, and requests
//! through the router one at a time, without a socket or NATS.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use contracts::registry_api::RegisterRequest;

use crate::metrics::Via;
use crate::server::{Registry, RegistryOptions};
use crate::store::MemoryStore;

/// The owner credential the shop's contracts are registered with.
pub(crate) const OWNER: &str = "shop-team";

/// The shop's contract of `service`, as JSON to change before registering.
pub(crate) fn shop_document(service: &str) -> Value {
    crate::sample::shop_contract(service).to_value()
}

/// A registry on a memory store holding every shop contract.
pub(crate) async fn shop_registry() -> Arc<Registry> {
    let registry = Registry::open(Arc::new(MemoryStore::new()), RegistryOptions::default())
        .await
        .unwrap();
    for document in crate::sample::shop_contracts() {
        register(&registry, document.to_value()).await;
    }
    Arc::new(registry)
}

/// Registers `document` as [`OWNER`] and asserts that it is new. It goes in
/// as a service registers itself, over NATS, so the HTTP registration
/// metrics count only what a test sends over HTTP.
pub(crate) async fn register(registry: &Registry, document: Value) {
    let request = RegisterRequest {
        document,
        owner_token: Some(OWNER.to_owned()),
    };
    let (_, created) = registry
        .register(request, Via::Nats)
        .await
        .unwrap_or_else(|refusal| panic!("refused: {refusal:?}"));
    assert!(created);
}

/// A response of the router, read whole.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON; anything else fails the test.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {:?} ({})",
                String::from_utf8_lossy(&self.body),
                self.status
            )
        })
    }

    /// The value of the header `name`, which must be there.
    pub(crate) fn header(&self, name: HeaderName) -> &str {
        header(&self.headers, name)
    }
}

/// The value of the header `name` in `headers`, which must be there as text.
pub(crate) fn header(headers: &HeaderMap, name: HeaderName) -> &str {
    headers
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

/// Sends `request` through `api` and reads the whole response.
pub(crate) async fn send(api: &Router, request: Request<Body>) -> Reply {
    let response = api.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Reply { status, headers, body }
}

/// `GET uri` through `api`.
pub(crate) async fn get(api: &Router, uri: &str) -> Reply {
    send(api, Request::get(uri).body(Body::empty()).unwrap()).await
}
