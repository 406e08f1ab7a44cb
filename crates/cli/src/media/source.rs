//! What the bot publishes: a synthetic camera (the pattern, whose pixels carry each
//! frame's number and capture time), a synthetic microphone (a sine tone) and,
//! optionally, a data track of small numbered messages.
//!
//! Encoders make a keyframe when the first frame goes out and whenever a receiver asks
//! for one through the SFU ([`LocalTrack::take_keyframe_request`]), never on a timer.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confer_client::media::{Codec, TrackOptions};
use confer_client::proto::track::{Quality, TrackKind, TrackSource};
use confer_client::{LocalStream, LocalTrack, Room};
use confer_media::h264::{H264Config, H264Encoder};
use confer_media::opus::{OpusConfig, OpusEncoder, FRAME_SAMPLES, SAMPLE_RATE};
use confer_media::tone::level_dbfs;
use confer_media::vp8::{Vp8Config, Vp8Encoder};
use confer_media::{I420Frame, PatternSource, ToneSource};

use super::MediaThread;

/// How often the data track sends a message.
pub const DATA_INTERVAL: Duration = Duration::from_millis(100);

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub codec: Codec,
    pub simulcast: bool,
    pub tone_hz: Option<f64>,
    pub data: bool,
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A published stream and the tasks that feed it (stopped when dropped).
pub struct Publication {
    pub stream: LocalStream,
    _feeders: Vec<MediaThread>,
}

/// Publishes the synthetic camera and microphone (and data track) as stream `main` and
/// keeps feeding them until the publication is dropped.
pub async fn publish(room: &Room, plan: &PublishPlan) -> confer_client::Result<Publication> {
    let mut tracks = vec![TrackOptions::new(TrackSource::Camera, plan.codec).with_simulcast(plan.simulcast)];
    if plan.tone_hz.is_some() {
        tracks.push(TrackOptions::new(TrackSource::Microphone, Codec::Opus));
    }
    if plan.data {
        tracks.push(TrackOptions::data());
    }
    let stream = room.publish("main", tracks).await?;
    let mut feeders = Vec::new();
    if let Some(video) = stream.track(TrackKind::Video) {
        feeders.push(MediaThread::spawn("camera", video_loop(video.clone(), plan.clone())));
    }
    if let (Some(audio), Some(hz)) = (stream.track(TrackKind::Audio), plan.tone_hz) {
        feeders.push(MediaThread::spawn("microphone", audio_loop(audio.clone(), hz)));
    }
    if let Some(data) = stream.track(TrackKind::Data) {
        feeders.push(MediaThread::spawn("data", data_loop(data.clone())));
    }
    Ok(Publication { stream, _feeders: feeders })
}

/// Boxed: the encoders' states are large and of very different sizes.
enum VideoEncoder {
    Vp8(Box<Vp8Encoder>),
    H264(Box<H264Encoder>),
}

impl VideoEncoder {
    fn new(codec: Codec, width: usize, height: usize, fps: u32) -> Option<Self> {
        // Bitrates for a clean synthetic pattern: about 0.1 bit per pixel per frame.
        let kbps = ((width * height * fps as usize) / 10_000).clamp(100, 2500) as u32;
        match codec {
            Codec::Vp8 => Vp8Encoder::new(Vp8Config { width, height, bitrate_kbps: kbps, threads: 1 })
                .ok()
                .map(|e| Self::Vp8(Box::new(e))),
            Codec::H264 => H264Encoder::new(H264Config { bitrate_kbps: kbps, max_fps: fps as f32, screen: false })
                .ok()
                .map(|e| Self::H264(Box::new(e))),
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

async fn video_loop(track: LocalTrack, plan: PublishPlan) {
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
    loop {
        tick.tick().await;
        let (frame, _) = source.next_frame(unix_ms());
        let pts = started.elapsed().as_millis() as i64;
        for (quality, factor, encoder) in &mut layers {
            let keyframe = track.take_keyframe_request(*quality);
            let scaled;
            let input = if *factor == 1 {
                &frame
            } else {
                scaled = frame.downscale(*factor);
                &scaled
            };
            for data in encoder.encode(input, pts, keyframe) {
                // A failed write (the connection is being replaced) loses this frame
                // only; the next keyframe request restarts the receivers.
                if let Err(e) = track.write(*quality, data, period, None).await {
                    tracing::debug!(error = %e, "video write failed");
                }
            }
        }
    }
}

async fn audio_loop(track: LocalTrack, hz: f64) {
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
        }
    }
}

/// Sends `{"seq": n, "sent_ms": ...}` every [`DATA_INTERVAL`].
async fn data_loop(track: LocalTrack) {
    let mut tick = tokio::time::interval(DATA_INTERVAL);
    let mut seq: u64 = 0;
    loop {
        tick.tick().await;
        let message = serde_json::json!({"seq": seq, "sent_ms": unix_ms()}).to_string();
        if let Err(e) = track.send(message.as_bytes()).await {
            tracing::debug!(error = %e, "data send failed");
        }
        seq += 1;
    }
}
