//! The subscriber connection: answering the server's offers and turning incoming RTP
//! into whole encoded frames (and data-channel messages into messages).
//!
//! The media task ([`super::session`]) owns the [`Subscriber`] and hands it the events
//! that drive it: `subscription_started` names the tracks of the next offer (by mid, or
//! by data-channel label), `subscriber_offer` is answered, and `subscription_ended` ends
//! the tracks' frame streams. As tracks arrive, [`RoomEvent::TrackSubscribed`] carries a
//! [`RemoteTrack`] whose frames the app reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_proto::signal::Request;
use confer_proto::track::{SubscribedTrack, TrackId};
use confer_proto::ParticipantId;
use rtc::media::io::sample_builder::SampleBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::packetizer::Depacketizer;
use rtc::sdp::extmap::AUDIO_LEVEL_URI;
use rtc::shared::marshal::Unmarshal;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::PeerConnection;

use super::levels::AudioLevels;
use super::{media_error, MediaConfig, Pc, PcTaps, RemoteTrackInfo};
use crate::event::RoomEvent;
use crate::room::Requester;

/// Frames buffered per remote track before new ones are dropped (the reader is slow).
const FRAME_QUEUE: usize = 256;

/// One whole encoded frame of a remote track (or one message of a data track).
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    /// The RTP timestamp (90 kHz for video, 48 kHz for Opus; 0 for data).
    pub rtp_timestamp: u32,
    /// When its last packet arrived.
    pub received_at: Instant,
    /// Packets lost just before this frame that retransmission did not recover.
    pub lost_before: u16,
    /// Audio: the sender's RFC 6464 level in -dBov (0 loudest, 127 silence).
    pub audio_level: Option<u8>,
}

/// A track being received.
pub struct RemoteTrack {
    pub info: RemoteTrackInfo,
    /// The codec's MIME type (`video/VP8`, `audio/opus`; `data` for a data track).
    pub codec: String,
    frames: mpsc::Receiver<EncodedFrame>,
    source: Source,
}

enum Source {
    Rtp { track: Arc<dyn TrackRemote>, ssrc: u32 },
    Data,
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack").field("info", &self.info).field("codec", &self.codec).finish()
    }
}

impl RemoteTrack {
    /// The next frame (or message); `None` once the subscription has ended.
    pub async fn next_frame(&mut self) -> Option<EncodedFrame> {
        self.frames.recv().await
    }

    /// Asks the sender for a keyframe (after a decode error).
    pub async fn request_keyframe(&self) {
        let Source::Rtp { track, ssrc } = &self.source else { return };
        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: *ssrc };
        if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
            tracing::debug!(error = %e, "keyframe request failed");
        }
    }
}

/// What is known of the tracks subscribed to, by mid (media) or label (data).
#[derive(Default)]
struct Expected {
    by_mid: HashMap<String, RemoteTrackInfo>,
    /// The track each received SSRC carries, for statistics.
    by_ssrc: HashMap<u32, TrackId>,
    /// The reader task of each track that is being received.
    readers: HashMap<TrackId, AbortHandle>,
}

type Shared = Arc<Mutex<Expected>>;

/// The current subscriber connection, for the room handle's statistics.
#[derive(Clone, Default)]
pub(crate) struct SubscriberView(Arc<Mutex<Option<View>>>);

/// A connection and what is known of its tracks.
type View = (Arc<dyn PeerConnection>, Shared);

impl SubscriberView {
    fn set(&self, view: Option<View>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = view;
    }

    pub(crate) async fn stats(&self) -> (Vec<super::stats::StreamStats>, Option<f64>) {
        let view = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((pc, expected)) = view else { return (Vec::new(), None) };
        let tracks = lock(&expected).by_ssrc.clone();
        super::stats::received(&pc, &tracks).await
    }

    pub(crate) async fn path(&self) -> Option<super::stats::CandidatePath> {
        let view = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (pc, _) = view?;
        super::stats::selected_path(&pc).await
    }
}

/// Whether `offer` changes the ICE credentials of the connection (an ICE restart).
async fn is_ice_restart(pc: &Pc, offer: &str) -> bool {
    let ufrag = |sdp: &str| sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:").map(str::to_owned));
    match pc.pc.remote_description().await {
        Some(current) => ufrag(&current.sdp) != ufrag(offer),
        None => false,
    }
}

