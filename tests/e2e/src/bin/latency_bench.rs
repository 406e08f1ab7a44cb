//! Microphone-to-speaker latency across two bots through the server, on PulseAudio
//! virtual devices: what a listener waits between a sound at one end and hearing it at
//! the other.
//!
//! Short 1 kHz bursts go into Alice's microphone once a second; Bob plays what he
//! receives on his speaker. Both the burst going in and Bob's speaker are looped into
//! one recording, so their onsets are compared on one clock (the loopbacks' own delay
//! is the same on both paths and cancels). Prints the median and 90th percentile.
//!
//! Run with `scripts/bench-media.sh`, or `cargo run --release -p confer-e2e --bin
//! latency-bench -- [--seconds N]` with the release binaries built and linked.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confer_e2e::devices::{self, pulse_env, record, Module};
use confer_e2e::*;

const BURST_MS: usize = 20;
const EVERY_MS: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: usize = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = temp_dir("latency-bench");
    let (_mic, _mic_sink) = devices::microphone("lat_mic");
    let _spk = devices::speaker("lat_spk");
    let _mix = devices::speaker("lat_mix");
    let _direct = Module::load(&["module-loopback", "source=lat_mic_in.monitor", "sink=lat_mix", "latency_msec=20"]);
    let _through = Module::load(&["module-loopback", "source=lat_spk.monitor", "sink=lat_mix", "latency_msec=20"]);
    let server = ServerProcess::start(dir.join("db.sqlite"));
    let room = create_room(&server, "latency", &[]);
    let env = pulse_env();
    let spawn = |name: &str, extra: &[&str]| {
        let t = token(&server, &room, name, &[]);
        let mut all = vec!["bot", "--url", server.url.as_str(), "--token", t.as_str()];
        all.extend_from_slice(extra);
        Bot::spawn_with_env(name, &all, &env)
    };
    let run_for = (seconds + 10).to_string();
    let mut alice = spawn("alice", &["--mic", "lat_mic", "--subscribe", "none", "--duration", &run_for]);
    alice.expect_event("published", Duration::from_secs(10), |_| true);
    let mut bob = spawn("bob", &["--speaker", "lat_spk", "--subscribe", "alice", "--duration", &run_for]);
    std::thread::sleep(Duration::from_secs(4));

    let mut player = Command::new("pacat")
        .args(["--playback", "-d", "lat_mic_in", "--format=s16le", "--rate=48000", "--channels=1", "--latency-msec=20"])
        .envs(pulse_env())
        .stdin(Stdio::piped())
        .spawn()
        .expect("pacat");
    let mut stdin = player.stdin.take().unwrap();
    let bursts = std::thread::spawn(move || {
        let started = Instant::now();
        for k in 0..seconds {
            let block: Vec<u8> = (0..48 * EVERY_MS)
                .map(|i| {
                    if i < 48 * BURST_MS {
                        ((i as f64 / 48_000.0 * 1000.0 * std::f64::consts::TAU).sin() * 0.5 * 32767.0) as i16
                    } else {
                        0
                    }
                })
                .flat_map(|s| s.to_le_bytes())
                .collect();
            if stdin.write_all(&block).is_err() {
                break;
            }
            let due = Duration::from_millis(((k + 1) * EVERY_MS) as u64);
            std::thread::sleep(due.saturating_sub(started.elapsed() + Duration::from_millis(200)));
        }
    });
    let mix = record("lat_mix", seconds as f64 + 1.0);
    let _ = bursts.join();
    let _ = player.kill();
    let _ = player.wait();

    let latencies = pair_onsets(&onsets(&mix));
    alice.kill();
    bob.kill();
    server.stop();
    if latencies.is_empty() {
        eprintln!("latency-bench: no burst came through ({} samples recorded)", mix.len());
        std::process::exit(1);
    }
    let mut sorted = latencies.clone();
    sorted.sort_unstable();
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!();
    println!("Microphone to speaker, two bots through the server ({} of {seconds} bursts heard)", sorted.len());
    println!();
    println!("| path                               | p50      | p90      | min      | max      |");
    println!("|------------------------------------|---------:|---------:|---------:|---------:|");
    println!(
        "| alice mic -> server -> bob speaker | {:>5} ms | {:>5} ms | {:>5} ms | {:>5} ms |",
        pick(0.5),
        pick(0.9),
        sorted[0],
        sorted[sorted.len() - 1]
    );
}

/// Times (ms) where the 1 ms envelope rises above -30 dBFS after at least 15 ms below.
fn onsets(pcm: &[i16]) -> Vec<usize> {
    let threshold = 32767.0 * 10f64.powf(-30.0 / 20.0);
    let mut out = Vec::new();
    let mut quiet_ms = usize::MAX / 2;
    for (ms, chunk) in pcm.chunks(48).enumerate() {
        let rms = (chunk.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / chunk.len() as f64).sqrt();
        if rms > threshold {
            if quiet_ms >= 15 {
                out.push(ms);
            }
            quiet_ms = 0;
        } else {
            quiet_ms += 1;
        }
    }
    out
}

/// Each burst shows twice in the mix: as it went in, then as Bob's speaker played it.
fn pair_onsets(onsets: &[usize]) -> Vec<usize> {
    let mut latencies = Vec::new();
    let mut i = 0;
    while i + 1 < onsets.len() {
        let gap = onsets[i + 1] - onsets[i];
        if gap < EVERY_MS - 100 {
            latencies.push(gap);
            i += 2;
        } else {
            i += 1;
        }
    }
    latencies
}
