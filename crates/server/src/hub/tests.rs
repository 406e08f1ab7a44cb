//! The hub's rules, with no media thread: what it allows of publications and the
//! commands it sends the media thread, and the meeting controls (lobby, lock, co-hosts,
//! hands, reactions) as the participants' queues see them.

use std::sync::Arc;

use confer_proto::room::{Room, RoomPolicy};
use confer_proto::signal::JoinRequest;
use confer_proto::token::Grants;
use confer_proto::track::{PublishTrack, StreamInfo, SubscriptionOptions, TrackKind, TrackSource};
use confer_proto::{ErrorCode, ParticipantId};
use tokio::sync::mpsc;

use super::*;
use crate::sfu::{Command, PublishAnswer, Subscribe};

struct Fixture {
    hub: Arc<Hub>,
    commands: mpsc::UnboundedReceiver<Command>,
    // Kept so that the participants' links stay open.
    _links: Vec<mpsc::Receiver<super::participant::Queued>>,
    policy: RoomPolicy,
}

fn room() -> Room {
    Room {
        id: "r".into(),
        name: "r".into(),
        members: Vec::new(),
        managers: vec!["host".into()],
        public_meta: Default::default(),
        private_meta: Default::default(),
        policy: RoomPolicy::default(),
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}

impl Fixture {
    fn new() -> Self {
        let (sfu, commands) = SfuHandle::detached();
        let limits = crate::ServerConfig::default().limits;
        let hub = Hub::new(HubConfig { limits, backlog: 1024, turn: None, webhooks: Default::default() }, sfu);
        Fixture { hub, commands, _links: Vec::new(), policy: RoomPolicy::default() }
    }

    fn join(&mut self, identity: &str, grants: Grants) -> ParticipantId {
        self.try_join(identity, grants).expect("joined")
    }

    fn try_join(&mut self, identity: &str, grants: Grants) -> ApiResult<ParticipantId> {
        let (tx, rx) = mpsc::channel(4096);
        self._links.push(rx);
        let link =
            Link { conn_id: self._links.len() as u64, tx, kill: Default::default(), closing: Default::default() };
        let token = JoinToken {
            room: "r".into(),
            identity: identity.into(),
            name: identity.into(),
            grants,
            issued_at: 0,
            expires_at: u64::MAX / 2000,
        };
        let req = JoinRequest {
            token: String::new(),
            room: None,
            protocol: confer_proto::PROTOCOL_VERSION,
            name: None,
            context: serde_json::Value::Null,
            resume: None,
        };
        let room = Room { policy: self.policy.clone(), ..room() };
        self.hub.join(room, token, &req, 1, link, Now::system()).map(|a| a.participant)
    }

    /// The names of the events queued for the `n`th one to join (from 0) since last asked.
    fn events(&mut self, n: usize) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(q) = self._links[n].try_recv() {
            if let Outbound::Frame(text) = q.out {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                names.push(v["event"].as_str().or(v["result"]["type"].as_str()).unwrap_or("?").to_owned());
            }
        }
        names
    }

    /// Publishes `tracks` as stream `key`, as if the media thread accepted the offer.
    fn publish(&mut self, who: &ParticipantId, key: &str, tracks: Vec<PublishTrack>) -> ApiResult<StreamInfo> {
        let pending = self.hub.publish(&"r".into(), who, key.into(), tracks, "v=0".into())?;
        let answer = Ok(PublishAnswer { sdp: String::new(), codecs: Vec::new() });
        match self.hub.publish_done(&"r".into(), who, pending.stream, answer, Now::system())? {
            confer_proto::signal::Reply::Published { stream, .. } => Ok(stream),
            other => panic!("published, not {other:?}"),
        }
    }

    fn drain(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.commands.try_recv().ok()).collect()
    }
}

fn track(mid: &str, kind: TrackKind, source: Option<TrackSource>) -> PublishTrack {
    PublishTrack { mid: mid.into(), source, kind, simulcast: false, muted: false }
}

