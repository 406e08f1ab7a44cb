//! The publisher connection: local tracks, the offers that announce them, and writing
//! encoded frames.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_proto::signal::{Reply, Request};
use confer_proto::track::{PublishTrack, Quality, StreamInfo, TrackInfo, TrackKind};
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;

use super::{media_error, mid_of_track, Codec, Pc, TrackOptions};
use crate::error::{ClientError, Result};
use crate::room::Requester;

/// The simulcast layers, lowest first, with their scale-down factors.
const LAYERS: [(Quality, u32); 3] = [(Quality::Low, 4), (Quality::Medium, 2), (Quality::High, 1)];

/// A published stream: write each track's encoded frames to it.
pub struct LocalStream {
    pub info: StreamInfo,
    pub tracks: Vec<LocalTrack>,
}

impl LocalStream {
    pub fn track(&self, kind: TrackKind) -> Option<&LocalTrack> {
        self.tracks.iter().find(|t| t.info.kind == kind)
    }
}

/// One published track.
pub struct LocalTrack {
    pub info: TrackInfo,
    pub codec: Codec,
    track: Arc<TrackLocalStaticSample>,
    /// (layer, SSRC): one entry with `None` without simulcast.
    encodings: Vec<(Option<Quality>, u32)>,
}

impl LocalTrack {
    /// Writes one encoded frame (all of a frame's packets at once), lasting `duration`.
    /// With simulcast, `layer` says which layer it belongs to; otherwise it is ignored.
    /// `audio_level` is the RFC 6464 level in -dBov (0 loudest, 127 silence), sent in
    /// the audio-level header extension so that the server can tell who speaks.
    pub async fn write(
        &self,
        layer: Option<Quality>,
        data: Vec<u8>,
        duration: Duration,
        audio_level: Option<u8>,
    ) -> Result<()> {
        let ssrc = match self.encodings.as_slice() {
            [(None, ssrc)] => *ssrc,
            list => list.iter().find(|(q, _)| *q == layer).map(|(_, s)| *s).ok_or_else(|| ClientError::Media {
                detail: format!("track {} has no simulcast layer {layer:?}", self.info.id),
            })?,
        };
        let sample = Sample { data: data.into(), duration, ..Sample::new(Instant::now()) };
        let mut writer = self.track.sample_writer(ssrc, self.codec.payload_type());
        if let Some(level) = audio_level {
            writer = writer.with_audio_level(AudioLevelExtension { level: level.min(127), voice: level < 60 });
        }
        writer.write_sample(&sample).await.map_err(media_error)
    }

    /// The simulcast layers this track expects, with each one's scale-down factor
    /// (4, 2, 1), lowest first; a single `(None, 1)` without simulcast.
    pub fn layers(&self) -> Vec<(Option<Quality>, u32)> {
        if self.encodings.len() == 1 {
            return vec![(None, 1)];
        }
        LAYERS.iter().map(|(q, f)| (Some(*q), *f)).collect()
    }
}

/// The publisher connection of one room.
pub(crate) struct Publisher {
    pc: Pc,
}

impl Publisher {
    pub(crate) async fn new() -> Result<Self> {
        Ok(Self { pc: Pc::new(None).await? })
    }

    /// Whether the connection still works (a failed one is replaced on the next publish).
    pub(crate) fn usable(&self) -> bool {
        !matches!(
            *self.pc.state.borrow(),
            webrtc::peer_connection::RTCPeerConnectionState::Failed
                | webrtc::peer_connection::RTCPeerConnectionState::Closed
        )
    }

    pub(crate) async fn close(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.pc.pc.close()).await;
    }

    /// Adds the tracks, offers them to the server and applies its answer.
    pub(crate) async fn publish(
        &mut self,
        requester: &Requester,
        key: &str,
        tracks: Vec<TrackOptions>,
    ) -> Result<LocalStream> {
        let mut added = Vec::new();
        for (i, t) in tracks.iter().enumerate() {
            let label = format!("{key}-{i}-{}", rand_suffix());
            let kind = if t.codec.kind() == TrackKind::Audio { RtpCodecKind::Audio } else { RtpCodecKind::Video };
            let simulcast = t.simulcast && t.codec.kind() == TrackKind::Video;
            let encodings: Vec<(Option<Quality>, u32)> = if simulcast {
                LAYERS.iter().map(|(q, _)| (Some(*q), rand_ssrc())).collect()
            } else {
                vec![(None, rand_ssrc())]
            };
            let params = encodings
                .iter()
                .map(|(q, ssrc)| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: q.map(|q| q.rid().to_owned()).unwrap_or_default(),
                        ssrc: Some(*ssrc),
                        ..Default::default()
                    },
                    codec: t.codec.rtp_codec(),
                    ..Default::default()
                })
                .collect();
            let track = Arc::new(
                TrackLocalStaticSample::new(
                    Instant::now(),
                    MediaStreamTrack::new(key.to_owned(), label.clone(), label.clone(), kind, params),
                )
                .map_err(media_error)?,
            );
            self.pc.pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await.map_err(media_error)?;
            added.push((label, track, encodings, t.clone()));
        }
        let offer = self.pc.pc.create_offer(None).await.map_err(media_error)?;
        self.pc.pc.set_local_description(offer).await.map_err(media_error)?;
        let sdp = self.pc.gathered_local_sdp().await?;
        let mut publish_tracks = Vec::new();
        for (label, _, encodings, t) in &added {
            let mid = mid_of_track(&sdp, label)
                .ok_or_else(|| media_error(format!("the offer has no media section for track {label}")))?;
            publish_tracks.push(PublishTrack {
                mid,
                source: Some(t.source),
                kind: t.codec.kind(),
                simulcast: encodings.len() > 1,
                muted: t.muted,
            });
        }
        let reply = requester.request(Request::Publish { key: key.to_owned(), tracks: publish_tracks, sdp }).await?;
        let Reply::Published { stream, sdp: answer } = reply else {
            return Err(ClientError::Protocol { detail: format!("unexpected answer to publish: {reply:?}") });
        };
        let answer = RTCSessionDescription::answer(answer).map_err(media_error)?;
        self.pc.pc.set_remote_description(answer).await.map_err(media_error)?;
        let tracks = added
            .into_iter()
            .zip(stream.tracks.iter().cloned())
            .map(|((_, track, encodings, t), info)| LocalTrack { info, codec: t.codec, track, encodings })
            .collect();
        Ok(LocalStream { info: stream, tracks })
    }
}

fn rand_ssrc() -> u32 {
    rand::random::<u32>() | 1
}

fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}
