//! The worker in virtual time, against str0m clients stepped beside it: no socket, no
//! wall clock, so seconds of a call take milliseconds and every run is the same.
//!
//! [`Lab`] plays the network (packets go from the worker to the client whose address
//! they name, and back, at once unless a client's link is cut, lossy or capped: a
//! capped link queues what it cannot carry yet, as a router's does, and drops what
//! overflows its queue) and the hub (it sends the worker commands and answers
//! subscriber offers for its clients). Publishing
//! clients send synthetic VP8 frames; a frame's first byte says keyframe or not (as
//! VP8's does) and its second which simulcast layer it belongs to.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confer_proto::track::{Quality, TrackKind};
use confer_proto::{ParticipantId, RoomId};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::CodecExtra;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Rtc};
use tokio::sync::oneshot;

use super::downlink::{MIN_BACKOFF, PROBE_INTERVAL};
use super::worker::{Input, Output, Worker};
use super::{Command, IncomingTrack, MediaAddrs, OutgoingTrack, SfuEvent, Subscribe, Wants};

const SERVER: &str = "10.0.0.1:7882";
const LAYERS: [&str; 3] = ["q", "h", "f"];
/// Bytes per frame of each layer (at 30 frames a second: about 50, 200 and 700 kbit/s).
const LAYER_BYTES: [usize; 3] = [200, 800, 3000];
/// 30 frames a second, 3,000 ticks of the 90 kHz RTP clock apart.
const FRAME_INTERVAL: Duration = Duration::from_nanos(33_333_333);

/// A participant's str0m peer.
struct Client {
    participant: ParticipantId,
    room: RoomId,
    rtc: Rtc,
    addr: SocketAddr,
    /// The media section it publishes video on, and whether with simulcast.
    video: Option<(Mid, bool)>,
    /// Layers a keyframe was asked for, sent with the next frame.
    keyframe_wanted: HashSet<Option<Rid>>,
    keyframe_requests: usize,
    /// Frames received: (the publisher's layer index, keyframe).
    frames: Vec<(u8, bool)>,
    /// The last sender report received (its RTP time and when it came), and how long
    /// before its arrival each frame since was captured, by those reports.
    report: Option<(u32, Instant)>,
    capture_ages: Vec<Duration>,
    /// Packets to it are lost: all (`cut`), or this share of them.
    cut: bool,
    loss: f32,
    /// The path from the server to it, when capped.
    downlink: Option<Link>,
}

/// A path that carries `bps`, with a drop-tail queue that holds up to `queue` of it.
struct Link {
    bps: u64,
    queue: Duration,
    /// When the packets in the queue will have gone through.
    busy_until: Instant,
    /// The packets on their way: when each arrives, and the datagram.
    queued: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    dropped: usize,
}

impl Link {
    fn new(kbps: u64, queue: Duration, now: Instant) -> Self {
        Self { bps: kbps * 1000, queue, busy_until: now, queued: VecDeque::new(), dropped: 0 }
    }

    /// Queues a datagram unless the queue is full.
    fn send(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
        let start = self.busy_until.max(now);
        if start - now > self.queue {
            self.dropped += 1;
            return;
        }
        self.busy_until = start + Duration::from_nanos(data.len() as u64 * 8 * 1_000_000_000 / self.bps);
        self.queued.push_back((self.busy_until, source, destination, data.to_vec()));
    }
}

struct Lab {
    now: Instant,
    worker: Worker,
    clients: Vec<Client>,
    events: Vec<SfuEvent>,
    frame: u64,
    next_frame: Instant,
    /// A deterministic sequence for loss.
    dice: u32,
    /// When the worker last asked to be woken, and how often it was woken with nothing due.
    worker_next: Instant,
    idle_wakes: usize,
    /// How often the worker's own timer woke it (not a datagram).
    timer_wakes: usize,
    /// Bytes of each layer's frames.
    frame_bytes: [usize; 3],
    /// How long before it is sent each frame was captured (its encoding, say).
    capture_lead: Duration,
    /// Time spent in the worker's calls (not the clients').
    busy: Duration,
}

