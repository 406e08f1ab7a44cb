//! The client's view of the room, and how server events change it.
//!
//! This is the pure core of the SDK: no sockets, no clock, no tasks. `RoomState::apply`
//! takes one server [`Event`] and returns the [`RoomEvent`]s it means for the app;
//! `RoomState::replace` swaps in the snapshot of a fresh join and returns the
//! differences as joined/left events. The engine publishes the snapshot before it sends
//! the returned events, which is what lets the event docs promise that the state already
//! reflects an event when it arrives.
//!
//! Invariants: `remote` never contains the local participant, holds each participant id
//! at most once, and keeps join order.

use confer_proto::room::RoomInfo;
use confer_proto::signal::{
    Breakouts, Event, IceServer, JoinSnapshot, Knock, LeaveReason, ParticipantInfo, RaisedHand, Role, SignalLimits,
};
use confer_proto::track::StreamInfo;
use confer_proto::{Identity, ParticipantId, UnixMillis};
use serde::Serialize;

use crate::event::{ConnectionState, RoomEvent};

/// The room as the local participant sees it, kept current from server events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomSnapshot {
    pub room: RoomInfo,
    /// The local participant. Its id changes only when a resume fails and the SDK has to
    /// join afresh.
    pub local: ParticipantInfo,
    /// Everyone else, in join order.
    pub remote: Vec<ParticipantInfo>,
    pub connection_state: ConnectionState,
    /// When the current join token expires; renew it with `Room::update_token` before.
    pub token_expires_at: UnixMillis,
    pub ice_servers: Vec<IceServer>,
    pub limits: SignalLimits,
    /// Whether a moderator locked the meeting.
    pub locked: bool,
    /// Raised hands, first raised first.
    pub hands: Vec<RaisedHand>,
    /// Who waits in the lobby; known to moderators only.
    pub knocks: Vec<Knock>,
    /// The meeting's breakout rooms, once a moderator set them up.
    pub breakouts: Option<Breakouts>,
    /// In a breakout room: the meeting's main room.
    pub main_room: Option<confer_proto::RoomId>,
}

impl RoomSnapshot {
    /// Splits a join answer into the public snapshot and the secret resume token.
    pub(crate) fn from_join(join: JoinSnapshot) -> (Self, String) {
        let JoinSnapshot {
            room,
            participant,
            participants,
            resume_token,
            token_expires_at,
            ice_servers,
            limits,
            locked,
            hands,
            knocks,
            breakouts,
            main_room,
        } = join;
        let local_id = participant.id.clone();
        let snapshot = RoomSnapshot {
            room,
            local: participant,
            // Defensive: a server listing us among the others would break the invariant.
            remote: participants.into_iter().filter(|p| p.id != local_id).collect(),
            connection_state: ConnectionState::Connected,
            token_expires_at,
            ice_servers,
            limits,
            locked,
            hands,
            knocks,
            breakouts,
            main_room,
        };
        (snapshot, resume_token)
    }

    /// Any participant, local or remote, by id.
    pub fn participant(&self, id: &ParticipantId) -> Option<&ParticipantInfo> {
        if self.local.id == *id {
            return Some(&self.local);
        }
        self.remote.iter().find(|p| p.id == *id)
    }

    /// Any participant, local or remote, by identity.
    pub fn participant_by_identity(&self, identity: &Identity) -> Option<&ParticipantInfo> {
        if self.local.identity == *identity {
            return Some(&self.local);
        }
        self.remote.iter().find(|p| p.identity == *identity)
    }

    /// Everyone in the room, the local participant first.
    pub fn participants(&self) -> impl Iterator<Item = &ParticipantInfo> {
        std::iter::once(&self.local).chain(self.remote.iter())
    }
}

/// The mutable state behind a [`RoomSnapshot`].
#[derive(Debug, Clone)]
pub(crate) struct RoomState {
    snapshot: RoomSnapshot,
}

impl RoomState {
    pub(crate) fn new(snapshot: RoomSnapshot) -> Self {
        Self { snapshot }
    }

    pub(crate) fn snapshot(&self) -> &RoomSnapshot {
        &self.snapshot
    }

