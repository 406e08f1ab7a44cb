//! The bot's media: a synthetic camera and microphone to publish, and decoding and
//! measuring what it receives, for `--report`.
//!
//! The camera is `confer-media`'s pattern source, whose pixels carry each frame's number
//! and capture time; the receiving side reads them back after decoding, which gives
//! frame gaps and glass-to-glass latency (sender and receiver share a clock on one
//! machine). The microphone is a sine tone; the receiver finds its frequency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confer_client::media::{Codec, TrackOptions};
use confer_client::proto::track::{Quality, TrackKind, TrackSource};
use confer_client::{LocalStream, RemoteTrack, Room};
use confer_media::h264::{H264Config, H264Decoder, H264Encoder};
use confer_media::opus::{OpusConfig, OpusDecoder, OpusEncoder, FRAME_SAMPLES, SAMPLE_RATE};
use confer_media::pattern::read_stamp;
use confer_media::tone::{dominant_frequency, level_dbfs};
use confer_media::vp8::{Vp8Config, Vp8Decoder, Vp8Encoder};
use confer_media::{I420Frame, PatternSource, ToneSource};
use serde::Serialize;

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub codec: Codec,
    pub simulcast: bool,
    pub tone_hz: Option<f64>,
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Publishes the synthetic camera and microphone as stream `main` and keeps feeding
/// them until the room goes away. Returns the stream.
pub async fn publish(room: &Room, plan: &PublishPlan) -> confer_client::Result<Arc<LocalStream>> {
    let mut tracks = vec![TrackOptions::new(TrackSource::Camera, plan.codec).with_simulcast(plan.simulcast)];
    if plan.tone_hz.is_some() {
        tracks.push(TrackOptions::new(TrackSource::Microphone, Codec::Opus));
    }
    let stream = Arc::new(room.publish("main", tracks).await?);
    tokio::spawn(video_loop(stream.clone(), plan.clone()));
    if let Some(hz) = plan.tone_hz {
        tokio::spawn(audio_loop(stream.clone(), hz));
    }
    Ok(stream)
}

enum VideoEncoder {
    Vp8(Vp8Encoder),
    H264(H264Encoder),
}

impl VideoEncoder {
    fn new(codec: Codec, width: usize, height: usize, fps: u32) -> Option<Self> {
        // Bitrates for a clean synthetic pattern: about 0.1 bit per pixel per frame.
        let kbps = ((width * height * fps as usize) / 10_000).clamp(100, 2500) as u32;
        match codec {
            Codec::Vp8 => {
                Vp8Encoder::new(Vp8Config { width, height, bitrate_kbps: kbps, threads: 1 }).ok().map(Self::Vp8)
            }
            Codec::H264 => H264Encoder::new(H264Config { bitrate_kbps: kbps, max_fps: fps as f32, screen: false })
                .ok()
                .map(Self::H264),
            Codec::Opus => None,
        }
    }

    fn encode(&mut self, frame: &I420Frame, pts_ms: i64, keyframe: bool) -> Vec<Vec<u8>> {
        match self {
            VideoEncoder::Vp8(e) => {
                if keyframe {
                    e.request_keyframe();
                }
                e.encode(frame, pts_ms).map(|v| v.into_iter().map(|f| f.data).collect()).unwrap_or_default()
            }
            VideoEncoder::H264(e) => {
                if keyframe {
                    e.request_keyframe();
                }
                e.encode(frame, pts_ms).ok().flatten().map(|f| vec![f.data]).unwrap_or_default()
            }
        }
    }
}

async fn video_loop(stream: Arc<LocalStream>, plan: PublishPlan) {
    let Some(track) = stream.track(TrackKind::Video) else { return };
    let Ok(mut source) = PatternSource::new(plan.width, plan.height) else {
        tracing::error!(width = plan.width, height = plan.height, "unusable video size");
        return;
    };
    let mut layers: Vec<(Option<Quality>, usize, VideoEncoder)> = track
        .layers()
        .into_iter()
        .filter_map(|(q, factor)| {
            let f = factor as usize;
            VideoEncoder::new(plan.codec, plan.width / f, plan.height / f, plan.fps).map(|e| (q, f, e))
        })
        .collect();
    let period = Duration::from_secs_f64(1.0 / plan.fps.max(1) as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let (frame, _) = source.next_frame(unix_ms());
        let pts = started.elapsed().as_millis() as i64;
        // A keyframe every second: new subscribers and layer switches wait for one. (The
        // SFU's keyframe requests arrive as RTCP that the SDK does not surface yet.)
        let keyframe = n % (plan.fps as u64).max(1) == 0;
        for (quality, factor, encoder) in &mut layers {
            let scaled;
            let input = if *factor == 1 {
                &frame
            } else {
                scaled = frame.downscale(*factor);
                &scaled
            };
            for data in encoder.encode(input, pts, keyframe) {
                if let Err(e) = track.write(*quality, data, period, None).await {
                    tracing::debug!(error = %e, "video write failed");
                    return;
                }
            }
        }
        n += 1;
    }
}

