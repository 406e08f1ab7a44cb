//! The SFU's threads, sockets and clock around the sans-IO [`Worker`]s.
//!
//! - Each **worker thread** runs one [`Worker`]: it feeds it packets, the hub's commands
//!   and timeouts, and sends what comes out. A lone worker reads the shared UDP socket
//!   itself.
//! - With several workers, the port's socket is one of a `SO_REUSEPORT` group. Once a
//!   worker serves a client address ([`Output::Path`], learnt from the ICE username of
//!   the client's first STUN request), it opens a socket of its own in the group,
//!   *connected* to that address: the kernel then delivers the client's datagrams to it
//!   directly (a connected socket wins over the group's others). Only a new path's
//!   first packets come through the **receive thread**, which reads the shared socket
//!   and hands each to the worker of its address (each worker tells it the username
//!   fragments it answers to, [`Output::Ufrag`]; a STUN request for one not heard of yet
//!   goes to every worker, and each drops what it does not know).
//! - A worker's datagrams go out through its socket of the group, together, after each
//!   turn of its loop ([`Outgoing`]: batched, and each subscriber's packets of a frame
//!   as one segmented message on Linux).
//!
//! Why: the kernel spreads datagrams over a plain `SO_REUSEPORT` group by a hash of the
//! addresses, which knows nothing of rooms; handing every packet from one receive
//! thread to its worker cost two context switches per packet (measured at 50
//! participants: about 40 % more CPU per forwarded packet than a lone worker).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use str0m::net::Protocol;
use tokio::sync::mpsc;

use super::outgoing::Outgoing;
use super::tcp::{self, TcpInput};
use super::udp::{Paths, ReadSocket};
use super::worker::{stun_ufrag, Input, Output, Worker, WorkerStats};
use super::{Command, MediaAddrs, SfuEvent};

/// Packets queued toward one worker before new ones are dropped (as a full socket
/// buffer would drop them).
const WORKER_QUEUE: usize = 8192;
/// Packets a worker takes from its queue before it looks at its timers again.
const BATCH: usize = 64;
/// An address not heard from for this long is forgotten by the receive thread.
const ADDRESS_IDLE: Duration = Duration::from_secs(120);

/// A packet for a worker.
#[derive(Debug)]
enum Inbound {
    Udp { source: SocketAddr, destination: SocketAddr, data: Vec<u8> },
    TcpOpened { remote: SocketAddr, sender: mpsc::Sender<Vec<u8>> },
    TcpPacket { remote: SocketAddr, local: SocketAddr, data: Vec<u8> },
    TcpClosed { remote: SocketAddr },
}

/// A worker's news for the receive thread.
#[derive(Debug)]
struct UfragNews {
    worker: usize,
    ufrag: String,
    added: bool,
}

/// What the SFU counts, per worker, for `/metrics`.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    pub packets_in: Counter,
    pub bytes_in: Counter,
    pub packets_out: Counter,
    pub bytes_out: Counter,
    pub unrouted: Counter,
    pub packets_forwarded: Counter,
    pub keyframe_requests: Counter,
    pub nacks_received: Counter,
    pub nacks_sent: Counter,
    pub layer_switches: Counter,
    pub congestion_limits: Counter,
    pub panics: Counter,
    /// Seconds spent working (not waiting), by the wall clock: time the thread waited
    /// for a core while working counts.
    pub busy_seconds: Counter<f64>,
    /// CPU seconds the worker's thread used (user and system; Linux only).
    pub cpu_seconds: Counter<f64>,
    /// Seconds to handle one received packet, forwarding included.
    pub packet_seconds: Histogram,
    pub rooms: Gauge,
    pub transports: Gauge,
}

