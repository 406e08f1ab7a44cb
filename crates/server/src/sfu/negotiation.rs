//! Offers and answers: publisher offers accepted, subscriber offers made, ICE restarts.
//!
//! The publisher transport is always offered by the client ([`Worker::publish`],
//! [`Worker::publisher_offer`]); the subscriber transport always by the server
//! ([`Worker::negotiate`]), one offer at a time: changes made while an offer is out wait
//! for its answer and go into the next one.

use std::time::Instant;

use confer_proto::track::{SubscribedTrack, TrackId, TrackKind};
use confer_proto::{ErrorCode, ParticipantId, RoomId};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, Mid};

use super::consumer::{Consumer, OutState};
use super::producer::{media_kind, Producer};
use super::transport::{Role, Side, Transport, TransportId, CONTROL_CHANNEL};
use super::worker::Worker;
use super::{IncomingTrack, PublishAnswer, SfuEvent, Subscribe};
use crate::error::ApiError;

/// Packets (and their age) kept per outgoing video stream for retransmission.
const RTX_CACHE_PACKETS: usize = 1024;
const RTX_CACHE_AGE: std::time::Duration = std::time::Duration::from_secs(3);
/// The share of a stream that retransmissions may take.
const RTX_RATIO_CAP: f32 = 0.3;

