//! Media: publishing encoded frames and receiving them, over WebRTC (webrtc-rs).
//!
//! A participant has two peer connections to the server, as the protocol describes: the
//! *publisher* connection, which this side offers (one per [`crate::Room`], renegotiated
//! for each stream), and the *subscriber* connection, which the server offers and the
//! room's media task ([`session`]) answers. The SDK moves encoded frames: the app (or
//! the bot) encodes with `confer-media`, writes frames to a [`LocalTrack`] (asking it
//! whether a receiver wants a keyframe), and reads frames from a [`RemoteTrack`] to
//! decode them. The media task keeps both connections working through network trouble
//! (ICE restarts, republishing, resubscribing), behind the same handles.

/// The rest of `Protocol` for an interceptor of ours whose `handle_read` looks at a
/// packet and queues it on `self.read`: packets leave in order, and writes pass through
/// `self.write` untouched.
macro_rules! queued_pass_through {
    () => {
        fn poll_read(&mut self) -> Option<TaggedPacket> {
            self.read.pop_front()
        }

        fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
            self.write.push_back(msg);
            Ok(())
        }

        fn poll_write(&mut self) -> Option<TaggedPacket> {
            self.write.pop_front()
        }
    };
}

mod feedback;
pub mod levels;
mod publisher;
pub mod relay;
mod repair;
pub(crate) mod session;
pub mod stats;
mod subscriber;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use confer_proto::track::{Quality, TrackId, TrackKind, TrackSource};
use confer_proto::ParticipantId;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{NackGeneratorBuilder, NackResponderBuilder};
use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::{RTCConfiguration, RTCConfigurationBuilder, RTCIceTransportPolicy};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::RTCIceCandidateInit;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCPeerConnectionState,
};

pub use levels::TrackLevel;
pub use publisher::{LocalStream, LocalTrack};
use relay::Relays;
pub use stats::{CandidatePath, MediaStats, StreamDirection, StreamStats};
pub use subscriber::{EncodedFrame, RemoteTrack};

use crate::error::{ClientError, Result};

/// The codecs Confer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Vp8,
    H264,
    Opus,
}

impl Codec {
    pub(crate) fn payload_type(self) -> u8 {
        match self {
            Codec::Vp8 => 96,
            Codec::H264 => 102,
            Codec::Opus => 111,
        }
    }

    pub(crate) fn rtp_codec(self) -> RTCRtpCodec {
        let video_feedback = vec![
            RTCPFeedback { typ: "goog-remb".into(), parameter: String::new() },
            RTCPFeedback { typ: "transport-cc".into(), parameter: String::new() },
            RTCPFeedback { typ: "ccm".into(), parameter: "fir".into() },
            RTCPFeedback { typ: "nack".into(), parameter: String::new() },
            RTCPFeedback { typ: "nack".into(), parameter: "pli".into() },
        ];
        match self {
            Codec::Vp8 => RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: video_feedback,
            },
            Codec::H264 => RTCRtpCodec {
                mime_type: MIME_TYPE_H264.into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".into(),
                rtcp_feedback: video_feedback,
            },
            Codec::Opus => RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.into(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![RTCPFeedback { typ: "transport-cc".into(), parameter: String::new() }],
            },
        }
    }

    pub fn kind(self) -> TrackKind {
        match self {
            Codec::Opus => TrackKind::Audio,
            Codec::Vp8 | Codec::H264 => TrackKind::Video,
        }
    }
}

/// One track of a stream to publish.
#[derive(Debug, Clone)]
pub struct TrackOptions {
    pub kind: TrackKind,
    /// What it carries (none for a data track).
    pub source: Option<TrackSource>,
    /// The codec its frames are encoded with (none for a data track).
    pub codec: Option<Codec>,
    /// Video only: send three layers (`q`, `h`, `f`); write each with its [`Quality`].
    pub simulcast: bool,
    pub muted: bool,
    /// Data only: deliver messages in order (and reliably); otherwise as they come.
    pub ordered: bool,
}

impl TrackOptions {
    /// An audio or video track from `source`, encoded with `codec`.
    pub fn new(source: TrackSource, codec: Codec) -> Self {
        Self {
            kind: codec.kind(),
            source: Some(source),
            codec: Some(codec),
            simulcast: false,
            muted: false,
            ordered: true,
        }
    }