async fn audio_loop(stream: Arc<LocalStream>, hz: f64) {
    let Some(track) = stream.track(TrackKind::Audio) else { return };
    let Ok(mut encoder) = OpusEncoder::new(OpusConfig::default()) else { return };
    let mut tone = ToneSource::new(hz, SAMPLE_RATE);
    let period = Duration::from_millis(20);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let pcm = tone.next_block(FRAME_SAMPLES);
        let level = (-level_dbfs(&pcm)).clamp(0.0, 127.0) as u8;
        let Ok(packet) = encoder.encode(&pcm) else { continue };
        if let Err(e) = track.write(None, packet, period, Some(level)).await {
            tracing::debug!(error = %e, "audio write failed");
            return;
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
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
    /// Frame numbers skipped between decoded frames (from the pattern stamps).
    pub frame_gaps: u64,
    /// Frames the sender produced from the first decoded one to the last (from the
    /// stamps): `frames_decoded / frames_expected` is the share that arrived.
    pub frames_expected: u64,
    /// Capture (pattern stamp) to decode, milliseconds.
    pub latency_ms: Percentiles,
    pub tone_hz: Option<f64>,
    /// Milliseconds since the bot joined when the first frame decoded.
    pub first_frame_ms: Option<u64>,
    /// Every change of decoded resolution: (ms since join, width, height).
    pub resolutions: Vec<(u64, usize, usize)>,
}

/// Shared by the decoder tasks; read when the bot writes its report.
#[derive(Default)]
pub struct Receiving {
    streams: Mutex<HashMap<String, StreamStats>>,
}

struct StreamStats {
    report: StreamReport,
    latencies: Vec<u64>,
    first_frame_number: Option<u32>,
    last_frame_number: Option<u32>,
    pcm: Vec<i16>,
}

impl Receiving {
    pub fn reports(&self) -> Vec<StreamReport> {
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
                }
                r
            })
            .collect();
        out.sort_by(|a, b| (&a.identity, &a.key, a.kind as u8).cmp(&(&b.identity, &b.key, b.kind as u8)));
        out
    }
}

/// Decodes a remote track's frames until it ends, recording what a viewer would notice.
pub async fn receive(mut track: RemoteTrack, identity: String, joined_at: Instant, receiving: Arc<Receiving>) {
    let id = track.info.track_id.to_string();
    let report = StreamReport {
        identity,
        participant_id: track.info.publisher.to_string(),
        key: track.info.key.clone(),
        track_id: id.clone(),
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
        first_frame_ms: None,
        resolutions: Vec::new(),
    };
    receiving.streams.lock().unwrap_or_else(|p| p.into_inner()).insert(
        id.clone(),
        StreamStats {
            report,
            latencies: Vec::new(),
            first_frame_number: None,
            last_frame_number: None,
            pcm: Vec::new(),
        },
    );
    let codec = track.codec.to_ascii_lowercase();
    let mut vp8 = if codec.ends_with("vp8") { Vp8Decoder::new().ok() } else { None };
    let mut h264 = if codec.ends_with("h264") { H264Decoder::new().ok() } else { None };
    let mut opus = if codec.ends_with("opus") { OpusDecoder::new().ok() } else { None };
    while let Some(frame) = track.next_frame().await {
        let mut picture = None;
        let mut pcm = None;
        let mut failed = false;
        if let Some(d) = vp8.as_mut() {
            match d.decode(&frame.data) {
                Ok(p) => picture = p,
                Err(_) => failed = true,
            }
        } else if let Some(d) = h264.as_mut() {
            match d.decode(&frame.data) {
                Ok(p) => picture = p,
                Err(_) => failed = true,
            }
        } else if let Some(d) = opus.as_mut() {
            match d.decode(&frame.data) {
                Ok(p) => pcm = Some(p),
                Err(_) => failed = true,
            }
        }
        if failed {
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
            s.report.frames_decoded += 1;
            s.report.first_frame_ms.get_or_insert(since_join);
            if (p.width, p.height) != (s.report.width, s.report.height) {
                s.report.width = p.width;
                s.report.height = p.height;
                s.report.resolutions.push((since_join, p.width, p.height));
            }
            if let Some(stamp) = read_stamp(&p) {
                if let Some(last) = s.last_frame_number {
                    s.report.frame_gaps += u64::from(stamp.frame_number.saturating_sub(last + 1));
                }
                s.last_frame_number = Some(stamp.frame_number);
                let first = *s.first_frame_number.get_or_insert(stamp.frame_number);
                s.report.frames_expected = u64::from(stamp.frame_number.saturating_sub(first)) + 1;
                s.latencies.push(now_ms.saturating_sub(stamp.capture_ms));
            }
        }
        if let Some(p) = pcm {
            s.report.frames_decoded += 1;
            s.report.first_frame_ms.get_or_insert(since_join);
            // Keep the last two seconds for the tone.
            s.pcm.extend_from_slice(&p);
            let keep = SAMPLE_RATE as usize * 2;
            if s.pcm.len() > keep {
                let cut = s.pcm.len() - keep;
                s.pcm.drain(..cut);
            }
        }
    }
}

