//! The task behind a [`crate::Room`]: it owns the signaling connection, correlates
//! requests with responses, applies events to the state, and reconnects.
//!
//! Run-loop contract:
//! - The engine is the only writer of the room state. It publishes a new snapshot on
//!   the watch channel before it sends the events that snapshot explains.
//! - While connected it polls the socket continuously (that also flushes pong replies)
//!   and treats three ping intervals without any frame as a dropped connection.
//! - Requests in flight when the connection drops fail with
//!   [`ClientError::Interrupted`]: they are not idempotent, so they are never resent.
//!   Requests made while reconnecting wait for the new connection; ones whose caller gave
//!   up (timed out) by then are dropped unsent, so a timed-out request never runs late.
//! - A `disconnected` event from the server is final, except `server_shutdown`, which is
//!   handled as a dropped connection because the server may be back shortly.
//! - It ends after the final event (`Disconnected` or `ConnectionLost`), dropping the
//!   event sender so the app's receiver closes. Dropping every [`crate::Room`] handle
//!   makes it leave the room.

use std::collections::HashMap;
use std::time::Duration;

use confer_proto::signal::{DisconnectReason, Event, JoinRequest, Outcome, Reply, Request, Resume, ServerMessage};
use confer_proto::ErrorCode;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use url::Url;

use crate::connection::{Connection, Incoming};
use crate::error::{ClientError, Result};
use crate::event::{ConnectionState, RoomEvent};
use crate::media::session::MediaSignal;
use crate::room::RoomOptions;
use crate::state::{RoomSnapshot, RoomState};

/// What a [`crate::Room`] handle asks of the engine.
pub(crate) enum Command {
    Request {
        request: Request,
        reply: oneshot::Sender<Result<Reply>>,
    },
    /// Leave the room; `done` is dropped once the engine has finished.
    Leave {
        done: oneshot::Sender<()>,
    },
}

/// A request waiting for its response.
enum Pending {
    Caller {
        reply: oneshot::Sender<Result<Reply>>,
        /// For `update_token`: the token to resume with once the server accepts it.
        new_token: Option<String>,
    },
    Leave,
}

/// How one connection ended.
enum End {
    /// The final event has been emitted.
    Finished,
    /// Dropped: reconnect if the policy allows.
    Dropped(ClientError),
}

/// How a reconnection ended.
enum Reconnect {
    // Boxed: a WebSocket stream is large, and the enum is moved around by value.
    Back {
        conn: Box<Connection>,
        early: Vec<(u64, Event)>,
    },
    GaveUp(ClientError),
    /// The app asked to leave (or dropped the room) meanwhile.
    Left,
}

/// One successful connection attempt.
struct Attempt {
    conn: Connection,
    reply: Reply,
    early: Vec<(u64, Event)>,
}

pub(crate) struct Engine {
    url: Url,
    token: String,
    options: RoomOptions,
    state: RoomState,
    resume_token: String,
    /// The `seq` of the last event applied; sent when resuming.
    last_seq: u64,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    /// Requests made while reconnecting, sent once back.
    queued: Vec<(Request, oneshot::Sender<Result<Reply>>)>,
    /// Set once a leave was asked for: the connection ending is then no reason to
    /// reconnect.
    leaving: bool,
    leave_waiters: Vec<oneshot::Sender<()>>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// False once every handle is gone.
    commands_open: bool,
    snapshot_tx: watch::Sender<RoomSnapshot>,
    events: mpsc::UnboundedSender<RoomEvent>,
    /// The media task's share of the events: offers, subscriptions, failed streams.
    media: mpsc::UnboundedSender<MediaSignal>,
    /// The app's subscriptions, forgotten when the participant moves to another room.
    wanted: crate::media::session::Wanted,
}

/// What the engine starts from: the answer to the first join.
pub(crate) struct Joined {
    pub url: Url,
    pub token: String,
    pub options: RoomOptions,
    pub snapshot: RoomSnapshot,
    pub resume_token: String,
    /// Ids up to this one were used by the first join.
    pub last_request_id: u64,
}

