//! One WebSocket signaling connection: framing, limits, keepalive, and dispatch of
//! requests to the [`Hub`](crate::hub::Hub).
//!
//! Two tasks per connection. The writer drains the connection's bounded outbound queue
//! (filled by the hub and by this reader) to the socket and pings on a timer; it ends on
//! [`Outbound::Close`]. The reader parses frames, enforces the size and rate limits, and
//! handles requests in arrival order. When the socket drops without a `leave`, the
//! participant is only detached, so that its client can resume within the grace period.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use confer_proto::signal::{
    ClientMessage, DisconnectReason, JoinRequest, Reply, Request, MAX_CONTEXT_BYTES, MAX_NAME_BYTES,
};
use confer_proto::{ErrorCode, RoomId};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;

#[cfg(feature = "redis")]
use crate::cluster::route::route_connection;
use crate::error::{ApiError, ApiResult};
use crate::hub::{error_response, response, Admitted, Link, Now, Outbound, Queued};
use crate::limit::{TokenBucket, WindowCounter};
use crate::store::Storage;
use crate::ServerState;

/// How long a new connection may take to join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the client's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Frames queued for a client before it counts as too slow and is dropped.
const OUTBOUND_QUEUE: usize = 1024;
/// How long a frame may wait for a client before it counts as too slow and is dropped.
const MAX_QUEUE_AGE: Duration = Duration::from_secs(10);
/// Limit violations within [`ABUSE_WINDOW`] after which the connection is closed.
const ABUSE_LIMIT: u32 = 1000;
/// Violations within the window that still get an error answer. Past this the server
/// stops answering, so that a client flooding without reading cannot fill its own
/// outbound queue and crowd out the final `disconnected`.
const ABUSE_ANSWERED: u32 = 100;
const ABUSE_WINDOW: Duration = Duration::from_secs(10);
/// How long a request waits for the media thread (which answers in microseconds unless
/// something is badly wrong).
const MEDIA_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one signaling connection. `relayed_by` names the node that relayed it here,
/// if one did.
pub async fn serve(state: Arc<ServerState>, socket: WebSocket, relayed_by: Option<String>) {
    let conn_id = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let _counted = state.metrics.signaling_connection();
    // The join must come within `JOIN_TIMEOUT` of the connection, however it is routed.
    let started = Instant::now();
    let routed = route_connection(&state, socket, relayed_by.as_deref(), JOIN_TIMEOUT).await;
    let Some(Routed { socket, mut first, placed }) = routed else {
        return;
    };
    if let Some(node) = &relayed_by {
        tracing::debug!(conn = conn_id, %node, "signaling connection relayed by another node");
    }
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let kill = Arc::new(tokio::sync::Notify::new());
    let closing = Arc::new(tokio::sync::Notify::new());
    let (sink, stream) = socket.split();
    let ping_every = Duration::from_millis(state.hub.limits().ping_interval_ms);
    let mut writer = tokio::spawn(write_loop(sink, rx, kill.clone(), closing.clone(), ping_every));
    let mut conn = Connection {
        state: state.clone(),
        conn_id,
        link: Link { conn_id, tx, kill, closing },
        joined: None,
        bucket: TokenBucket::new(state.hub.limits().requests_per_second, state.hub.limits().burst, Instant::now()),
        violations: WindowCounter::new(ABUSE_WINDOW, Instant::now()),
        closing: false,
        placed,
    };
    tracing::debug!(conn = conn_id, "signaling connection opened");
    let mut stream = stream;
    let silence_limit = ping_every * 3;
    // Set when the writer ended inside the loop: whether it closed cleanly.
    let mut writer_done = None;
    loop {
        let deadline =
            if conn.joined.is_none() { JOIN_TIMEOUT.saturating_sub(started.elapsed()) } else { silence_limit };
        let frame = match first.take() {
            Some(frame) => Ok(Some(Ok(frame))),
            None => tokio::select! {
                ended = &mut writer => {
                    writer_done = Some(ended.unwrap_or(false));
                    break;
                }
                frame = tokio::time::timeout(deadline, stream.next()) => frame,
            },
        };
        match frame {
            Err(_) => {
                tracing::info!(conn = conn_id, joined = conn.joined.is_some(), "signaling connection timed out");
                break;
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(Message::Text(text)))) => {
                // A bug met while handling one request ends this connection's
                // participant, never the server or anyone else.
                if AssertUnwindSafe(conn.on_text(text.as_str())).catch_unwind().await.is_err() {
                    conn.failed();
                    break;
                }
            }
            Ok(Some(Ok(Message::Binary(_)))) => conn.violation(
                None,
                ApiError::new(ErrorCode::MalformedRequest, "binary frames are not part of the protocol"),
            ),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
        }
        if conn.closing {
            break;
        }
    }
    conn.finish();
    // Let the writer flush what is queued (a final error or `disconnected`) and send the
    // close frame, then keep reading until the client answers it: dropping a socket with
    // unread input makes the kernel reset the connection, and the client could then
    // lose the frames that tell it why it was closed. A writer that could not close
    // cleanly (cut, stalled, or the socket failed) has nothing more to deliver: the
    // socket goes at once.
    let clean = match writer_done {
        Some(clean) => clean,
        None => tokio::time::timeout(CLOSE_TIMEOUT, &mut writer).await.is_ok_and(|r| r.unwrap_or(false)),
    };
    if clean {
        let drain = async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
    }
    writer.abort();
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Queued>,
    kill: Arc<tokio::sync::Notify>,
    closing: Arc<tokio::sync::Notify>,
    ping_every: Duration,
) -> bool {
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    // Resolves CLOSE_TIMEOUT after the hub queued a `Close`: what is not written by then
    // is not written.
    let close_deadline = async {
        closing.notified().await;
        tokio::time::sleep(CLOSE_TIMEOUT).await;
    };
    tokio::pin!(close_deadline);
    let mut stop = Stop { kill: &kill, close_deadline };
    loop {
        let queued = tokio::select! {
            // The hub gave up on this connection (too slow, or taken over by a resume).
            _ = kill.notified() => None,
            () = &mut stop.close_deadline => None,
            queued = rx.recv() => queued,
            _ = ping.tick() => {
                if !write(&mut sink, Message::Ping(Default::default()), &mut stop).await { return false; }
                continue;
            }
        };
        match queued {
            Some(Queued { at, out: Outbound::Frame(text) }) => {
                // A client that reads slower than the server writes falls behind however
                // much it sends; its frames age in the queue, and it is let go.
                let waited = at.elapsed();
                if waited > MAX_QUEUE_AGE {
                    tracing::warn!(waited_ms = waited.as_millis() as u64, "client too slow: dropping connection");
                    return false;
                }
                if !write(&mut sink, Message::Text(text.as_ref().into()), &mut stop).await {
                    return false;
                }
            }
            // The hub cut the connection (too slow, replaced, or taken over by a resume).
            None => return false,
            Some(Queued { out: Outbound::Close, .. }) => {
                // The peer may be gone already; then the close is not clean.
                let closed = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    sink.send(Message::Close(None)).await.is_ok() && sink.close().await.is_ok()
                })
                .await;
                return closed.unwrap_or(false);
            }
        }
    }
}

