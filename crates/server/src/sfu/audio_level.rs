//! Audio levels and the active speaker of a room, from the RFC 6464 header extension.
//!
//! Publishers put each packet's level (in -dBov) in the audio-level extension; the SFU
//! reads it without decoding. Every [`INTERVAL`] the router hands the latest levels of a
//! room to [`Speakers::update`], which keeps a smoothed level per participant and names
//! the active speaker: the loudest one above [`SPEAKING`], replaced only when another
//! is clearly louder for a moment, so the speaker view does not flicker.

use std::time::{Duration, Instant};

use confer_proto::track::AudioLevel;
use confer_proto::ParticipantId;

/// How often levels are reported per room, at most.
pub const INTERVAL: Duration = Duration::from_millis(250);
/// A level older than this is silence (the publisher stopped sending, or DTX).
pub const FRESH: Duration = Duration::from_millis(500);
/// Linear levels below this are not reported.
const AUDIBLE: f32 = 0.01;
/// Smoothed level above which a participant counts as speaking.
const SPEAKING: f32 = 0.03;
/// A challenger must be this much louder (factor) to take over the active speaker.
const TAKEOVER: f32 = 1.5;
/// Exponential smoothing per update.
const SMOOTHING: f32 = 0.4;

/// -dBov (0 = loudest, 127 = silence) to a linear amplitude in 0.0..=1.0.
pub fn linear(minus_dbov: i8) -> f32 {
    let dbov = -(minus_dbov.unsigned_abs().min(127) as f32);
    10f32.powf(dbov / 20.0)
}

/// Per-room speaker tracking.
#[derive(Debug, Default)]
pub struct Speakers {
    smoothed: Vec<(ParticipantId, f32)>,
    active: Option<ParticipantId>,
    /// Whether the last report had levels; one empty report follows the last non-empty one.
    reported_audible: bool,
    last_report: Option<Instant>,
}

impl Speakers {
    /// Folds in the current levels; returns a report if one is due.
    pub fn update(
        &mut self,
        levels: Vec<AudioLevel>,
        now: Instant,
    ) -> Option<(Vec<AudioLevel>, Option<ParticipantId>)> {
        if self.last_report.is_some_and(|t| now.saturating_duration_since(t) < INTERVAL) {
            return None;
        }
        for (_, s) in &mut self.smoothed {
            *s *= 1.0 - SMOOTHING;
        }
        for l in &levels {
            match self.smoothed.iter_mut().find(|(p, _)| *p == l.participant_id) {
                Some((_, s)) => *s += SMOOTHING * l.level,
                None => self.smoothed.push((l.participant_id.clone(), SMOOTHING * l.level)),
            }
        }
        self.smoothed.retain(|(_, s)| *s > 0.001);
        let before = self.active.clone();
        let loudest = self.smoothed.iter().filter(|(_, s)| *s >= SPEAKING).max_by(|a, b| a.1.total_cmp(&b.1));
        let current = self.active.as_ref().and_then(|a| self.smoothed.iter().find(|(p, _)| p == a)).map(|(_, s)| *s);
        match (loudest, current) {
            (Some((p, s)), Some(c)) if c >= SPEAKING => {
                if *s > c * TAKEOVER {
                    self.active = Some(p.clone());
                }
            }
            (Some((p, _)), _) => self.active = Some(p.clone()),
            // Nobody speaks: keep showing the last speaker.
            (None, _) => {}
        }
        let audible: Vec<AudioLevel> = levels.into_iter().filter(|l| l.level >= AUDIBLE).collect();
        let changed = before != self.active;
        if audible.is_empty() && !self.reported_audible && !changed {
            return None;
        }
        self.reported_audible = !audible.is_empty();
        self.last_report = Some(now);
        Some((audible, self.active.clone()))
    }

    pub fn forget(&mut self, participant: &ParticipantId) {
        self.smoothed.retain(|(p, _)| p != participant);
        if self.active.as_ref() == Some(participant) {
            self.active = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(p: &str, level: f32) -> AudioLevel {
        AudioLevel { participant_id: p.into(), track_id: format!("t{p}").into(), level, voice: None }
    }

    #[test]
    fn dbov_to_linear() {
        assert!((linear(0) - 1.0).abs() < 1e-6);
        assert!((linear(20) - 0.1).abs() < 1e-4);
        assert!(linear(127) < 1e-6);
    }

    #[test]
    fn active_speaker_needs_a_clear_takeover() {
        let mut s = Speakers::default();
        let mut now = Instant::now();
        let mut step = |s: &mut Speakers, levels| {
            now += INTERVAL;
            s.update(levels, now)
        };
        let (_, active) = step(&mut s, vec![level("a", 0.3), level("b", 0.1)]).unwrap();
        assert_eq!(active, Some("a".into()));
        // b a little louder: a stays.
        for _ in 0..5 {
            step(&mut s, vec![level("a", 0.3), level("b", 0.35)]);
        }
        assert_eq!(s.active, Some("a".into()));
        // b much louder: b takes over.
        for _ in 0..5 {
            step(&mut s, vec![level("a", 0.05), level("b", 0.5)]);
        }
        assert_eq!(s.active, Some("b".into()));
        // Silence: one empty report, then none.
        for _ in 0..10 {
            step(&mut s, vec![]);
        }
        assert!(step(&mut s, vec![]).is_none());
    }

    #[test]
    fn reports_are_rate_limited() {
        let mut s = Speakers::default();
        let now = Instant::now();
        assert!(s.update(vec![level("a", 0.5)], now).is_some());
        assert!(s.update(vec![level("a", 0.5)], now + Duration::from_millis(100)).is_none());
        assert!(s.update(vec![level("a", 0.5)], now + INTERVAL).is_some());
    }
}
