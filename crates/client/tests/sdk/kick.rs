//! Kicking: only moderators may, and the kicked participant is told and not reconnected.

use crate::common::*;
use confer_client::proto::signal::{DisconnectReason, LeaveReason};
use confer_client::proto::ErrorCode;
use confer_client::{ConnectionState, Room, RoomEvent};

#[tokio::test]
async fn a_moderator_kicks_and_the_kicked_one_stays_out() {
    let server = TestServer::start().await;
    server.create_room("k").await;
    let token = server.moderator_token("k", "alice").await;
    let (alice, mut alice_events) = Room::connect(&server.url, &token, fast_options()).await.expect("alice joins");
    let (bob, mut bob_events) = server.join("k", "bob").await;
    let (carol, _carol_events) = server.join("k", "carol").await;
    let bob_id = bob.local_participant().id;

    let err = carol.kick(&bob_id).await.expect_err("carol is no moderator");
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");

    alice.kick(&bob_id).await.expect("alice may kick");

    let (leaving, _) =
        wait_for(&mut bob_events, "bob's own leaving", |e| matches!(e, RoomEvent::ParticipantLeaving { .. })).await;
    let RoomEvent::ParticipantLeaving { participant, reason } = leaving else { unreachable!() };
    assert_eq!(participant.id, bob_id, "bob is told about himself");
    assert_eq!(reason, Some(LeaveReason::Kicked));
    let mut rest = vec![next_event(&mut bob_events).await];
    while let Some(e) = bob_events.recv().await {
        rest.push(e);
    }
    let names: Vec<_> = rest.iter().map(RoomEvent::name).collect();
    assert_eq!(names, ["state_changed", "disconnected"], "{rest:?}");
    assert!(matches!(rest[1], RoomEvent::Disconnected { reason: DisconnectReason::Kicked }));
    assert_eq!(bob.connection_state(), ConnectionState::Disconnected);

    let (left, skipped) =
        wait_for(&mut alice_events, "bob gone", |e| matches!(e, RoomEvent::ParticipantLeft { .. })).await;
    assert!(
        skipped.iter().any(|e| matches!(e, RoomEvent::ParticipantLeaving { reason: Some(LeaveReason::Kicked), .. })),
        "alice saw bob leaving because kicked: {skipped:?}"
    );
    let RoomEvent::ParticipantLeft { participant, .. } = left else { unreachable!() };
    assert_eq!(participant.identity.as_str(), "bob");
    assert!(alice.participant_by_identity(&"bob".into()).is_none());
    assert!(alice.participant_by_identity(&"carol".into()).is_some());
}