/// The subscriber connection of a room, created by the server's first offer.
pub(crate) struct Subscriber {
    config: MediaConfig,
    pc: Option<Pc>,
    expected: Shared,
    events: mpsc::UnboundedSender<RoomEvent>,
    levels: AudioLevels,
    view: SubscriberView,
}

impl Subscriber {
    pub(crate) fn new(
        config: MediaConfig,
        events: mpsc::UnboundedSender<RoomEvent>,
        levels: AudioLevels,
        view: SubscriberView,
    ) -> Self {
        Self { config, pc: None, expected: Arc::default(), events, levels, view }
    }

    pub(crate) fn exists(&self) -> bool {
        self.pc.is_some()
    }

    pub(crate) fn is_down(&self) -> bool {
        self.pc.as_ref().is_some_and(Pc::is_down)
    }

    /// A subscription's tracks will arrive on these media sections (or channels).
    pub(crate) fn expect(&self, publisher: &ParticipantId, key: &str, tracks: Vec<SubscribedTrack>) {
        let mut expected = lock(&self.expected);
        for t in tracks {
            let info = RemoteTrackInfo {
                publisher: publisher.clone(),
                key: key.to_owned(),
                track_id: t.track_id,
                kind: t.kind,
            };
            expected.by_mid.insert(t.mid, info);
        }
    }

    /// A subscription ended: its tracks' frame streams end.
    pub(crate) fn end(&self, publisher: &ParticipantId, key: &str) {
        let mut expected = lock(&self.expected);
        let ended: Vec<TrackId> = expected
            .by_mid
            .values()
            .filter(|i| &i.publisher == publisher && i.key == key)
            .map(|i| i.track_id.clone())
            .collect();
        expected.by_mid.retain(|_, i| !(&i.publisher == publisher && i.key == key));
        for id in ended {
            if let Some(reader) = expected.readers.remove(&id) {
                reader.abort();
            }
        }
    }

    /// Answers the server's offer (creating the connection on the first one).
    pub(crate) async fn answer(&mut self, offer: String, requester: &Requester) -> crate::Result<()> {
        if self.pc.is_none() {
            let (tracks_tx, tracks_rx) = mpsc::unbounded_channel();
            let (channels_tx, channels_rx) = mpsc::unbounded_channel();
            let taps = PcTaps { tracks: Some(tracks_tx), channels: Some(channels_tx), feedback: None };
            let pc = Pc::new(self.config.clone(), taps).await?;
            let receiving = Receiving {
                expected: self.expected.clone(),
                events: self.events.clone(),
                levels: self.levels.clone(),
                pc: pc.pc.clone(),
            };
            tokio::spawn(receiving.clone().accept_tracks(tracks_rx));
            tokio::spawn(receiving.accept_channels(channels_rx));
            self.view.set(Some((pc.pc.clone(), self.expected.clone())));
            self.pc = Some(pc);
        }
        let pc = self.pc.as_mut().expect("set above");
        if is_ice_restart(pc, &offer).await {
            if let Err(e) = pc.refresh_ice_servers().await {
                tracing::warn!(error = %e, "cannot take the renewed relays; restarting with the old ones");
            }
        }
        pc.pc
            .set_remote_description(RTCSessionDescription::offer(offer.clone()).map_err(media_error)?)
            .await
            .map_err(media_error)?;
        let answer = pc.pc.create_answer(None).await.map_err(media_error)?;
        pc.pc.set_local_description(answer).await.map_err(media_error)?;
        let sdp = pc.local_sdp().await?;
        requester.request(Request::SubscriberAnswer { sdp }).await?;
        pc.add_tcp_candidates(&offer).await;
        Ok(())
    }

    /// See [`Pc::no_path`].
    pub(crate) fn no_path(&self, limit: std::time::Duration) -> Option<crate::ClientError> {
        self.pc.as_ref().and_then(|pc| pc.no_path(limit))
    }

