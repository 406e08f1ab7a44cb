//! The foundation's acceptance, black box: the real server and CLI binaries, run the way
//! the README's user would run them.

use std::time::Duration;

use confer_e2e::*;

const T: Duration = Duration::from_secs(15);

/// The codes of the error catalog these scenarios check (see docs/protocol.md).
const INVALID_TOKEN: u64 = 2001;
const TOKEN_EXPIRED: u64 = 2002;
const ROOM_MISMATCH: u64 = 2003;
const PERMISSION_DENIED: u64 = 2004;
const VERSION_CONFLICT: u64 = 3002;

#[test]
fn three_bots_message_kick_and_refusals() {
    let dir = temp_dir("bots");
    let server = ServerProcess::start(dir.join("x.db"));
    let room = cli_json(&server, &["room", "create", "--name", "demo", "--manager", "alice"]);
    assert_eq!(room["version"], 1);
    assert_eq!(room["name"], "demo");
    let id = room["id"].as_str().expect("room id").to_owned();

    let mut carol = Bot::spawn("carol", &server, &token(&server, &id, "carol", &[]), &[]);
    carol.expect_event("connected", T, |_| true);
    let mut bob =
        Bot::spawn("bob", &server, &token(&server, &id, "bob", &[]), &["--wait-for", "alice", "--kick", "alice"]);
    bob.expect_event("connected", T, |_| true);
    let mut alice = Bot::spawn(
        "alice",
        &server,
        &token(&server, &id, "alice", &[]),
        &["--wait-for", "bob,carol", "--send-message", "hello bob", "--to", "bob", "--kick", "carol"],
    );

    // bob gets alice's message; carol does not.
    let msg = bob.expect_event("message_received", T, |v| v["from"] == "alice");
    assert_eq!(msg["text"], "hello bob");
    // bob's own kick of alice is refused with permission_denied.
    let refused = bob.expect_event("error", T, |v| v["request"] == "kick");
    assert_eq!(refused["code"], PERMISSION_DENIED);

    // carol is kicked: she sees why and exits.
    carol.expect_event("participant_leaving", T, |v| v["identity"] == "carol" && v["reason"] == "kicked");
    assert_eq!(carol.wait_exit(T), 0, "a kicked bot exits cleanly");
    assert!(!carol.drain().iter().any(|v| v["event"] == "message_received"), "carol must not see bob's message");

    // alice and bob see carol leave.
    alice.expect_event("participant_left", T, |v| v["identity"] == "carol");
    bob.expect_event("participant_left", T, |v| v["identity"] == "carol");
    drop(alice);
    drop(bob);

    // Bad tokens are refused, each with its own code.
    let good = token(&server, &id, "dave", &[]);
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let expired = token(&server, &id, "erin", &["--ttl", "1"]);
    let other = cli_json(&server, &["room", "create", "--name", "other"]);
    let foreign = token(&server, other["id"].as_str().unwrap(), "frank", &[]);
    std::thread::sleep(Duration::from_millis(2100));
    for (name, tok, code) in
        [("forged", forged, INVALID_TOKEN), ("expired", expired, TOKEN_EXPIRED), ("foreign", foreign, ROOM_MISMATCH)]
    {
        let mut bot = Bot::spawn(name, &server, &tok, &["--room", &id]);
        let err = bot.expect_event("error", T, |v| v["request"] == "join");
        assert_eq!(err["code"], code, "{name} token");
        assert_ne!(bot.wait_exit(T), 0, "{name}: a refused join exits non-zero");
    }
}

#[test]
fn rooms_survive_a_restart_and_stale_updates_are_refused() {
    let dir = temp_dir("restart");
    let server = ServerProcess::start(dir.join("x.db"));
    let room = cli_json(&server, &["room", "create", "--name", "demo", "--manager", "alice"]);
    let id = room["id"].as_str().unwrap().to_owned();
    let updated = cli_json(&server, &["room", "update", &id, "--version", "1", "--name", "renamed"]);
    assert_eq!(updated["version"], 2);

    let (db, port) = server.stop();
    let server = ServerProcess::start_on(db, port);
    let list = cli_json(&server, &["room", "list"]);
    let rooms = list["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(
        (rooms[0]["id"].as_str(), rooms[0]["name"].as_str(), rooms[0]["version"].as_u64()),
        (Some(id.as_str()), Some("renamed"), Some(2))
    );

    let stale = cli(&server, &["room", "update", &id, "--version", "1", "--name", "again"]);
    assert!(!stale.status.success());
    assert_eq!(cli_error_code(&stale), Some(VERSION_CONFLICT), "stderr: {}", String::from_utf8_lossy(&stale.stderr));
    let forced = cli_json(&server, &["room", "update", &id, "--version", "1", "--name", "again", "--force"]);
    assert_eq!(forced["version"], 3);
}
