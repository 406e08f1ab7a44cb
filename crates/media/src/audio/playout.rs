//! The speaker: remote audio streams, each through its own [`JitterBuffer`], mixed and
//! played with cpal on the chosen output, and handed to the echo canceller as the far
//! end.
//!
//! The output device's clock drives everything: its callback pulls from the mixer,
//! which pulls 20 ms frames from each stream's jitter buffer as needed. Like the
//! microphone, a [`Keeper`] thread keeps the device open through failures and changes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SizedSample};

use super::device::{DeviceChoice, Direction};
use super::jitter::{JitterBuffer, JitterStats};
use super::keeper::{config_at_rate, Keeper, Opener};
use super::processing::FarEndSender;
use super::{AudioError, FRAME, RATE};

struct Stream {
    buffer: JitterBuffer,
    /// Decoded samples not played yet.
    pcm: VecDeque<f32>,
    volume: f32,
}

/// The remote streams being played.
#[derive(Default)]
pub struct Mixer {
    streams: Mutex<HashMap<u64, Stream>>,
    next_id: AtomicU64,
}

impl Mixer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Stream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills `out` (mono, [`RATE`]) with the sum of all streams.
    pub fn mix(&self, out: &mut [f32]) {
        out.fill(0.0);
        let mut streams = self.lock();
        for s in streams.values_mut() {
            while s.pcm.len() < out.len() {
                let frame = s.buffer.pull();
                s.pcm.extend(frame.iter().map(|&x| f32::from(x) / 32768.0));
            }
            let n = out.len();
            for (o, x) in out.iter_mut().zip(s.pcm.drain(..n)) {
                *o += x * s.volume;
            }
        }
        for o in out.iter_mut() {
            *o = o.clamp(-1.0, 1.0);
        }
    }

    /// Adds a stream to the mix; it leaves when the handle is dropped.
    pub fn add(self: &Arc<Self>) -> Result<RemoteAudio, AudioError> {
        let buffer = JitterBuffer::new().map_err(|e| AudioError::Device(e.to_string()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Stream { buffer, pcm: VecDeque::new(), volume: 1.0 });
        Ok(RemoteAudio { id, mixer: self.clone() })
    }
}

/// One remote stream in the mix: push its Opus packets as they arrive.
pub struct RemoteAudio {
    id: u64,
    mixer: Arc<Mixer>,
}

impl RemoteAudio {
    pub fn push(&self, rtp_timestamp: u32, arrival: Instant, packet: Vec<u8>) {
        if let Some(s) = self.mixer.lock().get_mut(&self.id) {
            s.buffer.push(rtp_timestamp, arrival, packet);
        }
    }

    /// 0 mutes the stream locally, 1 is as sent.
    pub fn set_volume(&self, volume: f32) {
        if let Some(s) = self.mixer.lock().get_mut(&self.id) {
            s.volume = volume.clamp(0.0, 4.0);
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.mixer.lock().get(&self.id).map(|s| s.buffer.stats).unwrap_or_default()
    }
}

impl Drop for RemoteAudio {
    fn drop(&mut self) {
        self.mixer.lock().remove(&self.id);
    }
}

/// Plays the mix on an output device.
pub struct Speaker {
    mixer: Arc<Mixer>,
    keeper: Keeper,
}

impl Speaker {
    /// Starts playing on `choice`; `far_end` receives what is played, for the echo
    /// canceller. Fails only when no output device exists at all.
    pub fn open(choice: DeviceChoice, far_end: Option<FarEndSender>) -> Result<Self, AudioError> {
        let mixer = Arc::new(Mixer::default());
        let m = mixer.clone();
        let far_end = Arc::new(far_end);
        let open: Opener = Box::new(move |dev, errors| open_stream(dev, m.clone(), far_end.clone(), errors));
        let keeper = Keeper::start("speaker", Direction::Output, choice, open)?;
        Ok(Self { mixer, keeper })
    }

    pub fn mixer(&self) -> &Arc<Mixer> {
        &self.mixer
    }

    /// Adds a remote stream to what is played.
    pub fn add_stream(&self) -> Result<RemoteAudio, AudioError> {
        self.mixer.add()
    }

    pub fn device(&self) -> Option<String> {
        self.keeper.device()
    }

