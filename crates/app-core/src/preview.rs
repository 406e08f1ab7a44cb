//! The pre-join screen's live checks: the camera drawn into tile [`PREVIEW_TILE`], and
//! the microphone's level, so a user sees and hears that their devices work before
//! anyone else does. Both stop when the [`Preview`] is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_media::audio::Microphone;
use confer_media::opus::{FRAME_SAMPLES, SAMPLE_RATE};
use confer_media::video::Camera;
use confer_media::{PatternSource, ToneSource};

use crate::frames::FrameHub;
use crate::publish::{unix_ms, VideoSource};
use crate::settings::MediaSettings;

pub const PREVIEW_TILE: &str = "preview";

/// Running device checks.
pub struct Preview {
    stop: Arc<AtomicBool>,
    hub: Arc<FrameHub>,
}

/// What the preview found missing, for the screen to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Missing {
    pub camera: bool,
    pub microphone: bool,
}

impl Preview {
    /// Starts the camera preview and the microphone meter; `level` gets the
    /// microphone's level (0.0 silence to 1.0 full scale) ten times a second.
    pub fn start(
        settings: &MediaSettings,
        hub: Arc<FrameHub>,
        level: impl Fn(f32) + Send + 'static,
    ) -> (Self, Missing) {
        let stop = Arc::new(AtomicBool::new(false));
        let mut missing = Missing::default();
        match settings.video_source() {
            Some(source) => {
                let (stop, hub) = (stop.clone(), hub.clone());
                spawn("preview-camera", move || camera(source, &hub, &stop));
            }
            None => missing.camera = true,
        }
        let opened = match settings.microphone_tone() {
            Some(hz) => Ok(Sound::Tone(ToneSource::new(hz, SAMPLE_RATE))),
            None => Microphone::open(settings.microphone_choice(), settings.processing(), None)
                .map(|m| Sound::Microphone(Box::new(m))),
        };
        match opened {
            Ok(mic) => {
                let stop = stop.clone();
                spawn("preview-microphone", move || meter(mic, &stop, level));
            }
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "no microphone for the preview");
                missing.microphone = true;
            }
        }
        (Self { stop, hub }, missing)
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.hub.remove(PREVIEW_TILE);
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.to_owned()).spawn(f) {
        tracing::error!(error = %e, "cannot start a preview thread");
    }
}

fn camera(source: VideoSource, hub: &FrameHub, stop: &AtomicBool) {
    let period = Duration::from_millis(33);
    match source {
        VideoSource::Pattern => {
            let Ok(mut pattern) = PatternSource::new(640, 360) else { return };
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                hub.publish(PREVIEW_TILE, Arc::new(pattern.next_frame(unix_ms()).0), unix_ms());
                std::thread::sleep(period.saturating_sub(started.elapsed()));
            }
        }
        VideoSource::Camera(index) => {
            let camera = match Camera::open(index, 640, 360, 30) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(index, code = e.code(), error = %e, "the camera preview cannot open the camera");
                    return;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                if let Some(frame) = camera.next_frame(period * 3) {
                    hub.publish(PREVIEW_TILE, Arc::new(frame), unix_ms());
                }
            }
        }
    }
    hub.remove(PREVIEW_TILE);
}

/// What the meter listens to: the microphone, or the test tone standing in for it.
enum Sound {
    Microphone(Box<Microphone>),
    Tone(ToneSource),
}

impl Sound {
    /// The next block of samples (full scale 1.0), or `None` after a device gap.
    fn read(&mut self) -> Option<Vec<f32>> {
        match self {
            Sound::Microphone(mic) => mic.read(Duration::from_millis(200)),
            Sound::Tone(tone) => {
                std::thread::sleep(Duration::from_millis(20));
                Some(tone.next_block(FRAME_SAMPLES).iter().map(|&s| f32::from(s) / 32768.0).collect())
            }
        }
    }
}

/// Peak level over 100 ms windows, on a scale that makes speech move the meter.
fn meter(mut sound: Sound, stop: &AtomicBool, level: impl Fn(f32)) {
    let mut peak = 0.0f32;
    let mut window = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(frame) = sound.read() {
            peak = frame.iter().fold(peak, |p, s| p.max(s.abs()));
        }
        if window.elapsed() >= Duration::from_millis(100) {
            level(meter_scale(peak));
            peak = 0.0;
            window = Instant::now();
        }
    }
}

/// -60 dBFS and below is 0, full scale is 1.
fn meter_scale(peak: f32) -> f32 {
    let db = 20.0 * peak.max(1e-6).log10();
    ((db + 60.0) / 60.0).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::meter_scale;

    #[test]
    fn the_meter_spans_sixty_decibels() {
        assert_eq!(meter_scale(0.0), 0.0);
        assert_eq!(meter_scale(1.0), 1.0);
        assert!((meter_scale(0.0316) - 0.5).abs() < 0.01);
    }
}
