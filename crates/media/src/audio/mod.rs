//! Audio devices and the real-time audio pipeline.
//!
//! ```text
//!  microphone (cpal) ─► Processor (AEC, NS, AGC) ─► 20 ms frames ─► Opus ─► network
//!                          ▲ far end
//!  network ─► RemoteAudio ─► JitterBuffer (Opus, FEC, PLC) ─► Mixer ─► speaker (cpal)
//! ```
//!
//! Everything runs at [`RATE`] in mono, processed and mixed in 10 ms frames of
//! [`FRAME`] samples (what the echo canceller works in), coded in 20 ms Opus frames.

pub mod capture;
pub mod device;
pub mod jitter;
mod keeper;
pub mod playout;
pub mod processing;
pub mod sounds;

pub use capture::Microphone;
pub use device::{AudioDevice, DeviceChange, DeviceChoice, DeviceWatcher, Direction};
pub use keeper::DeviceSwitch;
pub use playout::{Mixer, RemoteAudio, Speaker};
pub use processing::{far_end, FarEndReceiver, FarEndSender, ProcessingConfig};
pub use sounds::{Sound, UiSounds};

pub const RATE: u32 = 48_000;
/// Samples in 10 ms.
pub const FRAME: usize = 480;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("no audio device: {0}")]
    NoDevice(String),
    #[error("audio device: {0}")]
    Device(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl AudioError {
    /// A stable code for logs and the app.
    pub fn code(&self) -> &'static str {
        match self {
            AudioError::NoDevice(_) => "no_audio_device",
            AudioError::Device(_) => "audio_device_failed",
            AudioError::Unsupported(_) => "audio_unsupported",
        }
    }
}

/// Converts processed samples (-1..1) to what Opus takes.
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|&x| (x.clamp(-1.0, 1.0) * 32767.0) as i16).collect()
}