    /// Drops the connection (the server gave up on it, or the participant joined
    /// afresh); every track being received ends.
    pub(crate) async fn close(&mut self) {
        self.view.set(None);
        {
            let mut expected = lock(&self.expected);
            expected.by_mid.clear();
            expected.by_ssrc.clear();
            for (_, reader) in expected.readers.drain() {
                reader.abort();
            }
        }
        if let Some(pc) = self.pc.take() {
            pc.close().await;
        }
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Expected> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the tasks that receive on one connection share.
#[derive(Clone)]
struct Receiving {
    expected: Shared,
    events: mpsc::UnboundedSender<RoomEvent>,
    levels: AudioLevels,
    pc: Arc<dyn webrtc::peer_connection::PeerConnection>,
}

impl Receiving {
    async fn accept_tracks(self, mut tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>) {
        while let Some(track) = tracks.recv().await {
            let track_id = TrackId(track.track_id().await.to_string());
            let info = lock(&self.expected).by_mid.values().find(|i| i.track_id == track_id).cloned();
            let Some(info) = info else {
                tracing::warn!(%track_id, "a track arrived that no subscription announced");
                continue;
            };
            let handle = tokio::spawn(self.clone().receive(track.clone(), info.clone()));
            let ssrcs = track.ssrcs().await;
            let mut expected = lock(&self.expected);
            expected.readers.insert(info.track_id.clone(), handle.abort_handle());
            for s in ssrcs {
                expected.by_ssrc.insert(s, info.track_id.clone());
            }
        }
    }

    /// Announces a remote track once its first packet tells its codec (a media section
    /// offers several; the payload type says which one the publisher sends), then reads
    /// it until its subscription ends.
    async fn receive(self, track: Arc<dyn TrackRemote>, info: RemoteTrackInfo) {
        let first = loop {
            match track.poll().await {
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => break packet,
                Some(_) => continue,
                None => return,
            }
        };
        let ssrc = first.header.ssrc;
        let remote_sdp = self.pc.remote_description().await.map(|d| d.sdp).unwrap_or_default();
        let codec = match rtpmap_mime(&remote_sdp, info.kind, first.header.payload_type) {
            Some(mime) => mime,
            None => track.codec(ssrc).await.map(|c| c.mime_type).unwrap_or_default(),
        };
        let level_ext = extmap_id(&remote_sdp, AUDIO_LEVEL_URI);
        let (tx, frames) = mpsc::channel(FRAME_QUEUE);
        let reader = Reader { tx, level_ext, levels: self.levels.clone(), info: info.clone() };
        let remote =
            RemoteTrack { info, codec: codec.clone(), frames, source: Source::Rtp { track: track.clone(), ssrc } };
        let _ = self.events.send(RoomEvent::TrackSubscribed { track: Box::new(remote) });
        reader.read_rtp(track, codec, first).await;
    }

    async fn accept_channels(self, mut channels: mpsc::UnboundedReceiver<Arc<dyn DataChannel>>) {
        while let Some(channel) = channels.recv().await {
            let label = channel.label().await.unwrap_or_default();
            let info = lock(&self.expected).by_mid.get(&label).cloned();
            let Some(info) = info else {
                // The server's control channel, or a subscription that ended meanwhile.
                continue;
            };
            let (tx, frames) = mpsc::channel(FRAME_QUEUE);
            let reader = Reader { tx, level_ext: None, levels: self.levels.clone(), info: info.clone() };
            let handle = tokio::spawn(reader.read_messages(channel));
            lock(&self.expected).readers.insert(info.track_id.clone(), handle.abort_handle());
            let remote = RemoteTrack { info, codec: "data".into(), frames, source: Source::Data };
            let _ = self.events.send(RoomEvent::TrackSubscribed { track: Box::new(remote) });
        }
    }
}

/// Reads one remote track until its subscription ends.
struct Reader {
    tx: mpsc::Sender<EncodedFrame>,
    level_ext: Option<u8>,
    levels: AudioLevels,
    info: RemoteTrackInfo,
}

impl Reader {
    async fn read_rtp(self, track: Arc<dyn TrackRemote>, codec: String, first: rtc::rtp::Packet) {
        // A frame missing a packet waits this long for its retransmission (up to five
        // NACKs, `NACK_INTERVAL` apart), then is given up and a keyframe is asked for,
        // so one loss never stalls the frames behind it for long.
        let video_wait = Duration::from_millis(300);
        match codec.to_ascii_lowercase().as_str() {
            "video/vp8" => {
                let builder = SampleBuilder::new(512, Vp8Packet::default(), 90_000).with_max_time_delay(video_wait);
                self.pump(track, builder, Keyframes::Vp8, first).await
            }
            "video/h264" => {
                let builder = SampleBuilder::new(512, H264Packet::default(), 90_000).with_max_time_delay(video_wait);
                self.pump(track, builder, Keyframes::H264, first).await
            }
            "audio/opus" => self.pump_audio(track, first).await,
            _ => tracing::warn!(%codec, "cannot depacketize this codec"),
        }
    }

    /// Reassembles frames from RTP. Video starts at a keyframe, and after a frame whose
    /// packets could not all be recovered, waits for the next one (asking the sender
    /// for it): a frame decoded against a missing reference would show garbage without
    /// the decoder noticing.
    async fn pump<D: Depacketizer>(
        self,
        track: Arc<dyn TrackRemote>,
        mut builder: SampleBuilder<D>,
        keyframes: Keyframes,
        first: rtc::rtp::Packet,
    ) {
        let mut level = None;
        let mut waiting = true;
        let mut last_request: Option<Instant> = None;
        let ssrc = first.header.ssrc;
        let mut next = Some(first);
        while let Some(packet) = next_packet(&track, &mut next).await {
            if let Some(ext) = self.level_ext.and_then(|id| packet.header.get_extension(id)) {
                if let Ok(l) = AudioLevelExtension::unmarshal(&mut ext.clone()) {
                    level = Some(l.level);
                    self.levels.remote(&self.info, l.level);
                }
            }
            let now = Instant::now();
            builder.push(now, packet);
            while let Some((sample, ts)) = builder.pop_with_timestamp(now) {
                if sample.prev_dropped_packets > 0 {
                    waiting = true;
                }
                if waiting && keyframes.is_keyframe(&sample.data) {
                    waiting = false;
                }
                if waiting {
                    if last_request.is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL) {
                        last_request = Some(now);
                        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc };
                        if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
                            tracing::debug!(error = %e, "keyframe request failed");
                        }
                    }
                    continue;
                }
                let frame = EncodedFrame {
                    data: sample.data.to_vec(),
                    rtp_timestamp: ts,
                    received_at: now,
                    lost_before: sample.prev_dropped_packets,
                    audio_level: level,
                };
                match self.tx.try_send(frame) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    // The reader fell behind: the next frame would reference the one
                    // dropped here, so wait for a keyframe, as after a lost packet.
                    Err(mpsc::error::TrySendError::Full(_)) => waiting = true,
                }
            }
        }
    }

    /// Passes Opus packets on as they come: each is a whole frame, and the decoder
    /// conceals a lost one better than waiting for it would (a late packet is dropped).
    async fn pump_audio(self, track: Arc<dyn TrackRemote>, first: rtc::rtp::Packet) {
        let mut last_seq: Option<u16> = None;
        let mut next = Some(first);
        while let Some(packet) = next_packet(&track, &mut next).await {
            let seq = packet.header.sequence_number;
            let gap = last_seq.map_or(0, |last| seq.wrapping_sub(last).wrapping_sub(1));
            if gap >= 0x8000 {
                continue; // older than what was passed on already
            }
            last_seq = Some(seq);
            let mut level = None;
            if let Some(ext) = self.level_ext.and_then(|id| packet.header.get_extension(id)) {
                if let Ok(l) = AudioLevelExtension::unmarshal(&mut ext.clone()) {
                    level = Some(l.level);
                    self.levels.remote(&self.info, l.level);
                }
            }
            if packet.payload.is_empty() {
                continue;
            }
            let frame = EncodedFrame {
                data: packet.payload.to_vec(),
                rtp_timestamp: packet.header.timestamp,
                received_at: Instant::now(),
                lost_before: gap,
                audio_level: level,
            };
            if self.tx.try_send(frame).is_err() && self.tx.is_closed() {
                return;
            }
        }
    }

    async fn read_messages(self, channel: Arc<dyn DataChannel>) {
        while let Some(event) = channel.poll().await {
            match event {
                DataChannelEvent::OnMessage(m) => {
                    let frame = EncodedFrame {
                        data: m.data.to_vec(),
                        rtp_timestamp: 0,
                        received_at: Instant::now(),
                        lost_before: 0,
                        audio_level: None,
                    };
                    if self.tx.send(frame).await.is_err() {
                        return;
                    }
                }
                DataChannelEvent::OnClose => return,
                _ => {}
            }
        }
    }
}

