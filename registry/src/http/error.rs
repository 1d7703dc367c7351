//! Errors as HTTP responses: the bus's error body with the status of its
//! code, and extractors whose rejections take the same shape, so a client
//! never has to parse axum's plain-text rejections.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use contracts::{ErrorBody, ErrorCode};

/// An error reply: the body every API of the registry uses, its status and,
/// for authentication failures, the challenge.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: ErrorBody,
    pub(crate) challenge: Option<HeaderValue>,
}

impl ApiError {
    /// A caller error: 400 with `VALIDATION_FAILED`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::from(ErrorBody::new(ErrorCode::ValidationFailed, message))
    }

    /// 404 with `NOT_FOUND`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::from(ErrorBody::new(ErrorCode::NotFound, message))
    }

    /// The same body with another status.
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a `WWW-Authenticate` challenge (401 replies must carry one).
    pub(crate) fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.challenge = Some(HeaderValue::from_static(challenge));
        self
    }
}

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        let status = StatusCode::from_u16(body.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            body,
            challenge: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.body, "An HTTP request failed on the registry's side.");
        }
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// `Path` whose rejection is an [`ApiError`].
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

fn path_rejection(rejection: &PathRejection) -> ApiError {
    if rejection.status().is_server_error() {
        // A route whose parameters do not fit its handler: a bug of ours.
        return ApiError::from(ErrorBody::new(ErrorCode::Internal, "the route could not read its path"))
            .with_status(rejection.status());
    }
    ApiError::bad_request(format!("the URL path is not valid: {}", rejection.body_text()))
}

/// `Query` whose rejection is an [`ApiError`].
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    // axum says "Failed to deserialize query string: <serde's reason>".
    let text = rejection.body_text();
    let reason = text.split_once(": ").map_or(text.as_str(), |(_, reason)| reason);
    ApiError::bad_request(format!("the query string is not valid: {reason}"))
}

/// The raw request body; a body over the size limit is 413.
pub(crate) struct ApiBody(pub(crate) Bytes);

impl<S> FromRequest<S> for ApiBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) => Err(body_rejection(&rejection)),
        }
    }
}

fn body_rejection(rejection: &BytesRejection) -> ApiError {
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "the body is larger than the {} bytes a contract document may have",
            contracts::Limits::default().max_document_bytes
        )
    } else {
        format!("the body could not be read: {}", rejection.body_text())
    };
    ApiError::bad_request(message).with_status(if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    })
}
