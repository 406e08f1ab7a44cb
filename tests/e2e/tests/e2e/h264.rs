//! H.264 end to end: a bot publishing H.264 (OpenH264) is received and decoded whole.

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;

#[test]
fn h264_video_arrives_and_decodes() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("h264");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "h264", &[]);
    let t = token(&server, &room, "alice", &[]);
    let mut alice = Bot::spawn(
        "alice",
        &server,
        &t,
        &["--publish", "--codec", "h264", "--video", "640x360@30", "--subscribe", "none", "--duration", "14"],
    );
    let published = alice.expect_event("published", Duration::from_secs(10), |_| true);
    assert!(published["tracks"].as_array().unwrap().iter().any(|t| t["codec"] == "H264"), "{published}");
    let report = dir.join("bob.json");
    let t = token(&server, &room, "bob", &[]);
    let mut bob = Bot::spawn("bob", &server, &t, &["--duration", "10", "--report", report.to_str().unwrap()]);
    assert_eq!(bob.wait_exit(Duration::from_secs(30)), 0);
    let report = read_report(&report);
    let video = stream(&report, "alice", "video");
    assert_eq!(video["codec"], "H264");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(640), Some(360)));
    assert_eq!(video["decode_errors"], 0, "{video:#}");
    assert!(video["frames_expected"].as_u64().unwrap() >= 240, "{video:#}");
    assert!(decoded_share(video) >= 0.95, "{video:#}");
    alice.wait_exit(Duration::from_secs(20));
    server.stop();
}
