//! Who may do what: API credentials against every room API route, and join tokens of
//! every kind (bad signature, expired, another room's, member, non-member, manager,
//! guest) against every signaling action.

use crate::common::*;
use confer_proto::signal::{JoinRequest, Request};
use confer_proto::token::Grants;
use confer_proto::ErrorCode;
use confer_server::auth::Credentials;
use reqwest::Method;
use serde_json::json;

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Every route that needs API credentials, with a body that would be accepted.
fn guarded_routes(pid: &str) -> Vec<(Method, String, Option<serde_json::Value>)> {
    vec![
        (Method::POST, "/v1/rooms".into(), Some(json!({"name": "x"}))),
        (Method::GET, "/v1/rooms".into(), None),
        (Method::GET, "/v1/rooms/r".into(), None),
        (
            Method::PUT,
            "/v1/rooms/r".into(),
            Some(json!({"name": "r", "version": 1, "force": true, "managers": ["alice"]})),
        ),
        (Method::POST, "/v1/tokens".into(), Some(json!({"room": "r", "identity": "z"}))),
        (Method::POST, "/v1/rooms/r/invites".into(), Some(json!({}))),
        (Method::GET, "/v1/sessions".into(), None),
        (Method::GET, "/v1/rooms/r/session".into(), None),
        (Method::DELETE, format!("/v1/rooms/r/participants/{pid}"), None),
        (Method::DELETE, "/v1/rooms/r/session".into(), None),
        (Method::DELETE, "/v1/rooms/r".into(), None),
    ]
}

#[tokio::test]
async fn room_api_needs_the_key_and_secret() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r", "managers": ["alice"]})).await;
    let (_a, _) = t.join(&t.token("r", "alice").await).await;
    let (_b, b) = t.join(&t.token("r", "bob").await).await;
    for (method, path, body) in guarded_routes(b.participant.id.as_str()) {
        let attempts = [
            t.http.request(method.clone(), t.url(&path)),
            t.http.request(method.clone(), t.url(&path)).basic_auth(KEY, Some("wrong")),
            t.http.request(method.clone(), t.url(&path)).basic_auth("other-key", Some(SECRET)),
            t.http.request(method.clone(), t.url(&path)).bearer_auth(t.token("r", "alice").await),
        ];
        for attempt in attempts {
            let attempt = match &body {
                Some(b) => attempt.json(b),
                None => attempt,
            };
            assert_error(attempt.send().await.unwrap(), ErrorCode::Unauthorized).await;
        }
        let mut ok = t.api(method.clone(), &path);
        if let Some(b) = &body {
            ok = ok.json(b);
        }
        let resp = ok.send().await.unwrap();
        assert!(resp.status().is_success(), "{method} {path} with credentials: {}", resp.status());
    }
}

#[tokio::test]
async fn join_refuses_bad_tokens_each_with_its_code() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    t.create_room(json!({"id": "other", "name": "other"})).await;
    let forged = Credentials::new(KEY.into(), "not-the-secret".into()).mint(
        &"r".into(),
        &"eve".into(),
        "",
        &Grants::default(),
        now_secs(),
        600,
    );
    let expired = Credentials::new(KEY.into(), SECRET.into()).mint(
        &"r".into(),
        &"eve".into(),
        "",
        &Grants::default(),
        now_secs() - 700,
        600,
    );
    let other_key = Credentials::new("other".into(), SECRET.into()).mint(
        &"r".into(),
        &"eve".into(),
        "",
        &Grants::default(),
        now_secs(),
        600,
    );
    let for_other_room = t.token("other", "eve").await;
    let for_deleted_room = Credentials::new(KEY.into(), SECRET.into()).mint(
        &"gone".into(),
        &"eve".into(),
        "",
        &Grants::default(),
        now_secs(),
        600,
    );

    let cases = [
        (forged.as_str(), ErrorCode::InvalidToken),
        (other_key.as_str(), ErrorCode::InvalidToken),
        ("not.a.jwt", ErrorCode::InvalidToken),
        (expired.as_str(), ErrorCode::TokenExpired),
        (for_other_room.as_str(), ErrorCode::RoomMismatch),
        (for_deleted_room.as_str(), ErrorCode::RoomNotFound),
    ];
    for (token, code) in cases {
        let mut p = Peer::connect(&t.ws_url()).await;
        let mut req = join_request(token);
        req.room = Some(if code == ErrorCode::RoomNotFound { "gone".into() } else { "r".into() });
        let err = p.join_with(req).await.unwrap_err();
        assert_eq!(err.code, code, "{}", err.message);
        // The connection survives a refused join.
        assert_eq!(p.request(Request::Ping).await.unwrap_err().code, ErrorCode::NotJoined);
    }
}

#[tokio::test]
async fn actions_by_role() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r", "members": ["alice", "bob", "carol"], "managers": ["alice"]})).await;
    t.create_room(json!({"id": "other", "name": "other"})).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    let (mut bob, b) = t.join(&t.token("r", "bob").await).await;
    let (mut carol, c) = t.join(&t.token("r", "carol").await).await;
    let mut dave = Peer::connect(&t.ws_url()).await;
    assert_eq!(dave.join(&t.token("r", "dave").await).await.unwrap_err().code, ErrorCode::NotAMember);
    let mut mallory = Peer::connect(&t.ws_url()).await;
    assert_eq!(mallory.join(&t.moderator_token("r", "mallory").await).await.unwrap_err().code, ErrorCode::NotAMember);

    // Everyone joined may talk; members may not kick; managers may.
    for peer in [&mut alice, &mut bob, &mut carol] {
        peer.request(Request::SendMessage { text: "hi".into(), to: None }).await.unwrap();
    }
    let err = bob.request(Request::Kick { participant_id: c.participant.id.clone() }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    let err = carol.request(Request::Kick { participant_id: b.participant.id.clone() }).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    alice.request(Request::Kick { participant_id: c.participant.id.clone() }).await.unwrap();

    // update_token: only a valid token for the same room and identity.
    let cases = [
        (t.token("r", "bob").await, None),
        (t.token("other", "bob").await, Some(ErrorCode::RoomMismatch)),
        (t.token("r", "alice").await, Some(ErrorCode::PermissionDenied)),
        ("garbage".to_owned(), Some(ErrorCode::InvalidToken)),
        (
            Credentials::new(KEY.into(), SECRET.into()).mint(
                &"r".into(),
                &"bob".into(),
                "",
                &Grants::default(),
                now_secs() - 700,
                600,
            ),
            Some(ErrorCode::TokenExpired),
        ),
    ];
    for (token, expected) in cases {
        let got = bob.request(Request::UpdateToken { token }).await.err().map(|e| e.code);
        assert_eq!(got, expected);
    }
}

#[tokio::test]
async fn token_for_the_named_room_passes_the_room_check() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let mut p = Peer::connect(&t.ws_url()).await;
    let req = JoinRequest { room: Some("r".into()), ..join_request(&t.token("r", "a").await) };
    assert!(p.join_with(req).await.is_ok());
}
