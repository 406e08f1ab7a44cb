//! A producer: one track a publisher sends, as the SFU receives it.
//!
//! It meters each simulcast layer (bitrate and liveness, which layer choice reads),
//! remembers the latest audio level, and coalesces keyframe requests: however many
//! subscribers ask, the publisher hears at most one request per layer per
//! [`KEYFRAME_REQUEST_INTERVAL`], and the one keyframe it sends serves them all.

use std::time::{Duration, Instant};

use confer_proto::track::{Quality, TrackId, TrackKind};
use str0m::channel::ChannelId;
use str0m::format::{detect_h264_keyframe, detect_h264_nalu, Codec, PayloadParams};
use str0m::media::{MediaKind, Mid, Rid};
use str0m::rtp::Vp8Descriptor;

/// A layer not seen for this long is taken as stopped by its publisher.
const LAYER_STALE: Duration = Duration::from_millis(1500);

/// A layer silent for [`PAUSED_FRAMES`] of its frame intervals (but at least
/// [`MIN_PAUSED`], at most [`MAX_PAUSED`]) while another layer of the same track still
/// comes is taken as paused by its publisher (browsers drop their top layers when their
/// bandwidth estimate falls, or when a new stream such as a screen share takes its
/// share), so that its subscribers move to a layer that flows: at 30 fps after a
/// quarter of a second rather than half.
const PAUSED_FRAMES: u32 = 6;
/// Well above a few frames an encoder under load skips on one layer (which would
/// otherwise send its subscribers down and up again, a keyframe each way).
const MIN_PAUSED: Duration = Duration::from_millis(250);
/// The lowest frame rates cameras send (7 fps: 140 ms a frame), or a layer whose rate
/// is not known yet.
const MAX_PAUSED: Duration = Duration::from_millis(500);

/// How recently another layer must have been seen for a silent one to count as paused
/// rather than the whole track being held up on the way.
const SIBLING_FRESH: Duration = Duration::from_millis(150);

/// Keyframe requests to a publisher for one layer are sent at most this often; requests
/// from many subscribers in between are answered by the same keyframe.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// Bitrate and liveness of one simulcast layer of a producer.
#[derive(Debug, Clone)]
pub struct LayerMeter {
    pub rid: Option<Rid>,
    pub last_seen: Option<Instant>,
    window_start: Option<Instant>,
    window_bytes: u64,
    /// Bits per second over the last full window.
    pub bitrate_bps: u64,
    /// The time between frames, smoothed (`None` until two have come).
    frame_interval: Option<Duration>,
    /// The newest frame: its RTP time (extended) and when its first packet came.
    last_frame: Option<(u64, Instant)>,
}

impl LayerMeter {
    pub fn new(rid: Option<Rid>) -> Self {
        Self {
            rid,
            last_seen: None,
            window_start: None,
            window_bytes: 0,
            bitrate_bps: 0,
            frame_interval: None,
            last_frame: None,
        }
    }

