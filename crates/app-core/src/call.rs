//! The call engine: one joined room, its local devices and its remote media.
//!
//! [`Call::join`] gets a join token (from an invite, a token in the link, or the app's
//! own hosted server), joins, publishes the camera and microphone as stream `main`, and
//! subscribes to everyone. From then on a task turns the room's events into
//! [`CallEvent`]s for the view: the whole [`CallView`] on every change, chat messages,
//! notices, and the end of the call with a reason the user can read.
//!
//! Remote video is decoded on a thread per track into the [`FrameHub`] (tile
//! `{participant}:{key}`; the local camera is `local:main`); remote audio goes to the
//! speaker's mixer. What is subscribed follows what the view shows ([`Call::set_tiles`]):
//! a hidden tile's video is unsubscribed, a small one asks for the low simulcast layer.
//!
//! Muting keeps the microphone open (echo cancellation stays trained, and unmuting is
//! instant) but sends nothing; turning the camera off closes it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use confer_client::api::{ApiClient, ApiError, Call as ApiCall};
use confer_client::media::{Codec, TrackOptions};
use confer_client::proto::signal::{DisconnectReason, Event, ParticipantInfo, Role};
use confer_client::proto::token::{CreateToken, ExchangeInvite, Grants, TokenPair};
use confer_client::proto::track::{Quality, StreamInfo, SubscriptionOptions, TrackKind, TrackSource};
use confer_client::proto::{ErrorBody, ParticipantId};
use confer_client::{ClientError, ConnectionState, LocalStream, LocalTrack, RemoteTrack, Room, RoomEvent, RoomOptions};
use confer_media::audio::{far_end, DeviceChoice, FarEndReceiver, Microphone, ProcessingConfig, RemoteAudio, Speaker};
use confer_media::h264::H264Decoder;
use confer_media::video::{ScreenCapture, ScreenSource};
use confer_media::vp8::Vp8Decoder;
use serde::{Deserialize, Serialize};

use crate::frames::FrameHub;
use crate::link::{Access, JoinTarget};
use crate::publish::{self, unix_ms, FrameTap, MediaThread, PublishPlan, VideoSource};
use crate::view::{CallEvent, CallView, ChatMessage, Connection, LocalDevice, ParticipantView, TileInfo, TileWant};
use crate::CallError;

/// Where call events go (the shell forwards them to the view).
pub type EventSink = Arc<dyn Fn(CallEvent) + Send + Sync>;

/// The local camera's tile.
pub const LOCAL_TILE: &str = "local:main";

const USER_AGENT: &str = concat!("confer-app/", env!("CARGO_PKG_VERSION"));

/// What the user picked for devices and quality (the settings screen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(default)]
pub struct MediaSettings {
    /// A microphone by id or name; `None` follows the system default.
    pub microphone: Option<String>,
    pub speaker: Option<String>,
    /// A camera index, or `"synthetic"` for the test pattern; `None` is the first camera.
    pub camera: Option<String>,
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub gain_control: bool,
    pub video_quality: VideoQuality,
    pub start_muted: bool,
    pub start_camera_off: bool,
    /// Media through the server's TURN relays only, never a direct path.
    // For networks that allow nothing else out, or to keep this machine's addresses
    // from the server.
    pub force_relay: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            microphone: None,
            speaker: None,
            camera: None,
            echo_cancellation: true,
            noise_suppression: true,
            gain_control: true,
            video_quality: VideoQuality::Standard,
            start_muted: false,
            start_camera_off: false,
            force_relay: false,
        }
    }
}

/// What the camera sends at most (simulcast adds half and quarter layers below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum VideoQuality {
    /// 1280x720
    High,
    /// 640x360
    Standard,
    /// 320x180, for slow links and slow machines.
    Low,
}

impl MediaSettings {
    pub fn processing(&self) -> ProcessingConfig {
        ProcessingConfig {
            echo_cancellation: self.echo_cancellation,
            noise_suppression: self.noise_suppression,
            gain_control: self.gain_control,
        }
    }

    fn video_size(&self) -> (usize, usize) {
        match self.video_quality {
            VideoQuality::High => (1280, 720),
            VideoQuality::Standard => (640, 360),
            VideoQuality::Low => (320, 180),
        }
    }

    pub fn microphone_choice(&self) -> DeviceChoice {
        self.microphone.as_deref().and_then(|m| m.parse().ok()).unwrap_or_default()
    }

