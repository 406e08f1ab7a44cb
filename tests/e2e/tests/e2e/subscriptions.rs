//! Subscriptions: a subscriber receives only the streams it chose, and the audio and
//! video flags of a subscription decide which of its tracks flow (changed without
//! renegotiation, confirmed by `subscription_reconfigured`).

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;

#[test]
fn flags_choose_what_flows() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("subscription-flags");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "flags", &[]);
    let mut alice = Bot::publisher("alice", &server, &room, &["--subscribe", "none", "--duration", "16"]);
    let report = dir.join("bob.json");
    let t = token(&server, &room, "bob", &[]);
    let args = [
        "--at",
        "3:receive=audio",
        "--at",
        "6:receive=both",
        "--at",
        "9:receive=video",
        "--duration",
        "12",
        "--report",
        report.to_str().unwrap(),
    ];
    let mut bob = Bot::spawn("bob", &server, &t, &args);
    assert_eq!(bob.wait_exit(Duration::from_secs(30)), 0);
    let changes: Vec<(u64, bool, bool)> = bob
        .seen
        .iter()
        .filter(|l| l["event"] == "receive_changed")
        .map(|l| (at(l), l["audio"].as_bool().unwrap(), l["video"].as_bool().unwrap()))
        .collect();
    assert_eq!(changes.len(), 3, "{:?}", bob.seen);
    let reconfigured = bob.seen.iter().filter(|l| l["event"] == "subscription_reconfigured").count();
    assert_eq!(reconfigured, 3, "each change is confirmed");
    let report = read_report(&report);
    let audio = stream(&report, "alice", "audio");
    let video = stream(&report, "alice", "video");
    let (audio_only, both, video_only) = (changes[0].0, changes[1].0, changes[2].0);
    // Audio only: the video stops within a second and comes back after `both`.
    let (from, to) = stall_covering(video, audio_only + 1000).unwrap_or_else(|| panic!("video flowed: {video:#}"));
    assert!(from <= audio_only + 1000, "video stopped {} ms late", from.saturating_sub(audio_only));
    let to = to.expect("video came back");
    assert!(to >= both && to <= both + 2000, "video back at {to}, asked at {both}");
    assert!(stall_covering(audio, audio_only + 1500).is_none(), "audio flowed on: {audio:#}");
    // Video only: the audio stops and stays stopped to the end.
    let (from, to) = stall_covering(audio, video_only + 1000).unwrap_or_else(|| panic!("audio flowed: {audio:#}"));
    assert!(from <= video_only + 1000 && to.is_none(), "audio stall {from}..{to:?}, asked at {video_only}");
    assert!(stall_covering(video, video_only + 1500).is_none(), "video flowed on: {video:#}");
    assert_eq!(video["decode_errors"], 0);
    alice.wait_exit(Duration::from_secs(20));
    server.stop();
}

#[test]
fn a_subscriber_receives_only_whom_it_chose() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("subscription-choice");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "choice", &[]);
    let mut publishers = Vec::new();
    for (who, hz) in [("alice", "440"), ("carol", "660")] {
        let t = token(&server, &room, who, &[]);
        let mut bot =
            Bot::spawn(who, &server, &t, &["--publish", "--tone", hz, "--subscribe", "none", "--duration", "12"]);
        bot.expect_event("published", Duration::from_secs(10), |_| true);
        publishers.push(bot);
    }
    let report = dir.join("bob.json");
    let t = token(&server, &room, "bob", &[]);
    let args = ["--subscribe", "carol", "--duration", "6", "--report", report.to_str().unwrap()];
    let mut bob = Bot::spawn("bob", &server, &t, &args);
    assert_eq!(bob.wait_exit(Duration::from_secs(30)), 0);
    let report = read_report(&report);
    assert!(find_stream(&report, "alice", "video").is_none() && find_stream(&report, "alice", "audio").is_none());
    assert!(stream(&report, "carol", "video")["frames_decoded"].as_u64().unwrap() > 60);
    let tone = stream(&report, "carol", "audio")["tone_hz"].as_f64().unwrap();
    assert!((tone - 660.0).abs() < 3.0, "carol's tone: {tone}");
    for p in &mut publishers {
        p.wait_exit(Duration::from_secs(20));
    }
    server.stop();
}
