//! Short interface sounds (someone joined, someone left, a message) played with rodio
//! on the chosen output, beside the call's own audio.
//!
//! The sounds are synthesized (two short notes each), so nothing ships as a file. A
//! thread owns the output (cpal streams may not move between threads) and opens it on
//! the first sound, so an app that never plays one never holds the device.

use std::sync::mpsc;
use std::time::Duration;

use rodio::source::{SineWave, Source};

use super::device::{self, DeviceChoice, Direction};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sound {
    Joined,
    Left,
    Message,
}

impl Sound {
    /// (frequency, start ms) of its two notes.
    fn notes(self) -> [(f32, u64); 2] {
        match self {
            Sound::Joined => [(660.0, 0), (880.0, 110)],
            Sound::Left => [(880.0, 0), (660.0, 110)],
            Sound::Message => [(990.0, 0), (990.0, 90)],
        }
    }
}

const NOTE: Duration = Duration::from_millis(90);
const VOLUME: f32 = 0.15;

pub struct UiSounds {
    tx: mpsc::Sender<Sound>,
}

impl UiSounds {
    pub fn new(output: DeviceChoice) -> Self {
        let (tx, rx) = mpsc::channel::<Sound>();
        let spawned = std::thread::Builder::new().name("ui-sounds".into()).spawn(move || {
            let mut sink: Option<rodio::MixerDeviceSink> = None;
            for sound in rx {
                if sink.is_none() {
                    sink = open(&output);
                }
                let Some(s) = &sink else { continue };
                for (hz, at) in sound.notes() {
                    let note = SineWave::new(hz)
                        .take_duration(NOTE)
                        .fade_in(Duration::from_millis(8))
                        .amplify(VOLUME)
                        .delay(Duration::from_millis(at));
                    s.mixer().add(note);
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no interface sounds");
        }
        Self { tx }
    }

    /// Plays a sound without waiting for it.
    pub fn play(&self, sound: Sound) {
        let _ = self.tx.send(sound);
    }
}

fn open(output: &DeviceChoice) -> Option<rodio::MixerDeviceSink> {
    let host = device::host();
    let opened = device::resolve(&host, Direction::Output, output)
        .map_err(|e| e.to_string())
        .and_then(|(dev, _)| rodio::DeviceSinkBuilder::from_device(dev).map_err(|e| e.to_string()))
        .and_then(|b| b.open_stream().map_err(|e| e.to_string()));
    match opened {
        Ok(mut s) => {
            s.log_on_drop(false);
            Some(s)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot play interface sounds");
            None
        }
    }
}
