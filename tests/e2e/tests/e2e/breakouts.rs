//! Breakout rooms: the host splits four bots into two rooms of two; each sees and hears
//! only its roommate there; when the rooms close everyone is back in the main room,
//! with everyone's media again, on the same connection and devices.

use std::collections::HashSet;
use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(40);
const TONES: [(&str, &str); 4] = [("ann", "500"), ("ben", "600"), ("cat", "700"), ("dan", "800")];

fn moved(bot: &Bot, pred: impl Fn(&Value) -> bool) -> &Value {
    bot.seen
        .iter()
        .find(|l| l["event"] == "moved" && pred(l))
        .unwrap_or_else(|| panic!("{}: no such move in {:#?}", bot.name, bot.seen))
}

#[test]
fn breakout_rooms_split_the_meeting_and_bring_it_back() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("breakouts");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "workshop", &["--manager", "hana"]);
    let t = token(&server, &room, "hana", &[]);
    let mut hana = Bot::spawn(
        "hana",
        &server,
        &t,
        &["--subscribe", "none", "--at", "6:breakouts=2", "--at", "14:close_breakouts=2", "--duration", "26"],
    );
    hana.expect_event("connected", LONG, |_| true);
    let mut bots: Vec<Bot> = TONES
        .iter()
        .map(|(who, tone)| {
            let report = dir.join(format!("{who}.json"));
            Bot::publisher(
                who,
                &server,
                &room,
                &["--video", "320x176@15", "--tone", tone, "--duration", "24", "--report", report.to_str().unwrap()],
            )
        })
        .collect();
    for bot in &mut bots {
        assert_eq!(bot.wait_exit(LONG), 0, "{}: {:#?}", bot.name, bot.seen);
    }
    assert_eq!(hana.wait_exit(LONG), 0, "{:#?}", hana.seen);

    // Two rooms of two: each bot moved once out and once back. (Moves happen one by
    // one: whoever moves first finds the room empty and sees the other join.)
    let mut rooms: Vec<(String, HashSet<String>)> = Vec::new();
    for bot in &bots {
        let out = moved(bot, |l| l["main_room"] == room.as_str());
        let back = moved(bot, |l| l["room"] == room.as_str());
        assert!(at(back) > at(out));
        let breakout = out["room"].as_str().unwrap().to_owned();
        match rooms.iter_mut().find(|(r, _)| *r == breakout) {
            Some((_, who)) => {
                who.insert(bot.name.clone());
            }
            None => rooms.push((breakout, HashSet::from([bot.name.clone()]))),
        }
        // Back in the main room: everyone is there again (those brought back before it
        // are in its snapshot, the later ones join after).
        let mut everyone: HashSet<&str> =
            back["participants"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        everyone.extend(
            bot.seen
                .iter()
                .filter(|l| l["event"] == "participant_joined" && at(l) >= at(back))
                .filter_map(|l| l["identity"].as_str()),
        );
        assert!(everyone.contains("hana") && everyone.len() == 4, "{}: back with {everyone:?}", bot.name);
    }
    assert_eq!(rooms.len(), 2, "{rooms:?}");
    assert!(rooms.iter().all(|(_, who)| who.len() == 2), "{rooms:?}");

    for bot in &bots {
        let out = at(moved(bot, |l| l["main_room"] == room.as_str()));
        let back = at(moved(bot, |l| l["room"] == room.as_str()));
        let mate = rooms
            .iter()
            .find(|(_, who)| who.contains(&bot.name))
            .unwrap()
            .1
            .iter()
            .find(|w| **w != bot.name)
            .unwrap()
            .clone();
        // In the breakout room, media came from the roommate only.
        let subscribed: Vec<&Value> =
            bot.seen.iter().filter(|l| l["event"] == "track_subscribed" && at(l) > out && at(l) < back).collect();
        assert!(
            !subscribed.is_empty(),
            "{}: nothing received in the breakout room ({out}..{back}): {:#?}",
            bot.name,
            bot.seen.iter().filter(|l| l["event"] == "track_subscribed" || l["event"] == "moved").collect::<Vec<_>>()
        );
        for l in &subscribed {
            assert_eq!(l["identity"], mate.as_str(), "{}: media from outside the room: {l}", bot.name);
        }
        // The move takes under a second: the roommate's sound and picture are there.
        let arrived =
            |kind: &str| subscribed.iter().find(|l| l["kind"] == kind).map(|l| at(l) - out).unwrap_or(u64::MAX);
        let (audio_ms, video_ms) = (arrived("audio"), arrived("video"));
        eprintln!("{}: moved; {mate}'s audio after {audio_ms} ms, video after {video_ms} ms", bot.name);
        assert!(audio_ms < 1000 && video_ms < 1000, "{}: {audio_ms} / {video_ms} ms to media", bot.name);
        // What a viewer notices: the roommate's picture and sound went on through the
        // breakout; everyone else's stopped for it and came back after it.
        let report = read_report(&dir.join(format!("{}.json", bot.name)));
        let middle = out + (back - out) / 2;
        for (other, tone) in TONES.iter().filter(|(w, _)| *w != bot.name) {
            for kind in ["audio", "video"] {
                let s = stream(&report, other, kind);
                let stall = stall_covering(s, middle);
                if *other == mate {
                    assert!(stall.is_none(), "{}: {mate}'s {kind} stalled in their breakout room: {s:#}", bot.name);
                } else {
                    let (from, to) = stall.unwrap_or_else(|| {
                        panic!("{}: received {other}'s {kind} in the breakout room: {s:#}", bot.name)
                    });
                    assert!(from <= out + 1500, "{}: {other}'s {kind} went on until {from} (moved at {out})", bot.name);
                    let to = to.unwrap_or_else(|| panic!("{}: {other}'s {kind} never came back", bot.name));
                    assert!(
                        to >= back && to <= back + 3000,
                        "{}: {other}'s {kind} back at {to}, moved back at {back}",
                        bot.name
                    );
                }
            }
            let heard = stream(&report, other, "audio");
            let hz: f64 = tone.parse().unwrap();
            assert!((heard["tone_hz"].as_f64().unwrap_or(0.0) - hz).abs() < 10.0, "{}: {heard:#}", bot.name);
        }
    }
    find_closing(&hana);
    server.stop();
}

fn find_closing(hana: &Bot) {
    let closing = hana.seen.iter().find(|l| l["event"] == "breakouts_updated" && l["breakouts"]["closes_at"].is_u64());
    assert!(closing.is_some(), "the host saw the countdown: {:#?}", hana.seen);
}
