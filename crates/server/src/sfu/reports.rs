//! What a worker reports about its rooms: audio levels and network metrics.

use std::time::Instant;

use confer_proto::track::{AudioLevel, NetworkMetrics, TrackKind};
use confer_proto::ParticipantId;

use super::audio_level;
use super::transport::Role;
use super::worker::Worker;
use super::SfuEvent;

impl Worker {
    /// Sends each room's audio levels and active speaker, when they changed.
    pub(super) fn report_levels(&mut self, now: Instant) {
        let mut events = Vec::new();
        for room in self.rooms.values_mut() {
            let mut levels = Vec::new();
            for id in room.members.values().filter_map(|m| m.publisher) {
                let Some(t) = self.transports.get(&id) else { continue };
                let Some(p) = t.publishing() else { continue };
                for producer in p.producers.iter().filter(|p| p.kind == TrackKind::Audio && p.flowing()) {
                    let Some(heard) = producer.audio_level else { continue };
                    if now.saturating_duration_since(heard.at) < audio_level::FRESH {
                        levels.push(AudioLevel {
                            participant_id: t.participant.clone(),
                            track_id: producer.track_id.clone(),
                            level: audio_level::linear(heard.minus_dbov),
                            voice: heard.voice,
                        });
                    }
                }
            }
            if let Some((levels, active_speaker)) = room.speakers.update(levels, now) {
                events.push(SfuEvent::AudioActivity { room: room.id.clone(), levels, active_speaker });
            }
        }
        for event in events {
            self.emit(event);
        }
    }

    /// Sends the network metrics of every watched participant.
    pub(super) fn report_metrics(&mut self) {
        let mut events = Vec::new();
        for room in self.rooms.values().filter(|r| !r.watched.is_empty()) {
            let reports = room
                .watched
                .iter()
                .map(|participant| {
                    let stats = |role| {
                        let t = self.transports.get(&room.transport(participant, role)?)?;
                        let estimate = t.subscribing().and_then(|s| s.estimate_bps);
                        t.stats.as_ref().map(|s| (s.clone(), estimate))
                    };
                    metrics(participant.clone(), stats(Role::Publisher), stats(Role::Subscriber))
                })
                .collect();
            events.push(SfuEvent::Metrics { room: room.id.clone(), reports });
        }
        for event in events {
            self.emit(event);
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
