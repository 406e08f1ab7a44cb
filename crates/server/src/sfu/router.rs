//! The media thread's loop: one UDP socket, every connection, all forwarding.
//!
//! Each turn of [`Router::run`] waits for whichever comes first: a datagram (handed to
//! the connection whose ICE credentials it matches), a command from the hub, or the
//! earliest timer any connection asked for. Then [`Router::drive`] polls every
//! connection until it has nothing more to say, forwards the frames that came out of
//! publisher connections into subscriber connections, and repeats until quiet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_proto::track::{AudioLevel, NetworkMetrics, SubscribedTrack, TrackId, TrackKind};
use confer_proto::{ErrorCode, ParticipantId, RoomId};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::CodecExtra;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::audio_level::{self, Speakers};
use super::forward::{LayerMeter, OutState, OutTrack};
use super::peer::{media_kind, wanted, InTrack, Peer, Role, CONNECT_TIMEOUT};
use super::{Command, IncomingTrack, OutgoingTrack, PublishAnswer, SfuEvent, Wants};
use crate::error::ApiError;

/// How often simulcast layers are re-chosen and pending keyframes re-requested.
const LAYER_INTERVAL: Duration = Duration::from_millis(250);
/// How often network metrics go out to those who asked.
const METRICS_INTERVAL: Duration = Duration::from_secs(2);
/// The starting downlink estimate: high, so that subscribers start on the layer they
/// ask for; TWCC brings it down when the path cannot carry it.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(8_000);

/// Work found while polling, done once the connections are polled.
enum Work {
    /// A frame from a publisher connection (by index) to forward.
    Media(usize, MediaData),
    /// A subscriber asked for a keyframe of what it receives.
    Keyframe { publisher: ParticipantId, track_id: TrackId, rid: Option<Rid> },
}

enum Wake {
    Command(Option<Command>),
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Timer,
}

pub struct Router {
    socket: Arc<UdpSocket>,
    advertise: SocketAddr,
    events: mpsc::UnboundedSender<SfuEvent>,
    peers: Vec<Peer>,
    speakers: HashMap<RoomId, Speakers>,
    watched: HashMap<RoomId, Vec<ParticipantId>>,
    next_levels: Instant,
    next_layers: Instant,
    next_metrics: Instant,
}