#[test]
fn a_participant_publishes_a_bounded_number_of_streams() {
    let mut f = Fixture::new();
    let alice = f.join("alice", Grants::default());
    for i in 0..media::MAX_STREAMS {
        // Pending with the media thread counts as much as live.
        let pending =
            f.hub.publish(&"r".into(), &alice, format!("s{i}"), vec![track("0", TrackKind::Audio, None)], "v=0".into());
        assert!(pending.is_ok(), "stream {i}");
    }
    let err = f
        .hub
        .publish(&"r".into(), &alice, "one-more".into(), vec![track("0", TrackKind::Audio, None)], "v=0".into())
        .err()
        .expect("refused");
    assert_eq!(err.code, ErrorCode::LimitExceeded);
}

#[test]
fn tracks_say_their_source_and_echo_their_mid() {
    let mut f = Fixture::new();
    let alice = f.join("alice", Grants::default());
    let stream = f
        .publish(&alice, "main", vec![track("a0", TrackKind::Audio, None), track("v1", TrackKind::Video, None)])
        .unwrap();
    let got: Vec<_> = stream.tracks.iter().map(|t| (t.mid.as_deref(), t.source)).collect();
    assert_eq!(got, [(Some("a0"), Some(TrackSource::Microphone)), (Some("v1"), Some(TrackSource::Camera))]);
}

#[test]
fn a_moderators_stop_follows_the_source_into_a_new_publication() {
    let mut f = Fixture::new();
    let host = f.join("host", Grants::default());
    let alice = f.join("alice", Grants::default());
    let stream = f.publish(&alice, "main", vec![track("1", TrackKind::Video, Some(TrackSource::Camera))]).unwrap();
    f.hub.censor(&"r".into(), &host, &stream.tracks[0].id, true, Now::system()).unwrap();
    f.hub.unpublish(&"r".into(), &alice, "main", Now::system()).unwrap();
    f.drain();

    // Published again (under another key, even): it starts stopped.
    let again = f.publish(&alice, "cam", vec![track("1", TrackKind::Video, None)]).unwrap();
    assert!(again.tracks[0].censored, "{again:?}");
    let stopped = f.drain().into_iter().any(
        |c| matches!(c, Command::SetTrackState { track_id, censored: true, .. } if track_id == again.tracks[0].id),
    );
    assert!(stopped, "the media thread is told before anyone can subscribe");
    // Lifted, it stays lifted for the next one; other sources were never stopped.
    f.hub.censor(&"r".into(), &host, &again.tracks[0].id, false, Now::system()).unwrap();
    f.hub.unpublish(&"r".into(), &alice, "cam", Now::system()).unwrap();
    let third = f.publish(&alice, "main", vec![track("1", TrackKind::Video, None)]).unwrap();
    assert!(!third.tracks[0].censored);
    let mic = f.publish(&alice, "mic", vec![track("2", TrackKind::Audio, None)]).unwrap();
    assert!(!mic.tracks[0].censored);
}

