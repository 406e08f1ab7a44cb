//! The [`Room`] handle: join a room, read its state, act in it.
//!
//! [`Room::connect`] returns once the join succeeded, together with the receiver of
//! [`RoomEvent`]s. The handle is cheap to clone; every clone talks to the same engine
//! task. Dropping the last clone leaves the room (the event receiver then sees the final
//! `Disconnected`).
//!
//! Every request waits at most [`RoomOptions::request_timeout`] for its answer; a refusal
//! by the server comes back as [`ClientError::Server`] with the catalog code to branch on.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use confer_proto::room::RoomInfo;
use confer_proto::signal::{BreakoutAssignment, ParticipantInfo, Reaction, Reply, Request, TrackUpdate};
use confer_proto::track::{SubscriptionOptions, TrackId, TrackKind};
use confer_proto::{Identity, ParticipantId, RoomId, UnixMillis};
use tokio::sync::{mpsc, oneshot, watch};

use crate::connection::Connection;
use crate::endpoint;
use crate::engine::{join_request, Command, Engine, Joined};
use crate::error::{ClientError, Result};
use crate::event::{ConnectionState, RoomEvent};
use crate::media::session::{MediaShared, MediaTask};
use crate::media::{LocalStream, LocalTrack, MediaConfig, MediaStats, TrackLevel, TrackOptions};
use crate::reconnect::ReconnectPolicy;
use crate::renewal::{TokenRenewal, TokenSource};
use crate::state::RoomSnapshot;

/// How to join and stay in a room. Build it from [`RoomOptions::default`] and the
/// `with_*` methods (or by setting fields); new options (media: `force_relay`,
/// `audio_only`, initial devices) will be added without breaking callers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RoomOptions {
    pub reconnect: ReconnectPolicy,
    /// The room the caller means to join. When set, the server refuses a token for
    /// another room with `room_mismatch` instead of silently joining that one.
    pub room: Option<RoomId>,
    /// Display name overriding the one in the token.
    pub name: Option<String>,
    /// App-defined metadata the others see as the participant's `context`.
    pub context: serde_json::Value,
    /// How long a request waits for its answer. The initial connection is bounded by
    /// `reconnect.timeout_per_attempt` instead.
    pub request_timeout: Duration,
    /// The local address media (UDP) binds to; `None` for every interface. For hosts
    /// with several networks, or firewalls that allow one address.
    pub media_ip: Option<IpAddr>,
    /// Send and receive media through the server's TURN relays only, never directly
    /// (to hide this machine's addresses, or where only the relay is allowed out).
    /// Without relays in the join response, media fails with
    /// [`ClientError::NoMediaPath`].
    pub force_relay: bool,
    /// How the join token is renewed before it expires; `None`: it is not, and the
    /// server ends the call when it runs out unless the app calls
    /// [`Room::update_token`].
    pub renewal: Option<TokenRenewal>,
    /// How long to wait in a room's lobby for a moderator (the server turns a knock
    /// away after ten minutes anyway).
    pub lobby_timeout: Duration,
    /// Join with audio only: no video received, none published (a weak link). Switch
    /// with [`Room::set_audio_only`] in the call.
    pub audio_only: bool,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            reconnect: ReconnectPolicy::default(),
            room: None,
            name: None,
            context: serde_json::Value::Null,
            request_timeout: Duration::from_secs(10),
            media_ip: None,
            force_relay: false,
            renewal: None,
            lobby_timeout: Duration::from_secs(11 * 60),
            audio_only: false,
        }
    }
}

impl RoomOptions {
    pub fn with_reconnect(mut self, reconnect: ReconnectPolicy) -> Self {
        self.reconnect = reconnect;
        self
    }

    pub fn with_room(mut self, room: impl Into<RoomId>) -> Self {
        self.room = Some(room.into());
        self
    }

