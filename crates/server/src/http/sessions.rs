//! Live sessions and server-side moderation.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use confer_proto::session::{NodeInfo, SessionInfo, SessionList};
use confer_proto::signal::DisconnectReason;
use confer_proto::{ErrorCode, ParticipantId, RoomId};

use super::{ApiAuth, ApiPath};
use crate::error::ApiResult;
use crate::hub::Now;
use crate::ServerState;

/// The live sessions; in a cluster, those of every live node (a call passed on by
/// another node gets this node's alone).
pub async fn list(_: ApiAuth, State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Json<SessionList> {
    Json(SessionList { sessions: crate::nodes::all_sessions(&state, &headers).await })
}

/// This node: its id in a cluster, whether it is draining, what it holds.
pub async fn node(_: ApiAuth, State(state): State<Arc<ServerState>>) -> Json<NodeInfo> {
    let census = state.hub.census();
    Json(NodeInfo {
        node_id: crate::nodes::node_id(&state).map(str::to_owned),
        draining: state.draining(),
        sessions: census.rooms as u32,
        participants: census.participants as u32,
    })
}

/// Starts draining this node: no new session starts here; running ones go on until
/// they end or the drain grace runs out, and then the server stops.
pub async fn drain(auth: ApiAuth, State(state): State<Arc<ServerState>>) -> (StatusCode, Json<NodeInfo>) {
    state.start_drain("the room API");
    (StatusCode::ACCEPTED, node(auth, State(state)).await)
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
