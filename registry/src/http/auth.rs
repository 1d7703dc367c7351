//! The bearer token that guards the write API.
//!
//! The token is kept as its SHA-256 digest and a presented token is hashed
//! and compared in constant time, so neither the comparison's timing nor
//! the token's length tells an attacker anything.
//!
//! Statuses: no token configured is 403 (writes are off; the message says
//! how to turn them on); no `Authorization` header, another scheme, or a
//! wrong token is 401 with a `WWW-Authenticate: Bearer` challenge, as RFC
//! 6750 asks for a missing or invalid token (`error="invalid_token"` on the
//! latter). 403 is kept for a caller whose token is right but who may not do
//! what it asks (the service owner rule).

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use contracts::{ErrorBody, ErrorCode};

use super::error::ApiError;

const CHALLENGE: &str = "Bearer realm=\"soa-registry\"";
const INVALID_CHALLENGE: &str = "Bearer realm=\"soa-registry\", error=\"invalid_token\"";

/// The configured write token, as its digest.
#[derive(Clone)]
pub(crate) struct WriteToken {
    digest: [u8; 32],
}

impl WriteToken {
    pub(crate) fn new(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.digest).into()
    }
}

/// Lets a write through when `headers` carry the configured bearer token.
pub(crate) fn authorize_write(headers: &HeaderMap, token: Option<&WriteToken>) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Err(ApiError::from(ErrorBody::new(
            ErrorCode::Unauthorized,
            "the HTTP write API is disabled: start the registry with --http-token TOKEN (or SOA_REGISTRY_TOKEN) \
             and send `Authorization: Bearer TOKEN`, or register over NATS",
        ))
        .with_status(StatusCode::FORBIDDEN));
    };
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(unauthorized("registering needs `Authorization: Bearer <token>`").with_challenge(CHALLENGE));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, presented)| presented.trim());
    match presented {
        Some(presented) if token.matches(presented) => Ok(()),
        Some(_) => {
            Err(unauthorized("the bearer token is not the registry's write token").with_challenge(INVALID_CHALLENGE))
        }
        None => Err(unauthorized(
            "the Authorization header must use the Bearer scheme: `Authorization: Bearer <token>`",
        )
        .with_challenge(INVALID_CHALLENGE)),
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::from(ErrorBody::new(ErrorCode::Unauthorized, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn only_the_configured_bearer_token_passes() {
        let token = WriteToken::new("s3cret");
        assert!(authorize_write(&headers(Some("Bearer s3cret")), Some(&token)).is_ok());
        assert!(authorize_write(&headers(Some("bearer s3cret")), Some(&token)).is_ok());
        for wrong in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
            Some("s3cret"),
        ] {
            let error = authorize_write(&headers(wrong), Some(&token)).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
            assert!(error.challenge.is_some(), "{wrong:?}");
        }
        let disabled = authorize_write(&headers(Some("Bearer s3cret")), None).unwrap_err();
        assert_eq!(disabled.status, StatusCode::FORBIDDEN);
        assert!(disabled.body.message.contains("--http-token"));
    }
}
