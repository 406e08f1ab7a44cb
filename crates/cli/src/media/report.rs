//! What the bot receives, decoded and measured the way a viewer would notice it, for
//! `--report`.
//!
//! Video is decoded and the pattern's stamp read back: frame numbers give frame gaps,
//! capture times give glass-to-glass latency (sender and receiver share a clock on one
//! machine). Audio is decoded and its tone found. Data messages are counted and their
//! sequence numbers checked. Every stream records its *stalls*: stretches of at least
//! [`STALL`] with nothing decoded, with wall-clock times, so a test can line them up
//! with a mute, a censor or a network cut.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use confer_client::proto::track::TrackKind;
use confer_client::RemoteTrack;
use confer_media::audio::RemoteAudio;
use confer_media::h264::H264Decoder;
use confer_media::opus::{OpusDecoder, SAMPLE_RATE};
use confer_media::pattern::read_stamp;
use confer_media::tone::{dominant_frequency, tone_level_dbfs};
use confer_media::vp8::Vp8Decoder;
use confer_media::I420Frame;
use serde::Serialize;

use confer_app_core::publish::unix_ms;

/// A gap this long without a decoded frame is a stall.
pub const STALL: u64 = 300;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
}

/// A stretch without decoded frames: from the last frame before it to the first after
/// it (`None` if it lasted to the end), Unix milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stall {
    pub from_ms: u64,
    pub to_ms: Option<u64>,
}

/// One received track, as `--report` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub identity: String,
    pub participant_id: String,
    pub key: String,
    pub track_id: String,
    pub kind: TrackKind,
    pub codec: String,
    pub width: usize,
    pub height: usize,
    pub frames_received: u64,
    pub frames_decoded: u64,
    pub decode_errors: u64,
    /// Frame numbers skipped between decoded frames (from the pattern stamps; for data,
    /// message sequence numbers skipped).
    pub frame_gaps: u64,
    /// Frames the sender produced from the first decoded one to the last (from the
    /// stamps): `frames_decoded / frames_expected` is the share that arrived.
    pub frames_expected: u64,
    /// Capture (pattern stamp) to decode, or data message sent to received, ms.
    pub latency_ms: Percentiles,
    pub tone_hz: Option<f64>,
    /// Audio: each change of the dominant frequency, judged over a quarter of a second,
    /// as (Unix ms, Hz): when what was heard changed (a microphone switched, a speaker
    /// changed tone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tone_changes: Vec<(u64, f64)>,
    /// `--probe-tones`: the level of each frequency (Hz as the key) over the last two
    /// seconds, dBFS.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tone_levels_db: std::collections::BTreeMap<String, f64>,
    /// Milliseconds since the bot joined when the first frame decoded.
    pub first_frame_ms: Option<u64>,
    /// Unix milliseconds of the first and the last decoded frame.
    pub first_frame_at: Option<u64>,
    pub last_frame_at: Option<u64>,
    /// Every change of decoded resolution: (ms since join, width, height).
    pub resolutions: Vec<(u64, usize, usize)>,
    pub stalls: Vec<Stall>,
}

/// Shared by the decoder tasks; read when the bot writes its report.
#[derive(Default)]
pub struct Receiving {
    streams: Mutex<HashMap<String, StreamStats>>,
}

struct StreamStats {
    report: StreamReport,
    latencies: Vec<u64>,
    first_frame_number: Option<u64>,
    last_frame_number: Option<u64>,
    pcm: Vec<i16>,
    /// Samples decoded since the dominant frequency was last judged.
    tone_block: usize,
    /// The last decoded picture (for `--snapshot`).
    picture: Option<I420Frame>,
}

impl StreamStats {
    /// A frame decoded now: count it, and close a stall if there was one.
    fn decoded(&mut self, since_join: u64, now_ms: u64) {
        let r = &mut self.report;
        r.frames_decoded += 1;
        r.first_frame_ms.get_or_insert(since_join);
        r.first_frame_at.get_or_insert(now_ms);
        if let Some(last) = r.last_frame_at {
            if now_ms.saturating_sub(last) >= STALL {
                r.stalls.push(Stall { from_ms: last, to_ms: Some(now_ms) });
            }
        }
        r.last_frame_at = Some(now_ms);
    }

