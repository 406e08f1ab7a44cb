//! The two WebRTC stacks Confer pairs must understand each other: the client's
//! (`webrtc`, webrtc-rs) publishing to the SFU's (`str0m`, ICE-lite on one UDP socket).
//! This is the riskiest joint of the media plane, so it is checked on its own, over real
//! UDP on loopback, with real VP8 carrying the synthetic pattern: every frame must
//! arrive, decode, and show its stamp.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confer_media::pattern::read_stamp;
use confer_media::vp8::{Vp8Config, Vp8Decoder, Vp8Encoder};
use confer_media::PatternSource;
use rtc::interceptor::Registry;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_VP8};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

const FRAMES: u64 = 90;
const VP8_PT: u8 = 96;

#[derive(Clone)]
struct Signals {
    gathered: mpsc::Sender<()>,
    connected: mpsc::Sender<()>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Signals {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.try_send(());
        }
    }
}

/// What the str0m side saw.
#[derive(Debug, Default)]
struct Received {
    frames: u64,
    decoded: u64,
    stamped: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A minimal str0m peer: one `Rtc`, one socket, decoding the VP8 it receives.
fn run_str0m(mut rtc: Rtc, socket: UdpSocket, stop: Arc<AtomicBool>) -> Received {
    let mut got = Received::default();
    let mut decoder = Vp8Decoder::new().unwrap();
    let mut buf = vec![0u8; 2000];
    let local = socket.local_addr().unwrap();
    while !stop.load(Ordering::Relaxed) && rtc.is_alive() {
        let next = loop {
            match rtc.poll_output().expect("str0m output") {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    socket.send_to(&t.contents, t.destination).unwrap();
                }
                Output::Event(Event::MediaData(data)) => {
                    got.frames += 1;
                    if let Ok(Some(picture)) = decoder.decode(&data.data) {
                        got.decoded += 1;
                        got.stamped += u64::from(read_stamp(&picture).is_some());
                    }
                }
                Output::Event(_) => {}
            }
        };
        // Wake at least every 50 ms to notice `stop`.
        let wait =
            next.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(1), Duration::from_millis(50));
        socket.set_read_timeout(Some(wait)).unwrap();
        buf.resize(2000, 0);
        let input = match socket.recv_from(&mut buf) {
            Ok((n, source)) => {
                buf.truncate(n);
                let contents = buf.as_slice().try_into().expect("a datagram str0m can parse");
                Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents })
            }
            Err(_) => Input::Timeout(Instant::now()),
        };
        rtc.handle_input(input).expect("str0m input");
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_publishes_vp8_to_str0m_ice_lite() {
    str0m::crypto::from_feature_flags().install_process_default();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = socket.local_addr().unwrap();

    // The publisher: webrtc-rs offering one VP8 track.
    let mut media = MediaEngine::default();
    let vp8 = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        payload_type: VP8_PT,
    };
    media.register_codec(vp8.clone(), RtpCodecKind::Video).unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let (gathered, mut gathered_rx) = mpsc::channel(1);
    let (connected, mut connected_rx) = mpsc::channel(1);
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Signals { gathered, connected }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .unwrap();
    let ssrc = 0x5eed;
    let encoding = RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
        codec: vp8.rtp_codec.clone(),
        ..Default::default()
    };
    let track = Arc::new(
        TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                "camera".into(),
                "video".into(),
                "camera".into(),
                RtpCodecKind::Video,
                vec![encoding],
            ),
        )
        .unwrap(),
    );
    pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), gathered_rx.recv()).await.expect("ICE gathering completes");
    let offer = pc.local_description().await.expect("a local offer");

    // The SFU side: str0m, ICE-lite, answering with its one host candidate.
    let mut rtc = Rtc::builder().set_ice_lite(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(server_addr, "udp").unwrap());
    let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&offer.sdp).unwrap()).unwrap();
    let answer_sdp = answer.to_sdp_string();
    assert!(answer_sdp.contains("a=ice-lite"));
    pc.set_remote_description(RTCSessionDescription::answer(answer_sdp).unwrap()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || run_str0m(rtc, socket, stop))
    };
    tokio::time::timeout(Duration::from_secs(10), connected_rx.recv()).await.expect("the peers connect");

    // 3 s of 640x360 at 30 fps.
    let mut source = PatternSource::new(640, 360).unwrap();
    let mut encoder = Vp8Encoder::new(Vp8Config { width: 640, height: 360, bitrate_kbps: 800, threads: 1 }).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    for i in 0..FRAMES {
        tick.tick().await;
        let (frame, _) = source.next_frame(unix_ms());
        for packet in encoder.encode(&frame, i as i64 * 33).unwrap() {
            let sample =
                Sample { data: packet.data.into(), duration: Duration::from_millis(33), ..Sample::new(Instant::now()) };
            track.sample_writer(ssrc, VP8_PT).write_sample(&sample).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let got = tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
    // Best effort: the test is over either way.
    let _ = tokio::time::timeout(Duration::from_secs(2), pc.close()).await;

    assert!(got.frames >= FRAMES * 95 / 100, "{got:?} of {FRAMES} sent");
    assert_eq!(got.decoded, got.frames, "every frame that arrived decodes: {got:?}");
    assert_eq!(got.stamped, got.decoded, "every decoded frame shows its stamp: {got:?}");
}
