//! A consumer: one producer's track as sent to one subscriber, with its layer choice,
//! keyframe gating and RTP-time rebase.
//!
//! A [`Consumer`] follows its producer's frames and decides, frame by frame, which
//! to pass on. Every start (a new subscription, unmute, uncensor, recovery from loss)
//! and every simulcast layer switch happens on a keyframe, so the subscriber's decoder
//! never sees a frame whose references it lacks. Sequence numbers and SSRCs of the
//! outgoing stream are str0m's own; the RTP time is rebased at every switch so that it
//! keeps advancing with the wall clock across layers and sources.

use std::time::Instant;

use confer_proto::track::{Quality, TrackId, TrackKind};
use confer_proto::ParticipantId;
use str0m::channel::ChannelId;
use str0m::media::{MediaTime, Mid, Rid};

use super::producer::LayerMeter;
use super::Wants;

/// Switching up needs the new layer's rate plus this share (percent) of it.
pub const UPGRADE_HEADROOM: u64 = 125;

/// Negotiation state of an outgoing track's media section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// Needs a media section in the next offer.
    ToOpen,
    /// In an offer not yet answered.
    Negotiating(Mid),
    Open(Mid),
    /// Its media section is to be stopped in the next offer.
    ToStop(Mid),
    NegotiatingStop(Mid),
    /// A data track, on this data channel of the subscriber connection (writable once
    /// the channel is open).
    Channel(ChannelId),
}

/// One producer's track as sent to one subscriber.
#[derive(Debug)]
pub struct Consumer {
    pub track_id: TrackId,
    pub kind: TrackKind,
    pub publisher: ParticipantId,
    pub key: String,
    pub state: OutState,
    pub wants: Wants,
    /// The layer being forwarded (`None` for a track without simulcast).
    pub current: Option<Rid>,
    /// The layer to switch to at its next keyframe.
    pub target: Option<Rid>,
    /// Nothing is forwarded until a keyframe (of `target`) arrives.
    pub needs_keyframe: bool,
    time: TimeRebase,
}

impl Consumer {
    pub fn new(track_id: TrackId, kind: TrackKind, publisher: ParticipantId, key: String, wants: Wants) -> Self {
        Self {
            track_id,
            kind,
            publisher,
            key,
            state: OutState::ToOpen,
            wants,
            current: None,
            target: None,
            needs_keyframe: kind == TrackKind::Video,
            time: TimeRebase::default(),
        }
    }

    pub fn open_mid(&self) -> Option<Mid> {
        match self.state {
            OutState::Open(m) => Some(m),
            _ => None,
        }
    }

    pub fn is_video(&self) -> bool {
        self.kind == TrackKind::Video
    }

    /// Whether the subscription's wishes let it flow.
    pub fn is_wanted(&self) -> bool {
        wanted(&self.wants, self.kind)
    }

    /// Starts over at the next keyframe (after a pause, or loss upstream).
    pub fn restart(&mut self) {
        if self.is_video() {
            self.needs_keyframe = true;
            self.target = self.current.or(self.target);
        }
    }

    /// The bitrate of what this subscriber would receive with bandwidth to spare: the
    /// best live layer at or below the requested quality (or the one stream there is).
    pub fn preferred_bitrate(&self, layers: &[LayerMeter], now: Instant) -> u64 {
        layers
            .iter()
            .filter(|l| {
                l.live(layers, now)
                    && l.rid.as_ref().and_then(|r| Quality::from_rid(r)).is_none_or(|q| q <= self.wants.quality)
            })
            .map(|l| l.bitrate_bps)
            .max()
            .unwrap_or(0)
    }

    /// The bitrate of the layer being forwarded now (0 before the first frame).
    pub fn current_bitrate(&self, layers: &[LayerMeter]) -> u64 {
        if self.needs_keyframe {
            return 0;
        }
        layers.iter().find(|l| l.rid == self.current).map_or(0, |l| l.bitrate_bps)
    }

