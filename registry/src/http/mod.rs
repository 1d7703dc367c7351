//! The registry over HTTP: the read queries of the NATS API as REST
//! resources under `/v1`, guarded writes, an OpenAPI 3.1 document at
//! `/openapi.json`, Prometheus metrics at `/metrics` and `/healthz`, and
//! the web page for people at `/` (`web`).
//!
//! A thin adapter, as the NATS side is: every answer comes from the same
//! [`Catalog`](crate::catalog::Catalog) and every registration goes through
//! [`Registry::register`], so ownership, compatibility, idempotency and
//! durability are the same over both APIs. [`router`] builds the routes
//! apart from [`serve_http`], so tests drive the router without a socket.
//!
//! Conventions, the same on every route:
//! - JSON bodies; errors are the bus's [`ErrorBody`](contracts::ErrorBody)
//!   with the HTTP status of its code ([`contracts::ErrorCode::status`]).
//! - Reads carry a strong `ETag` (the contract digest for contract reads, a
//!   hash of the body otherwise) and answer `If-None-Match` with 304.
//! - `POST /v1/services` needs `Authorization: Bearer <token>` with the token
//!   the registry was started with; without one configured the write API is
//!   off. The service owner's credential travels in `X-Soa-Owner-Token`.

use std::sync::Arc;

use axum::http::HeaderValue;
use tokio_util::sync::CancellationToken;

use crate::server::Registry;

mod auth;
mod conditional;
mod error;
mod openapi;
mod routes;
mod web;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use crate::metrics::{Metrics, Via};
pub use routes::OWNER_TOKEN_HEADER;

/// Which browser origins may call the API (CORS). None by default: the API
/// is for tools and services, and a page served elsewhere must be allowed
/// explicitly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No CORS headers at all.
    #[default]
    Disabled,
    /// Any origin (`*`); credentials are never allowed with it.
    AnyOrigin,
    /// Exactly these origins (`https://example.com`).
    Origins(Vec<HeaderValue>),
}

impl CorsPolicy {
    /// Reads `--cors-origin` values: none disables CORS, `*` allows any
    /// origin, anything else is a list of exact origins.
    pub fn parse(origins: &[String]) -> Result<Self, String> {
        if origins.is_empty() {
            return Ok(Self::Disabled);
        }
        if origins.iter().any(|origin| origin == "*") {
            if origins.len() > 1 {
                return Err("--cors-origin '*' allows every origin; give it alone, not with other origins".to_owned());
            }
            return Ok(Self::AnyOrigin);
        }
        origins
            .iter()
            .map(|origin| {
                let well_formed = (origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/')
                    && !origin.contains(char::is_whitespace);
                if !well_formed {
                    return Err(format!(
                        "--cors-origin {origin:?} is not an origin: write scheme://host[:port], such as https://example.com"
                    ));
                }
                HeaderValue::from_str(origin).map_err(|err| format!("--cors-origin {origin:?}: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::Origins)
    }
}

/// How the HTTP API behaves, beyond the registry it serves.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// The bearer token the write API requires; `None` turns writes off.
    pub write_token: Option<String>,
    /// Which browser origins may call the API.
    pub cors: CorsPolicy,
}

/// What every handler shares: the registry, the metrics and the settings.
/// Cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    registry: Arc<Registry>,
    write_token: Option<auth::WriteToken>,
    cors: CorsPolicy,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("registry", &self.inner.registry)
            .field("writes", &self.inner.write_token.is_some())
            .field("cors", &self.inner.cors)
            .finish_non_exhaustive()
    }
}

impl HttpState {
    /// The state of an API over `registry`; it records into the registry's
    /// metrics, and registrations are announced by the registry itself.
    pub fn new(registry: Arc<Registry>, config: HttpConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                write_token: config.write_token.as_deref().map(auth::WriteToken::new),
                cors: config.cors,
            }),
        }
    }

    /// The metrics this API records into (the registry's).
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.inner.registry.metrics()
    }
}

/// The API's routes over `state`, ready to serve or to call in a test.
pub fn router(state: HttpState) -> axum::Router {
    routes::router(state)
}

/// The OpenAPI 3.1 document of the API, as served at `/openapi.json`.
pub fn openapi_document() -> serde_json::Value {
    routes::openapi_document()
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting and
/// lets requests in flight finish.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