/// The bot's media actions: what it publishes, whom it receives, at what quality, whom
/// it censors; and its report.
pub struct MediaPlan {
    publish: Option<PublishPlan>,
    stream: Option<Arc<LocalStream>>,
    subscribe: Vec<String>,
    quality: Quality,
    quality_change: Option<(Quality, Instant)>,
    censor: Option<String>,
    censored: Vec<confer_client::proto::track::TrackId>,
    uncensor_at: Option<Instant>,
    uncensor_after: Option<Duration>,
    subscribed: Vec<(confer_client::proto::ParticipantId, String)>,
    receiving: Arc<Receiving>,
    joined_at: Instant,
    pub join_ms: u64,
    report: Option<std::path::PathBuf>,
}

impl MediaPlan {
    pub fn new(args: &crate::args::BotArgs, joined_at: Instant) -> Self {
        let (width, height, fps) = args.video;
        let codec = match args.codec {
            crate::args::VideoCodecArg::Vp8 => Codec::Vp8,
            crate::args::VideoCodecArg::H264 => Codec::H264,
        };
        Self {
            publish: args.publish.then(|| PublishPlan {
                width,
                height,
                fps,
                codec,
                simulcast: args.simulcast,
                tone_hz: Some(args.tone),
            }),
            stream: None,
            subscribe: args.subscribe.clone(),
            quality: args.quality.into(),
            quality_change: args.quality_change.map(|(q, after)| (q.into(), joined_at + after)),
            censor: args.censor.clone(),
            censored: Vec::new(),
            uncensor_at: None,
            uncensor_after: args.uncensor_after,
            subscribed: Vec::new(),
            receiving: Arc::default(),
            joined_at,
            join_ms: 0,
            report: args.report.clone(),
        }
    }

    fn wants(&self, identity: &str) -> bool {
        match self.subscribe.as_slice() {
            [one] if one == "all" => true,
            [one] if one == "none" => false,
            list => list.iter().any(|i| i == identity),
        }
    }

    /// Reacts to one room event; `true` if the server refused something.
    pub async fn on_event(
        &mut self,
        room: &Room,
        event: confer_client::RoomEvent,
        out: &mut crate::output::JsonLines<impl std::io::Write>,
    ) -> std::io::Result<bool> {
        use confer_client::proto::signal::Event;
        use confer_client::proto::track::SubscriptionEndReason;
        use confer_client::RoomEvent;
        let mut refused = false;
        match event {
            RoomEvent::Connected { snapshot } => {
                if let Some(plan) = self.publish.clone() {
                    refused |= self.start_publishing(room, &plan, out).await?;
                }
                for p in &snapshot.remote {
                    for s in &p.streams {
                        refused |= self.consider(room, &p.id, &p.identity.0, &s.key, s, out).await?;
                    }
                }
            }
            RoomEvent::Media { event } => match *event {
                Event::StreamPublished { participant_id, stream } => {
                    let identity = room.participant(&participant_id).map(|p| p.identity.0).unwrap_or_default();
                    refused |= self.consider(room, &participant_id, &identity, &stream.key, &stream, out).await?;
                }
                Event::StreamFailed { .. } => {
                    // The publisher connection died (say, the network went away): start over.
                    room.reset_publisher().await;
                    if let Some(plan) = self.publish.clone() {
                        refused |= self.start_publishing(room, &plan, out).await?;
                    }
                }
                Event::SubscriptionEnded { participant_id, key, reason } => {
                    self.subscribed.retain(|(p, k)| !(*p == participant_id && *k == key));
                    if reason == SubscriptionEndReason::MediaFailed {
                        let stream = room
                            .participant(&participant_id)
                            .and_then(|p| p.streams.iter().find(|s| s.key == key).cloned());
                        if let Some(stream) = stream {
                            let identity = room.participant(&participant_id).map(|p| p.identity.0).unwrap_or_default();
                            refused |= self.consider(room, &participant_id, &identity, &key, &stream, out).await?;
                        }
                    }
                }
                _ => {}
            },
            RoomEvent::TrackSubscribed { track } => {
                let identity =
                    room.participant(&track.info.publisher).map(|p| p.identity.0).unwrap_or_else(|| "?".into());
                tokio::spawn(receive(*track, identity, self.joined_at, self.receiving.clone()));
            }
            _ => {}
        }
        Ok(refused)
    }

