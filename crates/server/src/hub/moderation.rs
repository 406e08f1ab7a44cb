//! Running a meeting: the lobby, the lock, moderators muting and asking to unmute,
//! co-hosts, raised hands and reactions.
//!
//! All of it is session state here, told to the clients as events, so that every
//! client (the app, the SDK, the bot, a browser) sees the same meeting. Who may do what
//! is decided by the participant's role: the room's managers (and holders of the
//! `moderator` grant) moderate, and so do the co-hosts a manager promotes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use confer_proto::signal::{
    DenyReason, DisconnectReason, Event, IceServer, JoinVia, Knock, KnockOutcome, RaisedHand, Reaction, Reply, Role,
    SignalLimits,
};
use confer_proto::track::{TrackKind, TrackSource};
use confer_proto::{ErrorCode, Identity, ParticipantId, RoomId};

use super::participant::{Outbound, Participant};
use super::{drop_if_empty, response, Hub, Now, Session};
use crate::error::{ApiError, ApiResult};
use crate::sfu::Command;

/// How long a knock waits for a moderator before it is turned away.
const KNOCK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The session of `room`, when `by` moderates it; `what` says what `by` tried, for the
/// refusal.
pub(super) fn moderated<'a>(
    sessions: &'a mut HashMap<RoomId, Session>,
    room: &RoomId,
    by: &ParticipantId,
    what: &str,
) -> ApiResult<&'a mut Session> {
    let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
    session.moderator(by, what)?;
    Ok(session)
}

/// A microphone (`audio`) or a camera (`video`): what a moderator's mute is about.
fn device_kind(kind: TrackKind) -> ApiResult<()> {
    if kind == TrackKind::Data {
        return Err(ApiError::new(ErrorCode::MalformedRequest, "`kind` is audio or video"));
    }
    Ok(())
}

/// Someone in the lobby: a participant that nobody in the meeting sees yet.
pub(super) struct Waiting {
    pub p: Participant,
    pub knock: Knock,
    pub since: Instant,
}

impl Session {
    /// Puts a new participant in the lobby: it hears `knocking` as its join's answer,
    /// the moderators a `knocking` event.
    pub(super) fn knock(&mut self, mut p: Participant, guest: bool, request_id: u64, limits: &SignalLimits, now: Now) {
        let knock = Knock {
            participant_id: p.info.id.clone(),
            identity: p.info.identity.clone(),
            name: p.info.name.clone(),
            via: if guest { JoinVia::Invite } else { JoinVia::Token },
            knocked_at: now.unix_ms,
        };
        let reply = Reply::Knocking {
            participant_id: p.info.id.clone(),
            resume_token: p.resume_token.clone(),
            room: self.room.info(),
            limits: limits.clone(),
        };
        p.send(response(request_id, reply), now.mono);
        tracing::info!(room = %self.room.id, participant = %p.info.id, identity = %p.info.identity, "knocking");
        self.tell_moderators(&Event::Knocking { knock: knock.clone() }, now.mono);
        self.lobby.push(Waiting { p, knock, since: now.mono });
    }

    pub(super) fn knock_index(&self, id: &ParticipantId) -> Option<usize> {
        self.lobby.iter().position(|w| &w.p.info.id == id)
    }

    /// Takes a knock out of the lobby and tells the moderators how it ended.
    pub(super) fn end_knock(
        &mut self,
        id: &ParticipantId,
        outcome: KnockOutcome,
        by: Option<&ParticipantId>,
        now: Now,
    ) -> Option<Waiting> {
        let idx = self.knock_index(id)?;
        let waiting = self.lobby.remove(idx);
        tracing::info!(room = %self.room.id, participant = %id, ?outcome, "knock ended");
        let event = Event::KnockEnded { participant_id: id.clone(), outcome, by: by.cloned() };
        self.tell_moderators(&event, now.mono);
        Some(waiting)
    }

    /// The same identity knocks (or joins) again: the older knock goes.
    pub(super) fn end_knock_of(&mut self, identity: &Identity, now: Now) {
        let Some(id) = self.lobby.iter().find(|w| &w.p.info.identity == identity).map(|w| w.p.info.id.clone()) else {
            return;
        };
        if let Some(mut old) = self.end_knock(&id, KnockOutcome::Left, None, now) {
            old.p.push(Event::Disconnected { reason: DisconnectReason::Replaced }, now.mono);
            old.p.send(Outbound::Close, now.mono);
        }
    }

