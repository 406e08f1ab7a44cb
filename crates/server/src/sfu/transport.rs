//! A transport: one participant's media connection to the SFU, a `str0m::Rtc`, and what
//! flows through it in its one direction.
//!
//! Each participant has up to two: a *publisher* transport (the client offers, the
//! server answers) whose producers are the tracks it sends, and a *subscriber* transport
//! (the server offers) whose consumers are the tracks it receives. What belongs to one
//! direction only lives in [`Side`], so a publisher cannot hold a pending subscriber
//! offer, nor a subscriber a producer.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use confer_proto::track::TrackKind;
use confer_proto::{ParticipantId, RoomId};
use str0m::change::SdpPendingOffer;
use str0m::channel::ChannelId;
use str0m::media::{Mid, Rid};
use str0m::rtp::Ssrc;
use str0m::Rtc;

use super::clock::CaptureClock;
use super::consumer::Consumer;
use super::downlink::Downlink;
use super::producer::Producer;
use super::timers::Timer;

/// A transport's number on its worker, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportId(pub u64);

impl fmt::Display for TransportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// Which way media flows on a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The participant sends; the server receives.
    Publisher,
    /// The server sends; the participant receives.
    Subscriber,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        }
    }
}

/// A transport that has not completed ICE and DTLS by then is given up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a transport may stay disconnected (no ICE consent for 15 s, str0m's
/// ICE-lite rule) before it is given up. A client that comes back within it, by an ICE
/// restart or by nominating its path again, keeps its streams and subscriptions.
pub const DISCONNECTED_GRACE: Duration = Duration::from_secs(5);
/// How long an ICE restart (or a path being checked again) may take to succeed.
pub const RECHECK_GRACE: Duration = Duration::from_secs(15);

/// The label of the data channel that every subscriber transport carries from its
/// first offer. It keeps an application section in the bundle, so that stopping every
/// media section never leaves an offer without one, and later data tracks need no
/// renegotiation. Nothing is sent on it.
pub const CONTROL_CHANNEL: &str = "confer";

/// How a transport that was up is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Connected, or not connected yet (then [`CONNECT_TIMEOUT`] applies).
    Up,
    /// No consent checks since then.
    Disconnected(Instant),
    /// A path being checked again (an ICE restart) since then.
    Rechecking(Instant),
}

pub struct Transport {
    pub id: TransportId,
    pub room: RoomId,
    pub participant: ParticipantId,
    pub rtc: Rtc,
    pub created: Instant,
    pub connected: bool,
    pub health: Health,
    /// When `rtc` wants `Input::Timeout` next, and whether on time.
    pub timer: Timer,
    /// The local ICE username fragment clients address it by.
    pub ufrag: String,
    /// Open data channels by label.
    pub channels: HashMap<String, ChannelId>,
    pub stats: Option<str0m::stats::PeerStats>,
    /// A test asked for the next input to this transport to panic.
    pub fault: bool,
    /// The NACK counts str0m last reported per stream.
    pub nacks: NackTally,
    pub side: Side,
}

/// Turns str0m's running NACK counts per stream into increments.
#[derive(Debug, Default)]
pub struct NackTally(HashMap<(Mid, Option<Rid>, bool), u64>);

impl NackTally {
    /// The increase since the last report of this stream (`egress`: sent by us).
    pub fn advance(&mut self, stream: (Mid, Option<Rid>, bool), total: u64) -> u64 {
        let last = self.0.insert(stream, total).unwrap_or(0);
        total.saturating_sub(last)
    }
}

/// What only one direction has.
pub enum Side {
    Publisher(Publishing),
    Subscriber(Box<Subscribing>),
}

/// A publisher transport's state: the tracks it receives.
#[derive(Default)]
pub struct Publishing {
    pub producers: Vec<Producer>,
    /// The media section and layer of each SSRC received (learnt from str0m).
    streams: Vec<(Ssrc, Mid, Option<Rid>)>,
    /// When its packets were captured, from its sender reports.
    pub clock: CaptureClock,
}

