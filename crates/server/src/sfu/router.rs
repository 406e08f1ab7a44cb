//! The media thread's loop: one UDP socket, the ICE-TCP connections, every media
//! connection, all forwarding.
//!
//! Each turn of [`Router::run`] waits for whichever comes first: a datagram or a packet
//! from a TCP connection (handed to the media connection whose ICE credentials it
//! matches), a command from the hub, or the earliest timer any connection asked for. Then [`Router::drive`] polls every
//! connection until it has nothing more to say, forwards the frames that came out of
//! publisher connections into subscriber connections, and repeats until quiet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use confer_proto::track::{TrackId, TrackKind};
use confer_proto::{ParticipantId, RoomId};
use str0m::bwe::{Bitrate, BweKind};
use str0m::channel::ChannelData;
use str0m::format::CodecExtra;
use str0m::media::{KeyframeRequestKind, MediaData, Rid};
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::audio_level::{self, Speakers};
use super::forward::{LayerMeter, OutState};
use super::peer::{wanted, Peer, Role, CONNECT_TIMEOUT};
use super::tcp::{self, TcpInput};
use super::{Command, MediaAddrs, SfuEvent};

/// How often simulcast layers are re-chosen and pending keyframes re-requested.
const LAYER_INTERVAL: Duration = Duration::from_millis(250);
/// How often network metrics go out to those who asked.
const METRICS_INTERVAL: Duration = Duration::from_secs(2);
/// What one audio track is assumed to take of a subscriber's downlink.
const AUDIO_BPS: u64 = 48_000;
/// The starting TWCC estimate of a subscriber connection; probing toward what its
/// subscriptions want raises it.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(1_500);
/// Audio packets held back to put late ones in order (20 ms each).
const AUDIO_REORDERING: usize = 2;
/// How often str0m reports statistics (receiver-reported loss feeds layer choice).
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Work found while polling, done once the connections are polled.
enum Work {
    /// A frame from a publisher connection (by index) to forward.
    Media(usize, Box<MediaData>),
    /// A subscriber asked for a keyframe of what it receives.
    Keyframe { publisher: ParticipantId, track_id: TrackId, rid: Option<Rid> },
    /// A message on a publisher connection's data channel.
    Data(usize, ChannelData),
}

enum Wake {
    Command(Option<Command>),
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Tcp(TcpInput),
    Timer,
}

/// The sockets media leaves by.
struct Net {
    udp: UdpSocket,
    /// Open ICE-TCP connections by the client's address: each one's send queue.
    tcp: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    addrs: MediaAddrs,
}

impl Net {
    fn send(&self, t: &Transmit) {
        match t.proto {
            Protocol::Udp => {
                if let Err(e) = self.udp.try_send_to(&t.contents, t.destination) {
                    // UDP: a full send buffer drops the datagram, as the network would.
                    tracing::trace!(error = %e, "media send dropped");
                }
            }
            Protocol::Tcp => match self.tcp.get(&t.destination) {
                // A full queue is a client reading slower than it receives: drop, as
                // UDP would, rather than wait for it.
                Some(queue) => {
                    if let Err(e) = queue.try_send(t.contents.to_vec()) {
                        tracing::trace!(destination = %t.destination, error = %e, "media TCP send dropped");
                    }
                }
                None => tracing::trace!(destination = %t.destination, "no TCP connection for this media"),
            },
            other => tracing::debug!(?other, "media send over an unsupported transport"),
        }
    }
}

pub struct Router {
    net: Net,
    pub(super) events: mpsc::UnboundedSender<SfuEvent>,
    pub(super) peers: Vec<Peer>,
    pub(super) speakers: HashMap<RoomId, Speakers>,
    pub(super) watched: HashMap<RoomId, Vec<ParticipantId>>,
    next_levels: Instant,
    pub(super) next_layers: Instant,
    next_metrics: Instant,
}

