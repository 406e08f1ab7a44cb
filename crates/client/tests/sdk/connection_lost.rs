//! When the server is gone for good, reconnection gives up as configured and says so.

use std::time::Duration;

use crate::common::*;
use confer_client::{Backoff, ClientError, ConnectionState, ReconnectPolicy, Room, RoomEvent};

#[tokio::test]
async fn attempts_exhausted_after_the_server_shut_down() {
    let mut server = TestServer::start().await;
    server.create_room("r").await;
    let token = server.token("r", "alice").await;
    let policy = ReconnectPolicy::new(3, Duration::from_millis(500))
        .with_backoff(Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(100) });
    let (alice, mut events) =
        Room::connect(&server.url, &token, fast_options().with_reconnect(policy)).await.expect("alice joins");
    expect_connected(&mut events).await;

    server.shutdown().await;

    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(WAIT, events.recv()).await.expect("events keep coming") {
        seen.push(event);
    }
    let names: Vec<_> = seen.iter().map(RoomEvent::name).collect();
    // A shutting-down server first tells everyone their session ended.
    let start = names.iter().position(|n| *n == "connection_interrupted").expect("interrupted");
    assert_eq!(
        names[start..],
        [
            "connection_interrupted",
            "state_changed",
            "reconnecting",
            "reconnecting",
            "reconnecting",
            "state_changed",
            "connection_lost"
        ],
        "{seen:#?}"
    );
    let attempts: Vec<u32> = seen
        .iter()
        .filter_map(|e| if let RoomEvent::Reconnecting { attempt } = e { Some(*attempt) } else { None })
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(!seen.iter().any(|e| matches!(e, RoomEvent::Disconnected { .. })), "a shutdown is not a final disconnect");
    assert_eq!(alice.connection_state(), ConnectionState::Disconnected);
    assert!(matches!(alice.send_message("anyone?", None).await, Err(ClientError::Disconnected { .. })));
}

#[tokio::test]
async fn no_reconnection_when_not_allowed() {
    let server = TestServer::start().await;
    server.create_room("r").await;
    let proxy = Proxy::start(server.addr).await;
    let token = server.token("r", "alice").await;
    let options = fast_options().with_reconnect(ReconnectPolicy::disabled());
    let (_alice, mut events) = Room::connect(&proxy.url(), &token, options).await.expect("alice joins");
    expect_connected(&mut events).await;

    proxy.sever();
    let mut names = Vec::new();
    while let Some(event) = tokio::time::timeout(WAIT, events.recv()).await.expect("events keep coming") {
        names.push(event.name());
    }
    assert_eq!(names, ["connection_interrupted", "state_changed", "connection_lost"]);
}