    pub fn speaker_choice(&self) -> DeviceChoice {
        self.speaker.as_deref().and_then(|m| m.parse().ok()).unwrap_or_default()
    }

    /// The camera to open: the synthetic pattern when asked for (in settings, or with
    /// `CONFER_FAKE_CAMERA=1` as test machines do), else a real one if any is present.
    pub fn video_source(&self) -> Option<VideoSource> {
        let fake = std::env::var_os("CONFER_FAKE_CAMERA").is_some_and(|v| v != "0");
        match self.camera.as_deref() {
            _ if fake => Some(VideoSource::Pattern),
            Some("synthetic") => Some(VideoSource::Pattern),
            Some(index) => index.parse().ok().map(VideoSource::Camera),
            None => confer_media::video::camera::list().first().map(|c| VideoSource::Camera(c.index)),
        }
    }
}

/// The API credentials of the app's own hosted server.
#[derive(Debug, Clone)]
pub struct HostAccess {
    /// The hosted server's address.
    pub server: String,
    pub api_key: String,
    pub api_secret: String,
    pub invite_link: String,
}

/// Everything [`Call::join`] needs.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The server to use when the target names none.
    pub server: String,
    pub name: String,
    pub target: JoinTarget,
    pub media: MediaSettings,
    /// Set when joining the app's own hosted server: a moderator token is minted.
    pub host: Option<HostAccess>,
}

/// A joined call. Dropping it leaves abruptly; [`Call::leave`] says goodbye.
pub struct Call {
    inner: Arc<Inner>,
}

struct Inner {
    room: Room,
    hub: Arc<FrameHub>,
    sink: EventSink,
    media: MediaSettings,
    invite_link: Option<String>,
    speaker: Option<Arc<Speaker>>,
    local: Mutex<Local>,
    remote: Mutex<Remote>,
}

/// The local side: what is published and what feeds it.
struct Local {
    main: Option<LocalStream>,
    mic: Option<MediaThread>,
    mic_state: LocalDevice,
    camera: Option<MediaThread>,
    camera_state: LocalDevice,
    screen: Option<(LocalStream, MediaThread)>,
}

