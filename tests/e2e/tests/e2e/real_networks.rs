//! Meetings on networks built inside the test (issue 12): clients in network namespaces
//! whose firewalls drop UDP or let out only a TURN server's TCP port, a LAN with no
//! default route (no route for multicast, so no mDNS), clients behind
//! masquerading NAT routers, relay-only media through coturn, and a call that outlives
//! several join-token lifetimes. The real server, coturn and bots, judged by the bots'
//! reports: the path ICE chose (from their WebRTC statistics) and the frames decoded.

use std::path::PathBuf;
use std::time::Duration;

use confer_e2e::netns::{self, Coturn, Netns};
use confer_e2e::report::*;
use confer_e2e::*;
use serde_json::Value;

/// Video small enough that two bots on two shared cores keep their frame rate.
const VIDEO: &str = "320x240@15";

fn skip_without_netns() -> bool {
    if netns::available() {
        return false;
    }
    // CI and these machines run as root; elsewhere the test cannot build networks.
    assert!(std::env::var_os("CI").is_none(), "network namespaces are needed in CI (root, iproute2, nftables)");
    eprintln!("skipped: no network namespaces here (needs root, ip and nft)");
    true
}

/// `who`'s report says it decoded ≥ 95 % of `from`'s frames and heard its tone.
fn assert_received(report: &Value, who: &str, from: &str, hz: f64) {
    let video = stream(report, from, "video");
    let share = decoded_share(video);
    assert!(video["frames_expected"].as_u64().unwrap_or(0) >= 60, "{who} <- {from}: too little video: {video:#}");
    assert!(share >= 0.95, "{who} <- {from}: {:.1} % of frames decoded: {video:#}", share * 100.0);
    let audio = stream(report, from, "audio");
    let tone = audio["tone_hz"].as_f64().unwrap_or(0.0);
    assert!((tone - hz).abs() < 15.0, "{who} <- {from}: heard {tone} Hz, not {hz}: {audio:#}");
}

fn path(report: &Value, connection: &str) -> (String, String) {
    let p = &report["media_path"][connection];
    let text =
        |k: &str| p[k].as_str().unwrap_or_else(|| panic!("no {k} in the {connection} path: {report:#}")).to_owned();
    (text("local_type"), text("protocol"))
}

/// A server on this machine, announced at `ns`'s way out, with coturn beside it when
/// `turn` (kept alive with it).
fn server_for(ns: &Netns, dir: &std::path::Path, turn: bool) -> (ServerProcess, Option<Coturn>) {
    let coturn = turn.then(|| Coturn::start(ns.host_ip(), dir));
    let args = coturn.as_ref().map(Coturn::server_args).unwrap_or_default();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (ServerProcess::start_public(dir.join("db.sqlite"), ns.host_ip(), &args), coturn)
}

/// One side of a two-bot meeting: who, where (a namespace, or this machine), its tone,
/// and extra bot flags.
struct Side<'a> {
    who: &'static str,
    ns: Option<&'a Netns>,
    tone: &'static str,
    extra: &'a [&'a str],
}

/// Two bots that publish and receive each other for 15 s; their reports, each checked
/// for ≥ 95 % of the other's frames decoded and its tone heard.
fn meet(server: &ServerProcess, dir: &std::path::Path, a: Side, b: Side) -> (Value, Value) {
    let room = create_room(server, "net", &[]);
    let mut running = Vec::new();
    for side in [&a, &b] {
        let report = dir.join(format!("{}.json", side.who));
        let t = token(server, &room, side.who, &[]);
        let mut args = publishing_bot_args(&server.url, &t, VIDEO, side.tone, "15", &report);
        args.extend_from_slice(side.extra);
        let bot = match side.ns {
            Some(ns) => Bot::spawn_in(side.who, ns, &args),
            None => Bot::spawn_args(side.who, &args),
        };
        running.push((bot, report));
    }
    for (bot, _) in &mut running {
        assert_eq!(bot.wait_exit(Duration::from_secs(60)), 0, "{} exits cleanly", bot.name);
    }
    let (ra, rb) = (read_report(&running[0].1), read_report(&running[1].1));
    assert_received(&ra, a.who, b.who, b.tone.parse().unwrap());
    assert_received(&rb, b.who, a.who, a.tone.parse().unwrap());
    (ra, rb)
}