    /// A data track: messages relayed to the stream's subscribers over data channels.
    pub fn data() -> Self {
        Self { kind: TrackKind::Data, source: None, codec: None, simulcast: false, muted: false, ordered: true }
    }

    pub fn with_simulcast(mut self, simulcast: bool) -> Self {
        self.simulcast = simulcast;
        self
    }

    pub fn with_muted(mut self, muted: bool) -> Self {
        self.muted = muted;
        self
    }
}

/// How the SDK's peer connections are set up (from [`crate::RoomOptions`]).
#[derive(Debug, Clone)]
pub(crate) struct MediaConfig {
    /// The local address media sockets bind to; `None` binds every interface.
    pub bind_ip: Option<IpAddr>,
    /// Use relay candidates only (TURN), never a direct path.
    pub force_relay: bool,
    /// The room state, for the ICE servers the server handed out (renewed with the
    /// join token).
    pub room: watch::Receiver<crate::state::RoomSnapshot>,
}

impl MediaConfig {
    fn ice_servers(&self) -> Vec<confer_proto::signal::IceServer> {
        self.room.borrow().ice_servers.clone()
    }
}

/// Connection state of one peer connection, as its handler saw it.
#[derive(Clone)]
pub(crate) struct PcSignals {
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn webrtc::media_stream::track_remote::TrackRemote>>>,
    channels: Option<mpsc::UnboundedSender<Arc<dyn DataChannel>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PcSignals {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(?state, "peer connection state");
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>) {
        if let Some(tx) = &self.tracks {
            let _ = tx.send(track);
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        if let Some(tx) = &self.channels {
            let _ = tx.send(channel);
        }
    }
}

/// What a new peer connection reports besides its state.
#[derive(Default)]
pub(crate) struct PcTaps {
    /// Remote tracks as they arrive (subscriber connection).
    pub tracks: Option<mpsc::UnboundedSender<Arc<dyn webrtc::media_stream::track_remote::TrackRemote>>>,
    /// Data channels the server opens (subscriber connection).
    pub channels: Option<mpsc::UnboundedSender<Arc<dyn DataChannel>>>,
    /// Keyframe requests and loss reports received, by SSRC (publisher connection).
    pub feedback: Option<mpsc::UnboundedSender<feedback::Feedback>>,
}

/// A peer connection and what its handler reports.
pub(crate) struct Pc {
    pub pc: Arc<dyn PeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    /// The relays this connection was set up with (and their TCP bridges).
    relays: Relays,
    config: MediaConfig,
    created: std::time::Instant,
    /// Loopback stand-ins for the server's ICE-TCP candidates, by their address.
    tcp_bridges: tokio::sync::Mutex<HashMap<SocketAddr, relay::TcpBridge>>,
}

/// webrtc-rs's default interceptors (NACK both ways, RTCP reports, TWCC feedback,
/// simulcast header extensions), with retransmissions unwrapped before the NACK
/// generator ([`repair::RtxUnwrap`]) so a repaired packet is not asked for again, and
/// the generator tuned to fit its requests into the time a frame can wait for them.
fn interceptors(media: &mut MediaEngine) -> Result<Registry> {
    for parameter in ["", "pli"] {
        media.register_feedback(RTCPFeedback { typ: "nack".into(), parameter: parameter.into() }, RtpCodecKind::Video);
    }
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(Slot::from(repair::SLOT), repair::RtxUnwrap::default())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_interval(NACK_INTERVAL)
                .with_max_nacks_per_packet(NACKS_PER_PACKET)
                .build(),
        );
    configure_simulcast_extension_headers(media).map_err(media_error)?;
    let registry = configure_twcc_receiver_only(registry, media).map_err(media_error)?;
    Ok(configure_rtcp_reports(registry))
}

/// How often the ICE agent sends its next check (webrtc-rs's default is 200 ms; browsers
/// pace theirs 50 ms apart, RFC 8445's Ta). The nomination that lets the SFU answer the
/// DTLS handshake is the check after the first that succeeds, so this is time to the
/// first frame.
const ICE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Checks of one candidate pair before it counts as failed: 28 at 50 ms apart, the same
/// 1.4 s as webrtc-rs's default of 7 at 200 ms.
const ICE_CHECKS_PER_PAIR: u16 = 28;

