//! The publisher connection: local tracks, the offers that announce them, and writing
//! encoded frames.
//!
//! A [`LocalStream`] and its [`LocalTrack`]s outlive the connection they are sent on.
//! When the connection is replaced (after the server gave up on it, or after a fresh
//! join) the streams are published again on the new one and each track is *rebound*:
//! the app keeps writing to the same handles, frames written while no connection
//! carries the track are dropped, as a live source's frames would be, and the track's
//! [`TrackInfo`] (with the server's new track id) is current again once republished.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use confer_proto::signal::{Reply, Request};
use confer_proto::track::{PublishTrack, Quality, StreamInfo, TrackId, TrackInfo, TrackKind};
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use rtc::sdp::extmap::{SDES_MID_URI, SDES_RTP_STREAM_ID_URI};
use rtc::shared::marshal::{Marshal, MarshalSize};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;

use super::feedback::{Feedback, SendRate};
use super::levels::AudioLevels;
use super::{media_error, mid_of_track, Codec, MediaConfig, Pc, PcTaps, TrackOptions};
use crate::error::{ClientError, Result};
use crate::room::Requester;

/// The simulcast layers, lowest first, with their scale-down factors.
const LAYERS: [(Quality, u32); 3] = [(Quality::Low, 4), (Quality::Medium, 2), (Quality::High, 1)];

/// The label of the data channel every publisher connection opens first: it keeps an
/// application section in the offer (so data tracks need no renegotiation, and an offer
/// always has a bundle group).
const CONTROL_CHANNEL: &str = "confer";

/// A published stream: write each track's encoded frames to it. Cheap to clone.
#[derive(Clone)]
pub struct LocalStream {
    shared: Arc<StreamShared>,
}

struct StreamShared {
    key: String,
    tracks: Vec<LocalTrack>,
    /// When it was last published (or republished).
    published_at: Mutex<Instant>,
}

impl std::fmt::Debug for LocalStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStream").field("key", &self.shared.key).finish()
    }
}

impl LocalStream {
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// The stream as the others see it (track ids change when it is republished).
    pub fn info(&self) -> StreamInfo {
        StreamInfo {
            key: self.shared.key.clone(),
            tracks: self.shared.tracks.iter().filter_map(|t| t.info()).collect(),
        }
    }

    pub fn tracks(&self) -> &[LocalTrack] {
        &self.shared.tracks
    }

    /// The first track of this kind.
    pub fn track(&self, kind: TrackKind) -> Option<&LocalTrack> {
        self.shared.tracks.iter().find(|t| t.kind() == kind)
    }

