//! Simulcast: a subscriber gets the layer it asks for, switches within 2 s when it asks
//! for another, and is held to a lower layer when its downlink cannot carry the top one.

use std::time::Duration;

use confer_e2e::link::Conditions;
use confer_e2e::report::*;
use confer_e2e::*;

#[test]
fn a_quality_change_switches_layers_within_two_seconds() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("simulcast-quality");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "simulcast", &[]);
    let mut alice = Bot::publisher(
        "alice",
        &server,
        &room,
        &["--simulcast", "--video", "640x360@30", "--subscribe", "none", "--duration", "16"],
    );
    let report = dir.join("bob.json");
    let t = token(&server, &room, "bob", &[]);
    let mut bob = Bot::spawn(
        "bob",
        &server,
        &t,
        &[
            "--quality",
            "low",
            "--at",
            "5:quality=high",
            "--at",
            "9:quality=medium",
            "--duration",
            "12",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(bob.wait_exit(Duration::from_secs(40)), 0);
    let changes: Vec<u64> =
        bob.seen.iter().filter(|l| l["event"] == "quality_changed").map(|l| l["at_ms"].as_u64().unwrap()).collect();
    assert_eq!(changes.len(), 2, "both quality changes were made: {:?}", bob.seen);
    let report = read_report(&report);
    let video = stream(&report, "alice", "video");
    let steps = resolutions(video);
    assert_eq!(steps.first().map(|s| (s.1, s.2)), Some((160, 90)), "starts on the low layer: {steps:?}");
    let switched = |w: u64, after: u64| steps.iter().find(|s| s.1 == w && s.0 >= after).map(|s| s.0 - after);
    let to_high = switched(640, changes[0]).unwrap_or_else(|| panic!("never reached the high layer: {steps:?}"));
    assert!(to_high <= 2000, "high layer {to_high} ms after asking: {steps:?}");
    let to_medium = switched(320, changes[1]).unwrap_or_else(|| panic!("never went to the medium layer: {steps:?}"));
    assert!(to_medium <= 2000, "medium layer {to_medium} ms after asking: {steps:?}");
    assert_eq!(video["decode_errors"], 0, "{video:#}");
    assert!(decoded_share(video) >= 0.95, "layer switches lose no frames: {video:#}");
    alice.wait_exit(Duration::from_secs(20));
    server.stop();
}

#[test]
fn a_capped_downlink_gets_a_lower_layer_and_the_top_one_when_the_cap_lifts() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("simulcast-cap");
    let (server, relay) = server_behind_relay(dir.join("db.sqlite"), &[]);
    let room = create_room(&server, "simulcast", &[]);
    let mut alice = Bot::publisher(
        "alice",
        &server,
        &room,
        &["--simulcast", "--video", "640x360@30", "--subscribe", "none", "--duration", "30"],
    );
    // Carol's downlink carries 450 kbit/s: not the full layer (about 700), but the half
    // layer (about 200) with room to spare. Dave's is free. After 14 s carol's is too.
    relay.set("127.0.0.3".parse().unwrap(), Conditions { down_kbps: Some(450), ..Conditions::default() });
    let mut viewers = Vec::new();
    for (who, ip) in [("carol", "127.0.0.3"), ("dave", "127.0.0.4")] {
        let report = dir.join(format!("{who}.json"));
        let t = token(&server, &room, who, &[]);
        let args = ["--quality", "high", "--media-ip", ip, "--duration", "26", "--report", report.to_str().unwrap()];
        viewers.push((Bot::spawn(who, &server, &t, &args), report));
    }
    let lifted = 14_000;
    std::thread::sleep(Duration::from_millis(lifted));
    relay.set("127.0.0.3".parse().unwrap(), Conditions::default());
    for (bot, _) in &mut viewers {
        assert_eq!(bot.wait_exit(Duration::from_secs(40)), 0, "{} exits cleanly", bot.name);
    }
    let run = 26_000;
    let carol = read_report(&viewers[0].1);
    let video = stream(&carol, "alice", "video");
    // After the estimator found the cap, carol spends most of her time below the top.
    let settled = 6_000;
    let on_top = time_at_width(video, 640, settled, lifted);
    assert!(
        on_top * 100 <= (lifted - settled) * 30,
        "capped viewer at 640 px for {on_top} ms: {:?}",
        resolutions(video)
    );
    assert!(time_at_width(video, 320, settled, lifted) > 0, "and on the half layer: {:?}", resolutions(video));
    // Once the cap lifts, the next probe of her path (every 2 s) finds the room, and
    // she is back on the top layer: not after a backoff of 15 s or more.
    let back = lifted + 7_000;
    let on_top = time_at_width(video, 640, back, run);
    assert!(on_top * 100 >= (run - back) * 80, "back at 640 px for only {on_top} ms: {:?}", resolutions(video));
    // It lost frames while the full layer overran the path, then watched on.
    assert!(decoded_share(video) >= 0.6, "still watching: {video:#}");
    assert!(video["latency_ms"]["p50"].as_u64().unwrap() < 200, "no queue builds up: {video:#}");
    let dave = read_report(&viewers[1].1);
    let video = stream(&dave, "alice", "video");
    let on_top = time_at_width(video, 640, settled, run);
    assert!(on_top * 100 >= (run - settled) * 90, "free viewer at 640 px for only {on_top} ms: {video:#}");
    assert!(relay.stats().down_dropped.load(std::sync::atomic::Ordering::Relaxed) > 0, "the cap was hit");
    alice.wait_exit(Duration::from_secs(20));
    server.stop();
}
