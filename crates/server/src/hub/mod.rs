//! Live sessions: who is in which room right now, and the events between them.
//!
//! The hub is synchronous and owns no sockets, tasks or clocks: connection tasks and
//! the HTTP handlers call into it with the current time, and it answers by queueing
//! frames on each participant's [`Link`]. One mutex guards all sessions; every call
//! does a bounded amount of work and never awaits while holding it, so the order in
//! which frames are queued is the order in which things happened. In particular a
//! participant's `joined` response is queued before any event addressed to it.

mod breakouts;
mod media;
mod moderation;
mod participant;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use confer_proto::room::Room;
use confer_proto::session::SessionInfo;
use confer_proto::signal::{
    DisconnectReason, Event, IceServer, JoinRequest, JoinSnapshot, LeaveReason, Outcome, ParticipantInfo, RaisedHand,
    Reply, ServerMessage, SignalLimits,
};
use confer_proto::track::TrackSource;
use confer_proto::{ErrorCode, Identity, ParticipantId, RoomId, UnixMillis};

use moderation::Waiting;
use participant::{frame, Participant};
pub use participant::{Link, Outbound, Queued};

use crate::auth::{random_secret, JoinToken};
use crate::error::{ApiError, ApiResult};
use crate::sfu::{Command, RoomMedia, SfuHandle};

/// The hub's timers and bounds.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub limits: SignalLimits,
    /// Events kept per participant for replay on resume.
    pub backlog: usize,
    /// TURN relays: each participant gets credentials that expire with its join token.
    pub turn: Option<crate::turn::TurnConfig>,
    /// Where room and participant events go for webhooks.
    pub webhooks: crate::webhook::Sink,
}

/// The current time, as the hub needs it.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub unix_ms: UnixMillis,
}

impl Now {
    pub fn system() -> Self {
        let unix_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self { mono: Instant::now(), unix_ms }
    }

    pub fn unix_secs(&self) -> u64 {
        self.unix_ms / 1000
    }
}

struct Session {
    room: Room,
    started_at: UnixMillis,
    /// In join order.
    participants: Vec<Participant>,
    /// Sources a moderator stopped, by identity: a new publication of one starts stopped.
    censored: HashSet<(Identity, TrackSource)>,
    /// The media worker the room lives on.
    sfu: RoomMedia,
    /// Waiting in the lobby, first knock first.
    lobby: Vec<Waiting>,
    /// Locked by a moderator: nobody new joins or knocks.
    locked: bool,
    /// Raised hands, first raised first.
    hands: Vec<RaisedHand>,
    /// A breakout room's main room.
    parent: Option<RoomId>,
    /// The main room's breakout rooms, once set up.
    breakouts: Option<breakouts::Plan>,
    /// Webhooks: told of joins, leaves and streams as the participants are.
    hooks: crate::webhook::Sink,
    /// Whether `room_started` went out (with the first participant in).
    started_hook: bool,
}

/// A session that ends (its last participant gone, ended, or the server stopping)
/// is `room_finished` to the webhooks.
impl Drop for Session {
    fn drop(&mut self) {
        if self.started_hook {
            self.hooks.send("room_finished", &self.room.id, self.hook_fields());
        }
    }
}

impl Session {
    fn new(
        room: Room,
        started_at: UnixMillis,
        sfu: RoomMedia,
        parent: Option<RoomId>,
        hooks: crate::webhook::Sink,
    ) -> Self {
        Session {
            hooks,
            started_hook: false,
            room,
            started_at,
            participants: Vec::new(),
            censored: HashSet::new(),
            sfu,
            lobby: Vec::new(),
            locked: false,
            hands: Vec::new(),
            parent,
            breakouts: None,
        }
    }

    /// The meeting's main room: this one, or the one this breakout room belongs to.
    fn main_room(&self) -> &RoomId {
        self.parent.as_ref().unwrap_or(&self.room.id)
    }

