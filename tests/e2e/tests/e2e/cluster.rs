//! Issue 17, black box: three `confer-server` nodes sharing a PostgreSQL and a Redis
//! that the test starts, with bots whose signaling reaches different nodes (directly,
//! or through a load balancer in front of all three), and a backend taking webhooks.
//!
//! Meetings spread over the nodes; one meeting reached through all three is one
//! meeting, with video and tones both ways; a drained node takes no new meeting and
//! stops once its own has ended; a killed node's meeting is back on another node, with
//! media, within 10 s; every webhook arrives once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_e2e::link::TcpRelay;
use confer_e2e::report::*;
use confer_e2e::*;
use confer_test_services::redis::RedisServer;
use serde_json::Value;

/// Three nodes, n1 to n3, and what they share.
pub(crate) struct Cluster {
    pub nodes: Vec<ServerProcess>,
    pub hooks: Hooks,
    _redis: RedisServer,
}

impl Cluster {
    /// `None` when PostgreSQL or Redis is not installed (and not required).
    pub fn start(name: &str) -> Option<Self> {
        // A thread of its own: the caller may be inside a runtime already.
        let name = name.to_owned();
        let db = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(confer_test_services::postgres::database(&name))
        })
        .join()
        .unwrap()?;
        let redis = RedisServer::start()?;
        let hooks = Hooks::start();
        let nodes = (1..=3)
            .map(|i| {
                let id = format!("n{i}");
                let args = [
                    "--udp-addr",
                    "127.0.0.1:0",
                    "--redis",
                    &redis.url(),
                    "--node-id",
                    &id,
                    "--webhook-url",
                    &hooks.url,
                    "--drain-grace",
                    "60",
                ];
                ServerProcess::start_with(db.clone().into(), free_port(), &args)
            })
            .collect();
        Some(Self { nodes, hooks, _redis: redis })
    }

    pub fn node_mut(&mut self, id: &str) -> &mut ServerProcess {
        &mut self.nodes[id[1..].parse::<usize>().unwrap() - 1]
    }

    fn node(&self, id: &str) -> &ServerProcess {
        &self.nodes[id[1..].parse::<usize>().unwrap() - 1]
    }

    /// `GET /v1/node` of node `id`.
    fn info(&self, id: &str) -> Value {
        http_get(self.node(id), "/v1/node")
    }

    /// Meetings held by each node, n1 first.
    fn sessions(&self) -> Vec<u64> {
        (1..=3).map(|i| self.info(&format!("n{i}"))["sessions"].as_u64().unwrap()).collect()
    }
}

