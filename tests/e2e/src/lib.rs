//! Harness for end-to-end tests: runs the real `confer-server` and `confer-cli`
//! binaries (built by cargo next to this test) as child processes and reads what they
//! print, the way a user's script would.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod devices;
pub mod link;
pub mod netns;
pub mod report;

pub const KEY: &str = "e2e-key";
pub const SECRET: &str = "e2e-secret";

/// A binary of this workspace, from the target directory the tests were built into.
pub fn bin(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test executable path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build it first (cargo build -p {name})", path.display());
    path
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free UDP port on loopback.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where tests leave files for people to look at (screenshots): `ARTIFACTS_DIR`, else
/// `test-artifacts/` at the repository root.
pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("confer-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `confer-server` child process, killed on drop.
pub struct ServerProcess {
    /// `None` for a server running inside the test ([`ServerProcess::in_process`]).
    child: Option<Child>,
    pub url: String,
    pub db: PathBuf,
    port: u16,
}

impl ServerProcess {
    pub fn start(db: PathBuf) -> Self {
        Self::start_on(db, free_port())
    }

    pub fn start_on(db: PathBuf, port: u16) -> Self {
        // Media on a free port, so that servers of parallel tests do not collide.
        Self::start_with(db, port, &["--udp-addr", "127.0.0.1:0"])
    }

    /// Starts the server on HTTP `port` with extra arguments (media addresses, ...).
    pub fn start_with(db: PathBuf, port: u16, extra: &[&str]) -> Self {
        Self::start_at(db, std::net::Ipv4Addr::LOCALHOST, port, extra)
    }

    /// A server that listens on every address and is announced (HTTP and media) at
    /// `ip`: one reached from the test's network namespaces.
    pub fn start_public(db: PathBuf, ip: std::net::Ipv4Addr, extra: &[&str]) -> Self {
        // Media bound to that one address: a socket on every address answers from
        // whichever the route picks, which a NAT on the way does not recognise.
        let udp = format!("{ip}:0");
        let mut args = vec!["--udp-addr", &udp];
        args.extend_from_slice(extra);
        Self::start_at(db, ip, free_port(), &args)
    }

    fn start_at(db: PathBuf, ip: std::net::Ipv4Addr, port: u16, extra: &[&str]) -> Self {
        let listen = if ip.is_loopback() { format!("{ip}:{port}") } else { format!("0.0.0.0:{port}") };
        let mut child = Command::new(bin("confer-server"))
            .args(["--db", db.to_str().unwrap(), "--http-addr", &listen])
            .args(["--api-key", KEY, "--api-secret", SECRET])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("confer-server starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Drained for the server's whole life: a closed pipe would fail its writes.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("confer-server listening on") => break,
                Ok(_) => continue,
                Err(_) => panic!("confer-server did not report listening on port {port}"),
            }
        }
        Self { child: Some(child), url: format!("http://{ip}:{port}"), db, port }
    }

    /// A server the test runs itself (the `confer_server` library, in this process),
    /// for the helpers that take a [`ServerProcess`]. Its API credentials must be
    /// [`KEY`] and [`SECRET`].
    pub fn in_process(addr: std::net::SocketAddr) -> Self {
        Self { child: None, url: format!("http://{addr}"), db: PathBuf::new(), port: addr.port() }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP (and signaling) address.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server without warning (SIGKILL), as a crash or a lost machine would.
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the server to exit on its own; whether it did.
    pub fn exited_within(&mut self, timeout: Duration) -> bool {
        let Some(child) = &mut self.child else { return false };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops the server with SIGTERM, as a service manager would, and waits for it.
    pub fn stop(mut self) -> (PathBuf, u16) {
        if let Some(child) = &mut self.child {
            terminate(child);
        }
        (self.db.clone(), self.port)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn terminate(child: &mut Child) {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "could not signal the server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A server whose media port is reached only through a [`link::MediaRelay`] (it
/// advertises the relay's address), so that a test can impose network conditions, plus
/// `extra` arguments.
pub fn server_behind_relay(db: PathBuf, extra: &[&str]) -> (ServerProcess, link::MediaRelay) {
    let udp = free_udp_port();
    let relay = link::MediaRelay::start(std::net::SocketAddr::from(([127, 0, 0, 1], udp)));
    let udp_addr = format!("127.0.0.1:{udp}");
    let advertise = relay.addr().to_string();
    // No ICE over TCP: it would reach the server around the relay.
    let mut args = vec!["--udp-addr", &udp_addr, "--advertise-addr", &advertise, "--no-ice-tcp"];
    args.extend_from_slice(extra);
    (ServerProcess::start_with(db, free_port(), &args), relay)
}

/// `tests/browser`: the browser client and the Chromium drivers (`run.mjs`, `page.mjs`).
pub fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../browser")
}

/// Creates a room with `confer-cli room create` (plus `extra` options); returns its id.
pub fn create_room(server: &ServerProcess, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["room", "create", "--name", name];
    args.extend_from_slice(extra);
    cli_json(server, &args)["id"].as_str().unwrap().to_owned()
}

/// Runs `confer-cli` with the server's URL and credentials plus `args`.
pub fn cli(server: &ServerProcess, args: &[&str]) -> Output {
    Command::new(bin("confer-cli"))
        .args(["--url", &server.url, "--api-key", KEY, "--api-secret", SECRET])
        .args(args)
        .output()
        .expect("confer-cli runs")
}

/// Runs `confer-cli`, expects success, and parses stdout as JSON.
pub fn cli_json(server: &ServerProcess, args: &[&str]) -> Value {
    let out = cli(server, args);
    assert!(out.status.success(), "confer-cli {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("confer-cli {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    })
}

/// Mints a join token with `confer-cli token create`.
pub fn token(server: &ServerProcess, room: &str, identity: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--room", room, "--identity", identity];
    args.extend_from_slice(extra);
    let out = cli(server, &args);
    assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The error code in a failed `confer-cli` call's stderr (`{"code": ...}` JSON).
pub fn cli_error_code(out: &Output) -> Option<u64> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.lines().find_map(|l| serde_json::from_str::<Value>(l.trim()).ok()?.get("code")?.as_u64())
}

/// The arguments of a bot signaling to `url` that publishes `video` (`WxH@FPS`) and a
/// tone of `tone` Hz, receives everyone, and writes `report` after `secs` seconds.
pub fn publishing_bot_args<'a>(
    url: &'a str,
    token: &'a str,
    video: &'a str,
    tone: &'a str,
    secs: &'a str,
    report: &'a std::path::Path,
) -> Vec<&'a str> {
    let report = report.to_str().expect("report paths are UTF-8");
    #[rustfmt::skip]
    let args = vec![
        "bot", "--url", url, "--token", token, "--publish", "--video", video, "--tone", tone,
        "--subscribe", "all", "--duration", secs, "--report", report,
    ];
    args
}

/// A `confer-cli bot` child whose JSON lines are collected as they come.
pub struct Bot {
    pub name: String,
    child: Child,
    lines: Receiver<Value>,
    /// Every line seen so far.
    pub seen: Vec<Value>,
}

impl Bot {
    pub fn spawn(name: &str, server: &ServerProcess, token: &str, extra: &[&str]) -> Self {
        let mut args = vec!["bot", "--url", &server.url, "--token", token];
        args.extend_from_slice(extra);
        Self::spawn_args(name, &args)
    }

    /// Joins `room` as `identity` publishing its synthetic media (`--publish` plus
    /// `extra`), and returns once the stream is published.
    pub fn publisher(identity: &str, server: &ServerProcess, room: &str, extra: &[&str]) -> Self {
        let t = token(server, room, identity, &[]);
        let mut args = vec!["--publish"];
        args.extend_from_slice(extra);
        let mut bot = Self::spawn(identity, server, &t, &args);
        bot.expect_event("published", Duration::from_secs(10), |_| true);
        bot
    }

    /// Runs `confer-cli` with exactly these arguments (`bot --url ... --token ...`).
    pub fn spawn_args(name: &str, args: &[&str]) -> Self {
        Self::spawn_with_env(name, args, &[])
    }

    /// [`Bot::spawn_args`] with more environment (a display, a sound server).
    pub fn spawn_with_env(name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Command::new(bin("confer-cli"));
        command.envs(env.iter().map(|(k, v)| (k, v)));
        Self::spawn_command(name, command, args)
    }

    /// A bot inside a network namespace: `confer-cli` with exactly these arguments.
    pub fn spawn_in(name: &str, ns: &netns::Netns, args: &[&str]) -> Self {
        Self::spawn_command(name, ns.command(&bin("confer-cli")), args)
    }

    fn spawn_command(name: &str, mut command: Command, args: &[&str]) -> Self {
        let mut child = command.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("bot starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let who = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[{who}] {line}");
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    panic!("[{who}] printed a line that is not JSON: {line}");
                };
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Self { name: name.to_owned(), child, lines, seen: Vec::new() }
    }

    /// Waits for a line that satisfies `pred`, returning it.
    pub fn expect(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no {what} within {timeout:?}; saw {:?}", self.name, self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before {what}; saw {:?}", self.name, self.seen)
                }
            }
        }
    }

    /// Waits for an event line by name.
    pub fn expect_event(&mut self, event: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect(event, timeout, |v| v["event"] == event && pred(v))
    }

    /// Waits for the bot to exit, collecting the rest of its lines; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(v);
                }
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "{} did not exit within {timeout:?}; saw {:?}", self.name, self.seen);
            while let Ok(v) = self.lines.try_recv() {
                self.seen.push(v);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the bot to leave (SIGTERM, as Ctrl-C would: it says goodbye and writes its
    /// report) and waits for it; returns its exit code.
    pub fn terminate(&mut self) -> i32 {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.wait_exit(Duration::from_secs(15))
    }

    /// Kills the bot without letting it say goodbye (SIGKILL), as a crash or a power cut
    /// would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every line seen so far, after draining what is ready.
    pub fn drain(&mut self) -> &[Value] {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        &self.seen
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, in Unix milliseconds: the unit of the bots' `at` and of their reports' times.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as u64
}
