//! What a client that means harm, or a careless integrator, can do to the server: each
//! test reproduces one way found from outside to hurt it, and checks that it no longer
//! does (issue 13).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confer_proto::signal::{Reply, Request};
use confer_proto::token::Grants;
use confer_proto::track::{PublishTrack, TrackKind, TrackSource};
use confer_proto::ErrorCode;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// A connection from `local` (any 127/8 address works on Linux loopback).
async fn connect_from(local: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((local, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// `GET /healthz` on a fresh connection from 127.0.0.1; how long the answer took.
async fn health_latency(t: &TestServer) -> Duration {
    let started = Instant::now();
    let resp = tokio::time::timeout(WAIT, reqwest::Client::new().get(t.url("/healthz")).send())
        .await
        .expect("healthz answers while the server is under attack")
        .unwrap();
    assert_eq!(resp.status(), 200);
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn slowloris_and_idle_connections_do_not_lock_others_out() {
    let t = TestServer::start().await;
    let addr = t.server.http_addr();
    // 500 requests whose headers come a byte at a time, from one address...
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut s = connect_from([127, 0, 0, 2], addr).await;
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        slow.push(s);
    }
    // ...and 1,500 that say nothing, from another.
    let mut idle = Vec::new();
    for _ in 0..1500 {
        idle.push(connect_from([127, 0, 0, 3], addr).await);
    }
    let latencies: Vec<Duration> = futures_util::future::join_all((0..10).map(|_| health_latency(&t))).await;
    let m = median(latencies);
    println!("healthz under 500 slowloris and 1500 idle connections: median {m:?}");
    assert!(m < Duration::from_millis(100), "median {m:?}");

    // Past the per-address cap, connections are closed at once.
    let mut extra = connect_from([127, 0, 0, 3], addr).await;
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(WAIT, extra.read(&mut buf)).await.expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // A connection that never completes its headers is closed after the header timeout.
    let mut s = slow.pop().unwrap();
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if s.write_all(b"X").await.is_err() {
                return;
            }
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                return;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "a trickled request is cut");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}

/// The resident set of this process (the server runs in it), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test]
async fn oversized_frames_before_joining_are_not_buffered() {
    let t = TestServer::start().await;
    let before = rss_bytes();
    // 40 connections, each sending one 16 MiB text frame, never joining.
    let chunk = vec![b'x'; 64 * 1024];
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let url = t.ws_url();
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            let mut raw = ws.into_inner();
            let stream = match &mut raw {
                tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
                _ => unreachable!(),
            };
            // A masked text frame header announcing 16 MiB, then the payload in chunks.
            let mut header = vec![0x81u8, 0x80 | 127];
            header.extend_from_slice(&(16u64 << 20).to_be_bytes());
            header.extend_from_slice(&[1, 2, 3, 4]);
            if stream.write_all(&header).await.is_err() {
                return 0;
            }
            let mut sent = 0usize;
            while sent < 16 << 20 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(tokio::time::timeout(Duration::from_secs(30), task).await.expect("the server cut it").unwrap());
    }
    let grown = rss_bytes().saturating_sub(before);
    println!("40 oversized pre-join frames: RSS grew {} KiB", grown / 1024);
    assert!(grown < 100 << 20, "RSS grew {} MiB", grown >> 20);
    assert!(sent.iter().all(|&s| s < 16 << 20), "the server read a whole 16 MiB frame: {sent:?}");
    // The server is fine.
    let (mut p, _) = {
        t.create_room(json!({"id": "r", "name": "r"})).await;
        t.join(&t.token("r", "a").await).await
    };
    assert_eq!(p.request(Request::Ping).await.unwrap(), Reply::Pong);
}

fn video_track(source: Option<TrackSource>) -> PublishTrack {
    PublishTrack { mid: "1".into(), source, kind: TrackKind::Video, simulcast: false, muted: false }
}

#[tokio::test]
async fn a_publish_without_source_is_held_to_the_source_rules() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let grants = Grants { publish_sources: Some(vec![TrackSource::Microphone]), ..Grants::default() };
    let token = t.token_pair("r", "a", grants, None).await.token;
    let (mut p, _) = t.join(&token).await;
    for source in [None, Some(TrackSource::Camera)] {
        let publish = Request::Publish { key: "main".into(), tracks: vec![video_track(source)], sdp: "v=0".into() };
        let err = p.request(publish).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::PermissionDenied, "source {source:?}: {}", err.message);
    }
    // Spelled out as null on the wire, too.
    let raw = json!({"id": 77, "request": {"type": "publish", "key": "main", "sdp": "v=0",
        "tracks": [{"mid": "1", "kind": "video", "source": null}]}});
    p.send_raw(Message::text(raw.to_string())).await;
    assert_eq!(p.response(77).await.unwrap_err().code, ErrorCode::PermissionDenied);

    // A room whose policy allows only the microphone.
    t.create_room(json!({"id": "m", "name": "m", "policy": {"publish_sources": ["microphone"]}})).await;
    let (mut q, _) = t.join(&t.token("m", "b").await).await;
    let publish = Request::Publish { key: "main".into(), tracks: vec![video_track(None)], sdp: "v=0".into() };
    assert_eq!(q.request(publish).await.unwrap_err().code, ErrorCode::DisabledByPolicy);
}

