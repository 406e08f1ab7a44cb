//! VP8 encoding and decoding with libvpx (the system library, through
//! `env-libvpx-sys`'s bindings, crate `vpx_sys`).
//!
//! Both sides are configured for real-time calls: one-pass CBR, no lag, error
//! resilient, the fastest real-time speed, and keyframes only at start and on request
//! (the SFU asks for them when a subscriber needs one). All libvpx calls stay in this
//! module; everything it hands out is owned Rust data.

use std::ptr;

use vpx_sys as vpx;

use crate::frame::I420Frame;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("libvpx {op} failed with code {code}")]
    Vpx { op: &'static str, code: i32 },
    #[error("frame is {got_w}x{got_h}, the encoder is set up for {want_w}x{want_h}")]
    WrongSize { got_w: usize, got_h: usize, want_w: usize, want_h: usize },
    #[error("bad encoder settings: {0}")]
    BadConfig(&'static str),
}

fn check(op: &'static str, err: vpx::vpx_codec_err_t) -> Result<(), CodecError> {
    if err == vpx::vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(CodecError::Vpx { op, code: err as i32 })
    }
}

/// One encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Presentation time in milliseconds, as given to the encoder.
    pub pts_ms: i64,
}

/// Settings of a VP8 encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Config {
    pub width: usize,
    pub height: usize,
    pub bitrate_kbps: u32,
    /// Encoder threads; 1 or 2 suits call resolutions.
    pub threads: u32,
}

pub struct Vp8Encoder {
    // Boxed: libvpx keeps pointers into the context, so it must not move.
    ctx: Box<vpx::vpx_codec_ctx_t>,
    cfg: vpx::vpx_codec_enc_cfg_t,
    width: usize,
    height: usize,
    /// The frame laid out contiguously, as `vpx_img_wrap` wants it.
    staging: Vec<u8>,
    keyframe_requested: bool,
}

