//! Echo cancellation, noise suppression and gain control of the microphone signal,
//! each switchable, on WebRTC's audio processing (the `sonora` port).
//!
//! The canceller learns the echo path from the *far end*: every 10 ms frame the
//! speaker plays is handed to [`Processor::render`] before the microphone frames that
//! may contain its echo reach [`Processor::capture`]. [`far_end`] makes the channel
//! that carries those frames from the output callback to the capture side.

use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use sonora::config::{EchoCanceller, GainController2, HighPassFilter, NoiseSuppression};
use sonora::{AudioProcessing, Config, StreamConfig};

use super::{FRAME, RATE};

/// Which processing the microphone signal gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessingConfig {
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub gain_control: bool,
}

impl Default for ProcessingConfig {
    /// Speech in a call: everything on.
    fn default() -> Self {
        Self { echo_cancellation: true, noise_suppression: true, gain_control: true }
    }
}

impl ProcessingConfig {
    /// Music mode: the signal as the microphone hears it (use headphones).
    pub fn music() -> Self {
        Self { echo_cancellation: false, noise_suppression: false, gain_control: false }
    }

    fn any(&self) -> bool {
        self.echo_cancellation || self.noise_suppression || self.gain_control
    }

    fn to_sonora(self) -> Config {
        Config {
            high_pass_filter: self.any().then(HighPassFilter::default),
            echo_canceller: self.echo_cancellation.then(EchoCanceller::default),
            noise_suppression: self.noise_suppression.then(NoiseSuppression::default),
            gain_controller2: self
                .gain_control
                .then(|| GainController2 { adaptive_digital: Some(Default::default()), ..Default::default() }),
            ..Default::default()
        }
    }
}

/// Frames of what the speaker played, on their way to the echo canceller.
pub struct FarEndSender(mpsc::SyncSender<Vec<f32>>);
pub struct FarEndReceiver(mpsc::Receiver<Vec<f32>>);

/// About a second of far-end audio may wait; beyond that (nobody capturing) frames are
/// dropped rather than blocking the speaker.
pub fn far_end() -> (FarEndSender, FarEndReceiver) {
    let (tx, rx) = mpsc::sync_channel(100);
    (FarEndSender(tx), FarEndReceiver(rx))
}

impl FarEndSender {
    /// Never blocks (it runs in the audio callback).
    pub fn send(&self, frame: Vec<f32>) {
        let _ = self.0.try_send(frame);
    }
}

impl FarEndReceiver {
    fn drain(&self) -> impl Iterator<Item = Vec<f32>> + '_ {
        self.0.try_iter()
    }
}

/// The microphone's processing, fed with 10 ms mono frames at [`RATE`].
pub struct Processor {
    config: ProcessingConfig,
    apm: Option<AudioProcessing>,
    far_end: Option<FarEndReceiver>,
}

impl Processor {
    pub fn new(config: ProcessingConfig, far_end: Option<FarEndReceiver>) -> Self {
        let mut p = Self { config, apm: None, far_end };
        p.set_config(config);
        p
    }

    pub fn config(&self) -> ProcessingConfig {
        self.config
    }

    /// Switches processing on the fly; the canceller keeps what it learned while on.
    pub fn set_config(&mut self, config: ProcessingConfig) {
        self.config = config;
        if !config.any() {
            self.apm = None;
            return;
        }
        match &mut self.apm {
            Some(apm) => apm.apply_config(config.to_sonora()),
            None => {
                self.apm = Some(
                    AudioProcessing::builder()
                        .config(config.to_sonora())
                        .capture_config(StreamConfig::new(RATE, 1))
                        .render_config(StreamConfig::new(RATE, 1))
                        .build(),
                )
            }
        }
    }

    /// A 10 ms frame the speaker played (the far end).
    pub fn render(&mut self, frame: &[f32]) {
        let Some(apm) = &mut self.apm else { return };
        if frame.len() != FRAME {
            return;
        }
        let mut out = [0f32; FRAME];
        if let Err(e) = apm.process_render_f32(&[frame], &mut [&mut out]) {
            tracing::debug!(error = ?e, "far-end frame not processed");
        }
    }

    /// Processes a 10 ms microphone frame in place, after the far-end frames played
    /// since the last one.
    pub fn capture(&mut self, frame: &mut [f32]) {
        if frame.len() != FRAME {
            return;
        }
        if let Some(far) = self.far_end.take() {
            for f in far.drain() {
                self.render(&f);
            }
            self.far_end = Some(far);
        }
        let Some(apm) = &mut self.apm else { return };
        let input: [f32; FRAME] = frame.try_into().unwrap_or([0.0; FRAME]);
        if let Err(e) = apm.process_capture_f32(&[&input], &mut [frame]) {
            tracing::debug!(error = ?e, "microphone frame not processed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::ToneSource;

    fn tone_frames(hz: f64, n: usize) -> Vec<Vec<f32>> {
        let mut t = ToneSource::new(hz, RATE);
        (0..n).map(|_| t.next_block(FRAME).iter().map(|&s| s as f32 / 32768.0).collect()).collect()
    }

    fn rms_db(frames: &[Vec<f32>]) -> f64 {
        let (sum, n) = frames.iter().flatten().fold((0f64, 0usize), |(s, n), &x| (s + (x as f64).powi(2), n + 1));
        10.0 * (sum / n.max(1) as f64).log10()
    }

    #[test]
    fn the_canceller_removes_an_echo_and_keeps_the_near_end() {
        // The microphone hears the far end 30 ms late and 6 dB down, plus a near-end
        // tone for the second half.
        let far = tone_frames(440.0, 800);
        let near = tone_frames(660.0, 800);
        let (tx, rx) = far_end();
        let mut p = Processor::new(
            ProcessingConfig { noise_suppression: false, gain_control: false, ..Default::default() },
            Some(rx),
        );
        let mut out = Vec::new();
        for i in 0..800 {
            tx.send(far[i].clone());
            let mut mic: Vec<f32> =
                if i >= 3 { far[i - 3].iter().map(|s| s * 0.5).collect() } else { vec![0.0; FRAME] };
            if i >= 400 {
                mic.iter_mut().zip(&near[i]).for_each(|(m, n)| *m += n * 0.5);
            }
            p.capture(&mut mic);
            out.push(mic);
        }
        let echo_in = rms_db(&far[300..400].iter().map(|f| f.iter().map(|s| s * 0.5).collect()).collect::<Vec<_>>());
        let echo_out = rms_db(&out[300..400]);
        assert!(echo_in - echo_out >= 20.0, "echo reduced by {:.1} dB only", echo_in - echo_out);
        let with_near = rms_db(&out[700..800]);
        assert!(with_near > echo_out + 15.0, "the near end passes: {with_near:.1} dB vs {echo_out:.1}");
    }

    #[test]
    fn music_mode_leaves_the_signal_alone() {
        let mut p = Processor::new(ProcessingConfig::music(), None);
        let mut frame = tone_frames(440.0, 1).remove(0);
        let before = frame.clone();
        p.capture(&mut frame);
        assert_eq!(frame, before);
        assert!(p.apm.is_none());
    }
}