/// A bot in `lan` meets one on this machine through a server announced at `lan`'s way
/// out; both of the inside bot's connections take a host path over `protocol`.
fn meets_from(lan: &Netns, dir: &str, protocol: &str) {
    let dir = temp_dir(dir);
    let (server, _) = server_for(lan, &dir, false);
    let inside = Side { who: "inside", ns: Some(lan), tone: "440", extra: &[] };
    let outside = Side { who: "outside", ns: None, tone: "660", extra: &[] };
    let (inside, _) = meet(&server, &dir, inside, outside);
    for connection in ["publisher", "subscriber"] {
        assert_eq!(path(&inside, connection), ("host".into(), protocol.into()), "{connection} over {protocol}");
    }
}

#[test]
fn a_client_whose_network_drops_udp_meets_over_ice_tcp() {
    if skip_without_netns() {
        return;
    }
    let _one_at_a_time = exclusive();
    let office = Netns::client("tcp");
    office.drop_udp();
    meets_from(&office, "net-udp-blocked", "tcp");
}

/// A LAN with no way out (no default route, as on an air-gapped network): the client
/// has no route for multicast either, so it must not need mDNS to reach the server.
#[test]
fn a_client_on_a_network_without_a_default_route_meets() {
    if skip_without_netns() {
        return;
    }
    let _one_at_a_time = exclusive();
    let lan = Netns::client("lan");
    lan.exec(&["ip", "route", "del", "default"]);
    meets_from(&lan, "net-no-route-out", "udp");
}

#[test]
fn a_client_that_reaches_only_the_relays_tcp_port_meets_through_turn() {
    if skip_without_netns() {
        return;
    }
    let _one_at_a_time = exclusive();
    let dir = temp_dir("net-turn-tcp");
    let hotel = Netns::client("turn");
    let (server, turn) = server_for(&hotel, &dir, true);
    // Signaling and the relay's TCP port, nothing else: no UDP, no ICE-TCP to the SFU.
    hotel.allow_only_tcp(&[server.port(), turn.as_ref().unwrap().port]);
    let inside = Side { who: "inside", ns: Some(&hotel), tone: "440", extra: &[] };
    let outside = Side { who: "outside", ns: None, tone: "660", extra: &[] };
    let (inside, _) = meet(&server, &dir, inside, outside);
    for connection in ["publisher", "subscriber"] {
        assert_eq!(path(&inside, connection).0, "relay", "{connection} through the relay: {:#}", inside["media_path"]);
    }
}

#[test]
fn force_relay_sends_media_through_coturn() {
    if skip_without_netns() {
        return;
    }
    let _one_at_a_time = exclusive();
    let dir = temp_dir("net-force-relay");
    let lan = Netns::client("relay");
    let (server, _turn) = server_for(&lan, &dir, true);
    let relayed = Side { who: "relayed", ns: Some(&lan), tone: "440", extra: &["--force-relay"] };
    let direct = Side { who: "direct", ns: None, tone: "660", extra: &[] };
    let (relayed, direct) = meet(&server, &dir, relayed, direct);
    for connection in ["publisher", "subscriber"] {
        assert_eq!(path(&relayed, connection), ("relay".into(), "udp".into()), "{connection} is a relay pair");
        assert_eq!(path(&direct, connection).0, "host", "the other bot is not forced");
    }
}

