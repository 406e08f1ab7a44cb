//! Video from devices: cameras ([`camera`]), screens and windows ([`screen`]), and the
//! pixel-format conversions between them and the encoders ([`convert`]).

pub mod camera;
pub mod convert;
pub mod screen;

pub use camera::{Camera, CameraInfo, CameraMode};
pub use screen::{ScreenCapture, ScreenInfo, ScreenSource};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("no camera {0}")]
    NoCamera(u32),
    #[error("camera: {0}")]
    Camera(String),
    #[error("screen capture: {0}")]
    Screen(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
}

impl CaptureError {
    pub fn code(&self) -> &'static str {
        match self {
            CaptureError::NoCamera(_) => "no_camera",
            CaptureError::Camera(_) => "camera_failed",
            CaptureError::Screen(_) => "screen_capture_failed",
            CaptureError::NotFound(_) => "capture_source_not_found",
            CaptureError::Convert(_) => "bad_frame",
        }
    }
}
