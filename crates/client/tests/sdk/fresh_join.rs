//! When the server can no longer resume the participant, the SDK joins afresh and
//! reports the differences as joins and leaves.

use std::time::Duration;

use crate::common::*;
use confer_client::{Room, RoomEvent};
use confer_server::ServerConfig;

#[tokio::test]
async fn a_refused_resume_becomes_a_fresh_join() {
    let mut config = ServerConfig::default();
    config.limits.resume_grace_ms = 200;
    let server = TestServer::start_with(config).await;
    server.create_room("r").await;
    let proxy = Proxy::start(server.addr).await;

    let token = server.token("r", "alice").await;
    let (alice, mut alice_events) = Room::connect(&proxy.url(), &token, fast_options()).await.expect("alice joins");
    let (_bob, mut bob_events) = server.join("r", "bob").await;
    wait_for(&mut alice_events, "bob joining", |e| matches!(e, RoomEvent::ParticipantJoined { .. })).await;
    let old_id = alice.local_participant().id;

    proxy.block(true);
    proxy.sever();
    // Away past the grace period: the server reaps alice and bob is told.
    wait_for(&mut bob_events, "alice reaped", |e| matches!(e, RoomEvent::ParticipantLeft { .. })).await;
    let (_carol, _carol_events) = server.join("r", "carol").await;
    proxy.block(false);

    let (back, _) = wait_for(&mut alice_events, "reconnected", |e| matches!(e, RoomEvent::Reconnected { .. })).await;
    assert!(matches!(back, RoomEvent::Reconnected { resumed: false }), "{back:?}");
    assert_ne!(alice.local_participant().id, old_id, "a fresh join is a new participant");
    // Carol joined while alice was away: the difference is reported.
    let (joined, _) = wait_for(&mut alice_events, "carol", |e| matches!(e, RoomEvent::ParticipantJoined { .. })).await;
    assert!(matches!(joined, RoomEvent::ParticipantJoined { participant } if participant.identity.as_str() == "carol"));
    let identities: Vec<_> = alice.state().remote.iter().map(|p| p.identity.to_string()).collect();
    assert_eq!(identities, ["bob", "carol"]);

    // Bob saw carol join, then alice come back as a new participant.
    let (joined, _) = wait_for(
        &mut bob_events,
        "alice again",
        |e| matches!(e, RoomEvent::ParticipantJoined { participant } if participant.identity.as_str() == "alice"),
    )
    .await;
    assert!(
        matches!(joined, RoomEvent::ParticipantJoined { participant } if participant.id == alice.local_participant().id)
    );

    // Works as a participant again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    alice.send_message("I'm back", None).await.expect("sends");
}
