//! Offers and answers: publisher offers accepted, subscriber offers made, ICE restarts.
//!
//! The publisher connection is always offered by the client ([`Router::publish`],
//! [`Router::publisher_offer`]); the subscriber connection always by the server
//! ([`Router::negotiate`]), one offer at a time: changes made while an offer is out wait
//! for its answer and go into the next one.

use std::time::Instant;

use confer_proto::track::{SubscribedTrack, TrackKind};
use confer_proto::{ErrorCode, ParticipantId, RoomId};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, Mid};

use super::forward::{OutState, OutTrack};
use super::peer::{media_kind, InTrack, Peer, Role, CONTROL_CHANNEL};
use super::router::Router;
use super::{IncomingTrack, OutgoingTrack, PublishAnswer, SfuEvent, Wants};
use crate::error::ApiError;

/// Packets (and their age) kept per outgoing video stream for retransmission.
const RTX_CACHE_PACKETS: usize = 1024;
const RTX_CACHE_AGE: std::time::Duration = std::time::Duration::from_secs(3);
/// The share of a stream that retransmissions may take.
const RTX_RATIO_CAP: f32 = 0.3;

impl Router {
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
        let created = self.peer_mut(&participant, Role::Publisher).is_none();
        if created {
            let rtc = self.new_rtc(Role::Publisher, now);
            self.peers.push(Peer::new(room, participant.clone(), Role::Publisher, rtc, now));
        }
        let peer = self.peer_mut(&participant, Role::Publisher).expect("publisher peer exists");
        let answer = match peer.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                if created {
                    self.peers.retain(|p| !(p.participant == participant && p.role == Role::Publisher));
                }
                return Err(ApiError::new(ErrorCode::InvalidSdp, format!("cannot accept the offer: {e}")));
            }
        };
        let sdp = answer.to_sdp_string();
        let mut codecs = Vec::new();
        let mut missing = Vec::new();
        for t in tracks {
            if t.kind == TrackKind::Data {
                let channel = peer.channels.get(&t.mid).copied();
                peer.inputs.retain(|i| i.label.as_deref() != Some(t.mid.as_str()));
                peer.inputs.push(InTrack::data(t.track_id, t.mid, channel));
                continue;
            }
            let mid = Mid::from(t.mid.as_str());
            let matches = peer.rtc.media(mid).is_some_and(|m| m.kind() == media_kind(t.kind));
            if !matches {
                missing.push(t.mid.clone());
                continue;
            }
            if let Some(codec) = answered_codec(&sdp, &t.mid) {
                codecs.push((t.track_id.clone(), codec));
            }
            peer.inputs.retain(|i| i.mid != mid || i.kind == TrackKind::Data);
            peer.inputs.push(InTrack::new(t.track_id, mid, t.kind, t.simulcast, t.muted));
        }
        if !missing.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidSdp,
                format!("the offer has no media section of the right kind for mid {}", missing.join(", ")),
            ));
        }
        tracing::info!(participant = %peer.participant, tracks = peer.inputs.len(), "publisher offer accepted");
        Ok(PublishAnswer { sdp, codecs })
    }

    /// A new offer on an existing publisher connection: an ICE restart, new data channels.
    pub(super) fn publisher_offer(&mut self, participant: &ParticipantId, offer: &str) -> Result<String, ApiError> {
        let offer = parse_offer(offer)?;
        let peer = self
            .peer_mut(participant, Role::Publisher)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidSdp, "there is no publisher connection; publish first"))?;
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot accept the offer: {e}")))?;
        tracing::info!(participant = %peer.participant, "publisher connection renegotiated");
        Ok(answer.to_sdp_string())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe(
        &mut self,
        room: RoomId,
        subscriber: ParticipantId,
        publisher: ParticipantId,
        key: String,
        tracks: Vec<OutgoingTrack>,
        wants: Wants,
        now: Instant,
    ) {
        if self.peer_mut(&subscriber, Role::Subscriber).is_none() {
            let rtc = self.new_rtc(Role::Subscriber, now);
            self.peers.push(Peer::new(room, subscriber.clone(), Role::Subscriber, rtc, now));
        }
        let peer = self.peer_mut(&subscriber, Role::Subscriber).expect("subscriber peer exists");
        for t in tracks {
            let live = peer.outputs.iter().any(|o| {
                o.track_id == t.track_id
                    && matches!(o.state, OutState::Open(_) | OutState::Negotiating(_) | OutState::Channel(_))
            });
            if !live {
                peer.outputs.push(OutTrack::new(t.track_id, t.kind, publisher.clone(), key.clone(), wants));
            }
        }
        self.next_layers = now;
        if let Some(idx) = self.subscriber_index(&subscriber) {
            self.negotiate(idx);
        }
    }

    /// The next subscriber offer will restart ICE.
    pub(super) fn restart_subscriber(&mut self, participant: &ParticipantId) {
        let Some(idx) = self.subscriber_index(participant) else { return };
        self.peers[idx].restart_ice = true;
        self.negotiate(idx);
    }

    pub(super) fn subscriber_index(&self, participant: &ParticipantId) -> Option<usize> {
        self.peers.iter().position(|p| &p.participant == participant && p.role == Role::Subscriber)
    }

    /// Offers the subscriber connection's pending changes, unless an offer is out.
    pub(super) fn negotiate(&mut self, idx: usize) {
        let peer = &mut self.peers[idx];
        if peer.pending.is_some() {
            return;
        }
        let mut change = peer.rtc.sdp_api();
        if !peer.has_control_channel {
            change.add_channel(CONTROL_CHANNEL.to_owned());
            peer.has_control_channel = true;
        }
        if std::mem::take(&mut peer.restart_ice) {
            // Our one candidate stays the same; only the credentials change.
            change.ice_restart(true);
        }
        let mut started: Vec<(ParticipantId, String, Vec<SubscribedTrack>)> = Vec::new();
        for out in &mut peer.outputs {
            let (state, mid) = match out.state {
                OutState::ToOpen if out.kind == TrackKind::Data => {
                    let channel = change.add_channel(out.track_id.to_string());
                    (OutState::Channel(channel), out.track_id.to_string())
                }
                OutState::ToOpen => {
                    let mid = change.add_media(
                        media_kind(out.kind),
                        Direction::SendOnly,
                        Some(out.publisher.to_string()),
                        Some(out.track_id.to_string()),
                        None,
                    );
                    (OutState::Negotiating(mid), mid.to_string())
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    out.state = OutState::NegotiatingStop(mid);
                    continue;
                }
                _ => continue,
            };
            out.state = state;
            let track = SubscribedTrack { track_id: out.track_id.clone(), kind: out.kind, mid };
            match started.iter_mut().find(|(p, k, _)| *p == out.publisher && *k == out.key) {
                Some((_, _, list)) => list.push(track),
                None => started.push((out.publisher.clone(), out.key.clone(), vec![track])),
            }
        }
        if !change.has_changes() {
            return;
        }
        let sdp = match change.apply() {
            Some((offer, pending)) => {
                peer.pending = Some(pending);
                let sdp = offer.to_sdp_string();
                tracing::trace!(participant = %peer.participant, %sdp, "subscriber offer");
                Some(sdp)
            }
            // Only data channels on an existing application section: no offer needed.
            None => None,
        };
        if sdp.is_none() && started.is_empty() {
            return;
        }
        let _ = self.events.send(SfuEvent::SubscriberOffer {
            room: peer.room.clone(),
            participant: peer.participant.clone(),
            sdp,
            started,
        });
    }

    pub(super) fn accept_answer(&mut self, participant: &ParticipantId, sdp: &str) -> Result<(), ApiError> {
        let idx = self
            .subscriber_index(participant)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidSdp, "there is no subscriber offer to answer"))?;
        let peer = &mut self.peers[idx];
        let pending = peer
            .pending
            .take()
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidSdp, "no subscriber offer is pending"))?;
        tracing::trace!(%participant, %sdp, "subscriber answer");
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot parse the answer: {e}")))?;
        let accepted = peer.rtc.sdp_api().accept_answer(pending, answer);
        // Either way the offer is settled: what it opened is open, what it stopped is
        // gone (str0m stops a media section as soon as it is offered stopped).
        let ok = accepted.is_ok();
        for out in &mut peer.outputs {
            if let OutState::Negotiating(m) = out.state {
                out.state = if ok { OutState::Open(m) } else { OutState::ToOpen };
                if let Some(stream) = peer.rtc.direct_api().stream_tx_by_mid(m, None).filter(|_| ok) {
                    // Media goes out as it is forwarded; the estimator's pacer would
                    // hold it behind a collapsed estimate (see `downlink`).
                    stream.set_unpaced(true);
                    if out.is_video() {
                        // Retransmissions may take up to this share of a stream before
                        // str0m drops them; its default (15 %) gives up on a path with a
                        // few percent of loss when a lost retransmission is asked again.
                        stream.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(RTX_RATIO_CAP));
                    }
                }
            }
        }
        peer.outputs.retain(|o| !matches!(o.state, OutState::NegotiatingStop(_)));
        accepted.map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot accept the answer: {e}")))?;
        self.next_layers = Instant::now();
        self.negotiate(idx);
        Ok(())
    }

    /// Stops the matching outgoing tracks on every subscriber connection.
    pub(super) fn stop_outputs(&mut self, stop: impl Fn(&ParticipantId, &OutTrack) -> bool) {
        let mut renegotiate = Vec::new();
        for (idx, peer) in self.peers.iter_mut().enumerate().filter(|(_, p)| p.role == Role::Subscriber) {
            let before = peer.outputs.len();
            let who = peer.participant.clone();
            peer.outputs.retain(|o| !(stop(&who, o) && o.state == OutState::ToOpen));
            let mut changed = before != peer.outputs.len();
            let mut closed = Vec::new();
            for out in peer.outputs.iter_mut().filter(|o| stop(&who, o)) {
                match out.state {
                    OutState::Open(m) | OutState::Negotiating(m) => {
                        out.state = OutState::ToStop(m);
                        changed = true;
                    }
                    OutState::Channel(id) => closed.push((out.track_id.clone(), id)),
                    _ => {}
                }
            }
            for (track_id, channel) in closed {
                peer.rtc.direct_api().close_data_channel(channel);
                peer.channels.retain(|_, c| *c != channel);
                peer.outputs.retain(|o| o.track_id != track_id);
            }
            if changed {
                renegotiate.push(idx);
            }
        }
        for idx in renegotiate {
            self.negotiate(idx);
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
