//! The selective forwarding unit: every participant's media transports, on one UDP
//! port (and one TCP port for networks that drop UDP), spread over worker threads.
//!
//! Each participant has up to two WebRTC transports to the server: a *publisher*
//! transport (the client offers, the server answers) whose producers are the tracks it
//! sends, and a *subscriber* transport (the server offers) whose consumers are the tracks
//! it receives. Both are [`str0m::Rtc`] instances in ICE-lite mode.
//!
//! The files follow the object model SFU engineers know (mediasoup's): a [`worker`] is
//! one core's sans-IO loop over its [`room`]s; a room holds its members'
//! [`transport`]s; a transport's [`producer`]s are the tracks it receives and its
//! [`consumer`]s the tracks it sends. [`driver`] owns the sockets, the clock and the
//! threads: a lone worker reads the socket itself; with several, each worker opens a
//! socket connected to each client it serves (in the port's `SO_REUSEPORT` group, so the
//! kernel delivers that client's datagrams to it), and a receive thread hands a new
//! path's first packets to the worker of its room by the ICE username. A room lives on one worker,
//! chosen when its session starts ([`SfuHandle::place`]); nothing on the path of a
//! packet is shared between workers.
//!
//! The hub (signaling state) drives a room's worker with [`Command`]s and hears back
//! through [`SfuEvent`]s, so the hub never waits on media and the media threads never
//! take the hub's lock. Forwarding works on RTP packets (str0m's RTP mode): the SFU never
//! decodes or repacketises, but it reads enough of each packet (the VP8 descriptor, the
//! H.264 NAL type) to see keyframes and frame boundaries, which is what simulcast layer
//! switching and clean starts need. [`consumer`] renumbers each outgoing stream's
//! sequence numbers and rewrites its RTP time, so that switches are seamless.

mod audio_level;
mod clock;
pub mod consumer;
mod downlink;
pub mod driver;
pub mod dtls;
mod negotiation;
mod outgoing;
pub mod producer;
mod reports;
pub mod room;
mod tcp;
mod timers;
pub mod transport;
mod udp;
pub mod worker;

#[cfg(test)]
mod lab;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use confer_proto::track::{AudioLevel, NetworkMetrics, Quality, SubscribedTrack, TrackId, TrackKind};
use confer_proto::{ParticipantId, RoomId};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// Where the SFU listens and what it tells clients.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    pub udp_addr: SocketAddr,
    /// The UDP candidate put in SDP, port included; `None` means the bound address (or
    /// `advertise_ips` with the bound port).
    pub advertise_addr: Option<SocketAddr>,
    /// Addresses announced with the UDP and TCP ports; empty means the bound address.
    pub advertise_ips: Vec<IpAddr>,
    /// ICE-TCP listener; `None` means the UDP address's IP and port number.
    pub tcp_addr: Option<SocketAddr>,
    /// Whether to listen for ICE over TCP at all.
    pub ice_tcp: bool,
    /// Worker threads; each room lives on one.
    pub workers: usize,
}

/// The candidates every media connection offers: host UDP ones and passive TCP ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAddrs {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
}

impl MediaAddrs {
    /// What to announce, given the bound sockets.
    fn announced(config: &SfuConfig, udp_bound: SocketAddr, tcp_bound: Option<SocketAddr>) -> Self {
        let mut ips = config.advertise_ips.clone();
        if ips.is_empty() {
            ips.push(config.advertise_addr.map_or(udp_bound.ip(), |a| a.ip()));
        }
        let mut udp: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, udp_bound.port())).collect();
        if let Some(a) = config.advertise_addr {
            // An explicit address and port (a forwarded port) replaces its IP's entry.
            udp.retain(|u| u.ip() != a.ip());
            udp.insert(0, a);
        }
        let tcp = match tcp_bound {
            Some(t) => ips.iter().map(|ip| SocketAddr::new(*ip, t.port())).collect(),
            None => Vec::new(),
        };
        Self { udp, tcp }
    }

    /// The announced address a packet from `source`, received on a socket bound to
    /// `local`, was sent to: the one on the same IP, else the first of the same family.
    /// (str0m answers a connectivity check only if this names one of its candidates.)
    pub fn destination(list: &[SocketAddr], source: SocketAddr, local: Option<IpAddr>) -> Option<SocketAddr> {
        list.iter()
            .find(|a| Some(a.ip()) == local)
            .or_else(|| list.iter().find(|a| a.is_ipv4() == source.is_ipv4()))
            .or(list.first())
            .copied()
    }
}