/// The packet held back in `next`, else the track's next packet; `None` once it ends.
async fn next_packet(track: &Arc<dyn TrackRemote>, next: &mut Option<rtc::rtp::Packet>) -> Option<rtc::rtp::Packet> {
    if let Some(packet) = next.take() {
        return Some(packet);
    }
    loop {
        match track.poll().await? {
            TrackRemoteEvent::OnRtpPacket(packet) => return Some(packet),
            _ => continue,
        }
    }
}

/// The MIME type (`video/H264`) an SDP's `a=rtpmap` gives payload type `pt`, in a
/// media section of `kind`.
fn rtpmap_mime(sdp: &str, kind: confer_proto::track::TrackKind, pt: u8) -> Option<String> {
    let section = match kind {
        confer_proto::track::TrackKind::Audio => "audio",
        _ => "video",
    };
    let prefix = format!("a=rtpmap:{pt} ");
    let mut in_kind = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_kind = m.starts_with(section);
        } else if let Some(map) = line.strip_prefix(&prefix).filter(|_| in_kind) {
            let name = map.split('/').next()?;
            return Some(format!("{section}/{name}"));
        }
    }
    None
}

/// While waiting for a keyframe, ask for one at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// Telling keyframes from the rest, per video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyframes {
    Vp8,
    H264,
}

