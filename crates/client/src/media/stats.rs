//! Per-stream WebRTC statistics of the room's two connections, named by track.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use confer_proto::track::{TrackId, TrackKind};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::statistics::report::RTCStatsReportEntry;
use serde::Serialize;
use webrtc::peer_connection::{PeerConnection, RTCStatsReport, StatsSelector};

/// Which way a stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamDirection {
    Sent,
    Received,
}

/// One RTP stream (one simulcast layer, for a simulcast track).
#[derive(Debug, Clone, Serialize)]
pub struct StreamStats {
    /// The track it carries, when known.
    pub track_id: Option<TrackId>,
    pub direction: StreamDirection,
    pub kind: TrackKind,
    /// The simulcast layer (`q`, `h`, `f`) of a sent stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    pub ssrc: u32,
    pub packets: u64,
    pub bytes: u64,
    /// Received: packets lost (RFC 3550 cumulative count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_lost: Option<i64>,
    /// Received: interarrival jitter, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    /// Received: retransmissions and keyframes asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nacks_sent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plis_sent: Option<u32>,
}

/// The network path ICE chose for a connection, as this side sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CandidatePath {
    /// The local candidate's type: `host`, `srflx`, `prflx` or `relay`.
    pub local_type: String,
    /// `udp`, or `tcp` for ICE over TCP to the server (through the SDK's bridge). A
    /// relay candidate says `udp`: the relay's leg to the server; the leg to the relay
    /// may run over TCP or TLS.
    pub protocol: String,
    /// The local candidate's address (for a relay, the address the relay sends from).
    pub address: String,
    /// The remote candidate's address, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// The statistics of both connections at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MediaStats {
    pub streams: Vec<StreamStats>,
    /// The path each connection uses, once ICE chose one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_path: Option<CandidatePath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_path: Option<CandidatePath>,
    /// Round-trip time to the server on each connection's selected path, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_rtt_ms: Option<f64>,
}

fn kind(kind: RtpCodecKind) -> TrackKind {
    match kind {
        RtpCodecKind::Audio => TrackKind::Audio,
        _ => TrackKind::Video,
    }
}

fn rtt_ms(report: &RTCStatsReport) -> Option<f64> {
    report.candidate_pairs().find(|p| p.nominated).map(|p| p.current_round_trip_time * 1000.0)
}

/// The selected candidate pair's local side, from the statistics.
pub(crate) async fn selected_path(pc: &Arc<dyn PeerConnection>) -> Option<CandidatePath> {
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let selected = report.transport().map(|t| t.selected_candidate_pair_id.clone()).filter(|id| !id.is_empty());
    let pair = report
        .candidate_pairs()
        .find(|p| selected.as_deref() == Some(p.stats.id.as_str()))
        .or_else(|| report.candidate_pairs().find(|p| p.nominated))?;
    // Pairs name local candidates by their raw id; the entries are prefixed.
    let id = &pair.local_candidate_id;
    let local =
        [format!("RTCLocalIceCandidate_{id}"), id.clone()].into_iter().find_map(|key| match report.get(&key) {
            Some(RTCStatsReportEntry::LocalCandidate(c)) => Some(c),
            _ => None,
        })?;
    let rid = &pair.remote_candidate_id;
    let remote =
        [format!("RTCRemoteIceCandidate_{rid}"), rid.clone()].into_iter().find_map(|key| match report.get(&key) {
            Some(RTCStatsReportEntry::RemoteCandidate(c)) => {
                Some(format!("{}:{}", c.address.clone().unwrap_or_default(), c.port))
            }
            _ => None,
        });
    // A path through the SDK's loopback bridge to the server's TCP candidate is ICE
    // over TCP, whatever webrtc-rs thinks of it.
    let bridged = remote.as_deref().is_some_and(super::relay::is_ice_tcp_bridge);
    Some(CandidatePath {
        local_type: local.candidate_type.to_string(),
        protocol: if bridged { "tcp".to_owned() } else { local.protocol.to_ascii_lowercase() },
        address: format!("{}:{}", local.address.clone().unwrap_or_default(), local.port),
        remote,
    })
}

/// The sent streams of the publisher connection; `tracks` names each SSRC's track.
pub(crate) async fn sent(
    pc: &Arc<dyn PeerConnection>,
    tracks: &HashMap<u32, TrackId>,
) -> (Vec<StreamStats>, Option<f64>) {
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let streams = report
        .outbound_rtp_streams()
        .map(|s| {
            let common = &s.sent_rtp_stream_stats.rtp_stream_stats;
            StreamStats {
                track_id: tracks.get(&common.ssrc).cloned(),
                direction: StreamDirection::Sent,
                kind: kind(common.kind),
                rid: (!s.rid.is_empty()).then(|| s.rid.clone()),
                ssrc: common.ssrc,
                packets: s.sent_rtp_stream_stats.packets_sent,
                bytes: s.sent_rtp_stream_stats.bytes_sent,
                packets_lost: None,
                jitter_ms: None,
                nacks_sent: None,
                plis_sent: None,
            }
        })
        .collect();
    (streams, rtt_ms(&report))
}

/// The received streams of the subscriber connection; `tracks` names each SSRC's track.
pub(crate) async fn received(
    pc: &Arc<dyn PeerConnection>,
    tracks: &HashMap<u32, TrackId>,
) -> (Vec<StreamStats>, Option<f64>) {
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let streams = report
        .inbound_rtp_streams()
        .map(|s| {
            let received = &s.received_rtp_stream_stats;
            let common = &received.rtp_stream_stats;
            let kind = kind(common.kind);
            // Jitter is reported in RTP timestamp units.
            let clock = if kind == TrackKind::Audio { 48.0 } else { 90.0 };
            StreamStats {
                track_id: tracks.get(&common.ssrc).cloned(),
                direction: StreamDirection::Received,
                kind,
                rid: None,
                ssrc: common.ssrc,
                packets: received.packets_received,
                bytes: s.bytes_received,
                packets_lost: Some(received.packets_lost),
                jitter_ms: Some(received.jitter / clock),
                nacks_sent: Some(s.nack_count),
                plis_sent: Some(s.pli_count),
            }
        })
        .collect();
    (streams, rtt_ms(&report))
}
