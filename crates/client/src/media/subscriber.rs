//! The subscriber connection: answering the server's offers and turning incoming RTP
//! into whole encoded frames.
//!
//! One task per room owns the connection. The engine hands it the two events that
//! drive it (`subscription_started`, naming the tracks of the next offer, and
//! `subscriber_offer`); it answers each offer and, as tracks arrive, emits
//! [`RoomEvent::TrackSubscribed`] with a [`RemoteTrack`] whose frames the app reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_proto::signal::{Event, Request};
use confer_proto::track::{SubscriptionEndReason, TrackId, TrackKind};
use rtc::media::io::sample_builder::SampleBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::opus::OpusPacket;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::{media_error, Pc, RemoteTrackInfo};
use crate::event::RoomEvent;
use crate::room::Requester;

/// Frames buffered per remote track before the oldest are dropped (the reader is slow).
const FRAME_QUEUE: usize = 256;

/// One whole encoded frame of a remote track.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    /// The RTP timestamp (90 kHz for video, 48 kHz for Opus).
    pub rtp_timestamp: u32,
    /// When its last packet arrived.
    pub received_at: Instant,
    /// Packets lost just before this frame that retransmission did not recover.
    pub lost_before: u16,
}

/// A track being received.
pub struct RemoteTrack {
    pub info: RemoteTrackInfo,
    /// The codec's MIME type (`video/VP8`, `audio/opus`).
    pub codec: String,
    frames: mpsc::Receiver<EncodedFrame>,
    track: Arc<dyn TrackRemote>,
    ssrc: u32,
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack").field("info", &self.info).field("codec", &self.codec).finish()
    }
}

impl RemoteTrack {
    /// The next frame; `None` once the track has ended.
    pub async fn next_frame(&mut self) -> Option<EncodedFrame> {
        self.frames.recv().await
    }

    /// Asks the sender for a keyframe (after a decode error).
    pub async fn request_keyframe(&self) {
        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: self.ssrc };
        if let Err(e) = self.track.write_rtcp(vec![Box::new(pli)]).await {
            tracing::debug!(error = %e, "keyframe request failed");
        }
    }
}

type Known = Arc<Mutex<HashMap<TrackId, RemoteTrackInfo>>>;

/// Runs the subscriber side until the room's engine goes away.
pub(crate) async fn run(
    mut signals: mpsc::UnboundedReceiver<Event>,
    requester: Requester,
    events: mpsc::UnboundedSender<RoomEvent>,
) {
    let known: Known = Arc::default();
    let mut pc: Option<Pc> = None;
    while let Some(event) = signals.recv().await {
        match event {
            Event::SubscriptionStarted { participant_id, key, tracks } => {
                let mut known = known.lock().unwrap_or_else(|p| p.into_inner());
                for t in tracks {
                    known.insert(
                        t.track_id.clone(),
                        RemoteTrackInfo {
                            publisher: participant_id.clone(),
                            key: key.clone(),
                            track_id: t.track_id,
                            kind: t.kind,
                        },
                    );
                }
            }
            Event::SubscriptionEnded { reason: SubscriptionEndReason::MediaFailed, .. } => {
                // The server dropped the connection; the next subscription starts a new one.
                if let Some(old) = pc.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), old.pc.close()).await;
                }
            }
            Event::SubscriberOffer { sdp } => {
                if pc.is_none() {
                    let (tracks_tx, tracks_rx) = mpsc::unbounded_channel();
                    match Pc::new(Some(tracks_tx)).await {
                        Ok(new) => {
                            tokio::spawn(accept_tracks(tracks_rx, known.clone(), events.clone()));
                            pc = Some(new);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot create the subscriber connection");
                            continue;
                        }
                    }
                }
                let Some(current) = pc.as_mut() else { continue };
                match answer(current, sdp).await {
                    Ok(sdp) => {
                        if let Err(e) = requester.request(Request::SubscriberAnswer { sdp }).await {
                            tracing::warn!(error = %e, "the server refused the subscriber answer");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot answer the subscriber offer"),
                }
            }
            _ => {}
        }
    }
    if let Some(pc) = pc {
        let _ = tokio::time::timeout(Duration::from_secs(2), pc.pc.close()).await;
    }
}

async fn answer(pc: &mut Pc, offer: String) -> crate::Result<String> {
    let offer = RTCSessionDescription::offer(offer).map_err(media_error)?;
    pc.pc.set_remote_description(offer).await.map_err(media_error)?;
    let answer = pc.pc.create_answer(None).await.map_err(media_error)?;
    pc.pc.set_local_description(answer).await.map_err(media_error)?;
    pc.gathered_local_sdp().await
}

async fn accept_tracks(
    mut tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    known: Known,
    events: mpsc::UnboundedSender<RoomEvent>,
) {
    while let Some(track) = tracks.recv().await {
        let track_id = TrackId(track.track_id().await.to_string());
        let info = known.lock().unwrap_or_else(|p| p.into_inner()).get(&track_id).cloned();
        let Some(info) = info else {
            tracing::warn!(%track_id, "a track arrived that no subscription announced");
            continue;
        };
        let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
        let codec = track.codec(ssrc).await.map(|c| c.mime_type).unwrap_or_default();
        let (tx, frames) = mpsc::channel(FRAME_QUEUE);
        let kind = info.kind;
        tokio::spawn(read_frames(track.clone(), codec.clone(), kind, tx));
        let remote = RemoteTrack { info, codec, frames, track, ssrc };
        let _ = events.send(RoomEvent::TrackSubscribed { track: Box::new(remote) });
    }
}

/// Reassembles frames from RTP until the track ends.
async fn read_frames(track: Arc<dyn TrackRemote>, codec: String, kind: TrackKind, tx: mpsc::Sender<EncodedFrame>) {
    let lower = codec.to_ascii_lowercase();
    match (kind, lower.as_str()) {
        (_, "video/vp8") => pump(track, SampleBuilder::new(256, Vp8Packet::default(), 90_000), tx).await,
        (_, "video/h264") => pump(track, SampleBuilder::new(256, H264Packet::default(), 90_000), tx).await,
        (_, "audio/opus") => pump(track, SampleBuilder::new(16, OpusPacket, 48_000), tx).await,
        _ => tracing::warn!(%codec, "cannot depacketize this codec"),
    }
}

async fn pump<D: Depacketizer>(
    track: Arc<dyn TrackRemote>,
    mut builder: SampleBuilder<D>,
    tx: mpsc::Sender<EncodedFrame>,
) {
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let now = Instant::now();
                builder.push(now, packet);
                while let Some((sample, ts)) = builder.pop_with_timestamp(now) {
                    let frame = EncodedFrame {
                        data: sample.data.to_vec(),
                        rtp_timestamp: ts,
                        received_at: now,
                        lost_before: sample.prev_dropped_packets,
                    };
                    if tx.try_send(frame).is_err() && tx.is_closed() {
                        return;
                    }
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}
