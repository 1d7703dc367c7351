//! The routes: one handler per resource, each a few lines around a
//! catalogue query or [`Registry::register`](crate::server::Registry::register),
//! each annotated with its OpenAPI description. The router and the OpenAPI
//! document are built from the same list ([`api_router`]), so an API route
//! cannot be served without being documented. The web page's routes (module
//! `web`) are HTML for people and stay out of the document.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Json;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::{CONTENT_TYPE, ETAG, LINK, LOCATION};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use contracts::registry_api::{
    ConsumersRequest, GetRequest, GraphRequest, InstancesRequest, ListRequest, RegisterRequest, ResolveRequest,
    SearchRequest, VersionsRequest,
};
use contracts::{ContractDocument, ErrorBody, ErrorCode, Limits, MemberName, ServiceName, SubjectPattern, Version};

use super::error::{ApiBody, ApiError, ApiPath, ApiQuery};
use super::openapi::components;
use super::{CorsPolicy, HttpState, Via, auth, conditional, openapi};
use crate::metrics;
use crate::server::{log_refused_write, named_version, read_only_refusal};

/// The header that carries the service owner's credential on writes and
/// compatibility checks (the `owner_token` of the NATS API).
pub const OWNER_TOKEN_HEADER: &str = "x-soa-owner-token";

/// The routes and their documentation, before state and middleware.
fn api_router() -> OpenApiRouter<HttpState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(list_services, register))
        .routes(routes!(get_service))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(list_instances))
        .routes(routes!(resolve_subject))
        .routes(routes!(search))
        .routes(routes!(consumers))
        .routes(routes!(graph))
        .routes(routes!(asyncapi_system))
        .routes(routes!(asyncapi_service))
        .routes(routes!(check_compatibility))
        .routes(routes!(health))
        .routes(routes!(metrics_text))
        .routes(routes!(openapi_json))
}

pub(super) fn router(state: HttpState) -> axum::Router {
    let (router, _) = api_router().split_for_parts();
    let router = router
        // The web page's routes: HTML for people, not in the OpenAPI document.
        .merge(super::web::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // A document may be as large as the contract limits allow; the
        // parser then reports the limit itself.
        .layer(DefaultBodyLimit::max(Limits::default().max_document_bytes + 1024))
        .layer(middleware::from_fn(conditional::conditional_reads));
    let router = match cors_layer(&state.inner.cors) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The OpenAPI document, built once.
pub(super) fn openapi_document() -> Value {
    cached_document().clone()
}

fn cached_document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| openapi::document(api_router().into_openapi()))
}

fn cors_layer(policy: &CorsPolicy) -> Option<CorsLayer> {
    let origins = match policy {
        CorsPolicy::Disabled => return None,
        CorsPolicy::AnyOrigin => AllowOrigin::any(),
        CorsPolicy::Origins(origins) => AllowOrigin::list(origins.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::HEAD, Method::POST])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                CONTENT_TYPE,
                axum::http::header::IF_NONE_MATCH,
                axum::http::HeaderName::from_static(OWNER_TOKEN_HEADER),
            ])
            .expose_headers([ETAG, LINK, LOCATION]),
    )
}

/// Counts every request by its route template and status.
async fn track(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics()
        .record_http_request(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

async fn unknown_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}; the API is described at /openapi.json",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::from(ErrorBody::new(
        ErrorCode::Declared("METHOD_NOT_ALLOWED".to_owned()),
        format!(
            "{} does not accept {method}; the API is described at /openapi.json",
            uri.path()
        ),
    ))
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

// ---------------------------------------------------------------------------
// Parsing the URL: names are parsed at the edge, so a bad one is a 400 that
// says what a good one looks like.

fn service_name(text: &str) -> Result<ServiceName, ApiError> {
    ServiceName::parse(text).map_err(|err| ApiError::bad_request(err.to_string()))
}

/// An optional query value; an empty one (`?after=`) counts as absent.
fn optional(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.trim().is_empty())
}