    pub(crate) fn published_at(&self) -> Instant {
        *self.shared.published_at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One published track. Cheap to clone.
#[derive(Clone)]
pub struct LocalTrack {
    shared: Arc<TrackShared>,
}

struct TrackShared {
    options: TrackOptions,
    levels: AudioLevels,
    /// Per layer (one `None` entry without simulcast): a keyframe was asked for.
    keyframe_wanted: Vec<(Option<Quality>, AtomicBool)>,
    /// Per layer: the share of its nominal bitrate the path carries.
    send_rates: Mutex<Vec<(Option<Quality>, SendRate)>>,
    muted: AtomicBool,
    binding: RwLock<Option<Arc<Binding>>>,
}

/// How a track is carried on the current connection.
struct Binding {
    info: TrackInfo,
    carrier: Carrier,
}

enum Carrier {
    Media {
        track: Arc<TrackLocalStaticSample>,
        mid: String,
        /// (layer, SSRC): one entry with `None` without simulcast.
        encodings: Vec<(Option<Quality>, u32)>,
    },
    Data(Arc<dyn DataChannel>),
}

impl LocalTrack {
    fn new(options: TrackOptions, levels: AudioLevels) -> Self {
        let layers: Vec<Option<Quality>> = if options.simulcast && options.kind == TrackKind::Video {
            LAYERS.iter().map(|(q, _)| Some(*q)).collect()
        } else {
            vec![None]
        };
        let muted = AtomicBool::new(options.muted);
        Self {
            shared: Arc::new(TrackShared {
                send_rates: Mutex::new(layers.iter().map(|l| (*l, SendRate::default())).collect()),
                keyframe_wanted: layers.into_iter().map(|l| (l, AtomicBool::new(false))).collect(),
                options,
                levels,
                muted,
                binding: RwLock::new(None),
            }),
        }
    }

    pub fn kind(&self) -> TrackKind {
        self.shared.options.kind
    }

    pub fn codec(&self) -> Option<Codec> {
        self.shared.options.codec
    }

    /// The track as the others see it; `None` while it is being (re)published.
    pub fn info(&self) -> Option<TrackInfo> {
        self.binding().map(|b| {
            let mut info = b.info.clone();
            info.muted = self.shared.muted.load(Ordering::Relaxed);
            info
        })
    }

    pub fn id(&self) -> Option<TrackId> {
        self.binding().map(|b| b.info.id.clone())
    }

    fn binding(&self) -> Option<Arc<Binding>> {
        self.shared.binding.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn bind(&self, binding: Option<Binding>) {
        *self.shared.binding.write().unwrap_or_else(|p| p.into_inner()) = binding.map(Arc::new);
    }

    /// Writes one encoded frame (all of a frame's packets at once), lasting `duration`.
    /// With simulcast, `layer` says which layer it belongs to; otherwise it is ignored.
    /// `audio_level` is the RFC 6464 level in -dBov (0 loudest, 127 silence), sent in
    /// the audio-level header extension so that the server can tell who speaks. While
    /// the track is not published (the connection is being replaced) frames are dropped,
    /// and the next one of a video track is a keyframe.
    pub async fn write(
        &self,
        layer: Option<Quality>,
        data: Vec<u8>,
        duration: Duration,
        audio_level: Option<u8>,
    ) -> Result<()> {
        let Some(binding) = self.binding() else {
            self.frame_lost(layer);
            return Ok(());
        };
        let Carrier::Media { track, mid, encodings } = &binding.carrier else {
            return Err(ClientError::Media { detail: "a data track takes messages; use send".into() });
        };
        let (layer, ssrc) = match encodings.as_slice() {
            [(None, ssrc)] => (None, *ssrc),
            list => list.iter().find(|(q, _)| *q == layer).copied().ok_or_else(|| ClientError::Media {
                detail: format!("track {} has no simulcast layer {layer:?}", binding.info.id),
            })?,
        };
        let sample = Sample { data: data.into(), duration, ..Sample::new(Instant::now()) };
        let codec = self.shared.options.codec.unwrap_or(Codec::Opus);
        // The SFU binds incoming packets to media sections and layers by these header
        // extensions (webrtc-rs announces no SSRCs for simulcast).
        let mut writer = track.sample_writer(ssrc, codec.payload_type()).with_extension(HeaderExtension::Custom {
            uri: SDES_MID_URI.into(),
            extension: Box::new(RawExtension(mid.clone().into_bytes())),
        });
        if let Some(q) = layer {
            writer = writer.with_extension(HeaderExtension::Custom {
                uri: SDES_RTP_STREAM_ID_URI.into(),
                extension: Box::new(RawExtension(q.rid().as_bytes().to_vec())),
            });
        }
        if let Some(level) = audio_level {
            self.shared.levels.local(binding.info.id.clone(), level);
            writer = writer.with_audio_level(AudioLevelExtension { level: level.min(127), voice: level < 60 });
        }
        let written = writer.write_sample(&sample).await.map_err(media_error);
        if written.is_err() {
            self.frame_lost(layer);
        }
        written
    }

    /// A frame that did not leave (not published right now, or the write failed): its
    /// receivers cannot tell, as it had no sequence numbers yet, and their decoders
    /// would build the next frames on a picture they never got. So the next frame of
    /// this layer is a keyframe.
    fn frame_lost(&self, layer: Option<Quality>) {
        if self.kind() == TrackKind::Video {
            self.request_keyframe(if self.shared.keyframe_wanted.len() > 1 { layer } else { None });
        }
    }

    /// Sends one message on a data track (binary). Dropped while not published.
    pub async fn send(&self, data: &[u8]) -> Result<()> {
        let Some(binding) = self.binding() else { return Ok(()) };
        let Carrier::Data(channel) = &binding.carrier else {
            return Err(ClientError::Media { detail: "only data tracks take messages".into() });
        };
        channel.send(BytesMut::from(data)).await.map(|_| ()).map_err(media_error)
    }

    /// Whether the receivers asked for a keyframe of `layer` since the last call: the
    /// encoder should make its next frame of that layer a keyframe.
    pub fn take_keyframe_request(&self, layer: Option<Quality>) -> bool {
        self.shared
            .keyframe_wanted
            .iter()
            .find(|(l, _)| *l == layer || self.shared.keyframe_wanted.len() == 1)
            .is_some_and(|(_, flag)| flag.swap(false, Ordering::Relaxed))
    }

    /// The share (0.15 to 1) of its nominal bitrate the encoder of `layer` should use
    /// now: it falls while the server reports heavy loss of that layer's packets and
    /// climbs back while the path is clean. Encoders apply it to their target bitrate.
    pub fn send_rate_share(&self, layer: Option<Quality>) -> f32 {
        let rates = self.shared.send_rates.lock().unwrap_or_else(|p| p.into_inner());
        rates.iter().find(|(l, _)| *l == layer || rates.len() == 1).map_or(1.0, |(_, r)| r.share())
    }

    fn reported_loss(&self, layer: Option<Quality>, fraction: f32) {
        let mut rates = self.shared.send_rates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, r)) = rates.iter_mut().find(|(l, _)| *l == layer) {
            let before = r.share();
            r.on_loss(fraction);
            if (r.share() - before).abs() > 0.01 {
                tracing::debug!(track = ?self.id(), ?layer, fraction, share = r.share(), "send rate changed");
            }
        }
    }

    /// The simulcast layers this track expects, with each one's scale-down factor
    /// (4, 2, 1), lowest first; a single `(None, 1)` without simulcast.
    pub fn layers(&self) -> Vec<(Option<Quality>, u32)> {
        if self.shared.keyframe_wanted.len() == 1 {
            return vec![(None, 1)];
        }
        LAYERS.iter().map(|(q, f)| (Some(*q), *f)).collect()
    }

    /// Whether the track is muted ([`crate::Room::set_track_muted`]): what feeds it
    /// should stop sending (a muted microphone must not leave the machine).
    pub fn is_muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    pub(crate) fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    fn request_keyframe(&self, layer: Option<Quality>) {
        if let Some((_, flag)) = self.shared.keyframe_wanted.iter().find(|(l, _)| *l == layer) {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// A header extension value written as it is (the mid and rid extensions are strings).
struct RawExtension(Vec<u8>);

impl MarshalSize for RawExtension {
    fn marshal_size(&self) -> usize {
        self.0.len()
    }
}

impl Marshal for RawExtension {
    fn marshal_to(&self, buf: &mut [u8]) -> rtc::shared::error::Result<usize> {
        let n = self.0.len();
        if buf.len() < n {
            return Err(rtc::shared::error::Error::ErrBufferTooSmall);
        }
        buf[..n].copy_from_slice(&self.0);
        Ok(n)
    }
}

/// Which local track (and layer) sends on each SSRC, for routing keyframe requests.
type SsrcMap = Arc<Mutex<HashMap<u32, (LocalTrack, Option<Quality>)>>>;

/// One publisher connection.
struct Connection {
    pc: Pc,
    ssrcs: SsrcMap,
}

/// Everything published in a room, and the connection it goes out on.
pub(crate) struct Publisher {
    config: MediaConfig,
    conn: Option<Connection>,
    streams: Vec<LocalStream>,
    levels: AudioLevels,
}

impl Publisher {
    pub(crate) fn new(config: MediaConfig, levels: AudioLevels) -> Self {
        Self { config, conn: None, streams: Vec::new(), levels }
    }

    pub(crate) fn streams(&self) -> &[LocalStream] {
        &self.streams
    }

    pub(crate) fn stream(&self, key: &str) -> Option<&LocalStream> {
        self.streams.iter().find(|s| s.key() == key)
    }

    /// Statistics of the sent streams, and the round-trip time.
    pub(crate) async fn stats(&self) -> (Vec<super::stats::StreamStats>, Option<f64>) {
        let Some(conn) = &self.conn else { return (Vec::new(), None) };
        let tracks: HashMap<u32, TrackId> = conn
            .ssrcs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(ssrc, (track, _))| track.id().map(|id| (*ssrc, id)))
            .collect();
        super::stats::sent(&conn.pc.pc, &tracks).await
    }

    /// Whether the connection exists and has been down (failed, disconnected) for now.
    pub(crate) fn is_down(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.pc.is_down())
    }

    /// See [`Pc::no_path`].
    pub(crate) fn no_path(&self, limit: Duration) -> Option<ClientError> {
        self.conn.as_ref().and_then(|c| c.pc.no_path(limit))
    }

    pub(crate) async fn path(&self) -> Option<super::stats::CandidatePath> {
        match &self.conn {
            Some(c) => c.pc.selected_path().await,
            None => None,
        }
    }

    pub(crate) async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.pc.close().await;
        }
        for s in &self.streams {
            for t in s.tracks() {
                t.bind(None);
            }
        }
    }

