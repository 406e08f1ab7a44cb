//! The room API's responses, taken from a live call (participants publishing camera,
//! microphone, simulcast and a data track), are valid by the schemas of the OpenAPI
//! document the server serves: a client that validates what it reads against them does
//! not reject real answers.

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine as _;
use confer_e2e::report::exclusive;
use confer_e2e::*;
use serde_json::{json, Value};

/// `GET path` (or another method) on the room API, with credentials: (status, body).
fn http(server: &ServerProcess, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(server.http_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:{SECRET}"));
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: confer\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, rest) = response.split_once("\r\n\r\n").unwrap();
    // Chunked bodies come from streaming responses; these are all plain JSON.
    assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
    (status, serde_json::from_str(rest).unwrap_or(Value::Null))
}

/// Validates `instance` against the document's schema `name`.
fn check(doc: &Value, name: &str, instance: &Value) {
    let schema = json!({ "$ref": format!("#/components/schemas/{name}"), "components": doc["components"] });
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{name} rejects a real response:\n{}\n{instance:#}", errors.join("\n"));
}

#[test]
fn real_responses_match_the_openapi_schemas() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("protocol-schema");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let (_, doc) = http(&server, "GET", "/v1/openapi.json", None);
    let room = create_room(&server, "schema", &[]);
    let t = token(&server, &room, "alice", &[]);
    let args = ["--publish", "--simulcast", "--video", "960x544@15", "--data", "--duration", "20"];
    let mut alice = Bot::spawn("alice", &server, &t, &args);
    let t = token(&server, &room, "bob", &[]);
    let mut bob = Bot::spawn("bob", &server, &t, &["--publish", "--video", "320x176@15", "--duration", "20"]);
    alice.expect_event("track_subscribed", Duration::from_secs(20), |l| l["kind"] == "video");
    bob.expect_event("track_subscribed", Duration::from_secs(20), |l| l["kind"] == "video");

    let (status, session) = http(&server, "GET", &format!("/v1/rooms/{room}/session"), None);
    assert_eq!(status, 200, "{session}");
    let tracks: Vec<&Value> = session["participants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["streams"].as_array().into_iter().flatten())
        .flat_map(|s| s["tracks"].as_array().unwrap())
        .collect();
    assert!(tracks.len() >= 5, "both publish, one with a data track: {session:#}");
    check(&doc, "SessionInfo", &session);
    let (_, sessions) = http(&server, "GET", "/v1/sessions", None);
    check(&doc, "SessionList", &sessions);
    let (_, stored) = http(&server, "GET", &format!("/v1/rooms/{room}"), None);
    check(&doc, "Room", &stored);
    let (_, page) = http(&server, "GET", "/v1/rooms?limit=5", None);
    check(&doc, "RoomPage", &page);
    let (status, pair) = http(
        &server,
        "POST",
        "/v1/tokens",
        Some(&json!({"room": room, "identity": "carol", "grants": {"data": false}})),
    );
    assert_eq!(status, 200, "{pair}");
    check(&doc, "TokenPair", &pair);
    let (status, invite) = http(&server, "POST", &format!("/v1/rooms/{room}/invites"), Some(&json!({})));
    assert_eq!(status, 200, "{invite}");
    check(&doc, "Invite", &invite);
    let (status, error) = http(&server, "GET", "/v1/rooms/nowhere/session", None);
    assert_eq!(status, 404);
    check(&doc, "ErrorBody", &error);
    let (_, health) = http(&server, "GET", "/healthz", None);
    check(&doc, "Health", &health);

    // The schemas are not vacuous: a track without its id is refused.
    let mut broken = session.clone();
    let first = broken["participants"][0]["streams"][0]["tracks"][0].as_object_mut().unwrap();
    first.remove("id");
    let schema = json!({ "$ref": "#/components/schemas/SessionInfo", "components": doc["components"] });
    let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&schema).unwrap();
    assert!(!validator.is_valid(&broken), "SessionInfo accepts a track without an id");

    alice.wait_exit(Duration::from_secs(40));
    bob.wait_exit(Duration::from_secs(40));
    server.stop();
}