    pub fn with_audio_only(mut self, audio_only: bool) -> Self {
        self.audio_only = audio_only;
        self
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn with_context(mut self, context: serde_json::Value) -> Self {
        self.context = context;
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn with_media_ip(mut self, ip: IpAddr) -> Self {
        self.media_ip = Some(ip);
        self
    }

    pub fn with_force_relay(mut self, force_relay: bool) -> Self {
        self.force_relay = force_relay;
        self
    }

    /// Renews the join token with this refresh token (from `POST /v1/tokens`, an
    /// invite exchange or a refresh) at the room's server, for as long as the call
    /// lasts.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<String>) -> Self {
        self.renewal = Some(TokenRenewal::RefreshToken(refresh_token.into()));
        self
    }

    /// Renews the join token with tokens from the app.
    pub fn with_token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.renewal = Some(TokenRenewal::Source(source));
        self
    }
}

/// A joined room. See the module docs.
#[derive(Clone)]
pub struct Room {
    commands: mpsc::UnboundedSender<Command>,
    snapshot: watch::Receiver<RoomSnapshot>,
    request_timeout: Duration,
    media: Arc<MediaShared>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room").field("local", &self.snapshot.borrow().local.id).finish()
    }
}

/// Sends requests to the engine without keeping the room alive (for background tasks).
#[derive(Clone)]
pub(crate) struct Requester {
    commands: mpsc::WeakUnboundedSender<Command>,
    timeout: Duration,
}

impl Requester {
    pub(crate) async fn request(&self, request: Request) -> Result<Reply> {
        let commands = self.commands.upgrade().ok_or(ClientError::Disconnected { reason: None })?;
        send_request(&commands, request, self.timeout).await
    }
}

async fn send_request(commands: &mpsc::UnboundedSender<Command>, request: Request, timeout: Duration) -> Result<Reply> {
    let (reply, answer) = oneshot::channel();
    commands.send(Command::Request { request, reply }).map_err(|_| ClientError::Disconnected { reason: None })?;
    match tokio::time::timeout(timeout, answer).await {
        Err(_) => Err(ClientError::Timeout(timeout)),
        // The engine ended without answering.
        Ok(Err(_)) => Err(ClientError::Disconnected { reason: None }),
        Ok(Ok(result)) => result,
    }
}