impl Lab {
    fn new() -> Self {
        str0m::crypto::from_feature_flags().install_process_default();
        let now = Instant::now();
        let server: SocketAddr = SERVER.parse().unwrap();
        let worker = Worker::new(MediaAddrs { udp: vec![server], tcp: Vec::new() }, now);
        Self {
            now,
            worker,
            clients: Vec::new(),
            events: Vec::new(),
            frame: 0,
            next_frame: now,
            dice: 1,
            worker_next: now,
            idle_wakes: 0,
            timer_wakes: 0,
            frame_bytes: LAYER_BYTES,
            capture_lead: Duration::ZERO,
            busy: Duration::ZERO,
        }
    }

    fn client(&mut self, room: &str) -> usize {
        let i = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:5000", i + 1).parse().unwrap();
        let mut rtc = Rtc::builder().clear_codecs().enable_vp8(true).enable_opus(true, false).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        self.clients.push(Client {
            participant: format!("p{i}").into(),
            room: room.into(),
            rtc,
            addr,
            video: None,
            keyframe_wanted: HashSet::new(),
            keyframe_requests: 0,
            frames: Vec::new(),
            report: None,
            capture_ages: Vec::new(),
            cut: false,
            loss: 0.0,
            downlink: None,
        });
        i
    }

    fn id(&self, c: usize) -> ParticipantId {
        self.clients[c].participant.clone()
    }

    fn command(&mut self, command: Command) {
        timed(&mut self.busy, || self.worker.handle_input(self.now, Input::Command(command)));
        self.settle();
    }

    /// Client `c` publishes one video track.
    fn publish_video(&mut self, c: usize, simulcast: bool) {
        let client = &mut self.clients[c];
        let mut change = client.rtc.sdp_api();
        let layers = simulcast.then(|| {
            let mut s = Simulcast::new();
            for rid in LAYERS {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers);
        let (offer, pending) = change.apply().unwrap();
        client.video = Some((mid, simulcast));
        let (reply, answer) = oneshot::channel();
        let track = IncomingTrack {
            track_id: format!("{}-video", client.participant).into(),
            mid: mid.to_string(),
            kind: TrackKind::Video,
            simulcast,
            muted: false,
        };
        self.command(Command::Publish {
            room: client_room(&self.clients[c]),
            participant: self.id(c),
            tracks: vec![track],
            offer: offer.to_sdp_string(),
            reply,
        });
        let answer = answer.blocking_recv().unwrap().expect("the offer is accepted");
        let answer = SdpAnswer::from_sdp_string(&answer.sdp).unwrap();
        self.clients[c].rtc.sdp_api().accept_answer(pending, answer).unwrap();
    }

    /// Client `s` subscribes to client `p`'s video.
    fn subscribe(&mut self, s: usize, p: usize, quality: Quality) {
        let subscribe = Subscribe {
            room: client_room(&self.clients[s]),
            subscriber: self.id(s),
            publisher: self.id(p),
            key: "main".into(),
            tracks: vec![OutgoingTrack { track_id: format!("p{p}-video").into(), kind: TrackKind::Video }],
            wants: Wants { audio: true, video: true, quality },
        };
        self.command(Command::Subscribe(subscribe));
    }

    /// Runs the call for `d` of virtual time.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.send_frames();
            let next = self.settle().min(self.next_frame).min(end);
            self.now = next.max(self.now + Duration::from_micros(100));
            // The worker's thread wakes for its timer, or for a datagram (`settle`).
            if self.now >= self.worker_next {
                self.timer_wakes += 1;
                if !self.worker.is_due(self.now) {
                    self.idle_wakes += 1;
                }
                timed(&mut self.busy, || self.worker.handle_input(self.now, Input::Timeout));
            }
            for c in &mut self.clients {
                c.rtc.handle_input(str0m::Input::Timeout(self.now)).unwrap();
            }
        }
    }

