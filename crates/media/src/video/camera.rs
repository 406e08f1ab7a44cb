//! Cameras with nokhwa (V4L2, AVFoundation, Media Foundation): list them with their
//! formats, open one, and deliver I420 frames whatever the camera sends (YUYV, NV12,
//! MJPEG, grey, RGB). A machine without a camera gets [`CaptureError::NoCamera`], never
//! a panic.
//!
//! On macOS the app must have asked for camera permission (nokhwa's
//! `nokhwa_initialize`) before [`Camera::open`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use serde::Serialize;

use super::convert;
use super::CaptureError;
use crate::I420Frame;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameraInfo {
    pub index: u32,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameraMode {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: String,
}

/// The cameras present (none is not an error).
pub fn list() -> Vec<CameraInfo> {
    match nokhwa::query(ApiBackend::Auto) {
        Ok(cams) => cams
            .iter()
            .map(|c| CameraInfo {
                index: match c.index() {
                    CameraIndex::Index(i) => *i,
                    CameraIndex::String(_) => 0,
                },
                name: c.human_name(),
                description: c.description().to_owned(),
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "no cameras listed");
            Vec::new()
        }
    }
}

/// The modes camera `index` offers.
pub fn modes(index: u32) -> Result<Vec<CameraMode>, CaptureError> {
    let mut cam = open_device(index, RequestedFormatType::None)?;
    let formats = cam.compatible_camera_formats().map_err(|e| CaptureError::Camera(e.to_string()))?;
    Ok(formats
        .iter()
        .map(|f| CameraMode {
            width: f.width(),
            height: f.height(),
            fps: f.frame_rate(),
            format: f.format().to_string(),
        })
        .collect())
}

fn open_device(index: u32, request: RequestedFormatType) -> Result<nokhwa::Camera, CaptureError> {
    if list().iter().all(|c| c.index != index) {
        return Err(CaptureError::NoCamera(index));
    }
    nokhwa::Camera::new(CameraIndex::Index(index), RequestedFormat::new::<RgbFormat>(request))
        .map_err(|e| CaptureError::Camera(e.to_string()))
}

/// Converts one camera buffer to I420.
pub fn to_i420(format: FrameFormat, data: &[u8], width: usize, height: usize) -> Result<I420Frame, CaptureError> {
    Ok(match format {
        FrameFormat::YUYV => convert::yuyv_to_i420(data, width, height)?,
        FrameFormat::NV12 => convert::nv12_to_i420(data, width, height)?,
        FrameFormat::GRAY => convert::gray_to_i420(data, width, height)?,
        FrameFormat::RAWRGB => convert::rgb_to_i420(data, width, height)?,
        FrameFormat::RAWBGR => {
            let rgb: Vec<u8> = data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
            convert::rgb_to_i420(&rgb, width, height)?
        }
        FrameFormat::MJPEG => {
            let buffer = nokhwa::Buffer::new(Resolution::new(width as u32, height as u32), data, FrameFormat::MJPEG);
            let image = buffer.decode_image::<RgbFormat>().map_err(|e| CaptureError::Camera(e.to_string()))?;
            convert::rgb_to_i420(image.as_raw(), image.width() as usize, image.height() as usize)?
        }
    })
}

/// An open camera delivering frames on a thread of its own; the newest frame wins.
pub struct Camera {
    pub mode: CameraMode,
    frames: mpsc::Receiver<I420Frame>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Camera {
    /// Opens camera `index` in the mode closest to `width`x`height`@`fps`.
    pub fn open(index: u32, width: u32, height: u32, fps: u32) -> Result<Self, CaptureError> {
        let wanted = CameraFormat::new_from(width, height, FrameFormat::YUYV, fps);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (tx, frames) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        // The device handle stays on the thread that opened it (not every backend's may move).
        let thread = std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                let opened = open_device(index, RequestedFormatType::Closest(wanted)).and_then(|mut cam| {
                    cam.open_stream().map_err(|e| CaptureError::Camera(e.to_string()))?;
                    Ok(cam)
                });
                let mut cam = match opened {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let f = cam.camera_format();
                let mode = CameraMode {
                    width: f.width(),
                    height: f.height(),
                    fps: f.frame_rate(),
                    format: f.format().to_string(),
                };
                let _ = ready_tx.send(Ok(mode));
                while !stopped.load(Ordering::Relaxed) {
                    let frame = cam.frame().map_err(|e| CaptureError::Camera(e.to_string())).and_then(|b| {
                        let r = b.resolution();
                        to_i420(b.source_frame_format(), b.buffer(), r.width() as usize, r.height() as usize)
                    });
                    match frame {
                        Ok(f) => {
                            let _ = tx.try_send(f);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "camera frame lost");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
                let _ = cam.stop_stream();
            })
            .map_err(|e| CaptureError::Camera(e.to_string()))?;
        let mode = match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(mode)) => mode,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(CaptureError::Camera("the camera did not open within 10 s".into())),
        };
        Ok(Self { mode, frames, stop, thread: Some(thread) })
    }

    pub fn next_frame(&self, timeout: Duration) -> Option<I420Frame> {
        self.frames.recv_timeout(timeout).ok()
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_camera_is_a_clear_error() {
        // No machine has camera 4000.
        assert!(matches!(Camera::open(4000, 640, 360, 30), Err(CaptureError::NoCamera(4000))));
    }
}