    async fn start_publishing(
        &mut self,
        room: &Room,
        plan: &PublishPlan,
        out: &mut crate::output::JsonLines<impl std::io::Write>,
    ) -> std::io::Result<bool> {
        match publish(room, plan).await {
            Ok(stream) => {
                out.emit_event(serde_json::json!({
                    "event": "published",
                    "key": stream.info.key,
                    "tracks": stream.info.tracks,
                }))?;
                self.stream = Some(stream);
                Ok(false)
            }
            Err(e) => {
                out.emit_event(crate::bot::error_line("publish", &e))?;
                Ok(true)
            }
        }
    }

    /// Subscribes to and censors a published stream as the flags say.
    async fn consider(
        &mut self,
        room: &Room,
        participant: &confer_client::proto::ParticipantId,
        identity: &str,
        key: &str,
        stream: &confer_client::proto::track::StreamInfo,
        out: &mut crate::output::JsonLines<impl std::io::Write>,
    ) -> std::io::Result<bool> {
        let mut refused = false;
        if self.censor.as_deref() == Some(identity) {
            for t in &stream.tracks {
                match room.censor(&t.id, true).await {
                    Ok(()) => {
                        self.censored.push(t.id.clone());
                        out.emit_event(
                            serde_json::json!({"event": "censor_succeeded", "identity": identity, "track_id": t.id}),
                        )?;
                    }
                    Err(e) => {
                        out.emit_event(crate::bot::error_line("censor", &e))?;
                        refused = true;
                    }
                }
            }
            if let Some(after) = self.uncensor_after {
                self.uncensor_at = Some(Instant::now() + after);
            }
        }
        let already = self.subscribed.iter().any(|(p, k)| p == participant && k == key);
        if self.wants(identity) && !already {
            let options =
                confer_client::proto::track::SubscriptionOptions { audio: true, video: true, quality: self.quality };
            match room.subscribe(participant, key, options).await {
                Ok(()) => self.subscribed.push((participant.clone(), key.to_owned())),
                Err(e) => {
                    out.emit_event(crate::bot::error_line("subscribe", &e))?;
                    refused = true;
                }
            }
        }
        Ok(refused)
    }

    /// Timed actions: the quality change, lifting a censorship.
    pub async fn on_tick(
        &mut self,
        room: &Room,
        out: &mut crate::output::JsonLines<impl std::io::Write>,
    ) -> std::io::Result<bool> {
        let now = Instant::now();
        let mut refused = false;
        if let Some((quality, at)) = self.quality_change {
            if now >= at {
                self.quality_change = None;
                self.quality = quality;
                let options = confer_client::proto::track::SubscriptionOptions { audio: true, video: true, quality };
                for (p, key) in self.subscribed.clone() {
                    if let Err(e) = room.update_subscription(&p, &key, options).await {
                        out.emit_event(crate::bot::error_line("update_subscription", &e))?;
                        refused = true;
                    }
                }
                out.emit_event(serde_json::json!({
                    "event": "quality_changed",
                    "quality": quality,
                    "at_ms": self.joined_at.elapsed().as_millis() as u64,
                }))?;
            }
        }
        if self.uncensor_at.is_some_and(|t| now >= t) {
            self.uncensor_at = None;
            for id in std::mem::take(&mut self.censored) {
                match room.censor(&id, false).await {
                    Ok(()) => out.emit_event(serde_json::json!({"event": "uncensor_succeeded", "track_id": id}))?,
                    Err(e) => {
                        out.emit_event(crate::bot::error_line("uncensor", &e))?;
                        refused = true;
                    }
                }
            }
        }
        Ok(refused)
    }

    /// Writes `--report`, if asked for.
    pub fn write_report(&self) -> std::io::Result<()> {
        let Some(path) = &self.report else { return Ok(()) };
        let streams = self.receiving.reports();
        let first_frame_ms =
            streams.iter().filter(|s| s.kind == TrackKind::Video).filter_map(|s| s.first_frame_ms).min();
        let report = serde_json::json!({
            "join_ms": self.join_ms,
            "first_frame_ms": first_frame_ms,
            "published": self.stream.as_ref().map(|s| &s.info),
            "streams": streams,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
    }
}
