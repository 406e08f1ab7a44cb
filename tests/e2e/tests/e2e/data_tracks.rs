//! Data tracks: messages a publisher sends on a data track of its stream reach the
//! stream's subscribers over data channels, in order and in full.

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;

#[test]
fn data_track_messages_reach_subscribers() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("data-tracks");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "data", &[]);
    let t = token(&server, &room, "alice", &[]);
    let mut alice = Bot::spawn(
        "alice",
        &server,
        &t,
        &["--publish", "--data", "--video", "640x360@15", "--subscribe", "none", "--duration", "12"],
    );
    let published = alice.expect_event("published", Duration::from_secs(10), |_| true);
    assert!(published["tracks"].as_array().unwrap().iter().any(|t| t["kind"] == "data"), "{published}");
    let mut viewers = Vec::new();
    for who in ["bob", "carol"] {
        let report = dir.join(format!("{who}.json"));
        let t = token(&server, &room, who, &[]);
        viewers
            .push((Bot::spawn(who, &server, &t, &["--duration", "8", "--report", report.to_str().unwrap()]), report));
    }
    // Without the data grant, no data track (the video still comes).
    let dan_report = dir.join("dan.json");
    let t = token(&server, &room, "dan", &["--no-data"]);
    let mut dan = Bot::spawn("dan", &server, &t, &["--duration", "8", "--report", dan_report.to_str().unwrap()]);
    for (bot, report) in &mut viewers {
        assert_eq!(bot.wait_exit(Duration::from_secs(30)), 0);
        let report = read_report(report);
        let data = stream(&report, "alice", "data");
        assert_eq!(data["codec"], "data");
        // Ten a second for the ~7 s after the channel opened.
        let received = data["frames_decoded"].as_u64().unwrap();
        assert!(received >= 50, "{}: {received} messages: {data:#}", bot.name);
        assert_eq!(data["frame_gaps"], 0, "{}: in order, none lost: {data:#}", bot.name);
        assert_eq!(data["decode_errors"], 0);
        assert!(data["latency_ms"]["p50"].as_u64().unwrap() < 100, "{data:#}");
    }
    assert_eq!(dan.wait_exit(Duration::from_secs(30)), 0);
    let report = read_report(&dan_report);
    assert!(find_stream(&report, "alice", "data").is_none(), "a data track reached dan: {report:#}");
    assert!(stream(&report, "alice", "video")["frames_decoded"].as_u64().unwrap() > 0, "{report:#}");
    alice.wait_exit(Duration::from_secs(20));
    server.stop();
}