    fn position(&self, id: &ParticipantId) -> Option<usize> {
        self.participants.iter().position(|p| &p.info.id == id)
    }

    fn get_mut(&mut self, id: &ParticipantId) -> ApiResult<&mut Participant> {
        if let Some(p) = self.participants.iter_mut().find(|p| &p.info.id == id) {
            return Ok(p);
        }
        if self.lobby.iter().any(|w| &w.p.info.id == id) {
            return Err(ErrorCode::NotAdmitted.into());
        }
        Err(ErrorCode::ParticipantNotFound.into())
    }

    /// Nobody in the meeting and nobody waiting: the session can go.
    fn is_empty(&self) -> bool {
        self.participants.is_empty() && self.lobby.is_empty()
    }

    /// The room state as `participant` is to see it at its join (or admission).
    fn snapshot(&self, me: &Participant, ice_servers: Vec<IceServer>, limits: &SignalLimits) -> JoinSnapshot {
        JoinSnapshot {
            room: self.room.info(),
            participant: me.info.clone(),
            participants: self
                .participants
                .iter()
                .filter(|p| p.info.id != me.info.id)
                .map(|p| p.info.clone())
                .collect(),
            resume_token: me.resume_token.clone(),
            token_expires_at: me.token_expires_at.saturating_mul(1000),
            ice_servers,
            limits: limits.clone(),
            locked: self.locked,
            hands: self.hands.clone(),
            knocks: if me.can_moderate() { self.lobby.iter().map(|w| w.knock.clone()).collect() } else { Vec::new() },
            breakouts: None,
            main_room: self.parent.clone(),
        }
    }

    /// Queues an event for every moderator.
    fn tell_moderators(&mut self, event: &Event, now: Instant) {
        for p in self.participants.iter_mut().filter(|p| p.can_moderate()) {
            p.push(event.clone(), now);
        }
    }

    fn broadcast(&mut self, event: &Event, except: Option<&ParticipantId>, now: Instant) {
        self.webhook(event);
        for p in self.participants.iter_mut().filter(|p| Some(&p.info.id) != except) {
            p.push(event.clone(), now);
        }
    }

    /// What `room_started` and `room_finished` say of the session.
    fn hook_fields(&self) -> serde_json::Value {
        serde_json::json!({ "started_at": self.started_at, "main_room": self.parent })
    }

    /// Passes the events a backend follows on to the webhooks.
    fn webhook(&mut self, event: &Event) {
        use serde_json::json;
        let room = &self.room.id;
        match event {
            Event::ParticipantJoined { participant } => {
                if !self.started_hook {
                    self.started_hook = true;
                    self.hooks.send("room_started", room, self.hook_fields());
                }
                let p = json!({ "id": participant.id, "identity": participant.identity, "name": participant.name });
                self.hooks.send("participant_joined", room, json!({ "participant": p }));
            }
            Event::ParticipantLeft { participant_id, identity, reason } => {
                let p = json!({ "id": participant_id, "identity": identity });
                self.hooks.send("participant_left", room, json!({ "participant": p, "reason": reason }));
            }
            Event::StreamPublished { participant_id, stream } => {
                let fields = json!({ "participant": { "id": participant_id }, "stream": stream });
                self.hooks.send("track_published", room, fields);
            }
            Event::StreamUnpublished { participant_id, key } => {
                let fields = json!({ "participant": { "id": participant_id }, "stream": { "key": key } });
                self.hooks.send("track_unpublished", room, fields);
            }
            _ => {}
        }
    }

    /// Takes a participant out: everyone (it included) hears `participant_leaving`, it
    /// gets `disconnected` and its connection closes, the rest hear `participant_left`.
    fn remove(&mut self, idx: usize, reason: Option<LeaveReason>, disconnect: DisconnectReason, now: Instant) {
        let left = self.take_out(idx, reason, now);
        let Some(mut gone) = left.1 else { return };
        gone.push(Event::Disconnected { reason: disconnect }, now);
        gone.send(Outbound::Close, now);
        let (id, identity) = left.0;
        let left = Event::ParticipantLeft { participant_id: id, identity, reason };
        self.broadcast(&left, None, now);
    }

