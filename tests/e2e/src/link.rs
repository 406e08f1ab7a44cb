//! Network conditions for end-to-end tests, in the test process: a UDP relay in front
//! of the server's media port and a TCP relay in front of its signaling port.
//!
//! The server advertises the [`MediaRelay`]'s address (`--advertise-addr`), so every
//! media datagram passes through it. Clients are told apart by source IP: a bot started
//! with `--media-ip 127.0.0.N` sends from that loopback address, and the relay applies
//! that address's [`Conditions`] (loss each way, a downlink bottleneck, a cut). The
//! [`TcpRelay`] does the same for one client's signaling connection, so an interruption
//! can take down both halves of a client's network at once, as a real outage would.
//!
//! The bottleneck is a drop-tail queue drained at the given rate: packets wait their
//! turn (so delay grows before anything is lost, which is what delay-based bandwidth
//! estimation reacts to) and are dropped once the queue holds more than
//! [`MAX_QUEUE_DELAY`] of data.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A bottleneck queue holding more than this much data drops what arrives.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_millis(250);

/// What the network does to one client's media.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Conditions {
    /// Share of datagrams lost from the client to the server, 0 to 1.
    pub up_loss: f64,
    /// Share of datagrams lost from the server to the client, 0 to 1.
    pub down_loss: f64,
    /// Capacity from the server to the client, kilobits per second.
    pub down_kbps: Option<u32>,
    /// Nothing passes either way.
    pub cut: bool,
}

impl Conditions {
    pub fn lossy(share: f64) -> Self {
        Self { up_loss: share, down_loss: share, ..Self::default() }
    }
}

/// Counts of what the relay did, for a test to check that conditions really applied.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub up_sent: AtomicU64,
    pub up_dropped: AtomicU64,
    pub down_sent: AtomicU64,
    pub down_dropped: AtomicU64,
    /// Bytes offered toward clients (sent or not), for rate checks.
    pub down_offered_bytes: AtomicU64,
}

struct Shared {
    conditions: Mutex<HashMap<IpAddr, Conditions>>,
    stats: RelayStats,
    stop: AtomicBool,
}

impl Shared {
    fn conditions(&self, ip: IpAddr) -> Conditions {
        self.conditions.lock().unwrap().get(&ip).copied().unwrap_or_default()
    }
}

/// A UDP relay in front of the server's media port. Stops when dropped.
pub struct MediaRelay {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MediaRelay {
    /// Relays datagrams arriving on a fresh loopback port to `server`.
    pub fn start(server: SocketAddr) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").expect("relay socket");
        front.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let addr = front.local_addr().unwrap();
        let shared =
            Arc::new(Shared { conditions: Mutex::default(), stats: RelayStats::default(), stop: false.into() });
        let s = shared.clone();
        std::thread::spawn(move || relay_up(front, server, s));
        Self { addr, shared }
    }

    /// The address the server should advertise.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `conditions` to the client sending from `ip` from now on.
    pub fn set(&self, ip: IpAddr, conditions: Conditions) {
        self.shared.conditions.lock().unwrap().insert(ip, conditions);
    }

    pub fn stats(&self) -> &RelayStats {
        &self.shared.stats
    }
}

impl Drop for MediaRelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// A small deterministic generator for loss decisions (xorshift64*).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (x as f64 / (1u64 << 53) as f64) < p
    }
}