impl Router {
    pub fn new(socket: UdpSocket, addrs: MediaAddrs, events: mpsc::UnboundedSender<SfuEvent>) -> Self {
        let now = Instant::now();
        Self {
            net: Net { udp: socket, tcp: HashMap::new(), addrs },
            events,
            peers: Vec::new(),
            speakers: HashMap::new(),
            watched: HashMap::new(),
            next_levels: now,
            next_layers: now,
            next_metrics: now,
        }
    }

    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut tcp_input: mpsc::Receiver<TcpInput>,
    ) {
        let mut buf = vec![0u8; 2048];
        // The address datagrams arrive at, when the socket is bound to one.
        let udp_ip = self.net.udp.local_addr().ok().map(|a| a.ip()).filter(|ip| !ip.is_unspecified());
        loop {
            let now = Instant::now();
            // A panic that `feed` and `poll` did not pin on one connection (forwarding
            // touches several): log it and go on; the media thread serves everyone.
            if catch_unwind(AssertUnwindSafe(|| self.drive(now))).is_err() {
                tracing::error!("media processing panicked");
            }
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
                r = self.net.udp.recv_from(&mut buf) => Wake::Datagram(r),
                Some(t) = tcp_input.recv() => Wake::Tcp(t),
                _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
            };
            match wake {
                Wake::Command(None | Some(Command::Stop)) => break,
                Wake::Command(Some(c)) => {
                    let participant = c.participant().cloned();
                    if catch_unwind(AssertUnwindSafe(|| self.command(c, Instant::now()))).is_err() {
                        // Its state may be half-changed: the participant's connections go.
                        tracing::error!(?participant, "media command panicked");
                        if let Some(participant) = participant {
                            self.fail_participant(&participant);
                        }
                    }
                }
                Wake::Datagram(Ok((n, source))) => {
                    let source = tcp::canonical(source);
                    if let Some(destination) = MediaAddrs::destination(&self.net.addrs.udp, source, udp_ip) {
                        self.receive(Protocol::Udp, &buf[..n], source, destination, Instant::now());
                    }
                }
                Wake::Tcp(TcpInput::Opened { remote, sender, .. }) => {
                    self.net.tcp.insert(remote, sender);
                }
                Wake::Tcp(TcpInput::Packet { remote, local, data }) => {
                    if let Some(destination) = MediaAddrs::destination(&self.net.addrs.tcp, remote, Some(local.ip())) {
                        self.receive(Protocol::Tcp, &data, remote, destination, Instant::now());
                    }
                }
                Wake::Tcp(TcpInput::Closed { remote }) => {
                    self.net.tcp.remove(&remote);
                }
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

    fn receive(&mut self, proto: Protocol, data: &[u8], source: SocketAddr, destination: SocketAddr, now: Instant) {
        let Ok(contents) = data.try_into() else {
            tracing::trace!(%source, ?proto, "unrecognised packet");
            return;
        };
        let input = Input::Receive(now, Receive { proto, source, destination, contents });
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
                poll(idx, peer, &self.net, &mut work);
            }
            if work.is_empty() {
                break;
            }
            for w in work {
                match w {
                    Work::Media(idx, data) => self.forward(idx, *data, now),
                    Work::Keyframe { publisher, track_id, rid } => {
                        self.request_keyframe(&publisher, &track_id, rid, now)
                    }
                    Work::Data(idx, data) => self.forward_data(idx, &data),
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
                    let mut raised = false;
                    for out in peer.outputs.iter_mut().filter(|o| tracks.contains(&o.track_id)) {
                        let was = wanted(&out.wants, out.kind);
                        raised |= out.is_video() && wants.quality > out.wants.quality;
                        out.wants = wants;
                        if wanted(&wants, out.kind) && !was {
                            out.restart();
                        }
                    }
                    if raised {
                        peer.downlink.more_wanted(now);
                    }
                }
                self.next_layers = now;
            }
            Command::Unsubscribe { subscriber, tracks } => {
                self.stop_outputs(|peer, o| *peer == subscriber && tracks.contains(&o.track_id));
            }
            Command::PublisherOffer { participant, offer, reply } => {
                let _ = reply.send(self.publisher_offer(&participant, &offer));
            }
            Command::RestartSubscriber { participant } => self.restart_subscriber(&participant),
            Command::Answer { participant, sdp, reply } => {
                let result = self.accept_answer(&participant, &sdp);
                let _ = reply.send(result);
            }
            Command::Remove { participant } => self.remove(&participant),
            Command::InjectPanic { participant } => {
                for peer in self.peers.iter_mut().filter(|p| p.participant == participant) {
                    peer.fault = true;
                }
            }
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

    pub(super) fn peer_mut(&mut self, participant: &ParticipantId, role: Role) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| &p.participant == participant && p.role == role)
    }

    pub(super) fn new_rtc(&self, role: Role, now: Instant) -> Rtc {
        let mut builder = Rtc::builder();
        if role == Role::Subscriber {
            // TWCC bandwidth estimation; its pacer is bypassed (see `downlink`).
            builder = builder.enable_bwe(Some(INITIAL_ESTIMATE));
        }
        let mut rtc = builder
            // The codecs Confer carries; a browser's offer of others (VP9, AV1, H.265)
            // is answered without them.
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .set_ice_lite(true)
            .set_stats_interval(Some(STATS_INTERVAL))
            // Audio is forwarded as it comes: a lost packet is not waited for (the
            // receiver's decoder conceals it), so the packets behind it are not held.
            .set_reordering_size_audio(AUDIO_REORDERING)
            .build(now);
        let udp = self.net.addrs.udp.iter().map(|a| (*a, Candidate::host(*a, "udp")));
        let tcp = self
            .net
            .addrs
            .tcp
            .iter()
            .map(|a| (*a, Candidate::builder().tcp().host(*a).tcptype(TcpType::Passive).build()));
        for (addr, candidate) in udp.chain(tcp) {
            match candidate {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::error!(error = %e, %addr, "bad media candidate address"),
            }
        }
        rtc
    }

    /// After a panic in its handling: the participant's connections are closed, and
    /// the hub hears they failed (as for any dead connection, at the next reaping).
    fn fail_participant(&mut self, participant: &ParticipantId) {
        for peer in self.peers.iter_mut().filter(|p| &p.participant == participant) {
            peer.rtc.disconnect();
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
                !p.rtc.is_alive()
                    || (!p.connected && now.saturating_duration_since(p.created) > CONNECT_TIMEOUT)
                    || p.gave_out(now)
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
        if track.kind == TrackKind::Video && !track.nack_enabled.contains(&data.rid) {
            // str0m asks for retransmissions only of streams announced with an RTX
            // stream, and clients announce none (they retransmit on the stream itself,
            // which str0m's receive buffer takes just as well).
            track.nack_enabled.push(data.rid);
            if let Some(stream) = publisher.rtc.direct_api().stream_rx_by_mid(data.mid, data.rid) {
                stream.suppress_nack(false);
            }
        }
        let Some(track) = publisher.input_mut(data.mid) else { return };
        track.meter(data.rid).observe(data.data.len(), now);
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
            self.request_keyframe(&publisher_id, &track_id, data.rid, now);
        }
    }

    fn request_keyframe(&mut self, publisher: &ParticipantId, track_id: &TrackId, rid: Option<Rid>, now: Instant) {
        let Some(peer) = self.peer_mut(publisher, Role::Publisher) else { return };
        let Some(track) = peer.inputs.iter_mut().find(|t| &t.track_id == track_id) else { return };
        if track.kind != TrackKind::Video || !track.take_keyframe_slot(rid, now) {
            return;
        }
        let rid = if track.simulcast { rid } else { None };
        let mid = track.mid;
        if let Some(mut writer) = peer.rtc.writer(mid) {
            tracing::trace!(%track_id, ?rid, "keyframe requested");
            if let Err(e) = writer.request_keyframe(rid, KeyframeRequestKind::Pli) {
                tracing::debug!(error = %e, "keyframe request failed");
            }
        }
    }

    /// Re-chooses every subscriber's simulcast layers (within what its downlink has
    /// shown it carries), and asks publishers for the keyframes that waiting subscribers
    /// need.
    fn choose_layers(&mut self, now: Instant) {
        let mut sources: HashMap<TrackId, (ParticipantId, bool, Vec<LayerMeter>)> = HashMap::new();
        for peer in self.peers.iter().filter(|p| p.role == Role::Publisher) {
            for t in peer.inputs.iter().filter(|t| t.kind == TrackKind::Video && t.flowing()) {
                sources.insert(t.track_id.clone(), (peer.participant.clone(), t.simulcast, t.layers.clone()));
            }
        }
        let mut requests = Vec::new();
        for peer in self.peers.iter_mut().filter(|p| p.role == Role::Subscriber) {
            let wanted_of = |kind| peer.outputs.iter().filter(|o| o.kind == kind && wanted(&o.wants, o.kind)).count();
            let (videos, audios) = (wanted_of(TrackKind::Video), wanted_of(TrackKind::Audio));
            let audio_bps = audios as u64 * AUDIO_BPS;
            let flowing = |o: &&mut super::forward::OutTrack| {
                o.is_video() && o.open_mid().is_some() && wanted(&o.wants, o.kind) && sources.contains_key(&o.track_id)
            };
            let forwarded: u64 = audio_bps
                + peer
                    .outputs
                    .iter_mut()
                    .filter(flowing)
                    .map(|o| o.current_bitrate(&sources[&o.track_id].2))
                    .sum::<u64>();
            let limit = peer.downlink.budget(forwarded, peer.estimate_bps, now);
            let budget = limit.map(|e| e.saturating_sub(audio_bps) / videos.max(1) as u64);
            let mut changed = false;
            let mut desired = audio_bps;
            for out in peer.outputs.iter_mut().filter(flowing) {
                let (publisher, simulcast, layers) = &sources[&out.track_id];
                desired += out.preferred_bitrate(layers, now);
                if *simulcast {
                    if let Some(rid) = out.choose_layer(layers, budget, now) {
                        changed = true;
                        tracing::debug!(
                            participant = %peer.participant, track = %out.track_id, %rid, ?budget,
                            layers = ?layers.iter().map(|l| (l.rid, l.bitrate_bps)).collect::<Vec<_>>(),
                            "switching simulcast layer"
                        );
                        requests.push((publisher.clone(), out.track_id.clone(), Some(rid)));
                        continue;
                    }
                }
                let waiting = out.needs_keyframe || (out.target != out.current);
                if waiting {
                    requests.push((publisher.clone(), out.track_id.clone(), out.target));
                }
            }
            if changed {
                peer.downlink.rate_changed(now);
            }
            // The estimator probes toward what the subscriptions would like.
            if desired.abs_diff(peer.bwe_desired) * 10 > peer.bwe_desired {
                peer.bwe_desired = desired;
                peer.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
            }
        }
        for (publisher, track_id, rid) in requests {
            self.request_keyframe(&publisher, &track_id, rid, now);
        }
    }

    /// Relays a message from a publisher's data track to its subscribers.
    fn forward_data(&mut self, from: usize, data: &ChannelData) {
        let publisher = &self.peers[from];
        let room = publisher.room.clone();
        let Some(track) = publisher.inputs.iter().find(|t| t.kind == TrackKind::Data && t.channel == Some(data.id))
        else {
            return;
        };
        if !track.flowing() {
            return;
        }
        let track_id = track.track_id.clone();
        for peer in self.peers.iter_mut().filter(|p| p.role == Role::Subscriber && p.room == room) {
            for out in peer.outputs.iter().filter(|o| o.track_id == track_id) {
                let OutState::Channel(id) = out.state else { continue };
                let Some(mut channel) = peer.rtc.channel(id) else { continue };
                match channel.write(data.binary, &data.data) {
                    Ok(true) => {}
                    // A subscriber that cannot keep up loses messages rather than
                    // holding up the others.
                    Ok(false) => tracing::debug!(participant = %peer.participant, "data channel full; message dropped"),
                    Err(e) => tracing::debug!(participant = %peer.participant, error = %e, "data channel write failed"),
                }
            }
        }
    }
}

