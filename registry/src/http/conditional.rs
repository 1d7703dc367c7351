//! Conditional reads: every successful JSON read gets a strong `ETag` and
//! `Cache-Control: no-cache` (caches may keep it but must revalidate), and a
//! request whose `If-None-Match` names the current tag gets 304 without a
//! body.
//!
//! Answers marked `Cache-Control: no-store` (the health check) are left
//! alone. A handler that knows a better tag sets it itself (contract reads use the
//! contract's digest, which names the stored bytes); otherwise the tag is a
//! hash of the body, which is deterministic because every answer is built
//! from ordered collections.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The strong tag of a contract version: its digest (`"sha256:…"`).
pub(crate) fn digest_etag(digest: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{digest}\"")).ok()
}

/// The middleware: tags successful JSON reads and answers revalidations.
pub(crate) async fn conditional_reads(request: Request, next: Next) -> Response {
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    let if_none_match = request.headers().get(IF_NONE_MATCH).cloned();
    let response = next.run(request).await;
    if !is_read || response.status() != StatusCode::OK || !is_json(&response) || is_uncacheable(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let (etag, body) = match parts.headers.get(ETAG) {
        Some(etag) => (etag.clone(), body),
        None => {
            // JSON answers are built in memory already; buffering them costs a copy at most.
            let bytes = match axum::body::to_bytes(body, usize::MAX).await {
                Ok(bytes) => bytes,
                Err(err) => {
                    return ApiError::from(contracts::ErrorBody::new(
                        contracts::ErrorCode::Internal,
                        format!("the answer could not be read back: {err}"),
                    ))
                    .into_response();
                }
            };
            let digest = Sha256::digest(&bytes);
            let hex: String = digest[..16].iter().map(|byte| format!("{byte:02x}")).collect();
            let etag = HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"\""));
            (etag, Body::from(bytes))
        }
    };
    parts.headers.insert(ETAG, etag.clone());
    parts
        .headers
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if if_none_match.is_some_and(|condition| matches_any(&condition, &etag)) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(CONTENT_TYPE);
        parts.headers.remove(CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, body)
}

/// A handler that says `no-store` (health) wants every answer fresh.
fn is_uncacheable(response: &Response) -> bool {
    response
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("no-store"))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// RFC 9110 §13.1.2: `*` or a list of tags compared weakly (a `W/` prefix
/// on either side is ignored).
fn matches_any(condition: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(condition) = condition.to_str() else {
        return false;
    };
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    condition.trim() == "*" || condition.split(',').any(|candidate| opaque(candidate) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        for condition in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*", " \"abc\" "] {
            assert!(matches_any(&HeaderValue::from_static(condition), &etag), "{condition}");
        }
        for condition in ["\"abd\"", "abc", "\"x\""] {
            assert!(!matches_any(&HeaderValue::from_static(condition), &etag), "{condition}");
        }
    }
}
