//! A jitter buffer for one remote Opus stream: packets in as they arrive, 20 ms of
//! audio out whenever the speaker needs it.
//!
//! Packets are held in timestamp order until the buffered audio reaches a target delay
//! that follows the stream's measured arrival jitter (the 95th percentile over the last
//! few seconds, plus a frame). A missing packet is recovered from the FEC data of the
//! one after it, or concealed; late packets are dropped. When the buffer runs dry
//! (discontinuous transmission in silence, or a stall) playback stops and restarts on
//! the next packet, after buffering again. When it holds much more than the target (a
//! burst after a stall) frames are skipped so that latency comes back down.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::opus::{OpusDecoder, FRAME_SAMPLES};

const FRAME_MS: u64 = 20;
const MIN_TARGET_MS: u64 = 40;
const MAX_TARGET_MS: u64 = 300;
/// Buffered this much beyond the target, a frame is skipped.
const EXCESS_MS: u64 = 80;
/// Arrival delays remembered for the jitter estimate (about 4 s of 20 ms packets).
const DELAY_WINDOW: usize = 200;
/// Frames concealed after the buffer runs dry, to fade out rather than cut.
const TAIL_FRAMES: u32 = 2;

/// Counters a caller can report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub decoded: u64,
    pub recovered: u64,
    pub concealed: u64,
    pub late: u64,
    pub skipped: u64,
    pub underruns: u64,
}

pub struct JitterBuffer {
    decoder: OpusDecoder,
    /// Packets by unwrapped timestamp.
    packets: BTreeMap<u64, Vec<u8>>,
    /// Unwrapping of 32-bit RTP timestamps.
    last_ts: Option<(u32, u64)>,
    /// The timestamp of the next frame to play, while playing.
    next: Option<u64>,
    /// The end of what was played: anything older is late.
    played: Option<u64>,
    /// Arrival time minus media time (ms), of recent packets.
    delays: VecDeque<i64>,
    first_arrival: Option<Instant>,
    dry_frames: u32,
    pub stats: JitterStats,
}

impl JitterBuffer {
    pub fn new() -> Result<Self, crate::opus::OpusError> {
        Ok(Self {
            decoder: OpusDecoder::new()?,
            packets: BTreeMap::new(),
            last_ts: None,
            next: None,
            played: None,
            delays: VecDeque::new(),
            first_arrival: None,
            dry_frames: 0,
            stats: JitterStats::default(),
        })
    }

    fn unwrap(&mut self, ts: u32) -> u64 {
        let unwrapped = match self.last_ts {
            None => u64::from(ts) + (1 << 32),
            Some((last, last_unwrapped)) => {
                let diff = ts.wrapping_sub(last) as i32;
                (last_unwrapped as i64 + i64::from(diff)) as u64
            }
        };
        if self.last_ts.is_none_or(|(_, l)| unwrapped > l) {
            self.last_ts = Some((ts, unwrapped));
        }
        unwrapped
    }

    /// A packet arrived.
    pub fn push(&mut self, rtp_timestamp: u32, arrival: Instant, payload: Vec<u8>) {
        let ts = self.unwrap(rtp_timestamp);
        if self.played.is_some_and(|p| ts < p) {
            self.stats.late += 1;
            return;
        }
        let first = *self.first_arrival.get_or_insert(arrival);
        let arrival_ms = arrival.saturating_duration_since(first).as_millis() as i64;
        self.delays.push_back(arrival_ms - (ts / 48) as i64);
        if self.delays.len() > DELAY_WINDOW {
            self.delays.pop_front();
        }
        self.packets.insert(ts, payload);
    }

    /// The delay the buffer aims for: the spread of recent arrival delays (95th
    /// percentile above the fastest), plus a frame.
    pub fn target_ms(&self) -> u64 {
        let Some(&min) = self.delays.iter().min() else { return MIN_TARGET_MS };
        let mut spread: Vec<i64> = self.delays.iter().map(|d| d - min).collect();
        spread.sort_unstable();
        let p95 = spread[(spread.len() - 1) * 95 / 100].max(0) as u64;
        (p95 + FRAME_MS).clamp(MIN_TARGET_MS, MAX_TARGET_MS)
    }

    /// Audio buffered ahead of playback, ms.
    pub fn buffered_ms(&self) -> u64 {
        match (self.packets.first_key_value(), self.packets.last_key_value()) {
            (Some((&first, _)), Some((&last, _))) => {
                let from = self.next.unwrap_or(first).min(first);
                (last + FRAME_SAMPLES as u64 - from) / 48
            }
            _ => 0,
        }
    }