/// What ends a write early: the hub cutting the connection, or the grace period after
/// a `Close` running out.
struct Stop<'a, F> {
    kill: &'a tokio::sync::Notify,
    close_deadline: std::pin::Pin<&'a mut F>,
}

/// Writes one message; `false` when the connection should end: the socket failed, the
/// hub gave up on it, the close grace ran out, or the client has not taken anything
/// for [`MAX_QUEUE_AGE`].
async fn write<F: std::future::Future<Output = ()>>(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    msg: Message,
    stop: &mut Stop<'_, F>,
) -> bool {
    tokio::select! {
        sent = tokio::time::timeout(MAX_QUEUE_AGE, sink.send(msg)) => match sent {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::warn!("client too slow: a write stalled; dropping connection");
                false
            }
        },
        _ = stop.kill.notified() => false,
        () = &mut stop.close_deadline => {
            tracing::info!("a closed connection did not take its last frames in time: cut");
            false
        }
    }
}

struct Connection {
    state: Arc<ServerState>,
    conn_id: u64,
    link: Link,
    joined: Option<Admitted>,
    bucket: TokenBucket,
    violations: WindowCounter,
    /// Set when this connection should end after the current frame.
    closing: bool,
    /// The room the cluster placed here for this connection's first join (used up by it).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    placed: Option<RoomId>,
}

