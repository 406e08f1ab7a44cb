//! Track and stream vocabulary: grants, room policy, publications and subscriptions.
//!
//! A participant publishes *streams*, each named by a `key` it chooses (`"main"`,
//! `"screen"`), each holding up to one audio and one video track (plus data tracks). The
//! server gives every published track a [`TrackId`]. Others subscribe to a stream by its
//! publisher and key, choosing whether they want its audio, its video, and which
//! simulcast [`Quality`].

use serde::{Deserialize, Serialize};

use crate::ids::string_id;
use crate::ParticipantId;

string_id!(
    /// A published track's id, assigned by the server (`TR_...`).
    TrackId
);

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
    Data,
}

/// Where a track's media comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Microphone,
    Camera,
    ScreenShare,
    ScreenShareAudio,
}

impl TrackSource {
    pub const ALL: [TrackSource; 4] =
        [TrackSource::Microphone, TrackSource::Camera, TrackSource::ScreenShare, TrackSource::ScreenShareAudio];

    pub fn kind(self) -> TrackKind {
        match self {
            TrackSource::Microphone | TrackSource::ScreenShareAudio => TrackKind::Audio,
            TrackSource::Camera | TrackSource::ScreenShare => TrackKind::Video,
        }
    }
}

/// A simulcast layer, as a subscriber asks for it. Publishers send up to three layers
/// with the RTP stream ids `q` (quarter resolution), `h` (half) and `f` (full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Low,
    Medium,
    #[default]
    High,
}

impl Quality {
    /// The RTP stream id (`rid`) of this layer.
    pub fn rid(self) -> &'static str {
        match self {
            Quality::Low => "q",
            Quality::Medium => "h",
            Quality::High => "f",
        }
    }

    pub fn from_rid(rid: &str) -> Option<Quality> {
        match rid {
            "q" => Some(Quality::Low),
            "h" => Some(Quality::Medium),
            "f" => Some(Quality::High),
            _ => None,
        }
    }

    /// The layer below this one, if any.
    pub fn lower(self) -> Option<Quality> {
        match self {
            Quality::High => Some(Quality::Medium),
            Quality::Medium => Some(Quality::Low),
            Quality::Low => None,
        }
    }
}

/// One track of a `publish` request: which m-line of the publisher's offer carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishTrack {
    /// The `a=mid` of the offer's media section; for a data track, the data channel's label.
    pub mid: String,
    pub source: Option<TrackSource>,
    pub kind: TrackKind,
    /// Whether the video is sent as three simulcast layers (`q`, `h`, `f`).
    #[serde(default)]
    pub simulcast: bool,
    /// Start muted (the others see the track disabled).
    #[serde(default)]
    pub muted: bool,
}

/// A published track as everyone sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub id: TrackId,
    pub kind: TrackKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TrackSource>,
    /// The codec's MIME subtype (`VP8`, `H264`, `opus`) once the offer is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// The publisher's `mid` for this track, as its `publish` named it (the media
    /// section, or a data track's channel label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    pub simulcast: bool,
    /// Disabled by its publisher.
    pub muted: bool,
    /// Stopped by a moderator.
    pub censored: bool,
}

/// A published stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub key: String,
    pub tracks: Vec<TrackInfo>,
}

impl StreamInfo {
    pub fn track(&self, id: &TrackId) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| &t.id == id)
    }
}

/// What a subscriber wants of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionOptions {
    #[serde(default = "yes")]
    pub audio: bool,
    #[serde(default = "yes")]
    pub video: bool,
    #[serde(default)]
    pub quality: Quality,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self { audio: true, video: true, quality: Quality::High }
    }
}

fn yes() -> bool {
    true
}

/// A track of a started subscription: where it arrives on the subscriber connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribedTrack {
    pub track_id: TrackId,
    pub kind: TrackKind,
    /// The `a=mid` of its media section in the server's offer (the data channel label for
    /// a data track).
    pub mid: String,
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionEndReason {
    /// The subscriber asked.
    Unsubscribed,
    /// The publisher unpublished the stream or left.
    Unpublished,
    /// The subscriber's media connection failed.
    MediaFailed,
}

/// One participant's audio level, in `audio_activity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioLevel {
    pub participant_id: ParticipantId,
    pub track_id: TrackId,
    /// 0.0 (silence, -127 dBov) to 1.0 (0 dBov), linear in amplitude.
    pub level: f32,
    /// The publisher's voice-activity flag, when it sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<bool>,
}

/// Connection quality of one participant's media, in `network_metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkMetrics {
    pub participant_id: ParticipantId,
    /// Round-trip time to the server, from RTCP, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Share of its packets lost on the way to the server (0.0 to 1.0).
    pub publish_loss: f32,
    /// Share of packets to it lost on the way from the server (0.0 to 1.0).
    pub subscribe_loss: f32,
    /// The server's bandwidth estimate toward it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downlink_bps: Option<u64>,
    /// 1 (bad) to 5 (excellent).
    pub score: u8,
}