impl Router {
    pub fn new(socket: UdpSocket, advertise: SocketAddr, events: mpsc::UnboundedSender<SfuEvent>) -> Self {
        let now = Instant::now();
        Self {
            socket: Arc::new(socket),
            advertise,
            events,
            peers: Vec::new(),
            speakers: HashMap::new(),
            watched: HashMap::new(),
            next_levels: now,
            next_layers: now,
            next_metrics: now,
        }
    }

    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let socket = self.socket.clone();
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            self.drive(now);
            let deadline = self
                .peers
                .iter()
                .map(|p| p.deadline)
                .chain([self.next_levels, self.next_layers, self.next_metrics])
                .min()
                .unwrap_or(now)
                .max(now + Duration::from_millis(1))
                .min(now + Duration::from_millis(500));
            let wake = tokio::select! {
                biased;
                c = commands.recv() => Wake::Command(c),
                r = socket.recv_from(&mut buf) => Wake::Datagram(r),
                _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
            };
            match wake {
                Wake::Command(None | Some(Command::Stop)) => break,
                Wake::Command(Some(c)) => self.command(c, Instant::now()),
                Wake::Datagram(Ok((n, source))) => self.receive(&buf[..n], source, Instant::now()),
                // ICMP errors from earlier sends (port unreachable) surface here on some
                // systems; they concern one peer, which times out on its own.
                Wake::Datagram(Err(e)) => tracing::debug!(error = %e, "media socket receive"),
                Wake::Timer => {}
            }
        }
        for peer in &mut self.peers {
            peer.rtc.disconnect();
        }
        tracing::info!("media thread stopped");
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr, now: Instant) {
        let Ok(contents) = data.try_into() else {
            tracing::trace!(%source, "unrecognised datagram");
            return;
        };
        let input =
            Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: self.advertise, contents });
        match self.peers.iter_mut().find(|p| p.rtc.accepts(&input)) {
            Some(peer) => feed(peer, input),
            None => tracing::trace!(%source, "datagram for no connection"),
        }
    }

    /// Brings every connection up to date and forwards what came out, until quiet.
    fn drive(&mut self, now: Instant) {
        for peer in &mut self.peers {
            if peer.deadline <= now {
                feed(peer, Input::Timeout(now));
            }
        }
        loop {
            let mut work = Vec::new();
            for (idx, peer) in self.peers.iter_mut().enumerate() {
                poll(idx, peer, &self.socket, &mut work);
            }
            if work.is_empty() {
                break;
            }
            for w in work {
                match w {
                    Work::Media(idx, data) => self.forward(idx, data, now),
                    Work::Keyframe { publisher, track_id, rid } => {
                        self.request_keyframe(&publisher, &track_id, rid, now)
                    }
                }
            }
        }
        self.reap(now);
        if now >= self.next_layers {
            self.next_layers = now + LAYER_INTERVAL;
            self.choose_layers(now);
        }
        if now >= self.next_levels {
            self.next_levels = now + audio_level::INTERVAL;
            self.report_levels(now);
        }
        if now >= self.next_metrics {
            self.next_metrics = now + METRICS_INTERVAL;
            self.report_metrics();
        }
    }

    fn command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Publish { room, participant, tracks, offer, reply } => {
                let result = self.publish(room, participant, tracks, &offer, now);
                let _ = reply.send(result);
            }
            Command::Unpublish { participant, tracks } => {
                if let Some(peer) = self.peer_mut(&participant, Role::Publisher) {
                    peer.inputs.retain(|t| !tracks.contains(&t.track_id));
                }
                self.stop_outputs(|_, o| tracks.contains(&o.track_id));
            }
            Command::SetTrackState { track_id, muted, censored } => {
                for peer in self.peers.iter_mut().filter(|p| p.role == Role::Publisher) {
                    if let Some(t) = peer.inputs.iter_mut().find(|t| t.track_id == track_id) {
                        let was = t.flowing();
                        t.muted = muted;
                        t.censored = censored;
                        if t.flowing() && !was {
                            self.next_layers = now;
                        }
                    }
                }
                if !muted && !censored {
                    for peer in self.peers.iter_mut().filter(|p| p.role == Role::Subscriber) {
                        for out in peer.outputs.iter_mut().filter(|o| o.track_id == track_id) {
                            out.restart();
                        }
                    }
                }
            }
            Command::Subscribe { room, subscriber, publisher, key, tracks, wants } => {
                self.subscribe(room, subscriber, publisher, key, tracks, wants, now);
            }
            Command::UpdateSubscription { subscriber, tracks, wants } => {
                if let Some(peer) = self.peer_mut(&subscriber, Role::Subscriber) {
                    for out in peer.outputs.iter_mut().filter(|o| tracks.contains(&o.track_id)) {
                        let was = wanted(&out.wants, out.kind);
                        out.wants = wants;
                        if wanted(&wants, out.kind) && !was {
                            out.restart();
                        }
                    }
                }
                self.next_layers = now;
            }
            Command::Unsubscribe { subscriber, tracks } => {
                self.stop_outputs(|peer, o| *peer == subscriber && tracks.contains(&o.track_id));
            }
            Command::Answer { participant, sdp, reply } => {
                let result = self.accept_answer(&participant, &sdp);
                let _ = reply.send(result);
            }
            Command::Remove { participant } => self.remove(&participant),
            Command::Stop => {}
            Command::WatchMetrics { room, participants } => {
                if participants.is_empty() {
                    self.watched.remove(&room);
                } else {
                    self.watched.insert(room, participants);
                }
            }
        }
    }

    fn peer_mut(&mut self, participant: &ParticipantId, role: Role) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| &p.participant == participant && p.role == role)
    }

    fn new_rtc(&self, role: Role, now: Instant) -> Rtc {
        let mut builder = Rtc::builder().set_ice_lite(true).set_stats_interval(Some(METRICS_INTERVAL));
        if role == Role::Subscriber {
            builder = builder.enable_bwe(Some(INITIAL_ESTIMATE));
        }
        let mut rtc = builder.build(now);
        match Candidate::host(self.advertise, "udp") {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => tracing::error!(error = %e, addr = %self.advertise, "bad media candidate address"),
        }
        rtc
    }

    fn publish(
        &mut self,
        room: RoomId,
        participant: ParticipantId,
        tracks: Vec<IncomingTrack>,
        offer: &str,
        now: Instant,
    ) -> Result<PublishAnswer, ApiError> {
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot parse the offer: {e}")))?;
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
            let mid = Mid::from(t.mid.as_str());
            let matches = peer.rtc.media(mid).is_some_and(|m| m.kind() == media_kind(t.kind));
            if !matches || t.kind == TrackKind::Data {
                missing.push(t.mid.clone());
                continue;
            }
            if let Some(codec) = answered_codec(&sdp, &t.mid) {
                codecs.push((t.track_id.clone(), codec));
            }
            peer.inputs.retain(|i| i.mid != mid);
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

    #[allow(clippy::too_many_arguments)]
    fn subscribe(
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
            let live = peer
                .outputs
                .iter()
                .any(|o| o.track_id == t.track_id && matches!(o.state, OutState::Open(_) | OutState::Negotiating(_)));
            if !live {
                peer.outputs.push(OutTrack::new(t.track_id, t.kind, publisher.clone(), key.clone(), wants));
            }
        }
        self.next_layers = now;
        let idx = self.peers.iter().position(|p| p.participant == subscriber && p.role == Role::Subscriber);
        if let Some(idx) = idx {
            self.negotiate(idx);
        }
    }

    /// Offers the subscriber connection's pending changes, unless an offer is out.
    fn negotiate(&mut self, idx: usize) {
        let peer = &mut self.peers[idx];
        if peer.pending.is_some() {
            return;
        }
        let mut change = peer.rtc.sdp_api();
        let mut started: Vec<(ParticipantId, String, Vec<SubscribedTrack>)> = Vec::new();
        for out in &mut peer.outputs {
            match out.state {
                OutState::ToOpen => {
                    let mid = change.add_media(
                        media_kind(out.kind),
                        Direction::SendOnly,
                        Some(out.publisher.to_string()),
                        Some(out.track_id.to_string()),
                        None,
                    );
                    out.state = OutState::Negotiating(mid);
                    let track =
                        SubscribedTrack { track_id: out.track_id.clone(), kind: out.kind, mid: mid.to_string() };
                    match started.iter_mut().find(|(p, k, _)| *p == out.publisher && *k == out.key) {
                        Some((_, _, list)) => list.push(track),
                        None => started.push((out.publisher.clone(), out.key.clone(), vec![track])),
                    }
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    out.state = OutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return;
        }
        let Some((offer, pending)) = change.apply() else { return };
        peer.pending = Some(pending);
        let _ = self.events.send(SfuEvent::SubscriberOffer {
            room: peer.room.clone(),
            participant: peer.participant.clone(),
            sdp: offer.to_sdp_string(),
            started,
        });
    }

    fn accept_answer(&mut self, participant: &ParticipantId, sdp: &str) -> Result<(), ApiError> {
        let idx = self
            .peers
            .iter()
            .position(|p| &p.participant == participant && p.role == Role::Subscriber)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidSdp, "there is no subscriber offer to answer"))?;
        let peer = &mut self.peers[idx];
        let pending = peer
            .pending
            .take()
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidSdp, "no subscriber offer is pending"))?;
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot parse the answer: {e}")))?;
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| ApiError::new(ErrorCode::InvalidSdp, format!("cannot accept the answer: {e}")))?;
        for out in &mut peer.outputs {
            if let OutState::Negotiating(m) = out.state {
                out.state = OutState::Open(m);
            }
        }
        peer.outputs.retain(|o| !matches!(o.state, OutState::NegotiatingStop(_)));
        self.next_layers = Instant::now();
        self.negotiate(idx);
        Ok(())
    }

    /// Stops the matching outgoing tracks on every subscriber connection.
    fn stop_outputs(&mut self, stop: impl Fn(&ParticipantId, &OutTrack) -> bool) {
        let mut renegotiate = Vec::new();
        for (idx, peer) in self.peers.iter_mut().enumerate().filter(|(_, p)| p.role == Role::Subscriber) {
            let before = peer.outputs.len();
            let who = peer.participant.clone();
            peer.outputs.retain(|o| !(stop(&who, o) && o.state == OutState::ToOpen));
            let mut changed = before != peer.outputs.len();
            for out in peer.outputs.iter_mut().filter(|o| stop(&who, o)) {
                match out.state {
                    OutState::Open(m) | OutState::Negotiating(m) => {
                        out.state = OutState::ToStop(m);
                        changed = true;
                    }
                    _ => {}
                }
            }
            if changed {
                renegotiate.push(idx);
            }
        }
        for idx in renegotiate {
            self.negotiate(idx);
        }
    }

    fn remove(&mut self, participant: &ParticipantId) {
        let mut gone_tracks = Vec::new();
        self.peers.retain_mut(|p| {
            if &p.participant != participant {
                return true;
            }
            gone_tracks.extend(p.inputs.iter().map(|t| t.track_id.clone()));
            p.rtc.disconnect();
            false
        });
        for speakers in self.speakers.values_mut() {
            speakers.forget(participant);
        }
        if !gone_tracks.is_empty() {
            self.stop_outputs(|_, o| gone_tracks.contains(&o.track_id));
        }
    }

    /// Drops connections that died or never came up, and tells the hub.
    fn reap(&mut self, now: Instant) {
        let dead: Vec<usize> = self
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                !p.rtc.is_alive() || (!p.connected && now.saturating_duration_since(p.created) > CONNECT_TIMEOUT)
            })
            .map(|(i, _)| i)
            .collect();
        for idx in dead.into_iter().rev() {
            let mut peer = self.peers.remove(idx);
            peer.rtc.disconnect();
            tracing::info!(participant = %peer.participant, role = peer.label(), connected = peer.connected, "media connection lost");
            let tracks: Vec<TrackId> = peer.inputs.iter().map(|t| t.track_id.clone()).collect();
            if !tracks.is_empty() {
                self.stop_outputs(|_, o| tracks.contains(&o.track_id));
            }
            let _ = self.events.send(SfuEvent::PeerFailed {
                room: peer.room,
                participant: peer.participant,
                publisher: peer.role == Role::Publisher,
            });
        }
    }

    fn forward(&mut self, from: usize, data: MediaData, now: Instant) {
        let keyframe = is_keyframe(&data.codec_extra);
        let publisher = &mut self.peers[from];
        let room = publisher.room.clone();
        let publisher_id = publisher.participant.clone();
        let Some(track) = publisher.input_mut(data.mid) else { return };
        track.meter(data.rid.clone()).observe(data.data.len(), now);
        if let Some(level) = data.ext_vals.audio_level {
            track.audio_level = Some((level, data.ext_vals.voice_activity, now));
        }
        let track_id = track.track_id.clone();
        let flowing = track.flowing();
        let is_video = track.kind == TrackKind::Video;
        let mut want_keyframe = false;
        if !data.contiguous && is_video {
            // Something upstream was lost for good: every receiver restarts at a keyframe.
            want_keyframe = true;
        }
        if flowing {
            for peer in self.peers.iter_mut().filter(|p| p.role == Role::Subscriber && p.room == room) {
                for out in peer.outputs.iter_mut().filter(|o| o.track_id == track_id) {
                    let Some(mid) = out.open_mid() else { continue };
                    if !wanted(&out.wants, out.kind) {
                        continue;
                    }
                    if !data.contiguous && out.current == data.rid {
                        out.restart();
                    }
                    let Some(time) = out.accept(data.rid.as_ref(), keyframe, data.time, data.network_time) else {
                        continue;
                    };
                    let Some(writer) = peer.rtc.writer(mid) else { continue };
                    let Some(pt) = writer.match_params(data.params) else {
                        tracing::debug!(participant = %peer.participant, %mid, "subscriber cannot receive this codec");
                        continue;
                    };
                    let writer = match data.ext_vals.audio_level {
                        Some(level) => writer.audio_level(level, data.ext_vals.voice_activity.unwrap_or(false)),
                        None => writer,
                    };
                    if let Err(e) = writer.write(pt, data.network_time, time, data.data.clone()) {
                        tracing::debug!(participant = %peer.participant, error = %e, "forwarding a frame failed");
                    }
                }
            }
        }
        if want_keyframe {
            self.request_keyframe(&publisher_id, &track_id, data.rid.clone(), now);
        }
    }

    fn request_keyframe(&mut self, publisher: &ParticipantId, track_id: &TrackId, rid: Option<Rid>, now: Instant) {
        let Some(peer) = self.peer_mut(publisher, Role::Publisher) else { return };
        let Some(track) = peer.inputs.iter_mut().find(|t| &t.track_id == track_id) else { return };
        if track.kind != TrackKind::Video || !track.take_keyframe_slot(rid.clone(), now) {
            return;
        }
        let rid = if track.simulcast { rid } else { None };
        let mid = track.mid;
        if let Some(mut writer) = peer.rtc.writer(mid) {
            if let Err(e) = writer.request_keyframe(rid, KeyframeRequestKind::Pli) {
                tracing::debug!(error = %e, "keyframe request failed");
            }
        }
    }

    /// Re-chooses every subscriber's simulcast layers, and asks publishers for the
    /// keyframes that waiting subscribers need.
    fn choose_layers(&mut self, now: Instant) {
        let mut sources: HashMap<TrackId, (ParticipantId, bool, Vec<LayerMeter>)> = HashMap::new();
        for peer in self.peers.iter().filter(|p| p.role == Role::Publisher) {
            for t in peer.inputs.iter().filter(|t| t.kind == TrackKind::Video && t.flowing()) {
                sources.insert(t.track_id.clone(), (peer.participant.clone(), t.simulcast, t.layers.clone()));
            }
        }
        let mut requests = Vec::new();
        for peer in self.peers.iter_mut().filter(|p| p.role == Role::Subscriber) {
            let videos = peer.outputs.iter().filter(|o| o.is_video() && wanted(&o.wants, o.kind)).count().max(1);
            let budget = peer.estimate_bps.map(|e| e / videos as u64);
            for out in peer.outputs.iter_mut().filter(|o| o.is_video() && o.open_mid().is_some()) {
                let Some((publisher, simulcast, layers)) = sources.get(&out.track_id) else { continue };
                if !wanted(&out.wants, out.kind) {
                    continue;
                }
                if *simulcast {
                    if let Some(rid) = out.choose_layer(layers, budget, now) {
                        requests.push((publisher.clone(), out.track_id.clone(), Some(rid)));
                        continue;
                    }
                }
                let waiting = out.needs_keyframe || (out.target != out.current);
                if waiting {
                    requests.push((publisher.clone(), out.track_id.clone(), out.target.clone()));
                }
            }
        }
        for (publisher, track_id, rid) in requests {
            self.request_keyframe(&publisher, &track_id, rid, now);
        }
    }

    fn report_levels(&mut self, now: Instant) {
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

    fn report_metrics(&mut self) {
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

fn metrics(participant_id: ParticipantId, publisher: Option<Stats>, subscriber: Option<Stats>) -> NetworkMetrics {
    let rtt = [&publisher, &subscriber]
        .iter()
        .filter_map(|s| s.as_ref().and_then(|(s, _)| s.rtt))
        .map(|d| d.as_secs_f64() * 1000.0)
        .reduce(f64::min);
    let publish_loss = publisher.as_ref().and_then(|(s, _)| s.ingress_loss_fraction).unwrap_or(0.0);
    let subscribe_loss = subscriber.as_ref().and_then(|(s, _)| s.egress_loss_fraction).unwrap_or(0.0);
    let downlink_bps = subscriber.as_ref().and_then(|(_, e)| *e);
    let loss = publish_loss.max(subscribe_loss);
    let rtt_ms = rtt.unwrap_or(0.0);
    let score = match (loss, rtt_ms) {
        (l, r) if l < 0.01 && r < 150.0 => 5,
        (l, r) if l < 0.03 && r < 250.0 => 4,
        (l, r) if l < 0.08 && r < 400.0 => 3,
        (l, _) if l < 0.15 => 2,
        _ => 1,
    };
    NetworkMetrics { participant_id, rtt_ms: rtt, publish_loss, subscribe_loss, downlink_bps, score }
}

fn feed(peer: &mut Peer, input: Input) {
    if !peer.rtc.is_alive() {
        return;
    }
    if let Err(e) = peer.rtc.handle_input(input) {
        tracing::info!(participant = %peer.participant, role = peer.label(), error = %e, "media connection failed");
        peer.rtc.disconnect();
    }
}

/// Drains one connection's output: datagrams go out, events become work.
fn poll(idx: usize, peer: &mut Peer, socket: &UdpSocket, work: &mut Vec<Work>) {
    while peer.rtc.is_alive() {
        let output = match peer.rtc.poll_output() {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(participant = %peer.participant, error = %e, "media connection failed");
                peer.rtc.disconnect();
                return;
            }
        };
        match output {
            Output::Timeout(t) => {
                peer.deadline = t;
                return;
            }
            Output::Transmit(t) => {
                if let Err(e) = socket.try_send_to(&t.contents, t.destination) {
                    // UDP: a full send buffer drops the datagram, as the network would.
                    tracing::trace!(error = %e, "media send dropped");
                }
            }
            Output::Event(event) => match event {
                Event::Connected => {
                    peer.connected = true;
                    tracing::info!(participant = %peer.participant, role = peer.label(), "media connected");
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    // The peer stopped answering consent checks; it is gone.
                    peer.rtc.disconnect();
                }
                Event::MediaData(data) if peer.role == Role::Publisher => work.push(Work::Media(idx, data)),
                Event::KeyframeRequest(req) if peer.role == Role::Subscriber => {
                    if let Some(out) = peer.outputs.iter().find(|o| o.open_mid() == Some(req.mid)) {
                        work.push(Work::Keyframe {
                            publisher: out.publisher.clone(),
                            track_id: out.track_id.clone(),
                            rid: out.current.clone().or(out.target.clone()),
                        });
                    }
                }
                Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                    peer.estimate_bps = Some(estimate.as_u64());
                }
                Event::PeerStats(stats) => peer.stats = Some(stats),
                _ => {}
            },
        }
    }
}

fn is_keyframe(extra: &CodecExtra) -> bool {
    match extra {
        CodecExtra::Vp8(e) => e.is_keyframe,
        CodecExtra::Vp9(e) => e.is_keyframe,
        CodecExtra::H264(e) => e.is_keyframe,
        CodecExtra::H265(e) => e.is_keyframe,
        CodecExtra::Av1(e) => e.is_keyframe,
        _ => false,
    }
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