fn parse_optional<T>(
    value: Option<String>,
    parse: impl FnOnce(&str) -> Result<T, contracts::NameError>,
) -> Result<Option<T>, ApiError> {
    optional(value)
        .map(|value| parse(value.trim()).map_err(|err| ApiError::bad_request(err.to_string())))
        .transpose()
}

/// An optional whole number in the query; an empty one counts as absent.
fn number<T: std::str::FromStr>(name: &str, value: Option<String>) -> Result<Option<T>, ApiError> {
    optional(value)
        .map(|value| {
            value
                .trim()
                .parse::<T>()
                .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number, not {value:?}")))
        })
        .transpose()
}

/// Reads a contract document from a request body within the contract limits.
fn read_document(body: &[u8]) -> Result<Value, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|err| ApiError::bad_request(format!("the body is not UTF-8 text: {err}")))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty; send the contract document as JSON",
        ));
    }
    let document = contracts::parse::parse_json("the request body", text, &Limits::default())
        .map_err(|err| ApiError::bad_request(err.to_string()))?;
    if !document.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a contract document: a JSON object",
        ));
    }
    Ok(document)
}

fn owner_token(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(OWNER_TOKEN_HEADER)
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::bad_request("the X-Soa-Owner-Token header must be visible ASCII text"))
        })
        .transpose()
}

// ---------------------------------------------------------------------------
// Services.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// Services by name, a page at a time.
///
/// The page holds at most `limit` services (100 by default, 1000 at most).
/// When more follow, `next` in the body and a `Link: <…>; rel="next"`
/// header give the next page.
#[utoipa::path(
    get,
    path = "/v1/services",
    tag = "services",
    operation_id = "list_services",
    params(
        ("after" = Option<String>, Query, description = "Start after this service name: the `next` of the previous page"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 100)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of services", body = components::ListResponse,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` when another page follows"),
                    ("ETag" = String, description = "Strong tag of the answer"))),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "A query parameter is not valid", body = components::ErrorBody),
    )
)]
async fn list_services(
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let request = ListRequest {
        after: parse_optional(query.after, ServiceName::parse)?,
        limit: number("limit", query.limit)?,
    };
    if request.limit == Some(0) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let page = state.inner.registry.catalog().list(&request, Instant::now());
    let link = page.next.as_ref().map(|next| {
        let limit = request.limit.map(|limit| format!("&limit={limit}")).unwrap_or_default();
        format!("</v1/services?after={next}{limit}>; rel=\"next\"")
    });
    let mut response = Json(page).into_response();
    if let Some(link) = link.and_then(|link| HeaderValue::from_str(&link).ok()) {
        response.headers_mut().insert(LINK, link);
    }
    Ok(response)
}

/// The latest contract of a service (or the latest of one major).
#[utoipa::path(
    get,
    path = "/v1/services/{name}",
    tag = "services",
    operation_id = "get_service",
    params(
        ("name" = String, Path, description = "The service name"),
        ("major" = Option<u64>, Query, description = "The latest version of this major instead of the latest overall"),
    ),
    responses(
        (status = 200, description = "The contract document, its digest and when it was registered",
            body = components::GetResponse,
            headers(("ETag" = String, description = "The contract's digest, quoted"))),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "The name is not a service name", body = components::ErrorBody),
        (status = 404, description = "No such service or major", body = components::ErrorBody),
    )
)]
async fn get_service(
    State(state): State<HttpState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<MajorQuery>,
) -> Result<Response, ApiError> {
    let request = GetRequest {
        service: service_name(&name)?,
        version: None,
        major: number("major", query.major)?,
    };
    contract_reply(&state, &request)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MajorQuery {
    major: Option<String>,
}

/// Every version of a service, oldest first.
#[utoipa::path(
    get,
    path = "/v1/services/{name}/versions",
    tag = "services",
    operation_id = "list_versions",
    params(("name" = String, Path, description = "The service name")),
    responses(
        (status = 200, description = "The versions with their digests", body = components::VersionsResponse),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "The name is not a service name", body = components::ErrorBody),
        (status = 404, description = "No such service", body = components::ErrorBody),
    )
)]
async fn list_versions(State(state): State<HttpState>, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    let request = VersionsRequest {
        service: service_name(&name)?,
    };
    Ok(Json(state.inner.registry.catalog().versions(&request)?).into_response())
}

