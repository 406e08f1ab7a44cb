//! Networks built inside a test: Linux network namespaces joined to this machine by
//! veth pairs, with nftables rules for firewalls and NAT, and coturn as the TURN relay.
//!
//! Each namespace gets its own /30 in 10.(200 + pid % 50).N.0 and a default route to
//! this machine, so its traffic goes only to this machine's side of its link (where the
//! test's server and relay listen) or to other namespaces of the same test. Everything
//! is removed on drop, also when the test fails. Needs root and `ip`/`nft`
//! (`scripts/setup.sh` installs iproute2, nftables and coturn).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU8 = AtomicU8::new(1);

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn subnet() -> (u8, u8) {
    (200 + (std::process::id() % 50) as u8, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One network namespace with a link toward this machine (or toward a router
/// namespace).
pub struct Netns {
    pub name: String,
    /// This namespace's address on its link.
    pub ip: Ipv4Addr,
    /// The other end of its link: this machine, or its router.
    pub gateway: Ipv4Addr,
    /// The interface inside the namespace.
    pub dev: String,
    /// A router namespace in front of this one (kept alive with it).
    router: Option<Box<Netns>>,
}

impl Netns {
    /// A namespace linked straight to this machine.
    pub fn client(label: &str) -> Netns {
        Self::linked(label, None)
    }

    /// A namespace behind a router namespace that masquerades (source NAT) everything
    /// it forwards toward this machine: what a home or office router does.
    pub fn behind_nat(label: &str) -> Netns {
        let router = Self::linked(&format!("{label}r"), None);
        run(&["ip", "netns", "exec", &router.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        router.nft(&format!(
            "table ip nat {{\n  chain post {{\n    type nat hook postrouting priority 100;\n    oifname \"{}\" masquerade\n  }}\n}}\n",
            router.dev
        ));
        Self::linked(label, Some(router))
    }

    fn linked(label: &str, router: Option<Netns>) -> Netns {
        let (a, b) = subnet();
        let name = format!("cf{}{label}{b}", std::process::id() % 100_000);
        let (outer, inner) = (format!("cfo{a}x{b}"), format!("cfi{a}x{b}"));
        let gateway = Ipv4Addr::new(10, a, b, 1);
        let ip = Ipv4Addr::new(10, a, b, 2);
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name, ip, gateway, dev: inner.clone(), router: router.map(Box::new) };
        // The outer end sits on this machine, or in the router namespace.
        let outer_ns: Option<&str> = ns.router.as_ref().map(|r| r.name.as_str());
        run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner]);
        run(&["ip", "link", "set", &inner, "netns", &ns.name]);
        let on_outer = |args: &[&str]| match outer_ns {
            Some(r) => {
                let mut all = vec!["ip", "netns", "exec", r];
                all.extend_from_slice(args);
                run(&all);
            }
            None => run(args),
        };
        if let Some(r) = outer_ns {
            run(&["ip", "link", "set", &outer, "netns", r]);
        }
        on_outer(&["ip", "addr", "add", &format!("{gateway}/30"), "dev", &outer]);
        on_outer(&["ip", "link", "set", &outer, "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{ip}/30"), "dev", &inner]);
        ns.exec(&["ip", "link", "set", &inner, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&["ip", "route", "add", "default", "via", &gateway.to_string()]);
        ns
    }

    /// This machine's address on the path out of the namespace (through its router,
    /// if it has one): where a server on this machine is reached from here.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.router.as_ref().map_or(self.gateway, |r| r.gateway)
    }

    /// Runs a command in the namespace and asserts that it succeeds.
    pub fn exec(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }

    /// Loads an nftables ruleset into the namespace.
    pub fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft runs");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(ruleset.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "nft {ruleset}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Drops every UDP packet in or out of the namespace's link (loopback is spared).
    pub fn drop_udp(&self) {
        self.nft(&format!(
            "table inet fw {{
               chain out {{ type filter hook output priority 0; oifname \"{dev}\" meta l4proto udp drop; }}
               chain in {{ type filter hook input priority 0; iifname \"{dev}\" meta l4proto udp drop; }}
             }}",
            dev = self.dev
        ));
    }

    /// Lets out only TCP to these ports (and what answers it); everything else on the
    /// link is dropped.
    pub fn allow_only_tcp(&self, ports: &[u16]) {
        let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        self.nft(&format!(
            "table inet fw {{
               chain out {{ type filter hook output priority 0; policy accept;
                 oifname \"{dev}\" tcp dport {{ {ports} }} accept
                 oifname \"{dev}\" ct state established,related accept
                 oifname \"{dev}\" drop
               }}
               chain in {{ type filter hook input priority 0; policy accept;
                 iifname \"{dev}\" ct state established,related accept
                 iifname \"{dev}\" drop
               }}
             }}",
            dev = self.dev
        ));
    }

    /// `program args...` to run inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes its links, and so their peers.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        self.router.take();
    }
}

/// Whether this machine can build networks (root, `ip netns`, `nft`).
pub fn available() -> bool {
    let ok = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    ok(Command::new("nft").arg("--version")) && ok(Command::new("ip").args(["netns", "list"])) && {
        // Root: only root can add a namespace.
        let probe = format!("cfprobe{}", std::process::id());
        let added = ok(Command::new("ip").args(["netns", "add", &probe]));
        let _ = Command::new("ip").args(["netns", "del", &probe]).status();
        added
    }
}

/// coturn with TURN REST authentication (`use-auth-secret`), on this machine, killed on
/// drop.
pub struct Coturn {
    child: Child,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub secret: String,
    _dir: PathBuf,
}

impl Coturn {
    /// Listens on `ip` (UDP and TCP, one port) and relays from the same address.
    pub fn start(ip: Ipv4Addr, dir: &Path) -> Coturn {
        let port = crate::free_port();
        let secret = format!("turn-secret-{}", std::process::id());
        let log = dir.join("coturn.log");
        // Relay ports from a range of our own, so parallel tests do not collide.
        let low = 20_000 + (port % 200) * 100;
        let child = Command::new("turnserver")
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint", "--use-auth-secret"])
            .arg(format!("--static-auth-secret={secret}"))
            .args(["--realm=confer.test", "--verbose"])
            .arg(format!("--listening-ip={ip}"))
            .arg(format!("--relay-ip={ip}"))
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={low}"))
            .arg(format!("--max-port={}", low + 99))
            .arg(format!("--pidfile={}", dir.join("coturn.pid").display()))
            .arg(format!("--db={}", dir.join("turndb").display()))
            .arg(format!("--log-file={}", log.display()))
            .arg("--simple-log")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (coturn) starts: is coturn installed?");
        // Ready once it accepts TCP on its port.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((ip, port)).is_err() {
            assert!(Instant::now() < deadline, "coturn did not listen on {ip}:{port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Coturn { child, ip, port, secret, _dir: dir.to_owned() }
    }

    /// `--turn-url` arguments for the server: UDP and TCP.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--turn-url".into(),
            format!("turn:{}:{}?transport=udp", self.ip, self.port),
            "--turn-url".into(),
            format!("turn:{}:{}?transport=tcp", self.ip, self.port),
            "--turn-secret".into(),
            self.secret.clone(),
        ]
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
