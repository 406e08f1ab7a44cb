//! Nodes sharing a PostgreSQL and a Redis: a room's session lives on one node, and
//! clients and API calls reaching any node are served by it; a draining node starts no
//! new session; each webhook event is sent once, by the node holding the session; with
//! Redis gone, running calls go on and new ones are refused with `unavailable`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_proto::signal::{DisconnectReason, Event, Reply, Request};
use confer_proto::ErrorCode;
use confer_server::cluster::Registry;
use confer_server::config::ClusterConfig;
use confer_server::ServerConfig;
use serde_json::{json, Value};

use crate::common::*;
use crate::test_pg;
use crate::test_redis::RedisServer;

async fn node(id: &str, db: &str, redis: &RedisServer, webhook: Option<&str>) -> TestServer {
    let cluster = ClusterConfig { redis: redis.url(), node_id: id.into(), node_url: None };
    let webhooks = webhook.map(|u| vec![u.to_owned()]).unwrap_or_default();
    let drain_grace = Duration::from_secs(60);
    TestServer::with(ServerConfig { db: db.into(), cluster: Some(cluster), webhooks, drain_grace, ..config() }).await
}

/// A backend receiving webhooks: every event, as posted, with its signature checked.
#[derive(Clone, Default)]
struct Receiver {
    events: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        use axum::http::{HeaderMap, StatusCode};
        let events = self.events.clone();
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let events = events.clone();
                async move {
                    use confer_server::webhook::{verify, SIGNATURE_HEADER};
                    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
                    let now = confer_server::hub::Now::system().unix_secs();
                    if !verify(SECRET, signature, &body, now, 60) {
                        return StatusCode::UNAUTHORIZED;
                    }
                    events.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    /// `(event, identity or "")` of each event about `room`, in arrival order.
    fn seen(&self, room: &str) -> Vec<(String, String)> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| e["room"]["id"] == room)
            .map(|e| {
                let identity = e["participant"]["identity"].as_str().unwrap_or_default();
                (e["event"].as_str().unwrap().to_owned(), identity.to_owned())
            })
            .collect()
    }

    /// Waits until `room` has seen `n` events.
    async fn wait_for(&self, room: &str, n: usize) -> Vec<(String, String)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.seen(room).len() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.seen(room)
    }
}

fn pair(event: &str, identity: &str) -> (String, String) {
    (event.to_owned(), identity.to_owned())
}

#[tokio::test]
async fn a_meeting_reached_through_either_node_is_one_meeting() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(db) = test_pg::database("cluster_one_meeting").await else { return };
    let hooks = Receiver::default();
    let hooks_url = hooks.start().await;
    let a = node("a", &db, &redis, Some(&hooks_url)).await;
    let b = node("b", &db, &redis, Some(&hooks_url)).await;
    // Rooms are shared: created on one node, known to the other.
    b.create_room(json!({"id": "standup", "name": "Standup", "policy": {"max_participants": 2}})).await;

    // Both idle: the tie goes to "a", which starts the session.
    let (mut ann, _) = a.join(&a.moderator_token("standup", "ann").await).await;
    // Ben's signaling reaches b, which relays it to a: one meeting.
    let (mut ben, snapshot) = b.join(&b.token("standup", "ben").await).await;
    assert_eq!(snapshot.participants.iter().map(|p| p.identity.0.as_str()).collect::<Vec<_>>(), ["ann"]);
    assert!(
        matches!(ann.event().await, Some(Event::ParticipantJoined { participant }) if participant.identity.0 == "ben")
    );
    let sent = ben.request(Request::SendMessage { text: "hello from b".into(), to: None }).await;
    assert!(matches!(sent, Ok(Reply::MessageSent { .. })), "{sent:?}");
    match ann.event().await {
        Some(Event::MessageReceived { text, .. }) => assert_eq!(text, "hello from b"),
        other => panic!("expected ben's message, got {other:?}"),
    }
    assert!(matches!(ben.request(Request::Ping).await, Ok(Reply::Pong)));

    // The join page on either node knows the meeting is full.
    let link = b.url(&format!("/j/standup?token={}", b.token("standup", "cat").await));
    let page = b.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 503, "b's join page says the meeting on a is full");

    // The room API on b acts on the session held by a.
    let session: Value =
        b.api(reqwest::Method::GET, "/v1/rooms/standup/session").send().await.unwrap().json().await.unwrap();
    assert_eq!(session["participants"].as_array().map(Vec::len), Some(2), "{session}");
    let listed: Value = b.api(reqwest::Method::GET, "/v1/sessions").send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["sessions"].as_array().map(Vec::len), Some(1), "{listed}");
    let ben_id = snapshot.participant.id.0.clone();
    let kicked =
        b.api(reqwest::Method::DELETE, &format!("/v1/rooms/standup/participants/{ben_id}")).send().await.unwrap();
    assert_eq!(kicked.status(), 204, "{}", kicked.text().await.unwrap());
    let ben_saw = ben.until_closed().await;
    assert!(ben_saw.contains(&Event::Disconnected { reason: DisconnectReason::Kicked }), "{ben_saw:?}");
    let ann_saw = ann.events_until("participant_left").await;
    assert!(matches!(ann_saw.last(), Some(Event::ParticipantLeft { identity, .. }) if identity.0 == "ben"));

    // Ending the session through b reaches ann on a.
    let ended = b.api(reqwest::Method::DELETE, "/v1/rooms/standup/session").send().await.unwrap();
    assert_eq!(ended.status(), 204);
    assert!(ann.until_closed().await.contains(&Event::Disconnected { reason: DisconnectReason::SessionEnded }));
    let missing = b.api(reqwest::Method::GET, "/v1/rooms/standup/session").send().await.unwrap();
    assert_error(missing, ErrorCode::SessionNotFound).await;

    // Every event once, from a, in order.
    assert_eq!(
        hooks.wait_for("standup", 6).await,
        [
            pair("room_started", ""),
            pair("participant_joined", "ann"),
            pair("participant_joined", "ben"),
            pair("participant_left", "ben"),
            pair("participant_left", "ann"),
            pair("room_finished", ""),
        ]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hooks.seen("standup").len(), 6, "an event came twice");
    assert!(hooks.events.lock().unwrap().iter().all(|e| e["node"] == "a"));
}

