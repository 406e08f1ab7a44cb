//! Malformed, oversized and flooding input on signaling: each gets a clear error code,
//! and the connection and the server stay usable.

use crate::common::*;
use confer_proto::signal::{DisconnectReason, Event, Outcome, Reply, Request, ServerMessage};
use confer_proto::ErrorCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn error_for(peer: &mut Peer, frame: Message) -> (Option<u64>, ErrorCode) {
    peer.send_raw(frame).await;
    match peer.next_message().await.expect("an answer") {
        ServerMessage::Response { id, outcome: Outcome::Error(e) } => (id, e.code),
        other => panic!("expected an error response, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_lives_on() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut p, _) = t.join(&t.token("r", "a").await).await;
    let cases = [
        (Message::text("{not json"), None),
        (Message::text("[]"), None),
        (Message::text(r#"{"id": 5, "request": {"type": "teleport"}}"#), Some(5)),
        (Message::text(r#"{"id": 6, "request": {"type": "send_message"}}"#), Some(6)),
        (Message::text(r#"{"id": -1, "request": {"type": "ping"}}"#), None),
        (Message::binary(vec![0u8, 159, 146, 150]), None),
    ];
    for (frame, id) in cases {
        assert_eq!(error_for(&mut p, frame).await, (id, ErrorCode::MalformedRequest));
    }
    assert_eq!(p.request(Request::Ping).await.unwrap(), Reply::Pong);
}

#[tokio::test]
async fn oversized_frames_are_refused() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut p, _) = t.join(&t.token("r", "a").await).await;
    let big = json!({"id": 9, "request": {"type": "send_message", "text": "x".repeat(100_000)}}).to_string();
    assert_eq!(error_for(&mut p, Message::text(big)).await, (None, ErrorCode::TooLarge));
    assert_eq!(p.request(Request::Ping).await.unwrap(), Reply::Pong);

    // Far past the limit, the server ends the connection; the server itself is fine.
    // It does not read such a frame at all: the send may fail with a reset.
    let _ = p.send_raw_checked(Message::text("x".repeat(8 << 20))).await;
    assert!(p.until_closed().await.is_empty());
    let (mut q, _) = t.join(&t.token("r", "b").await).await;
    assert_eq!(q.request(Request::Ping).await.unwrap(), Reply::Pong);
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_cut() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut p, _) = t.join(&t.token("r", "a").await).await;
    let (mut watcher, _) = t.join(&t.token("r", "w").await).await;
    let burst = t.server_limits().burst as u64;

    // A burst well past the allowance: the excess is answered with rate_limited.
    let n = burst + 40;
    for _ in 0..n {
        p.send(Request::Ping).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    while pongs + limited < n {
        match p.next_message().await.unwrap() {
            ServerMessage::Event { seq, .. } => p.last_seq = seq,
            ServerMessage::Response { outcome: Outcome::Result(Reply::Pong), .. } => pongs += 1,
            ServerMessage::Response { outcome: Outcome::Error(e), .. } if e.code == ErrorCode::RateLimited => {
                limited += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The join took one token of the burst.
    assert!(pongs >= burst - 1 && limited >= 30, "pongs {pongs}, limited {limited}");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(p.request(Request::Ping).await.unwrap(), Reply::Pong);

    // A sustained flood ends the connection, and the others are told it left.
    let flood = json!({"id": 1, "request": {"type": "ping"}}).to_string();
    for _ in 0..3000 {
        if tokio::time::timeout(std::time::Duration::from_millis(200), p.send_raw_checked(Message::text(flood.clone())))
            .await
            .is_err()
        {
            break;
        }
    }
    let seen = p.until_closed().await;
    assert_eq!(seen.last(), Some(&Event::Disconnected { reason: DisconnectReason::ProtocolViolation }));
    let seen = watcher.events_until("participant_left").await;
    assert_eq!(names(&seen).last(), Some(&"participant_left"));
    assert_eq!(watcher.request(Request::Ping).await.unwrap(), Reply::Pong);
}

#[tokio::test]
async fn a_silent_connection_that_never_joins_is_closed() {
    let mut c = config();
    c.limits.ping_interval_ms = 100;
    let t = TestServer::with(c).await;
    let mut p = Peer::connect(&t.ws_url()).await;
    // The join timeout is fixed at 10 s; closing is all we expect to see.
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(15), p.until_closed_raw()).await;
    assert!(closed.is_ok(), "connection without join was kept open");
    assert!(started.elapsed() >= std::time::Duration::from_secs(9));
}