impl Connection {
    fn send(&self, out: Outbound) {
        // A full or closed queue means the writer is gone or stuck; the reader notices
        // the socket ending on its own.
        let _ = self.link.tx.try_send(Queued { at: Instant::now(), out });
    }

    /// Answers a request with an error, and counts it.
    fn send_error(&self, id: Option<u64>, error: &ApiError) {
        self.state.metrics.error(error.code, "signaling");
        self.send(error_response(id, error));
    }

    /// Answers a bad frame, and closes the connection if they keep coming.
    fn violation(&mut self, id: Option<u64>, error: ApiError) {
        tracing::debug!(conn = self.conn_id, %error, "bad signaling input");
        let count = self.violations.record(Instant::now());
        if count > ABUSE_LIMIT {
            tracing::warn!(conn = self.conn_id, "closing connection after repeated limit violations");
            if let Some(joined) = self.joined.as_ref().map(Admitted::current) {
                self.state.hub.remove(
                    &joined.room,
                    &joined.participant,
                    DisconnectReason::ProtocolViolation,
                    Now::system(),
                );
            }
            self.send(Outbound::Close);
            self.closing = true;
            return;
        }
        if count <= ABUSE_ANSWERED {
            self.send_error(id, &error);
        }
    }

    async fn on_text(&mut self, text: &str) {
        let limits = self.state.hub.limits();
        if text.len() > limits.max_message_bytes as usize {
            let msg = format!("frame of {} bytes is over the {} byte limit", text.len(), limits.max_message_bytes);
            return self.violation(None, ApiError::new(ErrorCode::TooLarge, msg));
        }
        let msg = match confer_proto::strict::from_slice::<ClientMessage>(text.as_bytes()) {
            Ok(msg) => msg,
            Err(e) => {
                let id = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v.get("id")?.as_u64());
                return self
                    .violation(id, ApiError::new(ErrorCode::MalformedRequest, format!("malformed request: {e}")));
            }
        };
        if !self.bucket.try_take(Instant::now()) {
            return self.violation(Some(msg.id), ErrorCode::RateLimited.into());
        }
        let id = msg.id;
        let result = match (msg.request, self.joined.clone()) {
            (Request::Join(join), None) => match self.join(id, join).await {
                // The hub queued the response itself, ahead of any event.
                Ok(()) => return,
                Err(e) => Err(e),
            },
            (Request::Join(_), Some(_)) => Err(ApiError::new(ErrorCode::MalformedRequest, "already joined")),
            (Request::Leave, Some(joined)) => {
                let joined = joined.current();
                // The answer goes out before the hub queues `disconnected` and the close.
                self.send(response(id, Reply::Ok));
                self.state.hub.leave(&joined.room, &joined.participant, Now::system());
                self.joined = None;
                self.closing = true;
                return;
            }
            (Request::EndSession, Some(joined)) => {
                // As for a leave, the answer goes out before everyone's `disconnected`.
                let joined = joined.current();
                match self.state.hub.may_end_session(&joined.room, &joined.participant) {
                    Ok(()) => {
                        self.send(response(id, Reply::Ok));
                        self.state.hub.end_session_by(&joined.room, &joined.participant, Now::system());
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            (_, None) => Err(ErrorCode::NotJoined.into()),
            (request, Some(joined)) => self.handle(request, &joined.current()).await,
        };
        match result {
            Ok(reply) => self.send(response(id, reply)),
            Err(e) => self.send_error(Some(id), &e),
        }
    }

    async fn join(&mut self, id: u64, req: JoinRequest) -> ApiResult<()> {
        let now = Now::system();
        let token = self.state.credentials.verify(&req.token, now.unix_secs())?;
        if req.room.as_ref().is_some_and(|r| *r != token.room) {
            return Err(ErrorCode::RoomMismatch.into());
        }
        if req.protocol != confer_proto::PROTOCOL_VERSION {
            return Err(ApiError::new(
                ErrorCode::MalformedRequest,
                format!(
                    "protocol {} is not supported; this server speaks {}",
                    req.protocol,
                    confer_proto::PROTOCOL_VERSION
                ),
            ));
        }
        let name = req.name.as_deref().filter(|n| !n.is_empty()).unwrap_or(&token.name);
        if name.len() > MAX_NAME_BYTES {
            return Err(ApiError::new(ErrorCode::TooLarge, format!("a name has at most {MAX_NAME_BYTES} bytes")));
        }
        if !req.context.is_null() && req.context.to_string().len() > MAX_CONTEXT_BYTES {
            let msg = format!("the context has at most {MAX_CONTEXT_BYTES} bytes of JSON");
            return Err(ApiError::new(ErrorCode::TooLarge, msg));
        }
        let room = self.state.store.room(&token.room).await?.ok_or(ErrorCode::RoomNotFound)?;
        // A room deleted and created again under the same id is another room.
        if token.issued_at.saturating_mul(1000) < room.created_at / 1000 * 1000 {
            return Err(ApiError::new(ErrorCode::TokenRevoked, "the token was issued before this room was created"));
        }
        if req.resume.is_none() {
            let kicked_at = self.state.store.kicked_at(&room.id, &token.identity).await?;
            if kicked_at.is_some_and(|at| token.issued_at <= at) {
                return Err(ApiError::new(ErrorCode::TokenRevoked, "removed from this room; a new token is needed"));
            }
        }
        if self.state.draining() && !self.state.hub.holds(&room.id) {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "this server is shutting down; no new meetings start here",
            ));
        }
        #[cfg(feature = "redis")]
        if let Some(cluster) = &self.state.cluster {
            let placed = self.placed.take();
            if placed.as_ref() != Some(&room.id) && !self.state.hub.holds(&room.id) {
                crate::cluster::route::place_here(cluster, &room.id).await?;
            }
        }
        let admitted = self.state.hub.join(room, token, &req, id, self.link.clone(), Now::system())?;
        self.joined = Some(admitted);
        Ok(())
    }

