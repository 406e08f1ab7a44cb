//! H.264 (constrained baseline, Annex B byte stream) with Cisco's OpenH264, built from
//! source by the `openh264` crate, so no system library is needed.

use openh264::decoder::Decoder;
use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, FrameType, UsageType};
use openh264::formats::{YUVSlices, YUVSource};
use openh264::{OpenH264API, Timestamp};

use crate::frame::I420Frame;
use crate::vp8::EncodedFrame;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H264Error {
    #[error("openh264: {0}")]
    Codec(String),
    #[error("bad encoder settings: {0}")]
    BadConfig(&'static str),
}

impl From<openh264::Error> for H264Error {
    fn from(e: openh264::Error) -> Self {
        H264Error::Codec(e.to_string())
    }
}

/// Settings of an H.264 encoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H264Config {
    pub bitrate_kbps: u32,
    pub max_fps: f32,
    /// Screen content: tuned for text and sharp edges rather than camera pictures.
    pub screen: bool,
}

pub struct H264Encoder {
    inner: Encoder,
    keyframe_requested: bool,
}

impl H264Encoder {
    pub fn new(config: H264Config) -> Result<Self, H264Error> {
        if config.bitrate_kbps == 0 || config.max_fps <= 0.0 {
            return Err(H264Error::BadConfig("bitrate and frame rate must be above zero"));
        }
        let usage = if config.screen { UsageType::ScreenContentRealTime } else { UsageType::CameraVideoRealTime };
        let settings = EncoderConfig::new()
            .bitrate(BitRate::from_bps(config.bitrate_kbps * 1000))
            .max_frame_rate(FrameRate::from_hz(config.max_fps))
            .usage_type(usage)
            // Every frame given is sent: the pacing decisions are the caller's.
            .skip_frames(false);
        let inner = Encoder::with_api_config(OpenH264API::from_source(), settings)?;
        Ok(Self { inner, keyframe_requested: false })
    }

    /// The next frame will be an IDR frame.
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Encodes one frame captured at `pts_ms`; `None` when the encoder skipped it.
    pub fn encode(&mut self, frame: &I420Frame, pts_ms: i64) -> Result<Option<EncodedFrame>, H264Error> {
        if !frame.width.is_multiple_of(2) || !frame.height.is_multiple_of(2) {
            return Err(H264Error::BadConfig("width and height must be even"));
        }
        if std::mem::take(&mut self.keyframe_requested) {
            self.inner.force_intra_frame();
        }
        let (cw, _) = I420Frame::chroma_size(frame.width, frame.height);
        let source = YUVSlices::new((&frame.y, &frame.u, &frame.v), (frame.width, frame.height), (frame.width, cw, cw));
        let stream = self.inner.encode_at(&source, Timestamp::from_millis(pts_ms.max(0) as u64))?;
        let keyframe = match stream.frame_type() {
            FrameType::Skip | FrameType::Invalid => return Ok(None),
            FrameType::IDR | FrameType::I => true,
            FrameType::P | FrameType::IPMixed => false,
        };
        Ok(Some(EncodedFrame { data: stream.to_vec(), keyframe, pts_ms }))
    }
}

pub struct H264Decoder {
    inner: Decoder,
}

impl H264Decoder {
    pub fn new() -> Result<Self, H264Error> {
        Ok(Self { inner: Decoder::new()? })
    }

    /// Decodes an Annex B access unit; `None` when it produced no picture yet.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, H264Error> {
        let Some(picture) = self.inner.decode(data)? else { return Ok(None) };
        let (w, h) = picture.dimensions();
        let (sy, su, sv) = picture.strides();
        let (cw, ch) = I420Frame::chroma_size(w, h);
        let mut frame = I420Frame::new(w, h);
        copy_plane(picture.y(), sy, w, h, &mut frame.y);
        copy_plane(picture.u(), su, cw, ch, &mut frame.u);
        copy_plane(picture.v(), sv, cw, ch, &mut frame.v);
        Ok(Some(frame))
    }
}

fn copy_plane(src: &[u8], stride: usize, width: usize, rows: usize, dst: &mut [u8]) {
    for (row, line) in src.chunks(stride).take(rows).enumerate() {
        dst[row * width..(row + 1) * width].copy_from_slice(&line[..width]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{read_stamp, PatternSource};

    #[test]
    fn pattern_stamps_survive_h264() {
        let (width, height) = (640, 360);
        let mut source = PatternSource::new(width, height).unwrap();
        let mut enc = H264Encoder::new(H264Config { bitrate_kbps: 600, max_fps: 30.0, screen: false }).unwrap();
        let mut dec = H264Decoder::new().unwrap();
        let (mut decoded, mut read, mut keys) = (0, 0, Vec::new());
        for i in 0..40u32 {
            if i == 20 {
                enc.request_keyframe();
            }
            let (frame, stamp) = source.next_frame(i as u64 * 33);
            let Some(packet) = enc.encode(&frame, i as i64 * 33).unwrap() else { continue };
            if packet.keyframe {
                keys.push(i);
            }
            if let Some(picture) = dec.decode(&packet.data).unwrap() {
                decoded += 1;
                assert_eq!((picture.width, picture.height), (width, height));
                read += u32::from(read_stamp(&picture) == Some(stamp));
            }
        }
        assert_eq!((decoded, read), (40, 40));
        assert_eq!(keys, [0, 20]);
    }

    #[test]
    fn garbage_is_an_error_or_nothing_not_a_crash() {
        let mut dec = H264Decoder::new().unwrap();
        let result = dec.decode(&[0, 0, 0, 1, 0x65, 0xff, 0xee, 0xdd, 0xcc]);
        assert!(matches!(result, Err(_) | Ok(None)));
    }
}
