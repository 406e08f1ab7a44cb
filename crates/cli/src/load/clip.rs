//! The media every load publisher sends: encoded once, replayed by all.
//!
//! A few seconds of the synthetic pattern are encoded with VP8 at start (each simulcast
//! layer at its own size and rate, as the app's encoder would send them) and Opus tone
//! packets beside them. Publishers loop over the clip from their own position; a
//! keyframe request sends the layer back to its clip's first frame, which is the only
//! keyframe, so the load tool costs the machine a memory copy per frame, not an encoder.

use std::time::Duration;

use confer_media::opus::{OpusConfig, OpusEncoder};
use confer_media::pattern::PatternSource;
use confer_media::tone::ToneSource;
use confer_media::vp8::{Vp8Config, Vp8Encoder};

/// Seconds of video in the clip; a publisher that is never asked for a keyframe sends
/// one at each loop.
const CLIP_SECONDS: u32 = 4;
/// Opus packets are 20 ms of 48 kHz mono.
pub const AUDIO_PACKET: Duration = Duration::from_millis(20);

/// The size and rate of the published video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFormat {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
}

impl std::str::FromStr for VideoFormat {
    type Err = String;

    /// `WxH@FPS`, as `640x360@30`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected WIDTHxHEIGHT@FPS (like 640x360@30), got {s:?}");
        let (size, fps) = s.split_once('@').ok_or_else(bad)?;
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        let width: usize = w.parse().map_err(|_| bad())?;
        let height: usize = h.parse().map_err(|_| bad())?;
        let fps: u32 = fps.parse().map_err(|_| bad())?;
        if !(32..=3840).contains(&width) || !(24..=2160).contains(&height) || !(1..=60).contains(&fps) {
            return Err(format!("{s}: 32x24 to 3840x2160, 1 to 60 frames a second"));
        }
        Ok(Self { width: width & !1, height: height & !1, fps })
    }
}

/// One simulcast layer's encoded frames (the first is the only keyframe).
#[derive(Debug)]
pub struct Layer {
    /// `q`, `h`, `f`; `None` without simulcast.
    pub rid: Option<&'static str>,
    pub frames: Vec<Vec<u8>>,
}

#[derive(Debug)]
pub struct Clip {
    pub format: VideoFormat,
    pub layers: Vec<Layer>,
    pub audio: Vec<Vec<u8>>,
}

impl Clip {
    /// Encodes the clip; takes a second or two.
    pub fn encode(format: VideoFormat, simulcast: bool) -> anyhow::Result<Clip> {
        let layers: Vec<(Option<&'static str>, usize)> =
            if simulcast { vec![(Some("q"), 4), (Some("h"), 2), (Some("f"), 1)] } else { vec![(None, 1)] };
        let frames = (format.fps * CLIP_SECONDS) as usize;
        let mut out = Vec::new();
        for (rid, factor) in layers {
            // Even sizes (4:2:0), no smaller than the pattern's minimum.
            let width = (format.width / factor).max(32) & !1;
            let height = (format.height / factor).max(24) & !1;
            let mut source = PatternSource::new(width, height)?;
            // The app's rate for the size (its `VideoEncoder::camera`).
            let kbps = ((width * height * format.fps as usize) / 10_000).clamp(100, 2500) as u32;
            let mut encoder = Vp8Encoder::new(Vp8Config { width, height, bitrate_kbps: kbps, threads: 1 })?;
            let mut encoded = Vec::with_capacity(frames);
            for i in 0..frames {
                let pts_ms = i as u64 * 1000 / u64::from(format.fps);
                let (picture, _) = source.next_frame(pts_ms);
                for f in encoder.encode(&picture, pts_ms as i64)? {
                    encoded.push(f.data);
                }
            }
            anyhow::ensure!(!encoded.is_empty(), "the encoder produced no frames");
            out.push(Layer { rid, frames: encoded });
        }
        let mut tone = ToneSource::new(440.0, 48_000);
        let mut opus = OpusEncoder::new(OpusConfig::default())?;
        let audio =
            (0..50 * CLIP_SECONDS).map(|_| opus.encode(&tone.next_block(960))).collect::<Result<Vec<_>, _>>()?;
        Ok(Clip { format, layers: out, audio })
    }

    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / self.format.fps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("640x360@30".parse(), Ok(VideoFormat { width: 640, height: 360, fps: 30 }));
        assert!("640x360".parse::<VideoFormat>().is_err());
        assert!("10x10@30".parse::<VideoFormat>().is_err());
    }

    #[test]
    fn a_simulcast_clip_has_three_layers_each_starting_on_its_only_keyframe() {
        // 320x180 scales to an odd height at the q layer (45): it is made even.
        let clip = Clip::encode(VideoFormat { width: 320, height: 180, fps: 10 }, true).unwrap();
        assert_eq!(clip.layers.iter().map(|l| l.rid).collect::<Vec<_>>(), [Some("q"), Some("h"), Some("f")]);
        for l in &clip.layers {
            assert!(l.frames.len() >= 30, "{:?}: {} frames", l.rid, l.frames.len());
            // VP8: bit 0 of the first byte is 0 on a keyframe.
            assert_eq!(l.frames[0][0] & 1, 0, "{:?} starts on a keyframe", l.rid);
            assert!(l.frames[1..].iter().all(|f| f[0] & 1 == 1), "{:?}: one keyframe", l.rid);
        }
        assert_eq!(clip.audio.len(), 200);
    }
}