impl Engine {
    pub(crate) fn new(
        joined: Joined,
        commands: mpsc::UnboundedReceiver<Command>,
        snapshot_tx: watch::Sender<RoomSnapshot>,
        events: mpsc::UnboundedSender<RoomEvent>,
        media: mpsc::UnboundedSender<MediaSignal>,
        wanted: crate::media::session::Wanted,
    ) -> Self {
        Self {
            url: joined.url,
            token: joined.token,
            options: joined.options,
            state: RoomState::new(joined.snapshot),
            resume_token: joined.resume_token,
            last_seq: 0,
            next_id: joined.last_request_id + 1,
            pending: HashMap::new(),
            queued: Vec::new(),
            leaving: false,
            leave_waiters: Vec::new(),
            commands,
            commands_open: true,
            snapshot_tx,
            events,
            media,
            wanted,
        }
    }

    pub(crate) async fn run(mut self, mut conn: Connection, mut early: Vec<(u64, Event)>) {
        self.publish();
        self.emit(RoomEvent::Connected { snapshot: Box::new(self.state.snapshot().clone()) });
        loop {
            let end = self.serve(&mut conn, std::mem::take(&mut early)).await;
            conn.close().await;
            let error = match end {
                End::Finished => break,
                End::Dropped(error) => error,
            };
            tracing::info!(%error, "signaling connection interrupted");
            self.fail_pending(false, || ClientError::Interrupted);
            self.emit(RoomEvent::ConnectionInterrupted { error: error.clone() });
            if !self.options.reconnect.allowed {
                self.lose(error);
                break;
            }
            self.set_state(ConnectionState::Reconnecting);
            match self.reconnect(error).await {
                Reconnect::Back { conn: next, early: next_early } => {
                    conn = *next;
                    early = next_early;
                }
                Reconnect::GaveUp(error) => {
                    self.lose(error);
                    break;
                }
                Reconnect::Left => {
                    self.finish_left();
                    break;
                }
            }
        }
        // Dropping the waiters tells `Room::disconnect` that the engine is done.
        self.leave_waiters.clear();
    }

    /// Serves one open connection until it ends.
    async fn serve(&mut self, conn: &mut Connection, early: Vec<(u64, Event)>) -> End {
        for (seq, event) in early {
            if let Some(end) = self.on_event(seq, event) {
                return end;
            }
        }
        let mut queued = std::mem::take(&mut self.queued).into_iter();
        while let Some((request, reply)) = queued.next() {
            if let Some(end) = self.send_request(conn, request, reply).await {
                // Not sent yet, so still safe to send on the next connection.
                self.queued.extend(queued);
                return end;
            }
        }
        if !self.commands_open && !self.leaving {
            if let Some(end) = self.start_leave(conn).await {
                return end;
            }
        }
        let ping = Duration::from_millis(self.state.snapshot().limits.ping_interval_ms);
        // The floor keeps a server that advertises a tiny interval from making every
        // scheduling hiccup look like a dead connection.
        let silence = ping.max(Duration::from_millis(500)) * 3;
        let mut last_heard = Instant::now();
        let mut leave_deadline = self.leaving.then(|| Instant::now() + self.options.request_timeout);
        loop {
            tokio::select! {
                incoming = conn.recv() => {
                    last_heard = Instant::now();
                    match incoming {
                        Ok(Some(Incoming::Message(msg))) => match *msg {
                            ServerMessage::Event { seq, event } => {
                                if let Some(end) = self.on_event(seq, event) {
                                    return end;
                                }
                            }
                            ServerMessage::Response { id, outcome } => self.on_response(id, outcome),
                        },
                        Ok(Some(Incoming::Keepalive)) => {}
                        Ok(None) => return self.ended(ClientError::Closed),
                        Err(error) => return self.ended(error),
                    }
                }
                command = self.commands.recv(), if self.commands_open => {
                    let end = match command {
                        Some(Command::Request { request, reply }) => self.send_request(conn, request, reply).await,
                        Some(Command::Leave { done }) => {
                            self.leave_waiters.push(done);
                            self.start_leave(conn).await
                        }
                        None => {
                            self.commands_open = false;
                            self.start_leave(conn).await
                        }
                    };
                    if let Some(end) = end {
                        return end;
                    }
                    if self.leaving && leave_deadline.is_none() {
                        leave_deadline = Some(Instant::now() + self.options.request_timeout);
                    }
                }
                () = tokio::time::sleep_until(last_heard + silence) => {
                    return self.ended(ClientError::Silent(silence));
                }
                () = sleep_until_or_never(leave_deadline) => {
                    tracing::debug!("the server did not confirm the leave in time; closing");
                    return self.finish_left();
                }
            }
        }
    }

