//! What the media thread reports about rooms: audio levels and network metrics.

use std::collections::HashMap;
use std::time::Instant;

use confer_proto::track::{AudioLevel, NetworkMetrics, TrackKind};
use confer_proto::{ParticipantId, RoomId};

use super::audio_level;
use super::peer::Role;
use super::router::Router;
use super::SfuEvent;

impl Router {
    /// Sends each room's audio levels and active speaker, when they changed.
    pub(super) fn report_levels(&mut self, now: Instant) {
        let mut by_room: HashMap<RoomId, Vec<AudioLevel>> = HashMap::new();
        for peer in self.peers.iter().filter(|p| p.role == Role::Publisher) {
            let levels = by_room.entry(peer.room.clone()).or_default();
            for t in peer.inputs.iter().filter(|t| t.kind == TrackKind::Audio && t.flowing()) {
                if let Some((level, voice, at)) = t.audio_level {
                    if now.saturating_duration_since(at) < audio_level::FRESH {
                        levels.push(AudioLevel {
                            participant_id: peer.participant.clone(),
                            track_id: t.track_id.clone(),
                            level: audio_level::linear(level),
                            voice,
                        });
                    }
                }
            }
        }
        self.speakers.retain(|room, _| by_room.contains_key(room));
        for (room, levels) in by_room {
            let speakers = self.speakers.entry(room.clone()).or_default();
            if let Some((levels, active_speaker)) = speakers.update(levels, now) {
                let _ = self.events.send(SfuEvent::AudioActivity { room, levels, active_speaker });
            }
        }
    }

    /// Sends the network metrics of every watched participant.
    pub(super) fn report_metrics(&mut self) {
        for (room, watched) in &self.watched {
            let reports = watched
                .iter()
                .map(|participant| {
                    let stats = |role| {
                        self.peers
                            .iter()
                            .find(|p| &p.participant == participant && p.role == role)
                            .and_then(|p| p.stats.as_ref().map(|s| (s.clone(), p.estimate_bps)))
                    };
                    metrics(participant.clone(), stats(Role::Publisher), stats(Role::Subscriber))
                })
                .collect();
            let _ = self.events.send(SfuEvent::Metrics { room: room.clone(), reports });
        }
    }
}

type Stats = (str0m::stats::PeerStats, Option<u64>);

/// One participant's connection quality from its two connections' statistics.
fn metrics(participant_id: ParticipantId, publisher: Option<Stats>, subscriber: Option<Stats>) -> NetworkMetrics {
    let rtt = [&publisher, &subscriber]
        .iter()
        .filter_map(|s| s.as_ref().and_then(|(s, _)| s.rtt))
        .map(|d| d.as_secs_f64() * 1000.0)
        .reduce(f64::min);
    let publish_loss = publisher.as_ref().and_then(|(s, _)| s.ingress_loss_fraction).unwrap_or(0.0);
    let subscribe_loss = subscriber.as_ref().and_then(|(s, _)| s.egress_loss_fraction).unwrap_or(0.0);
    let downlink_bps = subscriber.as_ref().and_then(|(_, estimate)| *estimate);
    let rtt_ms = rtt.unwrap_or(0.0);
    NetworkMetrics {
        participant_id,
        rtt_ms: rtt,
        publish_loss,
        subscribe_loss,
        downlink_bps,
        score: score(publish_loss.max(subscribe_loss), rtt_ms),
    }
}

/// 5 (excellent) to 1 (bad), from packet loss and round-trip time.
fn score(loss: f32, rtt_ms: f64) -> u8 {
    match (loss, rtt_ms) {
        (l, r) if l < 0.01 && r < 150.0 => 5,
        (l, r) if l < 0.03 && r < 250.0 => 4,
        (l, r) if l < 0.08 && r < 400.0 => 3,
        (l, _) if l < 0.15 => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_falls_with_loss_and_delay() {
        assert_eq!(score(0.0, 20.0), 5);
        assert_eq!(score(0.02, 20.0), 4);
        assert_eq!(score(0.05, 20.0), 3);
        assert_eq!(score(0.0, 300.0), 3);
        assert_eq!(score(0.10, 20.0), 2);
        assert_eq!(score(0.30, 20.0), 1);
    }
}
