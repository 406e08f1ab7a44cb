//! A worker: the SFU's core for the rooms of one thread, without sockets or a clock.
//!
//! Like [`str0m::Rtc`] it is driven from outside: [`Worker::handle_input`] takes the
//! time and one [`Input`] (a datagram, a command from the hub, or a timeout), and
//! [`Worker::poll_output`] gives back, until it says [`Output::Timeout`], the datagrams
//! to send and the events for the hub. The driver (`driver.rs`) owns the sockets and the
//! clock; tests step the worker in virtual time against str0m clients.
//!
//! The cost of a datagram does not grow with the people on the server:
//! - it reaches its transport through a map from the sender's address (the ICE username
//!   only for the first STUN request of a new path);
//! - only the transports that received input, were written to, or whose timer is due are
//!   polled (a timer queue keeps the deadlines, and lets housekeeping ride on other
//!   wake-ups: `timers.rs`);
//! - a frame goes to the subscribers of its producer only ([`Room::consumers`]).
//!
//! Periodic work (layer choice, audio levels, network metrics, reaping) runs on its own
//! ticks, a few times a second.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use confer_proto::track::{TrackId, TrackKind};
use confer_proto::{ParticipantId, RoomId};
use str0m::bwe::{Bitrate, BweKind};
use str0m::channel::ChannelData;
use str0m::format::Codec;
use str0m::ice::StunMessage;
use str0m::media::{KeyframeRequestKind, Rid};
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Vp8Descriptor};
use str0m::{Candidate, Event, IceConnectionState, Rtc};

use super::audio_level;
use super::consumer::{long_picture_id, OutState, Packet};
use super::producer::{starts_keyframe, HeardLevel, LayerMeter};
use super::room::Room;
use super::timers::{Timers, SLACK};
use super::transport::{Health, Role, Side, Transport, TransportId};
use super::{Command, MediaAddrs, SfuEvent};

/// How often simulcast layers are re-chosen and pending keyframes re-requested.
const LAYER_INTERVAL: Duration = Duration::from_millis(100);
/// How often network metrics go out to those who asked.
const METRICS_INTERVAL: Duration = Duration::from_secs(2);
/// How often dead transports are looked for.
const REAP_INTERVAL: Duration = Duration::from_millis(250);
/// What one audio track is assumed to take of a subscriber's downlink.
const AUDIO_BPS: u64 = 48_000;
/// The starting TWCC estimate of a subscriber transport; probing toward what its
/// subscriptions want raises it.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(1_500);
/// Audio packets held back to put late ones in order (20 ms each).
const AUDIO_REORDERING: usize = 2;
/// How often str0m reports statistics (receiver-reported loss feeds layer choice).
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Timeouts due at once that one transport's drain feeds in a row (each lets out a
/// packet; a keyframe of a large picture is about a hundred) before it leaves the rest
/// to the next turn of the worker.
const MAX_DUE_NOW: u32 = 256;
/// How far ahead a timeout may be and still count as due at once.
const DUE_NOW: Duration = Duration::from_micros(10);

/// What goes into a worker.
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram (or one packet of an ICE-TCP stream) from `source`, received at
    /// `destination` (one of the announced addresses).
    Receive {
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &'a [u8],
    },
    Command(Command),
    /// Time passed: whatever was due by now is done.
    Timeout,
}

/// What comes out of a worker.
#[derive(Debug)]
pub enum Output {
    Transmit(Transmit),
    Event(SfuEvent),
    /// An ICE username fragment this worker now answers to, or no longer does: the
    /// driver routes a new path's first STUN request by it.
    Ufrag {
        ufrag: String,
        added: bool,
    },
    /// A client address (UDP) this worker now serves, or no longer does: the driver may
    /// give it a socket of its own.
    Path {
        remote: SocketAddr,
        added: bool,
    },
    /// Nothing more until this time, or the next input.
    Timeout(Instant),
}

/// Counters of what a worker did, for the metrics. They only grow.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Datagrams that matched no transport.
    pub unrouted: u64,
    /// RTP packets written to subscriber transports.
    pub packets_forwarded: u64,
    /// Keyframe requests (PLI) sent to publishers.
    pub keyframe_requests: u64,
    /// Retransmission requests from subscribers, and sent to publishers.
    pub nacks_received: u64,
    pub nacks_sent: u64,
    /// Simulcast layer switches decided.
    pub layer_switches: u64,
    /// Subscriber transports newly limited by congestion.
    pub congestion_limits: u64,
    /// Panics caught and contained.
    pub panics: u64,
}

/// Work found while polling a transport, done once it is polled.
// A packet is moved into the queue and out again, whose buffer is reused: cheaper than
// a box per packet.
#[allow(clippy::large_enum_variant)]
enum Work {
    /// An RTP packet from a publisher transport to forward.
    Rtp(TransportId, RtpPacket),
    /// A subscriber asked for a keyframe of what it receives.
    Keyframe { room: RoomId, publisher: ParticipantId, track_id: TrackId, rid: Option<Rid> },
    /// A message on a publisher transport's data channel.
    Data(TransportId, ChannelData),
}