    /// Sends a caller's request on `conn`. Returns `Some` when the connection broke.
    async fn send_request(
        &mut self,
        conn: &mut Connection,
        request: Request,
        reply: oneshot::Sender<Result<Reply>>,
    ) -> Option<End> {
        if reply.is_closed() {
            // The caller timed out while we were reconnecting: sending now would run a
            // request the caller believes failed.
            return None;
        }
        if self.leaving {
            // Sending fails only if the caller is gone, which is fine.
            let _ = reply.send(Err(ClientError::Disconnected { reason: Some(DisconnectReason::Left) }));
            return None;
        }
        let new_token = match &request {
            Request::UpdateToken { token } => Some(token.clone()),
            _ => None,
        };
        let id = self.next_request_id();
        match conn.send(id, request).await {
            Ok(()) => {
                self.pending.insert(id, Pending::Caller { reply, new_token });
                None
            }
            Err(error) => {
                let _ = reply.send(Err(ClientError::Interrupted));
                Some(self.ended(error))
            }
        }
    }

    async fn start_leave(&mut self, conn: &mut Connection) -> Option<End> {
        if self.leaving {
            return None;
        }
        self.leaving = true;
        let id = self.next_request_id();
        match conn.send(id, Request::Leave).await {
            Ok(()) => {
                self.pending.insert(id, Pending::Leave);
                None
            }
            // The connection is gone; as far as this client is concerned it has left.
            Err(_) => Some(self.finish_left()),
        }
    }

    /// The connection ended with `error`: final if we were leaving, else a drop.
    fn ended(&mut self, error: ClientError) -> End {
        if self.leaving {
            self.finish_left()
        } else {
            End::Dropped(error)
        }
    }

    /// Applies one event. Returns `Some` when the connection is over.
    fn on_event(&mut self, seq: u64, event: Event) -> Option<End> {
        if seq <= self.last_seq {
            tracing::debug!(seq, last_seq = self.last_seq, "skipping an event seen already");
            return None;
        }
        if seq != self.last_seq + 1 {
            tracing::warn!(seq, last_seq = self.last_seq, "events were skipped by the server");
        }
        self.last_seq = seq;
        let reason = match &event {
            Event::Disconnected { reason: DisconnectReason::ServerShutdown } if !self.leaving => {
                return Some(End::Dropped(ClientError::ServerShutdown));
            }
            Event::Disconnected { reason } => Some(*reason),
            _ => None,
        };
        let now = std::time::Instant::now();
        match &event {
            Event::SubscriberOffer { .. } => {
                let _ = self.media.send(MediaSignal::Event(event, now));
                return None;
            }
            Event::SubscriptionStarted { .. }
            | Event::SubscriptionEnded { .. }
            | Event::StreamFailed { .. }
            | Event::StreamUnpublished { .. }
            | Event::TrackDisabled { by: Some(_), .. } => {
                let _ = self.media.send(MediaSignal::Event(event.clone(), now));
            }
            Event::Moved { snapshot } => {
                // Another room of the meeting: its state replaces this one's, as after a
                // fresh join, and media is published and subscribed there anew (the
                // devices stay open). The participant, its seq and resume token stay.
                let (snapshot, _same_resume_token) = RoomSnapshot::from_join((**snapshot).clone());
                tracing::info!(room = %snapshot.room.id, "moved to another room of the meeting");
                let diff = self.state.move_to(snapshot);
                // Before the app hears of the new room's streams and subscribes to them.
                self.wanted.lock().unwrap_or_else(|p| p.into_inner()).clear();
                self.publish();
                let _ = self.media.send(MediaSignal::Moved);
                self.emit(RoomEvent::Media { event: Box::new(event) });
                for e in diff {
                    self.emit(e);
                }
                return None;
            }
            _ => {}
        }
        let out = self.state.apply(event);
        self.publish();
        for event in out {
            self.emit(event);
        }
        let reason = reason?;
        self.fail_pending(true, || ClientError::Disconnected { reason: Some(reason) });
        Some(End::Finished)
    }