/// A track to be received on a publisher connection.
#[derive(Debug, Clone)]
pub struct IncomingTrack {
    pub track_id: TrackId,
    /// The media section of the publisher's offer that carries it; for a data track, the
    /// label of its data channel.
    pub mid: String,
    pub kind: TrackKind,
    pub simulcast: bool,
    /// Muted at publish time: nothing is forwarded until unmuted.
    pub muted: bool,
}

/// A track to be sent on a subscriber connection.
#[derive(Debug, Clone)]
pub struct OutgoingTrack {
    pub track_id: TrackId,
    pub kind: TrackKind,
}

/// Which of a subscribed stream's tracks flow, and at what quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    pub audio: bool,
    pub video: bool,
    pub quality: Quality,
}

/// The publisher connection's answer, and the codec chosen for each track.
#[derive(Debug, Clone)]
pub struct PublishAnswer {
    pub sdp: String,
    pub codecs: Vec<(TrackId, String)>,
}

/// A stream's tracks to send to a subscriber.
#[derive(Debug)]
pub struct Subscribe {
    pub room: RoomId,
    pub subscriber: ParticipantId,
    pub publisher: ParticipantId,
    pub key: String,
    pub tracks: Vec<OutgoingTrack>,
    pub wants: Wants,
}

/// What the hub asks of a room's worker.
#[derive(Debug)]
pub enum Command {
    /// Apply a publisher offer and start receiving `tracks`.
    Publish {
        room: RoomId,
        participant: ParticipantId,
        tracks: Vec<IncomingTrack>,
        offer: String,
        reply: oneshot::Sender<Result<PublishAnswer, ApiError>>,
    },
    /// Stop receiving (and forwarding) these tracks.
    Unpublish {
        participant: ParticipantId,
        tracks: Vec<TrackId>,
    },
    /// Pause or resume forwarding of a track: `muted` by its publisher, `censored` by a
    /// moderator. It flows only when neither.
    SetTrackState {
        track_id: TrackId,
        muted: bool,
        censored: bool,
    },
    /// Send a stream's tracks to a subscriber (adding them to its connection).
    Subscribe(Subscribe),
    UpdateSubscription {
        subscriber: ParticipantId,
        tracks: Vec<TrackId>,
        wants: Wants,
    },
    Unsubscribe {
        subscriber: ParticipantId,
        tracks: Vec<TrackId>,
    },
    /// Renegotiate an existing publisher connection (ICE restart, new data channels).
    PublisherOffer {
        participant: ParticipantId,
        offer: String,
        reply: oneshot::Sender<Result<String, ApiError>>,
    },
    /// Offer the subscriber connection again with new ICE credentials.
    RestartSubscriber {
        participant: ParticipantId,
    },
    /// The subscriber's answer to the last offer.
    Answer {
        participant: ParticipantId,
        sdp: String,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// The participant is gone: close both its connections.
    Remove {
        participant: ParticipantId,
    },
    /// Include these participants' network metrics in [`SfuEvent::Metrics`].
    WatchMetrics {
        room: RoomId,
        participants: Vec<ParticipantId>,
    },
    /// Make the next input to this participant's connections panic (a test of fault
    /// isolation: [`crate::Server::inject_fault`]).
    InjectPanic {
        participant: ParticipantId,
    },
    /// Close every connection and end the worker.
    Stop,
}

impl Command {
    /// The participant whose connections the command concerns, if one.
    pub fn participant(&self) -> Option<&ParticipantId> {
        match self {
            Command::Publish { participant, .. }
            | Command::PublisherOffer { participant, .. }
            | Command::RestartSubscriber { participant }
            | Command::Answer { participant, .. }
            | Command::Remove { participant }
            | Command::InjectPanic { participant } => Some(participant),
            Command::Subscribe(Subscribe { subscriber, .. })
            | Command::UpdateSubscription { subscriber, .. }
            | Command::Unsubscribe { subscriber, .. } => Some(subscriber),
            Command::Unpublish { participant, .. } => Some(participant),
            Command::SetTrackState { .. } | Command::WatchMetrics { .. } | Command::Stop => None,
        }
    }
}

/// What the media thread tells the hub.
#[derive(Debug)]
pub enum SfuEvent {
    /// Subscriptions whose tracks were added to `participant`'s subscriber connection,
    /// as (publisher, stream key, tracks), and the offer that adds them. A change that
    /// needs no negotiation (a data channel on a connection that has data channels
    /// already) comes without an offer.
    SubscriberOffer {
        room: RoomId,
        participant: ParticipantId,
        sdp: Option<String>,
        started: Vec<(ParticipantId, String, Vec<SubscribedTrack>)>,
    },
    /// A media connection died (consent timeout, DTLS failure, never connected).
    PeerFailed { room: RoomId, participant: ParticipantId, publisher: bool },
    /// Audio levels in a room, at most every [`audio_level::INTERVAL`].
    AudioActivity { room: RoomId, levels: Vec<AudioLevel>, active_speaker: Option<ParticipantId> },
    /// Network metrics of watched participants, every few seconds.
    Metrics { room: RoomId, reports: Vec<NetworkMetrics> },
}

/// The hub's end of the media workers.
#[derive(Debug, Clone)]
pub struct SfuHandle {
    workers: std::sync::Arc<[WorkerHandle]>,
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    addrs: MediaAddrs,
}

#[derive(Debug)]
struct WorkerHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// Rooms placed on it and still running.
    rooms: std::sync::Arc<AtomicUsize>,
}