/// The remote side: subscriptions and what the view shows.
#[derive(Default)]
struct Remote {
    /// (publisher, key) -> options in force.
    subscribed: HashMap<(ParticipantId, String), SubscriptionOptions>,
    wants: HashMap<String, TileWant>,
    speaking: HashSet<String>,
    active_speaker: Option<String>,
    quality: HashMap<String, u8>,
    reconnecting: bool,
    /// Decoding threads and audio playback, per track id.
    readers: HashMap<String, MediaThread>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn tile_of(participant: &ParticipantId, key: &str) -> String {
    format!("{participant}:{key}")
}

impl Call {
    /// Gets a token, joins, publishes and starts reporting to `sink`.
    pub async fn join(request: JoinRequest, hub: Arc<FrameHub>, sink: EventSink) -> Result<Call, CallError> {
        let name = request.name.trim().to_owned();
        if name.is_empty() || name.len() > 100 {
            return Err(CallError::new("invalid_name", "Enter a display name (up to 100 characters)."));
        }
        let server = match (&request.target.server, &request.host) {
            (Some(s), _) => s.clone(),
            (None, Some(host)) => host.server.clone(),
            (None, None) => request.server.clone(),
        };
        let access = join_token(&server, &name, &request).await?;
        let mut options = RoomOptions::default().with_name(name).with_force_relay(request.media.force_relay);
        // Renewed for as long as the call lasts: join tokens live minutes, calls hours.
        if let Some(refresh_token) = access.refresh_token {
            options = options.with_refresh_token(refresh_token);
        }
        let (room, events) =
            Room::connect(&server, &access.token, options).await.map_err(|e| client_error(&server, &e))?;
        tracing::info!(room = %request.target.room, server, "joined");

        let (far_tx, far_rx) = far_end();
        let media = request.media.clone();
        let cancel = media.echo_cancellation;
        // Opening an audio device blocks for a moment: not on the runtime's threads.
        let choice = media.speaker_choice();
        let opened = tokio::task::spawn_blocking(move || Speaker::open(choice, cancel.then_some(far_tx))).await;
        let opened = opened.map_err(|e| CallError::new("speaker_failed", e.to_string()))?;
        let speaker = match opened {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "no speaker: the call is silent");
                sink(CallEvent::Notice {
                    code: "no_speaker".into(),
                    message: "No speaker or headphones could be opened: you will not hear the others.".into(),
                });
                None
            }
        };
        let invite_link = match (&request.host, &request.target.access) {
            (Some(h), _) => Some(h.invite_link.clone()),
            (None, Access::Invite { .. }) => {
                Some(JoinTarget { server: Some(server.clone()), ..request.target.clone() }.to_link())
            }
            _ => None,
        };
        let inner = Arc::new(Inner {
            room,
            hub,
            sink,
            media,
            invite_link,
            speaker,
            local: Mutex::new(Local {
                main: None,
                mic: None,
                mic_state: LocalDevice::Missing,
                camera: None,
                camera_state: LocalDevice::Missing,
                screen: None,
            }),
            remote: Mutex::default(),
        });
        inner.publish_main(cancel.then_some(far_rx)).await;
        tokio::spawn(inner.clone().run(events));
        Ok(Call { inner })
    }

    /// Mutes or unmutes the microphone.
    pub async fn set_microphone(&self, on: bool) -> Result<(), CallError> {
        let track = {
            let local = lock(&self.inner.local);
            match local.mic_state {
                LocalDevice::Missing => {
                    return Err(CallError::new("no_microphone", "There is no microphone to unmute."))
                }
                LocalDevice::Censored => {
                    return Err(CallError::new("censored", "A moderator turned your microphone off."))
                }
                _ => {}
            }
            local.main.as_ref().and_then(|s| s.track(TrackKind::Audio).cloned())
        };
        let Some(track) = track else { return Err(CallError::new("no_microphone", "No microphone is published.")) };
        self.inner.room.set_track_muted(&track, !on).await.map_err(|e| request_error("mute", &e))?;
        lock(&self.inner.local).mic_state = if on { LocalDevice::On } else { LocalDevice::Off };
        self.inner.update();
        Ok(())
    }

    /// Turns the camera on (opening it) or off (closing it).
    pub async fn set_camera(&self, on: bool) -> Result<(), CallError> {
        let (track, source) = {
            let local = lock(&self.inner.local);
            if local.camera_state == LocalDevice::Censored {
                return Err(CallError::new("censored", "A moderator turned your camera off."));
            }
            let track = local.main.as_ref().and_then(|s| s.track(TrackKind::Video).cloned());
            (track, self.inner.media.video_source())
        };
        let (Some(track), Some(source)) = (track, source) else {
            return Err(CallError::new("no_camera", "There is no camera to turn on."));
        };
        if on {
            let feeder = self.inner.camera_feeder(track.clone(), source);
            self.inner.room.set_track_muted(&track, false).await.map_err(|e| request_error("camera", &e))?;
            let mut local = lock(&self.inner.local);
            local.camera = Some(feeder);
            local.camera_state = LocalDevice::On;
        } else {
            self.inner.room.set_track_muted(&track, true).await.map_err(|e| request_error("camera", &e))?;
            let mut local = lock(&self.inner.local);
            local.camera = None;
            local.camera_state = LocalDevice::Off;
            drop(local);
            self.inner.hub.remove(LOCAL_TILE);
        }
        self.inner.update();
        Ok(())
    }

    /// Shares a screen or window (`Some`), or stops sharing (`None`).
    pub async fn share_screen(&self, source: Option<ScreenSource>) -> Result<(), CallError> {
        let previous = lock(&self.inner.local).screen.take();
        if let Some((stream, feeder)) = previous {
            drop(feeder);
            let key = stream.key().to_owned();
            if let Err(e) = self.inner.room.unpublish(&key).await {
                tracing::warn!(error = %e, "unpublishing the screen failed");
            }
            self.inner.hub.remove(&tile_of(&self.inner.room.local_participant().id, &key));
        }
        if let Some(source) = source {
            let fps = 15;
            let capture = ScreenCapture::start(source, fps)
                .map_err(|e| CallError::new("screen_unavailable", format!("The screen cannot be captured: {e}.")))?;
            let stream = self
                .inner
                .room
                .publish("screen", vec![TrackOptions::new(TrackSource::ScreenShare, Codec::Vp8)])
                .await
                .map_err(|e| request_error("screen share", &e))?;
            let Some(track) = stream.track(TrackKind::Video).cloned() else {
                return Err(CallError::new("screen_unavailable", "The screen share was not accepted."));
            };
            let feeder = MediaThread::spawn("screen", publish::screen_loop(track, capture, Codec::Vp8, fps));
            lock(&self.inner.local).screen = Some((stream, feeder));
        }
        self.inner.update();
        Ok(())
    }

    /// Sends a chat message to everyone, or privately to one participant.
    pub async fn send_chat(&self, text: &str, to: Option<String>) -> Result<ChatMessage, CallError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CallError::new("empty_message", "Type a message first."));
        }
        let room = &self.inner.room;
        let recipient = match &to {
            Some(id) => Some(
                room.participant(&ParticipantId::from(id.as_str()))
                    .ok_or_else(|| CallError::new("participant_gone", "That person has left the call."))?,
            ),
            None => None,
        };
        let id = room
            .send_message(text, recipient.as_ref().map(|p| vec![p.id.clone()]))
            .await
            .map_err(|e| request_error("chat", &e))?;
        let me = room.local_participant();
        Ok(ChatMessage {
            id,
            from_id: me.id.to_string(),
            from_name: me.name.clone(),
            text: text.to_owned(),
            private: recipient.is_some(),
            to_name: recipient.map(|p| p.name),
            sent_at: unix_ms() as f64,
            mine: true,
        })
    }

    /// Removes a participant (moderators only).
    pub async fn kick(&self, participant: &str) -> Result<(), CallError> {
        self.inner.room.kick(&participant.into()).await.map_err(|e| request_error("kick", &e))
    }

    /// Stops (or lets again) a participant's microphone and camera (moderators only).
    pub async fn censor(&self, participant: &str, censored: bool) -> Result<(), CallError> {
        let who = self
            .inner
            .room
            .participant(&participant.into())
            .ok_or_else(|| CallError::new("participant_gone", "That person has left the call."))?;
        for track in who.streams.iter().flat_map(|s| &s.tracks) {
            self.inner.room.censor(&track.id, censored).await.map_err(|e| request_error("censor", &e))?;
        }
        Ok(())
    }

    /// What the view shows: subscriptions follow (hidden tiles get no video, small
    /// ones the low layer).
    pub async fn set_tiles(&self, wants: Vec<TileWant>) {
        {
            let mut remote = lock(&self.inner.remote);
            remote.wants = wants.into_iter().map(|w| (w.tile.clone(), w)).collect();
        }
        self.inner.apply_wants().await;
    }

    /// The call as the view would draw it now.
    pub fn view(&self) -> CallView {
        self.inner.view()
    }

    /// Leaves the room and stops every device.
    pub async fn leave(self) {
        if let Err(e) = self.inner.room.disconnect().await {
            tracing::debug!(error = %e, "leaving");
        }
        self.inner.stop_media();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.inner.stop_media();
    }
}