/// Chromium, running the plain-JavaScript client with `iceTransportPolicy: "relay"` and
/// the join response's ICE servers, meets a bot through coturn.
#[test]
fn chromium_relay_only_meets_a_bot_through_coturn() {
    if skip_without_netns() {
        return;
    }
    let chromium = std::env::var("CONFER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let browser = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../browser");
    assert!(browser.join("node_modules/playwright-core").exists(), "run scripts/setup.sh (tests/browser npm ci)");
    let _one_at_a_time = exclusive();
    let dir = temp_dir("net-chromium-relay");
    let lan = Netns::client("chrome");
    let (server, _turn) = server_for(&lan, &dir, true);
    let room = create_room(&server, "chromium", &[]);
    let bot_report = dir.join("bot.json");
    let t_bot = token(&server, &room, "bot", &[]);
    let mut bot = Bot::spawn_args("bot", &publishing_bot_args(&server.url, &t_bot, VIDEO, "440", "30", &bot_report));
    bot.expect_event("published", Duration::from_secs(10), |_| true);
    let page_report = dir.join("chromium.json");
    let t = token(&server, &room, "chromium", &[]);
    let out = lan
        .command(std::path::Path::new("node"))
        .arg(browser.join("run.mjs"))
        .args(["--url", &server.url, "--token", &t, "--seconds", "15", "--tone", "660", "--chromium", &chromium])
        .args(["--relay", "1", "--out", page_report.to_str().unwrap()])
        .output()
        .expect("node runs");
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser client failed");
    assert_eq!(bot.wait_exit(Duration::from_secs(60)), 0);
    let page: Value = serde_json::from_str(&std::fs::read_to_string(&page_report).unwrap()).unwrap();
    for connection in ["publisher", "subscriber"] {
        assert_eq!(page["media_path"][connection]["local_type"], "relay", "{connection}: {:#}", page["media_path"]);
    }
    let video = page["inbound"].as_array().unwrap().iter().find(|s| s["kind"] == "video").cloned().unwrap_or_default();
    assert!(video["frames_decoded"].as_u64().unwrap_or(0) >= 100, "Chromium decoded the bot's video: {page:#}");
    let report = read_report(&bot_report);
    let from_chromium = stream(&report, "chromium", "video");
    assert!(
        from_chromium["frames_decoded"].as_u64().unwrap_or(0) >= 100,
        "the bot decoded Chromium: {from_chromium:#}"
    );
    let tone = stream(&report, "chromium", "audio")["tone_hz"].as_f64().unwrap_or(0.0);
    assert!((tone - 660.0).abs() < 15.0, "the bot heard Chromium at {tone} Hz");
}

#[test]
fn two_clients_behind_nat_see_and_hear_each_other() {
    if skip_without_netns() {
        return;
    }
    let _one_at_a_time = exclusive();
    let dir = temp_dir("net-nat");
    let home = Netns::behind_nat("home");
    let office = Netns::behind_nat("office");
    let (server, _) = server_for(&home, &dir, false);
    let ann = Side { who: "ann", ns: Some(&home), tone: "440", extra: &[] };
    let bo = Side { who: "bo", ns: Some(&office), tone: "660", extra: &[] };
    let (ann, _) = meet(&server, &dir, ann, bo);
    // Media went through the NAT over UDP: the bots' own addresses are private to them.
    assert_eq!(path(&ann, "publisher").1, "udp");
}

#[test]
fn relay_only_with_the_relay_down_says_there_is_no_media_path() {
    if skip_without_netns() {
        return;
    }
    let _one_at_a_time = exclusive();
    let dir = temp_dir("net-relay-down");
    let lan = Netns::client("down");
    // A relay that is named but not running.
    let dead = free_port().to_string();
    let udp = format!("turn:{}:{dead}?transport=udp", lan.host_ip());
    let tcp = format!("turn:{}:{dead}?transport=tcp", lan.host_ip());
    let args = ["--turn-url", &udp, "--turn-url", &tcp, "--turn-secret", "s"];
    let server = ServerProcess::start_public(dir.join("db.sqlite"), lan.host_ip(), &args);
    let room = create_room(&server, "down", &[]);
    let t = token(&server, &room, "stuck", &[]);
    let report = dir.join("stuck.json");
    let mut args = publishing_bot_args(&server.url, &t, VIDEO, "440", "40", &report);
    args.push("--force-relay");
    let mut bot = Bot::spawn_in("stuck", &lan, &args);
    let failed = bot.expect_event("media_path_failed", Duration::from_secs(40), |_| true);
    assert_eq!(failed["error"], "no_media_path", "{failed}");
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("TURN") && message.contains(&dead), "the message names the relay: {message}");
    bot.kill();
}