/// One version of a service's contract.
#[utoipa::path(
    get,
    path = "/v1/services/{name}/versions/{version}",
    tag = "services",
    operation_id = "get_version",
    params(
        ("name" = String, Path, description = "The service name"),
        ("version" = String, Path, description = "The exact semantic version, such as 1.2.0"),
    ),
    responses(
        (status = 200, description = "The contract document, its digest and when it was registered",
            body = components::GetResponse,
            headers(("ETag" = String, description = "The contract's digest, quoted"))),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "The name or version is not valid", body = components::ErrorBody),
        (status = 404, description = "No such service or version", body = components::ErrorBody),
    )
)]
async fn get_version(
    State(state): State<HttpState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let request = GetRequest {
        service: service_name(&name)?,
        version: Some(Version::parse(&version).map_err(|err| ApiError::bad_request(err.to_string()))?),
        major: None,
    };
    contract_reply(&state, &request)
}

/// A contract read, tagged with its digest.
fn contract_reply(state: &HttpState, request: &GetRequest) -> Result<Response, ApiError> {
    // The stored bytes go out as they are: no document is parsed.
    let (digest, body) = state.inner.registry.catalog().get_json(request)?;
    let etag = conditional::digest_etag(&digest);
    let mut response = ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(ETAG, etag);
    }
    Ok(response)
}

/// The live instances of a service, with their health and drift.
#[utoipa::path(
    get,
    path = "/v1/services/{name}/instances",
    tag = "services",
    operation_id = "list_instances",
    params(("name" = String, Path, description = "The service name")),
    responses(
        (status = 200, description = "Its live instances", body = components::InstancesResponse),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "The name is not a service name", body = components::ErrorBody),
        (status = 404, description = "No such service", body = components::ErrorBody),
    )
)]
async fn list_instances(State(state): State<HttpState>, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    let service = service_name(&name)?;
    let catalog = state.inner.registry.catalog();
    // The existence check: an unknown service is 404, not an empty list.
    catalog.versions(&VersionsRequest {
        service: service.clone(),
    })?;
    let request = InstancesRequest { service: Some(service) };
    Ok(Json(catalog.list_instances(&request, Instant::now())).into_response())
}

/// Registers a contract version.
///
/// The body is the contract document itself. Needs `Authorization: Bearer
/// <token>` with the registry's write token; the service owner's credential
/// goes in `X-Soa-Owner-Token` (the first registration of a service records
/// it, later versions must present it). The same rules as over NATS apply:
/// the same content again is a no-op (200), other content under a stored
/// version is 409, a breaking change is 422 with one detail per change.
#[utoipa::path(
    post,
    path = "/v1/services",
    tag = "services",
    operation_id = "register",
    params(("X-Soa-Owner-Token" = Option<String>, Header, description = "The service owner's credential")),
    request_body(content = components::ContractDocument, description = "The contract document", content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "A new version was stored", body = components::RegisterResponse,
            headers(("Location" = String, description = "The stored version: /v1/services/{name}/versions/{version}"))),
        (status = 200, description = "The same content was stored before; nothing changed", body = components::RegisterResponse),
        (status = 400, description = "The body is not a valid contract document", body = components::ErrorBody),
        (status = 401, description = "No bearer token, or not the registry's", body = components::ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"soa-registry\"`"))),
        (status = 403, description = "Writes are disabled (no token configured, or the registry is read-only), or the owner credential is not the service owner's", body = components::ErrorBody),
        (status = 409, description = "The version is stored with other content; versions are immutable", body = components::ErrorBody),
        (status = 413, description = "The body is larger than a contract document may be", body = components::ErrorBody),
        (status = 422, description = "INCOMPATIBLE: the version breaks its compatibility policy or a registered consumer", body = components::ErrorBody),
        (status = 503, description = "The store could not make the version durable; nothing was registered", body = components::ErrorBody),
    )
)]
async fn register(
    State(state): State<HttpState>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    // Which version a refused caller meant, for the log (never the token).
    let named = || read_document(&body).map_or_else(|_| "?@?".to_owned(), |document| named_version(&document));
    if state.inner.registry.is_read_only() {
        let named = named();
        let refusal = read_only_refusal(&named);
        log_refused_write(&named, Via::Http.as_str(), &refusal.message);
        return Err(ApiError::from(refusal).with_status(StatusCode::FORBIDDEN));
    }
    if let Err(error) = auth::authorize_write(&headers, state.inner.write_token.as_ref()) {
        log_refused_write(&named(), Via::Http.as_str(), &error.body.message);
        return Err(error);
    }
    let request = RegisterRequest {
        document: read_document(&body)?,
        owner_token: owner_token(&headers)?,
    };
    let outcome = state.inner.registry.register(request, Via::Http).await;
    let (response, created) = outcome.map_err(|refusal| {
        let status = refusal.code.status();
        let error = ApiError::from(refusal);
        // The bearer token was right: the owner rule refused, which is 403, not a challenge.
        if status == 401 {
            error.with_status(StatusCode::FORBIDDEN)
        } else {
            error
        }
    })?;
    let location = format!("/v1/services/{}/versions/{}", response.id.service, response.id.version);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let mut reply = (status, Json(response)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        reply.headers_mut().insert(LOCATION, location);
    }
    Ok(reply)
}

