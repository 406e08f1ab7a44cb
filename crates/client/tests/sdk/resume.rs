//! A dropped connection is resumed: same participant, nobody sees it leave, and the
//! events sent while it was away arrive once, in order.

use std::time::Duration;

use crate::common::*;
use confer_client::{ClientError, ConnectionState, Room, RoomEvent};
use confer_server::ServerConfig;

#[tokio::test]
async fn a_severed_connection_resumes_without_loss_or_a_visible_leave() {
    let server = TestServer::start().await;
    server.create_room("r").await;
    let proxy = Proxy::start(server.addr).await;

    let token = server.token("r", "alice").await;
    let (alice, mut alice_events) = Room::connect(&proxy.url(), &token, fast_options()).await.expect("alice joins");
    expect_connected(&mut alice_events).await;
    let (bob, mut bob_events) = server.join("r", "bob").await;
    let (carol, mut carol_events) = server.join("r", "carol").await;
    expect_connected(&mut bob_events).await;
    expect_connected(&mut carol_events).await;
    wait_for(&mut alice_events, "carol joining", |e| matches!(e, RoomEvent::ParticipantJoined { .. } if alice.participant_by_identity(&"carol".into()).is_some())).await;
    let alice_id = alice.local_participant().id;

    // Cut the network and keep it cut while bob talks.
    proxy.block(true);
    proxy.sever();
    wait_for(&mut alice_events, "the interruption", |e| matches!(e, RoomEvent::ConnectionInterrupted { .. })).await;
    wait_for(&mut alice_events, "an attempt", |e| matches!(e, RoomEvent::Reconnecting { .. })).await;
    assert_eq!(alice.connection_state(), ConnectionState::Reconnecting);
    let first = bob.send_message("while you were away", None).await.expect("bob sends");
    let second = bob.send_message("and again", Some(vec![alice_id.clone()])).await.expect("bob sends");
    // Let the server notice the dropped socket too, then restore the network.
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.block(false);

    let (_, during) = wait_for(&mut alice_events, "reconnected", |e| matches!(e, RoomEvent::Reconnected { .. })).await;
    assert!(
        during.iter().all(|e| matches!(e, RoomEvent::Reconnecting { .. } | RoomEvent::StateChanged(_))),
        "{during:?}"
    );
    assert!(during.iter().any(|e| matches!(e, RoomEvent::StateChanged(ConnectionState::Connected))));
    assert_eq!(alice.local_participant().id, alice_id, "same participant after resume");
    assert_eq!(alice.connection_state(), ConnectionState::Connected);

    // The missed messages arrive after the reconnection, each once, in order.
    let mut got = Vec::new();
    while got.len() < 2 {
        if let RoomEvent::MessageReceived { message_id, .. } = next_event(&mut alice_events).await {
            got.push(message_id);
        }
    }
    assert_eq!(got, [first, second]);

    // The new connection works both ways; carol's receipt is the sync point after which
    // any leave or join of alice would have reached her.
    alice.send_message("back", None).await.expect("alice sends after resuming");
    let (msg, seen_by_carol) = wait_for(
        &mut carol_events,
        "alice's message",
        |e| matches!(e, RoomEvent::MessageReceived { from, .. } if from.identity.as_str() == "alice"),
    )
    .await;
    assert!(matches!(msg, RoomEvent::MessageReceived { text, .. } if text == "back"));
    assert!(
        !seen_by_carol.iter().any(|e| matches!(
            e,
            RoomEvent::ParticipantLeaving { .. }
                | RoomEvent::ParticipantLeft { .. }
                | RoomEvent::ParticipantJoined { .. }
        )),
        "carol must not see alice leave or rejoin: {seen_by_carol:?}"
    );
    assert_eq!(carol.participant_by_identity(&"alice".into()).map(|p| p.id), Some(alice_id));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(drain(&mut alice_events).iter().all(|e| !matches!(e, RoomEvent::MessageReceived { .. })), "no repeats");
}

#[tokio::test]
async fn requests_made_while_away_are_sent_once_back() {
    let server = TestServer::start().await;
    server.create_room("r").await;
    let proxy = Proxy::start(server.addr).await;
    let token = server.token("r", "alice").await;
    let (alice, mut alice_events) = Room::connect(&proxy.url(), &token, fast_options()).await.expect("alice joins");
    let (_bob, mut bob_events) = server.join("r", "bob").await;
    wait_for(&mut alice_events, "bob joining", |e| matches!(e, RoomEvent::ParticipantJoined { .. })).await;

    proxy.block(true);
    proxy.sever();
    wait_for(&mut alice_events, "an attempt", |e| matches!(e, RoomEvent::Reconnecting { .. })).await;
    // Made while away: held until the connection is back, then sent once.
    let queued = tokio::spawn({
        let alice = alice.clone();
        async move { alice.send_message("queued", None).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.block(false);
    queued.await.expect("task").expect("sent after the reconnection");
    let (msg, _) =
        wait_for(&mut bob_events, "the queued message", |e| matches!(e, RoomEvent::MessageReceived { .. })).await;
    assert!(matches!(msg, RoomEvent::MessageReceived { text, .. } if text == "queued"));
}

#[tokio::test]
async fn a_silent_connection_is_noticed_and_resumed() {
    let mut config = ServerConfig::default();
    // The client gives up on a connection after three intervals (at least 1.5 s).
    config.limits.ping_interval_ms = 200;
    let server = TestServer::start_with(config).await;
    server.create_room("r").await;
    let proxy = Proxy::start(server.addr).await;
    let token = server.token("r", "alice").await;
    let (alice, mut alice_events) = Room::connect(&proxy.url(), &token, fast_options()).await.expect("alice joins");
    let (bob, mut bob_events) = server.join("r", "bob").await;
    wait_for(&mut alice_events, "bob joining", |e| matches!(e, RoomEvent::ParticipantJoined { .. })).await;
    let alice_id = alice.local_participant().id;

    // No close, no error: the path just goes dead, as when a laptop changes networks.
    proxy.freeze();
    // A request sent into the dead path cannot be answered: it fails as interrupted
    // (it may or may not have run) rather than being sent a second time.
    let in_flight = tokio::spawn({
        let alice = alice.clone();
        async move { alice.send_message("into the void", None).await }
    });
    let (interrupted, _) =
        wait_for(&mut alice_events, "the interruption", |e| matches!(e, RoomEvent::ConnectionInterrupted { .. })).await;
    assert!(
        matches!(interrupted, RoomEvent::ConnectionInterrupted { error: ClientError::Silent(_) }),
        "{interrupted:?}"
    );
    let (back, _) = wait_for(&mut alice_events, "reconnected", |e| matches!(e, RoomEvent::Reconnected { .. })).await;
    assert!(matches!(back, RoomEvent::Reconnected { resumed: true }), "{back:?}");
    assert_eq!(alice.local_participant().id, alice_id);
    let failed = in_flight.await.expect("task");
    assert!(matches!(failed, Err(ClientError::Interrupted)), "{failed:?}");

    bob.send_message("still there?", None).await.expect("bob sends");
    let (msg, _) =
        wait_for(&mut alice_events, "bob's message", |e| matches!(e, RoomEvent::MessageReceived { .. })).await;
    assert!(matches!(msg, RoomEvent::MessageReceived { text, .. } if text == "still there?"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !drain(&mut bob_events)
            .iter()
            .any(|e| matches!(e, RoomEvent::ParticipantLeft { .. } | RoomEvent::ParticipantJoined { .. })),
        "bob saw no leave or join"
    );
}
