//! Joining: the snapshot, what the others see, leaving, and refused joins.

use crate::common::*;
use confer_client::proto::signal::DisconnectReason;
use confer_client::proto::ErrorCode;
use confer_client::{ClientError, ConnectionState, Room, RoomEvent};

#[tokio::test]
async fn join_gives_a_snapshot_and_the_others_see_it() {
    let server = TestServer::start().await;
    server.create_room("r1").await;

    let (alice, mut alice_events) = server.join("r1", "alice").await;
    let RoomEvent::Connected { snapshot } = next_event(&mut alice_events).await else {
        panic!("the first event is connected")
    };
    assert_eq!(snapshot.room.id.as_str(), "r1");
    assert_eq!(snapshot.local.identity.as_str(), "alice");
    assert!(snapshot.remote.is_empty());
    assert_eq!(alice.connection_state(), ConnectionState::Connected);

    // Bob uses the WebSocket form of the URL, and a display name of his own.
    let token = server.token("r1", "bob").await;
    let ws_url = format!("ws://{}/v1/signal", server.addr);
    let (bob, mut bob_events) =
        Room::connect(&ws_url, &token, fast_options().with_name("Bob B.")).await.expect("bob joins");
    expect_connected(&mut bob_events).await;
    let bob_state = bob.state();
    assert_eq!(bob_state.remote.len(), 1);
    assert_eq!(bob_state.remote[0].identity.as_str(), "alice");
    assert_eq!(bob.local_participant().name, "Bob B.");

    let (joined, _) =
        wait_for(&mut alice_events, "bob joining", |e| matches!(e, RoomEvent::ParticipantJoined { .. })).await;
    let RoomEvent::ParticipantJoined { participant } = joined else { unreachable!() };
    assert_eq!(participant.identity.as_str(), "bob");
    assert_eq!(participant.name, "Bob B.");
    assert_eq!(participant.id, bob.local_participant().id);
    // The state already holds what the event says.
    let seen = alice.participant_by_identity(&"bob".into()).expect("alice knows bob");
    assert_eq!(seen.id, participant.id);

    bob.disconnect().await.expect("bob leaves");
    let (last, _) = wait_for(&mut bob_events, "bob's disconnected", |e| e.is_final()).await;
    assert!(matches!(last, RoomEvent::Disconnected { reason: DisconnectReason::Left }), "{last:?}");
    assert!(bob_events.recv().await.is_none(), "nothing follows the final event");
    assert_eq!(bob.connection_state(), ConnectionState::Disconnected);
    assert!(matches!(bob.send_message("late", None).await, Err(ClientError::Disconnected { .. })));
    bob.disconnect().await.expect("leaving twice is fine");

    let (left, _) =
        wait_for(&mut alice_events, "bob leaving", |e| matches!(e, RoomEvent::ParticipantLeft { .. })).await;
    let RoomEvent::ParticipantLeft { participant, .. } = left else { unreachable!() };
    assert_eq!(participant.name, "Bob B.", "the left event still carries bob's info");
    assert!(alice.state().remote.is_empty());
}

#[tokio::test]
async fn refused_joins_carry_the_error_code() {
    let server = TestServer::start().await;
    server.create_room("r1").await;
    server.create_room("r2").await;

    let token = server.token("r1", "alice").await;
    let err = Room::connect(&server.url, &token, fast_options().with_room("r2")).await.expect_err("wrong room");
    assert_eq!(err.code(), Some(ErrorCode::RoomMismatch), "{err}");

    let err = Room::connect(&server.url, "not-a-token", fast_options()).await.expect_err("bad token");
    assert_eq!(err.code(), Some(ErrorCode::InvalidToken), "{err}");

    let err = Room::connect("ftp://nowhere", &token, fast_options()).await.expect_err("bad url");
    assert!(matches!(err, ClientError::InvalidUrl { .. }), "{err}");

    // The right room named explicitly is fine.
    let (room, _events) = Room::connect(&server.url, &token, fast_options().with_room("r1")).await.expect("joins");
    room.disconnect().await.expect("leaves");
}