pub struct Worker {
    pub(super) addrs: MediaAddrs,
    pub(super) transports: HashMap<TransportId, Transport>,
    pub(super) rooms: HashMap<RoomId, Room>,
    /// The room of each participant with a transport here.
    pub(super) rooms_of: HashMap<ParticipantId, RoomId>,
    by_addr: HashMap<(Protocol, SocketAddr), TransportId>,
    by_ufrag: HashMap<String, TransportId>,
    timers: Timers,
    /// Transports with output to collect.
    dirty: Vec<TransportId>,
    work: VecDeque<Work>,
    out: VecDeque<Output>,
    next_id: u64,
    pub(super) next_layers: Instant,
    next_levels: Instant,
    next_metrics: Instant,
    next_reap: Instant,
    pub(super) stats: WorkerStats,
    stopped: bool,
}

impl Worker {
    pub fn new(addrs: MediaAddrs, now: Instant) -> Self {
        Self {
            addrs,
            transports: HashMap::new(),
            rooms: HashMap::new(),
            rooms_of: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            timers: Timers::default(),
            dirty: Vec::new(),
            work: VecDeque::new(),
            out: VecDeque::new(),
            next_id: 1,
            next_layers: now,
            next_levels: now,
            next_metrics: now,
            next_reap: now,
            stats: WorkerStats::default(),
            stopped: false,
        }
    }

    /// What the worker has done so far.
    pub fn stats(&self) -> WorkerStats {
        self.stats
    }