    /// Every publisher sends a frame on each of its layers, 30 times a second.
    fn send_frames(&mut self) {
        if self.now < self.next_frame {
            return;
        }
        self.next_frame = self.now + FRAME_INTERVAL;
        self.frame += 1;
        let first = self.frame == 1;
        let time = MediaTime::new(self.frame * 3_000, Frequency::NINETY_KHZ);
        for c in &mut self.clients {
            let Some((mid, simulcast)) = c.video else { continue };
            let layers: Vec<Option<Rid>> =
                if simulcast { LAYERS.iter().map(|r| Some((*r).into())).collect() } else { vec![None] };
            for (i, rid) in layers.into_iter().enumerate() {
                let key = first || c.keyframe_wanted.remove(&rid);
                let mut data = vec![0u8; self.frame_bytes[i]];
                data[0] = if key { 0x00 } else { 0x01 };
                data[1] = i as u8;
                let Some(writer) = c.rtc.writer(mid) else { continue };
                let pt = writer.payload_params().next().unwrap().pt();
                let writer = match rid {
                    Some(rid) => writer.rid(rid),
                    None => writer,
                };
                writer.write(pt, self.now - self.capture_lead, time, data).unwrap();
            }
        }
    }

    /// Moves every packet and event until nobody has more to say now; returns the
    /// earliest time someone wants next.
    fn settle(&mut self) -> Instant {
        loop {
            let mut moved = false;
            let worker_next = loop {
                match timed(&mut self.busy, || self.worker.poll_output()) {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        moved = true;
                        let Some(c) = self.clients.iter_mut().find(|c| c.addr == t.destination) else { continue };
                        self.dice = self.dice.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        if c.cut || ((self.dice >> 16) % 1000) as f32 / 1000.0 < c.loss {
                            continue;
                        }
                        match &mut c.downlink {
                            Some(link) => link.send(self.now, t.source, t.destination, &t.contents),
                            None => deliver(&mut c.rtc, self.now, t.source, t.destination, &t.contents),
                        }
                    }
                    Output::Event(e) => {
                        moved = true;
                        self.on_event(e);
                    }
                    Output::Ufrag { .. } | Output::Path { .. } => {}
                }
            };
            self.worker_next = worker_next;
            let mut next = worker_next;
            for c in 0..self.clients.len() {
                let client = &mut self.clients[c];
                if let Some(link) = &mut client.downlink {
                    while link.queued.front().is_some_and(|q| q.0 <= self.now) {
                        let (_, source, destination, data) = link.queued.pop_front().unwrap();
                        deliver(&mut client.rtc, self.now, source, destination, &data);
                        moved = true;
                    }
                    if let Some(q) = link.queued.front() {
                        next = next.min(q.0);
                    }
                }
                loop {
                    let output = self.clients[c].rtc.poll_output().unwrap();
                    match output {
                        str0m::Output::Timeout(t) => {
                            next = next.min(t);
                            break;
                        }
                        str0m::Output::Transmit(t) => {
                            moved = true;
                            if self.clients[c].cut {
                                continue;
                            }
                            let input = Input::Receive {
                                proto: Protocol::Udp,
                                source: t.source,
                                destination: t.destination,
                                data: &t.contents,
                            };
                            timed(&mut self.busy, || {
                                self.worker.handle_input(self.now, input);
                                // As the driver does after the datagrams of a wake-up.
                                self.worker.handle_input(self.now, Input::Timeout);
                            });
                        }
                        str0m::Output::Event(e) => self.clients[c].on_event(e),
                    }
                }
            }
            if !moved {
                return next;
            }
        }
    }

    /// What the hub would do: a subscriber offer goes to its client, whose answer comes
    /// back. Every event is kept for the test to look at.
    fn on_event(&mut self, event: SfuEvent) {
        if let SfuEvent::SubscriberOffer { participant, sdp: Some(sdp), .. } = &event {
            let c = self.clients.iter_mut().find(|c| &c.participant == participant).unwrap();
            let offer = SdpOffer::from_sdp_string(sdp).unwrap();
            let answer = c.rtc.sdp_api().accept_offer(offer).unwrap();
            let (reply, _) = oneshot::channel();
            let answer = Command::Answer { participant: participant.clone(), sdp: answer.to_sdp_string(), reply };
            timed(&mut self.busy, || self.worker.handle_input(self.now, Input::Command(answer)));
        }
        self.events.push(event);
    }
}

