//! The server's error type: a catalog code plus a message, turned into the same
//! `{code, name, message}` body on HTTP and on signaling.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use confer_proto::{ErrorBody, ErrorCode};

/// An error that reaches a client. Faults that the client cannot act on are logged
/// where they happen and reach the client as [`ErrorCode::Internal`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            // Down or restarting: the same request succeeds once it is back.
            tracing::warn!(error = %e, "database unavailable");
            return Self::new(ErrorCode::Unavailable, "the database is unavailable; try again shortly");
        }
        tracing::error!(error = %e, "storage failure");
        ErrorCode::Internal.into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        // For the metrics (`http::count_errors`).
        response.extensions_mut().insert(self.code);
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