    /// Whether [`Command::Stop`] was handled: every transport is closed.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The number of rooms and transports it serves.
    pub fn load(&self) -> (usize, usize) {
        (self.rooms.len(), self.transports.len())
    }

    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        // A panic that `feed` and `drain` did not pin on one transport (forwarding
        // touches several): log it and go on; the worker serves everyone.
        let handled = catch_unwind(AssertUnwindSafe(|| match input {
            Input::Receive { proto, source, destination, data } => self.receive(now, proto, source, destination, data),
            Input::Command(command) => self.command_isolated(command, now),
            Input::Timeout => self.timeout(now),
        }));
        if handled.is_err() {
            self.stats.panics += 1;
            tracing::error!("media processing panicked");
        }
        let settled = catch_unwind(AssertUnwindSafe(|| self.settle(now)));
        if settled.is_err() {
            self.stats.panics += 1;
            self.dirty.clear();
            self.work.clear();
            tracing::error!("media processing panicked");
        }
    }

    /// The next output; [`Output::Timeout`] when there is none until then.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        Output::Timeout(self.next_timeout())
    }

    fn next_timeout(&mut self) -> Instant {
        let transports = self.timers.next_wake(&mut self.transports);
        // The periodic tasks are housekeeping too.
        let tasks = [self.next_layers, self.next_levels, self.next_metrics, self.next_reap].into_iter().min();
        transports.into_iter().chain(tasks.map(|t| t + SLACK)).min().unwrap_or(self.next_reap)
    }

    /// Whether a periodic task or a transport's timer is due at `now`.
    #[cfg(test)]
    pub(super) fn is_due(&self, now: Instant) -> bool {
        [self.next_layers, self.next_levels, self.next_metrics, self.next_reap].into_iter().any(|t| t <= now)
            || self.transports.values().any(|t| t.timer.deadline <= now)
    }

    fn receive(&mut self, now: Instant, proto: Protocol, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let Ok(contents) = data.try_into() else {
            tracing::trace!(%source, ?proto, "unrecognised packet");
            return;
        };
        let Some(id) = self.route(proto, source, data) else {
            self.stats.unrouted += 1;
            tracing::trace!(%source, "datagram for no transport");
            return;
        };
        let input = str0m::Input::Receive(now, Receive { proto, source, destination, contents });
        if let Some(t) = self.transports.get_mut(&id) {
            if t.rtc.accepts(&input) {
                feed(t, input, &mut self.stats);
                self.dirty.push(id);
            } else {
                self.stats.unrouted += 1;
            }
        }
    }

    /// The transport a packet from `source` is for: by its ICE username when it is a
    /// STUN request (which also teaches the address), else by the address.
    fn route(&mut self, proto: Protocol, source: SocketAddr, data: &[u8]) -> Option<TransportId> {
        if let Some(ufrag) = stun_ufrag(data) {
            if let Some(id) = self.by_ufrag.get(ufrag).copied() {
                let before = self.by_addr.insert((proto, source), id);
                if before.is_none() && proto == Protocol::Udp {
                    self.out.push_back(Output::Path { remote: source, added: true });
                }
                return Some(id);
            }
        }
        self.by_addr.get(&(proto, source)).copied()
    }

    fn timeout(&mut self, now: Instant) {
        while let Some(id) = self.timers.pop_due(now, &mut self.transports) {
            if let Some(t) = self.transports.get_mut(&id) {
                feed(t, str0m::Input::Timeout(now), &mut self.stats);
                self.dirty.push(id);
            }
        }
        if now >= self.next_reap {
            self.next_reap = now + REAP_INTERVAL;
            self.reap(now);
        }
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

    /// Collects the output of every transport that had input, and does the work it
    /// brings (forwarding writes into other transports, which are collected in turn),
    /// until nothing is left.
    fn settle(&mut self, now: Instant) {
        loop {
            while let Some(id) = self.dirty.pop() {
                let Some(t) = self.transports.get_mut(&id) else { continue };
                drain(t, now, &mut self.out, &mut self.work, &mut self.stats);
                self.timers.update(id, &mut t.timer);
            }
            let Some(work) = self.work.pop_front() else { break };
            match work {
                Work::Rtp(from, packet) => self.forward(from, packet, now),
                Work::Keyframe { room, publisher, track_id, rid } => {
                    self.request_keyframe(&room, &publisher, &track_id, rid, now)
                }
                Work::Data(from, data) => self.forward_data(from, &data),
            }
        }
    }

    fn command_isolated(&mut self, command: Command, now: Instant) {
        let participant = command.participant().cloned();
        if catch_unwind(AssertUnwindSafe(|| self.command(command, now))).is_err() {
            // Its state may be half-changed: the participant's transports go.
            self.stats.panics += 1;
            tracing::error!(?participant, "media command panicked");
            if let Some(participant) = participant {
                self.fail_participant(&participant);
            }
        }
    }

    fn command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Publish { room, participant, tracks, offer, reply } => {
                let result = self.publish(room, participant, tracks, &offer, now);
                let _ = reply.send(result);
            }
            Command::Unpublish { participant, tracks } => {
                if let Some(p) = self.transport_mut(&participant, Role::Publisher).and_then(|t| t.publishing_mut()) {
                    p.producers.retain(|t| !tracks.contains(&t.track_id));
                }
                if let Some(room) = self.rooms_of.get(&participant).cloned() {
                    self.stop_consumers(&room, |_, c| tracks.contains(&c.track_id));
                }
            }
            Command::SetTrackState { track_id, muted, censored } => {
                self.set_track_state(&track_id, muted, censored, now)
            }
            Command::Subscribe(subscribe) => self.subscribe(subscribe, now),
            Command::UpdateSubscription { subscriber, tracks, wants } => {
                if let Some(s) = self.transport_mut(&subscriber, Role::Subscriber).and_then(|t| t.subscribing_mut()) {
                    let mut raised = false;
                    for c in s.consumers.iter_mut().filter(|c| tracks.contains(&c.track_id)) {
                        let was = c.is_wanted();
                        raised |= c.is_video() && wants.quality > c.wants.quality;
                        c.wants = wants;
                        if c.is_wanted() && !was {
                            c.restart();
                        }
                    }
                    if raised {
                        s.downlink.more_wanted(now);
                    }
                }
                self.next_layers = now;
            }
            Command::Unsubscribe { subscriber, tracks } => {
                if let Some(room) = self.rooms_of.get(&subscriber).cloned() {
                    self.stop_consumers(&room, |who, c| *who == subscriber && tracks.contains(&c.track_id));
                }
            }
            Command::PublisherOffer { participant, offer, reply } => {
                let _ = reply.send(self.publisher_offer(&participant, &offer));
            }
            Command::RestartSubscriber { participant } => self.restart_subscriber(&participant),
            Command::Answer { participant, sdp, reply } => {
                let result = self.accept_answer(&participant, &sdp, now);
                let _ = reply.send(result);
            }
            Command::Remove { participant } => self.remove(&participant),
            Command::InjectPanic { participant } => {
                for role in [Role::Publisher, Role::Subscriber] {
                    if let Some(t) = self.transport_mut(&participant, role) {
                        t.fault = true;
                    }
                }
            }
            Command::WatchMetrics { room, participants } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.watched = participants;
                } else if !participants.is_empty() {
                    let mut r = Room::new(room.clone());
                    r.watched = participants;
                    self.rooms.insert(room, r);
                }
            }
            Command::Stop => {
                for t in self.transports.values_mut() {
                    t.rtc.disconnect();
                }
                self.stopped = true;
            }
        }
    }

    fn set_track_state(&mut self, track_id: &TrackId, muted: bool, censored: bool, now: Instant) {
        let mut room = None;
        for t in self.transports.values_mut() {
            let Side::Publisher(p) = &mut t.side else { continue };
            if let Some(producer) = p.producers.iter_mut().find(|p| &p.track_id == track_id) {
                let was = producer.flowing();
                producer.muted = muted;
                producer.censored = censored;
                if producer.flowing() && !was {
                    self.next_layers = now;
                }
                room = Some(t.room.clone());
            }
        }
        let Some(room) = room.and_then(|r| self.rooms.get(&r)) else { return };
        if !muted && !censored {
            for id in room.consumers_of(track_id) {
                let Some(s) = self.transports.get_mut(id).and_then(|t| t.subscribing_mut()) else { continue };
                for c in s.consumers.iter_mut().filter(|c| c.track_id == *track_id) {
                    c.restart();
                }
            }
        }
    }

    pub(super) fn transport_mut(&mut self, participant: &ParticipantId, role: Role) -> Option<&mut Transport> {
        let id = self.transport_id(participant, role)?;
        self.transports.get_mut(&id)
    }

    pub(super) fn transport_id(&self, participant: &ParticipantId, role: Role) -> Option<TransportId> {
        let room = self.rooms_of.get(participant)?;
        self.rooms.get(room)?.transport(participant, role)
    }

    /// A new transport for `participant` in `room`.
    pub(super) fn open(&mut self, room: RoomId, participant: ParticipantId, role: Role, now: Instant) -> TransportId {
        let id = TransportId(self.next_id);
        self.next_id += 1;
        let rtc = self.new_rtc(role, now);
        let t = Transport::new(id, room.clone(), participant.clone(), role, rtc, now);
        self.learn_ufrag(id, None, t.ufrag.clone());
        self.transports.insert(id, t);
        self.rooms.entry(room.clone()).or_insert_with(|| Room::new(room.clone())).attach(participant.clone(), role, id);
        self.rooms_of.insert(participant, room);
        id
    }

    /// The transport has output to collect.
    pub(super) fn dirty_transport(&mut self, id: TransportId) {
        self.dirty.push(id);
    }

    pub(super) fn emit(&mut self, event: SfuEvent) {
        self.out.push_back(Output::Event(event));
    }

    /// Closes a transport without telling the hub (it knows: it asked).
    pub(super) fn close_transport(&mut self, id: TransportId) {
        self.close(id);
    }

    /// After a negotiation: the transport may answer to new ICE credentials.
    pub(super) fn refresh_ufrag(&mut self, id: TransportId) {
        let Some(t) = self.transports.get_mut(&id) else { return };
        let ufrag = t.local_ufrag();
        if ufrag != t.ufrag {
            let old = std::mem::replace(&mut t.ufrag, ufrag.clone());
            self.learn_ufrag(id, Some(old), ufrag);
        }
    }

    fn learn_ufrag(&mut self, id: TransportId, old: Option<String>, new: String) {
        if let Some(old) = old {
            self.by_ufrag.remove(&old);
            self.out.push_back(Output::Ufrag { ufrag: old, added: false });
        }
        self.by_ufrag.insert(new.clone(), id);
        self.out.push_back(Output::Ufrag { ufrag: new, added: true });
    }

    /// Closes a transport and forgets it everywhere. Returns it.
    fn close(&mut self, id: TransportId) -> Option<Transport> {
        let mut t = self.transports.remove(&id)?;
        t.rtc.disconnect();
        self.by_ufrag.remove(&t.ufrag);
        self.out.push_back(Output::Ufrag { ufrag: t.ufrag.clone(), added: false });
        let out = &mut self.out;
        self.by_addr.retain(|(proto, remote), v| {
            let keep = *v != id;
            if !keep && *proto == Protocol::Udp {
                out.push_back(Output::Path { remote: *remote, added: false });
            }
            keep
        });
        if let Some(room) = self.rooms.get_mut(&t.room) {
            let empty = room.detach(&t.participant, id);
            if !room.members.contains_key(&t.participant) {
                self.rooms_of.remove(&t.participant);
            }
            if empty && room.watched.is_empty() {
                self.rooms.remove(&t.room);
            }
        }
        Some(t)
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
            // Packets are forwarded as they come, not reassembled into frames and cut
            // up again for every subscriber.
            .set_rtp_mode(true)
            .set_stats_interval(Some(STATS_INTERVAL))
            // Audio is forwarded as it comes: a lost packet is not waited for (the
            // receiver's decoder conceals it), so the packets behind it are not held.
            .set_reordering_size_audio(AUDIO_REORDERING)
            .set_crypto_provider(super::dtls::crypto_provider())
            .build(now);
        let udp = self.addrs.udp.iter().map(|a| (*a, Candidate::host(*a, "udp")));
        let tcp =
            self.addrs.tcp.iter().map(|a| (*a, Candidate::builder().tcp().host(*a).tcptype(TcpType::Passive).build()));
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

    /// After a panic in its handling: the participant's transports are closed, and
    /// the hub hears they failed (as for any dead transport, at the next reaping).
    fn fail_participant(&mut self, participant: &ParticipantId) {
        for role in [Role::Publisher, Role::Subscriber] {
            if let Some(t) = self.transport_mut(participant, role) {
                t.rtc.disconnect();
            }
        }
    }

    fn remove(&mut self, participant: &ParticipantId) {
        let Some(room) = self.rooms_of.get(participant).cloned() else { return };
        let mut gone_tracks = Vec::new();
        for role in [Role::Publisher, Role::Subscriber] {
            let Some(id) = self.transport_id(participant, role) else { continue };
            if let Some(t) = self.close(id) {
                if let Some(p) = t.publishing() {
                    gone_tracks.extend(p.producers.iter().map(|p| p.track_id.clone()));
                }
            }
        }
        if !gone_tracks.is_empty() {
            self.stop_consumers(&room, |_, c| gone_tracks.contains(&c.track_id));
        }
    }

    /// Drops transports that died or never came up, and tells the hub.
    fn reap(&mut self, now: Instant) {
        let dead: Vec<TransportId> = self.transports.values().filter(|t| t.is_dead(now)).map(|t| t.id).collect();
        for id in dead {
            let Some(t) = self.close(id) else { continue };
            tracing::info!(participant = %t.participant, role = t.label(), connected = t.connected, "media connection lost");
            if let Some(p) = t.publishing() {
                let tracks: Vec<TrackId> = p.producers.iter().map(|p| p.track_id.clone()).collect();
                if !tracks.is_empty() {
                    self.stop_consumers(&t.room, |_, c| tracks.contains(&c.track_id));
                }
            }
            let publisher = t.role() == Role::Publisher;
            self.out.push_back(Output::Event(SfuEvent::PeerFailed {
                room: t.room,
                participant: t.participant,
                publisher,
            }));
        }
    }

    /// Passes an RTP packet from a publisher on to the consumers of its track, as it
    /// comes: a packet lost upstream is the subscribers' to ask for again (str0m asks
    /// the publisher for it meanwhile, and forwards its repair when it comes).
    fn forward(&mut self, from: TransportId, packet: RtpPacket, now: Instant) {
        let Some(publisher) = self.transports.get_mut(&from) else { return };
        let Transport { rtc, side: Side::Publisher(p), room, .. } = publisher else { return };
        let Some((mid, rid)) = p.stream_of(rtc, packet.header.ssrc) else { return };
        // The wall clock of the packet's RTP time, for a rebase and for subscribers'
        // sender reports.
        let captured = p.clock.capture_time(packet.header.ssrc, packet.time, packet.timestamp);
        let Some(producer) = p.producer_mut(mid) else { return };
        let pt = packet.header.payload_type;
        if producer.params.is_none_or(|params| params.pt() != pt) {
            producer.params = rtc.codec_config().params().iter().find(|p| p.pt() == pt).copied();
        }
        let Some(params) = producer.params else { return };
        let payload = &packet.payload[..];
        let new_frame = producer.meter(rid).observe(payload.len(), packet.time.numer(), now);
        let ext = &packet.header.ext_vals;
        if let Some(level) = ext.audio_level {
            producer.audio_level = Some(HeardLevel { minus_dbov: level, voice: ext.voice_activity, at: now });
        }
        if !producer.flowing() {
            return;
        }
        let video = producer.kind == TrackKind::Video;
        if video && !producer.nack_enabled.contains(&rid) {
            // str0m asks for retransmissions only of streams announced with an RTX
            // stream, and clients announce none (they retransmit on the stream itself,
            // which str0m's receive buffer takes just as well).
            producer.nack_enabled.push(rid);
            if let Some(stream) = rtc.direct_api().stream_rx_by_mid(mid, rid) {
                stream.suppress_nack(false);
            }
        }
        let codec = params.spec().codec;
        let vp8 = (codec == Codec::Vp8).then(|| Vp8Descriptor::parse(payload).ok()).flatten();
        let incoming = Packet {
            rid: rid.as_ref(),
            keyframe: video && starts_keyframe(codec, payload, vp8.as_ref(), new_frame),
            seq: packet.seq_no,
            time: packet.time,
            wallclock: captured,
            vp8: vp8.as_ref().map(|d| (d, long_picture_id(payload))),
        };
        // What subscribers hear of the packet's header: the rest is their stream's own.
        let ext_vals = ExtensionValues {
            audio_level: ext.audio_level,
            voice_activity: ext.voice_activity,
            video_orientation: ext.video_orientation,
            video_content_type: ext.video_content_type,
            ..Default::default()
        };
        // Borrowed from the room while the transports change: no copy per packet.
        let Some((track_id, consumers)) = self.rooms.get(room).and_then(|r| r.consumed(&producer.track_id)) else {
            return;
        };
        for &id in consumers {
            let Some(t) = self.transports.get_mut(&id) else { continue };
            let Transport { rtc, side: Side::Subscriber(s), participant, connected, .. } = t else { continue };
            if !*connected {
                // Nothing waits in its queue to arrive stale: it starts at the
                // keyframe asked for when it connects.
                continue;
            }
            for c in s.consumers.iter_mut().filter(|c| c.track_id == *track_id) {
                let Some(out_mid) = c.open_mid() else { continue };
                if !c.is_wanted() || !c.takes_layer(incoming.rid) {
                    continue;
                }
                let out_pt = match c.payload_type {
                    Some((from, to)) if from == pt => to,
                    _ => {
                        let Some(to) = rtc.codec_config().match_params(params).map(|p| p.pt()) else {
                            tracing::debug!(%participant, %out_mid, "subscriber cannot receive this codec");
                            continue;
                        };
                        c.payload_type = Some((pt, to));
                        to
                    }
                };
                let mut api = rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(out_mid, None) else {
                    // Not negotiated yet, or gone: its next packets start over.
                    c.restart();
                    continue;
                };
                // Placed only once it can be sent: a placed packet takes a sequence number.
                let Some(placed) = c.accept(&incoming) else { continue };
                let write = RtpWrite::new(out_pt, placed.seq, placed.time, incoming.wallclock, packet.payload.clone())
                    .marker(packet.header.marker)
                    .ext_vals(ext_vals.clone())
                    .nackable(video);
                let write = match placed.vp8 {
                    Some(patch) => write.vp8_patch(patch),
                    None => write,
                };
                stream.write_rtp(write);
                self.stats.packets_forwarded += 1;
            }
            self.dirty.push(id);
        }
    }

    fn request_keyframe(
        &mut self,
        room: &RoomId,
        publisher: &ParticipantId,
        track_id: &TrackId,
        rid: Option<Rid>,
        now: Instant,
    ) {
        let Some(id) = self.rooms.get(room).and_then(|r| r.transport(publisher, Role::Publisher)) else { return };
        let Some(t) = self.transports.get_mut(&id) else { return };
        let Transport { rtc, side: Side::Publisher(p), .. } = t else { return };
        let Some(producer) = p.producers.iter_mut().find(|t| &t.track_id == track_id) else { return };
        if producer.kind != TrackKind::Video || !producer.take_keyframe_slot(rid, now) {
            return;
        }
        let rid = if producer.simulcast { rid } else { None };
        if let Some(stream) = rtc.direct_api().stream_rx_by_mid(producer.mid, rid) {
            tracing::trace!(%track_id, ?rid, "keyframe requested");
            stream.request_keyframe(KeyframeRequestKind::Pli);
            self.stats.keyframe_requests += 1;
            self.dirty.push(id);
        }
    }

    /// Re-chooses every subscriber's simulcast layers (within what its downlink has
    /// shown it carries), and asks publishers for the keyframes that waiting subscribers
    /// need.
    fn choose_layers(&mut self, now: Instant) {
        struct Source {
            publisher: ParticipantId,
            simulcast: bool,
            layers: Vec<LayerMeter>,
        }
        let mut sources: HashMap<TrackId, Source> = HashMap::new();
        for t in self.transports.values() {
            let Some(p) = t.publishing() else { continue };
            for producer in p.producers.iter().filter(|p| p.kind == TrackKind::Video && p.flowing()) {
                let source = Source {
                    publisher: t.participant.clone(),
                    simulcast: producer.simulcast,
                    layers: producer.layers.clone(),
                };
                sources.insert(producer.track_id.clone(), source);
            }
        }
        let mut requests = Vec::new();
        for t in self.transports.values_mut() {
            let Transport { id, rtc, side: Side::Subscriber(s), participant, room, connected, .. } = t else {
                continue;
            };
            // Keyframes for a transport not connected yet would arrive stale.
            let connected = *connected;
            let wanted_of = |kind| s.consumers.iter().filter(|c| c.kind == kind && c.is_wanted()).count();
            let (videos, audios) = (wanted_of(TrackKind::Video), wanted_of(TrackKind::Audio));
            let audio_bps = audios as u64 * AUDIO_BPS;
            let flowing = |c: &&mut super::consumer::Consumer| {
                c.is_video() && c.open_mid().is_some() && c.is_wanted() && sources.contains_key(&c.track_id)
            };
            let forwarded: u64 = audio_bps
                + s.consumers
                    .iter_mut()
                    .filter(flowing)
                    .map(|c| c.current_bitrate(&sources[&c.track_id].layers))
                    .sum::<u64>();
            let was_limited = s.downlink.is_limited();
            let limit = s.downlink.budget(forwarded, s.estimate_bps, now);
            if s.downlink.is_limited() && !was_limited {
                self.stats.congestion_limits += 1;
            }
            let budget = limit.map(|e| e.saturating_sub(audio_bps) / videos.max(1) as u64);
            let mut changed = false;
            let mut desired = audio_bps;
            for c in s.consumers.iter_mut().filter(flowing) {
                let source = &sources[&c.track_id];
                desired += c.preferred_bitrate(&source.layers, now);
                if source.simulcast {
                    if let Some(rid) = c.choose_layer(&source.layers, budget, now) {
                        changed = true;
                        self.stats.layer_switches += 1;
                        tracing::debug!(
                            %participant, track = %c.track_id, %rid, ?budget,
                            layers = ?source.layers.iter().map(|l| (l.rid, l.bitrate_bps)).collect::<Vec<_>>(),
                            "switching simulcast layer"
                        );
                        if connected {
                            requests.push((room.clone(), source.publisher.clone(), c.track_id.clone(), Some(rid)));
                        }
                        continue;
                    }
                }
                if connected && (c.needs_keyframe || c.target != c.current) {
                    requests.push((room.clone(), source.publisher.clone(), c.track_id.clone(), c.target));
                }
            }
            if changed {
                s.downlink.rate_changed(now);
            }
            // The estimator probes toward what the subscriptions would like. It probes
            // when that rises above its estimate, so to probe a limited path again it
            // is lowered to what is forwarded for one round, and raised on the next.
            let desired = if s.downlink.probe_due(now) { forwarded } else { desired };
            if desired.abs_diff(s.bwe_desired) * 10 > s.bwe_desired {
                s.bwe_desired = desired;
                rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
                // The estimator takes the new rate, and starts a probe for it, when it
                // is next woken: now, not with the next packet forwarded. A probe that
                // starts with a media packet is measured as if the path were saturated
                // (its first packet, large, counts toward sending but not receiving),
                // and reads about half of what it sent.
                let id = *id;
                feed(t, str0m::Input::Timeout(now), &mut self.stats);
                self.dirty.push(id);
            }
        }
        for (room, publisher, track_id, rid) in requests {
            self.request_keyframe(&room, &publisher, &track_id, rid, now);
        }
    }

    /// Relays a message from a publisher's data track to its subscribers.
    fn forward_data(&mut self, from: TransportId, data: &ChannelData) {
        let Some(t) = self.transports.get(&from) else { return };
        let Some(p) = t.publishing() else { return };
        let Some(producer) = p.producers.iter().find(|p| p.kind == TrackKind::Data && p.channel == Some(data.id))
        else {
            return;
        };
        if !producer.flowing() {
            return;
        }
        let (track_id, room) = (producer.track_id.clone(), t.room.clone());
        let consumers = self.rooms.get(&room).map_or(&[][..], |r| r.consumers_of(&track_id));
        for &id in consumers {
            let Some(t) = self.transports.get_mut(&id) else { continue };
            let Transport { rtc, side: Side::Subscriber(s), participant, .. } = t else { continue };
            for c in s.consumers.iter().filter(|c| c.track_id == track_id) {
                let OutState::Channel(channel) = c.state else { continue };
                let Some(mut channel) = rtc.channel(channel) else { continue };
                match channel.write(data.binary, &data.data) {
                    Ok(true) => {}
                    // A subscriber that cannot keep up loses messages rather than
                    // holding up the others.
                    Ok(false) => tracing::debug!(%participant, "data channel full; message dropped"),
                    Err(e) => tracing::debug!(%participant, error = %e, "data channel write failed"),
                }
            }
            self.dirty.push(id);
        }
    }
}

