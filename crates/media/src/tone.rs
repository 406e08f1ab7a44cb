//! A synthetic microphone (a sine tone) and what the receiving side uses to check it:
//! the dominant frequency and the level of a block of samples.

use std::f64::consts::TAU;

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

/// A continuous sine tone in 16-bit mono samples; phase carries across calls, so
/// consecutive blocks join without clicks.
#[derive(Debug, Clone)]
pub struct ToneSource {
    frequency_hz: f64,
    sample_rate: u32,
    amplitude: f64,
    phase: f64,
}

impl ToneSource {
    /// A tone at -6 dBFS.
    pub fn new(frequency_hz: f64, sample_rate: u32) -> Self {
        Self { frequency_hz, sample_rate, amplitude: 0.5, phase: 0.0 }
    }

    /// Fills `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        let step = TAU * self.frequency_hz / self.sample_rate as f64;
        for s in out {
            *s = (self.phase.sin() * self.amplitude * i16::MAX as f64) as i16;
            self.phase = (self.phase + step) % TAU;
        }
    }

    /// The next `n` samples.
    pub fn next_block(&mut self, n: usize) -> Vec<i16> {
        let mut out = vec![0; n];
        self.fill(&mut out);
        out
    }
}

/// Root-mean-square level in dBFS (`-inf` for digital silence).
pub fn level_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64 / i16::MAX as f64).powi(2)).sum();
    10.0 * (sum / samples.len() as f64).log10()
}

/// Blocks quieter than this carry no tone worth naming.
const SILENCE_DBFS: f64 = -50.0;

/// The frequency of the strongest component of `samples`, to within about a hertz for a
/// pure tone of a few hundred milliseconds, or `None` for (near) silence. Uses a
/// Hann-windowed FFT and interpolates the peak between bins.
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> Option<f64> {
    if samples.len() < 64 || level_dbfs(samples) < SILENCE_DBFS {
        return None;
    }
    let n = samples.len();
    let mut buf: Vec<Complex<f64>> = samples
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let window = 0.5 - 0.5 * (TAU * i as f64 / (n - 1) as f64).cos();
            Complex::new(s as f64 * window, 0.0)
        })
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buf);
    let mags: Vec<f64> = buf[..n / 2].iter().map(|c| c.norm()).collect();
    // Skip DC and the lowest bins.
    let (peak, _) = mags.iter().enumerate().skip(2).max_by(|a, b| a.1.total_cmp(b.1))?;
    if peak + 1 >= mags.len() {
        return Some(peak as f64 * sample_rate as f64 / n as f64);
    }
    // Parabolic interpolation on log magnitudes.
    let (a, b, c) = (mags[peak - 1].ln(), mags[peak].ln(), mags[peak + 1].ln());
    let denom = a - 2.0 * b + c;
    let offset = if denom.abs() > f64::EPSILON { 0.5 * (a - c) / denom } else { 0.0 };
    Some((peak as f64 + offset) * sample_rate as f64 / n as f64)
}

/// The level of the `hz` component of `samples`, in dBFS (RMS, like [`level_dbfs`]):
/// a Hann-windowed single-bin DFT (Goertzel) at exactly that frequency. With a second of
/// audio, components a few tens of hertz away hardly leak in.
pub fn tone_level_dbfs(samples: &[i16], sample_rate: u32, hz: f64) -> f64 {
    let n = samples.len();
    if n < 64 {
        return f64::NEG_INFINITY;
    }
    let w = TAU * hz / sample_rate as f64;
    let (mut re, mut im, mut gain) = (0.0, 0.0, 0.0);
    for (i, &s) in samples.iter().enumerate() {
        let window = 0.5 - 0.5 * (TAU * i as f64 / (n - 1) as f64).cos();
        let x = s as f64 / i16::MAX as f64 * window;
        re += x * (w * i as f64).cos();
        im -= x * (w * i as f64).sin();
        gain += window;
    }
    let amplitude = 2.0 * (re * re + im * im).sqrt() / gain;
    20.0 * (amplitude / std::f64::consts::SQRT_2).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_tones_bots_use() {
        for hz in [440.0, 550.0, 660.0, 1000.0] {
            let mut tone = ToneSource::new(hz, 48_000);
            tone.next_block(137); // start mid-phase
            let block = tone.next_block(9600); // 200 ms
            let found = dominant_frequency(&block, 48_000).unwrap();
            assert!((found - hz).abs() < 1.5, "{hz} Hz detected as {found}");
        }
    }

    #[test]
    fn the_level_of_one_tone_among_two() {
        let mut a = ToneSource::new(440.0, 48_000);
        let mut b = ToneSource::new(660.0, 48_000);
        let mix: Vec<i16> =
            a.next_block(48_000).iter().zip(b.next_block(48_000)).map(|(x, y)| x / 2 + y / 10).collect();
        let (l440, l660) = (tone_level_dbfs(&mix, 48_000, 440.0), tone_level_dbfs(&mix, 48_000, 660.0));
        // The tone source peaks at -6 dBFS: -9 dBFS RMS; halved -15, a tenth -29.
        assert!((l440 - -15.0).abs() < 0.5, "{l440}");
        assert!((l660 - -29.0).abs() < 0.5, "{l660}");
        assert!(tone_level_dbfs(&mix, 48_000, 1000.0) < -60.0);
    }

    #[test]
    fn level_and_silence() {
        let mut tone = ToneSource::new(440.0, 48_000);
        let level = level_dbfs(&tone.next_block(4800));
        assert!((level - -9.0).abs() < 0.5, "a -6 dBFS peak sine is about -9 dBFS RMS, got {level}");
        assert_eq!(dominant_frequency(&[0; 4800], 48_000), None);
        assert_eq!(dominant_frequency(&[3; 4800], 48_000), None);
    }

    #[test]
    fn blocks_join_without_a_jump() {
        let mut tone = ToneSource::new(440.0, 48_000);
        let a = tone.next_block(960);
        let b = tone.next_block(960);
        let step = (b[0] as i32 - a[959] as i32).abs();
        assert!(step < 1000, "discontinuity of {step}");
    }
}
