//! The registry's web page: the catalogue, one page per service (and per
//! version), a version diff and the dependency graph, as plain HTML served by
//! the same router as the API.
//!
//! Like the API it is a thin adapter: every page is built from the same
//! [`Catalog`](crate::catalog::Catalog) queries, and diffs come from the
//! compatibility checker the registry enforces. Handlers gather owned data
//! here; `pages` turns it into HTML with maud, which escapes every value it
//! splices in, since descriptions, tags and schemas come from users.
//! Nothing is fetched from elsewhere: the stylesheet and the script (filter as
//! you type, the graph drawing) are embedded in the binary and served under
//! `/assets/`, so the page works offline and under a strict
//! Content-Security-Policy. Pages are not API routes and are not in the
//! OpenAPI document.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::Markup;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use contracts::compat::{ContractChange, Mode, diff_contracts, policy_mode};
use contracts::registry_api::{
    ConsumersRequest, ConsumersResponse, GetRequest, GetResponse, GraphRequest, GraphResponse, InstanceInfo,
    InstancesRequest, SearchRequest, ServiceSummary, VersionInfo, VersionsRequest,
};
use contracts::{ContractDocument, ErrorBody, MemberName, ServiceName, Version};

use super::HttpState;

mod pages;
mod schema;

#[cfg(test)]
mod tests;

/// The stylesheet, served at `/assets/style.css`.
const STYLE_CSS: &str = include_str!("assets/style.css");
/// The script, served at `/assets/app.js`.
const APP_JS: &str = include_str!("assets/app.js");

/// How many services the catalogue lists before it asks for a narrower search.
const MAX_ROWS: usize = 500;

/// The page routes, merged into the API's router (outside the OpenAPI
/// document: they are not API routes).
pub(super) fn router() -> Router<HttpState> {
    Router::new()
        .route("/", get(catalogue))
        .route("/services/{name}", get(service))
        .route("/services/{name}/versions/{version}", get(service_version))
        .route("/services/{name}/diff", get(diff))
        .route("/graph", get(graph))
        .route("/assets/{file}", get(asset))
}

// ---------------------------------------------------------------------------
// Responses.

/// An HTML page, with the headers every page carries.
fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // Pages show live state (instances, drift): a cache must revalidate.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Only our own assets run or style the page; a description that slipped
    // past escaping still could not load or run anything.
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page that could not be shown: an HTML error page with its status.
#[derive(Debug)]
struct WebError {
    status: StatusCode,
    title: &'static str,
    message: String,
}

impl WebError {
    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            title: "Not found",
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            title: "Bad request",
            message: message.into(),
        }
    }
}

impl From<ErrorBody> for WebError {
    fn from(body: ErrorBody) -> Self {
        let status = StatusCode::from_u16(body.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %body, "A web page could not be built.");
        }
        Self {
            status,
            title: match status {
                StatusCode::NOT_FOUND => "Not found",
                status if status.is_client_error() => "Bad request",
                _ => "Something went wrong",
            },
            message: body.message,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        html(self.status, pages::error(self.title, &self.message))
    }
}

fn path_error(rejection: &PathRejection) -> WebError {
    WebError::bad_request(format!("the address is not valid: {}", rejection.body_text()))
}

fn query_error(rejection: &QueryRejection) -> WebError {
    WebError::bad_request(format!("the query string is not valid: {}", rejection.body_text()))
}

/// An optional query value; an empty one (`?q=`) counts as absent.
fn optional(value: Option<String>) -> Option<String> {
    value
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

fn service_name(text: &str) -> Result<ServiceName, WebError> {
    ServiceName::parse(text).map_err(|err| WebError::not_found(format!("there is no service {text:?}: {err}")))
}

fn version(text: &str) -> Result<Version, WebError> {
    Version::parse(text.trim()).map_err(|err| WebError::not_found(format!("there is no version {text:?}: {err}")))
}

// ---------------------------------------------------------------------------
// Assets.

/// A short hash of the embedded assets, put in their URLs so a long cache
/// lifetime never serves a stale stylesheet after an upgrade.
fn asset_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let digest = Sha256::new().chain_update(STYLE_CSS).chain_update(APP_JS).finalize();
        digest[..6].iter().map(|byte| format!("{byte:02x}")).collect()
    })
}

