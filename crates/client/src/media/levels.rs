//! Audio levels of local and remote tracks, for level meters and speaking indicators.
//!
//! Remote levels come from the RFC 6464 header extension of every received audio
//! packet (the publisher measured them, the server passed them on); local ones from what
//! the app gives [`super::LocalTrack::write`]. Readers poll [`AudioLevels::snapshot`] at
//! whatever rate they draw (about 10 Hz is plenty); a level not refreshed for
//! [`STALE`] is reported as silence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_proto::track::TrackId;
use confer_proto::ParticipantId;

use super::RemoteTrackInfo;

/// A level older than this counts as silence (DTX, a paused track).
pub const STALE: Duration = Duration::from_millis(500);

/// One track's current level.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrackLevel {
    /// `None` for a local track.
    pub participant_id: Option<ParticipantId>,
    pub track_id: TrackId,
    /// 0.0 (silence) to 1.0 (full scale), linear in amplitude.
    pub level: f32,
}

/// Each track's publisher (none when local), last level (-dBov) and when it came.
type Levels = HashMap<TrackId, (Option<ParticipantId>, u8, Instant)>;

#[derive(Clone, Default)]
pub(crate) struct AudioLevels {
    levels: Arc<Mutex<Levels>>,
}

impl AudioLevels {
    pub(crate) fn remote(&self, track: &RemoteTrackInfo, dbov: u8) {
        self.set(Some(track.publisher.clone()), track.track_id.clone(), dbov);
    }

    pub(crate) fn local(&self, track_id: TrackId, dbov: u8) {
        self.set(None, track_id, dbov);
    }

    fn set(&self, participant: Option<ParticipantId>, track_id: TrackId, dbov: u8) {
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        levels.insert(track_id, (participant, dbov.min(127), Instant::now()));
    }

    /// Every audio track heard from recently, with its level.
    pub(crate) fn snapshot(&self) -> Vec<TrackLevel> {
        let now = Instant::now();
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        levels.retain(|_, (_, _, at)| now.saturating_duration_since(*at) < STALE * 20);
        levels
            .iter()
            .map(|(id, (participant, dbov, at))| TrackLevel {
                participant_id: participant.clone(),
                track_id: id.clone(),
                level: if now.saturating_duration_since(*at) < STALE { linear(*dbov) } else { 0.0 },
            })
            .collect()
    }
}

/// -dBov (0 loudest, 127 silence) to a linear amplitude from 0 to 1.
pub fn linear(dbov: u8) -> f32 {
    if dbov >= 127 {
        0.0
    } else {
        10f32.powf(-f32::from(dbov) / 20.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_linear_in_amplitude() {
        assert_eq!(linear(0), 1.0);
        assert!((linear(20) - 0.1).abs() < 1e-6);
        assert_eq!(linear(127), 0.0);
    }

    #[test]
    fn snapshot_reports_fresh_levels() {
        let levels = AudioLevels::default();
        levels.local(TrackId::from("TR_a"), 6);
        let snap = levels.snapshot();
        assert_eq!(snap.len(), 1);
        assert!((snap[0].level - 0.501).abs() < 0.01);
        assert_eq!(snap[0].participant_id, None);
    }
}