#[tokio::test]
async fn a_token_signed_with_a_far_future_expiry_is_refused_cleanly() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let creds = confer_server::auth::Credentials::new(KEY.into(), SECRET.into());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let forever = creds.mint(&"r".into(), &"a".into(), "A", &Grants::default(), now, u64::MAX);
    let mut p = Peer::connect(&t.ws_url()).await;
    assert_eq!(p.join(&forever).await.unwrap_err().code, ErrorCode::InvalidToken);
    // The connection lives on; so does an update_token with such a token.
    let (mut q, _) = t.join(&t.token("r", "b").await).await;
    let forever_b = creds.mint(&"r".into(), &"b".into(), "B", &Grants::default(), now, u64::MAX);
    let err = q.request(Request::UpdateToken { token: forever_b }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidToken);
    assert_eq!(q.request(Request::Ping).await.unwrap(), Reply::Pong);
    // A long but computable lifetime (a year) is fine.
    let year = creds.mint(&"r".into(), &"c".into(), "C", &Grants::default(), now, 365 * 86_400);
    assert!(p.join(&year).await.is_ok());
}

#[tokio::test]
async fn arrays_are_not_read_as_objects() {
    let t = TestServer::start().await;
    let resp = t.api(reqwest::Method::POST, "/v1/rooms").json(&json!(["r", "r"])).send().await.unwrap();
    assert_error(resp, ErrorCode::MalformedRequest).await;
    assert_eq!(t.api(reqwest::Method::GET, "/v1/rooms/r").send().await.unwrap().status(), 404);

    t.create_room(json!({"id": "r", "name": "r"})).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = |grants: serde_json::Value| {
        json!({"iss": KEY, "sub": "a", "room": "r", "grants": grants,
               "iat": now, "nbf": now, "exp": now + 600, "jti": "j"})
    };
    let mut p = Peer::connect(&t.ws_url()).await;
    let positional = sign(&claims(json!([true, null, true, true, true, false])));
    assert_eq!(p.join(&positional).await.unwrap_err().code, ErrorCode::InvalidToken);
    // The same grants as an object are accepted, so the refusal is about the shape.
    let named = sign(&claims(json!({"moderator": true})));
    let snapshot = p.join(&named).await.unwrap();
    assert_eq!(snapshot.participant.role, confer_proto::signal::Role::Manager);
}

