//! What survives a restart: rooms with their versions, invites, refresh tokens, and
//! the generated development credentials; on SQLite and on PostgreSQL. And on
//! PostgreSQL, what happens while the database is out of reach: the room API says
//! `unavailable`, and nothing is lost once it is back.

use crate::common::*;
use crate::test_pg;
use confer_proto::room::{Room, RoomPage};
use confer_proto::token::{Invite, TokenPair};
use confer_proto::ErrorCode;
use confer_server::{Server, ServerConfig};
use reqwest::Method;
use serde_json::json;

fn temp_db(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("confer-persist-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("confer.db").to_string_lossy().into_owned()
}

#[tokio::test]
async fn rooms_invites_and_refresh_tokens_survive_a_restart() {
    survives_a_restart(temp_db("rooms")).await;
}

#[tokio::test]
async fn on_postgres_rooms_invites_and_refresh_tokens_survive_a_restart() {
    let Some(db) = test_pg::database("rooms").await else { return };
    survives_a_restart(db).await;
}

async fn survives_a_restart(db: String) {
    let t = TestServer::with(ServerConfig { db: db.clone(), ..config() }).await;
    let room =
        t.create_room(json!({"id": "keep", "name": "Keep", "managers": ["alice"], "private_meta": "AQID"})).await;
    let updated: Room = t
        .api(Method::PUT, "/v1/rooms/keep")
        .json(&json!({"name": "Kept", "version": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let invite: Invite =
        t.api(Method::POST, "/v1/rooms/keep/invites").json(&json!({})).send().await.unwrap().json().await.unwrap();
    let pair = t.token_pair("keep", "alice", Default::default(), None).await;
    let addr = t.server.http_addr();
    t.server.shutdown().await;

    let t = TestServer::with(ServerConfig { db, http_addr: addr, ..config() }).await;
    let page: RoomPage = t.api(Method::GET, "/v1/rooms").send().await.unwrap().json().await.unwrap();
    assert_eq!(page.rooms, vec![updated.clone()]);
    assert_eq!(page.rooms[0].created_at, room.created_at);
    let stale = t.api(Method::PUT, "/v1/rooms/keep").json(&json!({"name": "x", "version": 1})).send().await.unwrap();
    assert_error(stale, ErrorCode::VersionConflict).await;

    let guest = t
        .http
        .post(t.url("/v1/invites/exchange"))
        .json(&json!({"invite": invite.invite, "name": "G"}))
        .send()
        .await
        .unwrap();
    assert_eq!(guest.status(), 200);
    let renewed: TokenPair = t
        .http
        .post(t.url("/v1/tokens/refresh"))
        .json(&json!({"refresh_token": pair.refresh_token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    t.join(&renewed.token).await;
}

#[tokio::test]
async fn generated_credentials_are_kept() {
    credentials_are_kept(temp_db("creds")).await;
}

#[tokio::test]
async fn on_postgres_generated_credentials_are_kept() {
    let Some(db) = test_pg::database("creds").await else { return };
    credentials_are_kept(db).await;
}

async fn credentials_are_kept(db: String) {
    let first = Server::start(ServerConfig { db: db.clone(), ..ServerConfig::default() }).await.unwrap();
    let (key, secret) = (first.api_key().to_owned(), first.api_secret().to_owned());
    assert!(key.starts_with("dev_") && secret.len() >= 32);
    first.shutdown().await;
    let second = Server::start(ServerConfig { db, ..ServerConfig::default() }).await.unwrap();
    assert_eq!((second.api_key(), second.api_secret()), (key.as_str(), secret.as_str()));
    second.shutdown().await;
}

/// A TCP relay to the database that the test can cut, as a network partition does,
/// and restore.
struct Partition {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Partition {
    async fn to(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay =
            Self { port: listener.local_addr().unwrap().port(), cut: Default::default(), open: Default::default() };
        let (cut, open) = (relay.cut.clone(), relay.open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if cut.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                open.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut db) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut db).await;
                    }
                }));
            }
        });
        relay
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Relaxed);
        self.open.lock().unwrap().drain(..).for_each(|t| t.abort());
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test]
async fn with_postgres_out_of_reach_the_room_api_says_unavailable_and_loses_nothing() {
    let Some(db) = test_pg::database("outage").await else { return };
    // postgres://confer@127.0.0.1:PORT/DB, reached through the relay.
    let (head, tail) = db.rsplit_once(':').unwrap();
    let (port, path) = tail.split_once('/').unwrap();
    let relay = Partition::to(port.parse().unwrap()).await;
    let t = TestServer::with(ServerConfig { db: format!("{head}:{}/{path}", relay.port), ..config() }).await;
    t.create_room(json!({"id": "before", "name": "Before"})).await;

    relay.cut();
    let started = std::time::Instant::now();
    assert_error(t.api(Method::GET, "/v1/rooms/before").send().await.unwrap(), ErrorCode::Unavailable).await;
    let create =
        t.api(Method::POST, "/v1/rooms").json(&json!({"id": "during", "name": "During"})).send().await.unwrap();
    assert_error(create, ErrorCode::Unavailable).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "the API took {:?} to say so", started.elapsed());

    relay.restore();
    let room: Room = t.api(Method::GET, "/v1/rooms/before").send().await.unwrap().json().await.unwrap();
    assert_eq!(room.name, "Before");
    // What was refused was not half done: it can be done now.
    let created =
        t.api(Method::POST, "/v1/rooms").json(&json!({"id": "during", "name": "During"})).send().await.unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let page: RoomPage = t.api(Method::GET, "/v1/rooms").send().await.unwrap().json().await.unwrap();
    assert_eq!(page.total, 2);
}
