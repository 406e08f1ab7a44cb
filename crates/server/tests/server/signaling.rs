//! Signaling among several participants: events and their order, messages, kick,
//! duplicate identities, room limits.

use std::time::Duration;

use crate::common::*;
use confer_proto::signal::{DisconnectReason, Event, LeaveReason, Reply, Request, Role};
use confer_proto::ErrorCode;
use serde_json::json;

#[tokio::test]
async fn join_snapshot_and_join_events() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "Room", "managers": ["alice"], "public_meta": "aGk="})).await;
    let (mut alice, a) = t.join(&t.token("r", "alice").await).await;
    assert_eq!(a.room.name, "Room");
    assert_eq!(a.room.public_meta.0, b"hi");
    assert_eq!(a.participant.role, Role::Manager);
    assert!(a.participants.is_empty());
    assert!(!a.resume_token.is_empty());

    let (_bob, b) = t.join(&t.token("r", "bob").await).await;
    assert_eq!(b.participant.role, Role::Member);
    assert_eq!(b.participants.iter().map(|p| p.identity.as_str()).collect::<Vec<_>>(), ["alice"]);
    match alice.event().await.unwrap() {
        Event::ParticipantJoined { participant } => assert_eq!(participant.id, b.participant.id),
        other => panic!("expected participant_joined, got {other:?}"),
    }
}

#[tokio::test]
async fn messages_reach_exactly_their_recipients() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut alice, a) = t.join(&t.token("r", "alice").await).await;
    let (mut bob, b) = t.join(&t.token("r", "bob").await).await;
    let (mut carol, _) = t.join(&t.token("r", "carol").await).await;
    alice.events_until("participant_joined").await;
    alice.events_until("participant_joined").await;
    bob.events_until("participant_joined").await;

    let reply = alice
        .request(Request::SendMessage { text: "psst".into(), to: Some(vec![b.participant.id.clone()]) })
        .await
        .unwrap();
    let Reply::MessageSent { message_id } = reply else { panic!("expected message_sent, got {reply:?}") };
    match bob.event().await.unwrap() {
        Event::MessageReceived { message_id: id, from, from_identity, from_name, text, to, .. } => {
            assert_eq!(
                (id, from, from_identity.as_str(), from_name.as_str(), text.as_str()),
                (message_id, a.participant.id.clone(), "alice", a.participant.name.as_str(), "psst")
            );
            assert_eq!(to, Some(vec![b.participant.id.clone()]));
        }
        other => panic!("expected message_received, got {other:?}"),
    }
    carol.expect_silence(Duration::from_millis(300)).await;

    bob.request(Request::SendMessage { text: "hello all".into(), to: None }).await.unwrap();
    for peer in [&mut alice, &mut carol] {
        match peer.event().await.unwrap() {
            Event::MessageReceived { text, to, .. } => assert_eq!((text.as_str(), to), ("hello all", None)),
            other => panic!("expected message_received, got {other:?}"),
        }
    }
    bob.expect_silence(Duration::from_millis(300)).await;

    let err =
        alice.request(Request::SendMessage { text: "x".into(), to: Some(vec!["PA_nobody".into()]) }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ParticipantNotFound);
    let err = alice.request(Request::SendMessage { text: String::new(), to: None }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::MalformedRequest);
}

#[tokio::test]
async fn messages_need_the_data_grant() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let mute = t.token_pair("r", "mute", confer_proto::token::Grants { data: false, ..Default::default() }, None).await;
    let (mut mute, m) = t.join(&mute.token).await;
    assert!(!m.participant.can_receive_messages);
    let err = mute.request(Request::SendMessage { text: "x".into(), to: None }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn kick_by_a_manager_and_the_order_everyone_sees() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r", "managers": ["alice"]})).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    let (mut bob, _) = t.join(&t.token("r", "bob").await).await;
    let (mut carol, c) = t.join(&t.token("r", "carol").await).await;
    alice.events_until("participant_joined").await;
    alice.events_until("participant_joined").await;
    bob.events_until("participant_joined").await;

    // bob is no manager.
    let err = bob.request(Request::Kick { participant_id: c.participant.id.clone() }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied);

    assert_eq!(alice.request(Request::Kick { participant_id: c.participant.id.clone() }).await.unwrap(), Reply::Ok);
    let seen = carol.until_closed().await;
    assert_eq!(
        seen,
        [
            Event::ParticipantLeaving {
                participant_id: c.participant.id.clone(),
                identity: "carol".into(),
                reason: Some(LeaveReason::Kicked)
            },
            Event::Disconnected { reason: DisconnectReason::Kicked },
        ]
    );
    for peer in [&mut alice, &mut bob] {
        let seen = peer.events_until("participant_left").await;
        assert_eq!(names(&seen), ["participant_leaving", "participant_left"]);
        assert!(
            matches!(&seen[1], Event::ParticipantLeft { reason: Some(LeaveReason::Kicked), identity, .. } if identity.as_str() == "carol")
        );
    }
    let err = alice.request(Request::Kick { participant_id: c.participant.id }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ParticipantNotFound);
}