impl WorkerMetrics {
    fn new() -> Self {
        Self {
            packets_in: Counter::default(),
            bytes_in: Counter::default(),
            packets_out: Counter::default(),
            bytes_out: Counter::default(),
            unrouted: Counter::default(),
            packets_forwarded: Counter::default(),
            keyframe_requests: Counter::default(),
            nacks_received: Counter::default(),
            nacks_sent: Counter::default(),
            layer_switches: Counter::default(),
            congestion_limits: Counter::default(),
            panics: Counter::default(),
            busy_seconds: Counter::default(),
            cpu_seconds: Counter::default(),
            // 1 µs to ~4 ms.
            packet_seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1e-6, 2.0, 13)),
            rooms: Gauge::default(),
            transports: Gauge::default(),
        }
    }

    /// Adds what the worker did since `before`.
    fn record(&self, before: &WorkerStats, now: &WorkerStats) {
        let add = |c: &Counter, a: u64, b: u64| {
            c.inc_by(b.saturating_sub(a));
        };
        add(&self.packets_in, before.packets_in, now.packets_in);
        add(&self.bytes_in, before.bytes_in, now.bytes_in);
        add(&self.packets_out, before.packets_out, now.packets_out);
        add(&self.bytes_out, before.bytes_out, now.bytes_out);
        add(&self.unrouted, before.unrouted, now.unrouted);
        add(&self.packets_forwarded, before.packets_forwarded, now.packets_forwarded);
        add(&self.keyframe_requests, before.keyframe_requests, now.keyframe_requests);
        add(&self.nacks_received, before.nacks_received, now.nacks_received);
        add(&self.nacks_sent, before.nacks_sent, now.nacks_sent);
        add(&self.layer_switches, before.layer_switches, now.layer_switches);
        add(&self.congestion_limits, before.congestion_limits, now.congestion_limits);
        add(&self.panics, before.panics, now.panics);
    }
}

/// The SFU's metrics: one set per worker, and the receive thread's drops.
#[derive(Debug)]
pub struct SfuMetrics {
    pub workers: Vec<WorkerMetrics>,
    /// Packets dropped because their worker's queue was full.
    pub dropped: Counter,
    /// Packets the receive thread handed to a worker (a new path's first packets, with
    /// several workers; the rest reach each worker's own sockets).
    pub handed_over: Counter,
}