    /// Chooses the layer to receive from the live layers of a simulcast source: the
    /// best one at or below the requested quality that fits `budget_bps`, else the
    /// lowest live one. A layer above the current one must fit with
    /// [`UPGRADE_HEADROOM`] to spare, so that an estimate near a layer's rate does not
    /// flip between two. Returns the layer if it differs from the current target (the
    /// caller then asks the publisher for a keyframe of it).
    pub fn choose_layer(&mut self, layers: &[LayerMeter], budget_bps: Option<u64>, now: Instant) -> Option<Rid> {
        let mut live: Vec<&LayerMeter> = layers.iter().filter(|l| l.live(layers, now) && l.rid.is_some()).collect();
        if live.is_empty() {
            return None;
        }
        live.sort_by_key(|l| std::cmp::Reverse(l.quality()));
        let current = self.current.as_ref().and_then(|r| Quality::from_rid(r));
        let cap = self.wants.quality;
        let fits = |l: &&LayerMeter| {
            let need = if current.is_some_and(|c| l.quality() > c) {
                l.bitrate_bps * UPGRADE_HEADROOM / 100
            } else {
                l.bitrate_bps
            };
            budget_bps.is_none_or(|b| need <= b)
        };
        let choice = live.iter().find(|l| l.quality() <= cap && fits(l)).or_else(|| live.last()).map(|l| l.rid)?;
        if choice != self.target {
            self.target = choice;
            if self.current != self.target {
                return choice;
            }
        }
        None
    }