    async fn connection(&mut self) -> Result<&mut Connection> {
        if self.conn.as_ref().is_some_and(|c| {
            matches!(
                *c.pc.state.borrow(),
                webrtc::peer_connection::RTCPeerConnectionState::Failed
                    | webrtc::peer_connection::RTCPeerConnectionState::Closed
            )
        }) {
            self.close().await;
        }
        if self.conn.is_none() {
            let (feedback, requests) = mpsc::unbounded_channel();
            let pc = Pc::new(self.config.clone(), PcTaps { feedback: Some(feedback), ..PcTaps::default() }).await?;
            // Opened before the first offer, so that the offer has an application section.
            pc.pc.create_data_channel(CONTROL_CHANNEL, None).await.map_err(media_error)?;
            let ssrcs: SsrcMap = Arc::default();
            tokio::spawn(route_feedback(requests, ssrcs.clone()));
            self.conn = Some(Connection { pc, ssrcs });
        }
        Ok(self.conn.as_mut().expect("set above"))
    }

    /// Publishes a new stream of `tracks` under `key`.
    pub(crate) async fn publish(
        &mut self,
        requester: &Requester,
        key: &str,
        tracks: Vec<TrackOptions>,
    ) -> Result<LocalStream> {
        if self.stream(key).is_some() {
            return Err(ClientError::Server(confer_proto::ErrorCode::DuplicateStreamKey.into()));
        }
        let stream = LocalStream {
            shared: Arc::new(StreamShared {
                key: key.to_owned(),
                tracks: tracks.into_iter().map(|t| LocalTrack::new(t, self.levels.clone())).collect(),
                published_at: Mutex::new(Instant::now()),
            }),
        };
        self.send_stream(requester, &stream).await?;
        self.streams.push(stream.clone());
        Ok(stream)
    }