impl Client {
    fn on_event(&mut self, event: Event) {
        match event {
            Event::MediaData(data) => {
                let key = matches!(data.codec_extra, CodecExtra::Vp8(e) if e.is_keyframe);
                self.frames.push((data.data.get(1).copied().unwrap_or(u8::MAX), key));
                if let Some((rtp, at)) = self.report {
                    // The lab delivers at once: a report's NTP time is when it came.
                    let ticks = i64::from((data.time.numer() as u32).wrapping_sub(rtp) as i32);
                    let since = Duration::from_micros(ticks.unsigned_abs() * 1_000_000 / 90_000);
                    let captured = if ticks >= 0 { at + since } else { at - since };
                    self.capture_ages.push(data.network_time.saturating_duration_since(captured));
                }
            }
            Event::SenderFeedback(f) => self.report = Some((f.sender_info.rtp_time.numer() as u32, f.received_at)),
            Event::KeyframeRequest(req) => {
                self.keyframe_requests += 1;
                self.keyframe_wanted.insert(req.rid);
            }
            _ => {}
        }
    }
}

/// A datagram from the server arrives at a client.
fn deliver(rtc: &mut Rtc, now: Instant, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
    let receive = Receive::new(Protocol::Udp, source, destination, data).unwrap();
    rtc.handle_input(str0m::Input::Receive(now, receive)).unwrap();
}

/// Runs `f`, adding the time it took to `busy`.
fn timed<R>(busy: &mut Duration, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let r = f();
    *busy += start.elapsed();
    r
}

fn client_room(c: &Client) -> RoomId {
    c.room.clone()
}

#[test]
fn a_frame_goes_to_the_consumers_of_its_producer_and_no_one_else() {
    let mut lab = Lab::new();
    let (alice, bob, carol) = (lab.client("r1"), lab.client("r1"), lab.client("r1"));
    let (dave, erin) = (lab.client("r2"), lab.client("r2"));
    lab.publish_video(alice, false);
    lab.publish_video(dave, false);
    lab.subscribe(bob, alice, Quality::High);
    lab.subscribe(erin, dave, Quality::High);
    // Carol is in the room, subscribed to no one: a transport with nothing to receive.
    lab.subscribe(carol, alice, Quality::High);
    lab.command(Command::Unsubscribe { subscriber: lab.id(carol), tracks: vec!["p0-video".into()] });
    lab.run(Duration::from_secs(3));
    let bob_frames = lab.clients[bob].frames.len();
    assert!(bob_frames > 60, "bob received {bob_frames} frames of alice's in 3 s");
    assert!(lab.clients[erin].frames.len() > 60, "erin received dave's");
    assert!(lab.clients[carol].frames.is_empty(), "carol subscribed to no one: {:?}", lab.clients[carol].frames);
    let stats = lab.worker.stats();
    assert_eq!(stats.unrouted, 0, "every packet found its transport by address or ICE username");
    assert_eq!(lab.worker.rooms.len(), 2);
    let r1 = &lab.worker.rooms[&RoomId::from("r1")];
    assert_eq!(r1.consumers_of(&"p0-video".into()).len(), 1, "only bob consumes alice's video");
}

#[test]
fn sender_reports_carry_the_publishers_capture_clock_through() {
    let mut lab = Lab::new();
    let (alice, bob) = (lab.client("r1"), lab.client("r1"));
    // Alice's frames leave her 80 ms after they were captured (encoding); her sender
    // reports say so.
    lab.capture_lead = Duration::from_millis(80);
    lab.publish_video(alice, false);
    lab.subscribe(bob, alice, Quality::High);
    lab.run(Duration::from_secs(6));
    let ages = &lab.clients[bob].capture_ages;
    assert!(ages.len() > 60, "bob mapped {} frames through the server's reports", ages.len());
    // Once alice's first report reached the server (within about a second), the server's
    // reports to bob say when each frame was captured, not when it arrived.
    let settled = &ages[ages.len() - 60..];
    for age in settled {
        assert!(
            age.abs_diff(Duration::from_millis(80)) <= Duration::from_millis(2),
            "by the server's reports, frames reached bob {age:?} after capture (80 ms): {settled:?}"
        );
    }
}