    /// Whether a frame of `rid` (keyframe or not) is passed on, switching layers on a
    /// keyframe of the target. Returns the RTP time to send it with.
    pub fn accept(
        &mut self,
        rid: Option<&Rid>,
        keyframe: bool,
        time: MediaTime,
        network_time: Instant,
    ) -> Option<MediaTime> {
        if self.is_video() {
            let is_target = rid == self.target.as_ref() || (self.target.is_none() && rid.is_none());
            let is_current = rid == self.current.as_ref() || (self.current.is_none() && rid.is_none());
            if keyframe && is_target && (self.needs_keyframe || !is_current) {
                if !is_current {
                    self.time.rebase();
                }
                self.current = rid.cloned();
                self.needs_keyframe = false;
            } else if self.needs_keyframe || !is_current {
                return None;
            }
        }
        Some(self.time.map(time, network_time))
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

/// Maps a source's RTP time onto the outgoing track's, continuous across rebases.
#[derive(Debug, Default)]
struct TimeRebase {
    offset: u64,
    /// The last time sent, and the source's wall-clock arrival of that frame.
    last: Option<(MediaTime, Instant)>,
    pending_rebase: bool,
}

impl TimeRebase {
    /// The next frame comes from a different clock: continue from the last one sent.
    fn rebase(&mut self) {
        self.pending_rebase = true;
    }

    fn map(&mut self, time: MediaTime, network_time: Instant) -> MediaTime {
        let freq = time.frequency();
        if std::mem::take(&mut self.pending_rebase) {
            if let Some((last, at)) = self.last {
                let elapsed = network_time.saturating_duration_since(at);
                let step = (MediaTime::from(elapsed).rebase(freq).numer()).max(1);
                let want = last.numer().wrapping_add(step);
                self.offset = want.wrapping_sub(time.numer());
            }
        }
        let out = MediaTime::new(time.numer().wrapping_add(self.offset), freq);
        self.last = Some((out, network_time));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use str0m::media::Frequency;

    fn wants(quality: Quality) -> Wants {
        Wants { audio: true, video: true, quality }
    }

    fn live_layers(now: Instant) -> Vec<LayerMeter> {
        ["q", "h", "f"]
            .iter()
            .zip([150_000, 500_000, 1_500_000])
            .map(|(rid, bps)| {
                let mut l = LayerMeter::new(Some((*rid).into()));
                l.last_seen = Some(now);
                l.bitrate_bps = bps;
                l
            })
            .collect()
    }

    fn track(quality: Quality) -> Consumer {
        Consumer::new("t".into(), TrackKind::Video, "p".into(), "main".into(), wants(quality))
    }

    #[test]
    fn layer_follows_quality_and_budget() {
        let now = Instant::now();
        let layers = live_layers(now);
        let mut t = track(Quality::Low);
        assert_eq!(t.choose_layer(&layers, None, now), Some("q".into()));
        t.wants.quality = Quality::High;
        assert_eq!(t.choose_layer(&layers, None, now), Some("f".into()));
        // A cap below the full layer's rate selects the half layer.
        assert_eq!(t.choose_layer(&layers, Some(800_000), now), Some("h".into()));
        // Nothing fits: the lowest live layer.
        assert_eq!(t.choose_layer(&layers, Some(10_000), now), Some("q".into()));
        // Unchanged target: nothing to request.
        assert_eq!(t.choose_layer(&layers, Some(10_000), now), None);
    }

    #[test]
    fn switching_up_needs_headroom() {
        let now = Instant::now();
        let layers = live_layers(now);
        let mut t = track(Quality::Medium);
        t.choose_layer(&layers, None, now);
        let h: Rid = "h".into();
        assert!(t.accept(Some(&h), true, MediaTime::new(0, str0m::media::Frequency::NINETY_KHZ), now).is_some());
        t.wants.quality = Quality::High;
        // 1.6 Mbps carries the full layer (1.5) but not with headroom: stay on h.
        assert_eq!(t.choose_layer(&layers, Some(1_600_000), now), None);
        assert_eq!(t.target, Some(h));
        assert_eq!(t.choose_layer(&layers, Some(2_000_000), now), Some("f".into()));
    }

    #[test]
    fn switches_only_on_a_keyframe_of_the_target() {
        let now = Instant::now();
        let freq = Frequency::NINETY_KHZ;
        let mut t = track(Quality::Low);
        t.choose_layer(&live_layers(now), None, now);
        let q: Rid = "q".into();
        let f: Rid = "f".into();
        // Delta frames before the first keyframe are held back.
        assert!(t.accept(Some(&q), false, MediaTime::new(1000, freq), now).is_none());
        let first = t.accept(Some(&q), true, MediaTime::new(3000, freq), now).unwrap();
        assert_eq!(first.numer(), 3000);
        assert!(t.accept(Some(&f), true, MediaTime::new(777_000, freq), now).is_none(), "not the target");
        t.wants.quality = Quality::High;
        t.choose_layer(&live_layers(now), None, now);
        // Until f's keyframe, q still flows; f's delta frames do not.
        assert!(t.accept(Some(&q), false, MediaTime::new(6000, freq), now).is_some());
        assert!(t.accept(Some(&f), false, MediaTime::new(780_000, freq), now).is_none());
        let later = now + Duration::from_millis(33);
        let switched = t.accept(Some(&f), true, MediaTime::new(783_000, freq), later).unwrap();
        // Continues from the last q frame (6000) by the wall-clock gap (33 ms = 2970).
        assert_eq!(switched.numer(), 6000 + 2970);
        assert!(t.accept(Some(&q), false, MediaTime::new(9000, freq), later).is_none(), "old layer dropped");
        let next = t.accept(Some(&f), false, MediaTime::new(786_000, freq), later).unwrap();
        assert_eq!(next.numer(), 6000 + 2970 + 3000);
    }

    #[test]
    fn audio_flows_without_keyframes() {
        let now = Instant::now();
        let mut t = Consumer::new("a".into(), TrackKind::Audio, "p".into(), "main".into(), wants(Quality::High));
        let out = t.accept(None, false, MediaTime::new(960, Frequency::FORTY_EIGHT_KHZ), now).unwrap();
        assert_eq!(out.numer(), 960);
    }
}
