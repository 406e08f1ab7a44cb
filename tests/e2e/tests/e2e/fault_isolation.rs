//! A bug met while serving one participant (a panic) ends that participant's part and
//! nothing else: the others in its room are told, and other rooms, the media thread
//! and the signaling runtime carry on. The server runs inside the test, where faults
//! can be injected ([`confer_server::Server::inject_fault`]).

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;
use confer_server::{Fault, Server, ServerConfig};

#[test]
fn a_panic_ends_only_what_it_concerns() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("fault-isolation");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = ServerConfig { api_key: Some(KEY.into()), api_secret: Some(SECRET.into()), ..ServerConfig::default() };
    let server = runtime.block_on(Server::start(config)).expect("server starts");
    let handle = ServerProcess::in_process(server.http_addr());
    let (a, b) = (create_room(&handle, "a", &[]), create_room(&handle, "b", &[]));

    // alice and bob in room a (bob mutes his microphone after 12 s: a request), carol
    // and dan in room b.
    let mut bots = Vec::new();
    for (room, who, at) in
        [(&a, "alice", None), (&a, "bob", Some("12:mute=audio")), (&b, "carol", None), (&b, "dan", None)]
    {
        let report = dir.join(format!("{who}.json"));
        let t = token(&handle, room, who, &[]);
        let mut args =
            vec!["--publish", "--video", "320x176@15", "--duration", "24", "--report", report.to_str().unwrap()];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        bots.push((Bot::spawn(who, &handle, &t, &args), report));
    }
    for (bot, _) in &mut bots {
        bot.expect_event("track_subscribed", Duration::from_secs(20), |l| l["kind"] == "video");
    }
    std::thread::sleep(Duration::from_secs(2));

    // alice's media connection panics: her stream ends, bob is told.
    let media_fault = unix_ms();
    assert!(server.inject_fault(&a.as_str().into(), "alice", Fault::Media));
    bots[1].0.expect_event("stream_unpublished", Duration::from_secs(10), |l| l["identity"] == "alice");

    // bob's next request panics its handler: bob is out, alice is told why he left.
    assert!(server.inject_fault(&a.as_str().into(), "bob", Fault::Signaling));
    let (bob, _) = &mut bots[1];
    let line = bob.expect_event("disconnected", Duration::from_secs(20), |_| true);
    assert_eq!(line["reason"], "server_error", "{line}");
    bots[0].0.expect_event("participant_left", Duration::from_secs(5), |l| l["identity"] == "bob");

    // The server answers, and room b never noticed.
    let out = cli(&handle, &["room", "get", &b]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (bot, _) in &mut bots[2..] {
        assert_eq!(bot.wait_exit(Duration::from_secs(60)), 0, "{} ends cleanly", bot.name);
    }
    for (viewer, other) in [(2, "dan"), (3, "carol")] {
        let report = read_report(&bots[viewer].1);
        let s = stream(&report, other, "video");
        assert!(stall_covering(s, media_fault).is_none(), "{other}'s video stalled at the fault: {s:#}");
        assert!(stalls(s).is_empty(), "{other}'s video stalled: {s:#}");
        assert!(s["last_frame_at"].as_u64().unwrap() > media_fault + 10_000, "and kept flowing: {s:#}");
    }
    for (bot, _) in &mut bots[..2] {
        bot.kill();
    }
    runtime.block_on(server.shutdown());
}
