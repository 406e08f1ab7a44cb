//! A publisher that vanishes is cleaned up and everyone is told: one whose process dies
//! (its signaling goes, then the resume grace runs out), and one whose media path dies
//! while its signaling stays (ICE consent runs out) — that one comes back by itself
//! when its path does.

use std::time::{Duration, Instant};

use confer_e2e::link::Conditions;
use confer_e2e::report::*;
use confer_e2e::*;

#[test]
fn a_killed_publisher_is_removed_and_everyone_told() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("vanish-killed");
    let server = ServerProcess::start_with(
        dir.join("db.sqlite"),
        free_port(),
        &["--udp-addr", "127.0.0.1:0", "--resume-grace-ms", "3000"],
    );
    let room = create_room(&server, "vanish", &[]);
    let mut alice = Bot::publisher("alice", &server, &room, &["--subscribe", "none"]);
    let t = token(&server, &room, "bob", &[]);
    let mut bob = Bot::spawn("bob", &server, &t, &["--duration", "20"]);
    bob.expect_event("track_subscribed", Duration::from_secs(10), |l| l["kind"] == "video");
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    alice.kill();
    bob.expect_event("stream_unpublished", Duration::from_secs(10), |l| l["identity"] == "alice");
    bob.expect_event("subscription_ended", Duration::from_secs(1), |l| l["reason"] == "unpublished");
    bob.expect_event("participant_left", Duration::from_secs(2), |l| l["identity"] == "alice");
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(8), "removed {took:?} after the kill (grace 3 s)");
    let session = cli_json(&server, &["session", "get", &room]);
    let identities: Vec<&str> =
        session["participants"].as_array().unwrap().iter().filter_map(|p| p["identity"].as_str()).collect();
    assert_eq!(identities, ["bob"], "only bob is left: {session:#}");
    bob.kill();
    server.stop();
}

#[test]
fn a_publisher_whose_media_path_dies_is_unpublished_then_returns() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("vanish-media");
    let (server, relay) = server_behind_relay(dir.join("db.sqlite"), &[]);
    let room = create_room(&server, "vanish", &[]);
    let mut alice = Bot::publisher(
        "alice",
        &server,
        &room,
        &["--media-ip", "127.0.0.2", "--subscribe", "none", "--duration", "60"],
    );
    let report = dir.join("bob.json");
    let t = token(&server, &room, "bob", &[]);
    let mut bob = Bot::spawn("bob", &server, &t, &["--duration", "55", "--report", report.to_str().unwrap()]);
    bob.expect_event("track_subscribed", Duration::from_secs(10), |l| l["kind"] == "video");
    std::thread::sleep(Duration::from_secs(2));
    // Alice's media path dies; her signaling connection is untouched.
    relay.set("127.0.0.2".parse().unwrap(), Conditions { cut: true, ..Conditions::default() });
    let cut = Instant::now();
    bob.expect_event("stream_unpublished", Duration::from_secs(40), |l| l["identity"] == "alice");
    let noticed = cut.elapsed();
    alice.expect_event("stream_failed", Duration::from_secs(5), |l| l["error"]["code"] == 5002);
    assert!(noticed < Duration::from_secs(35), "noticed {noticed:?} after the cut");
    relay.set("127.0.0.2".parse().unwrap(), Conditions::default());
    let restored = source_unix_ms();
    // The SDK publishes again by itself; bob subscribes again and sees her.
    bob.expect_event("stream_published", Duration::from_secs(30), |l| l["identity"] == "alice");
    assert_eq!(bob.wait_exit(Duration::from_secs(60)), 0);
    let report = read_report(&report);
    let video = stream(&report, "alice", "video");
    let back = video["last_frame_at"].as_u64().unwrap();
    assert!(back > restored + 2000, "alice's video came back: {video:#}");
    let (_, to) = stall_covering(video, restored).expect("a stall while her path was cut");
    let to = to.expect("the stall ended");
    assert!(to <= restored + 25_000, "back {} ms after the path", to.saturating_sub(restored));
    alice.kill();
    server.stop();
}

fn source_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
