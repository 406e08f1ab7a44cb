//! A participant's network goes away for a while (signaling and media both) and comes
//! back: media flows again both ways, after a resume (the same participant, its
//! connections restarted) or, once the server has given up on it, after a fresh join
//! (everything published and subscribed again).

use std::time::Duration;

use confer_e2e::link::{Conditions, TcpRelay};
use confer_e2e::report::*;
use confer_e2e::*;

/// Bob's whole network is cut for `outage`; returns both reports and bob's lines.
fn outage(name: &str, outage: Duration, server_args: &[&str]) -> (serde_json::Value, serde_json::Value, Bot, u64, u64) {
    let dir = temp_dir(name);
    let (server, relay) = server_behind_relay(dir.join("db.sqlite"), server_args);
    let room = create_room(&server, "outage", &[]);
    let signaling = TcpRelay::start(server.http_addr());
    let reports = [dir.join("alice.json"), dir.join("bob.json")];
    let t = token(&server, &room, "alice", &[]);
    let args = ["--publish", "--tone", "440", "--media-ip", "127.0.0.2", "--duration", "40"];
    let mut alice =
        Bot::spawn("alice", &server, &t, &[&args[..], &["--report", reports[0].to_str().unwrap()]].concat());
    alice.expect_event("published", Duration::from_secs(10), |_| true);
    let t = token(&server, &room, "bob", &[]);
    let args =
        ["bot", "--url", &signaling.url(), "--token", &t, "--publish", "--tone", "550", "--media-ip", "127.0.0.3"];
    let mut bob =
        Bot::spawn_args("bob", &[&args[..], &["--duration", "34", "--report", reports[1].to_str().unwrap()]].concat());
    bob.expect_event("track_subscribed", Duration::from_secs(10), |l| l["kind"] == "video");
    alice.expect_event("track_subscribed", Duration::from_secs(10), |l| l["kind"] == "video");
    std::thread::sleep(Duration::from_secs(3));
    let cut = unix_ms();
    relay.set("127.0.0.3".parse().unwrap(), Conditions { cut: true, ..Conditions::default() });
    signaling.cut();
    std::thread::sleep(outage);
    relay.set("127.0.0.3".parse().unwrap(), Conditions::default());
    signaling.restore();
    let restored = unix_ms();
    bob.expect_event("reconnected", Duration::from_secs(20), |_| true);
    assert_eq!(bob.wait_exit(Duration::from_secs(60)), 0, "bob ends cleanly");
    assert_eq!(alice.wait_exit(Duration::from_secs(60)), 0, "alice ends cleanly");
    server.stop();
    (read_report(&reports[0]), read_report(&reports[1]), bob, cut, restored)
}

/// Each side's video and audio from the other stalled over the outage and came back
/// within `within_ms` of the network.
fn media_came_back(alice: &serde_json::Value, bob: &serde_json::Value, cut: u64, restored: u64, within_ms: u64) {
    for (viewer, report, other) in [("alice", alice, "bob"), ("bob", bob, "alice")] {
        for kind in ["video", "audio"] {
            let s = stream(report, other, kind);
            let middle = (cut + restored) / 2;
            let (from, to) =
                stall_covering(s, middle).unwrap_or_else(|| panic!("{viewer}: {other}'s {kind} went on: {s:#}"));
            assert!(from <= cut + 1000, "{viewer}: {other}'s {kind} stopped at {from}, cut at {cut}");
            let to = to.unwrap_or_else(|| panic!("{viewer}: {other}'s {kind} never came back: {s:#}"));
            assert!(
                to <= restored + within_ms,
                "{viewer}: {other}'s {kind} back {} ms after the network",
                to - restored
            );
            assert!(s["last_frame_at"].as_u64().unwrap() > restored + 5_000, "{viewer}: and kept flowing: {s:#}");
        }
        assert_eq!(stream(report, other, "video")["decode_errors"], 0);
    }
}

#[test]
fn media_resumes_after_an_outage_shorter_than_the_grace() {
    let _one_at_a_time = exclusive();
    let (alice, bob, lines, cut, restored) = outage("outage-resume", Duration::from_secs(8), &[]);
    let back = lines.seen.iter().find(|l| l["event"] == "reconnected").unwrap();
    assert_eq!(back["resumed"], true, "the same participant came back");
    assert!(!lines.seen.iter().any(|l| l["event"] == "participant_left"), "nobody saw anyone leave");
    media_came_back(&alice, &bob, cut, restored, 5_000);
}

#[test]
fn media_resumes_after_a_fresh_join() {
    let _one_at_a_time = exclusive();
    let (alice, bob, lines, cut, restored) =
        outage("outage-rejoin", Duration::from_secs(6), &["--resume-grace-ms", "2000"]);
    let back = lines.seen.iter().find(|l| l["event"] == "reconnected").unwrap();
    assert_eq!(back["resumed"], false, "the server had given up on bob");
    media_came_back(&alice, &bob, cut, restored, 8_000);
}
