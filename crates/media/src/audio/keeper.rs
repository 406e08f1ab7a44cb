//! The thread that keeps an audio stream open, for the microphone and the speaker
//! alike, whatever happens to devices: if the device fails or disappears it reopens on
//! the default after a short wait (retrying while there is no device at all); when the
//! choice is "default" and the system default changes, it moves to the new default;
//! when a chosen device that was missing comes back, it moves back to it; when the user
//! picks another device ([`DeviceSwitch`]), it moves there within a tenth of a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::device::{self, DeviceChoice, Direction};
use super::{AudioError, RATE};

/// How often the thread looks for a changed default or a returned device.
const RECHECK: Duration = Duration::from_secs(2);
/// The wait before reopening after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// Opens a stream on a device; stream errors go to the sender.
pub(super) type Opener = Box<dyn FnMut(&cpal::Device, mpsc::Sender<String>) -> Result<cpal::Stream, AudioError> + Send>;

/// A running keeper: stops (closing the stream) when dropped.
pub(super) struct Keeper {
    stop: Arc<AtomicBool>,
    device: Arc<Mutex<Option<String>>>,
    switch: DeviceSwitch,
    thread: Option<JoinHandle<()>>,
}

/// Moves a running stream to another device, live: the next tenth of a second it
/// closes the current one and opens the new choice (a gap of a few tens of ms). A
/// choice that cannot open falls back to the default, as a vanished device does.
#[derive(Clone, Debug)]
pub struct DeviceSwitch {
    wanted: Arc<Mutex<Option<DeviceChoice>>>,
}

impl DeviceSwitch {
    pub fn switch_to(&self, choice: DeviceChoice) {
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = Some(choice);
    }

    fn take(&self) -> Option<DeviceChoice> {
        self.wanted.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Keeper {
    /// Starts the thread and waits until a stream is open; fails only when none can be
    /// opened at all (no device of that direction) within a few seconds.
    pub(super) fn start(
        name: &str,
        direction: Direction,
        choice: DeviceChoice,
        open: Opener,
    ) -> Result<Self, AudioError> {
        let stop = Arc::new(AtomicBool::new(false));
        let device = Arc::new(Mutex::new(None));
        let switch = DeviceSwitch { wanted: Arc::default() };
        let (opened_tx, opened_rx) = mpsc::channel();
        let (s, d, w) = (stop.clone(), device.clone(), switch.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(direction, choice, open, s, d, w, opened_tx))
            .map_err(|e| AudioError::Device(e.to_string()))?;
        let keeper = Self { stop, device, switch, thread: Some(thread) };
        match opened_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(keeper),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AudioError::Device(format!("the {name} did not open within 5 s"))),
        }
    }

    /// The device in use now.
    pub(super) fn device(&self) -> Option<String> {
        self.device.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A handle that moves this stream to another device.
    pub(super) fn switch(&self) -> DeviceSwitch {
        self.switch.clone()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    direction: Direction,
    mut choice: DeviceChoice,
    mut open: Opener,
    stop: Arc<AtomicBool>,
    device_name: Arc<Mutex<Option<String>>>,
    switch: DeviceSwitch,
    opened: mpsc::Sender<Result<(), AudioError>>,
) {
    let host = device::host();
    let mut opened = Some(opened);
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let (errors_tx, errors_rx) = mpsc::channel::<String>();
        let attempt = device::resolve(&host, direction, &choice)
            .and_then(|(dev, chosen)| open(&dev, errors_tx).map(|s| (s, dev, chosen)));
        let (stream, dev, chosen) = match attempt {
            Ok(o) => o,
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(?direction, error = %e, "cannot open an audio device; retrying");
                }
                failures += 1;
                // The caller waits for the first attempt and one retry.
                if failures > 1 {
                    if let Some(o) = opened.take() {
                        let _ = o.send(Err(e));
                    }
                }
                std::thread::sleep(RETRY * 2);
                continue;
            }
        };
        failures = 0;
        let name = dev.to_string();
        tracing::info!(?direction, device = %name, chosen, "audio device open");
        *device_name.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.clone());
        if let Some(o) = opened.take() {
            let _ = o.send(Ok(()));
        }
        let default_at_open = device::default_id(&host, direction);
        let mut last_check = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(error) = errors_rx.recv_timeout(Duration::from_millis(100)) {
                tracing::warn!(?direction, device = %name, %error, "audio device failed; reopening");
                std::thread::sleep(RETRY);
                break;
            }
            if let Some(next) = switch.take() {
                tracing::info!(?direction, from = %name, to = ?next, "audio switching device");
                choice = next;
                break;
            }
            if last_check.elapsed() >= RECHECK {
                last_check = Instant::now();
                let moved = match &choice {
                    DeviceChoice::Default => device::default_id(&host, direction) != default_at_open,
                    // Standing in for a missing device: is it back?
                    DeviceChoice::Named(_) if !chosen => {
                        device::resolve(&host, direction, &choice).is_ok_and(|(_, chosen)| chosen)
                    }
                    DeviceChoice::Named(_) => false,
                };
                if moved {
                    tracing::info!(?direction, device = %name, "audio moving to another device");
                    break;
                }
            }
        }
        drop(stream);
    }
}

/// The stream configuration to ask for: [`RATE`] in a sample format we handle, with
/// `channels` preferred (1 for capture, 2 for playback), 10 ms periods where the device
/// allows; `None` if the device cannot run at [`RATE`].
pub(super) fn config_at_rate(
    ranges: &[cpal::SupportedStreamConfigRange],
    channels: u16,
) -> Option<(cpal::StreamConfig, cpal::SampleFormat)> {
    let usable = |f: cpal::SampleFormat| {
        matches!(f, cpal::SampleFormat::F32 | cpal::SampleFormat::I16 | cpal::SampleFormat::I32)
    };
    let supported = ranges
        .iter()
        .filter(|r| usable(r.sample_format()) && r.min_sample_rate() <= RATE && RATE <= r.max_sample_rate())
        .min_by_key(|r| (r.channels().abs_diff(channels), r.sample_format() != cpal::SampleFormat::F32))
        .map(|r| r.with_sample_rate(RATE))?;
    Some((stream_config(&supported), supported.sample_format()))
}

pub(super) fn stream_config(supported: &cpal::SupportedStreamConfig) -> cpal::StreamConfig {
    cpal::StreamConfig {
        channels: supported.channels(),
        sample_rate: supported.sample_rate(),
        buffer_size: match supported.buffer_size() {
            cpal::SupportedBufferSize::Range { min, max } if *min <= 480 && 480 <= *max => cpal::BufferSize::Fixed(480),
            _ => cpal::BufferSize::Default,
        },
    }
}
