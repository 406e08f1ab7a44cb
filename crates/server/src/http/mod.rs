//! The HTTP side: the versioned room API under `/v1`, `/healthz`, the OpenAPI document
//! and the upgrade to WebSocket signaling. Every error body is an
//! [`ErrorBody`](confer_proto::ErrorBody), including those of malformed requests.

mod rooms;
mod sessions;
mod tokens;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use confer_proto::ErrorCode;

use crate::error::ApiError;
use crate::ServerState;

/// Largest HTTP body accepted.
const MAX_BODY_BYTES: usize = 1 << 20;
/// The OpenAPI 3.1 description of this API.
const OPENAPI: &str = include_str!("../../openapi.json");

pub fn router(state: Arc<ServerState>) -> Router {
    let max_ws = state.hub.limits().max_message_bytes as usize * 16;
    Router::new()
        .route("/healthz", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/rooms", post(rooms::create).get(rooms::list))
        .route("/v1/rooms/{id}", get(rooms::get).put(rooms::update).delete(rooms::delete))
        .route("/v1/rooms/{id}/invites", post(tokens::create_invite))
        .route("/v1/rooms/{id}/session", get(sessions::get).delete(sessions::end))
        .route("/v1/rooms/{id}/participants/{participant}", delete(sessions::kick))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/tokens", post(tokens::create))
        .route("/v1/tokens/refresh", post(tokens::refresh))
        .route("/v1/invites/exchange", post(tokens::exchange_invite))
        .route(
            "/v1/signal",
            get(move |axum::extract::State(state): axum::extract::State<Arc<ServerState>>, ws: WebSocketUpgrade| async move {
                // Frames between the protocol limit and this cap get a `too_large` answer;
                // larger ones end the connection.
                ws.max_message_size(max_ws).on_upgrade(move |socket| crate::signal::serve(state, socket))
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// After a kick: the kicked identity's refresh tokens for the room stop working, so
/// that it cannot renew its way back in. A storage failure is logged; the kick stands.
pub(crate) async fn revoke_after_kick(
    state: &ServerState,
    room: &confer_proto::RoomId,
    identity: &confer_proto::Identity,
) {
    match state.store.revoke_refresh(room, identity).await {
        Ok(n) => tracing::info!(%room, %identity, revoked = n, "refresh tokens revoked after a kick"),
        Err(e) => tracing::error!(%room, %identity, error = %e, "cannot revoke refresh tokens after a kick"),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> ApiError {
    ErrorCode::NotFound.into()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "method not allowed on this resource")
}

/// Guards a handler with the API key and secret (HTTP Basic).
pub struct ApiAuth;

impl FromRequestParts<Arc<ServerState>> for ApiAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ServerState>) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        state.credentials.check_basic(header).inspect_err(|_| {
            tracing::info!(path = %parts.uri.path(), "refused room API call without valid credentials");
        })?;
        Ok(ApiAuth)
    }
}

/// `axum::Json` with errors in the catalog's shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` with errors in the catalog's shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with errors in the catalog's shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code =
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE { ErrorCode::TooLarge } else { ErrorCode::MalformedRequest };
        ApiError::new(code, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(ErrorCode::MalformedRequest, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(ErrorCode::MalformedRequest, r.body_text())
    }
}
