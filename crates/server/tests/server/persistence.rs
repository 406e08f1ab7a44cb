//! What survives a restart: rooms with their versions, invites, refresh tokens, and
//! the generated development credentials.

use crate::common::*;
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
    let db = temp_db("rooms");
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
    let db = temp_db("creds");
    let first = Server::start(ServerConfig { db: db.clone(), ..ServerConfig::default() }).await.unwrap();
    let (key, secret) = (first.api_key().to_owned(), first.api_secret().to_owned());
    assert!(key.starts_with("dev_") && secret.len() >= 32);
    first.shutdown().await;
    let second = Server::start(ServerConfig { db, ..ServerConfig::default() }).await.unwrap();
    assert_eq!((second.api_key(), second.api_secret()), (key.as_str(), secret.as_str()));
    second.shutdown().await;
}