fn feed(peer: &mut Peer, input: Input) {
    if !peer.rtc.is_alive() {
        return;
    }
    let handled = catch_unwind(AssertUnwindSafe(|| {
        if std::mem::take(&mut peer.fault) {
            panic!("fault injected into {}'s media", peer.participant);
        }
        peer.rtc.handle_input(input)
    }));
    match handled {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::info!(participant = %peer.participant, role = peer.label(), error = %e, "media connection failed");
            peer.rtc.disconnect();
        }
        Err(_) => panicked(peer),
    }
}

/// A panic while serving one connection ends that connection only (the reaping that
/// follows tells the hub, which tells the others).
fn panicked(peer: &mut Peer) {
    tracing::error!(participant = %peer.participant, role = peer.label(), "media connection panicked; closing it");
    peer.rtc.disconnect();
}

/// Drains one connection's output: datagrams go out, events become work.
fn poll(idx: usize, peer: &mut Peer, net: &Net, work: &mut Vec<Work>) {
    while peer.rtc.is_alive() {
        let output = match catch_unwind(AssertUnwindSafe(|| peer.rtc.poll_output())) {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                tracing::info!(participant = %peer.participant, error = %e, "media connection failed");
                peer.rtc.disconnect();
                return;
            }
            Err(_) => return panicked(peer),
        };
        match output {
            Output::Timeout(t) => {
                peer.deadline = t;
                return;
            }
            Output::Transmit(t) => net.send(&t),
            Output::Event(event) => match event {
                Event::Connected => {
                    peer.connected = true;
                    tracing::info!(participant = %peer.participant, role = peer.label(), "media connected");
                }
                Event::IceConnectionStateChange(state) => match state {
                    IceConnectionState::Connected | IceConnectionState::Completed => {
                        if peer.unhealthy_since.take().is_some() {
                            tracing::info!(participant = %peer.participant, role = peer.label(), "media reconnected");
                        }
                    }
                    // Before the first connection, `CONNECT_TIMEOUT` applies.
                    _ if !peer.connected => {}
                    IceConnectionState::Disconnected => {
                        // No consent checks for a while: gone, unless it comes back.
                        tracing::info!(participant = %peer.participant, role = peer.label(), "media disconnected");
                        peer.unhealthy_since = Some((Instant::now(), true));
                    }
                    _ => {
                        // Checking a path again (an ICE restart): the clock keeps running
                        // from a disconnection, else starts now.
                        let since = peer.unhealthy_since.map_or(Instant::now(), |(t, _)| t);
                        peer.unhealthy_since = Some((since, false));
                    }
                },
                Event::ChannelOpen(id, label) => {
                    if peer.role == Role::Publisher {
                        for t in peer.inputs.iter_mut().filter(|t| t.label.as_deref() == Some(label.as_str())) {
                            t.channel = Some(id);
                        }
                    }
                    peer.channels.insert(label, id);
                }
                Event::ChannelClose(id) => peer.channels.retain(|_, c| *c != id),
                Event::ChannelData(data) if peer.role == Role::Publisher => work.push(Work::Data(idx, data)),
                Event::MediaData(data) if peer.role == Role::Publisher => work.push(Work::Media(idx, Box::new(data))),
                Event::KeyframeRequest(req) if peer.role == Role::Subscriber => {
                    if let Some(out) = peer.outputs.iter().find(|o| o.open_mid() == Some(req.mid)) {
                        work.push(Work::Keyframe {
                            publisher: out.publisher.clone(),
                            track_id: out.track_id.clone(),
                            rid: out.current.or(out.target),
                        });
                    }
                }
                Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                    tracing::trace!(participant = %peer.participant, %estimate, "bandwidth estimate");
                    peer.estimate_bps = Some(estimate.as_u64());
                }
                Event::MediaEgressStats(stats) => {
                    if let Some(loss) = stats.loss {
                        peer.downlink.reported_loss(loss);
                    }
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
