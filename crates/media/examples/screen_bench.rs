//! What sharing the first screen costs, at 30 fps for a few seconds each way: frames
//! delivered, frames failed, and the process's CPU time per frame delivered.
//!
//! - **xcap**: the crate's own capture of a monitor and a conversion to I420, as the
//!   share did before and still does where [`screen`] cannot read the display itself
//!   (Wayland, macOS, Windows, X servers with unusual pixels). It opens three X
//!   connections for every frame.
//! - **share**: [`screen::ScreenCapture`], as a share runs, over one connection.
//!
//! Run with `scripts/bench-media.sh`, which starts an Xvfb of its own; or by hand on
//! any X display: `cargo run --release -p confer-media --example screen_bench -- [SECONDS]`.

use std::time::{Duration, Instant};

use confer_media::video::convert::rgba_to_i420;
use confer_media::video::screen::{self, ScreenCapture, ScreenSource};

const FPS: u32 = 30;

fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

struct Run {
    frames: u32,
    /// Captures that failed (the share retries on its own thread; not counted).
    failures: u32,
    cpu: Duration,
    first_error: Option<String>,
}

/// xcap's capture of monitor 0, at `FPS`, for `length`.
fn xcap_run(length: Duration) -> Result<Run, String> {
    let monitor = xcap::Monitor::all().map_err(|e| e.to_string())?.into_iter().next().ok_or("no monitor")?;
    let period = Duration::from_secs(1) / FPS;
    let (cpu, start) = (process_cpu(), Instant::now());
    let mut run = Run { frames: 0, failures: 0, cpu: Duration::ZERO, first_error: None };
    let mut next = start;
    while start.elapsed() < length {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += period;
        let frame = monitor.capture_image().map_err(|e| e.to_string()).and_then(|image| {
            let (w, h) = (image.width() as usize, image.height() as usize);
            rgba_to_i420(image.as_raw(), w, h, w * 4).map_err(|e| e.to_string())
        });
        match frame {
            Ok(_) => run.frames += 1,
            Err(e) => {
                run.failures += 1;
                run.first_error.get_or_insert(e);
            }
        }
    }
    run.cpu = process_cpu() - cpu;
    Ok(run)
}

/// A share of monitor 0, at `FPS`, for `length`.
fn share_run(length: Duration) -> Result<Run, String> {
    let (cpu, start) = (process_cpu(), Instant::now());
    let capture = ScreenCapture::start(ScreenSource::Monitor(0), FPS).map_err(|e| e.to_string())?;
    let mut frames = 0;
    while start.elapsed() < length {
        if capture.next_frame(Duration::from_millis(200)).is_some() {
            frames += 1;
        }
    }
    drop(capture);
    Ok(Run { frames, failures: 0, cpu: process_cpu() - cpu, first_error: None })
}

fn main() {
    let seconds = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(4.0);
    let length = Duration::from_secs_f64(seconds);
    let size = screen::list()
        .ok()
        .and_then(|l| l.into_iter().next())
        .map_or_else(|| "?".into(), |s| format!("{}x{}", s.width, s.height));
    println!("screen capture of a {size} screen at {FPS} fps, {seconds} s each (CPU: the whole process)");
    // Frames not delivered: failed, or taken too late for their turn.
    let expected = (seconds * f64::from(FPS)) as u32;
    println!("{:<40} {:>7} {:>7} {:>13}", "capture", "frames", "missed", "CPU ms/frame");
    let mut per_frame = Vec::new();
    for (name, run) in
        [("xcap (three X connections a frame)", xcap_run as fn(Duration) -> _), ("share (one X connection)", share_run)]
    {
        match run(length) {
            Ok(r) => {
                let ms = r.cpu.as_secs_f64() * 1e3 / f64::from(r.frames.max(1));
                per_frame.push(ms);
                println!("{name:<40} {:>7} {:>7} {ms:>13.2}", r.frames, expected.saturating_sub(r.frames));
                if let Some(e) = r.first_error {
                    println!("  {} captures failed; the first: {e}", r.failures);
                }
            }
            Err(e) => println!("{name:<40} cannot run: {e}"),
        }
    }
    if let [xcap, share] = per_frame[..] {
        println!("CPU per frame, xcap / share: {:.2}", xcap / share);
    }
}
