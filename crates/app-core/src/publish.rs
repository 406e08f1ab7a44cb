//! Publishing, shared by the app and the bot: a camera (a real one, or the synthetic
//! pattern whose pixels carry each frame's number and capture time), a microphone (a
//! real one through echo cancellation and the rest, or a sine tone), optionally a data
//! track of small numbered messages, and optionally a screen share as a second stream.
//!
//! Encoders make a keyframe when the first frame goes out and whenever a receiver asks
//! for one through the SFU ([`LocalTrack::take_keyframe_request`]), never on a timer.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confer_client::media::{Codec, TrackOptions};
use confer_client::proto::track::{Quality, TrackKind, TrackSource};
use confer_client::{LocalStream, LocalTrack, Room};
use confer_media::audio::{DeviceChoice, DeviceSwitch, FarEndReceiver, Microphone, ProcessingConfig};
use confer_media::h264::{H264Config, H264Encoder};
use confer_media::opus::{OpusConfig, OpusEncoder, FRAME_SAMPLES, SAMPLE_RATE};
use confer_media::tone::level_dbfs;
use confer_media::video::{Camera, ScreenCapture, ScreenSource};
use confer_media::vp8::{Vp8Config, Vp8Encoder};
use confer_media::{I420Frame, PatternSource, ToneSource};
use std::sync::{Arc, Mutex};

/// A media task on a thread of its own, with a runtime of its own: encoding and
/// decoding are CPU work that would otherwise hold up the main runtime's network tasks
/// (and delay packets, which bandwidth estimation then reads as congestion), and the
/// task's timers must outlive the main runtime's shutdown at exit. Dropping it stops
/// the task.
pub struct MediaThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MediaThread {
    pub fn spawn(name: &str, task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a media thread's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                tokio::select! {
                    () = task => {}
                    _ = stopped => {}
                }
            })
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a media thread");
        }
        Self { stop: Some(stop) }
    }

    /// Lets the task run until it ends by itself.
    pub fn detach(mut self) {
        if let Some(stop) = self.stop.take() {
            std::mem::forget(stop);
        }
    }
}

impl Drop for MediaThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

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
    pub video: Option<VideoSource>,
    pub audio: Option<AudioSource>,
    pub data: bool,
    /// A monitor to share, and at what frame rate.
    pub screen: Option<(usize, u32)>,
    /// Sees every camera frame before it is encoded (the app's self view).
    pub tap: Option<FrameTap>,
    /// The test pattern's first frame number.
    pub first_frame: u32,
}

/// A callback that sees captured frames.
#[derive(Clone)]
pub struct FrameTap(pub Arc<dyn Fn(&I420Frame) + Send + Sync>);

impl std::fmt::Debug for FrameTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameTap")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    Pattern,
    Camera(u32),
}

#[derive(Debug, Clone)]
pub enum AudioSource {
    Tone(f64),
    Microphone(DeviceChoice, ProcessingConfig),
}

/// Echo cancellation's far end, when the bot both captures and plays.
pub type SharedFarEnd = Arc<Mutex<Option<FarEndReceiver>>>;

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A published stream and the tasks that feed it (stopped when dropped).
pub struct Publication {
    pub stream: LocalStream,
    /// Moves the microphone feeding it to another device, live (no renegotiation: the
    /// track stays, its sound comes from elsewhere).
    pub microphone: Option<DeviceSwitch>,
    _feeders: Vec<MediaThread>,
}