    /// The next 20 ms (960 samples at 48 kHz) to play: decoded, recovered, concealed or
    /// silence.
    pub fn pull(&mut self) -> Vec<i16> {
        if self.next.is_none() {
            if self.dry_frames > 0 && self.dry_frames <= TAIL_FRAMES {
                self.dry_frames += 1;
                return self.conceal();
            }
            match self.packets.first_key_value() {
                Some((&first, _)) if self.buffered_ms() >= self.target_ms() => self.next = Some(first),
                _ => return vec![0; FRAME_SAMPLES],
            }
        }
        let Some(mut next) = self.next else { return vec![0; FRAME_SAMPLES] };
        // Far ahead of the target: skip a frame to bring latency down.
        if self.buffered_ms() > self.target_ms() + EXCESS_MS && self.packets.len() > 1 {
            self.packets.remove(&next);
            next += FRAME_SAMPLES as u64;
            self.stats.skipped += 1;
        }
        self.next = Some(next + FRAME_SAMPLES as u64);
        self.played = self.next;
        if let Some(packet) = self.packets.remove(&next) {
            self.dry_frames = 0;
            return match self.decoder.decode(&packet) {
                Ok(pcm) => {
                    self.stats.decoded += 1;
                    fit(pcm)
                }
                Err(_) => self.conceal(),
            };
        }
        if self.packets.is_empty() {
            // Ran dry: stop, and start again after buffering.
            self.stats.underruns += 1;
            self.next = None;
            self.dry_frames = 1;
            return self.conceal();
        }
        let following = self.packets.get(&(next + FRAME_SAMPLES as u64)).cloned();
        match following {
            Some(p) => match self.decoder.recover(Some(&p)) {
                Ok(pcm) => {
                    self.stats.recovered += 1;
                    fit(pcm)
                }
                Err(_) => self.conceal(),
            },
            None => self.conceal(),
        }
    }

    fn conceal(&mut self) -> Vec<i16> {
        self.stats.concealed += 1;
        self.decoder.recover(None).map(fit).unwrap_or_else(|_| vec![0; FRAME_SAMPLES])
    }
}

/// Exactly one frame (a packet of another duration is cut or padded).
fn fit(mut pcm: Vec<i16>) -> Vec<i16> {
    pcm.resize(FRAME_SAMPLES, 0);
    pcm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opus::{OpusConfig, OpusEncoder, SAMPLE_RATE};
    use crate::tone::{dominant_frequency, ToneSource};
    use std::time::Duration;

    fn packets(n: usize) -> Vec<Vec<u8>> {
        let mut tone = ToneSource::new(440.0, SAMPLE_RATE);
        let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
        (0..n).map(|_| enc.encode(&tone.next_block(FRAME_SAMPLES)).unwrap()).collect()
    }

    #[test]
    fn reordered_and_lost_packets_still_play_the_tone() {
        let p = packets(100);
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        let mut out = Vec::new();
        // Timestamps start near the wrap; pairs arrive swapped, every 10th is lost.
        let base = u32::MAX - 20 * 960;
        let mut order: Vec<usize> = (0..100).collect();
        for pair in order.chunks_mut(2) {
            pair.swap(0, 1);
        }
        for (k, &i) in order.iter().enumerate() {
            if i % 10 != 7 {
                jb.push(base.wrapping_add(i as u32 * 960), t0 + Duration::from_millis(k as u64 * 20), p[i].clone());
            }
            out.extend(jb.pull());
        }
        assert!(jb.stats.recovered + jb.stats.concealed >= 9, "{:?}", jb.stats);
        assert_eq!(jb.stats.late, 0, "{:?}", jb.stats);
        let found = dominant_frequency(&out[out.len() - 9600..], SAMPLE_RATE).unwrap();
        assert!((found - 440.0).abs() < 3.0, "{found}");
    }

    #[test]
    fn jittery_arrival_raises_the_target_and_a_burst_is_caught_up() {
        let p = packets(200);
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        for (i, packet) in p.iter().enumerate().take(100) {
            // Every fifth packet 100 ms late.
            let late = if i % 5 == 0 { 100 } else { 0 };
            jb.push(i as u32 * 960, t0 + Duration::from_millis(i as u64 * 20 + late), packet.clone());
        }
        let target = jb.target_ms();
        assert!((100..=140).contains(&target), "target {target}");
        // 2 s arrived at once: playback skips until it is near the target again.
        for _ in 0..100 {
            jb.pull();
        }
        assert!(
            jb.stats.skipped > 0 && jb.buffered_ms() <= target + EXCESS_MS + 20,
            "{:?} {}",
            jb.stats,
            jb.buffered_ms()
        );
    }

    #[test]
    fn an_empty_buffer_plays_silence_then_restarts() {
        let p = packets(10);
        let mut jb = JitterBuffer::new().unwrap();
        assert!(jb.pull().iter().all(|&s| s == 0));
        let t0 = Instant::now();
        for (i, packet) in p.iter().enumerate() {
            jb.push(i as u32 * 960, t0 + Duration::from_millis(i as u64 * 20), packet.clone());
            jb.pull();
        }
        for _ in 0..10 {
            if jb.stats.underruns > 0 {
                break;
            }
            jb.pull();
        }
        assert_eq!((jb.stats.decoded, jb.stats.underruns), (10, 1), "{:?}", jb.stats);
        // After discontinuous transmission, a packet far ahead starts playback again.
        jb.push(500 * 960, t0 + Duration::from_secs(10), p[0].clone());
        jb.push(501 * 960, t0 + Duration::from_secs(10), p[1].clone());
        jb.push(502 * 960, t0 + Duration::from_secs(10), p[2].clone());
        for _ in 0..5 {
            jb.pull();
        }
        assert_eq!(jb.stats.decoded, 13, "{:?}", jb.stats);
    }

    #[test]
    fn garbage_is_concealed_not_a_panic() {
        let mut jb = JitterBuffer::new().unwrap();
        let t0 = Instant::now();
        for i in 0..5u32 {
            jb.push(i * 960, t0, vec![0xff; 7]);
        }
        for _ in 0..6 {
            assert_eq!(jb.pull().len(), FRAME_SAMPLES);
        }
    }
}
