//! The room API on any node: a call about a live session goes to the node holding it.
//!
//! Rooms, tokens and invites live in the shared database, and any node answers them.
//! A call that acts on a live session (its state, ending it, kicking someone, and the
//! updates and deletions of a room, which reach its participants) is served by the node
//! that holds the session: the node the call reached passes it on, with the caller's
//! credentials and marked [`RELAYED_BY`], and hands back the answer unchanged. The list
//! of sessions is gathered from every live node.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use confer_proto::session::SessionInfo;
use confer_proto::{ErrorCode, RoomId};

use super::{Placement, RELAYED_BY};
use crate::error::ApiError;
use crate::ServerState;

/// How long the holding node may take to answer a passed-on call.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each node may take to list its sessions.
const LIST_TIMEOUT: Duration = Duration::from_secs(3);

/// Middleware on the room API: passes a call about a session held elsewhere to its
/// holder.
pub async fn to_holder(State(state): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    let Some(cluster) = &state.cluster else { return next.run(request).await };
    let Some(room) = session_room(request.method(), request.uri().path()) else { return next.run(request).await };
    let authorized = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // Served here: a call another node passed on, a meeting held here, and a call
    // without valid credentials (refused here, by the handler, not passed on).
    if request.headers().contains_key(RELAYED_BY)
        || state.hub.holds(&room)
        || state.credentials.check_basic(authorized).is_err()
    {
        return next.run(request).await;
    }
    match cluster.holder(&room).await {
        Ok(Some(Placement::There { node, url })) => forward(&state, request, &node, &url).await,
        Ok(_) => next.run(request).await,
        // A room's own record is in the shared database: updated or deleted here, it
        // reaches a meeting elsewhere only if there is one (unknowable now).
        Err(e) if request.uri().path().trim_start_matches("/v1/rooms/").split('/').count() == 1 => {
            tracing::warn!(%room, error = %e, "the cluster state is out of reach: a room call is served here, and a meeting held elsewhere does not hear of it");
            next.run(request).await
        }
        Err(e) => {
            tracing::warn!(%room, error = %e, "cannot find the node holding a session: the cluster state is out of reach");
            ApiError::new(ErrorCode::Unavailable, "the cluster state is out of reach; try again").into_response()
        }
    }
}

/// `path` (with its query) on the node whose URL is `node_url`.
fn on_node(node_url: &str, path: &str) -> String {
    format!("{}{path}", node_url.trim_end_matches('/'))
}

/// The room whose live session a call acts on, from its method and path.
fn session_room(method: &Method, path: &str) -> Option<RoomId> {
    let rest = path.strip_prefix("/v1/rooms/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    let acts_on_session = match segments.as_slice() {
        [_] => method == Method::PUT || method == Method::DELETE,
        [_, "session"] => true,
        [_, "participants", _] => true,
        _ => false,
    };
    (acts_on_session && !segments[0].is_empty()).then(|| RoomId(segments[0].to_owned()))
}

async fn forward(state: &ServerState, request: Request, node: &str, url: &str) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, crate::http::MAX_BODY_BYTES).await else {
        return ApiError::new(ErrorCode::TooLarge, "the body is too large").into_response();
    };
    let target = on_node(url, parts.uri.path_and_query().map_or("", |p| p.as_str()));
    let mut passed = state.http.request(parts.method.clone(), &target).timeout(FORWARD_TIMEOUT).body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = parts.headers.get(&name) {
            passed = passed.header(name, value);
        }
    }
    if let Some(cluster) = &state.cluster {
        passed = passed.header(RELAYED_BY, cluster.node_id());
    }
    let answer = match passed.send().await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(%node, %target, error = %e, "the node holding a session did not answer a passed-on call");
            return ApiError::new(ErrorCode::Unavailable, "the server holding this meeting did not answer; try again")
                .into_response();
        }
    };
    tracing::debug!(%node, method = %parts.method, path = %parts.uri.path(), status = %answer.status(), "call passed to the node holding the session");
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let body = answer.bytes().await.unwrap_or_default();
    // Errors are counted by the node that wrote them, not again here.
    (status, content_type.map(|v| [(header::CONTENT_TYPE, v)]), body).into_response()
}

/// `room`'s live session when another node holds it, asked of that node (with this
/// node's own credentials, which every node shares); `None` when no other node holds
/// it or it does not answer in time.
pub async fn session_elsewhere(state: &ServerState, room: &RoomId) -> Option<SessionInfo> {
    let cluster = state.cluster.as_ref()?;
    let Ok(Some(Placement::There { node, url })) = cluster.holder(room).await else { return None };
    let answer = state
        .http
        .get(on_node(&url, &format!("/v1/rooms/{}/session", crate::http::path_segment(&room.0))))
        .timeout(LIST_TIMEOUT)
        .basic_auth(state.credentials.api_key(), Some(state.credentials.api_secret()))
        .header(RELAYED_BY, cluster.node_id())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    match answer {
        Ok(answer) => answer.json().await.ok(),
        Err(e) => {
            tracing::info!(%room, %node, error = %e, "the node holding a session did not describe it");
            None
        }
    }
}

/// The sessions of the other live nodes, for `GET /v1/sessions`. A node that does not
/// answer in time is left out, with a warning.
pub async fn peer_sessions(state: &ServerState, authorization: &HeaderValue) -> Vec<SessionInfo> {
    let Some(cluster) = &state.cluster else { return vec![] };
    let peers = match cluster.peers().await {
        Ok(peers) => peers,
        Err(e) => {
            tracing::warn!(error = %e, "listing sessions of this node only: the cluster state is out of reach");
            return vec![];
        }
    };
    let asks = peers.iter().map(|peer| async move {
        let url = on_node(&peer.url, "/v1/sessions");
        let answer = state
            .http
            .get(&url)
            .timeout(LIST_TIMEOUT)
            .header(header::AUTHORIZATION, authorization)
            .header(RELAYED_BY, cluster.node_id())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match answer {
            Ok(answer) => match answer.json::<confer_proto::session::SessionList>().await {
                Ok(list) => list.sessions,
                Err(e) => {
                    tracing::warn!(node = %peer.id, error = %e, "a node's session list is unreadable");
                    vec![]
                }
            },
            Err(e) => {
                tracing::warn!(node = %peer.id, error = %e, "a node did not list its sessions");
                vec![]
            }
        }
    });
    futures_util::future::join_all(asks).await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_about_live_sessions_are_recognised() {
        let room = |m: Method, p: &str| session_room(&m, p).map(|r| r.0);
        assert_eq!(room(Method::DELETE, "/v1/rooms/standup/session").as_deref(), Some("standup"));
        assert_eq!(room(Method::GET, "/v1/rooms/standup/session").as_deref(), Some("standup"));
        assert_eq!(room(Method::DELETE, "/v1/rooms/standup/participants/p1").as_deref(), Some("standup"));
        assert_eq!(room(Method::PUT, "/v1/rooms/standup").as_deref(), Some("standup"));
        assert_eq!(room(Method::DELETE, "/v1/rooms/standup").as_deref(), Some("standup"));
        // Served from the database by any node.
        assert_eq!(room(Method::GET, "/v1/rooms/standup"), None);
        assert_eq!(room(Method::POST, "/v1/rooms/standup/invites"), None);
        assert_eq!(room(Method::GET, "/v1/rooms"), None);
        assert_eq!(room(Method::DELETE, "/v1/rooms//session"), None);
    }
}
