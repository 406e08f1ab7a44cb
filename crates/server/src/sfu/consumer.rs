//! A consumer: one producer's track as sent to one subscriber, with its layer choice,
//! keyframe gating and rewriting of what identifies a packet in its stream.
//!
//! A [`Consumer`] follows its producer's RTP packets and decides, packet by packet,
//! which to pass on, as they come (a lost one is the subscriber's to ask for again, not
//! a reason to hold the rest). Every start (a new subscription, unmute, uncensor) and
//! every simulcast layer switch happens on the first packet of a keyframe, so the
//! subscriber's decoder never sees a frame whose references it lacks. A start begins
//! an *epoch*: from there the packets' sequence numbers, RTP times and VP8 picture
//! numbers are offset to continue the outgoing stream's, so the subscriber sees one
//! unbroken stream across layers and pauses (its SSRC is the outgoing stream's own).

use std::time::Instant;

use confer_proto::track::{Quality, TrackId, TrackKind};
use confer_proto::ParticipantId;
use str0m::channel::ChannelId;
use str0m::media::{MediaTime, Mid, Pt, Rid};
use str0m::rtp::{SeqNo, Vp8Descriptor, Vp8Patch};

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
    /// Audio: the next packet begins an epoch.
    resync: bool,
    /// The payload type last forwarded, and the subscriber's for the same codec.
    pub payload_type: Option<(Pt, Pt)>,
    seq: SeqRebase,
    time: TimeRebase,
    pictures: PictureRebase,
}

/// One RTP packet of a producer, as its consumers see it.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// The simulcast layer it belongs to.
    pub rid: Option<&'a Rid>,
    /// Whether it begins a keyframe.
    pub keyframe: bool,
    /// Its sequence number and RTP time in the layer's stream (extended).
    pub seq: SeqNo,
    pub time: MediaTime,
    /// When it was captured, on the server's clock (its arrival while the publisher's
    /// sender reports have not said).
    pub wallclock: Instant,
    /// VP8: its payload descriptor, and whether the picture number is 15 bits long.
    pub vp8: Option<(&'a Vp8Descriptor, bool)>,
}

