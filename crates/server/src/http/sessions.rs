//! Live sessions and server-side moderation.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use confer_proto::session::{SessionInfo, SessionList};
use confer_proto::signal::DisconnectReason;
use confer_proto::{ErrorCode, ParticipantId, RoomId};

use super::{ApiAuth, ApiPath};
use crate::error::ApiResult;
use crate::hub::Now;
use crate::ServerState;

pub async fn list(_: ApiAuth, State(state): State<Arc<ServerState>>) -> Json<SessionList> {
    Json(SessionList { sessions: state.hub.sessions() })
}

pub async fn get(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiPath(room): ApiPath<RoomId>,
) -> ApiResult<Json<SessionInfo>> {
    Ok(Json(state.hub.session(&room).ok_or(ErrorCode::SessionNotFound)?))
}

pub async fn end(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiPath(room): ApiPath<RoomId>,
) -> ApiResult<StatusCode> {
    if !state.hub.end_session(&room, DisconnectReason::SessionEnded, Now::system()) {
        return Err(ErrorCode::SessionNotFound.into());
    }
    tracing::info!(%room, "session ended through the room API");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn kick(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiPath((room, participant)): ApiPath<(RoomId, ParticipantId)>,
) -> ApiResult<StatusCode> {
    let identity = state.hub.kick(&room, None, &participant, Now::system())?;
    super::revoke_after_kick(&state, &room, &identity).await;
    Ok(StatusCode::NO_CONTENT)
}
