//! Which node serves a signaling connection, and the cluster's consent for a session to
//! start here.
//!
//! In a cluster a connection's first frame (its `join`) names the room, and so the node
//! that serves it: this one, or the room's holder, through a [relay](super::relay). A
//! connection another node relayed is always served here.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use confer_proto::signal::{ClientMessage, Request};
use confer_proto::{ErrorCode, RoomId};

use super::{ClusterError, Placement, Registry};
use crate::error::{ApiError, ApiResult};
use crate::hub::Now;
use crate::signal::Routed;
use crate::ServerState;

/// Routes a new connection; `None` when it was relayed elsewhere (and has ended) or
/// said nothing within `join_timeout`.
pub(crate) async fn route_connection(
    state: &ServerState,
    mut socket: WebSocket,
    relayed_by: Option<&str>,
    join_timeout: Duration,
) -> Option<Routed> {
    let (Some(cluster), None) = (&state.cluster, relayed_by) else {
        return Some(Routed { socket, first: None, placed: None });
    };
    let frame = match tokio::time::timeout(join_timeout, socket.recv()).await {
        Ok(Some(Ok(frame))) => frame,
        _ => return None,
    };
    let mut placed = None;
    if let Message::Text(text) = &frame {
        match route(state, cluster, text.as_str()).await {
            Route::There { join_id, node, url } => {
                let ping_every = Duration::from_millis(state.hub.limits().ping_interval_ms);
                let to = super::relay::Target { node: &node, url: &url };
                let first = text.as_str().to_owned();
                super::relay::relay(socket, first, join_id, cluster.node_id(), to, ping_every).await;
                return None;
            }
            Route::Here { placed: p } => placed = p,
        }
    }
    Some(Routed { socket, first: Some(frame), placed })
}

/// Where a connection goes, by its first frame.
enum Route {
    /// Served here; `placed` names the room the cluster placed here just now.
    Here { placed: Option<RoomId> },
    /// Relayed to the node holding the room.
    There { join_id: u64, node: String, url: String },
}

/// Routes a connection whose first frame is `first`. Anything but a join for a room
/// held elsewhere is served here, where a bad frame or token gets its usual answer
/// and a cluster that cannot place the room says so (see [`place_here`]).
async fn route(state: &ServerState, cluster: &Registry, first: &str) -> Route {
    let here = Route::Here { placed: None };
    let Ok(ClientMessage { id, request: Request::Join(join) }) =
        confer_proto::strict::from_slice::<ClientMessage>(first.as_bytes())
    else {
        return here;
    };
    let Ok(token) = state.credentials.verify(&join.token, Now::system().unix_secs()) else {
        return here;
    };
    if state.hub.holds(&token.room) {
        return here;
    }
    // A draining node is passed over by placement (its heartbeat says so), and
    // passes joins on to wherever their room goes.
    match cluster.place(&token.room).await {
        Ok(Placement::Here) => Route::Here { placed: Some(token.room) },
        Ok(Placement::There { node, url }) => Route::There { join_id: id, node, url },
        Err(_) => here,
    }
}

/// A session is to start here: the cluster must agree that this node holds the room.
pub(crate) async fn place_here(cluster: &Registry, room: &RoomId) -> ApiResult<()> {
    match cluster.place(room).await {
        Ok(Placement::Here) => Ok(()),
        Ok(Placement::There { node, .. }) => {
            // A connection relayed here for a room that has moved since (its holder
            // died a moment ago): the client joins again and is routed afresh.
            tracing::info!(%room, %node, "a relayed join reached a node that no longer holds its room");
            Err(ApiError::new(ErrorCode::Unavailable, "this meeting moved to another server; join again"))
        }
        Err(ClusterError::NoNode) => {
            Err(ApiError::new(ErrorCode::Unavailable, "no server of this cluster takes new meetings now"))
        }
        Err(e) => {
            tracing::warn!(%room, error = %e, "a meeting cannot start: the cluster state is out of reach");
            Err(ApiError::new(
                ErrorCode::Unavailable,
                "new meetings cannot start now (cluster state out of reach); running ones go on",
            ))
        }
    }
}