/// Publishes the camera and microphone (and data track) as stream `main`, and the
/// screen as stream `screen`, and keeps feeding them until the publications are dropped.
pub async fn publish(
    room: &Room,
    plan: &PublishPlan,
    far_end: &SharedFarEnd,
) -> confer_client::Result<Vec<Publication>> {
    let media_error =
        |code: &str, e: &dyn std::fmt::Display| confer_client::ClientError::Media { detail: format!("{code}: {e}") };
    // Devices first: one that cannot start must leave nothing published (a stream the
    // others see with no media, that this side could neither mute nor unpublish).
    let mic = match &plan.audio {
        Some(AudioSource::Microphone(device, processing)) => {
            let far = far_end.lock().unwrap_or_else(|p| p.into_inner()).take();
            let mic = Microphone::open(device.clone(), *processing, far).map_err(|e| media_error(e.code(), &e))?;
            tracing::info!(device = ?mic.device(), processing = ?mic.processing(), "publishing a microphone");
            Some(mic)
        }
        _ => None,
    };
    let screen = match plan.screen {
        Some((monitor, fps)) => Some((
            ScreenCapture::start(ScreenSource::Monitor(monitor), fps).map_err(|e| media_error(e.code(), &e))?,
            fps,
        )),
        None => None,
    };

    let mut publications = Vec::new();
    let mut tracks = Vec::new();
    if plan.video.is_some() {
        tracks.push(TrackOptions::new(TrackSource::Camera, plan.codec).with_simulcast(plan.simulcast));
    }
    if plan.audio.is_some() {
        tracks.push(TrackOptions::new(TrackSource::Microphone, Codec::Opus));
    }
    if plan.data {
        tracks.push(TrackOptions::data());
    }
    if !tracks.is_empty() {
        let stream = room.publish("main", tracks).await?;
        let mut feeders = Vec::new();
        let microphone = mic.as_ref().map(Microphone::switch);
        if let (Some(video), Some(source)) = (stream.track(TrackKind::Video), &plan.video) {
            feeders.push(MediaThread::spawn("camera", video_loop(video.clone(), plan.clone(), source.clone())));
        }
        match (stream.track(TrackKind::Audio), &plan.audio, mic) {
            (Some(audio), Some(AudioSource::Tone(hz)), _) => {
                feeders.push(MediaThread::spawn("microphone", audio_loop(audio.clone(), *hz, MutedSpeech::deaf())));
            }
            (Some(audio), Some(AudioSource::Microphone(..)), Some(mic)) => {
                feeders.push(MediaThread::spawn("microphone", mic_loop(audio.clone(), mic, MutedSpeech::deaf())));
            }
            _ => {}
        }
        if let Some(data) = stream.track(TrackKind::Data) {
            feeders.push(MediaThread::spawn("data", data_loop(data.clone())));
        }
        publications.push(Publication { stream, microphone, _feeders: feeders });
    }
    if let Some((capture, fps)) = screen {
        let stream = match room.publish("screen", vec![TrackOptions::new(TrackSource::ScreenShare, plan.codec)]).await {
            Ok(stream) => stream,
            Err(e) => {
                // All or nothing: take back what was published before.
                for p in &publications {
                    let _ = room.unpublish(p.stream.key()).await;
                }
                return Err(e);
            }
        };
        let mut feeders = Vec::new();
        if let Some(video) = stream.track(TrackKind::Video) {
            feeders.push(MediaThread::spawn("screen", screen_loop(video.clone(), capture, plan.codec, fps)));
        }
        publications.push(Publication { stream, microphone: None, _feeders: feeders });
    }
    Ok(publications)
}

/// Boxed: the encoders' states are large and of very different sizes.
enum VideoEncoder {
    Vp8(Box<Vp8Encoder>, RateFollower),
    H264(Box<H264Encoder>),
}

/// Keeps an encoder's bitrate at the share of its nominal rate that the path carries
/// ([`LocalTrack::send_rate_share`]), changing it only on a real move.
struct RateFollower {
    nominal_kbps: u32,
    applied: f32,
}

impl RateFollower {
    fn new(nominal_kbps: u32) -> Self {
        Self { nominal_kbps, applied: 1.0 }
    }

    /// The new bitrate to set, if the share moved by more than 5 %.
    fn follow(&mut self, share: f32) -> Option<u32> {
        if (share - self.applied).abs() <= 0.05 {
            return None;
        }
        self.applied = share;
        Some(((self.nominal_kbps as f32 * share) as u32).max(30))
    }
}

impl VideoEncoder {
    fn new(codec: Codec, width: usize, height: usize, fps: u32) -> Option<Self> {
        // Bitrates for a clean synthetic pattern: about 0.1 bit per pixel per frame.
        let kbps = ((width * height * fps as usize) / 10_000).clamp(100, 2500) as u32;
        Self::with_bitrate(codec, width, height, fps, kbps, false)
    }

    /// A screen: every pixel of text matters more than motion. About 0.3 bit per pixel
    /// per frame at low frame rates.
    fn for_screen(codec: Codec, width: usize, height: usize, fps: u32) -> Option<Self> {
        let kbps = ((width * height * fps as usize) * 3 / 10_000).clamp(500, 4000) as u32;
        Self::with_bitrate(codec, width, height, fps, kbps, true)
    }