pub(super) struct Started {
    pub commands: Vec<mpsc::UnboundedSender<Command>>,
    pub metrics: Arc<SfuMetrics>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

/// A non-blocking UDP socket bound to `local`, connected to `remote` if given. With
/// `shared`, it is in the port's `SO_REUSEPORT` group: the kernel hands a client's
/// datagrams to the socket connected to that client before the group's others.
pub(super) fn bind_udp(local: SocketAddr, remote: Option<SocketAddr>, shared: bool) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol as SocketProtocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(SocketProtocol::UDP))?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&local.into())?;
    if let Some(remote) = remote {
        socket.connect(&remote.into())?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Starts the receive thread and `workers` worker threads on the bound sockets.
pub(super) fn start(
    socket: UdpSocket,
    tcp: Option<std::net::TcpListener>,
    addrs: MediaAddrs,
    workers: usize,
    events: mpsc::UnboundedSender<SfuEvent>,
) -> anyhow::Result<Started> {
    let metrics = Arc::new(SfuMetrics {
        workers: (0..workers).map(|_| WorkerMetrics::new()).collect(),
        dropped: Counter::default(),
        handed_over: Counter::default(),
    });
    let (news_tx, news_rx) = mpsc::unbounded_channel();
    let mut commands = Vec::new();
    let mut inbound = Vec::new();
    let mut threads = Vec::new();
    // One worker reads the socket itself: no thread to hand packets over to it.
    let (mut own, tcp) = if workers == 1 { (Some((socket.try_clone()?, tcp)), None) } else { (None, tcp) };
    for index in 0..workers {
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (inbound_tx, inbound_rx) = mpsc::channel(WORKER_QUEUE);
        commands.push(command_tx);
        inbound.push(inbound_tx);
        let thread = WorkerThread {
            index,
            worker: Worker::new(addrs.clone(), Instant::now()),
            commands: command_rx,
            inbound: inbound_rx,
            socket: socket.try_clone()?,
            own: own.take(),
            tcp: HashMap::new(),
            addrs: addrs.clone(),
            events: events.clone(),
            news: (workers > 1).then(|| news_tx.clone()),
            metrics: metrics.workers[index].clone(),
            paths: None,
            outgoing: Outgoing::default(),
        };
        threads.push(std::thread::Builder::new().name(format!("confer-sfu-{index}")).spawn(move || thread.run())?);
    }
    if workers > 1 {
        let receiver = Receiver {
            workers: inbound,
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            tcp_pending: HashMap::new(),
            news: news_rx,
            addrs,
            metrics: metrics.clone(),
        };
        let thread =
            std::thread::Builder::new().name("confer-sfu-rx".into()).spawn(move || receiver.run(socket, tcp))?;
        threads.push(thread);
    }
    Ok(Started { commands, metrics, threads })
}

/// The receive thread: one socket in, one queue per worker out.
struct Receiver {
    workers: Vec<mpsc::Sender<Inbound>>,
    /// The worker of each known sender, and when it was last heard from.
    by_addr: HashMap<(Protocol, SocketAddr), (usize, Instant)>,
    by_ufrag: HashMap<String, usize>,
    /// ICE-TCP connections whose first packet has not come yet.
    tcp_pending: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    news: mpsc::UnboundedReceiver<UfragNews>,
    addrs: MediaAddrs,
    metrics: Arc<SfuMetrics>,
}

impl Receiver {
    fn run(mut self, socket: UdpSocket, tcp: Option<std::net::TcpListener>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => return tracing::error!(error = %e, "cannot start the media receive thread's runtime"),
        };
        runtime.block_on(async move {
            let socket = match ReadSocket::new(socket) {
                Ok(s) => s,
                Err(e) => return tracing::error!(error = %e, "cannot register the media socket"),
            };
            // Packets from TCP clients wait here when the workers are busy; the
            // readers then stop reading, which TCP's flow control turns into
            // back-pressure on those clients alone.
            let (tcp_tx, mut tcp_rx) = mpsc::channel(1024);
            if let Some(listener) = tcp {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        tokio::spawn(tcp::accept(l, tcp_tx));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot register the media TCP listener"),
                }
            }
            // The address datagrams arrive at, when the socket is bound to one.
            let udp_ip = socket.local_addr().ok().map(|a| a.ip()).filter(|ip| !ip.is_unspecified());
            let mut buf = vec![0u8; 2048];
            let mut next_prune = Instant::now() + ADDRESS_IDLE;
            loop {
                tokio::select! {
                    r = socket.recv_from(&mut buf) => match r {
                        Ok((n, source)) => {
                            self.udp(&buf[..n], tcp::canonical(source), udp_ip);
                            // Whatever else is waiting, without going back to the runtime.
                            while let Ok((n, source)) = socket.try_recv_from(&mut buf) {
                                self.udp(&buf[..n], tcp::canonical(source), udp_ip);
                            }
                        }
                        // ICMP errors from earlier sends (port unreachable) surface here on
                        // some systems; they concern one peer, which times out on its own.
                        Err(e) => tracing::debug!(error = %e, "media socket receive"),
                    },
                    Some(input) = tcp_rx.recv() => self.tcp(input),
                    news = self.news.recv() => match news {
                        Some(news) => self.learn(news),
                        // Every worker is gone: the SFU stopped.
                        None => break,
                    },
                }
                let now = Instant::now();
                if now >= next_prune {
                    next_prune = now + ADDRESS_IDLE;
                    self.by_addr.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < ADDRESS_IDLE);
                }
            }
            tracing::info!("media receive thread stopped");
        });
    }

    fn learn(&mut self, news: UfragNews) {
        if news.added {
            self.by_ufrag.insert(news.ufrag, news.worker);
        } else if self.by_ufrag.get(&news.ufrag) == Some(&news.worker) {
            self.by_ufrag.remove(&news.ufrag);
        }
    }

    /// The worker for a packet from `source`: `None` for one to every worker.
    fn route(&mut self, proto: Protocol, source: SocketAddr, data: &[u8]) -> Option<Option<usize>> {
        let now = Instant::now();
        if self.workers.len() == 1 {
            return Some(Some(0));
        }
        if let Some(ufrag) = stun_ufrag(data) {
            while let Ok(news) = self.news.try_recv() {
                self.learn(news);
            }
            return match self.by_ufrag.get(ufrag).copied() {
                Some(worker) => {
                    self.by_addr.insert((proto, source), (worker, now));
                    Some(Some(worker))
                }
                None => Some(None),
            };
        }
        let (worker, seen) = self.by_addr.get_mut(&(proto, source))?;
        *seen = now;
        Some(Some(*worker))
    }

    fn udp(&mut self, data: &[u8], source: SocketAddr, udp_ip: Option<IpAddr>) {
        let Some(destination) = MediaAddrs::destination(&self.addrs.udp, source, udp_ip) else { return };
        match self.route(Protocol::Udp, source, data) {
            Some(Some(worker)) => {
                self.hand(worker, Inbound::Udp { source, destination, data: data.to_vec() });
            }
            Some(None) => {
                for worker in 0..self.workers.len() {
                    self.hand(worker, Inbound::Udp { source, destination, data: data.to_vec() });
                }
            }
            None => tracing::trace!(%source, "datagram from an unknown address"),
        }
    }

    fn tcp(&mut self, input: TcpInput) {
        match input {
            TcpInput::Opened { remote, sender } => {
                self.tcp_pending.insert(remote, sender);
            }
            TcpInput::Packet { remote, local, data } => {
                let workers = match self.route(Protocol::Tcp, remote, &data) {
                    Some(Some(w)) => vec![w],
                    Some(None) => (0..self.workers.len()).collect(),
                    None => return tracing::trace!(%remote, "TCP packet from an unknown connection"),
                };
                let opened = self.tcp_pending.remove(&remote);
                for worker in workers {
                    if let Some(sender) = &opened {
                        self.hand(worker, Inbound::TcpOpened { remote, sender: sender.clone() });
                    }
                    self.hand(worker, Inbound::TcpPacket { remote, local, data: data.clone() });
                }
            }
            TcpInput::Closed { remote } => {
                self.tcp_pending.remove(&remote);
                if let Some((worker, _)) = self.by_addr.remove(&(Protocol::Tcp, remote)) {
                    self.hand(worker, Inbound::TcpClosed { remote });
                } else if self.workers.len() == 1 {
                    self.hand(0, Inbound::TcpClosed { remote });
                }
            }
        }
    }

    fn hand(&self, worker: usize, inbound: Inbound) {
        self.metrics.handed_over.inc();
        if let Err(e) = self.workers[worker].try_send(inbound) {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                self.metrics.dropped.inc();
                tracing::trace!(worker, "media worker queue full; packet dropped");
            }
        }
    }
}

