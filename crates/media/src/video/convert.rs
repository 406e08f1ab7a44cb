//! Pixel formats devices give, to the I420 encoders take (SIMD conversions from
//! `yuvutils-rs`; the plane split of NV12 is a copy).
//!
//! Odd widths and heights are cropped by a pixel: encoders want even sizes.

use yuvutils_rs::{BufferStoreMut, YuvConversionMode, YuvPackedImage, YuvPlanarImageMut, YuvRange, YuvStandardMatrix};

use crate::I420Frame;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot convert a {width}x{height} {format} frame: {reason}")]
pub struct ConvertError {
    pub format: &'static str,
    pub width: usize,
    pub height: usize,
    pub reason: String,
}

fn even(n: usize) -> usize {
    n & !1
}

fn check(format: &'static str, width: usize, height: usize, len: usize, need: usize) -> Result<(), ConvertError> {
    if width < 2 || height < 2 || len < need {
        return Err(ConvertError { format, width, height, reason: format!("{len} bytes, {need} needed") });
    }
    Ok(())
}

fn planar(frame: &mut I420Frame) -> YuvPlanarImageMut<'_, u8> {
    let (cw, _) = I420Frame::chroma_size(frame.width, frame.height);
    YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(&mut frame.y),
        y_stride: frame.width as u32,
        u_plane: BufferStoreMut::Borrowed(&mut frame.u),
        u_stride: cw as u32,
        v_plane: BufferStoreMut::Borrowed(&mut frame.v),
        v_stride: cw as u32,
        width: frame.width as u32,
        height: frame.height as u32,
    }
}

fn failed(format: &'static str, width: usize, height: usize) -> impl FnOnce(yuvutils_rs::YuvError) -> ConvertError {
    move |e| ConvertError { format, width, height, reason: e.to_string() }
}

/// A yuvutils-rs conversion from four bytes a pixel to I420.
type FourByteToYuv = fn(
    &mut YuvPlanarImageMut<'_, u8>,
    &[u8],
    u32,
    YuvRange,
    YuvStandardMatrix,
    YuvConversionMode,
) -> Result<(), yuvutils_rs::YuvError>;

fn four_byte_to_i420(
    format: &'static str,
    convert: FourByteToYuv,
    pixels: &[u8],
    width: usize,
    height: usize,
    stride: usize,
) -> Result<I420Frame, ConvertError> {
    check(format, width, height, pixels.len(), stride * height.saturating_sub(1) + width * 4)?;
    let mut out = I420Frame::new(even(width), even(height));
    convert(
        &mut planar(&mut out),
        pixels,
        stride as u32,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    )
    .map_err(failed(format, width, height))?;
    Ok(out)
}

/// RGBA (screen captures through xcap), `stride` bytes per row.
pub fn rgba_to_i420(rgba: &[u8], width: usize, height: usize, stride: usize) -> Result<I420Frame, ConvertError> {
    four_byte_to_i420("RGBA", yuvutils_rs::rgba_to_yuv420, rgba, width, height, stride)
}

/// BGRA or BGRX, the fourth byte ignored (an X server's 24-bit pixels, least
/// significant byte first), `stride` bytes per row.
pub fn bgra_to_i420(bgra: &[u8], width: usize, height: usize, stride: usize) -> Result<I420Frame, ConvertError> {
    four_byte_to_i420("BGRA", yuvutils_rs::bgra_to_yuv420, bgra, width, height, stride)
}

/// Packed RGB (decoded MJPEG).
pub fn rgb_to_i420(rgb: &[u8], width: usize, height: usize) -> Result<I420Frame, ConvertError> {
    check("RGB", width, height, rgb.len(), width * height * 3)?;
    let mut out = I420Frame::new(even(width), even(height));
    yuvutils_rs::rgb_to_yuv420(
        &mut planar(&mut out),
        rgb,
        (width * 3) as u32,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    )
    .map_err(failed("RGB", width, height))?;
    Ok(out)
}

/// YUYV 4:2:2 (most webcams' raw format).
pub fn yuyv_to_i420(yuyv: &[u8], width: usize, height: usize) -> Result<I420Frame, ConvertError> {
    check("YUYV", width, height, yuyv.len(), width * height * 2)?;
    let mut out = I420Frame::new(even(width), even(height));
    let packed = YuvPackedImage {
        yuy: yuyv,
        yuy_stride: (width * 2) as u32,
        width: out.width as u32,
        height: out.height as u32,
    };
    yuvutils_rs::yuyv422_to_yuv420(&mut planar(&mut out), &packed).map_err(failed("YUYV", width, height))?;
    Ok(out)
}