    /// The first steps of a removal: `participant_leaving` to everyone (it included),
    /// its streams ended and its media gone. Returns who it was and the participant, for
    /// the caller to finish with (a `disconnected`, or a move), and to send
    /// `participant_left` after.
    #[allow(clippy::type_complexity)]
    fn take_out(
        &mut self,
        idx: usize,
        reason: Option<LeaveReason>,
        now: Instant,
    ) -> ((ParticipantId, Identity), Option<Participant>) {
        let (id, identity) = {
            let p = &self.participants[idx];
            (p.info.id.clone(), p.info.identity.clone())
        };
        tracing::info!(room = %self.room.id, participant = %id, %identity, ?reason, "participant leaving");
        let leaving = Event::ParticipantLeaving { participant_id: id.clone(), identity: identity.clone(), reason };
        self.broadcast(&leaving, None, now);
        let keys: Vec<String> = self.participants[idx].info.streams.iter().map(|s| s.key.clone()).collect();
        for key in keys {
            self.end_stream(idx, &key, None, now);
        }
        self.sfu.send(Command::Remove { participant: id.clone() });
        self.hands.retain(|h| h.participant_id != id);
        let gone = self.participants.remove(idx);
        ((id, identity), Some(gone))
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            room: self.room.id.clone(),
            started_at: self.started_at,
            participants: self.participants.iter().map(|p| p.info.clone()).collect(),
        }
    }
}

/// Counts of what is live.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub rooms: usize,
    pub participants: usize,
    pub tracks: usize,
}

/// The answer to a successful join or resume.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The room it joined. It may move (breakout rooms): `current` says where it is.
    pub room: RoomId,
    pub participant: ParticipantId,
    pub location: Location,
}

/// Which room of the meeting a participant is in now; the hub moves it.
pub type Location = Arc<Mutex<RoomId>>;

impl Admitted {
    /// As joined, but in the room it is in now.
    pub fn current(&self) -> Admitted {
        let room = self.location.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Admitted { room, ..self.clone() }
    }
}

pub struct Hub {
    config: HubConfig,
    sessions: Mutex<HashMap<RoomId, Session>>,
    sfu: SfuHandle,
    /// Set by [`Hub::shutdown`], under the sessions' lock: no session starts after.
    stopped: std::sync::atomic::AtomicBool,
}

impl Hub {
    pub fn new(config: HubConfig, sfu: SfuHandle) -> Arc<Self> {
        Arc::new(Self { config, sessions: Mutex::new(HashMap::new()), sfu, stopped: Default::default() })
    }