#[tokio::test]
async fn a_draining_node_starts_nothing_and_stops_when_its_meetings_end() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(db) = test_pg::database("cluster_drain").await else { return };
    let a = node("a", &db, &redis, None).await;
    let b = node("b", &db, &redis, None).await;
    for room in ["standup", "retro", "other"] {
        a.create_room(json!({ "id": room, "name": room })).await;
    }
    // a holds one participant, b two: a is the least loaded (once heartbeats say so).
    let (mut ann, _) = a.join(&a.token("standup", "ann").await).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _eve = b.join(&b.token("other", "eve").await).await;
    let _fay = b.join(&b.token("other", "fay").await).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    assert_eq!(a.http.get(a.url("/readyz")).send().await.unwrap().status(), 200);
    let drained = a.api(reqwest::Method::POST, "/v1/node/drain").send().await.unwrap();
    assert_eq!(drained.status(), 202);
    let info: Value = drained.json().await.unwrap();
    assert_eq!(
        (info["node_id"].as_str(), info["draining"].as_bool(), info["sessions"].as_u64()),
        (Some("a"), Some(true), Some(1))
    );
    // The load balancer is told to send new clients elsewhere; the node is still alive.
    assert_eq!(a.http.get(a.url("/readyz")).send().await.unwrap().status(), 503);
    assert_eq!(a.http.get(a.url("/healthz")).send().await.unwrap().status(), 200);
    // The cluster hears of it at once.
    let observer = Registry::connect(&redis.url(), "observer").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !observer.nodes().await.unwrap().iter().any(|n| n.id == "a" && n.draining) {
        assert!(tokio::time::Instant::now() < deadline, "a's drain did not reach the registry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new meeting reaching a starts on b, the busier node; joins to a's own meeting
    // still land there.
    let (mut cat, _) = a.join(&a.token("retro", "cat").await).await;
    let on_b: Value = b.api(reqwest::Method::GET, "/v1/node").send().await.unwrap().json().await.unwrap();
    assert_eq!(on_b["sessions"], 2, "retro started on b: {on_b}");
    let (mut dan, snapshot) = b.join(&b.token("standup", "dan").await).await;
    assert_eq!(snapshot.participants.len(), 1, "dan joined ann's meeting on a");
    assert!(matches!(ann.request(Request::Ping).await, Ok(Reply::Pong)));

    // a is done when its meeting is.
    let done = a.server.drained();
    tokio::pin!(done);
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut done).await.is_err(), "drained with a meeting on");
    ann.request(Request::Leave).await.unwrap();
    dan.request(Request::Leave).await.unwrap();
    tokio::time::timeout(WAIT, done).await.expect("drained once the meeting ended");
    assert!(matches!(cat.request(Request::Ping).await, Ok(Reply::Pong)));
}

#[tokio::test]
async fn without_redis_running_calls_go_on_and_new_ones_are_refused() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(db) = test_pg::database("cluster_redis_gone").await else { return };
    let a = node("a", &db, &redis, None).await;
    a.create_room(json!({"id": "standup", "name": "Standup"})).await;
    a.create_room(json!({"id": "retro", "name": "Retro"})).await;
    let (mut ann, _) = a.join(&a.token("standup", "ann").await).await;

    drop(redis);
    let mut cat = Peer::connect(&a.ws_url()).await;
    let refused = cat.join(&a.token("retro", "cat").await).await.expect_err("no new session without redis");
    assert_eq!(refused.code, ErrorCode::Unavailable, "{}", refused.message);
    let (mut dan, _) = a.join(&a.token("standup", "dan").await).await;
    assert!(matches!(ann.request(Request::Ping).await, Ok(Reply::Pong)), "ann's call stopped with redis");
    assert!(matches!(dan.request(Request::Ping).await, Ok(Reply::Pong)));
    // A room's record is still the database's to change.
    let renamed = a
        .api(reqwest::Method::PUT, "/v1/rooms/retro")
        .json(&json!({"name": "Retro 2", "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200, "{}", renamed.text().await.unwrap());
    let session = a.api(reqwest::Method::GET, "/v1/rooms/standup/session").send().await.unwrap();
    assert_eq!(session.status(), 200, "a session held here is read here");
}