impl SfuHandle {
    /// Chooses the worker for a new session's room: the one with the fewest rooms. The
    /// room stays there for as long as the returned handle (or a clone) lives.
    pub fn place(&self) -> RoomMedia {
        let (index, worker) = self
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.rooms.load(Ordering::Relaxed))
            .expect("an SFU has at least one worker");
        worker.rooms.fetch_add(1, Ordering::Relaxed);
        let placed = Placed { rooms: worker.rooms.clone() };
        RoomMedia { commands: worker.commands.clone(), worker: index, _placed: std::sync::Arc::new(placed) }
    }

    /// Sends a command to every worker (a stop, or one that names a participant whose
    /// room is not at hand).
    pub fn broadcast(&self, command: impl Fn() -> Command) {
        for w in self.workers.iter() {
            let _ = w.commands.send(command());
        }
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound ICE-TCP address, if listening.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The candidates announced to clients.
    pub fn addrs(&self) -> &MediaAddrs {
        &self.addrs
    }
}

/// A room's share of a worker: what the hub sends that room's commands through.
#[derive(Debug, Clone)]
pub struct RoomMedia {
    commands: mpsc::UnboundedSender<Command>,
    worker: usize,
    _placed: std::sync::Arc<Placed>,
}

impl RoomMedia {
    /// Queues a command; a no-op once the worker has stopped.
    pub fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            tracing::debug!("media worker has stopped; command dropped");
        }
    }

    /// The worker the room lives on.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

