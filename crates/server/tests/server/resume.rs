//! Dropped connections: resume as the same participant with exact replay, the grace
//! period, vanished peers, and token expiry while connected.

use std::time::Duration;

use crate::common::*;
use confer_proto::signal::{DisconnectReason, Event, JoinRequest, LeaveReason, Reply, Request, Resume};
use confer_proto::ErrorCode;
use confer_server::ServerConfig;
use serde_json::json;

fn quick_config() -> ServerConfig {
    let mut c = config();
    c.limits.resume_grace_ms = 1500;
    c.limits.ping_interval_ms = 200;
    c
}

#[tokio::test]
async fn resume_replays_missed_events_and_others_see_nothing() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    let bob_token = t.token("r", "bob").await;
    let (mut bob, b) = t.join(&bob_token).await;
    alice.events_until("participant_joined").await;
    alice.request(Request::SendMessage { text: "one".into(), to: None }).await.unwrap();
    bob.events_until("message_received").await;
    let last_seq = bob.last_seq;
    drop(bob);

    // While bob is away: a message and a newcomer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    alice.request(Request::SendMessage { text: "two".into(), to: None }).await.unwrap();
    let (_carol, _) = t.join(&t.token("r", "carol").await).await;

    let mut bob = Peer::connect(&t.ws_url()).await;
    let resume = Resume { participant_id: b.participant.id.clone(), resume_token: b.resume_token.clone(), last_seq };
    let reply = bob.join_with(JoinRequest { resume: Some(resume.clone()), ..join_request(&bob_token) }).await.unwrap();
    assert_eq!(reply, Reply::Resumed { participant_id: b.participant.id.clone(), replayed: 2 });
    bob.last_seq = last_seq;
    let replayed = [bob.event().await.unwrap(), bob.event().await.unwrap()];
    assert!(matches!(&replayed[0], Event::MessageReceived { text, .. } if text == "two"));
    assert!(
        matches!(&replayed[1], Event::ParticipantJoined { participant } if participant.identity.as_str() == "carol")
    );
    // bob is still bob, and still reachable.
    alice
        .request(Request::SendMessage { text: "three".into(), to: Some(vec![b.participant.id.clone()]) })
        .await
        .unwrap();
    assert!(matches!(bob.event().await.unwrap(), Event::MessageReceived { text, .. } if text == "three"));
    // alice saw carol join, and nothing about bob.
    let seen = alice.events_until("participant_joined").await;
    assert_eq!(names(&seen), ["participant_joined"]);
    alice.expect_silence(Duration::from_millis(300)).await;

    // A stale resume token, or one from the future, is refused.
    let mut again = Peer::connect(&t.ws_url()).await;
    let bad = Resume { resume_token: "nope".into(), ..resume.clone() };
    let err = again.join_with(JoinRequest { resume: Some(bad), ..join_request(&bob_token) }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ResumeFailed);
    let future = Resume { last_seq: 1000, ..resume };
    let err = again.join_with(JoinRequest { resume: Some(future), ..join_request(&bob_token) }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ResumeFailed);
}

#[tokio::test]
async fn a_vanished_peer_is_removed_after_the_grace_period() {
    let t = TestServer::with(quick_config()).await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    let bob_token = t.token("r", "bob").await;
    // bob stops reading (so stops answering pings) but keeps the socket open: a
    // half-open connection, as after a network cut.
    let (bob, b) = t.join(&bob_token).await;
    alice.events_until("participant_joined").await;
    let left = alice.events_until("participant_left").await;
    assert_eq!(
        left.last(),
        Some(&Event::ParticipantLeft {
            participant_id: b.participant.id.clone(),
            identity: "bob".into(),
            reason: Some(LeaveReason::ConnectionLost)
        })
    );
    drop(bob);
    // Too late to resume now.
    let mut late = Peer::connect(&t.ws_url()).await;
    let resume = Resume { participant_id: b.participant.id, resume_token: b.resume_token, last_seq: 0 };
    let err = late.join_with(JoinRequest { resume: Some(resume), ..join_request(&bob_token) }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ResumeFailed);
}

#[tokio::test]
async fn an_expired_join_token_disconnects_unless_renewed() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    let short = t.token_pair("r", "bob", Default::default(), Some(2)).await;
    let (mut bob, _) = t.join(&short.token).await;
    let renewed = t.token_pair("r", "carol", Default::default(), Some(2)).await;
    let (mut carol, _) = t.join(&renewed.token).await;
    let fresh = t.token("r", "carol").await;
    assert!(matches!(carol.request(Request::UpdateToken { token: fresh }).await.unwrap(), Reply::TokenUpdated { .. }));

    let seen = bob.until_closed().await;
    assert_eq!(seen.last(), Some(&Event::Disconnected { reason: DisconnectReason::TokenExpired }));
    let seen = alice.events_until("participant_left").await;
    assert!(
        matches!(seen.last(), Some(Event::ParticipantLeft { reason: Some(LeaveReason::TokenExpired), identity, .. }) if identity.as_str() == "bob")
    );
    // carol renewed in time and is still in.
    assert_eq!(carol.request(Request::Ping).await.unwrap(), Reply::Pong);
}

#[tokio::test]
async fn a_resume_takes_over_a_connection_the_server_still_thinks_alive() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let token = t.token("r", "bob").await;
    let (mut old, b) = t.join(&token).await;
    let mut new = Peer::connect(&t.ws_url()).await;
    let resume = Resume { participant_id: b.participant.id.clone(), resume_token: b.resume_token, last_seq: 0 };
    let reply = new.join_with(JoinRequest { resume: Some(resume), ..join_request(&token) }).await.unwrap();
    assert!(matches!(reply, Reply::Resumed { .. }));
    // The old socket is closed by the server, without any event.
    assert!(old.until_closed().await.is_empty());
    assert_eq!(new.request(Request::Ping).await.unwrap(), Reply::Pong);
}