    fn deny(&mut self, id: &ParticipantId, reason: DenyReason, by: Option<&ParticipantId>, now: Now) {
        let outcome = if reason == DenyReason::TimedOut { KnockOutcome::TimedOut } else { KnockOutcome::Denied };
        if let Some(mut gone) = self.end_knock(id, outcome, by, now) {
            gone.p.push(Event::Denied { reason }, now.mono);
            gone.p.push(Event::Disconnected { reason: DisconnectReason::Denied }, now.mono);
            gone.p.send(Outbound::Close, now.mono);
        }
    }

    pub(super) fn deny_all(&mut self, reason: DenyReason, by: Option<&ParticipantId>, now: Now) {
        let ids: Vec<ParticipantId> = self.lobby.iter().map(|w| w.p.info.id.clone()).collect();
        for id in ids {
            self.deny(&id, reason, by, now);
        }
    }

    /// Lets a knock in: it gets `admitted` with the room state, the others
    /// `participant_joined`.
    fn admit(
        &mut self,
        id: &ParticipantId,
        by: &ParticipantId,
        ice_servers: Vec<IceServer>,
        limits: &SignalLimits,
        now: Now,
    ) -> ApiResult<()> {
        if self.knock_index(id).is_none() {
            return Err(ApiError::new(ErrorCode::ParticipantNotFound, format!("nobody {id} is waiting")));
        }
        if let Some(max) = self.room.policy.max_participants {
            if self.participants.len() >= max as usize {
                return Err(ErrorCode::RoomFull.into());
            }
        }
        let Some(Waiting { mut p, .. }) = self.end_knock(id, KnockOutcome::Admitted, Some(by), now) else {
            return Err(ErrorCode::ParticipantNotFound.into());
        };
        p.info.joined_at = now.unix_ms;
        let snapshot = self.snapshot(&p, ice_servers, limits);
        p.push(Event::Admitted { snapshot: Box::new(snapshot) }, now.mono);
        tracing::info!(room = %self.room.id, participant = %p.info.id, by = %by, "admitted from the lobby");
        self.broadcast(&Event::ParticipantJoined { participant: p.info.clone() }, None, now.mono);
        self.participants.push(p);
        Ok(())
    }

    /// Knocks whose connection stayed away past the grace period give up; knocks
    /// nobody answered in time, or whose token ran out, are turned away.
    pub(super) fn expire_knocks(&mut self, grace: Duration, now: Now) {
        let gone: Vec<ParticipantId> = self
            .lobby
            .iter()
            .filter(|w| w.p.detached_at.is_some_and(|t| now.mono.saturating_duration_since(t) >= grace))
            .map(|w| w.p.info.id.clone())
            .collect();
        for id in gone {
            self.end_knock(&id, KnockOutcome::Left, None, now);
        }
        let late: Vec<ParticipantId> = self
            .lobby
            .iter()
            .filter(|w| {
                now.mono.saturating_duration_since(w.since) >= KNOCK_TIMEOUT || w.p.token_expires_at <= now.unix_secs()
            })
            .map(|w| w.p.info.id.clone())
            .collect();
        for id in late {
            self.deny(&id, DenyReason::TimedOut, None, now);
        }
    }

    /// Checks that `by` moderates; `what` says what it tried, for the error.
    fn moderator(&mut self, by: &ParticipantId, what: &str) -> ApiResult<()> {
        if self.get_mut(by)?.can_moderate() {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::PermissionDenied, format!("only the host and co-hosts can {what}")))
        }
    }

    /// Mutes a participant's microphone (`audio`) or camera (`video`) tracks; screen
    /// shares are left alone. Everyone, the participant included, hears of each.
    fn mute_tracks(&mut self, idx: usize, kind: TrackKind, by: &ParticipantId, now: Instant) {
        let device = match kind {
            TrackKind::Audio => TrackSource::Microphone,
            TrackKind::Video => TrackSource::Camera,
            TrackKind::Data => return,
        };
        let p = &mut self.participants[idx];
        let participant_id = p.info.id.clone();
        let mut events = Vec::new();
        for stream in &mut p.info.streams {
            for t in stream.tracks.iter_mut().filter(|t| t.kind == kind && t.source.is_none_or(|s| s == device)) {
                if t.muted {
                    continue;
                }
                t.muted = true;
                self.sfu.send(Command::SetTrackState { track_id: t.id.clone(), muted: true, censored: t.censored });
                events.push(Event::TrackDisabled {
                    participant_id: participant_id.clone(),
                    key: stream.key.clone(),
                    track_id: t.id.clone(),
                    kind,
                    by: Some(by.clone()),
                });
            }
        }
        for event in &events {
            self.broadcast(event, None, now);
        }
    }
}

