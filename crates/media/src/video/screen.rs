//! Screen and window capture at a chosen frame rate, as I420 frames at full resolution:
//! shared text stays legible when the encoder spends its bits on detail rather than
//! motion. On X11 over a connection of the share's own ([`x11`]); elsewhere, and for X
//! servers with unusual pixels, through xcap (Wayland through the desktop portal, macOS,
//! Windows).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::convert::rgba_to_i420;
use super::CaptureError;
use crate::I420Frame;

#[cfg(target_os = "linux")]
mod x11;

/// What can be shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum ScreenSource {
    /// A monitor by its index in [`list`] (0 is the first).
    Monitor(usize),
    /// A window by its platform id.
    Window(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScreenInfo {
    pub source: ScreenSource,
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub primary: bool,
}

fn err(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Screen(e.to_string())
}

/// Monitors, then visible windows.
pub fn list() -> Result<Vec<ScreenInfo>, CaptureError> {
    let mut out = Vec::new();
    for (i, m) in xcap::Monitor::all().map_err(err)?.iter().enumerate() {
        out.push(ScreenInfo {
            source: ScreenSource::Monitor(i),
            name: m.friendly_name().or_else(|_| m.name()).unwrap_or_else(|_| format!("Screen {}", i + 1)),
            width: m.width().unwrap_or(0),
            height: m.height().unwrap_or(0),
            primary: m.is_primary().unwrap_or(false),
        });
    }
    // Windows are optional: a display server without a window list still shares screens.
    for w in xcap::Window::all().unwrap_or_default() {
        if w.is_minimized().unwrap_or(false) || w.width().unwrap_or(0) < 2 {
            continue;
        }
        let (Ok(id), Ok(title)) = (w.id(), w.title()) else { continue };
        let app = w.app_name().unwrap_or_default();
        out.push(ScreenInfo {
            source: ScreenSource::Window(id),
            name: if app.is_empty() || title.contains(&app) { title } else { format!("{title} — {app}") },
            width: w.width().unwrap_or(0),
            height: w.height().unwrap_or(0),
            primary: false,
        });
    }
    Ok(out)
}

/// A source found: monitors and windows are looked up once and captured many times.
enum Target {
    Monitor(xcap::Monitor),
    Window(xcap::Window),
    #[cfg(target_os = "linux")]
    X11(x11::Grab),
}

impl Target {
    fn find(source: ScreenSource) -> Result<Self, CaptureError> {
        #[cfg(target_os = "linux")]
        if x11::in_use() {
            match x11::Grab::open(source) {
                Ok(grab) => return Ok(Target::X11(grab)),
                Err(e @ CaptureError::NotFound(_)) => return Err(e),
                Err(e) => tracing::debug!(error = %e, ?source, "the screen is read through xcap"),
            }
        }
        Ok(match source {
            ScreenSource::Monitor(i) => {
                let mut monitors = xcap::Monitor::all().map_err(err)?;
                if i >= monitors.len() {
                    return Err(CaptureError::NotFound(format!("screen {i}")));
                }
                Target::Monitor(monitors.swap_remove(i))
            }
            ScreenSource::Window(id) => Target::Window(
                xcap::Window::all()
                    .map_err(err)?
                    .into_iter()
                    .find(|w| w.id().ok() == Some(id))
                    .ok_or_else(|| CaptureError::NotFound(format!("window {id}")))?,
            ),
        })
    }

    fn capture(&mut self) -> Result<I420Frame, CaptureError> {
        let image = match self {
            Target::Monitor(m) => m.capture_image(),
            Target::Window(w) => w.capture_image(),
            #[cfg(target_os = "linux")]
            Target::X11(grab) => return grab.capture(),
        }
        .map_err(err)?;
        let (w, h) = (image.width() as usize, image.height() as usize);
        Ok(rgba_to_i420(image.as_raw(), w, h, w * 4)?)
    }
}

/// One frame of `source`, now.
pub fn capture(source: ScreenSource) -> Result<I420Frame, CaptureError> {
    Target::find(source)?.capture()
}

/// Captures `source` at `fps` on a thread of its own; the newest frame wins.
pub struct ScreenCapture {
    frames: mpsc::Receiver<I420Frame>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScreenCapture {
    /// Fails if the source cannot be captured at all (checked with a first frame).
    pub fn start(source: ScreenSource, fps: u32) -> Result<Self, CaptureError> {
        let mut target = Target::find(source)?;
        let first = target.capture()?;
        let (tx, frames) = mpsc::sync_channel(1);
        let _ = tx.try_send(first);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let period = Duration::from_secs_f64(1.0 / f64::from(fps.clamp(1, 60)));
        let thread = std::thread::Builder::new()
            .name("screen".into())
            .spawn(move || {
                let mut next = Instant::now() + period;
                let mut failing = false;
                let mut target = Some(target);
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    next += period;
                    // Looked up again after a failure (a monitor unplugged and back).
                    let frame = match target.take().map_or_else(|| Target::find(source), Ok) {
                        Ok(mut t) => {
                            let frame = t.capture();
                            if frame.is_ok() {
                                target = Some(t);
                            }
                            frame
                        }
                        Err(e) => Err(e),
                    };
                    match frame {
                        Ok(frame) => {
                            failing = false;
                            // Full: the reader has not taken the last one; it gets this
                            // one next time instead.
                            let _ = tx.try_send(frame);
                        }
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, ?source, "screen capture failing");
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(err)?;
        Ok(Self { frames, stop, thread: Some(thread) })
    }

    /// The next frame, waiting at most `timeout`.
    pub fn next_frame(&self, timeout: Duration) -> Option<I420Frame> {
        self.frames.recv_timeout(timeout).ok()
    }
}

impl Drop for ScreenCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
