//! CPU time per frame of Confer's codecs: VP8 and H.264 at 1280x720, 640x360 and
//! 320x180 (the three simulcast layers of a 720p camera), and Opus for one 20 ms
//! frame, encoding and decoding. Prints a table of medians and 90th percentiles.
//!
//! Run with `scripts/bench-media.sh` (release build); `--frames N` sets how many video
//! frames each row encodes (default 150).
//!
//! CPU time is the thread's own (`CLOCK_THREAD_CPUTIME_ID`), so a busy machine slows
//! the wall clock but not the numbers much; every encoder runs on one thread.

use confer_media::h264::{H264Config, H264Decoder, H264Encoder};
use confer_media::opus::{OpusConfig, OpusDecoder, OpusEncoder, FRAME_SAMPLES, SAMPLE_RATE};
use confer_media::vp8::{Vp8Config, Vp8Decoder, Vp8Encoder};
use confer_media::{I420Frame, PatternSource, ToneSource};

fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// (median, p90) of a list of microseconds.
fn summary(mut us: Vec<f64>) -> (f64, f64) {
    us.sort_by(f64::total_cmp);
    let pick = |q: f64| us.get(((us.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    (pick(0.5), pick(0.9))
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t0 = thread_cpu_us();
    let out = f();
    (out, thread_cpu_us() - t0)
}

struct Row {
    what: String,
    encode: (f64, f64),
    decode: (f64, f64),
    bytes: f64,
}

fn frames(width: usize, height: usize, n: usize) -> Vec<I420Frame> {
    let mut source = PatternSource::new(width, height).expect("a usable size");
    (0..n).map(|i| source.next_frame(i as u64 * 33).0).collect()
}

fn vp8(width: usize, height: usize, n: usize) -> Row {
    let kbps = ((width * height * 30) / 10_000).clamp(100, 2500) as u32;
    let mut enc = Vp8Encoder::new(Vp8Config { width, height, bitrate_kbps: kbps, threads: 1 }).unwrap();
    let mut dec = Vp8Decoder::new().unwrap();
    let (mut e, mut d, mut bytes) = (Vec::new(), Vec::new(), 0usize);
    for (i, f) in frames(width, height, n).iter().enumerate() {
        let (out, us) = timed(|| enc.encode(f, i as i64 * 33).unwrap());
        e.push(us);
        for packet in out {
            bytes += packet.data.len();
            let (_, us) = timed(|| dec.decode(&packet.data).unwrap());
            d.push(us);
        }
    }
    Row {
        what: format!("VP8 {width}x{height}"),
        encode: summary(e),
        decode: summary(d),
        bytes: bytes as f64 / n as f64,
    }
}

fn h264(width: usize, height: usize, n: usize) -> Row {
    let kbps = ((width * height * 30) / 10_000).clamp(100, 2500) as u32;
    let mut enc = H264Encoder::new(H264Config { bitrate_kbps: kbps, max_fps: 30.0, screen: false }).unwrap();
    let mut dec = H264Decoder::new().unwrap();
    let (mut e, mut d, mut bytes) = (Vec::new(), Vec::new(), 0usize);
    for (i, f) in frames(width, height, n).iter().enumerate() {
        let (out, us) = timed(|| enc.encode(f, i as i64 * 33).unwrap());
        e.push(us);
        if let Some(packet) = out {
            bytes += packet.data.len();
            let (_, us) = timed(|| dec.decode(&packet.data).unwrap());
            d.push(us);
        }
    }
    Row {
        what: format!("H.264 {width}x{height}"),
        encode: summary(e),
        decode: summary(d),
        bytes: bytes as f64 / n as f64,
    }
}

fn opus(n: usize) -> Row {
    let mut tone = ToneSource::new(440.0, SAMPLE_RATE);
    let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
    let mut dec = OpusDecoder::new().unwrap();
    let (mut e, mut d, mut bytes) = (Vec::new(), Vec::new(), 0usize);
    for _ in 0..n {
        let pcm = tone.next_block(FRAME_SAMPLES);
        let (packet, us) = timed(|| enc.encode(&pcm).unwrap());
        e.push(us);
        bytes += packet.len();
        let (_, us) = timed(|| dec.decode(&packet).unwrap());
        d.push(us);
    }
    Row {
        what: "Opus 20 ms, 48 kHz mono".into(),
        encode: summary(e),
        decode: summary(d),
        bytes: bytes as f64 / n as f64,
    }
}

fn main() {
    let mut n = 150;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--frames") {
        n = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(n);
    }
    let mut rows = Vec::new();
    for (w, h) in [(1280, 720), (640, 360), (320, 180)] {
        rows.push(vp8(w, h, n));
        rows.push(h264(w, h, n));
    }
    rows.push(opus(n * 10));
    println!("CPU time per frame, one thread ({n} video frames, {} audio frames per row)", n * 10);
    println!();
    println!("| codec and size            | encode p50 | encode p90 | decode p50 | decode p90 | bytes/frame |");
    println!("|---------------------------|-----------:|-----------:|-----------:|-----------:|------------:|");
    for r in rows {
        println!(
            "| {:<25} | {:>7.2} ms | {:>7.2} ms | {:>7.2} ms | {:>7.2} ms | {:>11.0} |",
            r.what,
            r.encode.0 / 1000.0,
            r.encode.1 / 1000.0,
            r.decode.0 / 1000.0,
            r.decode.1 / 1000.0,
            r.bytes
        );
    }
}