    /// A sequence number seen (frame number or message number).
    fn numbered(&mut self, n: u64) {
        if let Some(last) = self.last_frame_number {
            self.report.frame_gaps += n.saturating_sub(last + 1);
        }
        self.last_frame_number = Some(n);
        let first = *self.first_frame_number.get_or_insert(n);
        self.report.frames_expected = n.saturating_sub(first) + 1;
    }
}

impl Receiving {
    /// Writes each video stream's last picture as `IDENTITY-KEY.ppm` in `dir`.
    pub fn write_snapshots(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        for s in streams.values() {
            let Some(p) = &s.picture else { continue };
            let mut ppm = format!("P6\n{} {}\n255\n", p.width, p.height).into_bytes();
            ppm.extend(confer_media::video::convert::i420_to_rgb(p));
            std::fs::write(dir.join(format!("{}-{}.ppm", s.report.identity, s.report.key)), ppm)?;
        }
        Ok(())
    }

    pub fn reports(&self, probe_tones: &[f64]) -> Vec<StreamReport> {
        let now_ms = unix_ms();
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<StreamReport> = streams
            .values()
            .map(|s| {
                let mut r = s.report.clone();
                let mut l = s.latencies.clone();
                l.sort_unstable();
                let pick = |q: f64| l.get(((l.len() as f64 - 1.0) * q).round() as usize).copied();
                r.latency_ms = Percentiles { p50: pick(0.5), p95: pick(0.95) };
                if r.kind == TrackKind::Audio && s.pcm.len() >= SAMPLE_RATE as usize / 2 {
                    r.tone_hz = dominant_frequency(&s.pcm, SAMPLE_RATE).map(|f| (f * 10.0).round() / 10.0);
                    for &hz in probe_tones {
                        let db = (tone_level_dbfs(&s.pcm, SAMPLE_RATE, hz) * 10.0).round() / 10.0;
                        r.tone_levels_db.insert(format!("{hz}"), if db.is_finite() { db } else { -200.0 });
                    }
                }
                if let Some(last) = r.last_frame_at {
                    if now_ms.saturating_sub(last) >= STALL {
                        r.stalls.push(Stall { from_ms: last, to_ms: None });
                    }
                }
                r
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.identity, &a.key, a.kind as u8, a.first_frame_at).cmp(&(
                &b.identity,
                &b.key,
                b.kind as u8,
                b.first_frame_at,
            ))
        });
        out
    }
}

enum Decoder {
    Vp8(Vp8Decoder),
    H264(H264Decoder),
    Opus(OpusDecoder),
    Data,
    None,
}

