//! What the user picked for devices and quality: the settings screen's model, used by
//! the call, the preview and the shell's settings store.

use confer_media::audio::{DeviceChoice, ProcessingConfig};
use serde::{Deserialize, Serialize};

use crate::publish::VideoSource;

/// The microphone id of the test tone.
pub const TEST_TONE: &str = "tone";
/// The camera id of the test pattern.
pub const TEST_PATTERN: &str = "synthetic";

/// What the user picked for devices and quality (the settings screen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(default)]
pub struct MediaSettings {
    /// A microphone by id or name, or `"tone"` for the test tone; `None` follows the
    /// system default.
    pub microphone: Option<String>,
    pub speaker: Option<String>,
    /// A camera index, or `"synthetic"` for the test pattern; `None` is the first camera.
    pub camera: Option<String>,
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub gain_control: bool,
    pub video_quality: VideoQuality,
    pub start_muted: bool,
    pub start_camera_off: bool,
    /// Join with audio only, as on a weak link: no video received, and the camera off
    /// (it can be turned on, and video back on, during the call).
    pub audio_only: bool,
    /// Media through the server's TURN relays only, never a direct path.
    // For networks that allow nothing else out, or to keep this machine's addresses
    // from the server.
    pub force_relay: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            microphone: None,
            speaker: None,
            camera: None,
            echo_cancellation: true,
            noise_suppression: true,
            gain_control: true,
            video_quality: VideoQuality::Standard,
            start_muted: false,
            start_camera_off: false,
            audio_only: false,
            force_relay: false,
        }
    }
}

/// What the camera sends at most (simulcast adds half and quarter layers below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum VideoQuality {
    /// 1280x720
    High,
    /// 640x360
    Standard,
    /// 320x180, for slow links and slow machines.
    Low,
}

impl MediaSettings {
    pub fn processing(&self) -> ProcessingConfig {
        ProcessingConfig {
            echo_cancellation: self.echo_cancellation,
            noise_suppression: self.noise_suppression,
            gain_control: self.gain_control,
        }
    }

    pub(crate) fn video_size(&self) -> (usize, usize) {
        match self.video_quality {
            VideoQuality::High => (1280, 720),
            VideoQuality::Standard => (640, 360),
            VideoQuality::Low => (320, 180),
        }
    }

    /// The test tone's pitch when it stands in for the microphone: picked in settings
    /// (440 Hz), or made the default with `CONFER_FAKE_MICROPHONE=HZ` as test machines
    /// do (a device picked by name still wins).
    pub fn microphone_tone(&self) -> Option<f64> {
        match self.microphone.as_deref() {
            None => std::env::var("CONFER_FAKE_MICROPHONE").ok().and_then(|v| v.parse::<f64>().ok()),
            Some(TEST_TONE) => Some(440.0),
            Some(_) => None,
        }
    }

    pub fn microphone_choice(&self) -> DeviceChoice {
        self.microphone.as_deref().and_then(|m| m.parse().ok()).unwrap_or_default()
    }

    pub fn speaker_choice(&self) -> DeviceChoice {
        self.speaker.as_deref().and_then(|m| m.parse().ok()).unwrap_or_default()
    }

    /// The camera to open: the synthetic pattern when asked for (in settings, or as the
    /// default with `CONFER_FAKE_CAMERA=1` as test machines do), else a real one if any
    /// is present.
    pub fn video_source(&self) -> Option<VideoSource> {
        let fake = std::env::var_os("CONFER_FAKE_CAMERA").is_some_and(|v| v != "0");
        match self.camera.as_deref() {
            None if fake => Some(VideoSource::Pattern),
            Some(TEST_PATTERN) => Some(VideoSource::Pattern),
            Some(index) => index.parse().ok().map(VideoSource::Camera),
            None => confer_media::video::camera::list().first().map(|c| VideoSource::Camera(c.index)),
        }
    }
}