/// Checks a candidate document as a registration would, storing nothing.
///
/// The body is the candidate contract document; its `service` must be the
/// one in the path. Ownership is checked only when `X-Soa-Owner-Token` is
/// given. A refused candidate is still 200: the answer says why in
/// `breaking`, `unclassified` and `refusals`.
#[utoipa::path(
    post,
    path = "/v1/compatibility/{name}",
    tag = "services",
    operation_id = "check_compatibility",
    params(
        ("name" = String, Path, description = "The service the candidate is a version of"),
        ("X-Soa-Owner-Token" = Option<String>, Header, description = "Check ownership with this credential"),
    ),
    request_body(content = components::ContractDocument, description = "The candidate contract document", content_type = "application/json"),
    responses(
        (status = 200, description = "Whether registering it would succeed, and why not", body = components::CheckResponse),
        (status = 400, description = "The body is not JSON, or names another service", body = components::ErrorBody),
        (status = 413, description = "The body is larger than a contract document may be", body = components::ErrorBody),
    )
)]
async fn check_compatibility(
    State(state): State<HttpState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    let service = service_name(&name)?;
    let document = read_document(&body)?;
    match document.get("service").and_then(Value::as_str) {
        Some(named) if named == service.as_str() => {}
        Some(named) => {
            return Err(ApiError::bad_request(format!(
                "the document is a contract of {named:?}, not of {service}; post it to /v1/compatibility/{named}"
            )));
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "the document has no \"service\"; a contract of {service} names it"
            )));
        }
    }
    let owner = owner_token(&headers)?;
    let answer = state
        .inner
        .registry
        .catalog()
        .check_candidate(&document, owner.as_deref());
    Ok(Json(answer).into_response())
}

// ---------------------------------------------------------------------------
// Subjects, search, dependencies.

