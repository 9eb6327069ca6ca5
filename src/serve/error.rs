//! Errors: [`ServeError`], what the library path (`Service`) fails with, and [`ApiError`], the
//! one shape every HTTP error takes: `{"error": {"code", "message"}}` with a status, plus
//! `Retry-After` when trying again later may work.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::feedback::FeedbackError;
use crate::runtime::executor::RunError;
use crate::runtime::LoadError;
use crate::store::StoreError;

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Occurs when the program or artifact cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Occurs when the inputs do not fit the program (nothing ran, nothing was stored).
    #[error(transparent)]
    Input(RunError),
    /// Occurs when feedback does not fit what the program takes (nothing was stored).
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    /// Occurs when the store refuses a write or cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Occurs when a server without an API key is asked to listen on an address other
    /// machines can reach: anyone there could run the program and read every stored run.
    #[error("{addr} is not a loopback address, and no API key is set: anyone who can reach it could run the program and read every stored run")]
    PublicWithoutKey {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// Occurs when the listener fails (its address cannot be read, or serving stops on an
    /// I/O error).
    #[error("the server failed: {0}")]
    Listen(#[from] std::io::Error),
}

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// A stable snake_case code clients can branch on.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds after which retrying may succeed (503).
    pub retry_after: Option<u32>,
    /// More fields of the `error` object (e.g. the `run_id` of a failed run). Boxed: JSON
    /// objects keep their order (an index map), and an error stays small to return.
    pub extra: Box<Map<String, Value>>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None, extra: Box::default() }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: valid credentials that do not allow this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 for a missing thing.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// Adds `Retry-After`.
    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a field to the error object.
    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// The error for a status alone (a response some layer made without a JSON body).
    pub fn from_status(status: StatusCode, message: String) -> ApiError {
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        let message = if message.trim().is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { message };
        ApiError::new(status, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let (status, code) = match &e {
            StoreError::UnknownRun { .. } => (StatusCode::NOT_FOUND, "unknown_run"),
            StoreError::ClientIdReused { .. } | StoreError::RunExists { .. } => (StatusCode::CONFLICT, "conflict"),
            StoreError::InvalidUserId { .. } => (StatusCode::BAD_REQUEST, "invalid_user_id"),
            StoreError::InvalidCursor { .. } => (StatusCode::BAD_REQUEST, "invalid_cursor"),
            e if e.is_caller_error() => (StatusCode::BAD_REQUEST, "invalid_request"),
            // The database failed (unreachable, locked, full): the same request may work later.
            _ => return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()).retry_after(1),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ServeError> for ApiError {
    fn from(e: ServeError) -> ApiError {
        match e {
            ServeError::Input(e) => ApiError::bad_request("invalid_input", e.to_string()),
            ServeError::Feedback(e @ FeedbackError::Correction { .. }) => ApiError::bad_request("invalid_correction", e.to_string()),
            ServeError::Feedback(e) => ApiError::bad_request("invalid_feedback", e.to_string()),
            ServeError::Store(e) => e.into(),
            e @ (ServeError::Load(_) | ServeError::PublicWithoutKey { .. } | ServeError::Listen(_)) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        error.extend(*self.extra);
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_statuses_by_whose_fault_they_are() {
        let e: ApiError = StoreError::UnknownRun { run_id: "run_x".into() }.into();
        assert_eq!((e.status, e.code), (StatusCode::NOT_FOUND, "unknown_run"));
        let e: ApiError = StoreError::Database(sqlx::Error::PoolClosed).into();
        assert_eq!((e.status, e.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(1)));
        let e: ApiError = StoreError::InvalidId { what: "feedback key", value: "a b".into() }.into();
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_request"));
    }

    #[test]
    fn statuses_without_a_body_get_a_code_and_a_message() {
        let e = ApiError::from_status(StatusCode::METHOD_NOT_ALLOWED, String::new());
        assert_eq!((e.code, e.message.as_str()), ("method_not_allowed", "method not allowed"));
    }
}