/// What woke a worker thread.
enum Wake {
    Command(Option<Command>),
    Udp(std::io::Result<(usize, SocketAddr)>),
    Tcp(TcpInput),
    /// Sockets connected to one client each are readable (by their tokens).
    Paths(Vec<u64>),
    Inbound(Inbound),
    Timer,
}

/// A datagram from the worker's own socket; never, without one.
async fn recv(socket: Option<&ReadSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// The tokens of the readable client sockets; never, without them.
async fn readable(paths: Option<&Paths>) -> Vec<u64> {
    match paths {
        Some(p) => p.readable().await,
        None => std::future::pending().await,
    }
}

async fn recv_tcp(rx: &mut Option<mpsc::Receiver<TcpInput>>) -> Option<TcpInput> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One worker and its thread's sockets.
struct WorkerThread {
    index: usize,
    worker: Worker,
    commands: mpsc::UnboundedReceiver<Command>,
    inbound: mpsc::Receiver<Inbound>,
    socket: UdpSocket,
    /// The only worker reads the socket (and takes the ICE-TCP listener) itself.
    own: Option<(UdpSocket, Option<std::net::TcpListener>)>,
    /// Open ICE-TCP connections by the client's address: each one's send queue.
    tcp: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    addrs: MediaAddrs,
    events: mpsc::UnboundedSender<SfuEvent>,
    /// To the receive thread, when there is one.
    news: Option<mpsc::UnboundedSender<UfragNews>>,
    metrics: WorkerMetrics,
    /// With several workers: a socket connected to each client this worker serves, so
    /// that the kernel delivers the client's datagrams here rather than to the receive
    /// thread. Made in the worker's runtime.
    paths: Option<Paths>,
    /// Datagrams to send, sent together.
    outgoing: Outgoing,
}

/// Reads the calling thread's CPU time (a system call) every [`CpuClock::INTERVAL`].
struct CpuClock {
    read_at: Instant,
    used: Option<Duration>,
}

impl CpuClock {
    const INTERVAL: Duration = Duration::from_millis(100);

    fn start() -> Self {
        Self { read_at: Instant::now(), used: thread_cpu_time() }
    }

    /// The CPU time used since the last reading, if it is time for one.
    fn advance(&mut self, now: Instant) -> Option<Duration> {
        if now.saturating_duration_since(self.read_at) < Self::INTERVAL {
            return None;
        }
        let used = thread_cpu_time();
        let since = used.zip(self.used).map(|(now, before)| now.saturating_sub(before));
        *self = Self { read_at: now, used };
        since
    }
}

/// The CPU time the calling thread has used: what a worker costs the machine, without
/// the time it waited for a core (which the load tool of a benchmark takes too).
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Option<Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(Duration::new(u64::try_from(t.tv_sec()).ok()?, u32::try_from(t.tv_nsec()).ok()?))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

impl WorkerThread {
    fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => return tracing::error!(error = %e, "cannot start a media worker's runtime"),
        };
        runtime.block_on(async move {
            if self.news.is_some() {
                self.paths = Paths::new()
                    .map_err(|e| tracing::warn!(error = %e, "no sockets of its own for a media worker's clients"))
                    .ok();
            }
            let (socket, tcp_rx) = match self.own.take() {
                Some((socket, listener)) => self.listen(socket, listener),
                None => (None, None),
            };
            let mut tcp_rx = tcp_rx;
            let udp_ip =
                socket.as_ref().and_then(|s| s.local_addr().ok()).map(|a| a.ip()).filter(|ip| !ip.is_unspecified());
            let mut buf = vec![0u8; 2048];
            let mut recorded = self.worker.stats();
            let mut working = Instant::now();
            let mut cpu = CpuClock::start();
            // One timer for the thread's life, moved only when the deadline moves: a new
            // one each turn registers anew with the runtime's timer, and one earlier than
            // the last wakes the runtime's driver (an eventfd write) for nothing.
            let timer = tokio::time::sleep_until(tokio::time::Instant::now());
            tokio::pin!(timer);
            let mut armed = None;
            loop {
                let deadline = self.flush();
                let stats = self.worker.stats();
                self.metrics.record(&recorded, &stats);
                recorded = stats;
                let (rooms, transports) = self.worker.load();
                self.metrics.rooms.set(rooms as i64);
                self.metrics.transports.set(transports as i64);
                self.metrics.busy_seconds.inc_by(working.elapsed().as_secs_f64());
                if let Some(used) = cpu.advance(working) {
                    self.metrics.cpu_seconds.inc_by(used.as_secs_f64());
                }
                if self.worker.is_stopped() {
                    break;
                }
                if armed != Some(deadline) {
                    timer.as_mut().reset(deadline.into());
                    armed = Some(deadline);
                }
                let wake = tokio::select! {
                    biased;
                    c = self.commands.recv() => Wake::Command(c),
                    r = recv(socket.as_ref(), &mut buf) => Wake::Udp(r),
                    Some(t) = recv_tcp(&mut tcp_rx) => Wake::Tcp(t),
                    tokens = readable(self.paths.as_ref()) => Wake::Paths(tokens),
                    Some(i) = self.inbound.recv() => Wake::Inbound(i),
                    _ = &mut timer => Wake::Timer,
                };
                working = Instant::now();
                match wake {
                    Wake::Command(Some(command)) => self.worker.handle_input(working, Input::Command(command)),
                    Wake::Command(None) => self.worker.handle_input(working, Input::Command(Command::Stop)),
                    Wake::Udp(Ok((n, source))) => {
                        self.udp(&buf[..n], source, udp_ip, working);
                        // Whatever else is waiting, up to a batch, before the timers.
                        if let Some(socket) = &socket {
                            for _ in 1..BATCH {
                                let Ok((n, source)) = socket.try_recv_from(&mut buf) else { break };
                                self.udp(&buf[..n], source, udp_ip, Instant::now());
                            }
                        }
                    }
                    // ICMP errors from earlier sends (port unreachable) surface here on
                    // some systems; they concern one peer, which times out on its own.
                    Wake::Udp(Err(e)) => tracing::debug!(error = %e, "media socket receive"),
                    Wake::Tcp(t) => self.tcp(t, working),
                    Wake::Paths(tokens) => {
                        // Up to a batch in all, before the timers; the clients not read
                        // stay ready, and are read on the next turn.
                        if let Some(paths) = self.paths.take() {
                            let mut read = 0;
                            for token in tokens {
                                read += paths.read(token, &mut buf, BATCH - read, |source, data| {
                                    self.udp(data, source, udp_ip, Instant::now())
                                });
                                if read >= BATCH {
                                    break;
                                }
                            }
                            self.paths = Some(paths);
                        }
                    }
                    Wake::Inbound(i) => {
                        self.inbound(i, working);
                        for _ in 1..BATCH {
                            let Ok(i) = self.inbound.try_recv() else { break };
                            self.inbound(i, Instant::now());
                        }
                    }
                    Wake::Timer => {}
                }
                // Whatever is due, housekeeping that waited for a wake-up included.
                self.worker.handle_input(Instant::now(), Input::Timeout);
            }
            tracing::info!(worker = self.index, "media worker stopped");
        });
    }

    /// The only worker's own socket, and its ICE-TCP connections' packets.
    fn listen(
        &mut self,
        socket: UdpSocket,
        listener: Option<std::net::TcpListener>,
    ) -> (Option<ReadSocket>, Option<mpsc::Receiver<TcpInput>>) {
        let socket = match ReadSocket::new(socket) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot register the media socket");
                None
            }
        };
        let tcp = listener.and_then(|l| match tokio::net::TcpListener::from_std(l) {
            Ok(l) => {
                // Packets from TCP clients wait here when the worker is busy; the readers
                // then stop reading, which TCP's flow control turns into back-pressure on
                // those clients alone.
                let (tx, rx) = mpsc::channel(1024);
                tokio::spawn(tcp::accept(l, tx));
                Some(rx)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot register the media TCP listener");
                None
            }
        });
        (socket, tcp)
    }

    fn udp(&mut self, data: &[u8], source: SocketAddr, udp_ip: Option<IpAddr>, now: Instant) {
        let source = tcp::canonical(source);
        let Some(destination) = MediaAddrs::destination(&self.addrs.udp, source, udp_ip) else { return };
        self.worker.handle_input(now, Input::Receive { proto: Protocol::Udp, source, destination, data });
        self.metrics.packet_seconds.observe(now.elapsed().as_secs_f64());
    }

    fn tcp(&mut self, input: TcpInput, now: Instant) {
        let inbound = match input {
            TcpInput::Opened { remote, sender } => Inbound::TcpOpened { remote, sender },
            TcpInput::Packet { remote, local, data } => Inbound::TcpPacket { remote, local, data },
            TcpInput::Closed { remote } => Inbound::TcpClosed { remote },
        };
        self.inbound(inbound, now);
    }

    fn inbound(&mut self, inbound: Inbound, now: Instant) {
        match inbound {
            Inbound::Udp { source, destination, data } => {
                let input = Input::Receive { proto: Protocol::Udp, source, destination, data: &data };
                self.worker.handle_input(now, input);
                self.metrics.packet_seconds.observe(now.elapsed().as_secs_f64());
            }
            Inbound::TcpOpened { remote, sender } => {
                self.tcp.insert(remote, sender);
            }
            Inbound::TcpPacket { remote, local, data } => {
                if let Some(destination) = MediaAddrs::destination(&self.addrs.tcp, remote, Some(local.ip())) {
                    let input = Input::Receive { proto: Protocol::Tcp, source: remote, destination, data: &data };
                    self.worker.handle_input(now, input);
                }
            }
            Inbound::TcpClosed { remote } => {
                self.tcp.remove(&remote);
            }
        }
    }

    /// A socket of this worker's own for datagrams from `remote`.
    fn connect(&mut self, remote: SocketAddr) {
        let Ok(local) = self.socket.local_addr() else { return };
        let Some(paths) = &mut self.paths else { return };
        if let Err(e) = bind_udp(local, Some(remote), true).and_then(|socket| paths.add(remote, socket)) {
            tracing::debug!(%remote, error = %e, "no socket of its own for a client; the shared one serves");
        }
    }

    /// Sends what the worker has to say; returns when it wants time next.
    fn flush(&mut self) -> Instant {
        loop {
            match self.worker.poll_output() {
                Output::Timeout(at) => {
                    self.outgoing.send(&self.socket);
                    return at;
                }
                Output::Transmit(t) => match t.proto {
                    Protocol::Udp => self.outgoing.push(t, &self.socket),
                    Protocol::Tcp => match self.tcp.get(&t.destination) {
                        // A full queue is a client reading slower than it receives: drop, as
                        // UDP would, rather than wait for it.
                        Some(queue) => {
                            if let Err(e) = queue.try_send(t.contents.to_vec()) {
                                tracing::trace!(destination = %t.destination, error = %e, "media TCP send dropped");
                            }
                        }
                        None => tracing::trace!(destination = %t.destination, "no TCP connection for this media"),
                    },
                    other => tracing::debug!(?other, "media send over an unsupported transport"),
                },
                Output::Event(e) => {
                    let _ = self.events.send(e);
                }
                Output::Ufrag { ufrag, added } => {
                    if let Some(news) = &self.news {
                        let _ = news.send(UfragNews { worker: self.index, ufrag, added });
                    }
                }
                // Only with several workers: a lone worker reads every datagram itself.
                Output::Path { remote, added: true } if self.news.is_some() => self.connect(remote),
                Output::Path { remote, added: false } => {
                    if let Some(paths) = &mut self.paths {
                        paths.remove(remote);
                    }
                }
                Output::Path { .. } => {}
            }
        }
    }
}
