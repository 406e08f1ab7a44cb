//! A room on a worker: its members' transports, who consumes which track, and its
//! speakers.
//!
//! The room is what keeps forwarding local: a frame from a producer goes to the
//! transports in [`Room::consumers`] for its track and to no other, and a member's
//! transports are found by id, not by scanning.

use std::collections::HashMap;

use confer_proto::track::TrackId;
use confer_proto::{ParticipantId, RoomId};

use super::audio_level::Speakers;
use super::transport::{Role, TransportId};

/// A participant's transports.
#[derive(Debug, Default, Clone, Copy)]
pub struct Member {
    pub publisher: Option<TransportId>,
    pub subscriber: Option<TransportId>,
}

impl Member {
    pub fn get(&self, role: Role) -> Option<TransportId> {
        match role {
            Role::Publisher => self.publisher,
            Role::Subscriber => self.subscriber,
        }
    }

    fn slot(&mut self, role: Role) -> &mut Option<TransportId> {
        match role {
            Role::Publisher => &mut self.publisher,
            Role::Subscriber => &mut self.subscriber,
        }
    }

    fn is_empty(&self) -> bool {
        self.publisher.is_none() && self.subscriber.is_none()
    }
}

#[derive(Debug)]
pub struct Room {
    pub id: RoomId,
    pub members: HashMap<ParticipantId, Member>,
    /// The subscriber transports with a consumer of each track.
    pub consumers: HashMap<TrackId, Vec<TransportId>>,
    pub speakers: Speakers,
    /// Participants whose network metrics the room's members follow.
    pub watched: Vec<ParticipantId>,
}

impl Room {
    pub fn new(id: RoomId) -> Self {
        Self {
            id,
            members: HashMap::new(),
            consumers: HashMap::new(),
            speakers: Speakers::default(),
            watched: Vec::new(),
        }
    }

    pub fn transport(&self, participant: &ParticipantId, role: Role) -> Option<TransportId> {
        self.members.get(participant).and_then(|m| m.get(role))
    }

    pub fn attach(&mut self, participant: ParticipantId, role: Role, id: TransportId) {
        *self.members.entry(participant).or_default().slot(role) = Some(id);
    }

    /// Forgets a transport; returns whether the room has no transport left.
    pub fn detach(&mut self, participant: &ParticipantId, id: TransportId) -> bool {
        if let Some(member) = self.members.get_mut(participant) {
            for role in [Role::Publisher, Role::Subscriber] {
                if member.get(role) == Some(id) {
                    *member.slot(role) = None;
                }
            }
            if member.is_empty() {
                self.members.remove(participant);
                self.speakers.forget(participant);
            }
        }
        self.set_consumed(id, std::iter::empty());
        self.members.is_empty()
    }

    /// Records the tracks `subscriber` now consumes, replacing what it consumed before.
    pub fn set_consumed<'a>(&mut self, subscriber: TransportId, tracks: impl Iterator<Item = &'a TrackId>) {
        self.consumers.retain(|_, list| {
            list.retain(|t| *t != subscriber);
            !list.is_empty()
        });
        for track in tracks {
            let list = self.consumers.entry(track.clone()).or_default();
            if !list.contains(&subscriber) {
                list.push(subscriber);
            }
        }
    }

    pub fn consumers_of(&self, track: &TrackId) -> &[TransportId] {
        self.consumed(track).map_or(&[], |(_, consumers)| consumers)
    }

    /// The room's own key for `track` with its consumers: borrowed from the room alone,
    /// so that the forwarding path needs no copy of the track's id.
    pub fn consumed<'a>(&'a self, track: &TrackId) -> Option<(&'a TrackId, &'a [TransportId])> {
        self.consumers.get_key_value(track).map(|(k, v)| (k, v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumer_index_follows_each_subscriber() {
        let mut room = Room::new("r".into());
        let (a, b) = (TransportId(1), TransportId(2));
        let (v, s): (TrackId, TrackId) = ("v".into(), "s".into());
        room.attach("pa".into(), Role::Subscriber, a);
        room.attach("pb".into(), Role::Subscriber, b);
        room.set_consumed(a, [&v, &s].into_iter());
        room.set_consumed(b, [&v].into_iter());
        assert_eq!(room.consumers_of(&v), [a, b]);
        room.set_consumed(a, [&s].into_iter());
        assert_eq!(room.consumers_of(&v), [b]);
        assert!(!room.detach(&"pb".into(), b));
        assert!(room.consumers_of(&v).is_empty());
        assert_eq!(room.consumers_of(&s), [a]);
        assert!(room.detach(&"pa".into(), a), "the room is empty");
    }
}