/// The local ICE username fragment a STUN binding request is addressed to.
pub(super) fn stun_ufrag(data: &[u8]) -> Option<&str> {
    // STUN's first two bits are zero (RFC 7983); RTP, RTCP and DTLS never start so.
    if data.first().is_none_or(|b| *b > 3) {
        return None;
    }
    let message = StunMessage::parse(data).ok()?;
    if !message.is_binding_request() {
        return None;
    }
    // "local:remote": the first part is ours.
    message.username()?.split(':').next()
}

fn feed(t: &mut Transport, input: str0m::Input<'_>, stats: &mut WorkerStats) {
    if !t.rtc.is_alive() {
        return;
    }
    let handled = catch_unwind(AssertUnwindSafe(|| {
        if std::mem::take(&mut t.fault) {
            panic!("fault injected into {}'s media", t.participant);
        }
        t.rtc.handle_input(input)
    }));
    match handled {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::info!(participant = %t.participant, role = t.label(), error = %e, "media connection failed");
            t.rtc.disconnect();
        }
        Err(_) => panicked(t, stats),
    }
}

/// A panic while serving one transport ends that transport only (the reaping that
/// follows tells the hub, which tells the others).
fn panicked(t: &mut Transport, stats: &mut WorkerStats) {
    stats.panics += 1;
    tracing::error!(participant = %t.participant, role = t.label(), "media connection panicked; closing it");
    t.rtc.disconnect();
}