    fn on_response(&mut self, id: Option<u64>, outcome: Outcome) {
        let Some(id) = id else {
            // The server could not read one of our frames far enough to find its id; the
            // caller of that request will time out.
            tracing::warn!(?outcome, "the server rejected an unreadable request");
            return;
        };
        match self.pending.remove(&id) {
            None => tracing::debug!(id, "answer to a request nobody waits for"),
            // The `disconnected` event that follows the leave ends the connection.
            Some(Pending::Leave) => {}
            Some(Pending::Caller { reply, new_token }) => {
                let result = match outcome {
                    Outcome::Result(answer) => {
                        if let (Some(token), Reply::TokenUpdated { expires_at, ice_servers }) = (new_token, &answer) {
                            self.token = token;
                            self.state.set_token(*expires_at, ice_servers.clone());
                            self.publish();
                            self.emit(RoomEvent::TokenRenewed { expires_at: *expires_at });
                        }
                        Ok(answer)
                    }
                    Outcome::Error(body) => Err(ClientError::Server(body)),
                };
                // The caller may have timed out and gone; nothing to tell it then.
                let _ = reply.send(result);
            }
        }
    }

    async fn reconnect(&mut self, mut last_error: ClientError) -> Reconnect {
        let policy = self.options.reconnect.clone();
        for attempt in 1..=policy.attempts {
            let wait = tokio::time::sleep(policy.backoff.delay(attempt));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    command = self.commands.recv(), if self.commands_open => {
                        if self.on_command_while_away(command) {
                            return Reconnect::Left;
                        }
                    }
                }
            }
            self.emit(RoomEvent::Reconnecting { attempt });
            let resume = JoinRequest {
                resume: Some(Resume {
                    participant_id: self.state.snapshot().local.id.clone(),
                    resume_token: self.resume_token.clone(),
                    last_seq: self.last_seq,
                }),
                ..self.join_request()
            };
            let ids = (self.next_request_id(), self.next_request_id());
            let try_once = attempt_once(self.url.clone(), resume, self.join_request(), ids, policy.timeout_per_attempt);
            tokio::pin!(try_once);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut try_once => break outcome,
                    command = self.commands.recv(), if self.commands_open => {
                        if self.on_command_while_away(command) {
                            return Reconnect::Left;
                        }
                    }
                }
            };
            match outcome.and_then(|a| self.adopt(a)) {
                Ok((conn, early)) => return Reconnect::Back { conn: Box::new(conn), early },
                Err(error) if !error.is_transient() => {
                    tracing::warn!(%error, attempt, "reconnection refused");
                    return Reconnect::GaveUp(error);
                }
                Err(error) => {
                    tracing::info!(%error, attempt, "reconnection attempt failed");
                    last_error = error;
                }
            }
        }
        Reconnect::GaveUp(last_error)
    }

    /// Handles a command while there is no connection. Returns true when the engine
    /// should stop reconnecting and finish as left.
    fn on_command_while_away(&mut self, command: Option<Command>) -> bool {
        match command {
            Some(Command::Request { request, reply }) => {
                // A renewed token is what the next attempt must join with: the one it
                // replaces may run out before the connection is back.
                if let Request::UpdateToken { token } = &request {
                    self.token = token.clone();
                }
                self.queued.push((request, reply));
                false
            }
            Some(Command::Leave { done }) => {
                self.leave_waiters.push(done);
                true
            }
            None => {
                self.commands_open = false;
                true
            }
        }
    }

    /// Takes over the state from a successful attempt.
    fn adopt(&mut self, attempt: Attempt) -> Result<(Connection, Vec<(u64, Event)>)> {
        let Attempt { conn, reply, early } = attempt;
        let catch_up = match reply {
            Reply::Resumed { participant_id, replayed } => {
                if participant_id != self.state.snapshot().local.id {
                    return Err(ClientError::Protocol {
                        detail: format!("resumed as {participant_id}, not as ourselves"),
                    });
                }
                tracing::info!(replayed, "resumed");
                None
            }
            Reply::Joined(join) => {
                let (snapshot, resume_token) = RoomSnapshot::from_join(*join);
                tracing::info!(participant = %snapshot.local.id, "could not resume; joined afresh");
                self.resume_token = resume_token;
                // A new participant's events are numbered from the start again.
                self.last_seq = 0;
                Some(self.state.replace(snapshot))
            }
            other => return Err(ClientError::Protocol { detail: format!("unexpected answer to a join: {other:?}") }),
        };
        self.set_state(ConnectionState::Connected);
        self.publish();
        let _ = self.media.send(MediaSignal::Reconnected { resumed: catch_up.is_none() });
        self.emit(RoomEvent::Reconnected { resumed: catch_up.is_none() });
        for event in catch_up.into_iter().flatten() {
            self.emit(event);
        }
        Ok((conn, early))
    }

    /// Ends as asked by the app: synthesizes what the server would have said.
    fn finish_left(&mut self) -> End {
        let reason = DisconnectReason::Left;
        self.fail_pending(true, || ClientError::Disconnected { reason: Some(reason) });
        self.set_state(ConnectionState::Disconnected);
        self.emit(RoomEvent::Disconnected { reason });
        End::Finished
    }

    fn lose(&mut self, error: ClientError) {
        self.fail_pending(true, || ClientError::Disconnected { reason: None });
        self.set_state(ConnectionState::Disconnected);
        self.emit(RoomEvent::ConnectionLost { error });
    }

    /// Fails the requests in flight. Queued (unsent) requests survive a dropped
    /// connection; they are failed too when `and_queued`, i.e. when the room is done.
    fn fail_pending(&mut self, and_queued: bool, error: impl Fn() -> ClientError) {
        for (_, pending) in self.pending.drain() {
            if let Pending::Caller { reply, .. } = pending {
                // A caller that timed out already is not waiting for this.
                let _ = reply.send(Err(error()));
            }
        }
        if and_queued {
            for (_, reply) in self.queued.drain(..) {
                let _ = reply.send(Err(error()));
            }
        }
    }

    fn set_state(&mut self, state: ConnectionState) {
        if let Some(event) = self.state.set_connection_state(state) {
            self.publish();
            self.emit(event);
        }
    }

    fn join_request(&self) -> JoinRequest {
        join_request(&self.token, &self.options)
    }

    fn next_request_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn publish(&self) {
        self.snapshot_tx.send_replace(self.state.snapshot().clone());
    }

    fn emit(&self, event: RoomEvent) {
        tracing::trace!(event = event.name(), "room event");
        // The app may have dropped its receiver; the room keeps working without it.
        let _ = self.events.send(event);
    }
}