#[test]
fn subscribers_start_on_a_keyframe_and_their_requests_are_coalesced() {
    let mut lab = Lab::new();
    let alice = lab.client("r");
    let viewers: Vec<usize> = (0..4).map(|_| lab.client("r")).collect();
    lab.publish_video(alice, false);
    lab.run(Duration::from_secs(1));
    let before = lab.clients[alice].keyframe_requests;
    for v in &viewers {
        lab.subscribe(*v, alice, Quality::High);
    }
    lab.run(Duration::from_secs(2));
    for v in &viewers {
        let frames = &lab.clients[*v].frames;
        assert!(frames.len() > 30, "viewer {v} watches: {} frames", frames.len());
        assert!(frames[0].1, "viewer {v} starts on a keyframe");
    }
    let asked = lab.clients[alice].keyframe_requests - before;
    assert!(
        (1..=3).contains(&asked),
        "four viewers starting together cost alice {asked} keyframe requests, not one each"
    );
}

#[test]
fn a_layer_switch_waits_for_a_keyframe_of_the_new_layer() {
    let mut lab = Lab::new();
    let (alice, bob) = (lab.client("r"), lab.client("r"));
    lab.publish_video(alice, true);
    lab.subscribe(bob, alice, Quality::Low);
    lab.run(Duration::from_secs(3));
    let frames = lab.clients[bob].frames.clone();
    assert!(frames.len() > 45, "bob watches: {} frames", frames.len());
    assert!(frames.iter().all(|(layer, _)| *layer == 0), "low quality is the q layer: {frames:?}");
    let switch_at = frames.len();
    lab.command(Command::UpdateSubscription {
        subscriber: lab.id(bob),
        tracks: vec!["p0-video".into()],
        wants: Wants { audio: true, video: true, quality: Quality::High },
    });
    lab.run(Duration::from_secs(2));
    let after = &lab.clients[bob].frames[switch_at..];
    let first_f = after.iter().position(|(layer, _)| *layer == 2).expect("bob reaches the f layer");
    assert!(after[first_f].1, "the switch happens on a keyframe of f: {after:?}");
    assert!(after[..first_f].iter().all(|(layer, _)| *layer == 0), "q until then: {after:?}");
    assert!(after[first_f..].iter().all(|(layer, _)| *layer == 2), "f only after: {after:?}");
    assert!(first_f < 15, "switched within half a second: after {first_f} frames");
    assert!(lab.worker.stats().layer_switches >= 2);
}

/// Alice publishes with simulcast, and bob watches her on the f layer.
fn watching_the_top_layer() -> (Lab, usize) {
    let mut lab = Lab::new();
    let (alice, bob) = (lab.client("r"), lab.client("r"));
    lab.publish_video(alice, true);
    lab.subscribe(bob, alice, Quality::High);
    lab.run(Duration::from_secs(3));
    assert_eq!(lab.clients[bob].frames.last().map(|f| f.0), Some(2), "bob starts on the f layer");
    (lab, bob)
}

#[test]
fn a_congested_subscriber_is_limited_to_a_lower_layer() {
    let (mut lab, bob) = watching_the_top_layer();
    // Bob's path loses a third of what is sent to him: congestion, not noise.
    lab.clients[bob].loss = 0.35;
    lab.run(Duration::from_secs(6));
    lab.clients[bob].loss = 0.0;
    let seen = lab.clients[bob].frames.len();
    lab.run(Duration::from_secs(1));
    let recent = &lab.clients[bob].frames[seen..];
    assert!(!recent.is_empty() && recent.iter().all(|(layer, _)| *layer < 2), "limited below f: {recent:?}");
    assert!(lab.worker.stats().congestion_limits >= 1);
}