/// How often missing packets are asked for (webrtc-rs's default is 100 ms).
const NACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// How many times one missing packet is asked for: every [`NACK_INTERVAL`] for up to
/// 250 ms, inside the 300 ms a frame waits for its missing packets (the sample builders
/// in `subscriber.rs`) before it is given up and a keyframe asked for. At 5 % loss each
/// way one request in ten fails (the request or the repair is lost): the two requests
/// that webrtc-rs's default spacing fits in that time leave one loss in a hundred
/// unrepaired, five leave one in a hundred thousand.
const NACKS_PER_PACKET: u16 = 5;

/// RTX payload types, paired with the codec they repair.
const RTX: [(u8, Codec); 2] = [(97, Codec::Vp8), (103, Codec::H264)];

impl Pc {
    pub(crate) async fn new(config: MediaConfig, taps: PcTaps) -> Result<Pc> {
        let mut media = MediaEngine::default();
        for codec in [Codec::Opus, Codec::Vp8, Codec::H264] {
            let kind = if codec.kind() == TrackKind::Audio { RtpCodecKind::Audio } else { RtpCodecKind::Video };
            media
                .register_codec(
                    RTCRtpCodecParameters { rtp_codec: codec.rtp_codec(), payload_type: codec.payload_type() },
                    kind,
                )
                .map_err(media_error)?;
        }
        // RTX: the SFU answers NACKs only with retransmissions on an RTX stream, and asks
        // for them only from a sender that can send them.
        for (pt, codec) in RTX {
            let rtx = RTCRtpCodec {
                mime_type: "video/rtx".into(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: format!("apt={}", codec.payload_type()),
                rtcp_feedback: Vec::new(),
            };
            media
                .register_codec(RTCRtpCodecParameters { rtp_codec: rtx, payload_type: pt }, RtpCodecKind::Video)
                .map_err(media_error)?;
        }
        media
            .register_header_extension(
                RTCRtpHeaderExtensionCapability { uri: rtc::sdp::extmap::AUDIO_LEVEL_URI.to_owned() },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(media_error)?;
        let mut registry = interceptors(&mut media)?;
        if let Some(feedback) = taps.feedback {
            registry = registry.with(Slot::from(feedback::SLOT), feedback::FeedbackTap::new(feedback));
        }
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(PcSignals { state: state_tx, tracks: taps.tracks, channels: taps.channels });
        let bind = SocketAddr::new(config.bind_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
        // Answer the SFU's offers (subscriber connections) as the DTLS client, as browsers
        // do, not as the server (webrtc-rs's default towards an ICE-lite peer). The client
        // drives the handshake on its steady 1 s timer, and the SFU asks for no cookie, so
        // the handshake is a round trip shorter. As the server, webrtc-rs never repeats its
        // HelloVerifyRequest, so a lost hello waited on the SFU's backed-off timer: about
        // one join in twenty at 5 % loss saw its first frame 2.5 to 7 s late.
        //
        // No mDNS: the SFU's candidates are addresses, never `.local` names, and
        // webrtc-rs's mDNS socket fails the whole connection (ENODEV) on a network with
        // no route for multicast, such as a LAN without a default route.
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(bind.ip().is_loopback())
            .with_answering_dtls_role(RTCDtlsRole::Client)
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_CHECKS_PER_PAIR))
            .build();
        let relays = Relays::prepare(&config.ice_servers()).await;
        let rtc_config = rtc_configuration(&relays, config.force_relay)?;
        let pc = PeerConnectionBuilder::new()
            .with_configuration(rtc_config)
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![bind])
            .build()
            .await
            .map_err(media_error)?;
        Ok(Pc {
            pc: Arc::new(pc),
            state,
            relays,
            config,
            created: std::time::Instant::now(),
            tcp_bridges: tokio::sync::Mutex::default(),
        })
    }

