//! The HTTP side: the versioned room API under `/v1`, `/healthz`, the OpenAPI document
//! and the upgrade to WebSocket signaling. Every error body is an
//! [`ErrorBody`](confer_proto::ErrorBody), including those of malformed requests.

mod join_page;
pub mod listener;
mod rooms;
mod sessions;
mod tokens;
mod web_client;

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use confer_proto::ErrorCode;

use crate::error::ApiError;
use crate::store::Storage;
use crate::ServerState;

/// How long a request may take, body and answer included.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest HTTP body accepted.
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;
/// The OpenAPI 3.1 description of this API.
const OPENAPI: &str = include_str!("../../openapi.json");

pub fn router(state: Arc<ServerState>) -> Router {
    // Frames between the protocol limit and twice it get a `too_large` answer; larger
    // ones end the connection unread (the WebSocket layer refuses them from the header).
    let max_ws = state.hub.limits().max_message_bytes as usize * 2;
    let router = Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/rooms", post(rooms::create).get(rooms::list))
        .route("/v1/rooms/{id}", get(rooms::get).put(rooms::update).delete(rooms::delete))
        .route("/v1/rooms/{id}/invites", post(tokens::create_invite))
        .route("/v1/rooms/{id}/session", get(sessions::get).delete(sessions::end))
        .route("/v1/rooms/{id}/participants/{participant}", delete(sessions::kick))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/node", get(sessions::node))
        .route("/v1/node/drain", post(sessions::drain))
        .route("/v1/tokens", post(tokens::create))
        .route("/v1/tokens/refresh", post(tokens::refresh))
        .route("/v1/invites/exchange", post(tokens::exchange_invite))
        .route("/j/{room}", get(join_page::show))
        .route(
            "/v1/signal",
            get(
                move |axum::extract::State(state): axum::extract::State<Arc<ServerState>>,
                      headers: axum::http::HeaderMap,
                      ws: WebSocketUpgrade| async move {
                    let relayed_by = crate::nodes::relayed_by(&headers);
                    ws.max_message_size(max_ws)
                        .max_frame_size(max_ws)
                        .on_upgrade(move |socket| crate::signal::serve(state, socket, relayed_by))
                },
            ),
        )
        // The web client's files: a page, not part of the room API.
        .merge(web_client::routes());
    // In a cluster, a call about a session held by another node is passed to it.
    #[cfg(feature = "redis")]
    let router =
        router.route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::cluster::forward::to_holder));
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(guard_request))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_errors))
        .with_state(state)
}

/// `s` percent-encoded for one segment of a URL's path.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn path_segment(s: &str) -> String {
    tokens::url_encode(s)
}

/// `/metrics` alone, without credentials: for `--metrics-addr`.
pub fn metrics_router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/metrics", get(|axum::extract::State(state): axum::extract::State<Arc<ServerState>>| async move { render_metrics(&state) }))
        .with_state(state)
}

/// The Prometheus exposition, behind the room API's credentials.
async fn metrics(_auth: ApiAuth, axum::extract::State(state): axum::extract::State<Arc<ServerState>>) -> Response {
    render_metrics(&state)
}

fn render_metrics(state: &ServerState) -> Response {
    let body = state.metrics.render(&state.hub);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

/// Counts every error answer by its catalog name.
async fn count_errors(
    axum::extract::State(state): axum::extract::State<Arc<ServerState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        state.metrics.error(*code, "http");
    }
    response
}

/// After a kick: the kicked identity's tokens for the room issued up to now, and its
/// refresh tokens, stop working, so that it can neither rejoin with what it holds nor
/// renew its way back in. A storage failure is logged; the kick stands.
pub(crate) async fn revoke_after_kick(
    state: &ServerState,
    room: &confer_proto::RoomId,
    identity: &confer_proto::Identity,
) {
    match state.store.record_kick(room, identity, crate::hub::Now::system().unix_secs()).await {
        Ok(n) => tracing::info!(%room, %identity, revoked = n, "tokens revoked after a kick"),
        Err(e) => tracing::error!(%room, %identity, error = %e, "cannot revoke tokens after a kick"),
    }
}

/// Ends a request (its body included) that takes longer than [`REQUEST_TIMEOUT`] (a
/// body trickled in a byte at a time must not hold a connection for ever), and answers
/// `internal` for a handler that panicked.
async fn guard_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use futures_util::FutureExt;
    let handled = std::panic::AssertUnwindSafe(next.run(request)).catch_unwind();
    match tokio::time::timeout(REQUEST_TIMEOUT, handled).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => {
            tracing::error!("HTTP handler panicked");
            ApiError::from(ErrorCode::Internal).into_response()
        }
        Err(_) => {
            tracing::info!("request timed out");
            ApiError::from(ErrorCode::RequestTimeout).into_response()
        }
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Whether a load balancer should send new clients here: not while draining (clients
/// sent to a draining node are relayed elsewhere, but the relay ends with the node).
async fn ready(axum::extract::State(state): axum::extract::State<Arc<ServerState>>) -> Response {
    if state.draining() {
        return ApiError::new(ErrorCode::Unavailable, "this node is draining: new clients go to the other nodes")
            .into_response();
    }
    health().await.into_response()
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

/// A JSON body, read strictly ([`confer_proto::strict`]: never an array where an
/// object is meant), with errors in the catalog's shape.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(ErrorCode::MalformedRequest, "expected a body of type application/json"));
        }
        let body = axum::body::Bytes::from_request(req, state).await.map_err(|r| {
            let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorCode::TooLarge
            } else {
                ErrorCode::MalformedRequest
            };
            ApiError::new(code, r.body_text())
        })?;
        confer_proto::strict::from_slice(&body)
            .map(ApiJson)
            .map_err(|e| ApiError::new(ErrorCode::MalformedRequest, format!("malformed body: {e}")))
    }
}

/// `axum::extract::Query` with errors in the catalog's shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with errors in the catalog's shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

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