/// `/assets/<file>?v=<hash of the assets>`.
fn asset_url(file: &str) -> String {
    format!("/assets/{file}?v={}", asset_version())
}

async fn asset(path: Result<Path<String>, PathRejection>) -> Response {
    let (body, content_type) = match path.as_ref().map(|Path(file)| file.as_str()) {
        Ok("style.css") => (STYLE_CSS, "text/css; charset=utf-8"),
        Ok("app.js") => (APP_JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The URL names the content (its `?v=` hash), so it may be kept for good.
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// The catalogue.

#[derive(Debug, Default, Deserialize)]
struct CatalogueQuery {
    q: Option<String>,
    tag: Option<String>,
}

/// What the catalogue page shows.
#[derive(Debug)]
struct CatalogueView {
    /// The search text, if any.
    query: Option<String>,
    /// The chosen tag, if any.
    tag: Option<String>,
    /// Every tag with the number of services that have it.
    tags: BTreeMap<String, usize>,
    /// The services that match, by name (at most [`MAX_ROWS`]).
    services: Vec<ServiceSummary>,
    /// How many services match.
    matching: usize,
    /// How many services are registered.
    total: usize,
}

async fn catalogue(
    State(state): State<HttpState>,
    query: Result<Query<CatalogueQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|rejection| query_error(&rejection))?;
    let catalog = state.inner.registry.catalog();
    let now = Instant::now();
    let everything = catalog.search(&SearchRequest::default(), now).services;
    let mut tags: BTreeMap<String, usize> = BTreeMap::new();
    for tag in everything.iter().flat_map(|summary| &summary.tags) {
        *tags.entry(tag.clone()).or_default() += 1;
    }
    let query_text = optional(query.q);
    let tag = optional(query.tag);
    let total = everything.len();
    let mut services = if query_text.is_none() && tag.is_none() {
        everything
    } else {
        let request = SearchRequest {
            text: query_text.clone(),
            tag: tag.clone(),
            ..SearchRequest::default()
        };
        catalog.search(&request, now).services
    };
    let matching = services.len();
    services.truncate(MAX_ROWS);
    let view = CatalogueView {
        query: query_text,
        tag,
        tags,
        services,
        matching,
        total,
    };
    Ok(html(StatusCode::OK, pages::catalogue(&view)))
}

// ---------------------------------------------------------------------------
// A service.

/// What a service page shows: one version of the contract and what lives
/// around it.
#[derive(Debug)]
struct ServiceView {
    /// The version shown, its digest and registration time.
    contract: GetResponse,
    /// Every version of the service, oldest first.
    versions: Vec<VersionInfo>,
    /// Who consumes each event and calls each operation of this major.
    dependents: BTreeMap<MemberName, ConsumersResponse>,
    /// The live instances of the service, of any version.
    instances: Vec<InstanceInfo>,
}

impl ServiceView {
    fn document(&self) -> &ContractDocument {
        &self.contract.document
    }

    /// The latest registered version.
    fn latest(&self) -> Option<&Version> {
        self.versions.last().map(|info| &info.version)
    }
}

async fn service(
    State(state): State<HttpState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, WebError> {
    let Path(name) = path.map_err(|rejection| path_error(&rejection))?;
    service_page(&state, &name, None)
}

async fn service_version(
    State(state): State<HttpState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, WebError> {
    let Path((name, version)) = path.map_err(|rejection| path_error(&rejection))?;
    service_page(&state, &name, Some(&version))
}

fn service_page(state: &HttpState, name: &str, version_text: Option<&str>) -> Result<Response, WebError> {
    let service = service_name(name)?;
    let version = version_text.map(version).transpose()?;
    let catalog = state.inner.registry.catalog();
    let contract = catalog.get(&GetRequest {
        service: service.clone(),
        version,
        major: None,
    })?;
    let versions = catalog
        .versions(&VersionsRequest {
            service: service.clone(),
        })?
        .versions;
    let major = contract.document.version.major();
    // Dependents are indexed from the heads of each major: an older version
    // shows who depends on its major today.
    let dependents = contract
        .document
        .operations
        .keys()
        .chain(contract.document.events.keys())
        .filter_map(|member| {
            let request = ConsumersRequest {
                service: service.clone(),
                major: Some(major),
                member: member.clone(),
            };
            catalog.consumers(&request).ok().map(|answer| (member.clone(), answer))
        })
        .collect();
    let instances = catalog
        .list_instances(&InstancesRequest { service: Some(service) }, Instant::now())
        .instances;
    let view = ServiceView {
        contract,
        versions,
        dependents,
        instances,
    };
    Ok(html(StatusCode::OK, pages::service(&view)))
}

// ---------------------------------------------------------------------------
// A diff between two versions.

#[derive(Debug, Default, Deserialize)]
struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

/// What the diff page shows.
#[derive(Debug)]
struct DiffView {
    service: ServiceName,
    /// Every version, oldest first, for the form.
    versions: Vec<Version>,
    /// The comparison, when two versions exist.
    comparison: Option<Comparison>,
}

/// Two versions compared under the newer one's policy.
#[derive(Debug)]
struct Comparison {
    old: ContractDocument,
    new: ContractDocument,
    /// The mode the newer document's policy checks; `None` for policy NONE,
    /// whose changes are judged as BACKWARD would judge them, for information.
    mode: Option<Mode>,
    /// True when the versions were given newest first and were swapped.
    swapped: bool,
    changes: Vec<ContractChange>,
}

async fn diff(
    State(state): State<HttpState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let Path(name) = path.map_err(|rejection| path_error(&rejection))?;
    let Query(query) = query.map_err(|rejection| query_error(&rejection))?;
    let service = service_name(&name)?;
    let catalog = state.inner.registry.catalog();
    let versions: Vec<Version> = catalog
        .versions(&VersionsRequest {
            service: service.clone(),
        })?
        .versions
        .into_iter()
        .map(|info| info.version)
        .collect();
    let parse = |text: Option<String>| -> Result<Option<Version>, WebError> {
        optional(text)
            .map(|text| Version::parse(&text).map_err(|err| WebError::bad_request(err.to_string())))
            .transpose()
    };
    let to = parse(query.to)?.or_else(|| versions.last().cloned());
    let from = parse(query.from)?.or_else(|| {
        // The version just before `to`.
        to.as_ref()
            .and_then(|to| versions.iter().rev().find(|version| *version < to).cloned())
    });
    let comparison = match (from, to) {
        (Some(from), Some(to)) => {
            let fetch = |version: Version| {
                catalog.get(&GetRequest {
                    service: service.clone(),
                    version: Some(version),
                    major: None,
                })
            };
            let swapped = from > to;
            let (old, new) = if swapped { (to, from) } else { (from, to) };
            let old = fetch(old)?.document;
            let new = fetch(new)?.document;
            let mode = policy_mode(new.compatibility).map(|(mode, _)| mode);
            let changes = if old.version == new.version {
                Vec::new()
            } else {
                diff_contracts(&old, &new, mode.unwrap_or(Mode::Backward))
            };
            Some(Comparison {
                old,
                new,
                mode,
                swapped,
                changes,
            })
        }
        _ => None,
    };
    let view = DiffView {
        service,
        versions,
        comparison,
    };
    Ok(html(StatusCode::OK, pages::diff(&view)))
}

// ---------------------------------------------------------------------------
// The dependency graph.

#[derive(Debug, Default, Deserialize)]
struct GraphQuery {
    service: Option<String>,
}

async fn graph(
    State(state): State<HttpState>,
    query: Result<Query<GraphQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|rejection| query_error(&rejection))?;
    let service = optional(query.service)
        .map(|name| ServiceName::parse(&name).map_err(|err| WebError::bad_request(err.to_string())))
        .transpose()?;
    let graph: GraphResponse = state.inner.registry.catalog().graph(&GraphRequest {
        service: service.clone(),
    });
    Ok(html(StatusCode::OK, pages::graph(service.as_ref(), &graph)))
}
