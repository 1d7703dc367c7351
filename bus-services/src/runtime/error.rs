//! `ServiceError`: what a handler returns when it cannot answer, split into
//! the caller's fault (told as it is) and ours (logged in full, told
//! generically).

use contracts::{ErrorBody, ErrorCode, ErrorDetail};

/// A handler's failure. Build it with the constructor that says whose fault
/// it is; the runtime turns it into the wire error headers and body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    code: ErrorCode,
    message: String,
    details: Vec<ErrorDetail>,
    /// For internal errors: the real cause, logged and never sent.
    cause: Option<String>,
}

impl ServiceError {
    /// An error code the operation declares in its contract (`OUT_OF_STOCK`).
    /// A code the contract does not declare is refused by the runtime and
    /// answered as `INTERNAL`.
    pub fn declared(code: &str, message: impl Into<String>) -> Self {
        match ErrorCode::parse(code) {
            Ok(code) => Self::new(code, message),
            Err(err) => Self::internal(format!("a handler returned an invalid error code: {err}")),
        }
    }

    /// The thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// The request conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// The caller may not do this.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// Something the handler depends on is not available; the caller may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// The request was well-formed but some values are wrong in a way the
    /// schema cannot express; each detail names the value's pointer.
    pub fn invalid(message: impl Into<String>, details: Vec<ErrorDetail>) -> Self {
        Self {
            details,
            ..Self::new(ErrorCode::ValidationFailed, message)
        }
    }

    /// Something broke on our side. `cause` is logged with the request's
    /// span and never sent to the caller, who gets a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self {
            cause: Some(cause.to_string()),
            ..Self::new(ErrorCode::Internal, "the service failed to handle the request")
        }
    }

    /// The handler did not finish in time.
    pub(crate) fn new_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            ErrorCode::Timeout,
            format!("the handler did not finish within {limit:?}"),
        )
    }

    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            cause: None,
        }
    }

    /// The error code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The logged cause of an internal error.
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }

    /// The error body sent to the caller.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.clone(),
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}

impl From<ErrorBody> for ServiceError {
    fn from(body: ErrorBody) -> Self {
        Self {
            code: body.code,
            message: body.message,
            details: body.details,
            cause: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = ServiceError::internal("database password rejected");
        assert_eq!(error.to_body().message, "the service failed to handle the request");
        assert_eq!(error.cause(), Some("database password rejected"));
        assert_eq!(error.code(), &ErrorCode::Internal);
    }

    #[test]
    fn declared_codes_are_parsed() {
        assert_eq!(
            ServiceError::declared("OUT_OF_STOCK", "none left").code().as_str(),
            "OUT_OF_STOCK"
        );
        assert_eq!(ServiceError::declared("out of stock", "x").code(), &ErrorCode::Internal);
    }
}