impl Room {
    /// Joins the room that `token` grants, at the server `url` (`http(s)://` or
    /// `ws(s)://`, with or without the `/v1/signal` path).
    ///
    /// Returns once the server answered the join, within
    /// `options.reconnect.timeout_per_attempt`; the initial join is not retried. A
    /// refusal (bad token, room mismatch, room full, ...) is [`ClientError::Server`].
    pub async fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
    ) -> Result<(Room, mpsc::UnboundedReceiver<RoomEvent>)> {
        Self::connect_through_lobby(url, token, options, None).await
    }

    /// [`Room::connect`], for rooms that may have a lobby: when the server puts the
    /// participant in it, `knocking` hears the room's description at once (show
    /// "waiting for the host to let you in"), and this returns when a moderator lets it
    /// in. A knock turned away is [`ClientError::Denied`]; one nobody answers within
    /// `options.lobby_timeout` is [`ClientError::Timeout`].
    pub async fn connect_through_lobby(
        url: &str,
        token: &str,
        options: RoomOptions,
        knocking: Option<oneshot::Sender<RoomInfo>>,
    ) -> Result<(Room, mpsc::UnboundedReceiver<RoomEvent>)> {
        let url = endpoint::signal_url(url)?;
        let timeout = options.reconnect.timeout_per_attempt;
        const JOIN_ID: u64 = 1;
        let join = join_request(token, &options);
        let first = async {
            let mut conn = Connection::open(&url).await?;
            let (reply, early) = conn.join(JOIN_ID, join).await?;
            Ok::<_, ClientError>((conn, reply, early))
        };
        let (mut conn, reply, mut early) =
            tokio::time::timeout(timeout, first).await.map_err(|_| ClientError::Timeout(timeout))??;
        let join = match reply {
            Reply::Joined(join) => join,
            Reply::Knocking { participant_id, room, .. } => {
                tracing::info!(room = %room.id, participant = %participant_id, "waiting in the lobby");
                if let Some(knocking) = knocking {
                    let _ = knocking.send(room);
                }
                let wait = options.lobby_timeout;
                let admitted = tokio::time::timeout(wait, conn.wait_in_lobby(&mut early)).await;
                match admitted {
                    Ok(result) => result?,
                    Err(_) => {
                        conn.close().await;
                        return Err(ClientError::Timeout(wait));
                    }
                }
            }
            other => {
                return Err(ClientError::Protocol { detail: format!("unexpected answer to a join: {other:?}") });
            }
        };
        let (snapshot, resume_token) = RoomSnapshot::from_join(*join);
        tracing::info!(room = %snapshot.room.id, participant = %snapshot.local.id, "joined");

        let request_timeout = options.request_timeout;
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (snapshot_tx, snapshot_rx) = watch::channel(snapshot.clone());
        let config =
            MediaConfig { bind_ip: options.media_ip, force_relay: options.force_relay, room: snapshot_rx.clone() };
        let renewal = options.renewal.clone().map(|r| r.source(&url)).transpose()?;
        let audio_only = options.audio_only;
        let joined = Joined { url, token: token.to_owned(), options, snapshot, resume_token, last_request_id: JOIN_ID };
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let requester = Requester { commands: commands_tx.downgrade(), timeout: request_timeout };
        let media = MediaShared::new(config.clone());
        media.audio_only.store(audio_only, std::sync::atomic::Ordering::Relaxed);
        if let Some(source) = renewal {
            tokio::spawn(crate::renewal::run(source, requester.clone(), snapshot_rx.clone(), events_tx.clone()));
        }
        let task = MediaTask::new(media.clone(), config, requester, snapshot_rx.clone(), events_tx.clone());
        tokio::spawn(task.run(media_rx));
        let engine = Engine::new(joined, commands_rx, snapshot_tx, events_tx, media_tx, media.wanted.clone());
        tokio::spawn(engine.run(conn, early));
        let room = Room { commands: commands_tx, snapshot: snapshot_rx, request_timeout, media };
        Ok((room, events_rx))
    }

    /// The room as of the latest event.
    pub fn state(&self) -> RoomSnapshot {
        self.snapshot.borrow().clone()
    }

    pub fn connection_state(&self) -> ConnectionState {
        self.snapshot.borrow().connection_state
    }

    /// The local participant.
    pub fn local_participant(&self) -> ParticipantInfo {
        self.snapshot.borrow().local.clone()
    }

    /// A participant, local or remote, by identity.
    pub fn participant_by_identity(&self, identity: &Identity) -> Option<ParticipantInfo> {
        self.snapshot.borrow().participant_by_identity(identity).cloned()
    }

    /// A participant, local or remote, by id.
    pub fn participant(&self, id: &ParticipantId) -> Option<ParticipantInfo> {
        self.snapshot.borrow().participant(id).cloned()
    }

    /// Sends `text` to everyone (`to` = `None`) or to the listed participants. Returns
    /// the server's message id. Needs the `data` grant.
    pub async fn send_message(&self, text: impl Into<String>, to: Option<Vec<ParticipantId>>) -> Result<String> {
        match self.request(Request::SendMessage { text: text.into(), to }).await? {
            Reply::MessageSent { message_id } => Ok(message_id),
            other => Err(unexpected("send_message", other)),
        }
    }

    /// Removes a participant from the session. Needs moderator rights.
    pub async fn kick(&self, participant_id: &ParticipantId) -> Result<()> {
        match self.request(Request::Kick { participant_id: participant_id.clone() }).await? {
            Reply::Ok => Ok(()),
            other => Err(unexpected("kick", other)),
        }
    }

    /// Replaces the join token (same room and identity) before it expires. Returns the
    /// new expiry; later reconnections use the new token.
    pub async fn update_token(&self, token: impl Into<String>) -> Result<UnixMillis> {
        match self.request(Request::UpdateToken { token: token.into() }).await? {
            Reply::TokenUpdated { expires_at, .. } => Ok(expires_at),
            other => Err(unexpected("update_token", other)),
        }
    }

    /// Leaves the room and waits until the connection is closed (at most the request
    /// timeout, then the socket is dropped). Idempotent: leaving a room that is gone
    /// already succeeds.
    pub async fn disconnect(&self) -> Result<()> {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Leave { done }).is_err() {
            return Ok(());
        }
        // The engine bounds the leave by the request timeout itself; the margin covers
        // the close handshake after it.
        let limit = self.request_timeout + Duration::from_secs(2);
        match tokio::time::timeout(limit, finished).await {
            Err(_) => Err(ClientError::Timeout(limit)),
            // The engine drops `done` when it has finished: that is the signal.
            Ok(_) => Ok(()),
        }
    }

    async fn request(&self, request: Request) -> Result<Reply> {
        send_request(&self.commands, request, self.request_timeout).await
    }

    fn requester(&self) -> Requester {
        Requester { commands: self.commands.downgrade(), timeout: self.request_timeout }
    }

    /// Publishes a stream of `tracks` under `key` (unique among this participant's
    /// streams) and returns it; write encoded frames to its tracks. The first publish
    /// opens the publisher connection. The stream stays published through network
    /// trouble (see [`crate::media::session`]) until [`Room::unpublish`]. While audio
    /// only, video tracks may only be published muted.
    pub async fn publish(&self, key: &str, tracks: Vec<TrackOptions>) -> Result<LocalStream> {
        // A muted camera sends nothing: it is there for when video comes back.
        if self.is_audio_only() && tracks.iter().any(|t| t.kind == TrackKind::Video && !t.muted) {
            return Err(ClientError::Media { detail: "audio only: no video is published; switch it off first".into() });
        }
        let requester = self.requester();
        self.media.publisher.lock().await.publish(&requester, key, tracks).await
    }

    /// The streams this participant publishes.
    pub async fn local_streams(&self) -> Vec<LocalStream> {
        self.media.publisher.lock().await.streams().to_vec()
    }

    pub async fn unpublish(&self, key: &str) -> Result<()> {
        self.request_ok("unpublish", Request::Unpublish { key: key.to_owned() }).await?;
        self.media.publisher.lock().await.forget(key);
        Ok(())
    }

    /// Mutes (the others get `track_disabled`) or unmutes one of the local tracks.
    pub async fn set_track_muted(&self, track: &LocalTrack, muted: bool) -> Result<()> {
        let publisher = self.media.publisher.lock().await;
        let (Some(track_id), Some(stream)) =
            (track.id(), publisher.streams().iter().find(|s| s.tracks().iter().any(|t| t.id() == track.id())))
        else {
            return Err(ClientError::Media { detail: "the track is not published at the moment".into() });
        };
        let key = stream.key().to_owned();
        drop(publisher);
        let tracks = vec![TrackUpdate { track_id, muted }];
        self.request_ok("update_stream", Request::UpdateStream { key, tracks }).await?;
        track.set_muted(muted);
        Ok(())
    }

    /// Per-stream WebRTC statistics of both media connections (packets, bytes, loss,
    /// jitter, retransmission and keyframe requests), named by track, and round-trip
    /// times.
    pub async fn media_stats(&self) -> MediaStats {
        self.media.stats().await
    }

    /// Audio levels of local and remote audio tracks, as of now; poll at the rate of
    /// the meters that show them (about 10 Hz).
    pub fn audio_levels(&self) -> Vec<TrackLevel> {
        self.media.levels.snapshot()
    }

    /// Starts receiving a stream; its tracks arrive as [`RoomEvent::TrackSubscribed`].
    pub async fn subscribe(
        &self,
        participant_id: &ParticipantId,
        key: &str,
        options: SubscriptionOptions,
    ) -> Result<()> {
        let request = Request::Subscribe {
            participant_id: participant_id.clone(),
            key: key.to_owned(),
            options: self.media.receivable(options),
        };
        self.request_ok("subscribe", request).await?;
        self.media.want(participant_id, key, Some(options));
        Ok(())
    }

    /// Changes what is received of a subscribed stream: audio, video, quality.
    pub async fn update_subscription(
        &self,
        participant_id: &ParticipantId,
        key: &str,
        options: SubscriptionOptions,
    ) -> Result<()> {
        let request = Request::UpdateSubscription {
            participant_id: participant_id.clone(),
            key: key.to_owned(),
            options: self.media.receivable(options),
        };
        self.request_ok("update_subscription", request).await?;
        self.media.want(participant_id, key, Some(options));
        Ok(())
    }

    /// Whether the room is received and sent as audio only.
    pub fn is_audio_only(&self) -> bool {
        self.media.is_audio_only()
    }

    /// Switches to audio only (no video received, none published: the app stops its
    /// camera first) or back. Every subscription is changed at once, without
    /// renegotiation; back from audio only, each gets the video its options asked for.
    pub async fn set_audio_only(&self, audio_only: bool) -> Result<()> {
        self.media.audio_only.store(audio_only, std::sync::atomic::Ordering::Relaxed);
        let wanted = self.media.wanted.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for w in wanted {
            let request = Request::UpdateSubscription {
                participant_id: w.publisher.clone(),
                key: w.key.clone(),
                options: self.media.receivable(w.options),
            };
            match self.request_ok("update_subscription", request).await {
                // Gone meanwhile: the SDK forgets it when the server says so.
                Err(ClientError::Server(body)) if body.code == confer_proto::ErrorCode::SubscriptionNotFound => {}
                other => other?,
            }
        }
        Ok(())
    }

    pub async fn unsubscribe(&self, participant_id: &ParticipantId, key: &str) -> Result<()> {
        self.media.want(participant_id, key, None);
        let request = Request::Unsubscribe { participant_id: participant_id.clone(), key: key.to_owned() };
        self.request_ok("unsubscribe", request).await
    }

    /// Stops (or resumes) a track's forwarding to everyone. Needs moderator rights.
    pub async fn censor(&self, track_id: &TrackId, censored: bool) -> Result<()> {
        let request = if censored {
            Request::Censor { track_id: track_id.clone() }
        } else {
            Request::Uncensor { track_id: track_id.clone() }
        };
        self.request_ok("censor", request).await
    }

    /// Asks for `network_metrics` events about these participants (empty: stop).
    pub async fn set_network_metrics(&self, participants: Vec<ParticipantId>) -> Result<()> {
        self.request_ok("set_network_metrics", Request::SetNetworkMetrics { participants }).await
    }

    /// Lets someone waiting in the lobby in, or everyone waiting (`None`). Moderators.
    pub async fn admit(&self, participant_id: Option<&ParticipantId>) -> Result<()> {
        self.request_ok("admit", Request::Admit { participant_id: participant_id.cloned() }).await
    }

    /// Turns someone waiting in the lobby away, or everyone waiting (`None`). Moderators.
    pub async fn deny(&self, participant_id: Option<&ParticipantId>) -> Result<()> {
        self.request_ok("deny", Request::Deny { participant_id: participant_id.cloned() }).await
    }

    /// Locks the meeting (nobody new joins or knocks) or unlocks it. Moderators.
    pub async fn set_locked(&self, locked: bool) -> Result<()> {
        self.request_ok("set_locked", Request::SetLocked { locked }).await
    }

    /// Ends the meeting for everyone. Moderators.
    pub async fn end_for_all(&self) -> Result<()> {
        self.request_ok("end_session", Request::EndSession).await
    }

    /// Mutes someone's microphone (`Audio`) or stops their camera (`Video`). Moderators.
    pub async fn mute_participant(&self, participant_id: &ParticipantId, kind: TrackKind) -> Result<()> {
        let request = Request::MuteParticipant { participant_id: participant_id.clone(), kind };
        self.request_ok("mute_participant", request).await
    }

    /// Mutes every microphone but the moderators'. Moderators.
    pub async fn mute_all(&self) -> Result<()> {
        self.request_ok("mute_all", Request::MuteAll).await
    }

    /// Asks someone to unmute (`Audio`) or to start their camera (`Video`). Moderators.
    pub async fn request_unmute(&self, participant_id: &ParticipantId, kind: TrackKind) -> Result<()> {
        let request = Request::RequestUnmute { participant_id: participant_id.clone(), kind };
        self.request_ok("request_unmute", request).await
    }

    /// Makes someone a co-host (`true`) or takes it back. The room's managers.
    pub async fn set_co_host(&self, participant_id: &ParticipantId, co_host: bool) -> Result<()> {
        let participant_id = participant_id.clone();
        let request = if co_host { Request::Promote { participant_id } } else { Request::Demote { participant_id } };
        self.request_ok("promote", request).await
    }

    pub async fn raise_hand(&self) -> Result<()> {
        self.request_ok("raise_hand", Request::RaiseHand).await
    }

    /// Lowers your hand (`None`), or someone else's (moderators).
    pub async fn lower_hand(&self, participant_id: Option<&ParticipantId>) -> Result<()> {
        self.request_ok("lower_hand", Request::LowerHand { participant_id: participant_id.cloned() }).await
    }

    pub async fn react(&self, reaction: Reaction) -> Result<()> {
        self.request_ok("react", Request::React { reaction }).await
    }

    /// Sets up breakout rooms, one per name (moderators). With `allow_choice`, people
    /// may pick their room ([`Room::join_breakout`]).
    pub async fn create_breakouts(&self, names: Vec<String>, allow_choice: bool) -> Result<()> {
        self.request_ok("create_breakouts", Request::CreateBreakouts { rooms: names, allow_choice }).await
    }

    /// Who goes where (moderators): these assignments, or with `evenly` everyone but
    /// the moderators spread at random.
    pub async fn assign_breakouts(&self, assignments: Vec<BreakoutAssignment>, evenly: bool) -> Result<()> {
        self.request_ok("assign_breakouts", Request::AssignBreakouts { assignments, evenly }).await
    }

    /// Opens the breakout rooms: the people assigned move (moderators).
    pub async fn open_breakouts(&self) -> Result<()> {
        self.request_ok("open_breakouts", Request::OpenBreakouts).await
    }

    /// Closes them after a countdown (default 10 s): everyone comes back (moderators).
    pub async fn close_breakouts(&self, countdown_secs: Option<u32>) -> Result<()> {
        self.request_ok("close_breakouts", Request::CloseBreakouts { countdown_secs }).await
    }

    /// Goes to breakout room `room`, or back to the main room (`None`), when choosing
    /// is allowed (or as a moderator). The move arrives as a `moved` event.
    pub async fn join_breakout(&self, room: Option<u32>) -> Result<()> {
        self.request_ok("join_breakout", Request::JoinBreakout { room }).await
    }

    /// Moves someone to breakout room `room`, or back to the main room (moderators).
    pub async fn move_participant(&self, participant_id: &ParticipantId, room: Option<u32>) -> Result<()> {
        let request = Request::MoveParticipant { participant_id: participant_id.clone(), room };
        self.request_ok("move_participant", request).await
    }

    /// A message to everyone in every room of the meeting (moderators).
    pub async fn message_breakouts(&self, text: impl Into<String>) -> Result<String> {
        match self.request(Request::MessageBreakouts { text: text.into() }).await? {
            Reply::MessageSent { message_id } => Ok(message_id),
            other => Err(unexpected("message_breakouts", other)),
        }
    }

    async fn request_ok(&self, name: &str, request: Request) -> Result<()> {
        match self.request(request).await? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(name, other)),
        }
    }
}

fn unexpected(request: &str, reply: Reply) -> ClientError {
    ClientError::Protocol { detail: format!("unexpected answer to {request}: {reply:?}") }
}