/// Counts a room on its worker until the last handle to it goes.
#[derive(Debug)]
struct Placed {
    rooms: std::sync::Arc<AtomicUsize>,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.rooms.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
impl SfuHandle {
    /// A handle with no worker behind it: the commands it is sent, for tests of the hub.
    pub(crate) fn detached() -> (SfuHandle, mpsc::UnboundedReceiver<Command>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let local_addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let addrs = MediaAddrs { udp: vec![local_addr], tcp: Vec::new() };
        let workers = vec![WorkerHandle { commands, rooms: Default::default() }].into();
        (SfuHandle { workers, local_addr, tcp_addr: None, addrs }, rx)
    }
}

/// The running media workers. Dropping every [`SfuHandle`] stops them.
pub struct Sfu {
    pub handle: SfuHandle,
    pub events: mpsc::UnboundedReceiver<SfuEvent>,
    pub metrics: std::sync::Arc<driver::SfuMetrics>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

impl Sfu {
    /// Binds the UDP socket and the TCP listener and starts the receive thread and
    /// `config.workers` workers (at least one).
    pub fn start(config: &SfuConfig) -> anyhow::Result<Sfu> {
        // Idempotent; the first provider installed in the process wins.
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = driver::bind_udp(config.udp_addr, None, config.workers > 1)
            .map_err(|e| anyhow::anyhow!("cannot bind media UDP {}: {e}", config.udp_addr))?;
        let local_addr = socket.local_addr()?;
        let tcp = bind_tcp(config, local_addr)?;
        let tcp_addr = tcp.as_ref().map(|l| l.local_addr()).transpose()?;
        let addrs = MediaAddrs::announced(config, local_addr, tcp_addr);
        let (event_tx, events) = mpsc::unbounded_channel();
        let started = driver::start(socket, tcp, addrs.clone(), config.workers.max(1), event_tx)?;
        let workers = started
            .commands
            .into_iter()
            .map(|commands| WorkerHandle { commands, rooms: Default::default() })
            .collect::<Vec<_>>()
            .into();
        tracing::info!(udp = %local_addr, tcp = ?tcp_addr, announced_udp = ?addrs.udp, announced_tcp = ?addrs.tcp, workers = config.workers.max(1), "media (SFU) listening");
        Ok(Sfu {
            handle: SfuHandle { workers, local_addr, tcp_addr, addrs },
            events,
            metrics: started.metrics,
            threads: started.threads,
        })
    }
}

/// The ICE-TCP listener: as configured, or on the UDP port's number (falling back to
/// any free port when that number is taken, as it may be when the UDP port was chosen
/// by the system).
fn bind_tcp(config: &SfuConfig, udp: SocketAddr) -> anyhow::Result<Option<std::net::TcpListener>> {
    if !config.ice_tcp {
        return Ok(None);
    }
    let listener = match config.tcp_addr {
        Some(addr) => std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen for media over TCP on {addr}: {e}"))?,
        None => match std::net::TcpListener::bind(udp) {
            Ok(l) => l,
            Err(e) if config.udp_addr.port() == 0 => {
                tracing::debug!(error = %e, port = udp.port(), "the UDP port's number is taken for TCP; using another");
                std::net::TcpListener::bind(SocketAddr::new(udp.ip(), 0))?
            }
            Err(e) => return Err(anyhow::anyhow!("cannot listen for media over TCP on {udp}: {e} (set --tcp-addr)")),
        },
    };
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ips: &[&str], advertise: Option<&str>) -> SfuConfig {
        SfuConfig {
            udp_addr: "0.0.0.0:7882".parse().unwrap(),
            advertise_addr: advertise.map(|a| a.parse().unwrap()),
            advertise_ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            tcp_addr: None,
            ice_tcp: true,
            workers: 1,
        }
    }

    #[test]
    fn every_advertised_ip_gets_a_udp_and_a_tcp_candidate() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let bound = addr("0.0.0.0:7882");
        let a = MediaAddrs::announced(&config(&["203.0.113.5", "2001:db8::5"], None), bound, Some(bound));
        assert_eq!(a.udp, vec![addr("203.0.113.5:7882"), addr("[2001:db8::5]:7882")]);
        assert_eq!(a.tcp, vec![addr("203.0.113.5:7882"), addr("[2001:db8::5]:7882")]);
        let a = MediaAddrs::announced(&config(&[], Some("198.51.100.1:40000")), bound, Some(bound));
        assert_eq!(a.udp, vec![addr("198.51.100.1:40000")]);
        assert_eq!(a.tcp, vec![addr("198.51.100.1:7882")]);
    }

    #[test]
    fn a_packet_is_matched_to_the_candidate_of_its_family() {
        let list: Vec<SocketAddr> = vec!["203.0.113.5:1".parse().unwrap(), "[2001:db8::5]:1".parse().unwrap()];
        let v6: SocketAddr = "[2001:db8::9]:5".parse().unwrap();
        let v4: SocketAddr = "192.0.2.9:5".parse().unwrap();
        assert_eq!(MediaAddrs::destination(&list, v6, None), Some(list[1]));
        assert_eq!(MediaAddrs::destination(&list, v4, None), Some(list[0]));
        assert_eq!(MediaAddrs::destination(&list, v4, Some("2001:db8::5".parse().unwrap())), Some(list[1]));
    }
}