    /// A packet of `bytes` with RTP time `time` came. Returns whether it is the first
    /// of a new frame (a time later than any seen).
    pub fn observe(&mut self, bytes: usize, time: u64, now: Instant) -> bool {
        let new_frame = self.last_frame.is_none_or(|(t, _)| time > t);
        if new_frame {
            if let Some((_, at)) = self.last_frame {
                let gap = now.saturating_duration_since(at);
                // A gap of a second or more is a pause, not the frame rate.
                if gap < Duration::from_secs(1) {
                    self.frame_interval = Some(match self.frame_interval {
                        Some(interval) => (interval * 7 + gap) / 8,
                        None => gap,
                    });
                }
            }
            self.last_frame = Some((time, now));
        }
        self.last_seen = Some(now);
        let start = *self.window_start.get_or_insert(now);
        self.window_bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_secs(1) {
            self.bitrate_bps = self.window_bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
        new_frame
    }

    /// Whether the publisher sends this layer now: seen within [`LAYER_STALE`], and not
    /// silent for [`PAUSED_FRAMES`] frames while a sibling layer (of `layers`) keeps
    /// coming.
    pub fn live(&self, layers: &[LayerMeter], now: Instant) -> bool {
        let Some(seen) = self.last_seen else { return false };
        let silent = now.saturating_duration_since(seen);
        if silent >= LAYER_STALE {
            return false;
        }
        let others_flow = layers
            .iter()
            .filter(|l| l.rid != self.rid)
            .any(|l| l.last_seen.is_some_and(|t| now.saturating_duration_since(t) < SIBLING_FRESH));
        silent < self.paused_after() || !others_flow
    }

    /// How long this layer may be silent, while a sibling comes, before it counts as paused.
    fn paused_after(&self) -> Duration {
        self.frame_interval.map_or(MAX_PAUSED, |i| (i * PAUSED_FRAMES).clamp(MIN_PAUSED, MAX_PAUSED))
    }

    pub fn quality(&self) -> Quality {
        self.rid.as_ref().and_then(|r| Quality::from_rid(r)).unwrap_or(Quality::High)
    }
}

/// The latest RFC 6464 audio level of a producer.
#[derive(Debug, Clone, Copy)]
pub struct HeardLevel {
    /// -dBov: 0 loudest, 127 silence.
    pub minus_dbov: i8,
    pub voice: Option<bool>,
    pub at: Instant,
}

/// One track received on a publisher transport.
#[derive(Debug)]
pub struct Producer {
    pub track_id: TrackId,
    pub mid: Mid,
    pub kind: TrackKind,
    pub simulcast: bool,
    pub muted: bool,
    pub censored: bool,
    /// Per simulcast layer (or the single `None` layer): bitrate and liveness.
    pub layers: Vec<LayerMeter>,
    /// Last keyframe request sent to the publisher, per layer, to coalesce them.
    keyframe_requested: Vec<(Option<Rid>, Instant)>,
    pub audio_level: Option<HeardLevel>,
    /// Data track: the label of its data channel, and the channel once open.
    pub label: Option<String>,
    pub channel: Option<ChannelId>,
    /// Video: NACKs are enabled for these layers already (see `Worker::forward`).
    pub nack_enabled: Vec<Option<Rid>>,
    /// The codec of the payload type last received (they seldom change).
    pub params: Option<PayloadParams>,
}

impl Producer {
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
            params: None,
        }
    }

    /// A data track carried by the publisher's data channel `label`.
    pub fn data(track_id: TrackId, label: String, channel: Option<ChannelId>) -> Self {
        let mut t = Self::new(track_id, Mid::from("data"), TrackKind::Data, false, false);
        t.label = Some(label);
        t.channel = channel;
        t
    }

    /// Neither muted by its publisher nor stopped by a moderator.
    pub fn flowing(&self) -> bool {
        !self.muted && !self.censored
    }

    pub fn meter(&mut self, rid: Option<Rid>) -> &mut LayerMeter {
        let i = match self.layers.iter().position(|l| l.rid == rid) {
            Some(i) => i,
            None => {
                self.layers.push(LayerMeter::new(rid));
                self.layers.len() - 1
            }
        };
        &mut self.layers[i]
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

/// H.264's sequence parameter set: libwebrtc sends it (and the picture parameter set)
/// ahead of every IDR picture, so a keyframe starts there.
const H264_SPS: u8 = 7;

/// Whether an RTP payload of `codec` begins a keyframe, so that a consumer may start
/// (or switch layers) with it. `vp8` is the payload's parsed descriptor; `new_frame`
/// says whether the packet is the first seen of its frame.
pub fn starts_keyframe(codec: Codec, payload: &[u8], vp8: Option<&Vp8Descriptor>, new_frame: bool) -> bool {
    match codec {
        Codec::Vp8 => vp8.is_some_and(|d| d.starts_keyframe(payload)),
        Codec::H264 => detect_h264_nalu(payload, H264_SPS) || (new_frame && detect_h264_keyframe(payload)),
        _ => false,
    }
}

pub fn media_kind(kind: TrackKind) -> MediaKind {
    match kind {
        TrackKind::Audio => MediaKind::Audio,
        // Data tracks never get a media section.
        TrackKind::Video | TrackKind::Data => MediaKind::Video,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyframe_starts_at_its_first_packet() {
        // VP8: S=1, partition 0, and the payload header's P bit clear.
        let vp8_key = [0x10, 0x00, 0x00];
        let vp8_delta = [0x10, 0x01, 0x00];
        let vp8_middle = [0x00, 0x00, 0x00];
        let vp8 = |p: &[u8]| starts_keyframe(Codec::Vp8, p, Vp8Descriptor::parse(p).ok().as_ref(), true);
        assert!(vp8(&vp8_key));
        assert!(!vp8(&vp8_delta));
        assert!(!vp8(&vp8_middle), "not the start of the partition");
        // H.264: a STAP-A with the SPS starts it; an IDR starts it only as the first
        // packet of its frame (else the parameter sets came before it).
        let stap_with_sps = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce];
        let idr_start = [0x7c, 0x85, 0x00];
        let idr_middle = [0x7c, 0x05, 0x00];
        assert!(starts_keyframe(Codec::H264, &stap_with_sps, None, true));
        assert!(starts_keyframe(Codec::H264, &idr_start, None, true));
        assert!(!starts_keyframe(Codec::H264, &idr_start, None, false));
        assert!(!starts_keyframe(Codec::H264, &idr_middle, None, true));
        assert!(!starts_keyframe(Codec::Opus, &vp8_key, None, true));
    }

    #[test]
    fn keyframe_requests_are_coalesced_per_layer() {
        let now = Instant::now();
        let mut p = Producer::new("v".into(), Mid::from("1"), TrackKind::Video, true, false);
        let (q, f): (Rid, Rid) = ("q".into(), "f".into());
        assert!(p.take_keyframe_slot(Some(q), now));
        assert!(!p.take_keyframe_slot(Some(q), now + Duration::from_millis(100)), "answered by the same keyframe");
        assert!(p.take_keyframe_slot(Some(f), now + Duration::from_millis(100)), "another layer is its own");
        assert!(p.take_keyframe_slot(Some(q), now + KEYFRAME_REQUEST_INTERVAL));
    }

    #[test]
    fn a_layer_is_metered_per_second_and_goes_stale() {
        let t0 = Instant::now();
        let mut p = Producer::new("v".into(), Mid::from("1"), TrackKind::Video, false, false);
        for i in 0..=10 {
            p.meter(None).observe(1250, i, t0 + Duration::from_millis(100 * i));
        }
        let l = &p.layers[0];
        assert_eq!(l.bitrate_bps, 11 * 1250 * 8);
        assert!(l.live(&p.layers, t0 + Duration::from_secs(2)));
        assert!(!l.live(&p.layers, t0 + Duration::from_secs(3)));
    }

    /// A browser pauses its top layer (a screen share took its bandwidth): the layer
    /// counts as gone after six of its frames' time while the others flow, but a pause
    /// of every layer at once (the network held up) is waited out to the full staleness.
    #[test]
    fn a_paused_layer_is_noticed_while_its_siblings_flow() {
        let t0 = Instant::now();
        let mut p = Producer::new("v".into(), Mid::from("1"), TrackKind::Video, true, false);
        let (h, f): (Rid, Rid) = ("h".into(), "f".into());
        for i in 0..=10 {
            p.meter(Some(h)).observe(800, i, t0 + Duration::from_millis(100 * i));
            p.meter(Some(f)).observe(1200, i, t0 + Duration::from_millis(100 * i));
        }
        // f stops at 1 s; h goes on.
        for i in 11..=20 {
            p.meter(Some(h)).observe(800, i, t0 + Duration::from_millis(100 * i));
        }
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let layer = |rid: Rid| p.layers.iter().find(|l| l.rid == Some(rid)).unwrap();
        // 10 fps: paused after half a second (six frames would be 600 ms).
        assert!(layer(f).live(&p.layers, at(1450)), "a moment's silence is not a pause");
        assert!(!layer(f).live(&p.layers, at(1550)), "f is paused while h flows");
        assert!(layer(h).live(&p.layers, at(2000)));
        // Everything silent from 2 s: held up, not paused, until the staleness limit.
        assert!(layer(h).live(&p.layers, at(3000)));
        assert!(!layer(h).live(&p.layers, at(3600)));
    }

    #[test]
    fn how_long_a_pause_takes_to_notice_follows_the_frame_rate() {
        let t0 = Instant::now();
        let ms = |n: u64| Duration::from_millis(n);
        let (h, f): (Rid, Rid) = ("h".into(), "f".into());
        // f comes at `fps` for a second and stops; h goes on. When f's last frame came.
        let stopped = |fps: u64| {
            let mut p = Producer::new("v".into(), Mid::from("1"), TrackKind::Video, true, false);
            for i in 0..fps {
                p.meter(Some(f)).observe(1200, i, t0 + ms(i * 1000 / fps));
            }
            let last = t0 + ms((fps - 1) * 1000 / fps);
            for i in 1..=60 {
                p.meter(Some(h)).observe(800, i, last + ms(10 * i));
            }
            (p, last)
        };
        let f_live =
            |p: &Producer, at: Instant| p.layers.iter().find(|l| l.rid == Some(f)).unwrap().live(&p.layers, at);
        // 30 fps: six frames are 200 ms; a quarter of a second is the least.
        let (p, last) = stopped(30);
        assert!(f_live(&p, last + ms(240)));
        assert!(!f_live(&p, last + ms(260)), "paused after a quarter of a second");
        // 15 fps: six frames, 400 ms.
        let (p, last) = stopped(15);
        assert!(f_live(&p, last + ms(380)));
        assert!(!f_live(&p, last + ms(420)));
        // 5 fps: six frames would be 1.2 s; half a second is the most.
        let (p, last) = stopped(5);
        assert!(f_live(&p, last + ms(450)));
        assert!(!f_live(&p, last + ms(550)));
    }
}
