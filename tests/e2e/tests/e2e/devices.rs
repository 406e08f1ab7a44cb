//! The real media pipeline on virtual devices: PulseAudio null sinks and virtual
//! sources stand in for speakers and microphones, an Xvfb display for a desktop.

use std::time::Duration;

use confer_e2e::devices::{self, pulse_env, record, Display, TonePlayer};
use confer_e2e::report::*;
use confer_e2e::*;
use confer_media::tone::{dominant_frequency, level_dbfs};

fn bot(name: &str, server: &ServerProcess, room: &str, args: &[&str], env: &[(String, String)]) -> Bot {
    let t = token(server, room, name, &[]);
    let mut all = vec!["bot", "--url", &server.url, "--token", &t];
    all.extend_from_slice(args);
    Bot::spawn_with_env(name, &all, env)
}

#[test]
fn a_tone_into_one_microphone_comes_out_of_the_other_speaker() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("devices-tone");
    let (_mic, _mic_sink) = devices::microphone("alice_mic");
    let _spk = devices::speaker("bob_spk");
    let _tone = TonePlayer::start("alice_mic_in", 523.0, 0.3);
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "devices", &[]);
    let env = pulse_env();
    let mut alice =
        bot("alice", &server, &room, &["--mic", "alice_mic", "--subscribe", "none", "--duration", "14"], &env);
    alice.expect_event("published", Duration::from_secs(10), |_| true);
    let report = dir.join("bob.json");
    let mut bob = bot(
        "bob",
        &server,
        &room,
        &["--speaker", "bob_spk", "--duration", "12", "--report", report.to_str().unwrap()],
        &env,
    );
    std::thread::sleep(Duration::from_secs(6));
    let played = record("bob_spk", 4.0);
    assert_eq!(bob.wait_exit(Duration::from_secs(30)), 0);
    let report = read_report(&report);
    let audio = stream(&report, "alice", "audio");
    let heard = audio["tone_hz"].as_f64().unwrap_or_else(|| panic!("no tone received: {audio:#}"));
    assert!((heard - 523.0).abs() < 5.0, "bob received {heard} Hz: {audio:#}");
    assert!(played.len() >= 48_000 * 3, "recorded {} samples of bob's speaker", played.len());
    let out = dominant_frequency(&played, 48_000);
    let level = level_dbfs(&played);
    assert!(out.is_some_and(|f| (f - 523.0).abs() < 5.0), "bob's speaker played {out:?} Hz at {level:.1} dBFS");
    assert!(level > -40.0, "bob's speaker is too quiet: {level:.1} dBFS");
    alice.wait_exit(Duration::from_secs(20));
    server.stop();
}

/// Carol hears Alice's 440 Hz tone on her speaker, and her microphone hears that speaker
/// (a laptop without headphones) plus her own voice at 660 Hz. What Alice receives from
/// Carol: (440 level - 660 level), with and without echo cancellation.
fn echo_share(aec: bool) -> (f64, f64) {
    let dir = temp_dir(if aec { "devices-aec-on" } else { "devices-aec-off" });
    let _spk = devices::speaker("carol_room");
    let _mic = devices::Module::load(&["module-virtual-source", "source_name=carol_mic", "master=carol_room.monitor"]);
    let _voice = TonePlayer::start("carol_room", 660.0, 0.25);
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "echo", &[]);
    let env = pulse_env();
    let report = dir.join("alice.json");
    let mut alice = bot(
        "alice",
        &server,
        &room,
        &["--publish", "--video", "128x72@10", "--tone", "440", "--subscribe", "none", "--duration", "20"],
        &env,
    );
    alice.expect_event("published", Duration::from_secs(10), |_| true);
    let mut carol_args =
        vec!["--mic", "carol_mic", "--speaker", "carol_room", "--subscribe", "alice", "--duration", "16"];
    if !aec {
        carol_args.push("--no-aec");
    }
    let mut carol = bot("carol", &server, &room, &carol_args, &env);
    // Dave reports what he receives from Carol over the last two seconds.
    let mut listener = bot(
        "dave",
        &server,
        &room,
        &["--subscribe", "carol", "--probe-tones", "440,660", "--duration", "14", "--report", report.to_str().unwrap()],
        &env,
    );
    assert_eq!(listener.wait_exit(Duration::from_secs(40)), 0);
    let report = read_report(&report);
    let audio = stream(&report, "carol", "audio");
    let level =
        |hz: &str| audio["tone_levels_db"][hz].as_f64().unwrap_or_else(|| panic!("no {hz} Hz level: {audio:#}"));
    let (far, near) = (level("440"), level("660"));
    eprintln!("echo (aec {aec}): far end 440 Hz {far:.1} dBFS, near end 660 Hz {near:.1} dBFS");
    carol.wait_exit(Duration::from_secs(20));
    alice.kill();
    server.stop();
    (far, near)
}