#[test]
fn a_capped_downlink_gets_the_layer_that_fits_and_the_wanted_one_when_the_cap_lifts() {
    let (mut lab, bob) = watching_the_top_layer();
    // The best layer bob received in each of the next `seconds`.
    let each_second = |lab: &mut Lab, seconds: usize| -> Vec<Option<u8>> {
        (0..seconds)
            .map(|_| {
                let seen = lab.clients[bob].frames.len();
                lab.run(Duration::from_secs(1));
                lab.clients[bob].frames[seen..].iter().map(|f| f.0).max()
            })
            .collect()
    };
    // A 450 kbit/s path with a fifth of a second of queue: f (about 700 kbit/s)
    // overflows it, h (about 200) fits. For twice the backoff after which the wanted
    // layer used to be tried again, whatever the path's probes say.
    lab.clients[bob].downlink = Some(Link::new(450, Duration::from_millis(200), lab.now));
    let capped = each_second(&mut lab, 6 + 2 * MIN_BACKOFF.as_secs() as usize);
    assert!(capped[6..].iter().all(|l| *l == Some(1)), "h, and only h, once limited: {capped:?}");
    let dropped = lab.clients[bob].downlink.as_ref().unwrap().dropped;
    let steady = each_second(&mut lab, 10);
    let dropped = lab.clients[bob].downlink.as_ref().unwrap().dropped - dropped;
    assert!(steady.iter().all(|l| *l == Some(1)), "{steady:?}");
    // Probing every PROBE_INTERVAL costs next to nothing: 30 packets a second arrive.
    assert!(dropped <= 3, "{dropped} packets dropped in 10 s on h");
    // The cap lifts: the next probe finds room, and bob is back on f for good.
    lab.clients[bob].downlink = None;
    let lifted = each_second(&mut lab, 15);
    let back = lifted.iter().position(|l| *l == Some(2)).expect("back on f");
    assert!(back as u64 <= PROBE_INTERVAL.as_secs() + 1, "back on f after {back} s: {lifted:?}");
    assert!(lifted[back..].iter().all(|l| *l == Some(2)), "and stays there: {lifted:?}");
}

#[test]
fn a_subscriber_that_goes_silent_is_reaped_and_the_hub_told() {
    let mut lab = Lab::new();
    let (alice, bob) = (lab.client("r"), lab.client("r"));
    lab.publish_video(alice, false);
    lab.subscribe(bob, alice, Quality::High);
    lab.run(Duration::from_secs(2));
    assert!(!lab.clients[bob].frames.is_empty());
    lab.clients[bob].cut = true;
    let cut_at = lab.now;
    let failed = |lab: &Lab| {
        lab.events.iter().any(
            |e| matches!(e, SfuEvent::PeerFailed { participant, publisher: false, .. } if participant.as_str() == "p1"),
        )
    };
    while !failed(&lab) && lab.now < cut_at + Duration::from_secs(40) {
        lab.run(Duration::from_secs(1));
    }
    assert!(failed(&lab), "the hub hears that bob's subscriber transport failed");
    let took = lab.now - cut_at;
    assert!(took < Duration::from_secs(30), "within consent expiry and the grace: {took:?}");
    assert_eq!(lab.worker.load().1, 1, "only alice's publisher transport is left");
    assert!(lab.worker.rooms[&RoomId::from("r")].consumers_of(&"p0-video".into()).is_empty());
}

#[test]
fn unsubscribing_renegotiates_and_stops_the_flow() {
    let mut lab = Lab::new();
    let (alice, bob) = (lab.client("r"), lab.client("r"));
    lab.publish_video(alice, false);
    lab.subscribe(bob, alice, Quality::High);
    lab.run(Duration::from_secs(2));
    let offers = |lab: &Lab| lab.events.iter().filter(|e| matches!(e, SfuEvent::SubscriberOffer { .. })).count();
    let before = offers(&lab);
    lab.command(Command::Unsubscribe { subscriber: lab.id(bob), tracks: vec!["p0-video".into()] });
    lab.run(Duration::from_millis(500));
    assert_eq!(offers(&lab), before + 1, "a new offer stops the media section");
    let seen = lab.clients[bob].frames.len();
    lab.run(Duration::from_secs(1));
    assert_eq!(lab.clients[bob].frames.len(), seen, "nothing flows after the answer");
    // Subscribing again opens a new section, starting on a keyframe.
    lab.subscribe(bob, alice, Quality::High);
    lab.run(Duration::from_secs(1));
    let again = &lab.clients[bob].frames[seen..];
    assert!(again.len() > 15 && again[0].1, "flows again from a keyframe: {again:?}");
}