    pub fn limits(&self) -> &SignalLimits {
        &self.config.limits
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RoomId, Session>> {
        // Hub methods leave the map consistent at every point where they could panic.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a participant, fresh or resumed. `room` is the stored room the token names,
    /// already checked to exist. Queues the response (with id `request_id`) on `link`.
    pub fn join(
        &self,
        room: Room,
        token: JoinToken,
        req: &JoinRequest,
        request_id: u64,
        link: Link,
        now: Now,
    ) -> ApiResult<Admitted> {
        if let Some(resume) = &req.resume {
            return self.resume(&token, resume, request_id, link, now);
        }
        if token.grants.guest && !room.policy.allow_guests {
            return Err(ApiError::new(ErrorCode::DisabledByPolicy, "this room does not admit guests"));
        }
        if !room.members.is_empty() && !token.grants.guest && !room.members.contains(&token.identity) {
            return Err(ErrorCode::NotAMember.into());
        }
        let mut sessions = self.lock();
        // A client told of the shutdown may come straight back before the listener
        // has closed: it must try again, and find the next server.
        if self.stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ApiError::new(ErrorCode::Unavailable, "the server is shutting down; try again"));
        }
        let session = sessions.entry(room.id.clone()).or_insert_with(|| {
            Session::new(room.clone(), now.unix_ms, self.sfu.place(), None, self.config.webhooks.clone())
        });
        // The stored room may be newer than the session's copy.
        if room.version > session.room.version {
            session.room = room;
        }
        let role = Participant::role_for(&token.identity, &token.grants, &session.room.managers);
        if session.locked && !role.moderates() {
            return Err(ApiError::new(ErrorCode::RoomLocked, "the meeting is locked; ask the host to unlock it"));
        }
        let replaced = session.participants.iter().position(|p| p.info.identity == token.identity);
        let others = session.participants.len() - usize::from(replaced.is_some());
        if let Some(max) = session.room.policy.max_participants {
            if others >= max as usize {
                if session.is_empty() {
                    sessions.remove(&token.room);
                }
                return Err(ErrorCode::RoomFull.into());
            }
        }
        if let Some(idx) = replaced {
            session.remove(idx, Some(LeaveReason::Replaced), DisconnectReason::Replaced, now.mono);
        }
        session.end_knock_of(&token.identity, now);

        let name = req.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| token.name.clone());
        let info = ParticipantInfo {
            id: ParticipantId(format!("PA_{}", random_secret(9))),
            identity: token.identity.clone(),
            name,
            context: req.context.clone(),
            role,
            can_receive_messages: token.grants.data,
            joined_at: now.unix_ms,
            streams: Vec::new(),
        };
        let guest = token.grants.guest;
        let ice_servers = self.ice_servers(&token);
        let mut participant = Participant::new(
            info.clone(),
            token.grants,
            token.expires_at,
            random_secret(24),
            link,
            self.config.backlog,
        );
        participant.location = Arc::new(Mutex::new(session.room.id.clone()));
        let location = participant.location.clone();
        if session.room.policy.lobby && !role.moderates() {
            session.knock(participant, guest, request_id, &self.config.limits, now);
            return Ok(Admitted { room: session.room.id.clone(), participant: info.id, location });
        }
        let mut snapshot = session.snapshot(&participant, ice_servers, &self.config.limits);
        snapshot.breakouts = session.breakouts.as_ref().map(|b| b.info.clone());
        participant.send(response(request_id, Reply::Joined(Box::new(snapshot))), now.mono);
        tracing::info!(room = %session.room.id, participant = %info.id, identity = %info.identity, "participant joined");
        session.broadcast(&Event::ParticipantJoined { participant: info.clone() }, None, now.mono);
        session.participants.push(participant);
        Ok(Admitted { room: session.room.id.clone(), participant: info.id, location })
    }

    fn resume(
        &self,
        token: &JoinToken,
        resume: &confer_proto::signal::Resume,
        request_id: u64,
        link: Link,
        now: Now,
    ) -> ApiResult<Admitted> {
        let failed = |why: &str| ApiError::new(ErrorCode::ResumeFailed, format!("cannot resume: {why}"));
        let mut sessions = self.lock();
        // The participant may be in one of the meeting's breakout rooms by now.
        let holds = |s: &Session| {
            (s.room.id == token.room || s.parent.as_ref() == Some(&token.room))
                && (s.position(&resume.participant_id).is_some() || s.knock_index(&resume.participant_id).is_some())
        };
        let Some(at) = sessions.values().find(|s| holds(s)).map(|s| s.room.id.clone()) else {
            let why = if sessions.contains_key(&token.room) { "participant is gone" } else { "no live session" };
            return Err(failed(why));
        };
        let Some(session) = sessions.get_mut(&at) else { return Err(failed("no live session")) };
        let managers = session.room.managers.clone();
        let p = match session.lobby.iter_mut().find(|w| w.p.info.id == resume.participant_id) {
            Some(waiting) => &mut waiting.p,
            None => session.get_mut(&resume.participant_id).map_err(|_| failed("participant is gone"))?,
        };
        let token_matches: bool =
            subtle::ConstantTimeEq::ct_eq(p.resume_token.as_bytes(), resume.resume_token.as_bytes()).into();
        if p.info.identity != token.identity || !token_matches {
            return Err(failed("resume token does not match"));
        }
        let replay = p.replay_after(resume.last_seq).ok_or_else(|| failed("missed events are no longer kept"))?;
        p.detach(now.mono);
        p.link = Some(link);
        p.detached_at = None;
        p.set_token(token.grants.clone(), token.expires_at, &managers);
        let reply = Reply::Resumed { participant_id: p.info.id.clone(), replayed: replay.len() as u64 };
        p.send(response(request_id, reply), now.mono);
        for text in replay {
            p.send(Outbound::Frame(text), now.mono);
        }
        tracing::info!(room = %token.room, participant = %p.info.id, after_seq = resume.last_seq, "participant resumed");
        Ok(Admitted { room: token.room.clone(), participant: p.info.id.clone(), location: p.location.clone() })
    }

    /// The connection `conn_id` of this participant dropped; keep the participant for the
    /// grace period so that it can resume.
    pub fn detach(&self, room: &RoomId, id: &ParticipantId, conn_id: u64, now: Now) {
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(room) else { return };
        let p = match session.lobby.iter_mut().find(|w| &w.p.info.id == id) {
            Some(waiting) => &mut waiting.p,
            None => match session.get_mut(id) {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        if p.link.as_ref().is_some_and(|l| l.conn_id == conn_id) {
            tracing::info!(%room, participant = %id, "connection dropped; participant may resume");
            p.detach(now.mono);
        }
    }

    /// The participant leaves for good, of its own accord.
    pub fn leave(&self, room: &RoomId, id: &ParticipantId, now: Now) {
        self.remove(room, id, DisconnectReason::Left, now);
    }

    /// Takes the participant out of the session; the others see a plain leave.
    pub fn remove(&self, room: &RoomId, id: &ParticipantId, disconnect: DisconnectReason, now: Now) {
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(room) else { return };
        if let Some(idx) = session.position(id) {
            session.remove(idx, None, disconnect, now.mono);
        } else {
            session.end_knock(id, confer_proto::signal::KnockOutcome::Left, None, now);
        }
        drop_if_empty(&mut sessions, room);
    }

    /// `by` (a participant, or `None` for the room API) removes `target` from the session.
    /// Returns the identity removed, whose refresh tokens the caller revokes.
    pub fn kick(
        &self,
        room: &RoomId,
        by: Option<&ParticipantId>,
        target: &ParticipantId,
        now: Now,
    ) -> ApiResult<confer_proto::Identity> {
        let mut sessions = self.lock();
        // From the room API, the target may be in any room of the meeting.
        let found = by.is_none().then(|| {
            sessions
                .values()
                .find(|s| (s.room.id == *room || s.parent.as_ref() == Some(room)) && s.position(target).is_some())
                .map(|s| s.room.id.clone())
        });
        let room = &found.flatten().unwrap_or_else(|| room.clone());
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        if let Some(by) = by {
            if !session.get_mut(by)?.can_moderate() {
                return Err(ApiError::new(ErrorCode::PermissionDenied, "only the host and co-hosts can remove people"));
            }
        }
        if by == Some(target) {
            return Err(ApiError::new(ErrorCode::MalformedRequest, "to leave, send leave"));
        }
        let idx = session.position(target).ok_or(ErrorCode::ParticipantNotFound)?;
        let identity = session.participants[idx].info.identity.clone();
        session.remove(idx, Some(LeaveReason::Kicked), DisconnectReason::Kicked, now.mono);
        drop_if_empty(&mut sessions, room);
        Ok(identity)
    }

    /// Sends a text message from `from` to everyone else or to the listed participants.
    pub fn send_message(
        &self,
        room: &RoomId,
        from: &ParticipantId,
        text: String,
        to: Option<Vec<ParticipantId>>,
        now: Now,
    ) -> ApiResult<String> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let sender = session.get_mut(from)?;
        if !sender.grants.data {
            return Err(ApiError::new(ErrorCode::PermissionDenied, "the token has no data grant"));
        }
        let (from_identity, from_name) = (sender.info.identity.clone(), sender.info.name.clone());
        if let Some(to) = &to {
            if to.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::MalformedRequest,
                    "`to` lists nobody; omit it to send to everyone",
                ));
            }
            if let Some(missing) = to.iter().find(|id| session.position(id).is_none()) {
                return Err(ApiError::new(ErrorCode::ParticipantNotFound, format!("no participant {missing}")));
            }
        }
        let message_id = format!("MS_{}", random_secret(9));
        let event = Event::MessageReceived {
            message_id: message_id.clone(),
            from: from.clone(),
            from_identity,
            from_name,
            text,
            to: to.clone(),
            sent_at: now.unix_ms,
        };
        for p in session.participants.iter_mut() {
            let addressed = match &to {
                None => &p.info.id != from,
                Some(to) => to.contains(&p.info.id),
            };
            if addressed && p.info.can_receive_messages {
                p.push(event.clone(), now.mono);
            }
        }
        Ok(message_id)
    }

    /// The TURN relays for the holder of `token`, with credentials valid as long as it.
    pub fn ice_servers(&self, token: &JoinToken) -> Vec<IceServer> {
        self.turn_servers(&token.identity, token.expires_at)
    }

    fn turn_servers(&self, identity: &Identity, expires_at: u64) -> Vec<IceServer> {
        self.config.turn.as_ref().map(|t| t.ice_servers(identity, expires_at)).unwrap_or_default()
    }

    /// Replaces a participant's join token (same room and identity); returns its expiry.
    pub fn update_token(&self, room: &RoomId, id: &ParticipantId, token: JoinToken) -> ApiResult<UnixMillis> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let managers = session.room.managers.clone();
        let p = session.get_mut(id)?;
        if token.room != *room {
            return Err(ErrorCode::RoomMismatch.into());
        }
        if token.identity != p.info.identity {
            return Err(ApiError::new(ErrorCode::PermissionDenied, "the token is for another identity"));
        }
        p.set_token(token.grants, token.expires_at, &managers);
        Ok(token.expires_at.saturating_mul(1000))
    }

    /// Reaps participants whose connection has been gone past the grace period and
    /// those whose token expired. Call about once a second.
    pub fn tick(&self, now: Now) {
        let grace = Duration::from_millis(self.config.limits.resume_grace_ms);
        let mut sessions = self.lock();
        for session in sessions.values_mut() {
            while let Some(idx) = session.participants.iter().position(|p| p.token_expires_at <= now.unix_secs()) {
                session.remove(idx, Some(LeaveReason::TokenExpired), DisconnectReason::TokenExpired, now.mono);
            }
            while let Some(idx) = session
                .participants
                .iter()
                .position(|p| p.detached_at.is_some_and(|t| now.mono.saturating_duration_since(t) >= grace))
            {
                session.remove(idx, Some(LeaveReason::ConnectionLost), DisconnectReason::Left, now.mono);
            }
            session.expire_knocks(grace, now);
        }
        self.close_due_breakouts(&mut sessions, now);
        let rooms: Vec<RoomId> = sessions.keys().cloned().collect();
        for room in rooms {
            drop_if_empty(&mut sessions, &room);
        }
    }

    /// Ends a session for everyone; `false` if there was none.
    pub fn end_session(&self, room: &RoomId, disconnect: DisconnectReason, now: Now) -> bool {
        let mut sessions = self.lock();
        let Some(main) = sessions.get(room).map(|s| s.main_room().clone()) else { return false };
        // The whole meeting: its breakout rooms first, then the main room.
        let mut rooms: Vec<RoomId> =
            sessions.values().filter(|s| s.parent.as_ref() == Some(&main)).map(|s| s.room.id.clone()).collect();
        rooms.push(main);
        for id in rooms {
            let Some(session) = sessions.get_mut(&id) else { continue };
            session.deny_all(confer_proto::signal::DenyReason::SessionEnded, None, now);
            while !session.participants.is_empty() {
                session.remove(0, Some(LeaveReason::SessionEnded), disconnect, now.mono);
            }
            sessions.remove(&id);
        }
        true
    }

    /// Closes every connection on server shutdown. Nobody is told that anyone left:
    /// everyone goes at once, and clients come back (as new participants) when the
    /// server is up again. From then on, joins are answered `unavailable`.
    pub fn shutdown(&self, now: Now) {
        let mut sessions = self.lock();
        self.stopped.store(true, std::sync::atomic::Ordering::Relaxed);
        for session in sessions.values_mut() {
            for p in session.participants.iter_mut().chain(session.lobby.iter_mut().map(|w| &mut w.p)) {
                p.push(Event::Disconnected { reason: DisconnectReason::ServerShutdown }, now.mono);
                p.send(Outbound::Close, now.mono);
            }
        }
        sessions.clear();
    }

    /// The room's definition changed: tell its live session.
    pub fn room_updated(&self, room: &Room, now: Now) {
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(&room.id) else { return };
        session.room = room.clone();
        session.broadcast(&Event::RoomUpdated { room: room.info() }, None, now.mono);
        // A change of managers changes who moderates.
        let mut changed = Vec::new();
        for p in &mut session.participants {
            let before = p.info.role;
            p.refresh_role(&room.managers);
            if p.info.role != before {
                changed.push(p.info.clone());
            }
        }
        for participant in changed {
            session.broadcast(&Event::ParticipantUpdated { participant }, None, now.mono);
        }
    }

    pub fn session(&self, room: &RoomId) -> Option<SessionInfo> {
        self.lock().get(room).map(Session::info)
    }

    /// Whether `room` has a live session here.
    pub fn holds(&self, room: &RoomId) -> bool {
        self.lock().contains_key(room)
    }

    /// The rooms with a live session here.
    pub fn rooms(&self) -> std::collections::HashSet<RoomId> {
        self.lock().keys().cloned().collect()
    }

    /// How much is live: for the metrics.
    pub fn census(&self) -> Census {
        let sessions = self.lock();
        let mut c = Census { rooms: sessions.len(), ..Census::default() };
        for p in sessions.values().flat_map(|s| &s.participants) {
            c.participants += 1;
            c.tracks += p.info.streams.iter().map(|s| s.tracks.len()).sum::<usize>();
        }
        c
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut all: Vec<_> = self.lock().values().map(Session::info).collect();
        all.sort_by(|a, b| a.room.cmp(&b.room));
        all
    }
}

/// Ends a session nobody is in (or waits for) any more; a main room waits for its
/// breakout rooms to empty, and goes with the last of them.
fn drop_if_empty(sessions: &mut HashMap<RoomId, Session>, room: &RoomId) {
    let Some(s) = sessions.get(room) else { return };
    if !s.is_empty() || sessions.values().any(|o| o.parent.as_ref() == Some(room)) {
        return;
    }
    let parent = s.parent.clone();
    sessions.remove(room);
    if let Some(main) = parent {
        drop_if_empty(sessions, &main);
    }
}

/// A response frame to queue on a link.
pub fn response(id: u64, reply: Reply) -> Outbound {
    Outbound::Frame(frame(&ServerMessage::Response { id: Some(id), outcome: Outcome::Result(reply) }))
}

/// An error response frame; `id` is `None` when the request's id could not be read.
pub fn error_response(id: Option<u64>, error: &ApiError) -> Outbound {
    Outbound::Frame(frame(&ServerMessage::Response { id, outcome: Outcome::Error(error.body()) }))
}
