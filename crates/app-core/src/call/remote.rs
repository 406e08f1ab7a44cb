//! The remote side of a call: subscriptions that follow what the view shows, and the
//! readers that decode video into the frame hub and play audio on the speaker.

use std::sync::Arc;

use confer_client::proto::track::{Quality, StreamInfo, SubscriptionOptions, TrackKind, TrackSource};
use confer_client::proto::ParticipantId;
use confer_client::RemoteTrack;
use confer_media::audio::RemoteAudio;
use confer_media::h264::H264Decoder;
use confer_media::vp8::Vp8Decoder;

use crate::publish::{unix_ms, MediaThread};

use super::{lock, tile_of, Inner};

impl Inner {
    /// Options for a remote stream as the view shows it now.
    pub(super) fn wanted(&self, participant: &ParticipantId, key: &str) -> SubscriptionOptions {
        let remote = lock(&self.remote);
        let want = remote.wants.get(&tile_of(participant, key));
        let screen = key == "screen";
        let quality = match want {
            _ if screen => Quality::High,
            Some(w) if w.large => Quality::High,
            Some(_) => Quality::Low,
            None => Quality::Medium,
        };
        SubscriptionOptions { audio: true, video: want.is_none_or(|w| w.visible), quality }
    }

    pub(super) async fn subscribe(&self, participant: &ParticipantId, stream: &StreamInfo) {
        let options = self.wanted(participant, &stream.key);
        let key = (participant.clone(), stream.key.clone());
        if lock(&self.remote).subscribed.contains_key(&key) {
            return;
        }
        match self.room.subscribe(participant, &stream.key, options).await {
            Ok(()) => {
                lock(&self.remote).subscribed.insert(key, options);
            }
            Err(e) => tracing::warn!(error = %e, %participant, key = stream.key, "subscribe failed"),
        }
    }

    /// Brings every subscription in line with what the view shows.
    pub(super) async fn apply_wants(&self) {
        let current: Vec<((ParticipantId, String), SubscriptionOptions)> =
            lock(&self.remote).subscribed.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for ((participant, key), options) in current {
            let wanted = self.wanted(&participant, &key);
            if wanted == options {
                continue;
            }
            match self.room.update_subscription(&participant, &key, wanted).await {
                Ok(()) => {
                    lock(&self.remote).subscribed.insert((participant.clone(), key.clone()), wanted);
                    if !wanted.video {
                        self.hub.remove(&tile_of(&participant, &key));
                    }
                }
                Err(e) => tracing::warn!(error = %e, %participant, key, "subscription change failed"),
            }
        }
    }

    pub(super) async fn watch_network(&self) {
        let state = self.room.state();
        let everyone = std::iter::once(&state.local).chain(&state.remote).map(|p| p.id.clone()).collect();
        if let Err(e) = self.room.set_network_metrics(everyone).await {
            tracing::debug!(error = %e, "network metrics not available");
        }
    }

    /// Decodes a remote track: video into its tile, audio into the speaker.
    pub(super) fn receive(self: &Arc<Self>, mut track: RemoteTrack) {
        let tile = tile_of(&track.info.publisher, &track.info.key);
        let id = track.info.track_id.to_string();
        let reader = match track.info.kind {
            TrackKind::Video => {
                let hub = self.hub.clone();
                let codec = track.codec.to_ascii_lowercase();
                MediaThread::spawn("decode-video", async move {
                    let mut decoder = match VideoDecoder::new(&codec) {
                        Some(d) => d,
                        None => {
                            tracing::warn!(codec, "cannot decode this video codec");
                            return;
                        }
                    };
                    while let Some(frame) = track.next_frame().await {
                        match decoder.decode(&frame.data) {
                            Ok(Some(picture)) => hub.publish(&tile, Arc::new(picture), unix_ms()),
                            Ok(None) => {}
                            Err(()) => track.request_keyframe().await,
                        }
                    }
                })
            }
            TrackKind::Audio => {
                let playback: Option<RemoteAudio> = self.speaker.as_ref().and_then(|s| s.add_stream().ok());
                MediaThread::spawn("receive-audio", async move {
                    while let Some(frame) = track.next_frame().await {
                        if let Some(p) = &playback {
                            p.push(frame.rtp_timestamp, frame.received_at, frame.data);
                        }
                    }
                })
            }
            TrackKind::Data => return,
        };
        lock(&self.remote).readers.insert(id, reader);
    }
}

pub(super) fn is_screen(stream: &StreamInfo) -> bool {
    stream.tracks.iter().any(|t| t.source == Some(TrackSource::ScreenShare))
}

enum VideoDecoder {
    Vp8(Box<Vp8Decoder>),
    H264(Box<H264Decoder>),
}

impl VideoDecoder {
    pub(super) fn new(codec: &str) -> Option<Self> {
        if codec.ends_with("vp8") {
            Vp8Decoder::new().ok().map(|d| Self::Vp8(Box::new(d)))
        } else if codec.ends_with("h264") {
            H264Decoder::new().ok().map(|d| Self::H264(Box::new(d)))
        } else {
            None
        }
    }

    pub(super) fn decode(&mut self, data: &[u8]) -> Result<Option<confer_media::I420Frame>, ()> {
        match self {
            Self::Vp8(d) => d.decode(data).map_err(|_| ()),
            Self::H264(d) => d.decode(data).map_err(|_| ()),
        }
    }
}