/// A fresh join as configured by `options`.
pub(crate) fn join_request(token: &str, options: &RoomOptions) -> JoinRequest {
    JoinRequest {
        token: token.to_owned(),
        room: options.room.clone(),
        protocol: confer_proto::PROTOCOL_VERSION,
        name: options.name.clone(),
        context: options.context.clone(),
        resume: None,
    }
}

/// One reconnection attempt: open a socket, try to resume, and if the server refuses
/// with `resume_failed`, join afresh on the same socket. Bounded by `timeout`.
async fn attempt_once(
    url: Url,
    resume: JoinRequest,
    fresh: JoinRequest,
    (resume_id, fresh_id): (u64, u64),
    timeout: Duration,
) -> Result<Attempt> {
    let attempt = async {
        let mut conn = Connection::open(&url).await?;
        match conn.join(resume_id, resume).await {
            Ok((reply, early)) => return Ok(Attempt { conn, reply, early }),
            Err(ClientError::Server(body)) if body.code == ErrorCode::ResumeFailed => {
                tracing::info!(message = %body.message, "the server cannot resume this participant");
            }
            Err(error) => return Err(error),
        }
        let (reply, early) = conn.join(fresh_id, fresh).await?;
        Ok(Attempt { conn, reply, early })
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| ClientError::Timeout(timeout))?
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
