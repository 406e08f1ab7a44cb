//! Issue 3 acceptance, black box: real `confer-server` and `confer-cli bot` processes
//! exchanging VP8 video and Opus audio over UDP through the SFU, judged by the bots'
//! `--report` files (frames decoded from the pattern stamps, tones detected).

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;

#[test]
fn three_bots_see_and_hear_each_other() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("media-three");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "media", &[]);
    let people = [("alice", "440"), ("bob", "550"), ("carol", "660")];
    let mut bots: Vec<(Bot, std::path::PathBuf)> = people
        .iter()
        .map(|(who, hz)| {
            let report = dir.join(format!("{who}.json"));
            let t = token(&server, &room, who, &[]);
            let args = ["--publish", "--video", "640x360@30", "--tone", hz, "--subscribe", "all", "--duration", "20"];
            let mut args: Vec<&str> = args.to_vec();
            args.extend(["--report", report.to_str().unwrap()]);
            (Bot::spawn(who, &server, &t, &args), report)
        })
        .collect();
    for (bot, _) in &mut bots {
        assert_eq!(bot.wait_exit(Duration::from_secs(60)), 0, "{} exits cleanly", bot.name);
    }
    for ((who, _), (_, path)) in people.iter().zip(&bots) {
        let report = read_report(path);
        for (other, hz) in people.iter().filter(|(o, _)| o != who) {
            let video = stream(&report, other, "video");
            assert_eq!(video["codec"], "VP8");
            assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(640), Some(360)), "{who} <- {other}");
            assert_eq!(video["decode_errors"], 0, "{who} <- {other}: {video:#}");
            let expected = video["frames_expected"].as_u64().unwrap();
            assert!(expected >= 300, "{who} <- {other}: at least 10 s of video: {video:#}");
            assert!(decoded_share(video) >= 0.95, "{who} <- {other}: {video:#}");
            assert!(video["latency_ms"]["p50"].as_u64().is_some(), "{who} <- {other}: latency measured");
            let audio = stream(&report, other, "audio");
            let tone = audio["tone_hz"].as_f64().unwrap_or_else(|| panic!("{who} <- {other}: no tone: {audio:#}"));
            let want: f64 = hz.parse().unwrap();
            assert!((tone - want).abs() < 3.0, "{who} hears {other} at {tone} Hz, not {want}");
        }
    }
    server.stop();
}