/// `GET path` on `server` with the API credentials, as JSON.
fn http_get(server: &ServerProcess, path: &str) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-sf", "-u", &format!("{KEY}:{SECRET}"), &format!("{}{path}", server.url)])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "GET {path} on {}: {}", server.url, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A backend taking webhooks: every event whose signature checks out, as posted.
#[derive(Clone)]
pub(crate) struct Hooks {
    url: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Hooks {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let seen = events.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let seen = seen.clone();
                std::thread::spawn(move || serve_hooks(stream, &seen));
            }
        });
        Self { url, events }
    }

    /// Every event about `room`, in arrival order.
    fn about(&self, room: &str) -> Vec<Value> {
        self.events.lock().unwrap().iter().filter(|e| e["room"]["id"] == room).cloned().collect()
    }

    /// `event` events about `room`, as `(identity or "", node)`.
    fn named(&self, room: &str, event: &str) -> Vec<(String, String)> {
        self.about(room)
            .iter()
            .filter(|e| e["event"] == event)
            .map(|e| {
                let who = e["participant"]["identity"].as_str().unwrap_or_default().to_owned();
                (who, e["node"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    /// Waits until `room` has an `event`.
    pub fn wait_for(&self, room: &str, event: &str, timeout: Duration) -> Vec<(String, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.named(room, event);
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// No event came twice (retries of a delivered event would).
    fn assert_each_once(&self) {
        let events = self.events.lock().unwrap();
        let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        let all = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all, "an event was delivered twice");
    }
}

/// One webhook POST (keep-alive connections carry several): checks the signature and
/// keeps the event.
fn serve_hooks(stream: std::net::TcpStream, seen: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0;
        let mut signature = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                confer_server::webhook::SIGNATURE_HEADER => signature = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body = String::from_utf8(body).unwrap();
        let now = unix_ms() / 1000;
        let valid = confer_server::webhook::verify(SECRET, &signature, &body, now, 60);
        let status = if valid { "204 No Content" } else { "401 Unauthorized" };
        if valid {
            seen.lock().unwrap().push(serde_json::from_str(&body).unwrap());
        } else {
            eprintln!("[hooks] a badly signed webhook: {signature}");
        }
        let _ = writer.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes());
    }
}

/// A bot in `room` publishing video and a tone of `hz`, signaling to `url`, for
/// `secs` seconds, writing its report to `report`.
fn bot(cluster: &Cluster, url: &str, room: &str, who: &str, hz: &str, secs: &str, report: &std::path::Path) -> Bot {
    let t = token(&cluster.nodes[0], room, who, &[]);
    Bot::spawn_args(who, &publishing_bot_args(url, &t, "320x176@15", hz, secs, report))
}

/// Each of `people` saw and heard the others, from its report.
fn saw_and_heard(people: &[(&str, &str)], dir: &std::path::Path) {
    for (who, _) in people {
        let report = read_report(&dir.join(format!("{who}.json")));
        for (other, hz) in people.iter().filter(|(o, _)| o != who) {
            let video = stream(&report, other, "video");
            assert!(video["frames_decoded"].as_u64().unwrap_or(0) >= 60, "{who} <- {other}: {video:#}");
            assert!(decoded_share(video) >= 0.9, "{who} <- {other}: {video:#}");
            let audio = stream(&report, other, "audio");
            let tone = audio["tone_hz"].as_f64().unwrap_or_else(|| panic!("{who} <- {other}: no tone: {audio:#}"));
            assert!(near_tone(tone, hz.parse().unwrap()), "{who} hears {other} at {tone} Hz, not {hz}");
        }
    }
}

#[test]
fn meetings_spread_over_three_nodes_and_one_meeting_spans_them() {
    let _one_at_a_time = exclusive();
    let Some(cluster) = Cluster::start("e2e_spread") else { return };
    let dir = temp_dir("cluster-spread");

    // Three meetings, each started through n1: the cluster puts each on the least
    // loaded node (once its heartbeat has told the others), and n1 relays to it.
    let mut first = vec![];
    for (i, who) in ["ann", "ben", "cat"].into_iter().enumerate() {
        let room = create_room(&cluster.nodes[0], &format!("spread-{i}"), &[]);
        let mut b = bot(&cluster, &cluster.nodes[0].url, &room, who, "440", "60", &dir.join(format!("{who}.json")));
        b.expect_event("published", Duration::from_secs(10), |_| true);
        first.push(b);
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert_eq!(cluster.sessions(), [1, 1, 1], "one meeting per node");

    // One meeting, each person's signaling to another node.
    let room = create_room(&cluster.nodes[0], "standup", &[]);
    let people = [("alice", "440"), ("bob", "550"), ("carol", "660")];
    let mut bots: Vec<Bot> = people
        .iter()
        .zip(&cluster.nodes)
        .map(|((who, hz), node)| bot(&cluster, &node.url, &room, who, hz, "14", &dir.join(format!("{who}.json"))))
        .collect();
    for b in &mut bots {
        assert_eq!(b.wait_exit(Duration::from_secs(60)), 0, "{} ends cleanly", b.name);
    }
    saw_and_heard(&people, &dir);
    let sessions: Value = http_get(&cluster.nodes[2], "/v1/sessions");
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 3, "n3 lists every node's meetings: {sessions}");

    // The backend heard of it once, from the node that held it.
    let finished = cluster.hooks.wait_for(&room, "room_finished", Duration::from_secs(5));
    assert_eq!(finished.len(), 1, "{:?}", cluster.hooks.about(&room));
    let holder = &finished[0].1;
    assert_eq!(cluster.hooks.named(&room, "room_started"), [(String::new(), holder.clone())]);
    for event in ["participant_joined", "participant_left"] {
        let mut who: Vec<_> = cluster.hooks.named(&room, event).into_iter().map(|(who, _)| who).collect();
        who.sort();
        assert_eq!(who, ["alice", "bob", "carol"], "{event}: {:?}", cluster.hooks.about(&room));
    }
    let published = cluster.hooks.named(&room, "track_published").len();
    assert!(published >= 3, "{:?}", cluster.hooks.about(&room));
    assert_eq!(cluster.hooks.named(&room, "track_unpublished").len(), published, "every track ended");
    assert!(cluster.hooks.about(&room).iter().all(|e| &e["node"] == holder));
    cluster.hooks.assert_each_once();
}

#[test]
fn a_drained_node_takes_no_new_meeting_and_a_lost_nodes_meeting_comes_back() {
    let _one_at_a_time = exclusive();
    let Some(mut cluster) = Cluster::start("e2e_failover") else { return };
    let dir = temp_dir("cluster-failover");
    let balancer = TcpRelay::balance(cluster.nodes.iter().map(ServerProcess::http_addr).collect());

    // A meeting on n1 (all idle: the tie goes to n1), then n1 drains.
    let kept = create_room(&cluster.nodes[0], "kept", &[]);
    let mut dora = bot(&cluster, &cluster.nodes[0].url, &kept, "dora", "440", "8", &dir.join("dora.json"));
    dora.expect_event("published", Duration::from_secs(10), |_| true);
    assert_eq!(cluster.sessions(), [1, 0, 0]);
    let drain = std::process::Command::new(bin("confer-server"))
        .args(["--api-key", KEY, "--api-secret", SECRET, "drain", "--url", &cluster.nodes[0].url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("confer-server drain runs");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster.info("n1")["draining"] != true {
        assert!(Instant::now() < deadline, "n1 did not start draining");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Heard by the cluster within a heartbeat.
    std::thread::sleep(Duration::from_millis(1200));

    // A new meeting through n1 starts elsewhere; dora's goes on, and then n1 stops.
    let failover = create_room(&cluster.nodes[0], "failover", &[]);
    let people = [("erin", "550"), ("fred", "660")];
    let mut bots: Vec<Bot> = people
        .iter()
        .map(|(who, hz)| bot(&cluster, &balancer.url(), &failover, who, hz, "30", &dir.join(format!("{who}.json"))))
        .collect();
    for b in &mut bots {
        b.expect_event("track_subscribed", Duration::from_secs(15), |l| l["kind"] == "video");
    }
    let placed = cluster.hooks.wait_for(&failover, "room_started", Duration::from_secs(5));
    let holder = placed.first().map(|(_, node)| node.clone()).expect("failover started");
    assert_ne!(holder, "n1", "a draining node took a new meeting");
    assert_eq!(dora.wait_exit(Duration::from_secs(30)), 0, "dora's meeting on the draining node ends as planned");
    assert!(cluster.nodes[0].exited_within(Duration::from_secs(10)), "n1 did not stop once drained");
    let drained = drain.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&drained.stdout);
    assert!(drained.status.success() && said.contains("has stopped"), "confer-server drain said: {said}");
    assert!(
        !dora.seen.iter().any(|l| l["event"] == "connection_interrupted"),
        "dora's meeting was interrupted by the drain: {:?}",
        dora.seen
    );

    // The node holding the failover meeting is lost; erin and fred come back through
    // the balancer, on the node left, with media, within 10 s.
    std::thread::sleep(Duration::from_secs(3));
    let lost = unix_ms();
    cluster.node_mut(&holder).kill();
    println!("killed {holder}");
    for b in &mut bots {
        let back = b.expect_event("reconnected", Duration::from_secs(10), |_| true);
        assert_eq!(back["resumed"], false, "{}: a fresh join on another node: {back}", b.name);
    }
    for b in &mut bots {
        assert_eq!(b.wait_exit(Duration::from_secs(60)), 0, "{} ends cleanly", b.name);
    }
    for ((viewer, _), (other, _)) in [(people[0], people[1]), (people[1], people[0])] {
        let report = read_report(&dir.join(format!("{viewer}.json")));
        for kind in ["video", "audio"] {
            let s = stream(&report, other, kind);
            let (_, to) =
                stall_covering(s, lost + 500).unwrap_or_else(|| panic!("{viewer}: {other}'s {kind} went on: {s:#}"));
            let to = to.unwrap_or_else(|| panic!("{viewer}: {other}'s {kind} never came back: {s:#}"));
            println!("{viewer}: {other}'s {kind} back {} ms after {holder} was lost", to.saturating_sub(lost));
            assert!(to <= lost + 10_000, "{viewer}: {other}'s {kind} back {} ms after the node was lost", to - lost);
        }
    }
    let restarted = cluster.hooks.named(&failover, "room_started");
    assert_eq!(restarted.len(), 2, "the meeting started again on the node left: {restarted:?}");
    assert_ne!(restarted[1].1, holder);
    cluster.hooks.assert_each_once();
}
