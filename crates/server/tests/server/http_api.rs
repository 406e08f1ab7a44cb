//! Every room API route, its answers and its error codes.

use crate::common::*;
use confer_proto::room::{Room, RoomPage};
use confer_proto::session::{SessionInfo, SessionList};
use confer_proto::token::{Invite, TokenPair};
use confer_proto::ErrorCode;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn health_and_openapi_need_no_credentials() {
    let t = TestServer::start().await;
    let health: serde_json::Value = t.http.get(t.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let doc: serde_json::Value = t.http.get(t.url("/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
}

#[tokio::test]
async fn rooms_crud_with_versions() {
    let t = TestServer::start().await;
    let room = t
        .create_room(json!({
            "id": "standup", "name": "Standup", "managers": ["alice"], "members": [],
            "public_meta": "cHVibGlj", "private_meta": "AAE=",
            "policy": {"max_participants": 10, "allow_guests": false}
        }))
        .await;
    assert_eq!((room.id.as_str(), room.version), ("standup", 1));
    assert_eq!(room.public_meta.0, b"public");
    assert_eq!(room.private_meta.0, vec![0, 1]);
    assert_eq!(room.policy.max_participants, Some(10));

    let dup = t.api(Method::POST, "/v1/rooms").json(&json!({"id": "standup", "name": "x"})).send().await.unwrap();
    assert_error(dup, ErrorCode::RoomExists).await;

    let got: Room = t.api(Method::GET, "/v1/rooms/standup").send().await.unwrap().json().await.unwrap();
    assert_eq!(got, room);

    let update = json!({"name": "Daily", "managers": ["bob"], "version": 1});
    let updated: Room =
        t.api(Method::PUT, "/v1/rooms/standup").json(&update).send().await.unwrap().json().await.unwrap();
    assert_eq!((updated.name.as_str(), updated.version), ("Daily", 2));
    assert_eq!(updated.created_at, room.created_at);
    // Full replacement: fields left out are reset, not kept.
    assert!(updated.public_meta.is_empty());

    let stale = t.api(Method::PUT, "/v1/rooms/standup").json(&update).send().await.unwrap();
    assert_error(stale, ErrorCode::VersionConflict).await;
    let forced = json!({"name": "Forced", "version": 1, "force": true});
    let forced: Room =
        t.api(Method::PUT, "/v1/rooms/standup").json(&forced).send().await.unwrap().json().await.unwrap();
    assert_eq!(forced.version, 3);

    let del = t.api(Method::DELETE, "/v1/rooms/standup").send().await.unwrap();
    assert_eq!(del.status(), 204);
    for method in [Method::GET, Method::DELETE] {
        assert_error(t.api(method, "/v1/rooms/standup").send().await.unwrap(), ErrorCode::RoomNotFound).await;
    }
    let put = t.api(Method::PUT, "/v1/rooms/standup").json(&update).send().await.unwrap();
    assert_error(put, ErrorCode::RoomNotFound).await;
}

#[tokio::test]
async fn rooms_list_pages_and_sorts() {
    let t = TestServer::start().await;
    for name in ["charlie", "alpha", "bravo"] {
        t.create_room(json!({ "name": name })).await;
    }
    let page: RoomPage = t
        .api(Method::GET, "/v1/rooms")
        .query(&[("limit", "2"), ("sort", "name_asc")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(page.rooms.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["alpha", "bravo"]);
    let page: RoomPage = t
        .api(Method::GET, "/v1/rooms")
        .query(&[("skip", "2"), ("limit", "2"), ("sort", "name_asc")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page.rooms.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["charlie"]);
    let page: RoomPage =
        t.api(Method::GET, "/v1/rooms").query(&[("sort", "created_desc")]).send().await.unwrap().json().await.unwrap();
    assert_eq!(page.rooms[0].name, "bravo");

    for bad in [("limit", "0"), ("limit", "101"), ("sort", "sideways"), ("skip", "-1")] {
        let resp = t.api(Method::GET, "/v1/rooms").query(&[bad]).send().await.unwrap();
        assert_error(resp, ErrorCode::MalformedRequest).await;
    }
}

#[tokio::test]
async fn room_input_is_validated() {
    let t = TestServer::start().await;
    let cases = [
        (json!({"name": ""}), ErrorCode::MalformedRequest),
        (json!({"name": "x", "id": "has space"}), ErrorCode::MalformedRequest),
        (json!({"name": "x", "surprise": 1}), ErrorCode::MalformedRequest),
        (json!({"name": "x", "public_meta": "***"}), ErrorCode::MalformedRequest),
        (json!({"name": "x", "public_meta": "A".repeat(100_000)}), ErrorCode::TooLarge),
    ];
    for (body, code) in cases {
        let resp = t.api(Method::POST, "/v1/rooms").json(&body).send().await.unwrap();
        assert_error(resp, code).await;
    }
    let huge = "x".repeat(2 << 20);
    let resp =
        t.api(Method::POST, "/v1/rooms").header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_error(resp, ErrorCode::TooLarge).await;
    let resp =
        t.api(Method::POST, "/v1/rooms").header("content-type", "application/json").body("{nope").send().await.unwrap();
    assert_error(resp, ErrorCode::MalformedRequest).await;
    assert_error(t.http.get(t.url("/v1/nowhere")).send().await.unwrap(), ErrorCode::NotFound).await;
}

#[tokio::test]
async fn tokens_mint_and_refresh() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let pair = t.token_pair("r", "alice", Default::default(), Some(60)).await;
    let ttl_ms = pair.expires_at - now_ms();
    assert!((58_000..=61_000).contains(&ttl_ms), "ttl {ttl_ms}");
    let default = t.token_pair("r", "alice", Default::default(), None).await;
    assert!((default.expires_at - now_ms()) > 590_000);

    let refreshed: TokenPair = t
        .http
        .post(t.url("/v1/tokens/refresh"))
        .json(&json!({"refresh_token": pair.refresh_token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refreshed.identity.as_str(), "alice");
    assert_ne!(refreshed.refresh_token, pair.refresh_token);
    t.join(&refreshed.token).await;
    // Refresh tokens are single-use.
    let again = t
        .http
        .post(t.url("/v1/tokens/refresh"))
        .json(&json!({"refresh_token": pair.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_error(again, ErrorCode::RefreshTokenUsed).await;

    let missing_room =
        t.api(Method::POST, "/v1/tokens").json(&json!({"room": "nope", "identity": "a"})).send().await.unwrap();
    assert_error(missing_room, ErrorCode::RoomNotFound).await;
    for body in [json!({"room": "r", "identity": ""}), json!({"room": "r", "identity": "a", "ttl": 0})] {
        let resp = t.api(Method::POST, "/v1/tokens").json(&body).send().await.unwrap();
        assert_error(resp, ErrorCode::MalformedRequest).await;
    }
}

#[tokio::test]
async fn invites_admit_guests_by_policy() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "open", "name": "open", "members": ["alice"]})).await;
    t.create_room(json!({"id": "closed", "name": "closed", "policy": {"allow_guests": false}})).await;

    let invite: Invite = t
        .api(Method::POST, "/v1/rooms/open/invites")
        .json(&json!({"max_uses": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(invite.link, t.url(&format!("/j/open?invite={}", invite.invite)));
    assert!(invite.app_link.starts_with("confer://join?server=http%3A%2F%2F127.0.0.1"));
    assert!(invite.app_link.ends_with(&format!("&room=open&invite={}", invite.invite)));

    let exchange = json!({"invite": invite.invite, "name": "Guest Gus"});
    let pair: TokenPair =
        t.http.post(t.url("/v1/invites/exchange")).json(&exchange).send().await.unwrap().json().await.unwrap();
    assert!(pair.identity.as_str().starts_with("guest-"));
    // A guest gets in although the room lists its members.
    let (_guest, snapshot) = t.join(&pair.token).await;
    assert_eq!(snapshot.participant.name, "Guest Gus");
    assert_eq!(snapshot.participant.role, confer_proto::signal::Role::Guest);

    let used_up = t.http.post(t.url("/v1/invites/exchange")).json(&exchange).send().await.unwrap();
    assert_error(used_up, ErrorCode::InvalidInvite).await;
    let unknown =
        t.http.post(t.url("/v1/invites/exchange")).json(&json!({"invite": "nope", "name": "x"})).send().await.unwrap();
    assert_error(unknown, ErrorCode::InvalidInvite).await;

    let closed: Invite = t
        .api(Method::POST, "/v1/rooms/closed/invites")
        .json(&json!({"max_uses": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exchange = json!({"invite": closed.invite, "name": "x"});
    let resp = t.http.post(t.url("/v1/invites/exchange")).json(&exchange).send().await.unwrap();
    assert_error(resp, ErrorCode::DisabledByPolicy).await;
    // The refusal did not use the invite up: once guests are allowed, it works.
    let open_up = json!({"name": "closed", "version": 1, "policy": {"allow_guests": true}});
    t.api(Method::PUT, "/v1/rooms/closed").json(&open_up).send().await.unwrap();
    let guest: TokenPair =
        t.http.post(t.url("/v1/invites/exchange")).json(&exchange).send().await.unwrap().json().await.unwrap();
    // Guests turned away again: the token they hold no longer admits them.
    let close = json!({"name": "closed", "version": 2, "policy": {"allow_guests": false}});
    t.api(Method::PUT, "/v1/rooms/closed").json(&close).send().await.unwrap();
    let mut late = Peer::connect(&t.ws_url()).await;
    assert_eq!(late.join(&guest.token).await.unwrap_err().code, ErrorCode::DisabledByPolicy);
    let refresh = t
        .http
        .post(t.url("/v1/tokens/refresh"))
        .json(&json!({"refresh_token": guest.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_error(refresh, ErrorCode::DisabledByPolicy).await;
    let resp = t.api(Method::POST, "/v1/rooms/nope/invites").json(&json!({})).send().await.unwrap();
    assert_error(resp, ErrorCode::RoomNotFound).await;
}

#[tokio::test]
async fn sessions_list_get_kick_and_end() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    assert_error(t.api(Method::GET, "/v1/rooms/r/session").send().await.unwrap(), ErrorCode::SessionNotFound).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    let (mut bob, bob_snap) = t.join(&t.token("r", "bob").await).await;

    let list: SessionList = t.api(Method::GET, "/v1/sessions").send().await.unwrap().json().await.unwrap();
    assert_eq!(list.sessions.len(), 1);
    let session: SessionInfo = t.api(Method::GET, "/v1/rooms/r/session").send().await.unwrap().json().await.unwrap();
    let who: Vec<_> = session.participants.iter().map(|p| p.identity.as_str()).collect();
    assert_eq!(who, ["alice", "bob"]);

    let path = format!("/v1/rooms/r/participants/{}", bob_snap.participant.id);
    assert_eq!(t.api(Method::DELETE, &path).send().await.unwrap().status(), 204);
    let seen = bob.until_closed().await;
    assert_eq!(names(&seen), ["participant_leaving", "disconnected"]);
    assert_error(t.api(Method::DELETE, &path).send().await.unwrap(), ErrorCode::ParticipantNotFound).await;

    assert_eq!(t.api(Method::DELETE, "/v1/rooms/r/session").send().await.unwrap().status(), 204);
    let seen = alice.until_closed().await;
    assert!(seen.iter().any(|e| matches!(
        e,
        confer_proto::signal::Event::Disconnected { reason: confer_proto::signal::DisconnectReason::SessionEnded }
    )));
    assert_error(t.api(Method::DELETE, "/v1/rooms/r/session").send().await.unwrap(), ErrorCode::SessionNotFound).await;
}

#[tokio::test]
async fn updates_reach_the_live_session_and_delete_ends_it() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "r", "name": "r"})).await;
    let (mut alice, _) = t.join(&t.token("r", "alice").await).await;
    t.api(Method::PUT, "/v1/rooms/r").json(&json!({"name": "renamed", "version": 1})).send().await.unwrap();
    match alice.event().await.unwrap() {
        confer_proto::signal::Event::RoomUpdated { room } => {
            assert_eq!((room.name.as_str(), room.version), ("renamed", 2))
        }
        other => panic!("expected room_updated, got {other:?}"),
    }
    t.api(Method::DELETE, "/v1/rooms/r").send().await.unwrap();
    let seen = alice.until_closed().await;
    assert!(seen.iter().any(|e| matches!(
        e,
        confer_proto::signal::Event::Disconnected { reason: confer_proto::signal::DisconnectReason::RoomDeleted }
    )));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The join page an invite link opens: the meeting and the app link when the link is
/// good, and a message of its own for each reason it is not.
#[tokio::test]
async fn the_join_page_opens_the_app_or_says_why_it_cannot() {
    let t = TestServer::start().await;
    t.create_room(json!({"id": "weekly", "name": "Weekly <sync>", "policy": {"max_participants": 1}})).await;
    t.create_room(json!({"id": "closed", "name": "Board", "policy": {"allow_guests": false}})).await;
    t.create_room(json!({"id": "gone", "name": "Gone"})).await;
    let invite = |room: &'static str, body: Value| {
        let request = t.api(Method::POST, &format!("/v1/rooms/{room}/invites")).json(&body);
        async move { request.send().await.unwrap().json::<Invite>().await.unwrap() }
    };
    let page = |link: String| {
        let request = t.http.get(link);
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            assert_eq!(headers["content-type"], "text/html; charset=utf-8");
            assert_eq!(headers["referrer-policy"], "no-referrer", "the invite in the address must not leak");
            assert_eq!(headers["cache-control"], "no-store");
            assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
            (status, resp.text().await.unwrap())
        }
    };

    let good = invite("weekly", json!({"max_uses": 1})).await;
    let (status, html) = page(good.link.clone()).await;
    assert_eq!(status, 200);
    assert!(html.contains("Weekly &lt;sync&gt;"), "{html}");
    let app_link = good.app_link.replace('&', "&amp;");
    assert!(html.contains(&format!(r#"id="open-app" href="{app_link}""#)), "{html}");
    // Looking does not use the invite: the page shows again.
    assert_eq!(page(good.link.clone()).await.0, 200);

    // Full: the one place is taken.
    let (_member, _) = t.join(&t.token("weekly", "member").await).await;
    let (status, html) = page(good.link.clone()).await;
    assert_eq!(status, 503);
    assert!(html.contains("This meeting is full"), "{html}");
    drop(_member);

    // Used up.
    let exchange = json!({"invite": good.invite, "name": "Gus"});
    t.http.post(t.url("/v1/invites/exchange")).json(&exchange).send().await.unwrap().error_for_status().unwrap();
    let (status, html) = page(good.link.clone()).await;
    assert_eq!(status, 410);
    assert!(html.contains("This invite has been used up"), "{html}");

    // Expired.
    let short = invite("weekly", json!({"ttl": 1})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, html) = page(short.link.clone()).await;
    assert_eq!(status, 410);
    assert!(html.contains("This invite has expired"), "{html}");

    // Guests not admitted.
    let closed = invite("closed", json!({})).await;
    assert!(page(closed.link).await.1.contains("This meeting does not admit guests"));

    // The room deleted.
    let doomed = invite("gone", json!({})).await;
    t.api(Method::DELETE, "/v1/rooms/gone").send().await.unwrap().error_for_status().unwrap();
    let (status, html) = page(doomed.link).await;
    assert_eq!(status, 404);
    assert!(html.contains("This meeting no longer exists"), "{html}");

    // A made-up or truncated invite, an invite for another room, no invite at all.
    for link in ["/j/weekly?invite=made-up", "/j/weekly", &format!("/j/closed?invite={}", short.invite)] {
        let (status, html) = page(t.url(link)).await;
        assert_eq!(status, 404, "{link}");
        assert!(html.contains("This link is not valid"), "{link}: {html}");
    }

    // A token link (a member's: guests need not apply).
    let token = t.token("closed", "alice").await;
    let (status, html) = page(t.url(&format!("/j/closed?token={token}"))).await;
    assert_eq!(status, 200);
    assert!(html.contains("confer://join?server="), "{html}");
}

/// The web client is in the binary, at `/web/`: the entry page uncached, the hashed
/// assets cached for good, each with a content security policy that keeps the page to
/// its own server; the join page offers it. (Needs the UI built: `scripts/setup.sh`.)
#[tokio::test]
async fn the_web_client_is_served_from_the_binary() {
    let t = TestServer::start().await;
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let moved = no_redirect.get(t.url("/web")).send().await.unwrap();
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.headers()["location"], "web/");

    let index = t.http.get(t.url("/web/")).send().await.unwrap();
    assert_eq!(index.status(), 200, "the server was built without ui/dist-web: run scripts/setup.sh");
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html");
    assert_eq!(headers["cache-control"], "no-cache");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("connect-src 'self'") && csp.contains("script-src 'self'"), "{csp}");
    let html = index.text().await.unwrap();
    let script = html.split("src=\"./").nth(1).and_then(|s| s.split('"').next()).expect("the page loads a script");
    let asset = t.http.get(t.url(&format!("/web/{script}"))).send().await.unwrap();
    assert_eq!(asset.status(), 200);
    assert_eq!(asset.headers()["content-type"], "text/javascript");
    assert_eq!(asset.headers()["cache-control"], "public, max-age=31536000, immutable");

    let missing = t.http.get(t.url("/web/assets/nothing.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["name"], "not_found");
}
