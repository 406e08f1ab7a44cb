//! The frame-transport benchmark (`CONFER_BENCH_FRAMES=SECONDS confer`): the app
//! pushes synthetic video into its own window, 1 x 1280x720 and 4 x 640x360 tiles at
//! 30 fps, the view draws them and reports per tile what it delivered, and the app
//! prints a table with the CPU time and resident memory of its whole process tree (the
//! web view's processes included), then exits. `scripts/bench-frames.sh` runs it
//! under Xvfb.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confer_app_core::frames::FrameHub;
use confer_media::PatternSource;
use serde::{Deserialize, Serialize};

/// The tiles: (id, width, height).
const TILES: [(&str, usize, usize); 5] = [
    ("bench-720", 1280, 720),
    ("bench-360-1", 640, 360),
    ("bench-360-2", 640, 360),
    ("bench-360-3", 640, 360),
    ("bench-360-4", 640, 360),
];
const FPS: u64 = 30;

#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct BenchConfig {
    pub seconds: u32,
    pub tiles: Vec<String>,
}

/// What the view measured for one tile.
#[derive(Debug, Clone, Deserialize, specta::Type)]
pub struct TileResult {
    pub tile: String,
    pub width: u32,
    pub height: u32,
    /// Frames that reached the view, and frames it drew.
    pub received: u32,
    pub frames: u32,
    pub seconds: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub renderer: String,
}

pub fn config() -> Option<BenchConfig> {
    let seconds = std::env::var("CONFER_BENCH_FRAMES").ok()?.parse().ok()?;
    Some(BenchConfig { seconds, tiles: TILES.iter().map(|(t, _, _)| (*t).to_owned()).collect() })
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Feeds every tile at 30 fps on threads of their own, for the app's lifetime.
pub fn start_producers(hub: Arc<FrameHub>) {
    for (tile, w, h) in TILES {
        let hub = hub.clone();
        let spawned = std::thread::Builder::new().name(format!("bench-{tile}")).spawn(move || {
            let Ok(mut source) = PatternSource::new(w, h) else { return };
            let period = Duration::from_millis(1000 / FPS);
            let mut next = Instant::now();
            loop {
                let (picture, _) = source.next_frame(unix_ms());
                hub.publish(tile, Arc::new(picture), unix_ms());
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        if let Err(e) = spawned {
            eprintln!("bench: cannot start a producer: {e}");
        }
    }
}

/// CPU seconds (user + system) and resident kilobytes of this process and all its
/// descendants (Linux; zeros elsewhere).
pub fn process_tree_usage() -> (f64, u64) {
    let Ok(entries) = std::fs::read_dir("/proc") else { return (0.0, 0) };
    let mut procs: Vec<(u32, u32, f64, u64)> = Vec::new();
    let ticks = 100.0; // USER_HZ on Linux
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command name, which may hold spaces: state ppid ... utime(14) stime(15).
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(ppid), Some(ut), Some(st)) = (f.get(1), f.get(11), f.get(12)) else { continue };
        let cpu = (ut.parse::<f64>().unwrap_or(0.0) + st.parse::<f64>().unwrap_or(0.0)) / ticks;
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        procs.push((pid, ppid.parse().unwrap_or(0), cpu, rss));
    }
    let mut tree = vec![std::process::id()];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(procs.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    procs.iter().filter(|p| tree.contains(&p.0)).fold((0.0, 0), |(c, r), p| (c + p.2, r + p.3))
}

/// The table the benchmark prints.
pub fn table(results: &[TileResult], cpu_seconds: f64, wall_seconds: f64, rss_kb: u64) -> String {
    let mut out = String::new();
    out.push_str("\nFrame transport into the real window (binary WebSocket, latest frame wins)\n\n");
    out.push_str("| tile        | size      | renderer | delivered fps | drawn fps | latency p50 | latency p95 |\n");
    out.push_str("|-------------|-----------|----------|--------------:|----------:|------------:|------------:|\n");
    for r in results {
        out.push_str(&format!(
            "| {:<11} | {:>4}x{:<4} | {:<8} | {:>13.1} | {:>9.1} | {:>8.1} ms | {:>8.1} ms |\n",
            r.tile,
            r.width,
            r.height,
            r.renderer,
            r.received as f64 / r.seconds.max(0.001),
            r.frames as f64 / r.seconds.max(0.001),
            r.latency_p50_ms,
            r.latency_p95_ms
        ));
    }
    out.push_str(&format!(
        "\nWhole process tree (app + web view): CPU {:.0} % of one core over {:.0} s, resident memory {:.0} MiB\n",
        100.0 * cpu_seconds / wall_seconds.max(0.001),
        wall_seconds,
        rss_kb as f64 / 1024.0
    ));
    out
}