    /// A renewed token's expiry, and the relay credentials that came with it.
    pub(crate) fn set_token(&mut self, expires_at: UnixMillis, ice_servers: Vec<IceServer>) {
        self.snapshot.token_expires_at = expires_at;
        if !ice_servers.is_empty() {
            self.snapshot.ice_servers = ice_servers;
        }
    }

    /// Moves to `state`; returns the event to emit if that is a change.
    pub(crate) fn set_connection_state(&mut self, state: ConnectionState) -> Option<RoomEvent> {
        if self.snapshot.connection_state == state {
            return None;
        }
        self.snapshot.connection_state = state;
        Some(RoomEvent::StateChanged(state))
    }

    /// Applies one server event. `Disconnected` also moves the state to
    /// [`ConnectionState::Disconnected`] and yields the state change before the event.
    pub(crate) fn apply(&mut self, event: Event) -> Vec<RoomEvent> {
        match event {
            Event::ParticipantJoined { participant } => {
                if participant.id == self.snapshot.local.id {
                    tracing::warn!(id = %participant.id, "server announced the local participant as joining");
                    return Vec::new();
                }
                if let Some(known) = self.snapshot.remote.iter_mut().find(|p| p.id == participant.id) {
                    // Already known (e.g. listed in a snapshot and announced again):
                    // refresh the info, but the app was told about it once already.
                    *known = participant;
                    return Vec::new();
                }
                self.snapshot.remote.push(participant.clone());
                vec![RoomEvent::ParticipantJoined { participant }]
            }
            Event::ParticipantLeaving { participant_id, identity, reason } => {
                let participant = self.info_or_stub(&participant_id, Some(&identity));
                vec![RoomEvent::ParticipantLeaving { participant, reason }]
            }
            Event::ParticipantLeft { participant_id, identity, reason } => {
                let removed = self
                    .snapshot
                    .remote
                    .iter()
                    .position(|p| p.id == participant_id)
                    .map(|i| self.snapshot.remote.remove(i));
                // A hand goes with its owner.
                self.snapshot.hands.retain(|h| h.participant_id != participant_id);
                let participant = match removed {
                    Some(p) => p,
                    None => self.info_or_stub(&participant_id, Some(&identity)),
                };
                vec![RoomEvent::ParticipantLeft { participant, reason }]
            }
            Event::MessageReceived { message_id, from, from_identity, from_name, text, to, sent_at } => {
                let from = match self.snapshot.participant(&from) {
                    Some(p) => p.clone(),
                    // A moderator in another room of the meeting (breakout rooms): the
                    // event says who it is.
                    None => ParticipantInfo { name: from_name, ..stub(&from, Some(&from_identity)) },
                };
                let to = to.map(|ids| ids.iter().map(|id| self.info_or_stub(id, None)).collect());
                vec![RoomEvent::MessageReceived { message_id, from, text, to, sent_at }]
            }
            Event::RoomUpdated { room } => {
                self.snapshot.room = room.clone();
                vec![RoomEvent::RoomUpdated { room }]
            }
            Event::Disconnected { reason } => {
                let mut out: Vec<RoomEvent> =
                    self.set_connection_state(ConnectionState::Disconnected).into_iter().collect();
                out.push(RoomEvent::Disconnected { reason });
                out
            }
            media => {
                self.apply_media(&media);
                vec![RoomEvent::Media { event: Box::new(media) }]
            }
        }
    }