#[test]
fn echo_cancellation_removes_the_far_end_and_keeps_the_near_end() {
    let _one_at_a_time = exclusive();
    let (far_off, near_off) = echo_share(false);
    let (far_on, near_on) = echo_share(true);
    assert!(far_off > -45.0, "without cancellation the echo is heard: {far_off:.1} dBFS");
    let reduction = (far_off - near_off) - (far_on - near_on);
    assert!(
        reduction >= 20.0,
        "echo reduced by {reduction:.1} dB relative to the near end (off: {far_off:.1}/{near_off:.1}, on: {far_on:.1}/{near_on:.1})"
    );
    assert!(near_on > -40.0, "the near end passes: {near_on:.1} dBFS");
}

#[test]
fn a_shared_screen_arrives_with_its_picture() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("devices-screen");
    // Four quadrants: red, green / blue, white.
    let (w, h) = (320usize, 240usize);
    let colour = |x: usize, y: usize| match (x < w / 2, y < h / 2) {
        (true, true) => [230u8, 20, 20],
        (false, true) => [20, 200, 20],
        (true, false) => [20, 20, 230],
        (false, false) => [240, 240, 240],
    };
    let picture: Vec<u8> = (0..h).flat_map(|y| (0..w).flat_map(move |x| colour(x, y))).collect();
    let display = Display::showing(w, h, &picture, &dir);
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "screen", &[]);
    let env = vec![("DISPLAY".to_owned(), display.name.clone())];
    let mut alice = bot("alice", &server, &room, &["--screen", "0", "--subscribe", "none", "--duration", "10"], &env);
    alice.expect_event("published", Duration::from_secs(10), |l| l["key"] == "screen");
    let snapshots = dir.join("snapshots");
    let report = dir.join("bob.json");
    let args = ["--duration", "6", "--snapshot", snapshots.to_str().unwrap(), "--report", report.to_str().unwrap()];
    let mut bob = bot("bob", &server, &room, &args, &[]);
    assert_eq!(bob.wait_exit(Duration::from_secs(30)), 0);
    let report = read_report(&report);
    let video = stream(&report, "alice", "video");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(w as u64), Some(h as u64)), "{video:#}");
    assert!(video["frames_decoded"].as_u64().unwrap_or(0) >= 10, "{video:#}");
    let ppm = std::fs::read(snapshots.join("alice-screen.ppm")).expect("bob kept the last frame");
    let pixels = &ppm[ppm.len() - w * h * 3..];
    std::fs::copy(snapshots.join("alice-screen.ppm"), artifacts_dir().join("screen-share-received.ppm")).ok();
    for (x, y) in [(w / 4, h / 4), (3 * w / 4, h / 4), (w / 4, 3 * h / 4), (3 * w / 4, 3 * h / 4)] {
        let got = &pixels[(y * w + x) * 3..][..3];
        let want = colour(x, y);
        let off = got.iter().zip(want).map(|(a, b)| a.abs_diff(b)).max().unwrap();
        assert!(off <= 40, "at ({x},{y}) bob sees {got:?}, the screen shows {want:?}");
    }
    alice.wait_exit(Duration::from_secs(20));
    server.stop();
}

#[test]
fn pulling_out_the_microphone_keeps_the_call() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("devices-unplug");
    let (mic, mic_sink) = devices::microphone("erin_mic");
    let _tone = TonePlayer::start("erin_mic_in", 523.0, 0.3);
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "unplug", &[]);
    let env = pulse_env();
    let mut erin = bot(
        "erin",
        &server,
        &room,
        &["--publish", "--video", "256x144@15", "--mic", "erin_mic", "--subscribe", "none", "--duration", "14"],
        &env,
    );
    erin.expect_event("published", Duration::from_secs(10), |_| true);
    let report = dir.join("frank.json");
    let mut frank = bot("frank", &server, &room, &["--duration", "12", "--report", report.to_str().unwrap()], &env);
    std::thread::sleep(Duration::from_secs(4));
    let pulled_at = unix_ms();
    mic.unload();
    mic_sink.unload();
    assert_eq!(frank.wait_exit(Duration::from_secs(30)), 0);
    assert_eq!(erin.wait_exit(Duration::from_secs(30)), 0, "erin's bot survives: {:?}", erin.seen);
    let report = read_report(&report);
    for kind in ["video", "audio"] {
        let s = stream(&report, "erin", kind);
        let last = s["last_frame_at"].as_u64().unwrap_or(0);
        assert!(last > pulled_at + 4000, "erin's {kind} stopped when the microphone went: {s:#}");
    }
    server.stop();
}