#[test]
fn a_call_outlives_six_join_token_lifetimes() {
    // Alone: with the other tests' bots beside it on two cores, frames go undecoded for
    // want of CPU, not of tokens.
    let _one_at_a_time = exclusive();
    let dir = temp_dir("net-token-renewal");
    let server = ServerProcess::start_with(
        dir.join("db.sqlite"),
        free_port(),
        &["--udp-addr", "127.0.0.1:0", "--token-ttl", "12"],
    );
    let room = create_room(&server, "long", &[]);
    let pair = |who: &str| cli_json(&server, &["token", "create", "--room", &room, "--identity", who, "--json"]);
    let (a, b) = (pair("ann"), pair("bo"));
    for p in [&a, &b] {
        assert!(p["token"].is_string() && p["refresh_token"].is_string(), "token create --json: {p}");
    }
    let (ann, bo) = (dir.join("ann.json"), dir.join("bo.json"));
    let spawn = |who: &str, p: &Value, tone: &'static str, report: &PathBuf| {
        let mut args = publishing_bot_args(&server.url, p["token"].as_str().unwrap(), VIDEO, tone, "75", report);
        args.extend(["--refresh-token", p["refresh_token"].as_str().unwrap()]);
        Bot::spawn_args(who, &args)
    };
    let mut x = spawn("ann", &a, "440", &ann);
    let mut y = spawn("bo", &b, "660", &bo);
    assert_eq!(x.wait_exit(Duration::from_secs(135)), 0, "ann stays to the end");
    assert_eq!(y.wait_exit(Duration::from_secs(135)), 0, "bo stays to the end");
    for bot in [&x, &y] {
        assert!(!bot.seen.iter().any(|l| l["event"] == "disconnected" && l["reason"] == "token_expired"));
    }
    let (ann, bo) = (read_report(&ann), read_report(&bo));
    for (who, report, from, hz) in [("ann", &ann, "bo", 660.0), ("bo", &bo, "ann", 440.0)] {
        let renewals = report["token_renewals"].as_u64().unwrap_or(0);
        // Lasting 75 s on 12 s tokens takes at least six renewals (one every 8 s is due).
        assert!(renewals >= 6, "{who} renewed its 12 s token {renewals} times in 75 s");
        assert_received(report, who, from, hz);
        let video = stream(report, from, "video");
        // Media never stopped: no stall longer than a second.
        let long: Vec<_> =
            stalls(video).into_iter().filter(|(f, t)| t.is_none_or(|t| t.saturating_sub(*f) > 1_000)).collect();
        assert!(long.is_empty(), "{who} <- {from}: video stalled {long:?}");
    }
}

/// A malformed `--turn-url`, or one without its secret, stops the server at start with a
/// message that says what is wrong (exit status 2), before it listens anywhere.
#[test]
fn a_bad_turn_configuration_is_refused_at_start() {
    let run = |args: &[&str]| {
        std::process::Command::new(bin("confer-server"))
            .args(["--db", ":memory:", "--http-addr", "127.0.0.1:0", "--udp-addr", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("confer-server runs")
    };
    let out = run(&["--turn-url", "turn:relay.example.com:99999", "--turn-secret", "s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad TURN URL") && stderr.contains("99999"), "{stderr}");
    let out = run(&["--turn-url", "turn:relay.example.com:3478"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--turn-secret"), "{stderr}");
}