    /// Moves playback to another device, live (see [`super::DeviceSwitch`]).
    pub fn switch(&self) -> super::DeviceSwitch {
        self.keeper.switch()
    }
}

fn open_stream(
    dev: &cpal::Device,
    mixer: Arc<Mixer>,
    far_end: Arc<Option<FarEndSender>>,
    errors: mpsc::Sender<String>,
) -> Result<cpal::Stream, AudioError> {
    let ranges: Vec<cpal::SupportedStreamConfigRange> =
        dev.supported_output_configs().map_err(|e| AudioError::Device(e.to_string()))?.collect();
    // Stereo where offered (some mono outputs play on one side only).
    let (config, format) = config_at_rate(&ranges, 2)
        .ok_or_else(|| AudioError::Unsupported(format!("speaker {dev} cannot play at {RATE} Hz")))?;
    let on_error = move |e: cpal::Error| {
        let _ = errors.send(e.to_string());
    };
    let stream = match format {
        cpal::SampleFormat::F32 => build::<f32>(dev, &config, mixer, far_end, on_error),
        cpal::SampleFormat::I16 => build::<i16>(dev, &config, mixer, far_end, on_error),
        cpal::SampleFormat::I32 => build::<i32>(dev, &config, mixer, far_end, on_error),
        other => return Err(AudioError::Unsupported(format!("speaker sample format {other}"))),
    }?;
    stream.play().map_err(|e| AudioError::Device(e.to_string()))?;
    Ok(stream)
}

fn build<T>(
    dev: &cpal::Device,
    config: &cpal::StreamConfig,
    mixer: Arc<Mixer>,
    far_end: Arc<Option<FarEndSender>>,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, AudioError>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    let mut mono = Vec::new();
    // Far-end audio goes to the canceller in whole 10 ms frames.
    let mut far = Vec::with_capacity(FRAME);
    dev.build_output_stream::<T, _, _>(
        *config,
        move |data: &mut [T], _| {
            mono.resize(data.len() / channels, 0.0);
            mixer.mix(&mut mono);
            for (frame, &x) in data.chunks_mut(channels).zip(&mono) {
                frame.fill(T::from_sample(x));
            }
            if let Some(sender) = far_end.as_ref() {
                for &x in &mono {
                    far.push(x);
                    if far.len() == FRAME {
                        sender.send(std::mem::replace(&mut far, Vec::with_capacity(FRAME)));
                    }
                }
            }
        },
        on_error,
        Some(Duration::from_secs(2)),
    )
    .map_err(|e| AudioError::Device(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opus::{OpusConfig, OpusEncoder, FRAME_SAMPLES, SAMPLE_RATE};
    use crate::tone::{dominant_frequency, ToneSource};

    #[test]
    fn two_streams_mix_and_a_dropped_one_leaves() {
        let mixer = Arc::new(Mixer::default());
        let (a, b) = (mixer.add().unwrap(), mixer.add().unwrap());
        let t0 = Instant::now();
        let mut tones = [ToneSource::new(440.0, SAMPLE_RATE), ToneSource::new(660.0, SAMPLE_RATE)];
        let mut encoders =
            [OpusEncoder::new(OpusConfig::default()).unwrap(), OpusEncoder::new(OpusConfig::default()).unwrap()];
        let mut out = vec![0f32; 48_000];
        // Packets arrive every 20 ms while the device pulls 10 ms at a time.
        for (i, chunk) in out.chunks_mut(960).enumerate() {
            let at = t0 + Duration::from_millis(i as u64 * 20);
            for (k, stream) in [&a, &b].into_iter().enumerate() {
                stream.push(i as u32 * 960, at, encoders[k].encode(&tones[k].next_block(FRAME_SAMPLES)).unwrap());
            }
            let (first, second) = chunk.split_at_mut(480);
            mixer.mix(first);
            mixer.mix(second);
        }
        let pcm: Vec<i16> = out[24_000..].iter().map(|&x| (x * 32767.0) as i16).collect();
        let found = dominant_frequency(&pcm, SAMPLE_RATE).unwrap();
        assert!((found - 440.0).abs() < 3.0 || (found - 660.0).abs() < 3.0, "{found}");
        assert!(a.stats().decoded > 40 && b.stats().decoded > 40);
        drop(b);
        assert_eq!(mixer.lock().len(), 1);
    }
}