impl Inner {
    /// Publishes stream `main` (camera and microphone, as far as present), starting
    /// muted or with the camera off as the settings say.
    async fn publish_main(self: &Arc<Self>, far: Option<FarEndReceiver>) {
        let media = &self.media;
        let fake_tone = std::env::var("CONFER_FAKE_MICROPHONE").ok().and_then(|v| v.parse::<f64>().ok());
        let (choice, processing) = (media.microphone_choice(), media.processing());
        let opened = match fake_tone {
            Some(_) => None,
            None => tokio::task::spawn_blocking(move || Microphone::open(choice, processing, far)).await.ok(),
        };
        let mic = match opened {
            None => None,
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                tracing::warn!(code = e.code(), error = %e, "no microphone");
                (self.sink)(CallEvent::Notice {
                    code: "no_microphone".into(),
                    message: "No microphone could be opened: the others cannot hear you.".into(),
                });
                None
            }
        };
        let has_audio = mic.is_some() || fake_tone.is_some();
        let video = media.video_source();
        let mut tracks = Vec::new();
        if video.is_some() {
            tracks.push(
                TrackOptions::new(TrackSource::Camera, Codec::Vp8)
                    .with_simulcast(true)
                    .with_muted(media.start_camera_off),
            );
        }
        if has_audio {
            tracks.push(TrackOptions::new(TrackSource::Microphone, Codec::Opus).with_muted(media.start_muted));
        }
        if tracks.is_empty() {
            return;
        }
        let stream = match self.room.publish("main", tracks).await {
            Ok(s) => s,
            Err(e) => {
                let e = request_error("publish", &e);
                (self.sink)(CallEvent::Notice { code: e.code, message: e.message });
                return;
            }
        };
        let mut local = lock(&self.local);
        if let Some(track) = stream.track(TrackKind::Audio).cloned() {
            local.mic = Some(match (mic, fake_tone) {
                (Some(mic), _) => MediaThread::spawn("microphone", publish::mic_loop(track, mic)),
                (None, hz) => MediaThread::spawn("microphone", publish::audio_loop(track, hz.unwrap_or(440.0))),
            });
            local.mic_state = if media.start_muted { LocalDevice::Off } else { LocalDevice::On };
        }
        if let (Some(track), Some(source)) = (stream.track(TrackKind::Video).cloned(), video) {
            if media.start_camera_off {
                local.camera_state = LocalDevice::Off;
            } else {
                local.camera = Some(self.camera_feeder(track, source));
                local.camera_state = LocalDevice::On;
            }
        }
        local.main = Some(stream);
    }

    /// Captures and encodes the camera, showing each frame in the local tile.
    fn camera_feeder(self: &Arc<Self>, track: LocalTrack, source: VideoSource) -> MediaThread {
        let (width, height) = self.media.video_size();
        let hub = self.hub.clone();
        let tap = FrameTap(Arc::new(move |frame| hub.publish(LOCAL_TILE, Arc::new(frame.clone()), unix_ms())));
        let plan = PublishPlan {
            width,
            height,
            fps: 30,
            codec: Codec::Vp8,
            simulcast: true,
            video: Some(source.clone()),
            audio: None,
            data: false,
            screen: None,
            tap: Some(tap),
        };
        MediaThread::spawn("camera", publish::video_loop(track, plan, source))
    }

    fn stop_media(&self) {
        let mut local = lock(&self.local);
        local.mic = None;
        local.camera = None;
        local.screen = None;
        drop(local);
        lock(&self.remote).readers.clear();
        self.hub.remove(LOCAL_TILE);
    }

    /// Turns room events into call events until the room is gone.
    async fn run(self: Arc<Self>, mut events: tokio::sync::mpsc::UnboundedReceiver<RoomEvent>) {
        while let Some(event) = events.recv().await {
            if let Some(end) = self.on_event(event).await {
                self.stop_media();
                (self.sink)(end);
                return;
            }
        }
    }

    /// Handles one event; returns the call's end when it ends.
    async fn on_event(self: &Arc<Self>, event: RoomEvent) -> Option<CallEvent> {
        match event {
            RoomEvent::Connected { snapshot } => {
                for p in &snapshot.remote {
                    for s in &p.streams {
                        self.subscribe(&p.id, s).await;
                    }
                }
                self.watch_network().await;
                self.update();
            }
            RoomEvent::StateChanged(state) => {
                lock(&self.remote).reconnecting = state == ConnectionState::Reconnecting;
                self.update();
            }
            RoomEvent::Reconnected { .. } => {
                lock(&self.remote).reconnecting = false;
                self.watch_network().await;
                self.update();
            }
            RoomEvent::ParticipantJoined { .. } => {
                self.watch_network().await;
                self.update();
            }
            RoomEvent::ParticipantLeft { participant, .. } => {
                for s in &participant.streams {
                    self.hub.remove(&tile_of(&participant.id, &s.key));
                }
                lock(&self.remote).subscribed.retain(|(p, _), _| *p != participant.id);
                self.update();
            }
            RoomEvent::MessageReceived { message_id, from, text, to, sent_at } => {
                (self.sink)(CallEvent::Chat {
                    message: ChatMessage {
                        id: message_id,
                        from_id: from.id.to_string(),
                        from_name: from.name,
                        text,
                        private: to.is_some(),
                        to_name: None,
                        sent_at: sent_at as f64,
                        mine: false,
                    },
                });
            }
            RoomEvent::Media { event } => self.on_media(*event).await,
            RoomEvent::TrackSubscribed { track } => self.receive(*track),
            RoomEvent::Disconnected { reason } => return Some(ended(reason)),
            RoomEvent::MediaPathFailed { error, .. } => {
                tracing::warn!(%error, "no media path");
                (self.sink)(CallEvent::Notice {
                    code: "no_media_path".into(),
                    message: format!(
                        "Audio and video cannot reach the meeting server from this network ({error}). \
                         Try another network, or ask the server's administrator for a TURN relay."
                    ),
                });
            }
            RoomEvent::TokenRenewalFailed { error } => {
                tracing::warn!(%error, "the join token cannot be renewed");
                (self.sink)(CallEvent::Notice {
                    code: "token_renewal_failed".into(),
                    message: "Your access to this meeting could not be renewed: the call ends when it runs out.".into(),
                });
            }
            RoomEvent::ConnectionLost { error } => {
                tracing::warn!(error = %error, "connection lost for good");
                return Some(CallEvent::Ended {
                    code: "connection_lost".into(),
                    message: "The connection to the meeting was lost and could not be restored.".into(),
                });
            }
            _ => self.update(),
        }
        None
    }

    async fn on_media(self: &Arc<Self>, event: Event) {
        match event {
            Event::StreamPublished { participant_id, stream } => {
                if participant_id != self.room.local_participant().id {
                    self.subscribe(&participant_id, &stream).await;
                }
                self.update();
            }
            Event::StreamUnpublished { participant_id, key, .. } => {
                self.hub.remove(&tile_of(&participant_id, &key));
                lock(&self.remote).subscribed.remove(&(participant_id, key));
                self.update();
            }
            Event::AudioActivity { levels, active_speaker } => {
                let speaking: HashSet<String> = levels
                    .iter()
                    .filter(|l| l.voice.unwrap_or(l.level > 0.1))
                    .map(|l| l.participant_id.to_string())
                    .collect();
                let active = active_speaker.map(|p| p.to_string());
                let changed = {
                    let mut remote = lock(&self.remote);
                    let changed = remote.speaking != speaking || (active.is_some() && remote.active_speaker != active);
                    remote.speaking = speaking;
                    if active.is_some() {
                        remote.active_speaker = active;
                    }
                    changed
                };
                if changed {
                    self.update();
                }
            }
            Event::NetworkMetrics { reports } => {
                let changed = {
                    let mut remote = lock(&self.remote);
                    let mut changed = false;
                    for r in reports {
                        changed |= remote.quality.insert(r.participant_id.to_string(), r.score) != Some(r.score);
                    }
                    changed
                };
                if changed {
                    self.update();
                }
            }
            Event::TrackCensored { .. } | Event::TrackUncensored { .. } => {
                self.follow_censorship();
                self.update();
            }
            _ => self.update(),
        }
    }

    /// A moderator's censor of a local track shows on the local controls (and closes
    /// the camera); once lifted, the device is off until the user turns it on.
    fn follow_censorship(&self) {
        let me = self.room.local_participant();
        let censored = |kind: TrackKind| {
            me.streams.iter().filter(|s| s.key == "main").flat_map(|s| &s.tracks).any(|t| t.kind == kind && t.censored)
        };
        let mut local = lock(&self.local);
        let mic_muted = local.main.as_ref().and_then(|s| s.track(TrackKind::Audio)).is_none_or(LocalTrack::is_muted);
        if censored(TrackKind::Audio) {
            local.mic_state = LocalDevice::Censored;
        } else if local.mic_state == LocalDevice::Censored {
            local.mic_state = if mic_muted { LocalDevice::Off } else { LocalDevice::On };
        }
        if censored(TrackKind::Video) {
            local.camera = None;
            local.camera_state = LocalDevice::Censored;
        } else if local.camera_state == LocalDevice::Censored {
            local.camera_state = LocalDevice::Off;
        }
    }

    /// Options for a remote stream as the view shows it now.
    fn wanted(&self, participant: &ParticipantId, key: &str) -> SubscriptionOptions {
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

    async fn subscribe(&self, participant: &ParticipantId, stream: &StreamInfo) {
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
    async fn apply_wants(&self) {
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

    async fn watch_network(&self) {
        let state = self.room.state();
        let everyone = std::iter::once(&state.local).chain(&state.remote).map(|p| p.id.clone()).collect();
        if let Err(e) = self.room.set_network_metrics(everyone).await {
            tracing::debug!(error = %e, "network metrics not available");
        }
    }

    /// Decodes a remote track: video into its tile, audio into the speaker.
    fn receive(self: &Arc<Self>, mut track: RemoteTrack) {
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

    /// Sends the whole view to the view.
    fn update(&self) {
        (self.sink)(CallEvent::Updated { view: self.view() });
    }

    fn view(&self) -> CallView {
        let state = self.room.state();
        let local = lock(&self.local);
        let remote = lock(&self.remote);
        let me = &state.local;
        let person = |p: &ParticipantInfo, is_local: bool| {
            let id = p.id.to_string();
            let track = |kind: TrackKind| {
                p.streams.iter().filter(|s| s.key == "main").flat_map(|s| &s.tracks).find(|t| t.kind == kind)
            };
            let off = |kind: TrackKind| track(kind).is_none_or(|t| t.muted || t.censored);
            let (mic_muted, camera_off, tiles) = if is_local {
                // What this app publishes, as it knows it (its own screen is not shown
                // back to it: the view says "you are sharing" instead).
                let has_camera = local.main.as_ref().is_some_and(|s| s.track(TrackKind::Video).is_some());
                let tiles = has_camera
                    .then(|| TileInfo { tile: LOCAL_TILE.to_owned(), key: "main".into(), screen: false })
                    .into_iter()
                    .collect();
                (local.mic_state != LocalDevice::On, local.camera_state != LocalDevice::On, tiles)
            } else {
                let tiles = p
                    .streams
                    .iter()
                    .filter(|s| s.tracks.iter().any(|t| t.kind == TrackKind::Video))
                    .map(|s| TileInfo { tile: tile_of(&p.id, &s.key), key: s.key.clone(), screen: is_screen(s) })
                    .collect();
                (off(TrackKind::Audio), off(TrackKind::Video), tiles)
            };
            ParticipantView {
                speaking: remote.speaking.contains(&id),
                network_quality: remote.quality.get(&id).copied().unwrap_or(0),
                identity: p.identity.0.clone(),
                name: p.name.clone(),
                local: is_local,
                moderator: p.role.moderates(),
                guest: p.role == Role::Guest,
                mic_muted,
                camera_off,
                tiles,
                id,
            }
        };
        let mut participants = vec![person(me, true)];
        participants.extend(state.remote.iter().map(|p| person(p, false)));
        CallView {
            room: state.room.id.to_string(),
            room_name: state.room.name.clone(),
            me: me.id.to_string(),
            moderator: me.role.moderates(),
            participants,
            active_speaker: remote.active_speaker.clone(),
            connection: if remote.reconnecting { Connection::Reconnecting } else { Connection::Connected },
            microphone: local.mic_state,
            camera: local.camera_state,
            sharing_screen: local.screen.is_some(),
            invite_link: self.invite_link.clone(),
        }
    }
}

fn is_screen(stream: &StreamInfo) -> bool {
    stream.tracks.iter().any(|t| t.source == Some(TrackSource::ScreenShare))
}

enum VideoDecoder {
    Vp8(Box<Vp8Decoder>),
    H264(Box<H264Decoder>),
}

impl VideoDecoder {
    fn new(codec: &str) -> Option<Self> {
        if codec.ends_with("vp8") {
            Vp8Decoder::new().ok().map(|d| Self::Vp8(Box::new(d)))
        } else if codec.ends_with("h264") {
            H264Decoder::new().ok().map(|d| Self::H264(Box::new(d)))
        } else {
            None
        }
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<confer_media::I420Frame>, ()> {
        match self {
            Self::Vp8(d) => d.decode(data).map_err(|_| ()),
            Self::H264(d) => d.decode(data).map_err(|_| ()),
        }
    }
}

/// The end of a call the server ended, in words.
fn ended(reason: DisconnectReason) -> CallEvent {
    let (code, message) = match reason {
        DisconnectReason::Left => ("left", "You left the call."),
        DisconnectReason::Kicked => ("kicked", "A moderator removed you from the call."),
        DisconnectReason::TokenExpired => {
            ("token_expired", "Your access to this meeting expired. Join again with a fresh link.")
        }
        DisconnectReason::Replaced => {
            ("replaced", "You joined this meeting from somewhere else, so this window left it.")
        }
        DisconnectReason::SessionEnded => ("session_ended", "The meeting was ended for everyone."),
        DisconnectReason::RoomDeleted => ("room_deleted", "The meeting's room was deleted."),
        DisconnectReason::ProtocolViolation => {
            ("protocol_violation", "The server closed the connection after an error in this app.")
        }
        DisconnectReason::ServerShutdown => ("server_shutdown", "The server shut down."),
        DisconnectReason::ServerError => ("server_error", "The server ran into an error. Join again to continue."),
        DisconnectReason::Denied => ("denied", "The host did not let you into the meeting."),
    };
    CallEvent::Ended { code: code.into(), message: message.into() }
}

/// A join token, and the refresh token that renews it when there is one.
struct Credentials {
    token: String,
    refresh_token: Option<String>,
}

impl From<TokenPair> for Credentials {
    fn from(pair: TokenPair) -> Self {
        Self { token: pair.token, refresh_token: Some(pair.refresh_token) }
    }
}

/// A join token for the request: the link's token, an invite traded for one, or one
/// minted by the app's own server. A token from a link comes without a refresh token
/// (the call ends when it expires, and the message says so).
async fn join_token(server: &str, name: &str, request: &JoinRequest) -> Result<Credentials, CallError> {
    let base = confer_client::endpoint::server_base(server)
        .map_err(|_| CallError::new("invalid_server", format!("{server:?} is not a server address.")))?;
    match (&request.target.access, &request.host) {
        (Access::Token { token }, _) => Ok(Credentials { token: token.clone(), refresh_token: None }),
        (Access::Invite { invite }, _) => {
            let api = ApiClient::new(base, None, None, USER_AGENT).map_err(|e| api_error(server, e))?;
            let exchange = ApiCall::ExchangeInvite(ExchangeInvite { invite: invite.clone(), name: name.to_owned() });
            let pair: TokenPair = api.send_as(&exchange).await.map_err(|e| api_error(server, e))?;
            Ok(pair.into())
        }
        (Access::RoomOnly, Some(host)) => {
            let api = ApiClient::new(base, Some(host.api_key.clone()), Some(host.api_secret.clone()), USER_AGENT)
                .map_err(|e| api_error(server, e))?;
            let mint = ApiCall::CreateToken(CreateToken {
                room: request.target.room.as_str().into(),
                identity: format!("host-{}", unix_ms()).as_str().into(),
                name: Some(name.to_owned()),
                // The server's lifetime; the refresh token renews it.
                ttl: None,
                grants: Grants { moderator: true, ..Grants::default() },
            });
            let pair: TokenPair = api.send_as(&mint).await.map_err(|e| api_error(server, e))?;
            Ok(pair.into())
        }
        (Access::RoomOnly, None) => Err(CallError::new(
            "link_needed",
            "To join a room on a server you do not host, open the join link its organiser shared.",
        )),
    }
}

/// A refusal in words a user can act on.
fn refusal(body: &ErrorBody) -> CallError {
    let message = match body.name.as_str() {
        "invalid_invite" => "This invite link is invalid or has expired. Ask for a new one.",
        "invalid_token" | "token_expired" => "This join link is invalid or has expired. Ask for a new one.",
        "room_full" => "This meeting is full.",
        "room_not_found" => "This meeting's room does not exist.",
        "disabled_by_policy" => "This meeting does not admit guests.",
        "not_a_member" | "forbidden" => "You are not allowed into this meeting.",
        _ => return CallError::new(body.name.clone(), body.message.clone()),
    };
    CallError::new(body.name.clone(), message)
}

fn unreachable(server: &str) -> CallError {
    CallError::new(
        "server_unreachable",
        format!("Cannot reach the server at {server}. Check the address and your network connection."),
    )
}

fn api_error(server: &str, error: ApiError) -> CallError {
    tracing::warn!(error = %error, server, "room API request failed");
    match error {
        ApiError::Refused { body, .. } => refusal(&body),
        ApiError::Http(_) | ApiError::Unexpected { .. } => unreachable(server),
        other => CallError::new("join_failed", other.to_string()),
    }
}

fn client_error(server: &str, error: &ClientError) -> CallError {
    tracing::warn!(error = %error, server, "joining failed");
    match error {
        ClientError::Server(body) => refusal(body),
        ClientError::Transport(_) | ClientError::Timeout(_) | ClientError::Tls(_) => unreachable(server),
        other => CallError::new(other.name().to_owned(), other.to_string()),
    }
}

/// A refused in-call request, for a notice.
fn request_error(what: &str, error: &ClientError) -> CallError {
    tracing::warn!(error = %error, what, "request refused");
    match error {
        ClientError::Server(body) => CallError::new(body.name.clone(), body.message.clone()),
        other => CallError::new(other.name().to_owned(), format!("{what} failed: {other}")),
    }
}
