//! The server restarts (SIGTERM, as a service manager or an upgrade does) under a call:
//! every participant is told it is going away, reconnects on its own once it is back,
//! joins afresh (the old participants died with the process) and has video again.

use std::time::Duration;

use confer_e2e::report::*;
use confer_e2e::*;

#[test]
fn a_call_comes_back_after_a_server_restart() {
    let _one_at_a_time = exclusive();
    let dir = temp_dir("server-restart");
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "restart", &[]);
    let names = ["alice", "bob", "carol"];
    let mut bots: Vec<(Bot, std::path::PathBuf)> = names
        .iter()
        .map(|who| {
            let report = dir.join(format!("{who}.json"));
            let t = token(&server, &room, who, &[]);
            let args = ["--publish", "--video", "320x176@15", "--duration", "40", "--report", report.to_str().unwrap()];
            (Bot::spawn(who, &server, &t, &args), report)
        })
        .collect();
    for (bot, _) in &mut bots {
        for _ in 0..2 {
            bot.expect_event("track_subscribed", Duration::from_secs(20), |l| l["kind"] == "video");
        }
    }
    std::thread::sleep(Duration::from_secs(3));

    let down = unix_ms();
    let (db, port) = server.stop();
    let server = ServerProcess::start_on(db, port);
    let up = unix_ms();
    println!("server down for {} ms", up - down);
    for (bot, _) in &mut bots {
        let line = bot.expect_event("connection_interrupted", Duration::from_secs(5), |_| true);
        assert_eq!(line["error"], "server_shutdown", "{}: told why: {line}", bot.name);
        let back = bot.expect_event("reconnected", Duration::from_secs(20), |_| true);
        assert_eq!(back["resumed"], false, "{}: a fresh join on the new process", bot.name);
    }
    for (bot, _) in &mut bots {
        assert_eq!(bot.wait_exit(Duration::from_secs(60)), 0, "{} ends cleanly", bot.name);
    }
    server.stop();

    for (viewer, report) in names.iter().zip(bots.iter().map(|(_, r)| read_report(r))) {
        for other in names.iter().filter(|o| *o != viewer) {
            let s = stream(&report, other, "video");
            let (_, to) = stall_covering(s, up).unwrap_or_else(|| panic!("{viewer}: {other}'s video went on: {s:#}"));
            let to = to.unwrap_or_else(|| panic!("{viewer}: {other}'s video never came back: {s:#}"));
            println!("{viewer}: {other}'s video back {} ms after the server", to.saturating_sub(up));
            assert!(to <= up + 10_000, "{viewer}: {other}'s video back {} ms after the server", to - up);
            assert!(s["last_frame_at"].as_u64().unwrap() > up + 15_000, "{viewer}: and kept flowing: {s:#}");
        }
    }
}