    /// Forgets a stream (after the server confirmed `unpublish`).
    pub(crate) fn forget(&mut self, key: &str) {
        if let Some(pos) = self.streams.iter().position(|s| s.key() == key) {
            let stream = self.streams.remove(pos);
            for t in stream.tracks() {
                t.bind(None);
            }
        }
    }

    /// Publishes every stream again on a new connection (the old one is gone, or the
    /// participant joined afresh). A stream the server refuses now is dropped.
    pub(crate) async fn republish(&mut self, requester: &Requester) -> Result<()> {
        self.close().await;
        let mut first_error = None;
        for stream in self.streams.clone() {
            if let Err(e) = self.send_stream(requester, &stream).await {
                tracing::warn!(key = stream.key(), error = %e, "cannot publish the stream again");
                self.forget(stream.key());
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Restarts ICE on the connection (the network path changed or broke). Fails if the
    /// server no longer has the connection; then [`Publisher::republish`].
    pub(crate) async fn restart_ice(&mut self, requester: &Requester) -> Result<()> {
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        if let Err(e) = conn.pc.refresh_ice_servers().await {
            tracing::warn!(error = %e, "cannot take the renewed relays; restarting with the old ones");
        }
        let offer = conn.pc.pc.create_offer(Some(RTCOfferOptions { ice_restart: true })).await.map_err(media_error)?;
        conn.pc.pc.set_local_description(offer).await.map_err(media_error)?;
        let sdp = conn.pc.local_sdp().await?;
        let Reply::PublisherAnswer { sdp: answer } = requester.request(Request::PublisherOffer { sdp }).await? else {
            return Err(ClientError::Protocol { detail: "unexpected answer to publisher_offer".into() });
        };
        conn.pc
            .pc
            .set_remote_description(RTCSessionDescription::answer(answer.clone()).map_err(media_error)?)
            .await
            .map_err(media_error)?;
        conn.pc.add_tcp_candidates(&answer).await;
        tracing::info!("publisher connection restarted ICE");
        Ok(())
    }

    /// Adds a stream's tracks to the connection, offers them and binds them.
    async fn send_stream(&mut self, requester: &Requester, stream: &LocalStream) -> Result<()> {
        let key = stream.key().to_owned();
        let conn = self.connection().await?;
        enum Added {
            Media { label: String, track: Arc<TrackLocalStaticSample>, encodings: Vec<(Option<Quality>, u32)> },
            Data { label: String, channel: Arc<dyn DataChannel> },
        }
        let mut added = Vec::new();
        for (i, local) in stream.tracks().iter().enumerate() {
            let options = &local.shared.options;
            let label = format!("{key}-{i}-{:08x}", rand::random::<u32>());
            let Some(codec) = options.codec.filter(|_| options.kind != TrackKind::Data) else {
                let init = RTCDataChannelInit { ordered: options.ordered, ..Default::default() };
                let channel = conn.pc.pc.create_data_channel(&label, Some(init)).await.map_err(media_error)?;
                added.push(Added::Data { label, channel });
                continue;
            };
            let kind = if codec.kind() == TrackKind::Audio { RtpCodecKind::Audio } else { RtpCodecKind::Video };
            let encodings: Vec<(Option<Quality>, u32)> =
                local.shared.keyframe_wanted.iter().map(|(q, _)| (*q, rand::random::<u32>() | 1)).collect();
            let params = encodings
                .iter()
                .map(|(q, ssrc)| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: q.map(|q| q.rid().to_owned()).unwrap_or_default(),
                        ssrc: Some(*ssrc),
                        ..Default::default()
                    },
                    codec: codec.rtp_codec(),
                    ..Default::default()
                })
                .collect();
            let track = Arc::new(
                TrackLocalStaticSample::new(
                    Instant::now(),
                    MediaStreamTrack::new(key.clone(), label.clone(), label.clone(), kind, params),
                )
                .map_err(media_error)?,
            );
            conn.pc.pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await.map_err(media_error)?;
            added.push(Added::Media { label, track, encodings });
        }
        let offer = conn.pc.pc.create_offer(None).await.map_err(media_error)?;
        conn.pc.pc.set_local_description(offer).await.map_err(media_error)?;
        let sdp = conn.pc.local_sdp().await?;
        let mut publish_tracks = Vec::new();
        for (a, local) in added.iter().zip(stream.tracks()) {
            let options = &local.shared.options;
            let mid = match a {
                Added::Media { label, .. } => mid_of_track(&sdp, label)
                    .ok_or_else(|| media_error(format!("the offer has no media section for track {label}")))?,
                Added::Data { label, .. } => label.clone(),
            };
            publish_tracks.push(PublishTrack {
                mid,
                source: options.source,
                kind: options.kind,
                simulcast: local.shared.keyframe_wanted.len() > 1,
                muted: local.shared.muted.load(Ordering::Relaxed),
            });
        }
        let reply = requester.request(Request::Publish { key: key.clone(), tracks: publish_tracks, sdp }).await?;
        let Reply::Published { stream: info, sdp: answer } = reply else {
            return Err(ClientError::Protocol { detail: format!("unexpected answer to publish: {reply:?}") });
        };
        conn.pc
            .pc
            .set_remote_description(RTCSessionDescription::answer(answer.clone()).map_err(media_error)?)
            .await
            .map_err(media_error)?;
        conn.pc.add_tcp_candidates(&answer).await;
        let local_sdp = conn.pc.pc.local_description().await.map(|d| d.sdp).unwrap_or_default();
        let mut ssrcs = conn.ssrcs.lock().unwrap_or_else(|p| p.into_inner());
        for ((a, local), info) in added.into_iter().zip(stream.tracks()).zip(info.tracks) {
            let carrier = match a {
                Added::Media { label, track, encodings } => {
                    for (q, ssrc) in &encodings {
                        ssrcs.insert(*ssrc, (local.clone(), *q));
                    }
                    let mid = mid_of_track(&local_sdp, &label).unwrap_or_default();
                    Carrier::Media { track, mid, encodings }
                }
                Added::Data { channel, .. } => Carrier::Data(channel),
            };
            local.bind(Some(Binding { info, carrier }));
            // A new receiver needs a keyframe to start from.
            for (q, _) in &local.shared.keyframe_wanted {
                local.request_keyframe(*q);
            }
        }
        *stream.shared.published_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }
}

/// Hands each receiver feedback to the track and layer its SSRC names: keyframe
/// requests raise the layer's flag, loss reports move its send rate.
async fn route_feedback(mut requests: mpsc::UnboundedReceiver<Feedback>, ssrcs: SsrcMap) {
    while let Some(feedback) = requests.recv().await {
        let ssrc = match feedback {
            Feedback::Keyframe { ssrc } | Feedback::Loss { ssrc, .. } => ssrc,
        };
        let target = ssrcs.lock().unwrap_or_else(|p| p.into_inner()).get(&ssrc).cloned();
        match (target, feedback) {
            (Some((track, layer)), Feedback::Keyframe { .. }) => track.request_keyframe(layer),
            (Some((track, layer)), Feedback::Loss { fraction, .. }) => track.reported_loss(layer, fraction),
            (None, _) => tracing::debug!(ssrc, "feedback for an unknown SSRC"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::levels::AudioLevels;
    use confer_proto::track::TrackSource;

    #[tokio::test]
    async fn a_video_frame_that_cannot_leave_makes_the_next_one_a_keyframe() {
        // Not published yet (as while the connection is replaced): the frame is dropped.
        let camera = LocalTrack::new(
            TrackOptions::new(TrackSource::Camera, Codec::Vp8).with_simulcast(true),
            AudioLevels::default(),
        );
        camera.write(Some(Quality::Medium), vec![1, 2, 3], Duration::from_millis(33), None).await.unwrap();
        assert!(camera.take_keyframe_request(Some(Quality::Medium)), "the dropped layer starts over");
        assert!(!camera.take_keyframe_request(Some(Quality::Low)), "the others go on");
        assert!(!camera.take_keyframe_request(Some(Quality::Medium)), "asked once");

        let plain = LocalTrack::new(TrackOptions::new(TrackSource::Camera, Codec::Vp8), AudioLevels::default());
        plain.write(Some(Quality::High), vec![1], Duration::from_millis(33), None).await.unwrap();
        assert!(plain.take_keyframe_request(None), "without simulcast the layer is ignored");
    }
}
