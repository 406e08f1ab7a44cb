//! Confer's media building blocks.
//!
//! - Devices: microphones and speakers with echo cancellation, a jitter buffer and
//!   mixing ([`audio`]); cameras and screens ([`video`]); the [`devices`] manager.
//! - Codecs: VP8, H.264 and Opus encoding and decoding.
//! - Synthetic sources that stand in for devices anywhere (tests, bots, benchmarks): a
//!   moving video pattern that carries its frame number and capture time in its
//!   pixels, readable after lossy compression and downscaling, and a sine tone with a
//!   frequency detector for the receiving side.

pub mod audio;
pub mod devices;
pub mod frame;
pub mod h264;
pub mod opus;
pub mod pattern;
pub mod tone;
pub mod video;
pub mod vp8;

pub use frame::I420Frame;
pub use pattern::{PatternError, PatternSource, Stamp};
pub use tone::ToneSource;
