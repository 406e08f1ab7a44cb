//! Audio only, as on a weak link: a bot that joins audio-only hears the others and
//! receives no video packet at all, publishes no video itself, and gets video again
//! when it switches audio-only off in the call.

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;
use serde_json::Value;

/// Video packets the bot's subscriber connection received, over all streams.
fn video_packets(report: &Value) -> u64 {
    report["webrtc"]["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .filter(|s| s["direction"] == "received" && s["kind"] == "video")
                .map(|s| s["packets"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn an_audio_only_participant_hears_but_receives_no_video() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("audio-only");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "weak-link", &[]);
    let alice_report = dir.join("alice.json");
    let mut alice =
        Bot::publisher("alice", &server, &room, &["--duration", "14", "--report", alice_report.to_str().unwrap()]);
    let bob_report = dir.join("bob.json");
    let t = token(&server, &room, "bob", &[]);
    let mut bob = Bot::spawn(
        "bob",
        &server,
        &t,
        &["--audio-only", "--publish", "--tone", "660", "--duration", "10", "--report", bob_report.to_str().unwrap()],
    );
    let carol_report = dir.join("carol.json");
    let t = token(&server, &room, "carol", &[]);
    let mut carol = Bot::spawn(
        "carol",
        &server,
        &t,
        &["--audio-only", "--at", "5:audio_only=off", "--duration", "10", "--report", carol_report.to_str().unwrap()],
    );
    assert_eq!(bob.wait_exit(Duration::from_secs(30)), 0);
    assert_eq!(carol.wait_exit(Duration::from_secs(30)), 0);
    assert_eq!(alice.wait_exit(Duration::from_secs(30)), 0);

    // Bob hears alice's tone and never got one video packet.
    let bob_report = read_report(&bob_report);
    let tone = stream(&bob_report, "alice", "audio");
    assert!(tone["frames_decoded"].as_u64().unwrap_or(0) > 100, "{tone:#}");
    assert!((tone["tone_hz"].as_f64().unwrap_or(0.0) - 440.0).abs() < 10.0, "{tone:#}");
    assert!(find_stream(&bob_report, "alice", "video").is_none(), "{bob_report:#}");
    assert_eq!(video_packets(&bob_report), 0, "video reached an audio-only participant: {bob_report:#}");

    // Bob published his microphone only: alice hears it and sees no camera of his.
    let alice_report = read_report(&alice_report);
    let heard = stream(&alice_report, "bob", "audio");
    assert!((heard["tone_hz"].as_f64().unwrap_or(0.0) - 660.0).abs() < 10.0, "{heard:#}");
    assert!(find_stream(&alice_report, "bob", "video").is_none(), "bob published video: {alice_report:#}");

    // Carol switched audio-only off 5 s in: alice's picture arrived after that, and plays.
    let switched = carol.seen.iter().find(|l| l["event"] == "audio_only_changed").expect("switched");
    let carol_report = read_report(&carol_report);
    let video = stream(&carol_report, "alice", "video");
    let first = video["first_frame_at"].as_u64().expect("a picture after the switch");
    assert!(first >= at(switched), "video arrived at {first}, before the switch at {}", at(switched));
    assert!(first <= at(switched) + 2000, "video came {} ms after the switch", first - at(switched));
    assert!(video["frames_decoded"].as_u64().unwrap_or(0) > 50, "{video:#}");
    server.stop();
}