impl Worker {
    pub(super) fn publish(
        &mut self,
        room: RoomId,
        participant: ParticipantId,
        tracks: Vec<IncomingTrack>,
        offer: &str,
        now: Instant,
    ) -> Result<PublishAnswer, ApiError> {
        tracing::trace!(%participant, sdp = %offer, "publisher offer");
        let offer = parse_offer(offer)?;
        let existing = self.transport_id(&participant, Role::Publisher);
        let id = existing.unwrap_or_else(|| self.open(room, participant.clone(), Role::Publisher, now));
        let answer = self.transports.get_mut(&id).map(|t| t.rtc.sdp_api().accept_offer(offer));
        let answer = match answer {
            Some(Ok(a)) => a,
            failed => {
                if existing.is_none() {
                    self.close_transport(id);
                }
                let why = failed.and_then(Result::err).map_or_else(|| "no transport".to_owned(), |e| e.to_string());
                return Err(ApiError::new(ErrorCode::InvalidSdp, format!("cannot accept the offer: {why}")));
            }
        };
        self.refresh_ufrag(id);
        self.dirty_transport(id);
        let sdp = answer.to_sdp_string();
        let Some(t) = self.transports.get_mut(&id) else {
            return Err(ApiError::new(ErrorCode::Internal, "the publisher transport vanished"));
        };
        let Transport { rtc, channels, side: Side::Publisher(p), .. } = t else {
            return Err(ApiError::new(ErrorCode::Internal, "not a publisher transport"));
        };
        let mut codecs = Vec::new();
        let mut missing = Vec::new();
        for track in tracks {
            if track.kind == TrackKind::Data {
                let channel = channels.get(&track.mid).copied();
                p.producers.retain(|i| i.label.as_deref() != Some(track.mid.as_str()));
                p.producers.push(Producer::data(track.track_id, track.mid, channel));
                continue;
            }
            let mid = Mid::from(track.mid.as_str());
            let matches = rtc.media(mid).is_some_and(|m| m.kind() == media_kind(track.kind));
            if !matches {
                missing.push(track.mid.clone());
                continue;
            }
            if let Some(codec) = answered_codec(&sdp, &track.mid) {
                codecs.push((track.track_id.clone(), codec));
            }
            p.producers.retain(|i| i.mid != mid || i.kind == TrackKind::Data);
            p.producers.push(Producer::new(track.track_id, mid, track.kind, track.simulcast, track.muted));
        }
        if !missing.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidSdp,
                format!("the offer has no media section of the right kind for mid {}", missing.join(", ")),
            ));
        }
        tracing::info!(%participant, tracks = p.producers.len(), "publisher offer accepted");
        Ok(PublishAnswer { sdp, codecs })
    }

    /// A new offer on an existing publisher transport: an ICE restart, new data channels.
    pub(super) fn publisher_offer(&mut self, participant: &ParticipantId, offer: &str) -> Result<String, ApiError> {
        let offer = parse_offer(offer)?;
        let id = self
            .transport_id(participant, Role::Publisher)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidSdp, "there is no publisher connection; publish first"))?;
        let t = self.transports.get_mut(&id).ok_or_else(|| ApiError::new(ErrorCode::Internal, "no transport"))?;
        let answer = t
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot accept the offer: {e}")))?;
        tracing::info!(%participant, "publisher connection renegotiated");
        if let Some(p) = t.publishing_mut() {
            // A media section may now be received on other SSRCs.
            p.forget_streams();
        }
        self.refresh_ufrag(id);
        self.dirty_transport(id);
        Ok(answer.to_sdp_string())
    }

    pub(super) fn subscribe(&mut self, s: Subscribe, now: Instant) {
        let Subscribe { room, subscriber, publisher, key, tracks, wants } = s;
        let id = match self.transport_id(&subscriber, Role::Subscriber) {
            Some(id) => id,
            None => self.open(room, subscriber, Role::Subscriber, now),
        };
        let Some(s) = self.transports.get_mut(&id).and_then(|t| t.subscribing_mut()) else { return };
        for t in tracks {
            let live = s.consumers.iter().any(|c| {
                c.track_id == t.track_id
                    && matches!(c.state, OutState::Open(_) | OutState::Negotiating(_) | OutState::Channel(_))
            });
            if !live {
                s.consumers.push(Consumer::new(t.track_id, t.kind, publisher.clone(), key.clone(), wants));
            }
        }
        self.next_layers = now;
        self.negotiate(id);
    }

    /// The next subscriber offer will restart ICE.
    pub(super) fn restart_subscriber(&mut self, participant: &ParticipantId) {
        let Some(id) = self.transport_id(participant, Role::Subscriber) else { return };
        if let Some(s) = self.transports.get_mut(&id).and_then(|t| t.subscribing_mut()) {
            s.restart_ice = true;
        }
        self.negotiate(id);
    }

    /// Offers the subscriber transport's pending changes, unless an offer is out.
    pub(super) fn negotiate(&mut self, id: TransportId) {
        let Some(t) = self.transports.get_mut(&id) else { return };
        let Transport { rtc, side: Side::Subscriber(s), room, participant, .. } = t else { return };
        if s.pending.is_some() {
            return;
        }
        let mut change = rtc.sdp_api();
        if !s.has_control_channel {
            change.add_channel(CONTROL_CHANNEL.to_owned());
            s.has_control_channel = true;
        }
        if std::mem::take(&mut s.restart_ice) {
            // Our one candidate stays the same; only the credentials change.
            change.ice_restart(true);
        }
        let mut started: Vec<(ParticipantId, String, Vec<SubscribedTrack>)> = Vec::new();
        for c in &mut s.consumers {
            let (state, mid) = match c.state {
                OutState::ToOpen if c.kind == TrackKind::Data => {
                    let channel = change.add_channel(c.track_id.to_string());
                    (OutState::Channel(channel), c.track_id.to_string())
                }
                OutState::ToOpen => {
                    let mid = change.add_media(
                        media_kind(c.kind),
                        Direction::SendOnly,
                        Some(c.publisher.to_string()),
                        Some(c.track_id.to_string()),
                        None,
                    );
                    (OutState::Negotiating(mid), mid.to_string())
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    c.state = OutState::NegotiatingStop(mid);
                    continue;
                }
                _ => continue,
            };
            c.state = state;
            let track = SubscribedTrack { track_id: c.track_id.clone(), kind: c.kind, mid };
            match started.iter_mut().find(|(p, k, _)| *p == c.publisher && *k == c.key) {
                Some((_, _, list)) => list.push(track),
                None => started.push((c.publisher.clone(), c.key.clone(), vec![track])),
            }
        }
        if !change.has_changes() {
            return;
        }
        let sdp = match change.apply() {
            Some((offer, pending)) => {
                s.pending = Some(pending);
                let sdp = offer.to_sdp_string();
                tracing::trace!(%participant, %sdp, "subscriber offer");
                Some(sdp)
            }
            // Only data channels on an existing application section: no offer needed.
            None => None,
        };
        let offered = sdp.is_some() || !started.is_empty();
        let event = SfuEvent::SubscriberOffer { room: room.clone(), participant: participant.clone(), sdp, started };
        let consumed: Vec<TrackId> = s.consumers.iter().map(|c| c.track_id.clone()).collect();
        let room = room.clone();
        if let Some(r) = self.rooms.get_mut(&room) {
            r.set_consumed(id, consumed.iter());
        }
        // A channel added without an offer goes out at once.
        self.dirty_transport(id);
        self.refresh_ufrag(id);
        if offered {
            self.emit(event);
        }
    }

    pub(super) fn accept_answer(
        &mut self,
        participant: &ParticipantId,
        sdp: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        let id = self
            .transport_id(participant, Role::Subscriber)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidSdp, "there is no subscriber offer to answer"))?;
        let t = self.transports.get_mut(&id).ok_or_else(|| ApiError::new(ErrorCode::Internal, "no transport"))?;
        let Transport { rtc, side: Side::Subscriber(s), room, .. } = t else {
            return Err(ApiError::new(ErrorCode::Internal, "not a subscriber transport"));
        };
        let pending =
            s.pending.take().ok_or_else(|| ApiError::new(ErrorCode::InvalidSdp, "no subscriber offer is pending"))?;
        tracing::trace!(%participant, %sdp, "subscriber answer");
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot parse the answer: {e}")))?;
        let accepted = rtc.sdp_api().accept_answer(pending, answer);
        // Either way the offer is settled: what it opened is open, what it stopped is
        // gone (str0m stops a media section as soon as it is offered stopped).
        let ok = accepted.is_ok();
        for c in &mut s.consumers {
            if let OutState::Negotiating(m) = c.state {
                c.state = if ok { OutState::Open(m) } else { OutState::ToOpen };
                if let Some(stream) = rtc.direct_api().stream_tx_by_mid(m, None).filter(|_| ok) {
                    // Media goes out as it is forwarded; the estimator's pacer would
                    // hold it behind a collapsed estimate (see `downlink`).
                    stream.set_unpaced(true);
                    if c.is_video() {
                        // Retransmissions may take up to this share of a stream before
                        // str0m drops them; its default (15 %) gives up on a path with a
                        // few percent of loss when a lost retransmission is asked again.
                        stream.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(RTX_RATIO_CAP));
                    }
                }
            }
        }
        s.consumers.retain(|c| !matches!(c.state, OutState::NegotiatingStop(_)));
        let consumed: Vec<TrackId> = s.consumers.iter().map(|c| c.track_id.clone()).collect();
        let room = room.clone();
        if let Some(r) = self.rooms.get_mut(&room) {
            r.set_consumed(id, consumed.iter());
        }
        self.dirty_transport(id);
        accepted.map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot accept the answer: {e}")))?;
        self.next_layers = now;
        self.negotiate(id);
        Ok(())
    }

    /// Stops the matching consumers on every subscriber transport of `room`; `stop` is
    /// given the subscriber and the consumer.
    pub(super) fn stop_consumers(&mut self, room: &RoomId, stop: impl Fn(&ParticipantId, &Consumer) -> bool) {
        let Some(r) = self.rooms.get(room) else { return };
        let subscribers: Vec<TransportId> = r.members.values().filter_map(|m| m.subscriber).collect();
        let mut renegotiate = Vec::new();
        for id in subscribers {
            let Some(t) = self.transports.get_mut(&id) else { continue };
            let Transport { rtc, channels, participant, side: Side::Subscriber(s), .. } = t else { continue };
            let before = s.consumers.len();
            s.consumers.retain(|c| !(stop(participant, c) && c.state == OutState::ToOpen));
            let mut changed = before != s.consumers.len();
            let mut closed = Vec::new();
            for c in s.consumers.iter_mut().filter(|c| stop(participant, c)) {
                match c.state {
                    OutState::Open(m) | OutState::Negotiating(m) => {
                        c.state = OutState::ToStop(m);
                        changed = true;
                    }
                    OutState::Channel(channel) => closed.push((c.track_id.clone(), channel)),
                    _ => {}
                }
            }
            for (track_id, channel) in closed {
                rtc.direct_api().close_data_channel(channel);
                channels.retain(|_, c| *c != channel);
                s.consumers.retain(|c| c.track_id != track_id);
                changed = true;
            }
            if changed {
                renegotiate.push(id);
            }
        }
        for id in renegotiate {
            self.negotiate(id);
        }
    }
}

fn parse_offer(sdp: &str) -> Result<SdpOffer, ApiError> {
    SdpOffer::from_sdp_string(sdp)
        .map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot parse the offer: {e}")))
}

/// The first codec the answer lists for the media section `mid` (`VP8`, `opus`).
fn answered_codec(sdp: &str, mid: &str) -> Option<String> {
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(section) = sections.last_mut() {
            section.push(line);
        }
    }
    let mid_line = format!("a=mid:{mid}");
    let section = sections.into_iter().find(|s| s.contains(&mid_line.as_str()))?;
    let pt = section.first()?.split_whitespace().nth(3)?;
    let prefix = format!("a=rtpmap:{pt} ");
    let map = section.iter().find_map(|l| l.strip_prefix(&prefix))?;
    map.split('/').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_of_a_media_section() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n";
        assert_eq!(answered_codec(sdp, "0").as_deref(), Some("opus"));
        assert_eq!(answered_codec(sdp, "1").as_deref(), Some("VP8"));
        assert_eq!(answered_codec(sdp, "2"), None);
    }
}