    fn with_bitrate(codec: Codec, width: usize, height: usize, fps: u32, kbps: u32, screen: bool) -> Option<Self> {
        match codec {
            Codec::Vp8 => Vp8Encoder::new(Vp8Config { width, height, bitrate_kbps: kbps, threads: 1 })
                .ok()
                .map(|e| Self::Vp8(Box::new(e), RateFollower::new(kbps))),
            Codec::H264 => H264Encoder::new(H264Config { bitrate_kbps: kbps, max_fps: fps as f32, screen })
                .ok()
                .map(|e| Self::H264(Box::new(e))),
            Codec::Opus => None,
        }
    }

    /// Follows the path's send-rate share (VP8; OpenH264's rate is fixed at creation).
    fn follow_rate(&mut self, share: f32) {
        if let VideoEncoder::Vp8(e, rate) = self {
            if let Some(kbps) = rate.follow(share) {
                tracing::info!(kbps, share, "video bitrate follows the path");
                if let Err(err) = e.set_bitrate(kbps) {
                    tracing::warn!(error = %err, "bitrate not changed");
                }
            }
        }
    }

    fn encode(&mut self, frame: &I420Frame, pts_ms: i64, keyframe: bool) -> Vec<Vec<u8>> {
        match self {
            VideoEncoder::Vp8(e, _) => {
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

/// Where camera frames come from.
enum Frames {
    Pattern(PatternSource),
    Camera(Camera),
}

/// Captures (or draws) and encodes the camera, every layer, until dropped.
pub async fn video_loop(track: LocalTrack, mut plan: PublishPlan, source: VideoSource) {
    let mut source = match source {
        VideoSource::Pattern => match PatternSource::new(plan.width, plan.height) {
            Ok(p) => Frames::Pattern(p.starting_at(plan.first_frame)),
            Err(_) => {
                tracing::error!(width = plan.width, height = plan.height, "unusable video size");
                return;
            }
        },
        VideoSource::Camera(index) => match Camera::open(index, plan.width as u32, plan.height as u32, plan.fps) {
            Ok(c) => {
                tracing::info!(index, mode = ?c.mode, "camera open");
                (plan.width, plan.height) = (c.mode.width as usize & !1, c.mode.height as usize & !1);
                Frames::Camera(c)
            }
            Err(e) => {
                tracing::error!(index, code = e.code(), error = %e, "no camera: publishing no video");
                return;
            }
        },
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
    let mut was_muted = false;
    loop {
        tick.tick().await;
        // Muted: nothing is captured for the wire; the first frame after is a keyframe.
        if track.is_muted() {
            was_muted = true;
            continue;
        }
        let resumed = std::mem::take(&mut was_muted);
        let frame = match &mut source {
            Frames::Pattern(p) => p.next_frame(unix_ms()).0,
            Frames::Camera(c) => match c.next_frame(period * 2) {
                Some(f) if (f.width, f.height) == (plan.width, plan.height) => f,
                _ => continue,
            },
        };
        if let Some(tap) = &plan.tap {
            (tap.0)(&frame);
        }
        let pts = started.elapsed().as_millis() as i64;
        for (quality, factor, encoder) in &mut layers {
            let keyframe = track.take_keyframe_request(*quality) || resumed;
            encoder.follow_rate(track.send_rate_share(*quality));
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

/// Encodes a sine tone of `hz` as the microphone.
pub async fn audio_loop(track: LocalTrack, hz: f64, mut muted_speech: MutedSpeech) {
    let Ok(mut encoder) = OpusEncoder::new(OpusConfig::default()) else { return };
    let mut tone = ToneSource::new(hz, SAMPLE_RATE);
    let period = Duration::from_millis(20);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let pcm = tone.next_block(FRAME_SAMPLES);
        if track.is_muted() {
            muted_speech.hear(&pcm);
            continue;
        }
        muted_speech.reset();
        let level = (-level_dbfs(&pcm)).clamp(0.0, 127.0) as u8;
        let Ok(packet) = encoder.encode(&pcm) else { continue };
        if let Err(e) = track.write(None, packet, period, Some(level)).await {
            tracing::debug!(error = %e, "audio write failed");
        }
    }
}

/// Encodes the microphone's processed audio in 20 ms Opus frames. A device gap (the
/// microphone being replaced) sends nothing: receivers conceal, then play silence.
pub async fn mic_loop(track: LocalTrack, mut mic: Microphone, mut muted_speech: MutedSpeech) {
    let Ok(mut encoder) = OpusEncoder::new(OpusConfig::default()) else { return };
    let period = Duration::from_millis(20);
    loop {
        let (Some(a), Some(b)) = (mic.read(Duration::from_millis(200)), mic.read(Duration::from_millis(200))) else {
            tokio::task::yield_now().await;
            continue;
        };
        let pcm = confer_media::audio::to_i16(&[a, b].concat());
        if track.is_muted() {
            muted_speech.hear(&pcm); // heard, and sent nowhere
            continue;
        }
        muted_speech.reset();
        let level = (-level_dbfs(&pcm)).clamp(0.0, 127.0) as u8;
        let Ok(packet) = encoder.encode(&pcm) else { continue };
        if let Err(e) = track.write(None, packet, period, Some(level)).await {
            tracing::debug!(error = %e, "audio write failed");
        }
    }
}

/// Notices someone talking into a muted microphone, for a "you are muted" hint: sound
/// above [`MutedSpeech::LOUD_DBFS`] in most of the last second or so. It tells at most
/// once per [`MutedSpeech::QUIET_AFTER`], and not at all without a listener.
pub struct MutedSpeech {
    tell: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Loud 20 ms frames, less quiet ones.
    loud: u32,
    told: Option<Instant>,
}

impl MutedSpeech {
    /// Louder than a room's hum, quieter than a voice near a microphone.
    pub const LOUD_DBFS: f64 = -45.0;
    /// 0.8 s of talk.
    const TALK_FRAMES: u32 = 40;
    pub const QUIET_AFTER: Duration = Duration::from_secs(30);

    pub fn new(tell: impl Fn() + Send + Sync + 'static) -> Self {
        Self { tell: Some(Arc::new(tell)), loud: 0, told: None }
    }

    /// Hears nothing and tells no one.
    pub fn deaf() -> Self {
        Self { tell: None, loud: 0, told: None }
    }

    /// One block heard while muted (20 ms frames, or a multiple).
    pub fn hear(&mut self, pcm: &[i16]) {
        let Some(tell) = &self.tell else { return };
        let frames = (pcm.len() / FRAME_SAMPLES).max(1) as u32;
        if level_dbfs(pcm) > Self::LOUD_DBFS {
            self.loud += frames;
        } else {
            self.loud = self.loud.saturating_sub(frames);
        }
        if self.loud >= Self::TALK_FRAMES && self.told.is_none_or(|t| t.elapsed() >= Self::QUIET_AFTER) {
            self.told = Some(Instant::now());
            self.loud = 0;
            tell();
        }
    }

    /// Unmuted: what was heard before does not count.
    pub fn reset(&mut self) {
        self.loud = 0;
    }
}

/// Encodes the screen at full resolution; a new size (another resolution) starts a new
/// encoder and a keyframe.
pub async fn screen_loop(track: LocalTrack, capture: ScreenCapture, codec: Codec, fps: u32) {
    let period = Duration::from_secs_f64(1.0 / f64::from(fps.max(1)));
    let started = Instant::now();
    let mut encoder: Option<((usize, usize), VideoEncoder)> = None;
    loop {
        let Some(frame) = capture.next_frame(period * 4) else {
            tokio::task::yield_now().await;
            continue;
        };
        let size = (frame.width, frame.height);
        let mut fresh = false;
        if encoder.as_ref().is_none_or(|(s, _)| *s != size) {
            encoder = VideoEncoder::for_screen(codec, size.0, size.1, fps).map(|e| (size, e));
            fresh = true;
        }
        let Some((_, enc)) = encoder.as_mut() else {
            tracing::error!(?size, "cannot encode the screen");
            return;
        };
        let keyframe = track.take_keyframe_request(None) || fresh;
        enc.follow_rate(track.send_rate_share(None));
        for data in enc.encode(&frame, started.elapsed().as_millis() as i64, keyframe) {
            if let Err(e) = track.write(None, data, period, None).await {
                tracing::debug!(error = %e, "screen write failed");
            }
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
