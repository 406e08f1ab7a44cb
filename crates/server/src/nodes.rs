//! What the rest of the server asks of the cluster, answered the same way with or
//! without cluster support built in (the `redis` feature) or configured: a server on its
//! own is a cluster of one. The only place outside [`cluster`](crate::cluster) that
//! knows the difference.

use axum::http::HeaderMap;
use confer_proto::session::SessionInfo;
use confer_proto::RoomId;

use crate::ServerState;

/// This node's id in its cluster; `None` for a server on its own.
pub fn node_id(state: &ServerState) -> Option<&str> {
    #[cfg(feature = "redis")]
    {
        state.cluster.as_ref().map(|c| c.node_id())
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = state;
        None
    }
}

/// The node that passed this request on, if another node of the cluster did.
pub fn relayed_by(headers: &HeaderMap) -> Option<String> {
    #[cfg(feature = "redis")]
    {
        headers.get(crate::cluster::RELAYED_BY).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = headers;
        None
    }
}

/// The live sessions of every live node, sorted by room (this node's alone for a call
/// another node passed on, which gathers the rest itself).
pub async fn all_sessions(state: &ServerState, headers: &HeaderMap) -> Vec<SessionInfo> {
    #[allow(unused_mut)]
    let mut sessions = state.hub.sessions();
    #[cfg(feature = "redis")]
    if let (None, Some(auth)) = (relayed_by(headers), headers.get(axum::http::header::AUTHORIZATION)) {
        sessions.extend(crate::cluster::forward::peer_sessions(state, auth).await);
        sessions.sort_by(|a, b| a.room.cmp(&b.room));
    }
    #[cfg(not(feature = "redis"))]
    let _ = headers;
    sessions
}

/// The live session of `room`, whichever node holds it.
pub async fn find_session(state: &ServerState, room: &RoomId) -> Option<SessionInfo> {
    let here = state.hub.session(room);
    #[cfg(feature = "redis")]
    if here.is_none() {
        return crate::cluster::forward::session_elsewhere(state, room).await;
    }
    here
}
