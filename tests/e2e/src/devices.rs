//! Virtual devices for the device tests: a PulseAudio daemon of the tests' own with
//! null sinks as speakers and virtual sources as microphones, tone players and
//! recorders on them, and an Xvfb display showing a known picture.
//!
//! Everything is real to the programs under test: the bots open these devices through
//! PulseAudio as they would a sound card, and capture the X display as a desktop.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Where the tests' sound server listens.
fn runtime_dir() -> PathBuf {
    std::env::temp_dir().join("confer-e2e-pulse")
}

/// The environment a program needs to reach the tests' sound server.
pub fn pulse_env() -> Vec<(String, String)> {
    let dir = runtime_dir();
    vec![
        ("PULSE_SERVER".into(), format!("unix:{}", dir.join("native").display())),
        ("PULSE_RUNTIME_PATH".into(), dir.display().to_string()),
    ]
}

fn pactl(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("pactl").args(args).envs(pulse_env()).output()
}

/// Starts the tests' PulseAudio daemon unless it runs (it outlives the tests, like a
/// desktop's).
pub fn pulse() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        if pactl(&["info"]).is_ok_and(|o| o.status.success()) {
            return;
        }
        std::fs::create_dir_all(runtime_dir()).unwrap();
        let status = Command::new("pulseaudio")
            .args(["-D", "--exit-idle-time=-1", "--disallow-exit", "--disable-shm", "-n"])
            .args([
                "--load=module-native-protocol-unix auth-anonymous=1",
                "--load=module-null-sink sink_name=confer_idle",
            ])
            .envs(pulse_env())
            .stderr(Stdio::null())
            .status()
            .expect("pulseaudio is installed (scripts/setup.sh)");
        assert!(status.success(), "pulseaudio did not start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pactl(&["info"]).is_ok_and(|o| o.status.success()) {
            assert!(Instant::now() < deadline, "pulseaudio did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// A loaded module, unloaded on drop.
pub struct Module(String);

impl Module {
    pub fn load(args: &[&str]) -> Self {
        let out = pactl(&[&["load-module"], args].concat()).unwrap();
        assert!(out.status.success(), "pactl load-module {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Self(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn unload(self) {}
}

impl Drop for Module {
    fn drop(&mut self) {
        let _ = pactl(&["unload-module", &self.0]);
    }
}

/// A speaker: a null sink named `name`; what is played on it can be recorded from
/// `name.monitor`.
pub fn speaker(name: &str) -> Module {
    pulse();
    Module::load(&["module-null-sink", &format!("sink_name={name}"), "rate=48000"])
}

/// A microphone named `name` that hears what is played on the sink `name_in`. Drop
/// both to pull the microphone out.
pub fn microphone(name: &str) -> (Module, Module) {
    pulse();
    let sink = Module::load(&["module-null-sink", &format!("sink_name={name}_in"), "rate=48000"]);
    let source =
        Module::load(&["module-virtual-source", &format!("source_name={name}"), &format!("master={name}_in.monitor")]);
    (source, sink)
}

/// Plays a sine tone into a sink until dropped.
pub struct TonePlayer {
    child: Child,
    stop: Arc<AtomicBool>,
}

impl TonePlayer {
    pub fn start(sink: &str, hz: f64, amplitude: f64) -> Self {
        let mut child = Command::new("pacat")
            .args(["--playback", "-d", sink, "--format=s16le", "--rate=48000", "--channels=1", "--latency-msec=20"])
            .envs(pulse_env())
            .stdin(Stdio::piped())
            .spawn()
            .expect("pacat is installed (scripts/setup.sh)");
        let mut stdin = child.stdin.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut n: u64 = 0;
            let started = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                // 20 ms at a time, in real time (pacat would otherwise buffer seconds).
                let block: Vec<u8> = (0..960)
                    .map(|i| {
                        let t = (n + i) as f64 / 48_000.0;
                        ((t * hz * std::f64::consts::TAU).sin() * amplitude * 32767.0) as i16
                    })
                    .flat_map(|s| s.to_le_bytes())
                    .collect();
                n += 960;
                if stdin.write_all(&block).is_err() {
                    break;
                }
                let due = Duration::from_secs_f64(n as f64 / 48_000.0);
                std::thread::sleep(due.saturating_sub(started.elapsed() + Duration::from_millis(40)));
            }
        });
        Self { child, stop }
    }
}

impl Drop for TonePlayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records `seconds` of what is played on a sink (mono, 48 kHz); less if the sink's
/// monitor gives less within `seconds` + 5 s (an idle null sink may pause it).
pub fn record(sink: &str, seconds: f64) -> Vec<i16> {
    let mut child = Command::new("timeout")
        .args([&format!("{}", seconds.ceil() as u64 + 5), "parec"])
        .args(["-d", &format!("{sink}.monitor"), "--format=s16le", "--rate=48000", "--channels=1", "--latency-msec=20"])
        .envs(pulse_env())
        .stdout(Stdio::piped())
        .spawn()
        .expect("parec is installed (scripts/setup.sh)");
    let mut stdout = child.stdout.take().unwrap();
    let want = (seconds * 48_000.0) as usize * 2;
    let mut bytes = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match stdout.read(&mut bytes[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    bytes[..got].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// An Xvfb display, stopped on drop.
pub struct Display {
    child: Child,
    viewer: Option<Child>,
    pub name: String,
}

impl Display {
    /// Starts an empty `width`x`height` display.
    pub fn blank(width: usize, height: usize) -> Self {
        // A display number nobody holds (an X server leaves a lock file while it runs).
        let number = (90 + std::process::id() % 100..400)
            .find(|n| !std::path::Path::new(&format!("/tmp/.X{n}-lock")).exists())
            .expect("a free display number");
        let name = format!(":{number}");
        let child = Command::new("Xvfb")
            .args([&name, "-screen", "0", &format!("{width}x{height}x24"), "-nolisten", "tcp"])
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed (scripts/setup.sh)");
        let display = Self { child, name, viewer: None };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Command::new("xdpyinfo")
            .args(["-display", &display.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "Xvfb {} did not start", display.name);
            std::thread::sleep(Duration::from_millis(100));
        }
        display
    }

    /// Starts a `width`x`height` display showing `picture` (packed RGB) on its root window.
    pub fn showing(width: usize, height: usize, picture: &[u8], dir: &std::path::Path) -> Self {
        let mut display = Self::blank(width, height);
        let ppm = dir.join("screen.ppm");
        let mut data = format!("P6\n{width} {height}\n255\n").into_bytes();
        data.extend_from_slice(picture);
        std::fs::write(&ppm, data).unwrap();
        // A borderless window at the origin as large as the screen (no window manager
        // to decorate or move it), kept open while the display lives.
        display.viewer = Some(
            Command::new("display")
                .args(["-geometry", "+0+0", "-borderwidth", "0", ppm.to_str().unwrap()])
                .env("DISPLAY", &display.name)
                .stderr(Stdio::null())
                .spawn()
                .expect("ImageMagick's display is installed (scripts/setup.sh)"),
        );
        std::thread::sleep(Duration::from_millis(1500));
        display
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(mut v) = self.viewer.take() {
            let _ = v.kill();
            let _ = v.wait();
        }
        // SIGTERM, so that the server removes its lock file.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