#[test]
fn without_the_data_grant_no_data_track_is_sent() {
    let mut f = Fixture::new();
    let alice = f.join("alice", Grants::default());
    let bob = f.join("bob", Grants { data: false, ..Grants::default() });
    let carol = f.join("carol", Grants::default());
    f.publish(&alice, "main", vec![track("1", TrackKind::Video, None), track("chat", TrackKind::Data, None)]).unwrap();
    f.drain();
    for who in [&bob, &carol] {
        f.hub.subscribe(&"r".into(), who, &alice, "main", SubscriptionOptions::default()).unwrap();
    }
    let kinds: Vec<(ParticipantId, Vec<TrackKind>)> = f
        .drain()
        .into_iter()
        .filter_map(|c| match c {
            Command::Subscribe(Subscribe { subscriber, tracks, .. }) => {
                Some((subscriber, tracks.iter().map(|t| t.kind).collect()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [(bob, vec![TrackKind::Video]), (carol, vec![TrackKind::Video, TrackKind::Data])]);
}

fn r() -> RoomId {
    "r".into()
}

#[test]
fn the_lobby_holds_knocks_until_a_moderator_answers() {
    let mut f = Fixture::new();
    f.policy.lobby = true;
    let host = f.join("host", Grants::default());
    let bob = f.join("bob", Grants::default());
    let carol = f.join("carol", Grants::default());
    assert_eq!(f.events(0), ["joined", "knocking", "knocking"]);
    assert_eq!(f.events(1), ["knocking"], "bob's join is answered with a wait");
    // Waiting, bob is nobody in the meeting and can do nothing.
    assert_eq!(f.hub.session(&r()).unwrap().participants.len(), 1);
    assert_eq!(f.hub.raise_hand(&r(), &bob, Now::system()).unwrap_err().code, ErrorCode::NotAdmitted);
    // Someone waiting cannot let anyone in either.
    assert_eq!(f.hub.admit(&r(), &bob, Some(&carol), Now::system()).unwrap_err().code, ErrorCode::NotAdmitted);

    f.hub.admit(&r(), &host, Some(&bob), Now::system()).unwrap();
    f.hub.deny(&r(), &host, Some(&carol), Now::system()).unwrap();
    assert_eq!(f.events(1), ["admitted"]);
    assert_eq!(f.events(2), ["knocking", "denied", "disconnected"]);
    assert_eq!(f.events(0), ["knock_ended", "participant_joined", "knock_ended"]);
    let names: Vec<_> = f.hub.session(&r()).unwrap().participants.into_iter().map(|p| p.identity.0).collect();
    assert_eq!(names, ["host", "bob"]);
    f.hub.raise_hand(&r(), &bob, Now::system()).unwrap();
}

#[test]
fn a_locked_meeting_admits_only_managers() {
    let mut f = Fixture::new();
    let host = f.join("host", Grants::default());
    let alice = f.join("alice", Grants::default());
    assert_eq!(f.hub.set_locked(&r(), &alice, true, Now::system()).unwrap_err().code, ErrorCode::PermissionDenied);
    f.hub.set_locked(&r(), &host, true, Now::system()).unwrap();
    assert_eq!(f.try_join("bob", Grants::default()).unwrap_err().code, ErrorCode::RoomLocked);
    // A manager coming back (from another device) still gets in.
    f.try_join("host", Grants::default()).expect("a manager joins a locked meeting");
}

#[test]
fn a_co_host_moderates_until_demoted() {
    let mut f = Fixture::new();
    let host = f.join("host", Grants::default());
    let alice = f.join("alice", Grants::default());
    let bob = f.join("bob", Grants::default());
    assert_eq!(f.hub.mute_all(&r(), &alice, Now::system()).unwrap_err().code, ErrorCode::PermissionDenied);
    // Only a manager makes co-hosts.
    assert_eq!(
        f.hub.set_co_host(&r(), &bob, &alice, true, Now::system()).unwrap_err().code,
        ErrorCode::PermissionDenied
    );
    f.hub.set_co_host(&r(), &host, &alice, true, Now::system()).unwrap();
    assert!(f.events(2).contains(&"participant_updated".to_owned()));
    f.hub.mute_all(&r(), &alice, Now::system()).unwrap();
    assert!(f.hub.set_co_host(&r(), &alice, &bob, true, Now::system()).is_err(), "co-hosts do not promote");
    f.hub.set_co_host(&r(), &host, &alice, false, Now::system()).unwrap();
    assert_eq!(f.hub.kick(&r(), Some(&alice), &bob, Now::system()).unwrap_err().code, ErrorCode::PermissionDenied);
    // The room's managers are not demoted by anyone in the call.
    assert!(f.hub.set_co_host(&r(), &host, &host, false, Now::system()).is_err());
}

#[test]
fn hands_are_kept_in_order_and_go_with_their_owner() {
    let mut f = Fixture::new();
    let host = f.join("host", Grants::default());
    let alice = f.join("alice", Grants::default());
    let bob = f.join("bob", Grants::default());
    let carol = f.join("carol", Grants::default());
    for who in [&bob, &alice, &carol, &bob] {
        f.hub.raise_hand(&r(), who, Now::system()).unwrap();
    }
    // Only a moderator lowers someone else's hand.
    let err = f.hub.lower_hand(&r(), &alice, Some(&bob), Now::system()).unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    f.hub.lower_hand(&r(), &host, Some(&alice), Now::system()).unwrap();
    f.hub.leave(&r(), &carol, Now::system());
    let hands = {
        let sessions = f.hub.lock();
        sessions[&r()].hands.iter().map(|h| h.participant_id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(hands, [bob]);
}

#[test]
fn reactions_are_rate_limited() {
    let mut f = Fixture::new();
    let alice = f.join("alice", Grants::default());
    let sent = (0..10)
        .filter(|_| f.hub.react(&r(), &alice, confer_proto::signal::Reaction::Clap, Now::system()).is_ok())
        .count();
    assert_eq!(sent, 4, "a burst of four, then one a second");
}

#[test]
fn breakout_rooms_take_people_out_and_bring_them_back() {
    let mut f = Fixture::new();
    let host = f.join("host", Grants::default());
    let people: Vec<ParticipantId> = ["a", "b", "c", "d"].iter().map(|w| f.join(w, Grants::default())).collect();
    let names = vec!["One".to_owned(), "Two".to_owned()];
    // Only moderators split the meeting.
    let refused = f.hub.create_breakouts(&r(), &people[0], names.clone(), false, Now::system()).unwrap_err();
    assert_eq!(refused.code, ErrorCode::PermissionDenied);
    f.hub.create_breakouts(&r(), &host, names, false, Now::system()).unwrap();
    f.hub.assign_breakouts(&r(), &host, Vec::new(), true, Now::system()).unwrap();
    f.hub.open_breakouts(&r(), &host, Now::system()).unwrap();
    let in_main = f.hub.session(&r()).unwrap().participants.len();
    assert_eq!(in_main, 1, "only the host stays");
    for room in ["r~1", "r~2"] {
        let s = f.hub.session(&room.into()).unwrap_or_else(|| panic!("{room} is live"));
        assert_eq!(s.participants.len(), 2, "{room}: two each, evenly");
    }
    // Choosing is not allowed: a participant cannot go elsewhere by itself.
    let at: RoomId = if f.hub.session(&"r~1".into()).unwrap().participants.iter().any(|p| p.id == people[0]) {
        "r~1".into()
    } else {
        "r~2".into()
    };
    let refused = f.hub.join_breakout(&at, &people[0], None, Now::system()).unwrap_err();
    assert_eq!(refused.code, ErrorCode::PermissionDenied);
    f.hub.close_breakouts(&r(), &host, Some(Duration::ZERO), Now::system()).unwrap();
    f.hub.tick(Now::system());
    assert_eq!(f.hub.session(&r()).unwrap().participants.len(), 5, "everyone is back");
    assert!(f.hub.session(&"r~1".into()).is_none() && f.hub.session(&"r~2".into()).is_none());
    // Ending the meeting from the main room ends it everywhere.
    assert!(f.hub.end_session(&r(), DisconnectReason::SessionEnded, Now::system()));
    assert!(f.hub.sessions().is_empty());
}

#[test]
fn after_a_shutdown_nobody_joins() {
    let mut f = Fixture::new();
    f.join("ann", Grants::default());
    f.hub.shutdown(Now::system());
    assert!(f.events(0).contains(&"disconnected".to_owned()));
    // A client told of the shutdown comes straight back, before the listener closes.
    let refused = f.try_join("ann", Grants::default()).expect_err("a join after the shutdown");
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(f.hub.sessions().is_empty());
}
