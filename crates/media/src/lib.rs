//! Confer's media building blocks.
//!
//! Today: raw frame types and the synthetic sources that stand in for devices anywhere
//! (tests, bots, benchmarks): a moving video pattern that carries its frame number and
//! capture time in its pixels, readable after lossy compression and downscaling, and a
//! sine tone with a frequency detector for the receiving side. VP8, H.264 and Opus encoding and
//! decoding. Device capture, the other codecs, audio processing and playback follow
//! with the media issues.

pub mod frame;
pub mod h264;
pub mod opus;
pub mod pattern;
pub mod tone;
pub mod vp8;

pub use frame::I420Frame;
pub use pattern::{PatternError, PatternSource, Stamp};
pub use tone::ToneSource;