/// Where a consumer puts a packet in its outgoing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub seq: SeqNo,
    pub time: u32,
    /// VP8: the rewrite of the picture numbers, if they change.
    pub vp8: Option<Vp8Patch>,
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
            resync: true,
            payload_type: None,
            seq: SeqRebase::default(),
            time: TimeRebase::default(),
            pictures: PictureRebase::default(),
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

    /// Starts over, at the next keyframe for video (after a pause, or a failed write).
    pub fn restart(&mut self) {
        if self.is_video() {
            self.needs_keyframe = true;
            self.target = self.current.or(self.target);
        }
        self.resync = true;
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

    /// Whether packets of layer `rid` can be placed at all: cheaper than [`Self::accept`]
    /// for the simulcast layers it does not take (only the target and the current
    /// layer can be placed; any packet of audio can).
    pub fn takes_layer(&self, rid: Option<&Rid>) -> bool {
        !self.is_video() || rid == self.target.as_ref() || rid == self.current.as_ref()
    }

    /// Whether a packet is passed on, and where in the outgoing stream. Video switches
    /// layers on the first packet of a keyframe of the target.
    pub fn accept(&mut self, packet: &Packet<'_>) -> Option<Placement> {
        let starts = if self.is_video() {
            let rid = packet.rid;
            let is_target = rid == self.target.as_ref();
            let is_current = rid == self.current.as_ref();
            if packet.keyframe && is_target && (self.needs_keyframe || !is_current) {
                if !is_current {
                    self.time.rebase();
                }
                self.current = rid.cloned();
                self.needs_keyframe = false;
                true
            } else if self.needs_keyframe || !is_current {
                return None;
            } else {
                false
            }
        } else {
            std::mem::take(&mut self.resync)
        };
        let (seq, newest) = self.seq.map(*packet.seq, starts)?;
        let time = self.time.map(packet.time, packet.wallclock, newest);
        let vp8 = packet.vp8.and_then(|(d, long)| self.pictures.map(d, long, starts, newest));
        Some(Placement { seq: seq.into(), time: time.numer() as u32, vp8 })
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

/// Maps a source's sequence numbers onto the outgoing stream's: each epoch continues
/// from the newest number sent, and packets older than its start are dropped (they
/// belong to what came before).
#[derive(Debug, Default)]
struct SeqRebase {
    offset: u64,
    /// The first source number of the epoch.
    start: u64,
    /// The newest number sent.
    newest: Option<u64>,
}

impl SeqRebase {
    /// The outgoing number of `seq`, and whether it is the newest yet.
    fn map(&mut self, seq: u64, starts: bool) -> Option<(u64, bool)> {
        if starts || self.newest.is_none() {
            // The first stream starts within the first 2^16 (the receiver's SRTP
            // rollover counter is 0).
            let next = self.newest.map_or(seq & 0xffff, |n| n + 1);
            self.offset = next.wrapping_sub(seq);
            self.start = seq;
        } else if seq < self.start {
            return None;
        }
        let out = seq.wrapping_add(self.offset);
        let newest = self.newest.is_none_or(|n| out > n);
        if newest {
            self.newest = Some(out);
        }
        Some((out, newest))
    }
}

/// Maps a source's RTP time onto the outgoing track's, continuous across rebases.
#[derive(Debug, Default)]
struct TimeRebase {
    offset: u64,
    /// The newest time sent, and that packet's wall clock.
    last: Option<(MediaTime, Instant)>,
    pending_rebase: bool,
}

impl TimeRebase {
    /// The next epoch comes from a different clock: continue from the last time sent.
    fn rebase(&mut self) {
        self.pending_rebase = true;
    }

    fn map(&mut self, time: MediaTime, wallclock: Instant, newest: bool) -> MediaTime {
        let freq = time.frequency();
        if std::mem::take(&mut self.pending_rebase) {
            if let Some((last, at)) = self.last {
                let elapsed = wallclock.saturating_duration_since(at);
                let step = (MediaTime::from(elapsed).rebase(freq).numer()).max(1);
                let want = last.numer().wrapping_add(step);
                self.offset = want.wrapping_sub(time.numer());
            }
        }
        let out = MediaTime::new(time.numer().wrapping_add(self.offset), freq);
        if newest {
            self.last = Some((out, wallclock));
        }
        out
    }
}

/// Maps a VP8 source's picture numbers (PictureID, and TL0PICIDX with temporal layers)
/// onto the outgoing stream's: each epoch continues from the last picture sent, as
/// libwebrtc's receiver expects of one stream (it orders frames by picture number).
#[derive(Debug, Default)]
struct PictureRebase {
    picture_offset: u16,
    tl0_offset: u8,
    /// The picture numbers of the newest packet sent.
    last: Option<(u16, Option<u8>)>,
}

impl PictureRebase {
    fn map(&mut self, d: &Vp8Descriptor, long: bool, starts: bool, newest: bool) -> Option<Vp8Patch> {
        let picture = d.picture_id()?;
        let tl0 = d.tl0_pic_idx();
        if starts {
            if let Some((last_picture, last_tl0)) = self.last {
                self.picture_offset = last_picture.wrapping_add(1).wrapping_sub(picture);
                if let (Some(last), Some(t)) = (last_tl0, tl0) {
                    self.tl0_offset = last.wrapping_add(1).wrapping_sub(t);
                }
            }
        }
        let mask = if long { 0x7fff } else { 0x7f };
        let out_picture = picture.wrapping_add(self.picture_offset) & mask;
        let out_tl0 = tl0.map(|t| t.wrapping_add(self.tl0_offset));
        if newest {
            let kept_tl0 = self.last.and_then(|(_, t)| t);
            self.last = Some((out_picture, out_tl0.or(kept_tl0)));
        }
        if out_picture == picture && out_tl0 == tl0 {
            return None;
        }
        let patch = d.patch().picture_id(out_picture);
        let patch = match out_tl0 {
            Some(t) => patch.tl0_pic_idx(t),
            None => patch,
        };
        patch.build().ok()
    }
}

/// Whether a VP8 payload's PictureID (which `d` says it has) takes 15 bits.
pub fn long_picture_id(payload: &[u8]) -> bool {
    // X, then I in the extension byte, then M in the PictureID's first byte.
    payload.len() > 2 && payload[0] & 0x80 != 0 && payload[1] & 0x80 != 0 && payload[2] & 0x80 != 0
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

    /// A packet of layer `rid`, the `seq`th of its stream, of the frame at `time`.
    fn packet(rid: Option<&Rid>, keyframe: bool, seq: u64, time: u64, at: Instant) -> Packet<'_> {
        let time = MediaTime::new(time, Frequency::NINETY_KHZ);
        Packet { rid, keyframe, seq: seq.into(), time, wallclock: at, vp8: None }
    }

    fn sent(p: Option<Placement>) -> (u64, u32) {
        let p = p.expect("forwarded");
        (*p.seq, p.time)
    }

    #[test]
    fn switching_up_needs_headroom() {
        let now = Instant::now();
        let layers = live_layers(now);
        let mut t = track(Quality::Medium);
        t.choose_layer(&layers, None, now);
        let h: Rid = "h".into();
        assert!(t.accept(&packet(Some(&h), true, 1, 0, now)).is_some());
        t.wants.quality = Quality::High;
        // 1.6 Mbps carries the full layer (1.5) but not with headroom: stay on h.
        assert_eq!(t.choose_layer(&layers, Some(1_600_000), now), None);
        assert_eq!(t.target, Some(h));
        assert_eq!(t.choose_layer(&layers, Some(2_000_000), now), Some("f".into()));
    }

    #[test]
    fn switches_only_on_a_keyframe_of_the_target_and_the_stream_stays_unbroken() {
        let now = Instant::now();
        let mut t = track(Quality::Low);
        t.choose_layer(&live_layers(now), None, now);
        let q: Rid = "q".into();
        let f: Rid = "f".into();
        // Delta frames before the first keyframe are held back.
        assert!(t.accept(&packet(Some(&q), false, 100, 1000, now)).is_none());
        // The keyframe starts the stream where its source is (within the first 2^16).
        assert_eq!(sent(t.accept(&packet(Some(&q), true, 70_101, 3000, now))), (70_101 - 65_536, 3000));
        assert_eq!(sent(t.accept(&packet(Some(&q), false, 70_102, 3000, now))), (4566, 3000));
        assert!(t.accept(&packet(Some(&f), true, 900, 777_000, now)).is_none(), "not the target");
        t.wants.quality = Quality::High;
        t.choose_layer(&live_layers(now), None, now);
        let h: Rid = "h".into();
        assert!(t.takes_layer(Some(&q)) && t.takes_layer(Some(&f)), "the current and the target layer");
        assert!(!t.takes_layer(Some(&h)), "no other layer");
        // Until f's keyframe, q still flows; f's delta frames do not.
        assert_eq!(sent(t.accept(&packet(Some(&q), false, 70_103, 6000, now))), (4567, 6000));
        assert!(t.accept(&packet(Some(&f), false, 901, 780_000, now)).is_none());
        let later = now + Duration::from_millis(33);
        // f's keyframe follows the last q packet in sequence, and in time by the
        // wall-clock gap (33 ms = 2970).
        assert_eq!(sent(t.accept(&packet(Some(&f), true, 905, 783_000, later))), (4568, 6000 + 2970));
        assert!(t.accept(&packet(Some(&q), false, 70_104, 9000, later)).is_none(), "old layer dropped");
        assert!(t.accept(&packet(Some(&f), false, 904, 780_000, later)).is_none(), "before the switch");
        // A packet repaired late keeps its place; the next frame follows on.
        assert_eq!(sent(t.accept(&packet(Some(&f), false, 907, 786_000, later))), (4570, 6000 + 2970 + 3000));
        assert_eq!(sent(t.accept(&packet(Some(&f), false, 906, 783_000, later))), (4569, 6000 + 2970));
    }

    #[test]
    fn a_restart_resumes_the_sequence_where_it_stopped() {
        let now = Instant::now();
        let mut t = track(Quality::High);
        assert_eq!(sent(t.accept(&packet(None, true, 10, 0, now))).0, 10);
        assert_eq!(sent(t.accept(&packet(None, false, 11, 0, now))).0, 11);
        t.restart();
        assert!(t.accept(&packet(None, false, 500, 90_000, now)).is_none(), "waits for a keyframe");
        // The same source: its clock goes on, its packets follow the last one sent.
        assert_eq!(sent(t.accept(&packet(None, true, 600, 93_000, now))), (12, 93_000));
    }

    #[test]
    fn vp8_picture_numbers_continue_across_a_layer_switch() {
        // X=1, S=1, PID 0; I=1, L=1, T=1; 15-bit PictureID; TL0PICIDX; TID/KEYIDX; a
        // keyframe's payload header (P=0).
        let payload =
            |picture: u16, tl0: u8| vec![0x90, 0xe0, 0x80 | (picture >> 8) as u8, picture as u8, tl0, 0x00, 0x00];
        let now = Instant::now();
        let mut t = track(Quality::Low);
        t.choose_layer(&live_layers(now), None, now);
        let (q, f): (Rid, Rid) = ("q".into(), "f".into());
        let send = |t: &mut Consumer, rid: &Rid, seq: u64, picture: u16, tl0: u8| {
            let bytes = payload(picture, tl0);
            let d = Vp8Descriptor::parse(&bytes).unwrap();
            assert!(long_picture_id(&bytes));
            let p = Packet { vp8: Some((&d, true)), ..packet(Some(rid), d.starts_keyframe(&bytes), seq, 0, now) };
            t.accept(&p).map(|placed| placed.vp8)
        };
        assert_eq!(send(&mut t, &q, 1, 300, 7), Some(None), "nothing to rewrite at first");
        t.wants.quality = Quality::High;
        t.choose_layer(&live_layers(now), None, now);
        let patched = send(&mut t, &f, 50, 9000, 200).unwrap().expect("f's numbers are rewritten");
        let expected = Vp8Descriptor::parse(&payload(9000, 200)).unwrap().patch().picture_id(301).tl0_pic_idx(8);
        assert_eq!(patched, expected.build().unwrap());
    }

    #[test]
    fn audio_flows_without_keyframes_and_resumes_in_sequence() {
        let now = Instant::now();
        let mut t = Consumer::new("a".into(), TrackKind::Audio, "p".into(), "main".into(), wants(Quality::High));
        let opus = |seq: u64, time: u64| Packet {
            rid: None,
            keyframe: false,
            seq: seq.into(),
            time: MediaTime::new(time, Frequency::FORTY_EIGHT_KHZ),
            wallclock: now,
            vp8: None,
        };
        assert_eq!(sent(t.accept(&opus(40, 960))), (40, 960));
        t.restart();
        assert_eq!(sent(t.accept(&opus(90, 50_000))), (41, 50_000));
    }
}