/// The operations and events a subject, or a wildcard pattern, belongs to.
///
/// The subject is one path segment; `*` and `>` may be sent as they are or
/// percent-encoded (`%2A`, `%3E`). A concrete subject that nothing declares
/// is 404; a pattern that matches nothing is an empty list.
#[utoipa::path(
    get,
    path = "/v1/subjects/{subject}",
    tag = "subjects",
    operation_id = "resolve_subject",
    params(("subject" = String, Path, description = "A subject such as shop.inventory.v1.reserve, or a pattern such as shop.*.v1.>")),
    responses(
        (status = 200, description = "The bindings, by subject", body = components::ResolveResponse),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "Not a subject or pattern", body = components::ErrorBody),
        (status = 404, description = "No registered operation or event uses this subject", body = components::ErrorBody),
    )
)]
async fn resolve_subject(
    State(state): State<HttpState>,
    ApiPath(subject): ApiPath<String>,
) -> Result<Response, ApiError> {
    let pattern = SubjectPattern::parse(&subject).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let wildcards = pattern.has_wildcards();
    let answer = state
        .inner
        .registry
        .catalog()
        .resolve(&ResolveRequest { subject: pattern });
    if answer.bindings.is_empty() && !wildcards {
        return Err(ApiError::not_found(format!(
            "no registered operation or event uses subject {subject}"
        )));
    }
    Ok(Json(answer).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: Option<String>,
    tag: Option<String>,
    owner: Option<String>,
    field: Option<String>,
    subject: Option<String>,
}

/// Services matching every given criterion, by name.
#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "services",
    operation_id = "search",
    params(
        ("q" = Option<String>, Query, description = "Words that must all appear in the name, description or message descriptions"),
        ("tag" = Option<String>, Query, description = "A tag the service has"),
        ("owner" = Option<String>, Query, description = "The owning team"),
        ("field" = Option<String>, Query, description = "A property name one of its message schemas declares"),
        ("subject" = Option<String>, Query, description = "A subject pattern (wildcards allowed) one of its subjects matches"),
    ),
    responses(
        (status = 200, description = "The matching services", body = components::SearchResponse),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "A query parameter is not valid", body = components::ErrorBody),
    )
)]
async fn search(State(state): State<HttpState>, ApiQuery(query): ApiQuery<SearchQuery>) -> Result<Response, ApiError> {
    let request = SearchRequest {
        text: optional(query.q),
        tag: optional(query.tag),
        owner: optional(query.owner),
        field: optional(query.field),
        subject: parse_optional(query.subject, SubjectPattern::parse)?,
    };
    Ok(Json(state.inner.registry.catalog().search(&request, Instant::now())).into_response())
}

/// Who consumes an event (or calls an operation) of a service.
#[utoipa::path(
    get,
    path = "/v1/events/{service}/{event}/consumers",
    tag = "dependencies",
    operation_id = "consumers",
    params(
        ("service" = String, Path, description = "The producing service"),
        ("event" = String, Path, description = "The event (or operation) name"),
        ("major" = Option<u64>, Query, description = "The producer's major version; the latest registered major by default"),
    ),
    responses(
        (status = 200, description = "The consumers and callers, latest version of each", body = components::ConsumersResponse),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "A name is not valid", body = components::ErrorBody),
        (status = 404, description = "No such service, major or event", body = components::ErrorBody),
    )
)]
async fn consumers(
    State(state): State<HttpState>,
    ApiPath((service, event)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<MajorQuery>,
) -> Result<Response, ApiError> {
    let request = ConsumersRequest {
        service: service_name(&service)?,
        major: number("major", query.major)?,
        member: MemberName::parse(&event).map_err(|err| ApiError::bad_request(err.to_string()))?,
    };
    Ok(Json(state.inner.registry.catalog().consumers(&request)?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphQuery {
    format: Option<String>,
    service: Option<String>,
}

/// Who calls whom and who consumes whose events.
///
/// `format=json` (the default) is the graph as data; `mermaid` and `dot`
/// render it as text for Mermaid and Graphviz.
#[utoipa::path(
    get,
    path = "/v1/graph",
    tag = "dependencies",
    operation_id = "graph",
    params(
        ("format" = Option<String>, Query, description = "json (default), mermaid or dot"),
        ("service" = Option<String>, Query, description = "Only the edges that touch this service"),
    ),
    responses(
        (status = 200, description = "The dependency graph", content(
            (components::GraphResponse = "application/json"),
            (String = "text/vnd.mermaid"),
            (String = "text/vnd.graphviz"),
        )),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "Unknown format or service name not valid", body = components::ErrorBody),
    )
)]
async fn graph(State(state): State<HttpState>, ApiQuery(query): ApiQuery<GraphQuery>) -> Result<Response, ApiError> {
    let request = GraphRequest {
        service: parse_optional(query.service, ServiceName::parse)?,
    };
    let format = optional(query.format).unwrap_or_else(|| "json".to_owned());
    let graph = state.inner.registry.catalog().graph(&request);
    match format.as_str() {
        "json" => Ok(Json(graph).into_response()),
        "mermaid" => Ok(text(
            crate::export::graph::mermaid(&graph),
            "text/vnd.mermaid; charset=utf-8",
        )),
        "dot" => Ok(text(
            crate::export::graph::dot(&graph),
            "text/vnd.graphviz; charset=utf-8",
        )),
        other => Err(ApiError::bad_request(format!(
            "unknown graph format {other:?}; use json, mermaid or dot"
        ))),
    }
}

/// The AsyncAPI 3.0 document of one service: its latest version (or the
/// latest of `?major=`), with the contracts it consumes, calls and refers to.
#[utoipa::path(
    get,
    path = "/v1/asyncapi/{name}",
    tag = "dependencies",
    operation_id = "asyncapi_service",
    params(
        ("name" = String, Path, description = "The service name"),
        ("major" = Option<String>, Query, description = "The latest of this major instead of the latest"),
    ),
    responses(
        (status = 200, description = "An AsyncAPI 3.0.0 document", body = Object),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
        (status = 400, description = "The name is not a service name", body = components::ErrorBody),
        (status = 404, description = "No such service or major", body = components::ErrorBody),
    )
)]
async fn asyncapi_service(
    State(state): State<HttpState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<MajorQuery>,
) -> Result<Response, ApiError> {
    let catalog = state.inner.registry.catalog();
    let document = catalog
        .get(&GetRequest {
            service: service_name(&name)?,
            version: None,
            major: number("major", query.major)?,
        })?
        .document;
    // A dependency the registry does not hold is named in the document's warnings.
    let dependencies: Vec<ContractDocument> = crate::export::asyncapi::dependencies_of(&document)
        .into_iter()
        .filter_map(|dependency| {
            catalog
                .get(&GetRequest {
                    service: dependency.service,
                    version: None,
                    major: Some(dependency.major),
                })
                .ok()
                .map(|found| found.document)
        })
        .collect();
    let options = crate::export::asyncapi::ExportOptions::default();
    Ok(Json(crate::export::asyncapi::service_document(
        &document,
        &dependencies,
        &options,
    ))
    .into_response())
}