#[tokio::test]
async fn a_moderator_grant_can_kick_without_being_a_manager() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut m, snap) = t.join(&t.moderator_token("r", "mod").await).await;
    assert_eq!(snap.participant.role, Role::Manager);
    let (mut bob, b) = t.join(&t.token("r", "bob").await).await;
    m.request(Request::Kick { participant_id: b.participant.id }).await.unwrap();
    assert_eq!(names(&bob.until_closed().await), ["participant_leaving", "disconnected"]);
}

#[tokio::test]
async fn leave_is_seen_without_reason() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    let (mut bob, b) = t.join(&t.token("r", "bob").await).await;
    alice.events_until("participant_joined").await;
    assert_eq!(bob.request(Request::Leave).await.unwrap(), Reply::Ok);
    let leaving =
        Event::ParticipantLeaving { participant_id: b.participant.id.clone(), identity: "bob".into(), reason: None };
    assert_eq!(bob.until_closed().await, [leaving.clone(), Event::Disconnected { reason: DisconnectReason::Left }]);
    let left = Event::ParticipantLeft { participant_id: b.participant.id, identity: "bob".into(), reason: None };
    assert_eq!(alice.events_until("participant_left").await, [leaving, left]);
}

#[tokio::test]
async fn a_second_join_with_the_same_identity_replaces_the_first() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    let (mut bob1, b1) = t.join(&t.token("r", "bob").await).await;
    alice.events_until("participant_joined").await;
    let (_bob2, b2) = t.join(&t.token("r", "bob").await).await;
    assert_ne!(b1.participant.id, b2.participant.id);
    assert_eq!(b2.participants.len(), 1, "the replaced participant is gone from the snapshot");
    assert_eq!(bob1.until_closed().await.last(), Some(&Event::Disconnected { reason: DisconnectReason::Replaced }));
    let seen = alice.events_until("participant_joined").await;
    assert_eq!(names(&seen), ["participant_leaving", "participant_left", "participant_joined"]);
}

#[tokio::test]
async fn members_only_rooms_and_room_limits() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "club", "name": "club", "members": ["alice", "bob"]})).await;
    t.create_room(json!({"id": "small", "name": "small", "policy": {"max_participants": 2}})).await;

    t.join(&t.token("club", "alice").await).await;
    let mut eve = Peer::connect(&t.ws_url()).await;
    assert_eq!(eve.join(&t.token("club", "eve").await).await.unwrap_err().code, ErrorCode::NotAMember);

    let (_a, _) = t.join(&t.token("small", "a").await).await;
    let (_b, _) = t.join(&t.token("small", "b").await).await;
    let mut c = Peer::connect(&t.ws_url()).await;
    assert_eq!(c.join(&t.token("small", "c").await).await.unwrap_err().code, ErrorCode::RoomFull);
    // Rejoining as someone already inside replaces them and does not count twice.
    t.join(&t.token("small", "b").await).await;
}

#[tokio::test]
async fn requests_before_join_are_refused() {
    let t = TestServer::start().await;
    let mut p = Peer::connect(&t.ws_url()).await;
    assert_eq!(p.request(Request::Ping).await.unwrap_err().code, ErrorCode::NotJoined);
    t.create_room(json!({"id": "r", "name": "r"})).await;
    p.join(&t.token("r", "a").await).await.unwrap();
    assert_eq!(p.request(Request::Ping).await.unwrap(), Reply::Pong);
    let again = p.join(&t.token("r", "a").await).await.unwrap_err();
    assert_eq!(again.code, ErrorCode::MalformedRequest);
}

#[tokio::test]
async fn kicking_yourself_is_refused() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut m, snap) = t.join(&t.moderator_token("r", "mod").await).await;
    let err = m.request(Request::Kick { participant_id: snap.participant.id }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::MalformedRequest);
    assert_eq!(m.request(Request::Ping).await.unwrap(), Reply::Pong);
}

#[tokio::test]
async fn a_renewed_token_without_the_data_grant_stops_messages() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    let (mut bob, _) = t.join(&t.token("r", "bob").await).await;
    alice.events_until("participant_joined").await;
    let no_data =
        t.token_pair("r", "bob", confer_proto::token::Grants { data: false, ..Default::default() }, None).await;
    bob.request(Request::UpdateToken { token: no_data.token }).await.unwrap();
    alice.request(Request::SendMessage { text: "still there?".into(), to: None }).await.unwrap();
    bob.expect_silence(Duration::from_millis(300)).await;
    let session: confer_proto::session::SessionInfo =
        t.api(reqwest::Method::GET, "/v1/rooms/r/session").send().await.unwrap().json().await.unwrap();
    assert!(!session.participants.iter().find(|p| p.identity.as_str() == "bob").unwrap().can_receive_messages);
}