#[test]
fn the_worker_wakes_for_its_timer_seldom_and_never_for_nothing() {
    let mut lab = Lab::new();
    let alice = lab.client("r");
    let viewers: Vec<usize> = (0..3).map(|_| lab.client("r")).collect();
    lab.publish_video(alice, true);
    for &v in &viewers {
        lab.subscribe(v, alice, Quality::High);
    }
    lab.run(Duration::from_secs(1));
    let (wakes, frames) = (lab.timer_wakes, lab.clients[viewers[0]].frames.len());
    lab.run(Duration::from_secs(3));
    assert!(lab.clients[viewers[0]].frames.len() - frames > 80, "the call runs");
    // Frames come every 33 ms, with feedback from four clients in between: the reports,
    // NACK and TWCC timers, due every few tens of milliseconds, wait for those.
    let per_second = (lab.timer_wakes - wakes) as f64 / 3.0;
    assert!(per_second < 20.0, "the worker's timer woke it {per_second} times a second");
    // A transport's deadline often moves later (a report put off, a packet sent on
    // another's wake-up): a thread woken for the old one would find nothing to do.
    assert_eq!(lab.idle_wakes, 0, "the worker asked to be woken when nothing was due");
}

/// The worker's own cost per forwarded packet as rooms grow (each 1 publisher of
/// 640x360-sized frames and N-1 viewers; one room of N, then as many as make about 100
/// participants), without sockets, threads or the kernel: the time spent in the
/// worker's calls, divided by the packets it forwarded. The server's cost in
/// `scripts/bench-sfu.sh` adds the system calls, and a wake-up of the thread for every
/// few datagrams, which a small room on an idle server pays for every packet.
/// A benchmark, run by that script's section 6 (`cargo test --release -p confer-server
/// --lib core_cost -- --ignored --nocapture`); in a debug build its numbers mean little.
#[test]
#[ignore = "a benchmark: scripts/bench-sfu.sh runs it in a release build"]
fn core_cost_per_forwarded_packet_as_rooms_grow() {
    let sizes: Vec<usize> = std::env::var("SIZES")
        .ok()
        .map(|s| s.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![4, 10, 25, 50, 100]);
    println!("participants  one room: packets/s  us per packet  |  rooms  packets/s  us per packet");
    let (mut one, mut equal) = (Vec::new(), Vec::new());
    for &n in &sizes {
        let rooms = (100 + n / 2) / n;
        let (pps, us) = core_cost(1, n);
        let (pps_equal, us_equal) = core_cost(rooms, n);
        println!("{n:>12}  {pps:>19.0}  {us:>13.2}  |  {rooms:>5}  {pps_equal:>9.0}  {us_equal:>13.2}");
        one.push(us);
        equal.push(us_equal);
    }
    let spread = |costs: &[f64]| {
        let (lo, hi) = costs.iter().fold((f64::MAX, 0f64), |(lo, hi), &c| (lo.min(c), hi.max(c)));
        hi / lo
    };
    println!("highest / lowest: one room {:.2}, about 100 participants {:.2}", spread(&one), spread(&equal));
}

/// Packets forwarded a second, and the worker's microseconds per forwarded packet, in
/// `rooms` rooms of `n`.
fn core_cost(rooms: usize, n: usize) -> (f64, f64) {
    const WARM_UP: Duration = Duration::from_secs(2);
    const MEASURED: Duration = Duration::from_secs(6);
    let mut lab = Lab::new();
    // About what the load tool's 640x360 publisher sends: three packets a frame.
    lab.frame_bytes = [2900; 3];
    for r in 0..rooms {
        let room = format!("r{r}");
        let publisher = lab.client(&room);
        let viewers: Vec<usize> = (1..n).map(|_| lab.client(&room)).collect();
        lab.publish_video(publisher, false);
        for &v in &viewers {
            lab.subscribe(v, publisher, Quality::High);
        }
    }
    lab.run(WARM_UP);
    let (busy, forwarded) = (lab.busy, lab.worker.stats().packets_forwarded);
    lab.run(MEASURED);
    let forwarded = lab.worker.stats().packets_forwarded - forwarded;
    assert!(forwarded > 0, "{rooms} rooms of {n}: nothing forwarded");
    let us = (lab.busy - busy).as_secs_f64() * 1e6 / forwarded as f64;
    (forwarded as f64 / MEASURED.as_secs_f64(), us)
}