    /// Keeps the participants' published streams current.
    fn apply_media(&mut self, event: &Event) {
        fn streams_of<'a>(snapshot: &'a mut RoomSnapshot, id: &ParticipantId) -> Option<&'a mut Vec<StreamInfo>> {
            snapshot
                .remote
                .iter_mut()
                .chain(std::iter::once(&mut snapshot.local))
                .find(|p| &p.id == id)
                .map(|p| &mut p.streams)
        }
        match event {
            Event::StreamPublished { participant_id, stream } => {
                if let Some(streams) = streams_of(&mut self.snapshot, participant_id) {
                    streams.retain(|s| s.key != stream.key);
                    streams.push(stream.clone());
                }
            }
            Event::StreamUnpublished { participant_id, key } => {
                if let Some(streams) = streams_of(&mut self.snapshot, participant_id) {
                    streams.retain(|s| &s.key != key);
                }
            }
            Event::TrackDisabled { participant_id, track_id, .. }
            | Event::TrackEnabled { participant_id, track_id, .. }
            | Event::TrackCensored { participant_id, track_id, .. }
            | Event::TrackUncensored { participant_id, track_id, .. } => {
                let Some(streams) = streams_of(&mut self.snapshot, participant_id) else { return };
                let Some(t) = streams.iter_mut().flat_map(|s| s.tracks.iter_mut()).find(|t| &t.id == track_id) else {
                    return;
                };
                match event {
                    Event::TrackDisabled { .. } => t.muted = true,
                    Event::TrackEnabled { .. } => t.muted = false,
                    Event::TrackCensored { .. } => t.censored = true,
                    _ => t.censored = false,
                }
            }
            Event::ParticipantUpdated { participant } => {
                if self.snapshot.local.id == participant.id {
                    // What the local participant publishes is known here, not from the event.
                    let streams = std::mem::take(&mut self.snapshot.local.streams);
                    self.snapshot.local = ParticipantInfo { streams, ..participant.clone() };
                    if !participant.role.moderates() {
                        self.snapshot.knocks.clear();
                    }
                } else if let Some(p) = self.snapshot.remote.iter_mut().find(|p| p.id == participant.id) {
                    let streams = std::mem::take(&mut p.streams);
                    *p = ParticipantInfo { streams, ..participant.clone() };
                }
            }
            Event::HandRaised { participant_id, raised_at }
                if !self.snapshot.hands.iter().any(|h| &h.participant_id == participant_id) =>
            {
                let hand = RaisedHand { participant_id: participant_id.clone(), raised_at: *raised_at };
                self.snapshot.hands.push(hand);
            }
            Event::HandLowered { participant_id, .. } => {
                self.snapshot.hands.retain(|h| &h.participant_id != participant_id)
            }
            Event::Knocking { knock } => {
                self.snapshot.knocks.retain(|k| k.participant_id != knock.participant_id);
                self.snapshot.knocks.push(knock.clone());
            }
            Event::KnockEnded { participant_id, .. } => {
                self.snapshot.knocks.retain(|k| &k.participant_id != participant_id)
            }
            Event::BreakoutsUpdated { breakouts } => self.snapshot.breakouts = breakouts.clone(),
            Event::RoomLocked { .. } => self.snapshot.locked = true,
            Event::RoomUnlocked { .. } => self.snapshot.locked = false,
            _ => {}
        }
    }

    /// Moves to another room of the meeting: everyone of the old room leaves (as far as
    /// the app can tell), everyone of the new one joins with their streams announced,
    /// for the app to subscribe there as it would on a join.
    pub(crate) fn move_to(&mut self, new: RoomSnapshot) -> Vec<RoomEvent> {
        let mut out: Vec<RoomEvent> = std::mem::take(&mut self.snapshot.remote)
            .into_iter()
            .map(|participant| RoomEvent::ParticipantLeft { participant, reason: Some(LeaveReason::Moved) })
            .collect();
        out.extend(self.replace(new));
        out
    }

    /// Replaces the state with the snapshot of a fresh join. Returns `ParticipantLeft`
    /// for remote participants that are gone (reason unknown: the SDK did not see them
    /// go), `ParticipantJoined` for new ones, and `RoomUpdated` if the room changed.
    /// Participants are matched by id: one that rejoined has a new id and shows up as
    /// having left and joined, which is what happened on the server.
    pub(crate) fn replace(&mut self, new: RoomSnapshot) -> Vec<RoomEvent> {
        let mut out = Vec::new();
        for old in &self.snapshot.remote {
            if !new.remote.iter().any(|p| p.id == old.id) {
                out.push(RoomEvent::ParticipantLeft { participant: old.clone(), reason: None });
            }
        }
        for p in &new.remote {
            let old = self.snapshot.remote.iter().find(|old| old.id == p.id);
            if old.is_none() {
                out.push(RoomEvent::ParticipantJoined { participant: p.clone() });
            }
            // Streams published while this client was away are news like any other
            // publication: the app subscribes to them as it would on the event. (After a
            // server restart every publisher is a new participant with its streams.)
            let had = |key: &str| old.is_some_and(|o| o.streams.iter().any(|s| s.key == key));
            for stream in p.streams.iter().filter(|s| !had(&s.key)) {
                let event = Event::StreamPublished { participant_id: p.id.clone(), stream: stream.clone() };
                out.push(RoomEvent::Media { event: Box::new(event) });
            }
            if let Some(old) = old {
                for stream in old.streams.iter().filter(|s| !p.streams.iter().any(|n| n.key == s.key)) {
                    let event = Event::StreamUnpublished { participant_id: p.id.clone(), key: stream.key.clone() };
                    out.push(RoomEvent::Media { event: Box::new(event) });
                }
            }
        }
        if new.room != self.snapshot.room {
            out.push(RoomEvent::RoomUpdated { room: new.room.clone() });
        }
        let connection_state = self.snapshot.connection_state;
        self.snapshot = RoomSnapshot { connection_state, ..new };
        out
    }

    /// The participant's info from the state, or a stand-in built from what the event
    /// names when the state does not know it. That only happens if the server breaks
    /// its ordering promises; the app still gets the event rather than losing it.
    fn info_or_stub(&self, id: &ParticipantId, identity: Option<&Identity>) -> ParticipantInfo {
        if let Some(p) = self.snapshot.participant(id) {
            return p.clone();
        }
        tracing::warn!(%id, "event names a participant this client does not know");
        stub(id, identity)
    }
}

