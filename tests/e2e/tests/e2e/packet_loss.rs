//! 5 % packet loss on every path, both ways: retransmissions (NACK) and keyframe
//! requests (PLI) keep video decoding and audio audible.

use std::sync::atomic::Ordering;
use std::time::Duration;

use confer_e2e::link::Conditions;
use confer_e2e::report::*;
use confer_e2e::*;

#[test]
fn media_survives_five_percent_loss() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("packet-loss");
    let (server, relay) = server_behind_relay(dir.join("db.sqlite"), &[]);
    for ip in ["127.0.0.2", "127.0.0.3"] {
        relay.set(ip.parse().unwrap(), Conditions::lossy(0.05));
    }
    let room = create_room(&server, "lossy", &[]);
    let mut alice = Bot::publisher(
        "alice",
        &server,
        &room,
        &["--media-ip", "127.0.0.2", "--tone", "440", "--subscribe", "none", "--duration", "20"],
    );
    let report = dir.join("bob.json");
    let t = token(&server, &room, "bob", &[]);
    let args = ["--media-ip", "127.0.0.3", "--duration", "15", "--report", report.to_str().unwrap()];
    let mut bob = Bot::spawn("bob", &server, &t, &args);
    assert_eq!(bob.wait_exit(Duration::from_secs(40)), 0);

    let stats = relay.stats();
    let (up_sent, up_dropped) = (stats.up_sent.load(Ordering::Relaxed), stats.up_dropped.load(Ordering::Relaxed));
    let (down_sent, down_dropped) =
        (stats.down_sent.load(Ordering::Relaxed), stats.down_dropped.load(Ordering::Relaxed));
    let share = |dropped: u64, sent: u64| dropped as f64 / (dropped + sent).max(1) as f64;
    assert!((0.03..0.08).contains(&share(up_dropped, up_sent)), "uplink loss {up_dropped} of {}", up_sent + up_dropped);
    assert!(
        (0.03..0.08).contains(&share(down_dropped, down_sent)),
        "downlink loss {down_dropped} of {}",
        down_sent + down_dropped
    );

    let report = read_report(&report);
    let video = stream(&report, "alice", "video");
    // About one packet in ten is lost between alice and bob; retransmission recovers
    // nearly all of it, keyframe requests the rest.
    assert!(decoded_share(video) >= 0.9, "decoded {:.2} of the frames: {video:#}", decoded_share(video));
    assert!(video["frames_expected"].as_u64().unwrap() >= 300, "{video:#}");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(640), Some(360)));
    // Retransmissions were asked for (and mostly arrived: what was lost for good is
    // a small share).
    let received = report["webrtc"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["direction"] == "received" && s["kind"] == "video");
    let received = received.unwrap_or_else(|| panic!("no statistics of the received video: {report:#}"));
    assert!(received["nacks_sent"].as_u64().unwrap() > 0, "NACKs were sent: {received:#}");
    let longest = stalls(video).iter().map(|(f, t)| t.unwrap_or(f + 10_000) - f).max().unwrap_or(0);
    assert!(longest < 2000, "the video froze for {longest} ms: {video:#}");
    let audio = stream(&report, "alice", "audio");
    let tone = audio["tone_hz"].as_f64().unwrap_or_else(|| panic!("no tone: {audio:#}"));
    assert!((tone - 440.0).abs() < 3.0, "heard {tone} Hz");
    // Lost audio is concealed, not waited for: the sound never stops.
    assert!(stalls(audio).is_empty(), "audio gaps: {:?}", stalls(audio));
    alice.wait_exit(Duration::from_secs(20));
    server.stop();
}