/// NV12: a luma plane, then interleaved U and V at half resolution.
pub fn nv12_to_i420(nv12: &[u8], width: usize, height: usize) -> Result<I420Frame, ConvertError> {
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    check("NV12", width, height, nv12.len(), width * height + cw * ch * 2)?;
    let mut out = I420Frame::new(even(width), even(height));
    let (ow, oh) = (out.width, out.height);
    for row in 0..oh {
        out.y[row * ow..(row + 1) * ow].copy_from_slice(&nv12[row * width..row * width + ow]);
    }
    let uv = &nv12[width * height..];
    let (ocw, och) = I420Frame::chroma_size(ow, oh);
    for row in 0..och {
        for col in 0..ocw {
            let i = row * cw * 2 + col * 2;
            out.u[row * ocw + col] = uv[i];
            out.v[row * ocw + col] = uv[i + 1];
        }
    }
    Ok(out)
}

/// 8-bit grey: luma only, neutral chroma.
pub fn gray_to_i420(gray: &[u8], width: usize, height: usize) -> Result<I420Frame, ConvertError> {
    check("GRAY", width, height, gray.len(), width * height)?;
    let mut out = I420Frame::new(even(width), even(height));
    let ow = out.width;
    for row in 0..out.height {
        out.y[row * ow..(row + 1) * ow].copy_from_slice(&gray[row * width..row * width + ow]);
    }
    Ok(out)
}

/// I420 back to packed RGB (to look at a frame: snapshots, tests).
pub fn i420_to_rgb(frame: &I420Frame) -> Vec<u8> {
    let (cw, _) = I420Frame::chroma_size(frame.width, frame.height);
    let mut rgb = vec![0u8; frame.width * frame.height * 3];
    let image = yuvutils_rs::YuvPlanarImage {
        y_plane: &frame.y,
        y_stride: frame.width as u32,
        u_plane: &frame.u,
        u_stride: cw as u32,
        v_plane: &frame.v,
        v_stride: cw as u32,
        width: frame.width as u32,
        height: frame.height as u32,
    };
    if let Err(e) = yuvutils_rs::yuv420_to_rgb(
        &image,
        &mut rgb,
        (frame.width * 3) as u32,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
    ) {
        tracing::debug!(error = %e, "frame not converted to RGB");
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: u8, b: u8) -> bool {
        a.abs_diff(b) <= 3
    }

    #[test]
    fn colours_survive_the_round_trip() {
        // Left half red, right half blue, 64x32, odd sizes cropped.
        let (w, h) = (65, 33);
        let mut rgba = vec![0u8; w * h * 4];
        for y in 0..h {
            for x in 0..w {
                let px = if x < w / 2 { [220, 30, 30, 255] } else { [30, 30, 220, 255] };
                rgba[(y * w + x) * 4..][..4].copy_from_slice(&px);
            }
        }
        // The same picture with red and blue swapped and the fourth byte garbage, as
        // an X server gives it.
        let bgrx: Vec<u8> = rgba.chunks(4).flat_map(|p| [p[2], p[1], p[0], 7]).collect();
        for frame in [rgba_to_i420(&rgba, w, h, w * 4).unwrap(), bgra_to_i420(&bgrx, w, h, w * 4).unwrap()] {
            assert_eq!((frame.width, frame.height), (64, 32));
            let rgb = i420_to_rgb(&frame);
            let at = |x: usize, y: usize| &rgb[(y * 64 + x) * 3..][..3];
            assert!(at(5, 5)[0] > 180 && at(5, 5)[2] < 70, "{:?}", at(5, 5));
            assert!(at(60, 5)[2] > 180 && at(60, 5)[0] < 70, "{:?}", at(60, 5));
        }
    }

    #[test]
    fn yuyv_and_nv12_keep_luma_and_chroma() {
        let (w, h) = (4, 2);
        let yuyv: Vec<u8> = [[50, 100, 60, 200]; 4].concat();
        let f = yuyv_to_i420(&yuyv, w, h).unwrap();
        assert!(f.y.iter().step_by(2).all(|&y| close(y, 50)) && f.u.iter().all(|&u| close(u, 100)), "{f:?} {:?}", f.u);
        let mut nv12 = vec![80u8; w * h];
        nv12.extend([10, 20, 30, 40]);
        let f = nv12_to_i420(&nv12, w, h).unwrap();
        assert_eq!((f.u.clone(), f.v.clone()), (vec![10, 30], vec![20, 40]));
        assert!(f.y.iter().all(|&y| y == 80));
    }

    #[test]
    fn short_buffers_are_errors() {
        assert!(rgba_to_i420(&[0; 10], 64, 32, 256).is_err());
        assert!(bgra_to_i420(&[0; 10], 64, 32, 256).is_err());
        assert!(yuyv_to_i420(&[0; 10], 64, 32).is_err());
        assert!(nv12_to_i420(&[0; 10], 64, 32).is_err());
        assert!(gray_to_i420(&[0; 10], 1, 1).is_err());
    }
}