    async fn handle(&self, request: Request, me: &Admitted) -> ApiResult<Reply> {
        let hub = &self.state.hub;
        if self.state.take_signaling_fault(&me.participant) {
            panic!("fault injected into {}'s signaling", me.participant);
        }
        // Someone in the lobby may only wait (or leave, answered in `on_text`).
        if !matches!(request, Request::Ping) && hub.is_waiting(&me.room, &me.participant) {
            return Err(ErrorCode::NotAdmitted.into());
        }
        match request {
            // Answered in `on_text`, which needs to own the connection state for them.
            Request::Join(_) | Request::Leave => Err(ApiError::new(ErrorCode::MalformedRequest, "unexpected request")),
            Request::SendMessage { text, to } => {
                if text.is_empty() {
                    return Err(ApiError::new(ErrorCode::MalformedRequest, "empty message"));
                }
                let message_id = hub.send_message(&me.room, &me.participant, text, to, Now::system())?;
                Ok(Reply::MessageSent { message_id })
            }
            Request::Kick { participant_id } => {
                let identity = hub.kick(&me.room, Some(&me.participant), &participant_id, Now::system())?;
                crate::http::revoke_after_kick(&self.state, &me.room, &identity).await;
                Ok(Reply::Ok)
            }
            Request::UpdateToken { token } => {
                let token = self.state.credentials.verify(&token, Now::system().unix_secs())?;
                let ice_servers = hub.ice_servers(&token);
                let expires_at = hub.update_token(&me.room, &me.participant, token)?;
                Ok(Reply::TokenUpdated { expires_at, ice_servers })
            }
            Request::Ping => Ok(Reply::Pong),
            Request::Publish { key, tracks, sdp } => {
                let pending = hub.publish(&me.room, &me.participant, key, tracks, sdp)?;
                let answer = match tokio::time::timeout(MEDIA_TIMEOUT, pending.answer).await {
                    Ok(Ok(answer)) => answer,
                    _ => Err(ApiError::new(ErrorCode::Unavailable, "the media thread did not answer")),
                };
                hub.publish_done(&me.room, &me.participant, pending.stream, answer, Now::system())
            }
            Request::UpdateStream { key, tracks } => {
                hub.update_stream(&me.room, &me.participant, &key, tracks, Now::system())?;
                Ok(Reply::Ok)
            }
            Request::Unpublish { key } => {
                hub.unpublish(&me.room, &me.participant, &key, Now::system())?;
                Ok(Reply::Ok)
            }
            Request::Subscribe { participant_id, key, options } => {
                hub.subscribe(&me.room, &me.participant, &participant_id, &key, options)?;
                Ok(Reply::Ok)
            }
            Request::UpdateSubscription { participant_id, key, options } => {
                hub.update_subscription(&me.room, &me.participant, &participant_id, &key, options, Now::system())?;
                Ok(Reply::Ok)
            }
            Request::Unsubscribe { participant_id, key } => {
                hub.unsubscribe(&me.room, &me.participant, &participant_id, &key, Now::system())?;
                Ok(Reply::Ok)
            }
            Request::SubscriberAnswer { sdp } => {
                match tokio::time::timeout(MEDIA_TIMEOUT, hub.subscriber_answer(&me.room, &me.participant, sdp)).await {
                    Ok(Ok(result)) => result.map(|()| Reply::Ok),
                    _ => Err(ApiError::new(ErrorCode::Unavailable, "the media thread did not answer")),
                }
            }
            Request::PublisherOffer { sdp } => {
                match tokio::time::timeout(MEDIA_TIMEOUT, hub.publisher_offer(&me.room, &me.participant, sdp)).await {
                    Ok(Ok(result)) => result.map(|sdp| Reply::PublisherAnswer { sdp }),
                    _ => Err(ApiError::new(ErrorCode::Unavailable, "the media thread did not answer")),
                }
            }
            Request::RestartSubscriber => {
                hub.restart_subscriber(&me.room, &me.participant);
                Ok(Reply::Ok)
            }
            Request::Censor { track_id } => {
                hub.censor(&me.room, &me.participant, &track_id, true, Now::system())?;
                Ok(Reply::Ok)
            }
            Request::Uncensor { track_id } => {
                hub.censor(&me.room, &me.participant, &track_id, false, Now::system())?;
                Ok(Reply::Ok)
            }
            Request::SetNetworkMetrics { participants } => {
                hub.set_network_metrics(&me.room, &me.participant, participants)?;
                Ok(Reply::Ok)
            }
            Request::Admit { participant_id } => {
                hub.admit(&me.room, &me.participant, participant_id.as_ref(), Now::system()).map(|()| Reply::Ok)
            }
            Request::Deny { participant_id } => {
                hub.deny(&me.room, &me.participant, participant_id.as_ref(), Now::system()).map(|()| Reply::Ok)
            }
            Request::SetLocked { locked } => {
                hub.set_locked(&me.room, &me.participant, locked, Now::system()).map(|()| Reply::Ok)
            }
            // Answered in `on_text`: the answer must go before the connection closes.
            Request::EndSession => Err(ApiError::new(ErrorCode::MalformedRequest, "unexpected request")),
            Request::MuteParticipant { participant_id, kind } => hub
                .mute_participant(&me.room, &me.participant, &participant_id, kind, Now::system())
                .map(|()| Reply::Ok),
            Request::MuteAll => hub.mute_all(&me.room, &me.participant, Now::system()).map(|()| Reply::Ok),
            Request::RequestUnmute { participant_id, kind } => {
                hub.request_unmute(&me.room, &me.participant, &participant_id, kind, Now::system()).map(|()| Reply::Ok)
            }
            Request::Promote { participant_id } => {
                hub.set_co_host(&me.room, &me.participant, &participant_id, true, Now::system()).map(|()| Reply::Ok)
            }
            Request::Demote { participant_id } => {
                hub.set_co_host(&me.room, &me.participant, &participant_id, false, Now::system()).map(|()| Reply::Ok)
            }
            Request::RaiseHand => hub.raise_hand(&me.room, &me.participant, Now::system()).map(|()| Reply::Ok),
            Request::LowerHand { participant_id } => {
                hub.lower_hand(&me.room, &me.participant, participant_id.as_ref(), Now::system()).map(|()| Reply::Ok)
            }
            Request::React { reaction } => {
                hub.react(&me.room, &me.participant, reaction, Now::system()).map(|()| Reply::Ok)
            }
            Request::CreateBreakouts { rooms, allow_choice } => {
                hub.create_breakouts(&me.room, &me.participant, rooms, allow_choice, Now::system()).map(|()| Reply::Ok)
            }
            Request::AssignBreakouts { assignments, evenly } => {
                hub.assign_breakouts(&me.room, &me.participant, assignments, evenly, Now::system()).map(|()| Reply::Ok)
            }
            Request::OpenBreakouts => hub.open_breakouts(&me.room, &me.participant, Now::system()).map(|()| Reply::Ok),
            Request::CloseBreakouts { countdown_secs } => {
                let countdown = countdown_secs.map(|s| Duration::from_secs(u64::from(s)));
                hub.close_breakouts(&me.room, &me.participant, countdown, Now::system()).map(|()| Reply::Ok)
            }
            Request::JoinBreakout { room } => {
                hub.join_breakout(&me.room, &me.participant, room, Now::system()).map(|()| Reply::Ok)
            }
            Request::MoveParticipant { participant_id, room } => hub
                .move_participant(&me.room, &me.participant, &participant_id, room, Now::system())
                .map(|()| Reply::Ok),
            Request::MessageBreakouts { text } => hub
                .message_breakouts(&me.room, &me.participant, text, Now::system())
                .map(|message_id| Reply::MessageSent { message_id }),
        }
    }

    /// Handling a request panicked: the participant goes, with the others told.
    fn failed(&mut self) {
        tracing::error!(conn = self.conn_id, joined = self.joined.is_some(), "signaling request handler panicked");
        if let Some(joined) = self.joined.take().as_ref().map(Admitted::current) {
            self.state.hub.remove(&joined.room, &joined.participant, DisconnectReason::ServerError, Now::system());
        }
        self.send(Outbound::Close);
    }

    fn finish(&mut self) {
        if let Some(joined) = self.joined.take().as_ref().map(Admitted::current) {
            self.state.hub.detach(&joined.room, &joined.participant, self.conn_id, Now::system());
        }
        self.send(Outbound::Close);
    }
}

/// A connection to serve here.
pub(crate) struct Routed {
    pub socket: WebSocket,
    /// Its first frame, when routing read it.
    pub first: Option<Message>,
    /// The room the cluster placed here for that first frame's join, if it did.
    pub placed: Option<RoomId>,
}

/// Without cluster support every connection is served here.
#[cfg(not(feature = "redis"))]
async fn route_connection(_: &ServerState, socket: WebSocket, _: Option<&str>, _: Duration) -> Option<Routed> {
    Some(Routed { socket, first: None, placed: None })
}