/// Drains one transport's output: datagrams go out, events become work.
///
/// str0m's pacer lets one packet out per `handle_timeout`, even for unpaced streams, and
/// asks for a timeout *now* after each: those are fed here at once, so that a frame's
/// packets leave together rather than one per wake of the worker thread (which cost
/// a trip through the runtime's timer and the kernel for every packet forwarded).
fn drain(
    t: &mut Transport,
    now: Instant,
    out: &mut VecDeque<Output>,
    work: &mut VecDeque<Work>,
    stats: &mut WorkerStats,
) {
    let mut due_now = 0;
    while t.rtc.is_alive() {
        let output = match catch_unwind(AssertUnwindSafe(|| t.rtc.poll_output())) {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                tracing::info!(participant = %t.participant, error = %e, "media connection failed");
                t.rtc.disconnect();
                return;
            }
            Err(_) => return panicked(t, stats),
        };
        match output {
            // The pacer's "now" is a microsecond after its last timeout, so that time
            // advances between packets: that microsecond is given to it here.
            str0m::Output::Timeout(at) if at <= now + DUE_NOW && due_now < MAX_DUE_NOW => {
                due_now += 1;
                feed(t, str0m::Input::Timeout(at.max(now)), stats);
            }
            str0m::Output::Timeout(at) => {
                t.timer.set(at, t.rtc.last_timeout_reason());
                return;
            }
            str0m::Output::Transmit(transmit) => {
                stats.packets_out += 1;
                stats.bytes_out += transmit.contents.len() as u64;
                out.push_back(Output::Transmit(transmit));
            }
            str0m::Output::Event(event) => on_event(t, event, now, work, stats),
        }
    }
}