#[tokio::test]
async fn a_renewed_token_is_accepted() {
    let server = TestServer::start().await;
    server.create_room("r1").await;
    let (alice, _events) = server.join("r1", "alice").await;

    let renewed = server.token("r1", "alice").await;
    let expires_at = alice.update_token(renewed).await.expect("renewed");
    assert_eq!(alice.state().token_expires_at, expires_at);

    let someone_else = server.token("r1", "mallory").await;
    let err = alice.update_token(someone_else).await.expect_err("another identity's token");
    assert!(err.code().is_some(), "refused by the server: {err}");
}

/// Issue 12: with a refresh token the SDK renews a 3-second join token before it runs
/// out, again and again; the server never removes the participant, and each renewal is
/// an event. Without one, the same token ends the call with `token_expired`.
#[tokio::test]
async fn a_refresh_token_keeps_the_participant_in_past_many_token_lifetimes() {
    let server = TestServer::start_with(confer_server::ServerConfig { token_ttl_secs: 3, ..Default::default() }).await;
    server.create_room("long").await;
    let pair = server.token_pair("long", "alice", Default::default()).await;
    let options = fast_options().with_refresh_token(pair.refresh_token.clone());
    let (alice, mut events) = Room::connect(&server.url, &pair.token, options).await.expect("alice joins");
    let (_bob, mut bob_events) = server.join("long", "bob").await;
    let started = std::time::Instant::now();
    let mut renewals = 0;
    while started.elapsed() < std::time::Duration::from_secs(12) {
        match tokio::time::timeout(std::time::Duration::from_millis(500), events.recv()).await {
            Ok(Some(RoomEvent::TokenRenewed { .. })) => renewals += 1,
            Ok(Some(e)) => assert!(!e.is_final(), "alice's call ended: {e:?}"),
            Ok(None) => panic!("alice's events closed"),
            Err(_) => {}
        }
    }
    assert!(renewals >= 4, "{renewals} renewals of a 3 s token in 12 s");
    assert_eq!(alice.connection_state(), ConnectionState::Connected);
    // Bob, who has no refresh token, was removed when his ran out.
    let (ended, _) = wait_for(&mut bob_events, "bob's end", RoomEvent::is_final).await;
    assert!(matches!(ended, RoomEvent::Disconnected { reason: DisconnectReason::TokenExpired }), "{ended:?}");
    // The refresh token given to the SDK was rotated: using it again is a second use.
    let again = server.refresh(&pair.refresh_token).await.expect_err("a used refresh token");
    assert_eq!(again.code, ErrorCode::RefreshTokenUsed, "{again:?}");
}

/// A refresh token stops working for a participant who was kicked, and for a room
/// that was deleted, each with its own catalog code; of two concurrent uses one wins.
#[tokio::test]
async fn refresh_tokens_are_refused_after_a_kick_a_deleted_room_or_a_second_use() {
    let server = TestServer::start().await;
    server.create_room("r").await;
    let token = server.moderator_token("r", "mod").await;
    let (moderator, _events) = Room::connect(&server.url, &token, fast_options()).await.expect("joins");
    let bob = server.token_pair("r", "bob", Default::default()).await;
    let (bob_room, _bob_events) = Room::connect(&server.url, &bob.token, fast_options()).await.expect("bob joins");
    moderator.kick(&bob_room.local_participant().id).await.expect("kicked");
    let refused = server.refresh(&bob.refresh_token).await.expect_err("kicked");
    assert_eq!(refused.code, ErrorCode::TokenRevoked, "{refused:?}");

    let carol = server.token_pair("r", "carol", Default::default()).await;
    let (a, b) = tokio::join!(server.refresh(&carol.refresh_token), server.refresh(&carol.refresh_token));
    let codes: Vec<_> = [&a, &b].iter().map(|r| r.as_ref().err().map(|e| e.code)).collect();
    assert!(codes.contains(&None) && codes.contains(&Some(ErrorCode::RefreshTokenUsed)), "{codes:?}");

    let dave = server.token_pair("r", "dave", Default::default()).await;
    server.delete_room("r").await;
    let refused = server.refresh(&dave.refresh_token).await.expect_err("room deleted");
    assert_eq!(refused.code, ErrorCode::RoomNotFound, "{refused:?}");
}
