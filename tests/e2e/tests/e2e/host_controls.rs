//! Running a meeting with bots: a lobby where the host admits some and turns one away,
//! the lock refusing a newcomer, mute all and ask to unmute, hands in the order raised,
//! reactions, a promoted co-host who kicks, a guest refused every control, and the
//! meeting ended for everyone.

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

fn find<'a>(bot: &'a Bot, event: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    bot.seen
        .iter()
        .find(|l| l["event"] == event && pred(l))
        .unwrap_or_else(|| panic!("{}: no {event} in {:#?}", bot.name, bot.seen))
}

fn refused(bot: &Bot, request: &str) -> String {
    let line = find(bot, "error", |l| l["request"] == request);
    line["name"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_host_runs_the_meeting() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("host-controls");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "all-hands", &["--lobby", "--manager", "hana"]);

    // The host walks in (a manager skips the lobby); the rest knock.
    let t = token(&server, &room, "hana", &[]);
    let mut hana = Bot::spawn(
        "hana",
        &server,
        &t,
        &[
            "--subscribe",
            "none",
            "--at",
            "3:deny=dave",
            "--at",
            "3.5:admit=all",
            "--at",
            "6.5:lock",
            "--at",
            "7.5:mute_all",
            "--at",
            "8.5:ask_unmute=bob:audio",
            "--at",
            "9.5:promote=carol",
            "--at",
            "15:end_for_all",
            "--duration",
            "25",
        ],
    );
    hana.expect_event("connected", LONG, |_| true);
    let t = token(&server, &room, "bob", &[]);
    let mut bob = Bot::spawn(
        "bob",
        &server,
        &t,
        &["--publish", "--subscribe", "none", "--accept-unmute", "--at", "2.5:raise_hand", "--duration", "25"],
    );
    let t = token(&server, &room, "carol", &[]);
    let mut carol = Bot::spawn(
        "carol",
        &server,
        &t,
        &[
            "--subscribe",
            "none",
            "--at",
            "1:react=clap",
            "--at",
            "2:raise_hand",
            "--at",
            "6:lower_hand",
            "--at",
            "8:kick=bob",
            "--duration",
            "25",
        ],
    );
    let t = token(&server, &room, "dave", &[]);
    let mut dave = Bot::spawn("dave", &server, &t, &["--duration", "25"]);
    let invite = cli_json(&server, &["invite", "create", "--room", &room]);
    let pair =
        cli_json(&server, &["invite", "exchange", "--invite", invite["invite"].as_str().unwrap(), "--name", "Gus"]);
    let mut gus = Bot::spawn(
        "gus",
        &server,
        pair["token"].as_str().unwrap(),
        &[
            "--subscribe",
            "none",
            "--at",
            "1:admit=all",
            "--at",
            "1:lock",
            "--at",
            "1:mute_all",
            "--at",
            "1:end_for_all",
            "--at",
            "1:promote=carol",
            "--at",
            "1.5:move=carol:main",
            "--duration",
            "25",
        ],
    );

    // Everyone who knocks waits, and the host sees each knock, with how they came.
    for who in [&mut bob, &mut carol, &mut dave, &mut gus] {
        who.expect_event("lobby_waiting", LONG, |_| true);
    }
    for identity in ["bob", "carol", "dave"] {
        hana.expect_event("knocking", LONG, |l| l["knock"]["identity"] == identity && l["knock"]["via"] == "token");
    }
    hana.expect_event("knocking", LONG, |l| l["knock"]["via"] == "invite" && l["knock"]["name"] == "Gus");

    // Dave is turned away; the others are let in.
    dave.expect_event("denied", LONG, |l| l["reason"] == "denied");
    assert_eq!(dave.wait_exit(LONG), 2, "a denied knock is a refused join");
    for who in [&mut bob, &mut carol, &mut gus] {
        who.expect_event("admitted", LONG, |_| true);
        who.expect_event("connected", LONG, |_| true);
    }

    // Locked: a newcomer is refused with the catalog's `room_locked`.
    hana.expect_event("action_done", LONG, |l| l["action"] == "lock");
    let t = token(&server, &room, "erin", &[]);
    let mut erin = Bot::spawn("erin", &server, &t, &["--duration", "5"]);
    let refusal = erin.expect_event("error", LONG, |l| l["request"] == "join");
    assert_eq!(refusal["name"], "room_locked", "{refusal}");
    assert_eq!(refusal["code"], 4003);
    assert_eq!(erin.wait_exit(LONG), 2);

    // Mute all: bob's microphone is muted by the host, everyone is told; asked to
    // unmute, he does (--accept-unmute), and everyone is told that too.
    bob.expect_event("unmute_requested", LONG, |l| l["kind"] == "audio");
    bob.expect_event("unmuted", LONG, |l| l["kind"] == "audio");
    hana.expect_event("track_enabled", LONG, |l| l["identity"] == "bob" && l["kind"] == "audio");

    // The co-host kicks; the host ends the meeting for everyone.
    bob.expect_event("disconnected", LONG, |l| l["reason"] == "kicked");
    for who in [&mut hana, &mut carol, &mut gus] {
        who.expect_event("disconnected", LONG, |l| l["reason"] == "session_ended");
    }
    assert_eq!(hana.wait_exit(LONG), 0, "every host action succeeded: {:#?}", hana.seen);
    assert_eq!(carol.wait_exit(LONG), 0, "carol's actions succeeded: {:#?}", carol.seen);
    assert_eq!(bob.wait_exit(LONG), 0);
    assert_eq!(gus.wait_exit(LONG), 3, "the guest's controls were refused");

    // Everyone was told who muted bob.
    let hana_id = find(&hana, "connected", |_| true)["participant_id"].clone();
    for who in [&hana, &bob, &carol, &gus] {
        let muted = find(who, "track_disabled", |l| l["identity"] == "bob" && l["kind"] == "audio");
        assert_eq!(muted["by"], hana_id, "{}: {muted}", who.name);
    }
    // Carol was made a co-host live, and everyone saw it.
    for who in [&hana, &bob, &gus] {
        find(who, "participant_updated", |l| {
            l["participant"]["identity"] == "carol" && l["participant"]["role"] == "co_host"
        });
    }
    find(&hana, "participant_left", |l| l["identity"] == "bob" && l["reason"] == "kicked");

    // Hands in the order raised (carol, then bob); carol lowered hers herself.
    let raised: Vec<&Value> = hana.seen.iter().filter(|l| l["event"] == "hand_raised").collect();
    let order: Vec<&str> = raised.iter().map(|l| l["identity"].as_str().unwrap_or("?")).collect();
    assert_eq!(order, ["carol", "bob"], "{raised:#?}");
    assert!(at(raised[0]) <= at(raised[1]));
    let lowered = find(&hana, "hand_lowered", |l| l["identity"] == "carol");
    assert!(lowered.get("by").is_none(), "carol lowered her own hand: {lowered}");
    find(&gus, "reaction", |l| l["identity"] == "carol" && l["reaction"] == "clap");

    // Each control the guest tried was refused with the catalog's code.
    for request in ["admit", "lock", "mute_all", "end_for_all", "promote", "move_participant"] {
        assert_eq!(refused(&gus, request), "permission_denied", "guest's {request}");
    }
    // The knocks' ends, as the host saw them.
    find(&hana, "knock_ended", |l| l["identity"] == "dave" && l["outcome"] == "denied");
    find(&hana, "knock_ended", |l| l["identity"] == "carol" && l["outcome"] == "admitted");
    server.stop();
}
