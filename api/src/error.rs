//! Every failure of a request as one JSON shape, `{"error": "<code>", "message": "..."}`, with the
//! status that says who should act: 400 the caller's input, 401 no valid token, 404 nothing of
//! this company by that id, 503 not fresh enough yet or a dependency is down. Internal errors are
//! logged with their cause and answered without it (no SQL in responses).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Serialize;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    /// No route matches the request.
    #[error("{0}")]
    NoRoute(String),
    /// `?min_seq=` was not reached within the wait.
    #[error("the projector is at position {position} and did not reach min_seq {min_seq} within {waited_ms} ms")]
    NotReached {
        position: i64,
        min_seq: i64,
        waited_ms: u128,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

/// The body of every error response.
#[derive(Serialize, JsonSchema)]
pub struct ErrorBody {
    /// Machine-readable: `bad_request`, `unauthorized`, `not_found`, `not_reached`,
    /// `unavailable`, `no_route`, `internal`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// For `not_reached`: the projector position when the wait ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }

    pub fn bad_request(what: impl Into<String>) -> Self {
        Self::BadRequest(what.into())
    }

    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "no_route"),
            Self::NotReached { .. } => (StatusCode::SERVICE_UNAVAILABLE, "not_reached"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.code();
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "read API request failed");
        }
        let position = match &self {
            Self::NotReached { position, .. } => Some(*position),
            _ => None,
        };
        let body = ErrorBody {
            error: code.into(),
            message: self.to_string(),
            position,
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Self::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"runledger\""),
                );
            }
            Self::NotReached { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() {
            return Self::Unavailable("PostgreSQL connection closed".into());
        }
        let detail = e
            .as_db_error()
            .map(|d| format!("{}: {}", d.code().code(), d.message()))
            .unwrap_or_else(|| e.to_string());
        Self::Internal(format!("PostgreSQL: {detail}"))
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(format!("PostgreSQL is unavailable: {e}"))
    }
}