    /// Takes the latest ICE servers (their credentials are renewed with the join token)
    /// before an ICE restart gathers again.
    pub(crate) async fn refresh_ice_servers(&mut self) -> Result<()> {
        let relays = Relays::prepare(&self.config.ice_servers()).await;
        let rtc_config = rtc_configuration(&relays, self.config.force_relay)?;
        self.pc.set_configuration(rtc_config).await.map_err(media_error)?;
        self.relays = relays;
        Ok(())
    }

    /// Offers ICE a path to each of the server's passive TCP candidates in `sdp`, for
    /// networks that drop UDP: a loopback UDP candidate whose packets a
    /// [`relay::TcpBridge`] carries over TCP (RFC 4571), with the priority of a TCP
    /// candidate so that a direct UDP path wins where there is one. Never when only
    /// relays may be used.
    pub(crate) async fn add_tcp_candidates(&self, sdp: &str) {
        if self.config.force_relay {
            return;
        }
        let mut bridges = self.tcp_bridges.lock().await;
        for candidate in tcp_candidates(sdp) {
            let Some(server) = candidate_addr(candidate) else { continue };
            let local = match bridges.entry(server) {
                std::collections::hash_map::Entry::Occupied(e) => e.get().local,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    match relay::TcpBridge::to_ice_tcp(server, self.relays.health.clone()).await {
                        Ok(b) => slot.insert(b).local,
                        Err(e) => {
                            tracing::warn!(error = %e, %server, "cannot bridge to the server's TCP candidate");
                            continue;
                        }
                    }
                }
            };
            let init = RTCIceCandidateInit {
                candidate: format!(
                    "candidate:tcp{} 1 udp {TCP_PRIORITY} {} {} typ host",
                    local.port(),
                    local.ip(),
                    local.port()
                ),
                sdp_mid: Some(first_mid(sdp).unwrap_or_default()),
                sdp_mline_index: Some(0),
                ..Default::default()
            };
            if let Err(e) = self.pc.add_ice_candidate(init).await {
                tracing::debug!(error = %e, %server, "the TCP path was not taken");
            }
        }
    }

    /// `Some(why)` when this connection never found a path to the server within
    /// `limit` of being made: every candidate pair failed (UDP and TCP blocked, the relay
    /// down or refusing its credentials).
    pub(crate) fn no_path(&self, limit: Duration) -> Option<ClientError> {
        let state = *self.state.borrow();
        if matches!(state, RTCPeerConnectionState::Connected) || self.created.elapsed() < limit {
            return None;
        }
        if !matches!(
            state,
            RTCPeerConnectionState::New | RTCPeerConnectionState::Connecting | RTCPeerConnectionState::Failed
        ) {
            return None;
        }
        let mut tried = Vec::new();
        if !self.config.force_relay {
            tried.push("a direct path over UDP and over TCP".to_owned());
        }
        if self.relays.has_relay() {
            tried.push("the TURN relays the server named".to_owned());
        }
        let mut detail = format!("no connection to the media server after {:?}; tried {}", limit, tried.join(" and "));
        if !self.relays.has_relay() {
            detail.push_str("; the server names no TURN relay");
        }
        let failures = self.relays.health.failures();
        if !failures.is_empty() {
            detail.push_str(&format!("; {}", failures.join("; ")));
        }
        Some(ClientError::NoMediaPath { detail })
    }

    /// The local description, sent at once: the server is ICE-lite and learns the
    /// client's addresses from its connectivity checks, so waiting for candidates to
    /// be gathered (a second or more with relays) would only delay the first picture.
    pub(crate) async fn local_sdp(&self) -> Result<String> {
        let desc = self.pc.local_description().await.ok_or_else(|| media_error("no local description"))?;
        Ok(desc.sdp)
    }

    /// The path ICE chose (`None` before one is chosen).
    pub(crate) async fn selected_path(&self) -> Option<stats::CandidatePath> {
        stats::selected_path(&self.pc).await
    }

    pub(crate) fn is_down(&self) -> bool {
        matches!(
            *self.state.borrow(),
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed | RTCPeerConnectionState::Disconnected
        )
    }

    pub(crate) async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.pc.close()).await;
    }
}