/// Decodes a remote track's frames until it ends, recording what a viewer would notice
/// (and playing audio on `playback`, keeping the last picture if `keep_picture`).
/// A track received again (resubscribed, or republished by its sender) continues the
/// same entry: the report is per publisher identity, stream key and kind.
pub async fn receive(
    mut track: RemoteTrack,
    identity: String,
    joined_at: Instant,
    receiving: Arc<Receiving>,
    playback: Option<RemoteAudio>,
    keep_picture: bool,
) {
    let id = format!("{identity}/{}/{:?}", track.info.key, track.info.kind);
    let report = StreamReport {
        identity,
        participant_id: track.info.publisher.to_string(),
        key: track.info.key.clone(),
        track_id: track.info.track_id.to_string(),
        kind: track.info.kind,
        codec: track.codec.rsplit('/').next().unwrap_or_default().to_owned(),
        width: 0,
        height: 0,
        frames_received: 0,
        frames_decoded: 0,
        decode_errors: 0,
        frame_gaps: 0,
        frames_expected: 0,
        latency_ms: Percentiles::default(),
        tone_hz: None,
        tone_changes: Vec::new(),
        tone_levels_db: Default::default(),
        first_frame_ms: None,
        first_frame_at: None,
        last_frame_at: None,
        resolutions: Vec::new(),
        stalls: Vec::new(),
    };
    let stats = StreamStats {
        report,
        latencies: Vec::new(),
        first_frame_number: None,
        last_frame_number: None,
        pcm: Vec::new(),
        tone_block: 0,
        picture: None,
    };
    {
        let mut streams = receiving.streams.lock().unwrap_or_else(|p| p.into_inner());
        match streams.get_mut(&id) {
            Some(existing) => {
                existing.report.track_id = stats.report.track_id;
                existing.report.participant_id = stats.report.participant_id;
            }
            None => {
                streams.insert(id.clone(), stats);
            }
        }
    }
    let codec = track.codec.to_ascii_lowercase();
    let mut decoder = if codec.ends_with("vp8") {
        Vp8Decoder::new().map_or(Decoder::None, Decoder::Vp8)
    } else if codec.ends_with("h264") {
        H264Decoder::new().map_or(Decoder::None, Decoder::H264)
    } else if codec.ends_with("opus") {
        OpusDecoder::new().map_or(Decoder::None, Decoder::Opus)
    } else if codec == "data" {
        Decoder::Data
    } else {
        Decoder::None
    };
    while let Some(frame) = track.next_frame().await {
        if let Some(p) = &playback {
            p.push(frame.rtp_timestamp, frame.received_at, frame.data.clone());
        }
        let mut picture = None;
        let mut pcm = None;
        let mut message = None;
        let failed = match &mut decoder {
            Decoder::Vp8(d) => d.decode(&frame.data).map(|p| picture = p).is_err(),
            Decoder::H264(d) => d.decode(&frame.data).map(|p| picture = p).is_err(),
            Decoder::Opus(d) => d.decode(&frame.data).map(|p| pcm = Some(p)).is_err(),
            Decoder::Data => {
                message = serde_json::from_slice::<serde_json::Value>(&frame.data).ok();
                message.is_none()
            }
            Decoder::None => false,
        };
        if failed && track.info.kind == TrackKind::Video {
            track.request_keyframe().await;
        }
        let now_ms = unix_ms();
        let since_join = joined_at.elapsed().as_millis() as u64;
        let mut streams = receiving.streams.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = streams.get_mut(&id) else { break };
        s.report.frames_received += 1;
        if failed {
            s.report.decode_errors += 1;
            continue;
        }
        if let Some(p) = picture {
            s.decoded(since_join, now_ms);
            if (p.width, p.height) != (s.report.width, s.report.height) {
                s.report.width = p.width;
                s.report.height = p.height;
                s.report.resolutions.push((since_join, p.width, p.height));
            }
            if let Some(stamp) = read_stamp(&p) {
                s.numbered(u64::from(stamp.frame_number));
                s.latencies.push(now_ms.saturating_sub(stamp.capture_ms));
            }
            if keep_picture {
                s.picture = Some(p);
            }
        }
        if let Some(p) = pcm {
            s.decoded(since_join, now_ms);
            // Keep the last two seconds for the tone.
            s.pcm.extend_from_slice(&p);
            let keep = SAMPLE_RATE as usize * 2;
            if s.pcm.len() > keep {
                let cut = s.pcm.len() - keep;
                s.pcm.drain(..cut);
            }
            s.tone_block += p.len();
            let block = SAMPLE_RATE as usize / 4;
            if s.tone_block >= block && s.pcm.len() >= block {
                s.tone_block = 0;
                let hz = dominant_frequency(&s.pcm[s.pcm.len() - block..], SAMPLE_RATE);
                let last = s.report.tone_changes.last().map(|(_, hz)| *hz);
                if let Some(hz) = hz.filter(|hz| last.is_none_or(|l| (l - hz).abs() > 15.0)) {
                    s.report.tone_changes.push((now_ms, hz.round()));
                }
            }
        }
        if let Some(m) = message {
            s.decoded(since_join, now_ms);
            if let (Some(seq), Some(sent)) = (m["seq"].as_u64(), m["sent_ms"].as_u64()) {
                s.numbered(seq);
                s.latencies.push(now_ms.saturating_sub(sent));
            }
        }
    }
}