// The context is only used through `&mut self`; libvpx contexts may move between threads.
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    pub fn new(config: Vp8Config) -> Result<Self, CodecError> {
        if config.width < 2 || config.height < 2 || !config.width.is_multiple_of(2) || !config.height.is_multiple_of(2)
        {
            return Err(CodecError::BadConfig("width and height must be even and at least 2"));
        }
        if config.bitrate_kbps == 0 {
            return Err(CodecError::BadConfig("bitrate must be above zero"));
        }
        // SAFETY: `vpx_codec_enc_config_default` fills in every field of the config
        // (which holds C enums, so it cannot start zeroed); the context is plain data
        // whose all-zero state is what libvpx expects before `enc_init`.
        let mut cfg = std::mem::MaybeUninit::<vpx::vpx_codec_enc_cfg_t>::uninit();
        let mut cfg = unsafe {
            check(
                "enc_config_default",
                vpx::vpx_codec_enc_config_default(vpx::vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0),
            )?;
            cfg.assume_init()
        };
        let mut ctx: Box<vpx::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        cfg.g_w = config.width as u32;
        cfg.g_h = config.height as u32;
        cfg.g_timebase = vpx::vpx_rational { num: 1, den: 1000 };
        cfg.g_threads = config.threads.max(1);
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = 1;
        cfg.rc_end_usage = vpx::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = config.bitrate_kbps;
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        cfg.kf_mode = vpx::vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_max_dist = 3000;
        unsafe {
            check(
                "enc_init",
                vpx::vpx_codec_enc_init_ver(
                    &mut *ctx,
                    vpx::vpx_codec_vp8_cx(),
                    &cfg,
                    0,
                    vpx::VPX_ENCODER_ABI_VERSION as i32,
                ),
            )?;
        }
        let mut encoder = Self {
            ctx,
            cfg,
            width: config.width,
            height: config.height,
            staging: Vec::new(),
            keyframe_requested: true,
        };
        // Fastest real-time speed: what a call on a laptop needs.
        unsafe {
            check(
                "set_cpuused",
                vpx::vpx_codec_control_(&mut *encoder.ctx, vpx::vp8e_enc_control_id::VP8E_SET_CPUUSED as i32, -12i32),
            )?;
        }
        Ok(encoder)
    }

    /// The next frame sent will be a keyframe.
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Changes the target bitrate (follows the bandwidth estimate).
    pub fn set_bitrate(&mut self, kbps: u32) -> Result<(), CodecError> {
        if kbps == 0 {
            return Err(CodecError::BadConfig("bitrate must be above zero"));
        }
        self.cfg.rc_target_bitrate = kbps;
        unsafe { check("enc_config_set", vpx::vpx_codec_enc_config_set(&mut *self.ctx, &self.cfg)) }
    }

    /// Encodes one frame captured at `pts_ms`.
    pub fn encode(&mut self, frame: &I420Frame, pts_ms: i64) -> Result<Vec<EncodedFrame>, CodecError> {
        if frame.width != self.width || frame.height != self.height {
            return Err(CodecError::WrongSize {
                got_w: frame.width,
                got_h: frame.height,
                want_w: self.width,
                want_h: self.height,
            });
        }
        self.staging.clear();
        self.staging.extend_from_slice(&frame.y);
        self.staging.extend_from_slice(&frame.u);
        self.staging.extend_from_slice(&frame.v);
        let flags = if std::mem::take(&mut self.keyframe_requested) { vpx::VPX_EFLAG_FORCE_KF as i64 } else { 0 };
        let mut out = Vec::new();
        // SAFETY: `image` borrows `staging`, which outlives the encode call; libvpx
        // copies what it needs before returning. Packets are copied out before the
        // next libvpx call on this context.
        unsafe {
            let mut image = std::mem::MaybeUninit::<vpx::vpx_image_t>::uninit();
            let wrapped = vpx::vpx_img_wrap(
                image.as_mut_ptr(),
                vpx::vpx_img_fmt::VPX_IMG_FMT_I420,
                self.width as u32,
                self.height as u32,
                1,
                self.staging.as_mut_ptr(),
            );
            if wrapped.is_null() {
                return Err(CodecError::Vpx { op: "img_wrap", code: -1 });
            }
            // `vpx_img_wrap` filled in every field of `image`.
            check(
                "encode",
                vpx::vpx_codec_encode(&mut *self.ctx, wrapped, pts_ms, 1, flags, vpx::VPX_DL_REALTIME as u64),
            )?;
            let mut iter: vpx::vpx_codec_iter_t = ptr::null();
            loop {
                let pkt = vpx::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter);
                if pkt.is_null() {
                    break;
                }
                if (*pkt).kind != vpx::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    continue;
                }
                let f = (*pkt).data.frame;
                let data = std::slice::from_raw_parts(f.buf as *const u8, f.sz as usize).to_vec();
                out.push(EncodedFrame { data, keyframe: f.flags & vpx::VPX_FRAME_IS_KEY != 0, pts_ms: f.pts });
            }
        }
        Ok(out)
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialized in `new` and is destroyed once.
        unsafe {
            vpx::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

pub struct Vp8Decoder {
    ctx: Box<vpx::vpx_codec_ctx_t>,
}

unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    pub fn new() -> Result<Self, CodecError> {
        // SAFETY: see `Vp8Encoder::new`.
        let mut ctx: Box<vpx::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        let cfg = vpx::vpx_codec_dec_cfg_t { threads: 1, w: 0, h: 0 };
        unsafe {
            check(
                "dec_init",
                vpx::vpx_codec_dec_init_ver(
                    &mut *ctx,
                    vpx::vpx_codec_vp8_dx(),
                    &cfg,
                    0,
                    vpx::VPX_DECODER_ABI_VERSION as i32,
                ),
            )?;
        }
        Ok(Self { ctx })
    }

    /// Decodes one frame's data; `None` when the data produced no picture. Corrupt data
    /// is an error, after which the decoder waits for the next keyframe.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        if data.is_empty() {
            return Err(CodecError::Vpx { op: "decode", code: vpx::vpx_codec_err_t::VPX_CODEC_INVALID_PARAM as i32 });
        }
        // SAFETY: `data` outlives the call; the returned image is valid until the next
        // decode call on this context and is copied out before that.
        unsafe {
            check(
                "decode",
                vpx::vpx_codec_decode(&mut *self.ctx, data.as_ptr(), data.len() as u32, ptr::null_mut(), 0),
            )?;
            let mut iter: vpx::vpx_codec_iter_t = ptr::null();
            let img = vpx::vpx_codec_get_frame(&mut *self.ctx, &mut iter);
            if img.is_null() {
                return Ok(None);
            }
            let img = &*img;
            let (w, h) = (img.d_w as usize, img.d_h as usize);
            let mut frame = I420Frame::new(w, h);
            let (cw, ch) = I420Frame::chroma_size(w, h);
            copy_plane(img.planes[0], img.stride[0] as usize, w, h, &mut frame.y);
            copy_plane(img.planes[1], img.stride[1] as usize, cw, ch, &mut frame.u);
            copy_plane(img.planes[2], img.stride[2] as usize, cw, ch, &mut frame.v);
            Ok(Some(frame))
        }
    }
}

