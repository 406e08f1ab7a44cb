//! Mute and censor: a publisher's mute stops its track at the subscribers (who are told
//! `track_disabled`, then `track_enabled`), and a manager's censor stops a track for
//! everyone within a second (`track_censored`), uncensor resumes it.

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;
use serde_json::Value;

/// Most of a second: frames already on their way when the server stops a track.
const STOP_WITHIN_MS: u64 = 1000;
/// A resumed video track waits for a keyframe.
const RESUME_WITHIN_MS: u64 = 2000;

fn event_at(bot: &Bot, event: &str, pred: impl Fn(&Value) -> bool) -> u64 {
    let line = bot.seen.iter().find(|l| l["event"] == event && pred(l));
    at(line.unwrap_or_else(|| panic!("{}: no {event} in {:?}", bot.name, bot.seen)))
}

#[test]
fn mute_and_censor_stop_and_resume_tracks() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("mute-censor");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "moderated", &["--manager", "carol"]);
    let mut alice = Bot::publisher(
        "alice",
        &server,
        &room,
        &["--subscribe", "none", "--at", "4:mute=audio", "--at", "6:unmute=audio", "--duration", "16"],
    );
    let report = dir.join("bob.json");
    let t = token(&server, &room, "bob", &[]);
    let mut bob = Bot::spawn("bob", &server, &t, &["--duration", "14", "--report", report.to_str().unwrap()]);
    bob.expect_event("track_subscribed", Duration::from_secs(10), |l| l["kind"] == "video");
    let t = token(&server, &room, "carol", &[]);
    let mut carol = Bot::spawn(
        "carol",
        &server,
        &t,
        &["--subscribe", "none", "--at", "6:censor=alice", "--at", "8.5:uncensor=alice", "--duration", "10"],
    );
    assert_eq!(carol.wait_exit(Duration::from_secs(30)), 0);
    assert_eq!(bob.wait_exit(Duration::from_secs(30)), 0);
    assert_eq!(alice.wait_exit(Duration::from_secs(30)), 0);

    let report = read_report(&report);
    let audio = stream(&report, "alice", "audio");
    let video = stream(&report, "alice", "video");

    // Mute: bob is told, and the audio stops until the unmute.
    let muted = event_at(&alice, "muted", |_| true);
    let unmuted = event_at(&alice, "unmuted", |_| true);
    let disabled = event_at(&bob, "track_disabled", |l| l["kind"] == "audio");
    let enabled = event_at(&bob, "track_enabled", |l| l["kind"] == "audio");
    assert!(disabled >= muted.saturating_sub(50) && disabled < unmuted, "track_disabled at {disabled}");
    assert!(enabled >= unmuted.saturating_sub(50), "track_enabled at {enabled}");
    let (from, to) =
        stall_covering(audio, muted + 500).unwrap_or_else(|| panic!("audio went on while muted: {audio:#}"));
    assert!(
        from + STOP_WITHIN_MS >= muted && from <= muted + STOP_WITHIN_MS,
        "audio stopped at {from}, muted at {muted}"
    );
    let to = to.expect("audio came back");
    assert!(to >= unmuted && to <= unmuted + RESUME_WITHIN_MS, "audio resumed at {to}, unmuted at {unmuted}");
    // The video went on meanwhile.
    assert!(stall_covering(video, muted + 500).is_none(), "muting audio stopped the video: {video:#}");

    // Censor: everyone is told, and both tracks stop within a second.
    let censored = event_at(&carol, "censor_succeeded", |_| true);
    let uncensored = event_at(&carol, "uncensor_succeeded", |_| true);
    for who in [&bob, &alice] {
        let told = event_at(who, "track_censored", |l| l["kind"] == "video");
        assert!(told >= censored.saturating_sub(200) && told < uncensored, "{} told of the censor at {told}", who.name);
        event_at(who, "track_uncensored", |l| l["kind"] == "video");
    }
    for (kind, stream) in [("video", video), ("audio", audio)] {
        let (from, to) = stall_covering(stream, censored + STOP_WITHIN_MS)
            .unwrap_or_else(|| panic!("{kind} went on while censored: {stream:#}"));
        assert!(
            from <= censored + STOP_WITHIN_MS,
            "{kind} stopped {} ms after the censor",
            from.saturating_sub(censored)
        );
        let to = to.unwrap_or_else(|| panic!("{kind} never came back: {stream:#}"));
        assert!(
            to >= uncensored && to <= uncensored + RESUME_WITHIN_MS,
            "{kind} resumed at {to}, uncensored at {uncensored}"
        );
    }
    assert_eq!(video["decode_errors"], 0, "{video:#}");
    server.stop();
}
