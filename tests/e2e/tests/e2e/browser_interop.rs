//! Browser interop: headless Chromium running the plain-JavaScript client of
//! `tests/browser` (its fake camera, and a microphone playing 660 Hz) joins a room with
//! a bot. The bot receives and decodes Chromium's video and hears its tone; Chromium
//! receives and plays the bot's video and audio (its WebRTC stats and video element).
//!
//! Needs Node.js, `tests/browser/node_modules` (`npm ci` there) and Chromium at
//! `/usr/bin/chromium` (or `CONFER_CHROMIUM`); `scripts/setup.sh` installs them.

use std::process::Command;
use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;
use serde_json::Value;

#[test]
fn chromium_and_a_bot_see_and_hear_each_other() {
    let _one_at_a_time = exclusive();
    let chromium = std::env::var("CONFER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(std::path::Path::new(&chromium).exists(), "Chromium is not at {chromium}: run scripts/setup.sh");
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser has no node_modules: run scripts/setup.sh (npm ci in tests/browser)"
    );
    let dir = temp_dir("browser-interop");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "browser", &[]);
    let bot_report = dir.join("bot.json");
    let mut bot = Bot::publisher(
        "bot",
        &server,
        &room,
        &["--tone", "440", "--duration", "25", "--report", bot_report.to_str().unwrap()],
    );

    let page_report = dir.join("chromium.json");
    let screenshot = artifacts_dir().join("browser-interop.png");
    let t = token(&server, &room, "chromium", &[]);
    let out = Command::new("node")
        .arg(browser_dir().join("run.mjs"))
        .args(["--url", &server.url, "--token", &t, "--seconds", "15", "--tone", "660", "--chromium", &chromium])
        .args(["--out", page_report.to_str().unwrap(), "--screenshot", screenshot.to_str().unwrap()])
        .output()
        .expect("node runs");
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser client failed");
    assert_eq!(bot.wait_exit(Duration::from_secs(40)), 0);

    // Chromium received the bot's media and played it.
    let page: Value = serde_json::from_str(&std::fs::read_to_string(&page_report).unwrap()).unwrap();
    let inbound = |kind: &str| {
        page["inbound"].as_array().unwrap().iter().find(|s| s["kind"] == kind).cloned().unwrap_or_else(|| {
            panic!("Chromium received no {kind}: {page:#}");
        })
    };
    let video = inbound("video");
    assert_eq!(video["codec"], "video/VP8");
    assert!(video["frames_decoded"].as_u64().unwrap() >= 200, "Chromium decoded the bot's video: {video:#}");
    assert_eq!((video["frame_width"].as_u64(), video["frame_height"].as_u64()), (Some(640), Some(360)));
    let audio = inbound("audio");
    assert!(audio["total_samples_received"].as_u64().unwrap() >= 48_000 * 10, "Chromium played audio: {audio:#}");
    assert!(audio["audio_level"].as_f64().unwrap() > 0.05, "and it was not silence: {audio:#}");
    let element = page["elements"].as_array().unwrap().iter().find(|e| e["kind"] == "video").unwrap();
    assert_eq!(element["video_width"], 640, "the video element shows it: {element:#}");
    assert!(element["current_time"].as_f64().unwrap() > 5.0 && element["paused"] == false, "{element:#}");

    // The bot received Chromium's media and decoded it.
    let report = read_report(&bot_report);
    let video = stream(&report, "chromium", "video");
    assert!(video["frames_decoded"].as_u64().unwrap() >= 150, "the bot decoded Chromium's video: {video:#}");
    assert_eq!(video["decode_errors"], 0, "{video:#}");
    assert!(video["width"].as_u64().unwrap() >= 320, "{video:#}");
    let audio = stream(&report, "chromium", "audio");
    let tone = audio["tone_hz"].as_f64().unwrap_or_else(|| panic!("no tone from Chromium: {audio:#}"));
    assert!((tone - 660.0).abs() < 3.0, "the bot heard Chromium at {tone} Hz");
    server.stop();
}
