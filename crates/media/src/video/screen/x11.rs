//! Screen capture on X11 over one connection, kept for the whole share.
//!
//! xcap opens three X connections for every frame it takes (for the monitor's geometry,
//! the screen and the image). That costs the X server time on every frame, and the
//! server refuses many of them ("Connection error, possible I/O error": most of them on
//! an idle 1920x1080 Xvfb at 30 fps), which fails the frame, or the share if it was the
//! first. Here a share opens one connection and asks for each frame's pixels on it
//! (`GetImage`); `scripts/bench-media.sh` compares the two.
//!
//! Only the layout nearly every X server uses is read: depth 24 or 32, 32 bits a pixel,
//! least significant byte first (B, G, R, unused in memory). For any other, and under
//! Wayland, [`Grab::open`] declines and xcap captures.

use std::time::{Duration, Instant};

use xcb::{randr, x, Xid, XidNew};

use super::super::convert::bgra_to_i420;
use super::super::CaptureError;
use super::{err, ScreenSource};
use crate::I420Frame;

/// How often a monitor's place and size are asked again during a share (a resolution
/// changed, monitors rearranged).
const GEOMETRY_EVERY: Duration = Duration::from_secs(1);

/// Whether screens here are X11 screens (not Wayland's, which only the desktop portal
/// shares: xcap's way).
pub(super) fn in_use() -> bool {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let wayland = std::env::var_os("XDG_SESSION_TYPE").is_some_and(|v| v == "wayland") || set("WAYLAND_DISPLAY");
    set("DISPLAY") && !wayland
}

/// Whether pixels of `depth` at `bits_per_pixel`, in `order`, are BGRX.
fn readable(depth: u8, bits_per_pixel: Option<u8>, order: x::ImageOrder) -> bool {
    matches!(depth, 24 | 32) && bits_per_pixel == Some(32) && order == x::ImageOrder::LsbFirst
}

/// A rectangle of the root window.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x: i16,
    y: i16,
    width: u16,
    height: u16,
}

/// What a share reads.
enum Area {
    /// A rectangle of the root window, asked again every [`GEOMETRY_EVERY`].
    Monitor { index: usize, rect: Rect, asked: Instant },
    /// A whole window, at its size of the moment.
    Window(x::Window),
}

/// An open connection to the display, and what it reads there.
pub(super) struct Grab {
    conn: xcb::Connection,
    root: x::Window,
    area: Area,
}

impl Grab {
    /// Connects to `DISPLAY` and finds `source` there. Fails with
    /// [`CaptureError::NotFound`] if there is no such source, and with
    /// [`CaptureError::Screen`] if this cannot read it (xcap may).
    pub fn open(source: ScreenSource) -> Result<Self, CaptureError> {
        let (conn, screen) =
            xcb::Connection::connect_with_extensions(None, &[], &[xcb::Extension::RandR]).map_err(err)?;
        let setup = conn.get_setup();
        let screen = setup
            .roots()
            .nth(usize::try_from(screen).unwrap_or(usize::MAX))
            .ok_or_else(|| CaptureError::Screen(format!("no X screen {screen}")))?;
        let root = screen.root();
        let (area, depth) = match source {
            ScreenSource::Monitor(index) => {
                if !conn.active_extensions().any(|e| e == xcb::Extension::RandR) {
                    return Err(CaptureError::Screen("the X server has no RandR".into()));
                }
                let rect = monitor_rect(&conn, root, index)?;
                (Area::Monitor { index, rect, asked: Instant::now() }, screen.root_depth())
            }
            // A window may have a depth of its own (32, with an alpha channel).
            ScreenSource::Window(id) => {
                let window = x::Window::new(id);
                (Area::Window(window), window_geometry(&conn, window)?.depth())
            }
        };
        let bits = setup.pixmap_formats().iter().find(|f| f.depth() == depth).map(|f| f.bits_per_pixel());
        let order = setup.image_byte_order();
        if !readable(depth, bits, order) {
            return Err(CaptureError::Screen(format!(
                "X pixels of depth {depth} at {bits:?} bits, {order:?}, are not read directly"
            )));
        }
        Ok(Self { conn, root, area })
    }

    /// One frame: a round trip to the X server (two for a window, whose size may have
    /// changed, and now and then for a monitor), and its pixels converted.
    pub fn capture(&mut self) -> Result<I420Frame, CaptureError> {
        let (window, rect) = match &mut self.area {
            Area::Monitor { index, rect, asked } => {
                if asked.elapsed() >= GEOMETRY_EVERY {
                    *rect = monitor_rect(&self.conn, self.root, *index)?;
                    *asked = Instant::now();
                }
                (self.root, *rect)
            }
            Area::Window(window) => {
                let geometry = window_geometry(&self.conn, *window)?;
                (*window, Rect { x: 0, y: 0, width: geometry.width(), height: geometry.height() })
            }
        };
        let request = x::GetImage {
            format: x::ImageFormat::ZPixmap,
            drawable: x::Drawable::Window(window),
            x: rect.x,
            y: rect.y,
            width: rect.width,
            height: rect.height,
            plane_mask: u32::MAX,
        };
        let image = self.conn.wait_for_reply(self.conn.send_request(&request)).map_err(err)?;
        let (width, height) = (usize::from(rect.width), usize::from(rect.height));
        Ok(bgra_to_i420(image.data(), width, height, width * 4)?)
    }
}

/// The rectangle of monitor `index` as xcap counts them: each output of each active
/// monitor, in the server's order.
fn monitor_rect(conn: &xcb::Connection, root: x::Window, index: usize) -> Result<Rect, CaptureError> {
    let reply = conn.wait_for_reply(conn.send_request(&randr::GetMonitors { window: root, get_active: true }));
    reply
        .map_err(err)?
        .monitors()
        .flat_map(|m| {
            m.outputs().iter().map(move |_| Rect { x: m.x(), y: m.y(), width: m.width(), height: m.height() })
        })
        .nth(index)
        .ok_or_else(|| CaptureError::NotFound(format!("screen {index}")))
}

/// A window's geometry; [`CaptureError::NotFound`] when the server knows no such window.
fn window_geometry(conn: &xcb::Connection, window: x::Window) -> Result<x::GetGeometryReply, CaptureError> {
    let reply = conn.wait_for_reply(conn.send_request(&x::GetGeometry { drawable: x::Drawable::Window(window) }));
    reply.map_err(|e| match e {
        xcb::Error::Protocol(_) => CaptureError::NotFound(format!("window {}", window.resource_id())),
        e => err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bgrx_is_read_directly() {
        assert!(readable(24, Some(32), x::ImageOrder::LsbFirst));
        assert!(readable(32, Some(32), x::ImageOrder::LsbFirst));
        // Packed 24-bit pixels, 16-bit colour, and big-endian servers go through xcap.
        assert!(!readable(24, Some(24), x::ImageOrder::LsbFirst));
        assert!(!readable(16, Some(16), x::ImageOrder::LsbFirst));
        assert!(!readable(24, Some(32), x::ImageOrder::MsbFirst));
        assert!(!readable(24, None, x::ImageOrder::LsbFirst));
    }
}