/// Client to server: one upstream socket per client address, so that the server's
/// replies come back to the right client.
fn relay_up(front: UdpSocket, server: SocketAddr, shared: Arc<Shared>) {
    let front = Arc::new(front);
    let mut upstream: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; 2048];
    while !shared.stop.load(Ordering::Relaxed) {
        let (n, client) = match front.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue,
        };
        let c = shared.conditions(client.ip());
        if c.cut || dice.roll(c.up_loss) {
            shared.stats.up_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let socket = upstream.entry(client).or_insert_with(|| {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("upstream socket");
            socket.connect(server).expect("connect upstream");
            let (reader, front, shared) = (socket.try_clone().unwrap(), front.clone(), shared.clone());
            std::thread::spawn(move || relay_down(reader, front, client, shared));
            socket
        });
        if socket.send(&buf[..n]).is_ok() {
            shared.stats.up_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Server to one client, through the client's bottleneck queue.
fn relay_down(upstream: UdpSocket, front: Arc<UdpSocket>, client: SocketAddr, shared: Arc<Shared>) {
    upstream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (queue, departures) = mpsc::channel::<(Instant, Vec<u8>)>();
    let pacer_shared = shared.clone();
    std::thread::spawn(move || {
        for (at, packet) in departures {
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if front.send_to(&packet, client).is_ok() {
                pacer_shared.stats.down_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut dice = Dice(0x2545_f491_4f6c_dd1d ^ u64::from(client.port()));
    // When the bottleneck finishes sending what is queued.
    let mut busy_until = Instant::now();
    let mut buf = vec![0u8; 2048];
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match upstream.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        shared.stats.down_offered_bytes.fetch_add(n as u64, Ordering::Relaxed);
        let c = shared.conditions(client.ip());
        if c.cut || dice.roll(c.down_loss) {
            shared.stats.down_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let now = Instant::now();
        let departure = match c.down_kbps {
            None => now,
            Some(kbps) => {
                let start = busy_until.max(now);
                if start.duration_since(now) > MAX_QUEUE_DELAY {
                    shared.stats.down_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Bytes on the wire include IP and UDP headers.
                let bits = ((n + 28) * 8) as u64;
                busy_until = start + Duration::from_micros(bits * 1000 / u64::from(kbps.max(1)));
                busy_until
            }
        };
        if queue.send((departure, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// A TCP relay for one client's signaling connection, which a test can cut; or, with
/// several targets, a load balancer in front of a cluster's nodes.
pub struct TcpRelay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl TcpRelay {
    pub fn start(target: SocketAddr) -> Self {
        Self::balance(vec![target])
    }

    /// A load balancer: each connection goes to the next of `targets` in turn, or, if
    /// that one refuses it (a node that is down), to the one after.
    pub fn balance(targets: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("tcp relay");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, o, s) = (cut.clone(), open.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut turn = 0;
            while !s.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                // While cut, connections are accepted and dropped: the far end is gone.
                if c.load(Ordering::Relaxed) {
                    continue;
                }
                turn += 1;
                let tried = (0..targets.len()).map(|i| targets[(turn + i) % targets.len()]);
                let Some(server) = tried.into_iter().find_map(|target| TcpStream::connect(target).ok()) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let mut o = o.lock().unwrap();
                o.push(client.try_clone().unwrap());
                o.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Self { addr, cut, open, stop }
    }

    /// The address a client should use instead of the server's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a client should use instead of the server's.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Breaks every open connection and refuses new ones until [`TcpRelay::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_loses_about_the_share_asked_for() {
        let mut d = Dice(1);
        let lost = (0..100_000).filter(|_| d.roll(0.05)).count();
        assert!((4_500..5_500).contains(&lost), "{lost}");
        assert!(!(0..1000).any(|_| d.roll(0.0)));
    }

    #[test]
    fn relays_both_ways_and_applies_loss_and_cuts() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_addr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], from);
            }
        });
        let relay = MediaRelay::start(server_addr);
        let client = UdpSocket::bind("127.0.0.3:0").unwrap();
        client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let echo = |msg: &[u8]| {
            client.send_to(msg, relay.addr()).unwrap();
            let mut buf = [0u8; 64];
            client.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
        };
        assert_eq!(echo(b"hello").as_deref(), Some(&b"hello"[..]));
        relay.set("127.0.0.3".parse().unwrap(), Conditions { cut: true, ..Conditions::default() });
        assert_eq!(echo(b"lost"), None);
        relay.set("127.0.0.3".parse().unwrap(), Conditions::default());
        assert_eq!(echo(b"back").as_deref(), Some(&b"back"[..]));
    }
}