/// A headset plugged in during the call: the microphone is switched live, and the
/// other side hears the new one within a second, with no rejoin (same track, same
/// connection).
#[test]
fn a_microphone_switched_live_changes_what_the_others_hear() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("devices-switch");
    let (_laptop, _laptop_in) = devices::microphone("laptop_mic");
    let (_headset, _headset_in) = devices::microphone("headset_mic");
    let _room_sound = TonePlayer::start("laptop_mic_in", 440.0, 0.3);
    let _voice = TonePlayer::start("headset_mic_in", 880.0, 0.3);
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "switch", &[]);
    let env = pulse_env();
    let mut ivy = bot(
        "ivy",
        &server,
        &room,
        &[
            "--publish",
            "--video",
            "128x72@10",
            "--mic",
            "laptop_mic",
            "--subscribe",
            "none",
            "--at",
            "6:mic=headset_mic",
            "--duration",
            "12",
        ],
        &env,
    );
    ivy.expect_event("published", Duration::from_secs(10), |_| true);
    let report = dir.join("jon.json");
    let mut jon = bot("jon", &server, &room, &["--duration", "10", "--report", report.to_str().unwrap()], &env);
    assert_eq!(jon.wait_exit(Duration::from_secs(30)), 0);
    assert_eq!(ivy.wait_exit(Duration::from_secs(30)), 0, "{:?}", ivy.seen);
    let switched = at(ivy.seen.iter().find(|l| l["event"] == "mic_switched").expect("switched"));
    assert!(!ivy.seen.iter().any(|l| l["event"] == "published" && at(l) > switched), "ivy published again");

    let report = read_report(&report);
    let audio = stream(&report, "ivy", "audio");
    let changes = tone_changes(audio);
    assert!(changes.iter().any(|(t, hz)| *t < switched && near_tone(*hz, 440.0)), "the laptop first: {changes:?}");
    let (heard_at, _) = *changes
        .iter()
        .find(|(t, hz)| *t >= switched && near_tone(*hz, 880.0))
        .unwrap_or_else(|| panic!("the headset never heard after the switch at {switched}: {changes:?}"));
    eprintln!("microphone switch: the new one heard {} ms after the switch", heard_at - switched);
    assert!(heard_at <= switched + 1000, "the headset was heard {} ms after the switch", heard_at - switched);
    assert!(changes.last().is_some_and(|(_, hz)| near_tone(*hz, 880.0)), "it stayed on the headset: {changes:?}");
    // One track all along: no stall longer than the switch itself.
    assert!(stalls(audio).iter().all(|(from, to)| to.is_some_and(|to| to - from < 1000)), "{audio:#}");
    server.stop();
}

#[test]
fn devices_are_listed_by_name_and_interface_sounds_play() {
    let _one_at_a_time = exclusive();
    let (_mic, _mic_sink) = devices::microphone("gina_mic");
    let _spk = devices::speaker("gina_spk");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin("confer-cli")).args(args).envs(pulse_env()).output().unwrap();
        assert!(out.status.success(), "confer-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let listed = run(&["devices"]);
    let ids = |list: &str| -> Vec<String> {
        listed[list].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap_or_default().to_owned()).collect()
    };
    assert!(ids("microphones").contains(&"gina_mic".to_owned()), "{listed:#}");
    assert!(ids("speakers").contains(&"gina_spk".to_owned()), "{listed:#}");
    assert!(listed["cameras"].is_array(), "no camera here is an empty list: {listed:#}");

    // "Someone joined": 660 Hz then 880 Hz, heard on the chosen speaker.
    let recording = std::thread::spawn(|| record("gina_spk", 3.5));
    std::thread::sleep(Duration::from_millis(300));
    run(&["devices", "--play", "joined", "--speaker", "gina_spk"]);
    let recorded = recording.join().unwrap();
    // A null sink's monitor is silent while nothing plays: look at the sound itself.
    let loud = |s: &&i16| s.unsigned_abs() > 100;
    let first = recorded.iter().position(|s| loud(&s)).unwrap_or(0);
    let last = recorded.iter().rposition(|s| loud(&s)).unwrap_or(0);
    assert!(last > first + 4800, "no sound on gina_spk ({} samples recorded)", recorded.len());
    let heard = &recorded[first..=last];
    let level = |hz: f64| confer_media::tone::tone_level_dbfs(heard, 48_000, hz);
    assert!(
        level(660.0) > -60.0 && level(880.0) > -60.0,
        "660 Hz {:.1} dBFS, 880 Hz {:.1} dBFS",
        level(660.0),
        level(880.0)
    );
    assert!(level(440.0) < level(660.0) - 15.0, "only the sound's notes: 440 Hz at {:.1} dBFS", level(440.0));
}