/// Copies a strided plane into a packed one.
///
/// # Safety
/// `src` must point to `rows` rows of `stride` bytes, each with at least `width` valid.
unsafe fn copy_plane(src: *const u8, stride: usize, width: usize, rows: usize, dst: &mut [u8]) {
    for row in 0..rows {
        let line = std::slice::from_raw_parts(src.add(row * stride), width);
        dst[row * width..(row + 1) * width].copy_from_slice(line);
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, destroyed once.
        unsafe {
            vpx::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{read_stamp, PatternSource};

    fn round_trip(width: usize, height: usize, kbps: u32, frames: u32) -> (u32, u32) {
        let mut source = PatternSource::new(width, height).unwrap();
        let mut enc = Vp8Encoder::new(Vp8Config { width, height, bitrate_kbps: kbps, threads: 1 }).unwrap();
        let mut dec = Vp8Decoder::new().unwrap();
        let (mut decoded, mut read) = (0, 0);
        for i in 0..frames {
            let (frame, stamp) = source.next_frame(1_000_000 + i as u64 * 33);
            for packet in enc.encode(&frame, i as i64 * 33).unwrap() {
                assert_eq!(packet.keyframe, i == 0, "only the first frame is a keyframe");
                if let Some(picture) = dec.decode(&packet.data).unwrap() {
                    decoded += 1;
                    assert_eq!((picture.width, picture.height), (width, height));
                    if read_stamp(&picture) == Some(stamp) {
                        read += 1;
                    }
                }
            }
        }
        (decoded, read)
    }

    #[test]
    fn pattern_stamps_survive_vp8_at_call_bitrates() {
        assert_eq!(round_trip(640, 360, 600, 60), (60, 60));
        assert_eq!(round_trip(320, 180, 200, 60), (60, 60));
        assert_eq!(round_trip(160, 90, 80, 60), (60, 60));
    }

    #[test]
    fn keyframes_on_request() {
        let mut source = PatternSource::new(320, 180).unwrap();
        let mut enc = Vp8Encoder::new(Vp8Config { width: 320, height: 180, bitrate_kbps: 300, threads: 1 }).unwrap();
        let mut keys = Vec::new();
        for i in 0..10 {
            if i == 5 {
                enc.request_keyframe();
                enc.set_bitrate(150).unwrap();
            }
            let (frame, _) = source.next_frame(i * 33);
            keys.extend(enc.encode(&frame, i as i64 * 33).unwrap().iter().map(|p| p.keyframe));
        }
        assert_eq!(keys.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect::<Vec<_>>(), [0, 5]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_crash() {
        let mut dec = Vp8Decoder::new().unwrap();
        assert!(dec.decode(&[]).is_err());
        assert!(dec.decode(&[0xff; 64]).is_err());
        let mut enc = Vp8Encoder::new(Vp8Config { width: 64, height: 48, bitrate_kbps: 100, threads: 1 }).unwrap();
        assert!(matches!(enc.encode(&I420Frame::new(32, 24), 0), Err(CodecError::WrongSize { .. })));
        assert!(Vp8Encoder::new(Vp8Config { width: 63, height: 48, bitrate_kbps: 100, threads: 1 }).is_err());
    }
}