/// A participant known only by what an event names.
fn stub(id: &ParticipantId, identity: Option<&Identity>) -> ParticipantInfo {
    ParticipantInfo {
        id: id.clone(),
        identity: identity.cloned().unwrap_or_else(|| Identity(String::new())),
        name: String::new(),
        context: serde_json::Value::Null,
        role: Role::Member,
        can_receive_messages: false,
        joined_at: 0,
        streams: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confer_proto::room::RoomPolicy;
    use confer_proto::signal::{DisconnectReason, LeaveReason};

    pub(crate) fn info(id: &str, identity: &str) -> ParticipantInfo {
        ParticipantInfo {
            id: id.into(),
            identity: identity.into(),
            name: identity.to_uppercase(),
            context: serde_json::Value::Null,
            role: Role::Member,
            can_receive_messages: true,
            joined_at: 1,
            streams: Vec::new(),
        }
    }

    fn join(local: ParticipantInfo, others: Vec<ParticipantInfo>) -> JoinSnapshot {
        JoinSnapshot {
            room: RoomInfo {
                id: "r".into(),
                name: "Room".into(),
                public_meta: Default::default(),
                policy: RoomPolicy::default(),
                version: 1,
            },
            participant: local,
            participants: others,
            resume_token: "secret".into(),
            token_expires_at: 99,
            ice_servers: vec![],
            limits: SignalLimits {
                max_message_bytes: 1000,
                requests_per_second: 10,
                burst: 10,
                ping_interval_ms: 1000,
                resume_grace_ms: 5000,
            },
            locked: false,
            hands: vec![],
            knocks: vec![],
            breakouts: None,
            main_room: None,
        }
    }

    fn state() -> RoomState {
        let (snap, token) = RoomSnapshot::from_join(join(info("pa", "alice"), vec![info("pb", "bob")]));
        assert_eq!(token, "secret");
        RoomState::new(snap)
    }

    #[test]
    fn join_and_leave_keep_the_state_and_carry_infos() {
        let mut s = state();
        let ev = s.apply(Event::ParticipantJoined { participant: info("pc", "carol") });
        assert!(
            matches!(&ev[..], [RoomEvent::ParticipantJoined { participant }] if participant.identity.as_str() == "carol")
        );
        assert_eq!(s.snapshot().remote.len(), 2);
        // A repeated announcement is not a second join.
        assert!(s.apply(Event::ParticipantJoined { participant: info("pc", "carol") }).is_empty());

        let ev = s.apply(Event::ParticipantLeaving {
            participant_id: "pc".into(),
            identity: "carol".into(),
            reason: Some(LeaveReason::Kicked),
        });
        assert!(
            matches!(&ev[..], [RoomEvent::ParticipantLeaving { participant, reason: Some(LeaveReason::Kicked) }] if participant.name == "CAROL")
        );
        assert_eq!(s.snapshot().remote.len(), 2, "still present while leaving");

        let ev =
            s.apply(Event::ParticipantLeft { participant_id: "pc".into(), identity: "carol".into(), reason: None });
        assert!(matches!(&ev[..], [RoomEvent::ParticipantLeft { participant, .. }] if participant.name == "CAROL"));
        assert!(s.snapshot().participant_by_identity(&"carol".into()).is_none());
        assert!(s.snapshot().participant_by_identity(&"alice".into()).is_some());
    }

    #[test]
    fn messages_resolve_sender_and_recipients() {
        let mut s = state();
        let ev = s.apply(Event::MessageReceived {
            message_id: "m1".into(),
            from: "pb".into(),
            from_identity: "bob".into(),
            from_name: "Bob B.".into(),
            text: "hi".into(),
            to: Some(vec!["pa".into()]),
            sent_at: 5,
        });
        let [RoomEvent::MessageReceived { from, to: Some(to), text, .. }] = &ev[..] else { panic!("{ev:?}") };
        assert_eq!(from.name, "BOB");
        assert_eq!(to[0].identity.as_str(), "alice");
        assert_eq!(text, "hi");

        // A sender the state does not know (a moderator in another breakout room) still
        // yields the message, with the name the event gives.
        let ev = s.apply(Event::MessageReceived {
            message_id: "m2".into(),
            from: "px".into(),
            from_identity: "xavier".into(),
            from_name: "Xavier".into(),
            text: "?".into(),
            to: None,
            sent_at: 6,
        });
        let [RoomEvent::MessageReceived { from, to: None, .. }] = &ev[..] else { panic!("{ev:?}") };
        assert_eq!((from.identity.as_str(), from.name.as_str()), ("xavier", "Xavier"));
    }

    #[test]
    fn disconnected_changes_state_first() {
        let mut s = state();
        let ev = s.apply(Event::Disconnected { reason: DisconnectReason::Kicked });
        assert!(matches!(
            &ev[..],
            [
                RoomEvent::StateChanged(ConnectionState::Disconnected),
                RoomEvent::Disconnected { reason: DisconnectReason::Kicked }
            ]
        ));
        assert_eq!(s.snapshot().connection_state, ConnectionState::Disconnected);
    }

    #[test]
    fn replace_reports_differences() {
        let mut s = state();
        assert!(s.set_connection_state(ConnectionState::Reconnecting).is_some());
        assert!(s.set_connection_state(ConnectionState::Reconnecting).is_none());
        let mut fresh = join(info("pa2", "alice"), vec![info("pc", "carol")]);
        fresh.room.version = 2;
        let (fresh, _) = RoomSnapshot::from_join(fresh);
        let ev = s.replace(fresh);
        let names: Vec<_> = ev.iter().map(RoomEvent::name).collect();
        assert_eq!(names, ["participant_left", "participant_joined", "room_updated"]);
        assert_eq!(s.snapshot().local.id.as_str(), "pa2");
        // The connection state is the engine's to change, not the snapshot's.
        assert_eq!(s.snapshot().connection_state, ConnectionState::Reconnecting);
    }

    #[test]
    fn streams_found_on_a_fresh_join_are_announced() {
        let mut s = state();
        let stream = |key: &str| StreamInfo { key: key.into(), tracks: Vec::new() };
        // Everyone came back as a new participant (a server restart), carol publishing.
        let mut carol = info("pc2", "carol");
        carol.streams = vec![stream("main"), stream("screen")];
        let (fresh, _) = RoomSnapshot::from_join(join(info("pa2", "alice"), vec![carol]));
        let ev = s.replace(fresh);
        let names: Vec<_> = ev.iter().map(RoomEvent::name).collect();
        assert_eq!(names, ["participant_left", "participant_joined", "stream_published", "stream_published"]);
    }

    #[test]
    fn the_local_participant_is_never_remote() {
        let (snap, _) =
            RoomSnapshot::from_join(join(info("pa", "alice"), vec![info("pa", "alice"), info("pb", "bob")]));
        assert_eq!(snap.remote.len(), 1);
        let names: Vec<_> = snap.participants().map(|p| p.identity.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
    }
}