#[tokio::test]
async fn a_slow_reader_is_let_go_whatever_it_sends() {
    let mut config = config();
    config.limits.resume_grace_ms = 1000;
    config.limits.requests_per_second = 1000;
    config.limits.burst = 1000;
    let t = TestServer::with(config).await;
    t.create_room(json!({"id": "r", "name": "r"})).await;

    // The slow one: a tiny receive buffer, never read, but a ping every second.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(t.server.http_addr()).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(t.ws_url(), stream).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    let join = json!({"id": 1, "request": {"type": "join", "token": t.token("r", "slow").await}});
    sink.send(Message::text(join.to_string())).await.unwrap();
    let joined = stream.next().await.unwrap().unwrap();
    assert!(joined.to_text().unwrap().contains("joined"), "{joined:?}");

    // Someone else talks, a lot.
    let (mut talker, _) = t.join(&t.token("r", "talker").await).await;
    let text = "x".repeat(50 * 1024);
    let started = Instant::now();
    let mut slow_gone = false;
    let mut id = 100u64;
    while started.elapsed() < Duration::from_secs(40) {
        for _ in 0..5 {
            let _ = talker.send(Request::SendMessage { text: text.clone(), to: None }).await;
        }
        id += 1;
        let ping = json!({"id": id, "request": {"type": "ping"}});
        if tokio::time::timeout(Duration::from_millis(200), sink.send(Message::text(ping.to_string())))
            .await
            .is_ok_and(|r| r.is_err())
        {
            slow_gone = true;
        }
        let session: serde_json::Value =
            t.api(reqwest::Method::GET, "/v1/rooms/r/session").send().await.unwrap().json().await.unwrap();
        let names: Vec<&str> =
            session["participants"].as_array().unwrap().iter().filter_map(|p| p["identity"].as_str()).collect();
        if !names.contains(&"slow") {
            slow_gone = true;
        }
        if slow_gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("slow reader let go after {:?}", started.elapsed());
    assert!(slow_gone, "the slow reader is still in the room after 40 s");
    drop(stream);
}

#[tokio::test]
async fn a_kicked_identity_needs_a_token_issued_after_the_kick() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r", "managers": ["host"]})).await;
    let (mut host, _) = t.join(&t.token("r", "host").await).await;
    let old = t.token("r", "guest").await;
    // Tokens carry whole seconds; the kick must fall in a later second than the token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (mut guest, snapshot) = t.join(&old).await;
    host.request(Request::Kick { participant_id: snapshot.participant.id.clone() }).await.unwrap();
    guest.until_closed().await;
    let mut again = Peer::connect(&t.ws_url()).await;
    assert_eq!(again.join(&old).await.unwrap_err().code, ErrorCode::TokenRevoked);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = t.token("r", "guest").await;
    assert!(again.join(&fresh).await.is_ok(), "a token issued after the kick is accepted");
}

#[tokio::test]
async fn a_room_created_again_does_not_take_the_old_rooms_tokens() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let old = t.token("r", "a").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = t.api(reqwest::Method::DELETE, "/v1/rooms/r").send().await.unwrap();
    assert!(resp.status().is_success());
    t.create_room(json!({"id": "r", "name": "r again"})).await;
    let mut p = Peer::connect(&t.ws_url()).await;
    assert_eq!(p.join(&old).await.unwrap_err().code, ErrorCode::TokenRevoked);
    assert!(p.join(&t.token("r", "a").await).await.is_ok());
}

#[tokio::test]
async fn names_and_context_are_bounded() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let token = t.token("r", "a").await;
    let mut p = Peer::connect(&t.ws_url()).await;
    let mut req = join_request(&token);
    req.name = Some("n".repeat(300));
    assert_eq!(p.join_with(req).await.unwrap_err().code, ErrorCode::TooLarge);
    let mut req = join_request(&token);
    req.context = json!({ "blob": "c".repeat(9000) });
    assert_eq!(p.join_with(req).await.unwrap_err().code, ErrorCode::TooLarge);
    let mut req = join_request(&token);
    req.name = Some("Ada".into());
    req.context = json!({ "team": "blue" });
    assert!(p.join_with(req).await.is_ok());
}

#[tokio::test]
async fn a_slow_connection_replaced_by_a_rejoin_is_closed() {
    let mut config = config();
    config.limits.requests_per_second = 1000;
    config.limits.burst = 1000;
    let t = TestServer::with(config).await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let token = t.token("r", "dup").await;

    // The old connection stops reading with its socket's buffers full.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(t.server.http_addr()).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(t.ws_url(), stream).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    let join = json!({"id": 1, "request": {"type": "join", "token": token}});
    sink.send(Message::text(join.to_string())).await.unwrap();
    assert!(stream.next().await.unwrap().unwrap().to_text().unwrap().contains("joined"));
    let (mut talker, _) = t.join(&t.token("r", "talker").await).await;
    let text = "x".repeat(50 * 1024);
    for _ in 0..100 {
        let _ = talker.send(Request::SendMessage { text: text.clone(), to: None }).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The same identity joins again: the old connection is closed at once, well before
    // a queued frame would have aged out.
    let started = Instant::now();
    let (_new, _) = t.join(&token).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        // Still not reading: the server's end is gone when writing fails.
        let ping = json!({"id": 2, "request": {"type": "ping"}}).to_string();
        while sink.send(Message::text(ping.clone())).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the replaced connection is still open after {:?}", started.elapsed());
    drop(stream);
}