impl Keyframes {
    /// Whether a whole encoded frame (as depacketized) is a keyframe.
    fn is_keyframe(self, data: &[u8]) -> bool {
        match self {
            // RFC 6386 9.1: bit 0 of the frame tag is 0 for a keyframe.
            Self::Vp8 => data.first().is_some_and(|b| b & 1 == 0),
            // Annex B: an IDR slice (NAL type 5) anywhere in the access unit.
            Self::H264 => {
                let mut i = 0;
                while i + 3 < data.len() {
                    if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                        if data[i + 3] & 0x1f == 5 {
                            return true;
                        }
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                false
            }
        }
    }
}

/// The id an SDP's `a=extmap` gives the extension `uri`.
fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.trim_end().strip_prefix("a=extmap:")?;
        let (id, ext) = rest.split_once(' ')?;
        let ext_uri = ext.split_whitespace().next()?;
        (ext_uri == uri).then(|| id.split('/').next()?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_keyframes() {
        assert!(Keyframes::Vp8.is_keyframe(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]));
        assert!(!Keyframes::Vp8.is_keyframe(&[0x31, 0x02, 0x00]));
        assert!(Keyframes::H264.is_keyframe(&[0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 0x88]));
        assert!(!Keyframes::H264.is_keyframe(&[0, 0, 0, 1, 0x41, 0x9a]));
        let sdp = "m=audio 9 X 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 X 96 108\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:108 H264/90000\r\n";
        assert_eq!(rtpmap_mime(sdp, confer_proto::track::TrackKind::Video, 108).as_deref(), Some("video/H264"));
        assert_eq!(rtpmap_mime(sdp, confer_proto::track::TrackKind::Audio, 111).as_deref(), Some("audio/opus"));
        assert_eq!(rtpmap_mime(sdp, confer_proto::track::TrackKind::Video, 111), None);
    }

    #[test]
    fn finds_an_extension_id() {
        let sdp = "m=audio 9 X 111\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
                   a=extmap:3/sendonly http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";
        assert_eq!(extmap_id(sdp, AUDIO_LEVEL_URI), Some(1));
        assert_eq!(
            extmap_id(sdp, "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"),
            Some(3)
        );
        assert_eq!(extmap_id(sdp, "urn:3gpp:video-orientation"), None);
    }
}
