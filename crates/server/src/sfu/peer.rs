//! One media connection: a `str0m::Rtc` and what flows through it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use confer_proto::track::{TrackId, TrackKind};
use confer_proto::{ParticipantId, RoomId};
use str0m::change::SdpPendingOffer;
use str0m::channel::ChannelId;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::Rtc;

use super::downlink::Downlink;
use super::forward::{LayerMeter, OutTrack};
use super::Wants;

/// Which way media flows on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The participant sends; the server receives.
    Publisher,
    /// The server sends; the participant receives.
    Subscriber,
}

/// A connection that has not completed ICE and DTLS by then is given up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a connection may stay disconnected (no ICE consent for 15 s, str0m's
/// ICE-lite rule) before it is given up. A client that comes back within it, by an ICE
/// restart or by nominating its path again, keeps its streams and subscriptions.
pub const DISCONNECTED_GRACE: Duration = Duration::from_secs(5);
/// How long an ICE restart (or a path being checked again) may take to succeed.
pub const RECHECK_GRACE: Duration = Duration::from_secs(15);

/// The label of the data channel that every subscriber connection carries from its
/// first offer. It keeps an application section in the bundle, so that stopping every
/// media section never leaves an offer without one, and later data tracks need no
/// renegotiation. Nothing is sent on it.
pub const CONTROL_CHANNEL: &str = "confer";

pub struct Peer {
    pub room: RoomId,
    pub participant: ParticipantId,
    pub role: Role,
    pub rtc: Rtc,
    pub created: Instant,
    pub connected: bool,
    /// When `rtc` wants `Input::Timeout` next.
    pub deadline: Instant,
    /// Publisher: the tracks received.
    pub inputs: Vec<InTrack>,
    /// Subscriber: the tracks sent.
    pub outputs: Vec<OutTrack>,
    /// Subscriber: the offer awaiting the client's answer.
    pub pending: Option<SdpPendingOffer>,
    /// Subscriber: the latest TWCC bandwidth estimate, and the rate it probes toward.
    pub estimate_bps: Option<u64>,
    pub bwe_desired: u64,
    pub stats: Option<str0m::stats::PeerStats>,
    /// Once connected: since when ICE has been neither connected nor completed, and
    /// whether it is disconnected (rather than checking a path again).
    pub unhealthy_since: Option<(Instant, bool)>,
    /// Open data channels by label.
    pub channels: HashMap<String, ChannelId>,
    /// Subscriber: an ICE restart to include in the next offer.
    pub restart_ice: bool,
    /// Subscriber: the control channel is in an offer already.
    pub has_control_channel: bool,
    /// Subscriber: congestion and backoff of its path.
    pub downlink: Downlink,
    /// A test asked for the next input to this connection to panic.
    pub fault: bool,
}

impl Peer {
    pub fn new(room: RoomId, participant: ParticipantId, role: Role, rtc: Rtc, now: Instant) -> Self {
        Self {
            room,
            participant,
            role,
            rtc,
            created: now,
            connected: false,
            deadline: now,
            inputs: Vec::new(),
            outputs: Vec::new(),
            pending: None,
            estimate_bps: None,
            bwe_desired: 0,
            stats: None,
            unhealthy_since: None,
            channels: HashMap::new(),
            restart_ice: false,
            has_control_channel: false,
            downlink: Downlink::default(),
            fault: false,
        }
    }

    /// The media track received on the media section `mid`.
    pub fn input_mut(&mut self, mid: Mid) -> Option<&mut InTrack> {
        self.inputs.iter_mut().find(|t| t.mid == mid && t.kind != TrackKind::Data)
    }

    /// Whether a connection that was up has been down too long to wait for.
    pub fn gave_out(&self, now: Instant) -> bool {
        self.unhealthy_since.is_some_and(|(since, disconnected)| {
            let grace = if disconnected { DISCONNECTED_GRACE } else { RECHECK_GRACE };
            now.saturating_duration_since(since) > grace
        })
    }

    pub fn label(&self) -> &'static str {
        match self.role {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        }
    }
}

/// A track arriving on a publisher connection.
pub struct InTrack {
    pub track_id: TrackId,
    pub mid: Mid,
    pub kind: TrackKind,
    pub simulcast: bool,
    pub muted: bool,
    pub censored: bool,
    /// Per simulcast layer (or the single `None` layer): bitrate and liveness.
    pub layers: Vec<LayerMeter>,
    /// Last keyframe request sent to the publisher, per layer, to coalesce them.
    pub keyframe_requested: Vec<(Option<Rid>, Instant)>,
    /// The last RFC 6464 audio level seen: -dBov (0 loudest, 127 silence), voice flag, when.
    pub audio_level: Option<(i8, Option<bool>, Instant)>,
    /// Data track: the label of its data channel, and the channel once open.
    pub label: Option<String>,
    pub channel: Option<ChannelId>,
    /// Video: NACKs are enabled for these layers already (see `Router::forward`).
    pub nack_enabled: Vec<Option<Rid>>,
}

/// Keyframe requests to a publisher for one layer are sent at most this often; requests
/// from many subscribers in between are answered by the same keyframe.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

impl InTrack {
    pub fn new(track_id: TrackId, mid: Mid, kind: TrackKind, simulcast: bool, muted: bool) -> Self {
        Self {
            track_id,
            mid,
            kind,
            simulcast,
            muted,
            censored: false,
            layers: Vec::new(),
            keyframe_requested: Vec::new(),
            audio_level: None,
            label: None,
            channel: None,
            nack_enabled: Vec::new(),
        }
    }

    /// A data track carried by the publisher's data channel `label`.
    pub fn data(track_id: TrackId, label: String, channel: Option<ChannelId>) -> Self {
        let mut t = Self::new(track_id, Mid::from("data"), TrackKind::Data, false, false);
        t.label = Some(label);
        t.channel = channel;
        t
    }

    pub fn flowing(&self) -> bool {
        !self.muted && !self.censored
    }

    pub fn meter(&mut self, rid: Option<Rid>) -> &mut LayerMeter {
        if let Some(i) = self.layers.iter().position(|l| l.rid == rid) {
            return &mut self.layers[i];
        }
        self.layers.push(LayerMeter::new(rid));
        self.layers.last_mut().expect("just pushed")
    }

    /// Whether a keyframe request for `rid` may go out now (and records it if so).
    pub fn take_keyframe_slot(&mut self, rid: Option<Rid>, now: Instant) -> bool {
        match self.keyframe_requested.iter_mut().find(|(r, _)| *r == rid) {
            Some((_, at)) if now.saturating_duration_since(*at) < KEYFRAME_REQUEST_INTERVAL => false,
            Some((_, at)) => {
                *at = now;
                true
            }
            None => {
                self.keyframe_requested.push((rid, now));
                true
            }
        }
    }
}

pub fn media_kind(kind: TrackKind) -> MediaKind {
    match kind {
        TrackKind::Audio => MediaKind::Audio,
        // Data tracks never get a media section.
        TrackKind::Video | TrackKind::Data => MediaKind::Video,
    }
}

/// Whether a subscription's wishes let a track of this kind flow.
pub fn wanted(wants: &Wants, kind: TrackKind) -> bool {
    match kind {
        TrackKind::Audio => wants.audio,
        TrackKind::Video => wants.video,
        TrackKind::Data => true,
    }
}
