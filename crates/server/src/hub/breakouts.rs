//! Breakout rooms: a meeting split into small rooms for a while, and brought back.
//!
//! Each breakout room is a session of its own (its own participants, events and media
//! on an SFU worker), whose `parent` is the main room; the plan (names, who goes where,
//! open or not, when it closes) lives in the main room's session. Moving someone takes
//! them out of one session as a leave would (`participant_left` with reason `moved`,
//! their streams ended) and into the other as a join would, on the same connection:
//! they get `moved` with the new room's snapshot, and their client publishes and
//! subscribes there again (its devices stay open).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use confer_proto::room::Room;
use confer_proto::signal::{BreakoutAssignment, BreakoutRoom, Breakouts, Event, LeaveReason};
use confer_proto::{ErrorCode, ParticipantId, RoomId, UnixMillis};
use rand::seq::SliceRandom;

use super::moderation::moderated;
use super::{drop_if_empty, Hub, Now, Session};
use crate::error::{ApiError, ApiResult};

/// Breakout rooms one meeting may have.
const MAX_ROOMS: usize = 50;
/// Longest breakout room name, in bytes.
const MAX_NAME_BYTES: usize = 100;
/// The countdown when closing, unless the moderator says otherwise.
const DEFAULT_COUNTDOWN: Duration = Duration::from_secs(10);
/// The longest countdown a moderator may ask for.
const MAX_COUNTDOWN: Duration = Duration::from_secs(10 * 60);

/// The main room's breakout rooms.
pub(super) struct Plan {
    /// As everyone sees it.
    pub info: Breakouts,
    /// When the countdown to closing ends.
    pub closes_at: Option<Instant>,
}

type Sessions = HashMap<RoomId, Session>;

/// The meeting's main session, from any of its rooms.
fn main_of<'a>(sessions: &'a mut Sessions, room: &RoomId) -> ApiResult<&'a mut Session> {
    let main = sessions.get(room).ok_or(ErrorCode::SessionNotFound)?.main_room().clone();
    sessions.get_mut(&main).ok_or_else(|| ErrorCode::SessionNotFound.into())
}

/// Every session of the meeting whose main room is `main`, the main one first.
fn rooms_of(sessions: &Sessions, main: &RoomId) -> Vec<RoomId> {
    let mut ids = vec![main.clone()];
    ids.extend(sessions.values().filter(|s| s.parent.as_ref() == Some(main)).map(|s| s.room.id.clone()));
    ids
}

/// Tells everyone in the meeting.
fn tell_meeting(sessions: &mut Sessions, main: &RoomId, event: &Event, now: Instant) {
    for id in rooms_of(sessions, main) {
        if let Some(s) = sessions.get_mut(&id) {
            s.broadcast(event, None, now);
        }
    }
}

fn updated(sessions: &mut Sessions, main: &RoomId, now: Instant) {
    let breakouts = sessions.get(main).and_then(|s| s.breakouts.as_ref()).map(|b| b.info.clone());
    tell_meeting(sessions, main, &Event::BreakoutsUpdated { breakouts }, now);
}