impl Publishing {
    /// The media section and simulcast layer that packets of `ssrc` belong to.
    pub fn stream_of(&mut self, rtc: &mut Rtc, ssrc: Ssrc) -> Option<(Mid, Option<Rid>)> {
        if let Some((_, mid, rid)) = self.streams.iter().find(|(s, ..)| *s == ssrc) {
            return Some((*mid, *rid));
        }
        let mut api = rtc.direct_api();
        let stream = api.stream_rx(&ssrc)?;
        let (mid, rid) = (stream.mid(), stream.rid());
        self.streams.push((ssrc, mid, rid));
        Some((mid, rid))
    }

    /// After a renegotiation, SSRCs are looked up afresh.
    pub fn forget_streams(&mut self) {
        self.streams.clear();
    }

    /// The media track received on the media section `mid`.
    pub fn producer_mut(&mut self, mid: Mid) -> Option<&mut Producer> {
        self.producers.iter_mut().find(|t| t.mid == mid && t.kind != TrackKind::Data)
    }
}

/// A subscriber transport's state: the tracks it sends, its negotiation and its path.
#[derive(Default)]
pub struct Subscribing {
    pub consumers: Vec<Consumer>,
    /// The offer awaiting the client's answer.
    pub pending: Option<SdpPendingOffer>,
    /// The latest TWCC bandwidth estimate, and the rate it probes toward.
    pub estimate_bps: Option<u64>,
    pub bwe_desired: u64,
    /// An ICE restart to include in the next offer.
    pub restart_ice: bool,
    /// The control channel is in an offer already.
    pub has_control_channel: bool,
    /// Congestion and backoff of its path.
    pub downlink: Downlink,
}

impl Transport {
    pub fn new(id: TransportId, room: RoomId, participant: ParticipantId, role: Role, rtc: Rtc, now: Instant) -> Self {
        let side = match role {
            Role::Publisher => Side::Publisher(Publishing::default()),
            Role::Subscriber => Side::Subscriber(Box::default()),
        };
        let mut t = Self {
            id,
            room,
            participant,
            rtc,
            created: now,
            connected: false,
            health: Health::Up,
            timer: Timer::new(now),
            ufrag: String::new(),
            channels: HashMap::new(),
            stats: None,
            fault: false,
            nacks: NackTally::default(),
            side,
        };
        t.ufrag = t.local_ufrag();
        t
    }

    /// The ICE username fragment the transport answers to now (an ICE restart changes it).
    pub fn local_ufrag(&mut self) -> String {
        self.rtc.direct_api().local_ice_credentials().ufrag
    }

    pub fn role(&self) -> Role {
        match self.side {
            Side::Publisher(_) => Role::Publisher,
            Side::Subscriber(_) => Role::Subscriber,
        }
    }

    pub fn label(&self) -> &'static str {
        self.role().label()
    }

    pub fn publishing(&self) -> Option<&Publishing> {
        match &self.side {
            Side::Publisher(p) => Some(p),
            Side::Subscriber(_) => None,
        }
    }

    pub fn publishing_mut(&mut self) -> Option<&mut Publishing> {
        match &mut self.side {
            Side::Publisher(p) => Some(p),
            Side::Subscriber(_) => None,
        }
    }

    pub fn subscribing(&self) -> Option<&Subscribing> {
        match &self.side {
            Side::Subscriber(s) => Some(s),
            Side::Publisher(_) => None,
        }
    }

    pub fn subscribing_mut(&mut self) -> Option<&mut Subscribing> {
        match &mut self.side {
            Side::Subscriber(s) => Some(s),
            Side::Publisher(_) => None,
        }
    }

    /// Whether the transport is to be given up: closed, never connected in time, or down
    /// for longer than its grace.
    pub fn is_dead(&self, now: Instant) -> bool {
        let waited = |since: Instant, grace: Duration| now.saturating_duration_since(since) > grace;
        !self.rtc.is_alive()
            || (!self.connected && waited(self.created, CONNECT_TIMEOUT))
            || match self.health {
                Health::Up => false,
                Health::Disconnected(since) => waited(since, DISCONNECTED_GRACE),
                Health::Rechecking(since) => waited(since, RECHECK_GRACE),
            }
    }
}