impl Hub {
    /// Whether `id` still waits in the lobby of `room`.
    pub fn is_waiting(&self, room: &RoomId, id: &ParticipantId) -> bool {
        self.lock().get(room).is_some_and(|s| s.knock_index(id).is_some())
    }

    /// `by` lets `target` in, or everyone waiting.
    pub fn admit(&self, room: &RoomId, by: &ParticipantId, target: Option<&ParticipantId>, now: Now) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = moderated(&mut sessions, room, by, "let people in")?;
        let ids: Vec<ParticipantId> = match target {
            Some(id) => vec![id.clone()],
            None => session.lobby.iter().map(|w| w.p.info.id.clone()).collect(),
        };
        for id in ids {
            let Some(w) = session.lobby.iter().find(|w| w.p.info.id == id) else {
                return Err(ApiError::new(ErrorCode::ParticipantNotFound, format!("nobody {id} is waiting")));
            };
            let ice_servers = self.turn_servers(&w.p.info.identity, w.p.token_expires_at);
            session.admit(&id, by, ice_servers, &self.config.limits, now)?;
        }
        Ok(())
    }

    /// `by` turns `target` away, or everyone waiting.
    pub fn deny(&self, room: &RoomId, by: &ParticipantId, target: Option<&ParticipantId>, now: Now) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = moderated(&mut sessions, room, by, "turn people away")?;
        match target {
            Some(id) if session.knock_index(id).is_none() => {
                return Err(ApiError::new(ErrorCode::ParticipantNotFound, format!("nobody {id} is waiting")));
            }
            Some(id) => session.deny(id, DenyReason::Denied, Some(by), now),
            None => session.deny_all(DenyReason::Denied, Some(by), now),
        }
        drop_if_empty(&mut sessions, room);
        Ok(())
    }

    pub fn set_locked(&self, room: &RoomId, by: &ParticipantId, locked: bool, now: Now) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session =
            moderated(&mut sessions, room, by, if locked { "lock the meeting" } else { "unlock the meeting" })?;
        if session.locked == locked {
            return Ok(());
        }
        session.locked = locked;
        tracing::info!(%room, by = %by, locked, "meeting lock changed");
        let by = by.clone();
        let event = if locked { Event::RoomLocked { by } } else { Event::RoomUnlocked { by } };
        session.broadcast(&event, None, now.mono);
        Ok(())
    }

    /// Whether `by` may end the meeting for everyone.
    pub fn may_end_session(&self, room: &RoomId, by: &ParticipantId) -> ApiResult<()> {
        let mut sessions = self.lock();
        moderated(&mut sessions, room, by, "end the meeting for everyone").map(|_| ())
    }

    /// A moderator ended the meeting for everyone (checked with [`Hub::may_end_session`]).
    pub fn end_session_by(&self, room: &RoomId, by: &ParticipantId, now: Now) {
        tracing::info!(%room, by = %by, "meeting ended for everyone");
        self.end_session(room, DisconnectReason::SessionEnded, now);
    }

    /// `by` mutes `target`'s microphone or stops its camera.
    pub fn mute_participant(
        &self,
        room: &RoomId,
        by: &ParticipantId,
        target: &ParticipantId,
        kind: TrackKind,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = moderated(&mut sessions, room, by, "mute others")?;
        device_kind(kind)?;
        let idx = session.position(target).ok_or(ErrorCode::ParticipantNotFound)?;
        tracing::info!(%room, by = %by, participant = %target, ?kind, "muted by a moderator");
        session.mute_tracks(idx, kind, by, now.mono);
        Ok(())
    }

    /// `by` mutes every microphone but the moderators'.
    pub fn mute_all(&self, room: &RoomId, by: &ParticipantId, now: Now) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = moderated(&mut sessions, room, by, "mute everyone")?;
        tracing::info!(%room, by = %by, "everyone muted");
        for idx in 0..session.participants.len() {
            if !session.participants[idx].can_moderate() {
                session.mute_tracks(idx, TrackKind::Audio, by, now.mono);
            }
        }
        Ok(())
    }

    /// `by` asks `target` to unmute or to start its camera.
    pub fn request_unmute(
        &self,
        room: &RoomId,
        by: &ParticipantId,
        target: &ParticipantId,
        kind: TrackKind,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = moderated(&mut sessions, room, by, "ask others to unmute")?;
        device_kind(kind)?;
        if by == target {
            return Err(ApiError::new(ErrorCode::MalformedRequest, "to unmute yourself, send update_stream"));
        }
        let p = session.get_mut(target)?;
        p.push(Event::UnmuteRequested { by: by.clone(), kind }, now.mono);
        Ok(())
    }

    /// A manager makes `target` a co-host (`promote`) or takes that back.
    pub fn set_co_host(
        &self,
        room: &RoomId,
        by: &ParticipantId,
        target: &ParticipantId,
        promote: bool,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        if session.get_mut(by)?.info.role != Role::Manager {
            return Err(ApiError::new(ErrorCode::PermissionDenied, "only the room's managers can make co-hosts"));
        }
        let managers = session.room.managers.clone();
        let p = session.get_mut(target)?;
        if p.info.role == Role::Manager {
            if promote {
                return Ok(());
            }
            return Err(ApiError::new(ErrorCode::PermissionDenied, "a manager of the room cannot be demoted here"));
        }
        if p.promoted == promote {
            return Ok(());
        }
        p.promoted = promote;
        p.refresh_role(&managers);
        let info = p.info.clone();
        // A new co-host sees who is waiting, as if it had been a moderator all along.
        if promote {
            let knocks: Vec<Knock> = session.lobby.iter().map(|w| w.knock.clone()).collect();
            let p = session.get_mut(target)?;
            for knock in knocks {
                p.push(Event::Knocking { knock }, now.mono);
            }
        }
        tracing::info!(%room, by = %by, participant = %target, promote, "co-host changed");
        session.broadcast(&Event::ParticipantUpdated { participant: info }, None, now.mono);
        Ok(())
    }

    pub fn raise_hand(&self, room: &RoomId, id: &ParticipantId, now: Now) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        session.get_mut(id)?;
        if session.hands.iter().any(|h| &h.participant_id == id) {
            return Ok(());
        }
        session.hands.push(RaisedHand { participant_id: id.clone(), raised_at: now.unix_ms });
        let event = Event::HandRaised { participant_id: id.clone(), raised_at: now.unix_ms };
        session.broadcast(&event, None, now.mono);
        Ok(())
    }

    /// `by` lowers its own hand (`target` absent or itself) or, moderating, another's.
    pub fn lower_hand(
        &self,
        room: &RoomId,
        by: &ParticipantId,
        target: Option<&ParticipantId>,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let target = target.unwrap_or(by);
        if target != by {
            session.moderator(by, "lower others' hands")?;
        }
        session.get_mut(target)?;
        let before = session.hands.len();
        session.hands.retain(|h| &h.participant_id != target);
        if session.hands.len() == before {
            return Ok(());
        }
        let event = Event::HandLowered { participant_id: target.clone(), by: (target != by).then(|| by.clone()) };
        session.broadcast(&event, None, now.mono);
        Ok(())
    }

    pub fn react(&self, room: &RoomId, id: &ParticipantId, reaction: Reaction, now: Now) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let p = session.get_mut(id)?;
        if !p.reactions.try_take(now.mono) {
            return Err(ApiError::new(ErrorCode::RateLimited, "too many reactions; wait a moment"));
        }
        let event = Event::Reaction { participant_id: id.clone(), reaction, sent_at: now.unix_ms };
        session.broadcast(&event, None, now.mono);
        Ok(())
    }
}