impl Hub {
    pub fn create_breakouts(
        &self,
        room: &RoomId,
        by: &ParticipantId,
        names: Vec<String>,
        allow_choice: bool,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        moderated(&mut sessions, room, by, "set up breakout rooms")?;
        if names.is_empty() || names.len() > MAX_ROOMS {
            return Err(ApiError::new(ErrorCode::MalformedRequest, format!("1 to {MAX_ROOMS} breakout rooms")));
        }
        if let Some(bad) = names.iter().find(|n| n.trim().is_empty() || n.len() > MAX_NAME_BYTES) {
            let msg = format!("a breakout room's name has 1 to {MAX_NAME_BYTES} bytes, not {bad:?}");
            return Err(ApiError::new(ErrorCode::MalformedRequest, msg));
        }
        let main = main_of(&mut sessions, room)?;
        if main.breakouts.as_ref().is_some_and(|b| b.info.open) {
            return Err(ApiError::new(ErrorCode::MalformedRequest, "close the open breakout rooms first"));
        }
        let main_id = main.room.id.clone();
        let rooms = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| BreakoutRoom { id: RoomId(format!("{main_id}~{}", i + 1)), name: name.trim().to_owned() })
            .collect();
        let info = Breakouts { rooms, assignments: Vec::new(), open: false, allow_choice, closes_at: None };
        main.breakouts = Some(Plan { info, closes_at: None });
        tracing::info!(room = %main_id, by = %by, "breakout rooms set up");
        updated(&mut sessions, &main_id, now.mono);
        Ok(())
    }

    /// Sets who goes where: the given assignments, or everyone in the main room but the
    /// moderators spread evenly at random.
    pub fn assign_breakouts(
        &self,
        room: &RoomId,
        by: &ParticipantId,
        assignments: Vec<BreakoutAssignment>,
        evenly: bool,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        moderated(&mut sessions, room, by, "assign breakout rooms")?;
        let main = main_of(&mut sessions, room)?;
        let main_id = main.room.id.clone();
        let people: Vec<ParticipantId> =
            main.participants.iter().filter(|p| !p.can_moderate()).map(|p| p.info.id.clone()).collect();
        let plan = main.breakouts.as_mut().ok_or_else(no_breakouts)?;
        let count = plan.info.rooms.len() as u32;
        if let Some(bad) = assignments.iter().find(|a| a.room >= count) {
            return Err(ApiError::new(ErrorCode::MalformedRequest, format!("there is no breakout room {}", bad.room)));
        }
        if evenly {
            let mut shuffled = people;
            shuffled.shuffle(&mut rand::rng());
            plan.info.assignments = shuffled
                .into_iter()
                .enumerate()
                .map(|(i, participant_id)| BreakoutAssignment { participant_id, room: i as u32 % count })
                .collect();
        }
        for a in assignments {
            plan.info.assignments.retain(|old| old.participant_id != a.participant_id);
            plan.info.assignments.push(a);
        }
        updated(&mut sessions, &main_id, now.mono);
        Ok(())
    }

    /// Opens the breakout rooms: everyone assigned who is in the main room moves.
    pub fn open_breakouts(&self, room: &RoomId, by: &ParticipantId, now: Now) -> ApiResult<()> {
        let mut sessions = self.lock();
        moderated(&mut sessions, room, by, "open breakout rooms")?;
        let main = main_of(&mut sessions, room)?;
        let main_id = main.room.id.clone();
        let plan = main.breakouts.as_mut().ok_or_else(no_breakouts)?;
        plan.info.open = true;
        let moves: Vec<(ParticipantId, u32)> =
            plan.info.assignments.iter().map(|a| (a.participant_id.clone(), a.room)).collect();
        tracing::info!(room = %main_id, by = %by, people = moves.len(), "breakout rooms open");
        updated(&mut sessions, &main_id, now.mono);
        for (participant, index) in moves {
            if sessions.get(&main_id).is_some_and(|s| s.position(&participant).is_some()) {
                self.move_to(&mut sessions, &main_id, &participant, Some(index), now)?;
            }
        }
        Ok(())
    }

    /// Starts the countdown; [`Hub::tick`] brings everyone back when it ends.
    pub fn close_breakouts(
        &self,
        room: &RoomId,
        by: &ParticipantId,
        countdown: Option<Duration>,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        moderated(&mut sessions, room, by, "close breakout rooms")?;
        let countdown = countdown.unwrap_or(DEFAULT_COUNTDOWN).min(MAX_COUNTDOWN);
        let main = main_of(&mut sessions, room)?;
        let main_id = main.room.id.clone();
        let plan = main.breakouts.as_mut().ok_or_else(no_breakouts)?;
        plan.closes_at = Some(now.mono + countdown);
        plan.info.closes_at = Some(now.unix_ms + countdown.as_millis() as UnixMillis);
        tracing::info!(room = %main_id, by = %by, ?countdown, "breakout rooms closing");
        updated(&mut sessions, &main_id, now.mono);
        Ok(())
    }

    /// `id` goes to breakout room `index`, or back to the main room: its own choice
    /// (when the rooms allow choosing) or a moderator's.
    pub fn join_breakout(&self, room: &RoomId, id: &ParticipantId, index: Option<u32>, now: Now) -> ApiResult<()> {
        let mut sessions = self.lock();
        let moderates = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?.get_mut(id)?.can_moderate();
        let main = main_of(&mut sessions, room)?;
        let plan = main.breakouts.as_ref().ok_or_else(no_breakouts)?;
        if !plan.info.open {
            return Err(ApiError::new(ErrorCode::MalformedRequest, "the breakout rooms are not open"));
        }
        if !plan.info.allow_choice && !moderates {
            return Err(ApiError::new(ErrorCode::PermissionDenied, "the host assigns the breakout rooms"));
        }
        self.move_to(&mut sessions, room, id, index, now)
    }

    /// A moderator moves `target` (anywhere in the meeting) to breakout room `index`, or
    /// back to the main room.
    pub fn move_participant(
        &self,
        room: &RoomId,
        by: &ParticipantId,
        target: &ParticipantId,
        index: Option<u32>,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        moderated(&mut sessions, room, by, "move people between rooms")?;
        let main = main_of(&mut sessions, room)?.room.id.clone();
        let from = rooms_of(&sessions, &main)
            .into_iter()
            .find(|r| sessions.get(r).is_some_and(|s| s.position(target).is_some()))
            .ok_or(ErrorCode::ParticipantNotFound)?;
        self.move_to(&mut sessions, &from, target, index, now)
    }

    /// A moderator's message to everyone in the meeting, whichever room they are in.
    pub fn message_breakouts(&self, room: &RoomId, by: &ParticipantId, text: String, now: Now) -> ApiResult<String> {
        let mut sessions = self.lock();
        moderated(&mut sessions, room, by, "message every room")?;
        if text.is_empty() {
            return Err(ApiError::new(ErrorCode::MalformedRequest, "empty message"));
        }
        let sender = &sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?.get_mut(by)?.info;
        let (from_identity, from_name) = (sender.identity.clone(), sender.name.clone());
        let main = main_of(&mut sessions, room)?.room.id.clone();
        let message_id = format!("MS_{}", crate::auth::random_secret(9));
        let event = Event::MessageReceived {
            message_id: message_id.clone(),
            from: by.clone(),
            from_identity,
            from_name,
            text,
            to: None,
            sent_at: now.unix_ms,
        };
        for id in rooms_of(&sessions, &main) {
            let Some(s) = sessions.get_mut(&id) else { continue };
            for p in s.participants.iter_mut().filter(|p| &p.info.id != by && p.info.can_receive_messages) {
                p.push(event.clone(), now.mono);
            }
        }
        Ok(message_id)
    }

    /// Closes the breakout rooms whose countdown ended: everyone comes back.
    pub(super) fn close_due_breakouts(&self, sessions: &mut Sessions, now: Now) {
        let due: Vec<RoomId> = sessions
            .values()
            .filter(|s| s.breakouts.as_ref().and_then(|b| b.closes_at).is_some_and(|at| at <= now.mono))
            .map(|s| s.room.id.clone())
            .collect();
        for main in due {
            for room in rooms_of(sessions, &main).into_iter().skip(1) {
                let people: Vec<ParticipantId> = sessions
                    .get(&room)
                    .map(|s| s.participants.iter().map(|p| p.info.id.clone()).collect())
                    .unwrap_or_default();
                for id in people {
                    if let Err(e) = self.move_to(sessions, &room, &id, None, now) {
                        tracing::warn!(%room, participant = %id, error = %e, "could not bring back from a breakout room");
                    }
                }
                sessions.remove(&room);
            }
            if let Some(s) = sessions.get_mut(&main) {
                s.breakouts = None;
            }
            tracing::info!(room = %main, "breakout rooms closed");
            updated(sessions, &main, now.mono);
        }
    }

    /// Moves `id` from session `from` to breakout room `index` of its meeting, or to the
    /// main room (`None`).
    fn move_to(
        &self,
        sessions: &mut Sessions,
        from: &RoomId,
        id: &ParticipantId,
        index: Option<u32>,
        now: Now,
    ) -> ApiResult<()> {
        let main_id = sessions.get(from).ok_or(ErrorCode::SessionNotFound)?.main_room().clone();
        let main = sessions.get(&main_id).ok_or(ErrorCode::SessionNotFound)?;
        let to = match index {
            None => main_id.clone(),
            Some(i) => {
                let plan = main.breakouts.as_ref().ok_or_else(no_breakouts)?;
                let target = plan.info.rooms.get(i as usize).ok_or_else(|| {
                    ApiError::new(ErrorCode::MalformedRequest, format!("there is no breakout room {i}"))
                })?;
                target.id.clone()
            }
        };
        if &to == from {
            return Ok(());
        }
        if !sessions.contains_key(&to) {
            let name = main
                .breakouts
                .as_ref()
                .and_then(|b| b.info.rooms.iter().find(|r| r.id == to))
                .map(|r| r.name.clone())
                .unwrap_or_default();
            let room = Room { id: to.clone(), name, ..main.room.clone() };
            let mut session =
                Session::new(room, now.unix_ms, self.sfu.place(), Some(main_id.clone()), self.config.webhooks.clone());
            // A breakout room has no lobby: its people were let into the meeting already.
            session.room.policy.lobby = false;
            sessions.insert(to.clone(), session);
        }
        let source = sessions.get_mut(from).ok_or(ErrorCode::SessionNotFound)?;
        let idx = source.position(id).ok_or(ErrorCode::ParticipantNotFound)?;
        let ((pid, identity), taken) = source.take_out(idx, Some(LeaveReason::Moved), now.mono);
        let left = Event::ParticipantLeft { participant_id: pid, identity, reason: Some(LeaveReason::Moved) };
        source.broadcast(&left, None, now.mono);
        let Some(mut p) = taken else { return Err(ErrorCode::ParticipantNotFound.into()) };
        p.subscriptions.clear();
        p.publishing.clear();
        p.metrics_for.clear();
        *p.location.lock().unwrap_or_else(|e| e.into_inner()) = to.clone();
        let breakouts = sessions.get(&main_id).and_then(|s| s.breakouts.as_ref()).map(|b| b.info.clone());
        let ice_servers = self.turn_servers(&p.info.identity, p.token_expires_at);
        let target = sessions.get_mut(&to).ok_or(ErrorCode::SessionNotFound)?;
        let mut snapshot = target.snapshot(&p, ice_servers, &self.config.limits);
        snapshot.breakouts = breakouts;
        p.push(Event::Moved { snapshot: Box::new(snapshot) }, now.mono);
        tracing::info!(from = %from, to = %to, participant = %id, "moved");
        target.broadcast(&Event::ParticipantJoined { participant: p.info.clone() }, None, now.mono);
        target.participants.push(p);
        drop_if_empty(sessions, from);
        Ok(())
    }
}

fn no_breakouts() -> ApiError {
    ApiError::new(ErrorCode::MalformedRequest, "no breakout rooms are set up")
}