/// The AsyncAPI 3.0 document of the whole system: every service's latest
/// version of each major.
#[utoipa::path(
    get,
    path = "/v1/asyncapi",
    tag = "dependencies",
    operation_id = "asyncapi_system",
    responses(
        (status = 200, description = "An AsyncAPI 3.0.0 document", body = Object),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
    )
)]
async fn asyncapi_system(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let catalog = state.inner.registry.catalog();
    let documents = catalog.head_documents()?;
    let options = crate::export::asyncapi::ExportOptions::default();
    Ok(Json(crate::export::asyncapi::system_document(&documents, &options)).into_response())
}

fn text(body: String, content_type: &'static str) -> Response {
    ([(CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

// ---------------------------------------------------------------------------
// Operations: health, metrics, the document.

/// The answer of `/healthz`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Health {
    /// Always `ok` when the registry answers.
    status: &'static str,
    /// Services with at least one stored version.
    services: usize,
    /// Stored contract versions.
    versions: usize,
    /// Live instances, healthy or overdue.
    instances: usize,
}

/// Whether the registry answers, and how much it holds.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "health",
    responses((status = 200, description = "The registry answers", body = components::Health))
)]
async fn health(State(state): State<HttpState>) -> Response {
    let catalog = state.inner.registry.catalog();
    let health = Health {
        status: "ok",
        services: catalog.service_count(),
        versions: catalog.version_count(),
        instances: catalog.instance_count(),
    };
    // Health checks must see the live state, never a cached one.
    let mut response = Json(health).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses(
        (status = 200, description = "HTTP requests by route and status with latency histograms, registrations by API and outcome, services, versions and instances",
            body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
    )
)]
async fn metrics_text(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let text = state
        .inner
        .registry
        .metrics_text()
        .map_err(|_| ApiError::from(ErrorBody::new(ErrorCode::Internal, "the metrics could not be encoded")))?;
    Ok(([(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE))], text).into_response())
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object),
        (status = 304, description = "Not modified since the ETag in `If-None-Match`"),
    )
)]
async fn openapi_json() -> Response {
    Json(cached_document()).into_response()
}
