//! The microphone: a cpal input stream on a thread of its own, delivering 10 ms mono
//! frames at [`RATE`] through the [`Processor`].
//!
//! A [`Keeper`] thread keeps the stream open through device failures, removals and
//! changes of the default: the call never notices beyond a short gap.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SizedSample};

use super::device::{DeviceChoice, Direction};
use super::keeper::{config_at_rate, stream_config, Keeper, Opener};
use super::processing::{FarEndReceiver, ProcessingConfig, Processor};
use super::{AudioError, FRAME, RATE};

/// Audio waiting beyond this (the reader fell behind) is dropped: latency over
/// completeness.
const MAX_BACKLOG: usize = RATE as usize / 5;

pub struct Microphone {
    raw: mpsc::Receiver<Vec<f32>>,
    pending: VecDeque<f32>,
    processor: Processor,
    keeper: Keeper,
}

impl Microphone {
    /// Starts capturing from `choice`. Fails only when no input device exists at all
    /// within a second; later losses are repaired in the background.
    pub fn open(
        choice: DeviceChoice,
        processing: ProcessingConfig,
        far_end: Option<FarEndReceiver>,
    ) -> Result<Self, AudioError> {
        let (tx, raw) = mpsc::sync_channel(64);
        let open: Opener = Box::new(move |dev, errors| open_stream(dev, tx.clone(), errors));
        let keeper = Keeper::start("microphone", Direction::Input, choice, open)?;
        Ok(Self { raw, pending: VecDeque::new(), processor: Processor::new(processing, far_end), keeper })
    }

    /// The device capturing now.
    pub fn device(&self) -> Option<String> {
        self.keeper.device()
    }

    /// Moves capture to another device, live (see [`super::DeviceSwitch`]).
    pub fn switch(&self) -> super::DeviceSwitch {
        self.keeper.switch()
    }

    pub fn processing(&self) -> ProcessingConfig {
        self.processor.config()
    }

    pub fn set_processing(&mut self, config: ProcessingConfig) {
        self.processor.set_config(config);
    }

    /// The next processed 10 ms frame ([`FRAME`] samples in -1..1), waiting at most
    /// `timeout` (`None` then: the device is silent or being replaced).
    pub fn read(&mut self, timeout: Duration) -> Option<Vec<f32>> {
        let deadline = Instant::now() + timeout;
        while self.pending.len() < FRAME {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.raw.recv_timeout(left) {
                Ok(chunk) => self.pending.extend(chunk),
                Err(_) => return None,
            }
        }
        if self.pending.len() > MAX_BACKLOG {
            let excess = self.pending.len() - FRAME;
            self.pending.drain(..excess);
        }
        let mut frame: Vec<f32> = self.pending.drain(..FRAME).collect();
        self.processor.capture(&mut frame);
        Some(frame)
    }
}

/// Opens an input stream on `dev` that sends mono [`RATE`] chunks to `tx`.
fn open_stream(
    dev: &cpal::Device,
    tx: mpsc::SyncSender<Vec<f32>>,
    errors: mpsc::Sender<String>,
) -> Result<cpal::Stream, AudioError> {
    let ranges: Vec<cpal::SupportedStreamConfigRange> =
        dev.supported_input_configs().map_err(|e| AudioError::Device(e.to_string()))?.collect();
    // 48 kHz mono where offered; else the device's default, resampled.
    let (config, format) = match config_at_rate(&ranges, 1) {
        Some(c) => c,
        None => {
            let supported = dev.default_input_config().map_err(|e| AudioError::Device(e.to_string()))?;
            (stream_config(&supported), supported.sample_format())
        }
    };
    let on_error = move |e: cpal::Error| {
        let _ = errors.send(e.to_string());
    };
    let stream = match format {
        cpal::SampleFormat::F32 => build::<f32>(dev, &config, tx, on_error),
        cpal::SampleFormat::I16 => build::<i16>(dev, &config, tx, on_error),
        cpal::SampleFormat::I32 => build::<i32>(dev, &config, tx, on_error),
        other => return Err(AudioError::Unsupported(format!("microphone sample format {other}"))),
    }?;
    stream.play().map_err(|e| AudioError::Device(e.to_string()))?;
    Ok(stream)
}

fn build<T>(
    dev: &cpal::Device,
    config: &cpal::StreamConfig,
    tx: mpsc::SyncSender<Vec<f32>>,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, AudioError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let mut resampler = Resampler::new(config.sample_rate, RATE);
    dev.build_input_stream::<T, _, _>(
        *config,
        move |data: &[T], _| {
            let mono = data
                .chunks(channels)
                .map(|frame| frame.iter().map(|&s| s.to_sample::<f32>()).sum::<f32>() / channels as f32);
            let chunk = resampler.process(mono);
            // Never block the audio thread: a full queue drops this chunk.
            let _ = tx.try_send(chunk);
        },
        on_error,
        Some(Duration::from_secs(2)),
    )
    .map_err(|e| AudioError::Device(e.to_string()))
}

/// Linear-interpolating sample-rate conversion, for devices that cannot run at
/// [`RATE`] (rare: PulseAudio, CoreAudio and WASAPI convert for us).
pub(crate) struct Resampler {
    step: f64,
    pos: f64,
    last: f32,
}

impl Resampler {
    pub(crate) fn new(from: u32, to: u32) -> Self {
        Self { step: f64::from(from) / f64::from(to), pos: 0.0, last: 0.0 }
    }

    pub(crate) fn process(&mut self, input: impl Iterator<Item = f32>) -> Vec<f32> {
        if self.step == 1.0 {
            return input.collect();
        }
        let input: Vec<f32> = input.collect();
        let mut out = Vec::with_capacity((input.len() as f64 / self.step) as usize + 1);
        // `pos` is measured from the sample before `input[0]` (`last`).
        while self.pos < input.len() as f64 {
            let i = self.pos.floor() as usize;
            let frac = (self.pos - i as f64) as f32;
            let a = if i == 0 { self.last } else { input[i - 1] };
            let b = input[i];
            out.push(a + (b - a) * frac);
            self.pos += self.step;
        }
        self.pos -= input.len() as f64;
        if let Some(&l) = input.last() {
            self.last = l;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_the_length_and_the_tone() {
        let mut r = Resampler::new(44_100, 48_000);
        let input: Vec<f32> =
            (0..44_100).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin()).collect();
        let out: Vec<f32> = input.chunks(441).flat_map(|c| r.process(c.iter().copied())).collect();
        assert!((out.len() as i64 - 48_000).abs() <= 2, "{}", out.len());
        let pcm: Vec<i16> = out.iter().map(|s| (s * 16000.0) as i16).collect();
        let hz = crate::tone::dominant_frequency(&pcm, 48_000).unwrap();
        assert!((hz - 440.0).abs() < 2.0, "{hz}");
        let mut same = Resampler::new(48_000, 48_000);
        assert_eq!(same.process([0.5, 0.25].into_iter()), vec![0.5, 0.25]);
    }
}