/// The peer connection's configuration: the relays, and whether only they may be used.
fn rtc_configuration(relays: &Relays, force_relay: bool) -> Result<RTCConfiguration> {
    let mut builder = RTCConfigurationBuilder::new().with_ice_servers(relays.servers.clone());
    if force_relay {
        if !relays.has_relay() {
            let trouble = relays.health.failures().join("; ");
            return Err(ClientError::NoMediaPath {
                detail: if trouble.is_empty() {
                    "relay-only was asked for, but the server offers no TURN relay".to_owned()
                } else {
                    format!("relay-only was asked for, but no TURN relay can be used: {trouble}")
                },
            });
        }
        builder = builder.with_ice_transport_policy(RTCIceTransportPolicy::Relay);
    }
    Ok(builder.build())
}

/// The priority of the bridged TCP path: what a host TCP candidate would have (type
/// preference 90 of 126), so that a direct UDP path is preferred.
const TCP_PRIORITY: u32 = (90 << 24) | (65535 << 8) | 255;

/// The address of an `a=candidate:` value.
fn candidate_addr(candidate: &str) -> Option<SocketAddr> {
    let fields: Vec<&str> = candidate.split_whitespace().collect();
    let ip: IpAddr = fields.get(4)?.parse().ok()?;
    let port: u16 = fields.get(5)?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The `a=candidate:` values (without `a=`) of passive TCP candidates in `sdp`.
fn tcp_candidates(sdp: &str) -> Vec<&str> {
    let mut seen = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(c) = line.strip_prefix("a=") {
            let fields: Vec<&str> = c.split_whitespace().collect();
            let passive = fields.windows(2).any(|w| w == ["tcptype", "passive"]);
            let tcp = fields.get(2).is_some_and(|p| p.eq_ignore_ascii_case("tcp"));
            if c.starts_with("candidate:") && tcp && passive && !seen.contains(&c) {
                seen.push(c);
            }
        }
    }
    seen
}

fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=mid:").map(str::to_owned))
}

pub(crate) fn media_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Media { detail: e.to_string() }
}

/// The `a=mid` of the media section whose `a=msid` names `track_label`.
pub(crate) fn mid_of_track(sdp: &str, track_label: &str) -> Option<String> {
    let mut mid = None;
    let mut found = false;
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            if found {
                break;
            }
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_owned());
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            if msid.split_whitespace().nth(1) == Some(track_label) {
                found = true;
            }
        }
        if found && mid.is_some() {
            return mid;
        }
    }
    None
}

/// What [`crate::Room`] knows of a remote track before its frames arrive.
#[derive(Debug, Clone)]
pub struct RemoteTrackInfo {
    pub publisher: ParticipantId,
    pub key: String,
    pub track_id: TrackId,
    pub kind: TrackKind,
}

/// The layer a simulcast frame belongs to, for [`LocalTrack::write`].
pub type Layer = Option<Quality>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mid_of_a_track() {
        let sdp = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=msid:s mic\r\nm=video 9 X 96\r\na=mid:1\r\na=msid:s cam\r\n";
        assert_eq!(mid_of_track(sdp, "mic").as_deref(), Some("0"));
        assert_eq!(mid_of_track(sdp, "cam").as_deref(), Some("1"));
        assert_eq!(mid_of_track(sdp, "screen"), None);
    }

    #[test]
    fn finds_the_passive_tcp_candidates() {
        let sdp = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\n\
                   a=candidate:1 1 udp 2130706175 10.0.0.1 7882 typ host\r\n\
                   a=candidate:2 1 tcp 1526725887 10.0.0.1 7882 typ host tcptype passive ufrag u\r\n\
                   a=candidate:3 1 tcp 1526725887 10.0.0.1 9 typ host tcptype active\r\n\
                   m=video 9 X 96\r\na=mid:1\r\n\
                   a=candidate:2 1 tcp 1526725887 10.0.0.1 7882 typ host tcptype passive ufrag u\r\n";
        assert_eq!(
            tcp_candidates(sdp),
            vec!["candidate:2 1 tcp 1526725887 10.0.0.1 7882 typ host tcptype passive ufrag u"]
        );
        assert_eq!(first_mid(sdp).as_deref(), Some("0"));
        assert_eq!(candidate_addr(tcp_candidates(sdp)[0]), Some("10.0.0.1:7882".parse().unwrap()));
    }
}