fn on_event(t: &mut Transport, event: Event, now: Instant, work: &mut VecDeque<Work>, counters: &mut WorkerStats) {
    match event {
        Event::Connected => {
            t.connected = true;
            tracing::info!(participant = %t.participant, role = t.label(), "media connected");
            // A subscriber starts at a keyframe made now (nothing was forwarded before).
            if let Some(s) = t.subscribing() {
                for c in s.consumers.iter().filter(|c| c.is_video() && c.is_wanted() && c.open_mid().is_some()) {
                    work.push_back(Work::Keyframe {
                        room: t.room.clone(),
                        publisher: c.publisher.clone(),
                        track_id: c.track_id.clone(),
                        rid: c.target.or(c.current),
                    });
                }
            }
        }
        Event::IceConnectionStateChange(state) => match state {
            IceConnectionState::Connected | IceConnectionState::Completed => {
                if std::mem::replace(&mut t.health, Health::Up) != Health::Up {
                    tracing::info!(participant = %t.participant, role = t.label(), "media reconnected");
                }
            }
            // Before the first connection, `CONNECT_TIMEOUT` applies.
            _ if !t.connected => {}
            IceConnectionState::Disconnected => {
                // No consent checks for a while: gone, unless it comes back.
                tracing::info!(participant = %t.participant, role = t.label(), "media disconnected");
                t.health = Health::Disconnected(now);
            }
            _ => {
                // Checking a path again (an ICE restart): the clock keeps running
                // from a disconnection, else starts now.
                let since = match t.health {
                    Health::Disconnected(s) | Health::Rechecking(s) => s,
                    Health::Up => now,
                };
                t.health = Health::Rechecking(since);
            }
        },
        Event::ChannelOpen(id, label) => {
            if let Some(p) = t.publishing_mut() {
                for producer in p.producers.iter_mut().filter(|p| p.label.as_deref() == Some(label.as_str())) {
                    producer.channel = Some(id);
                }
            }
            t.channels.insert(label, id);
        }
        Event::ChannelClose(id) => t.channels.retain(|_, c| *c != id),
        Event::ChannelData(data) if t.role() == Role::Publisher => work.push_back(Work::Data(t.id, data)),
        Event::RtpPacket(packet) if t.role() == Role::Publisher => work.push_back(Work::Rtp(t.id, packet)),
        Event::KeyframeRequest(req) => {
            let Some(s) = t.subscribing() else { return };
            if let Some(c) = s.consumers.iter().find(|c| c.open_mid() == Some(req.mid)) {
                work.push_back(Work::Keyframe {
                    room: t.room.clone(),
                    publisher: c.publisher.clone(),
                    track_id: c.track_id.clone(),
                    rid: c.current.or(c.target),
                });
            }
        }
        Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
            let participant = t.participant.clone();
            if let Some(s) = t.subscribing_mut() {
                tracing::trace!(%participant, %estimate, "bandwidth estimate");
                s.estimate_bps = Some(estimate.as_u64());
            }
        }
        Event::MediaEgressStats(stats) => {
            counters.nacks_received += t.nacks.advance((stats.mid, stats.rid, true), stats.nacks);
            if let (Some(loss), Some(s)) = (stats.loss, t.subscribing_mut()) {
                s.downlink.reported_loss(loss);
            }
        }
        Event::MediaIngressStats(stats) => {
            counters.nacks_sent += t.nacks.advance((stats.mid, stats.rid, false), stats.nacks);
        }
        Event::PeerStats(stats) => t.stats = Some(stats),
        Event::SenderFeedback(feedback) => {
            if let Some(p) = t.publishing_mut() {
                p.clock.report(&feedback.sender_info, feedback.received_at);
            }
        }
        _ => {}
    }
}
