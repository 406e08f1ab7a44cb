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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use confer_client::media::{Codec, TrackOptions};
use confer_client::proto::signal::Event;
use confer_client::proto::track::{SubscriptionOptions, TrackKind, TrackSource};
use confer_client::proto::ParticipantId;
use confer_client::{ConnectionState, LocalStream, Room, RoomEvent, RoomOptions};
use confer_media::audio::{far_end, DeviceSwitch, Speaker};
use confer_media::video::{ScreenCapture, ScreenSource};

use crate::frames::FrameHub;
use crate::link::{Access, JoinTarget};
use crate::publish::{self, unix_ms, MediaThread};
use crate::view::{CallEvent, CallView, ChatMessage, EndReason, LocalDevice, TileWant};
use crate::CallError;

mod devices;
mod join;
mod local;
mod meeting;
mod remote;
mod view;

pub use crate::settings::{MediaSettings, VideoQuality};
use join::{client_error, ended, join_token, request_error};

/// Where call events go (the shell forwards them to the view).
pub type EventSink = Arc<dyn Fn(CallEvent) + Send + Sync>;

/// The local camera's tile.
pub const LOCAL_TILE: &str = "local:main";

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
    /// Silent once `left` is set.
    sink: EventSink,
    /// Set when the call is left or dropped: from then on it tells its sink nothing. Its
    /// room's last events (its own `Ended` among them) would otherwise reach the view
    /// late, after the next call began, and end that one in the view.
    left: Arc<AtomicBool>,
    invite_link: Option<String>,
    speaker: Option<Arc<Speaker>>,
    local: Mutex<Local>,
    remote: Mutex<Remote>,
}

/// The local side: what is published and what feeds it.
struct Local {
    /// The settings the call joined with, and the devices picked since.
    media: MediaSettings,
    main: Option<LocalStream>,
    mic: Option<MediaThread>,
    /// Moves the open microphone to another device (absent for the test tone).
    mic_switch: Option<DeviceSwitch>,
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
    /// Everyone's name by participant id, as last seen in this call.
    names: HashMap<String, String>,
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
        let left = Arc::new(AtomicBool::new(false));
        let sink: EventSink = {
            let left = left.clone();
            Arc::new(move |event| {
                if !left.load(Ordering::Acquire) {
                    sink(event);
                }
            })
        };
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
        let mut options = RoomOptions::default()
            .with_name(name)
            .with_force_relay(request.media.force_relay)
            .with_audio_only(request.media.audio_only);
        // Renewed for as long as the call lasts: join tokens live minutes, calls hours.
        if let Some(refresh_token) = access.refresh_token {
            options = options.with_refresh_token(refresh_token);
        }
        // A meeting with a lobby answers with a wait: say so while it lasts.
        let (knocking, knocked) = tokio::sync::oneshot::channel();
        let waiting = sink.clone();
        tokio::spawn(async move {
            if knocked.await.is_ok() {
                waiting(CallEvent::Notice {
                    code: "waiting_in_lobby".into(),
                    message: "Waiting for the host to let you in…".into(),
                });
            }
        });
        let (room, events) = Room::connect_through_lobby(&server, &access.token, options, Some(knocking))
            .await
            .map_err(|e| client_error(&server, &e))?;
        tracing::info!(room = %request.target.room, server, "joined");

        let (far_tx, far_rx) = far_end();
        let mut media = request.media.clone();
        // Audio only: the camera track is there for later, but off.
        media.start_camera_off |= media.audio_only;
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
            left,
            invite_link,
            speaker,
            local: Mutex::new(Local {
                media,
                main: None,
                mic: None,
                mic_switch: None,
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
            if on && self.inner.room.is_audio_only() {
                return Err(CallError::new("audio_only", "Turn video back on (in ⋯) to use the camera."));
            }
            let track = local.main.as_ref().and_then(|s| s.track(TrackKind::Video).cloned());
            (track, local.media.video_source())
        };
        let (Some(track), Some(source)) = (track, source) else {
            return Err(CallError::new("no_camera", "There is no camera to turn on."));
        };
        if on {
            let feeder = self.inner.camera_feeder(track.clone(), source, self.inner.video_size());
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

    /// Leaves the room and stops every device. The sink hears nothing more of the call
    /// (the caller knows it ended).
    pub async fn leave(self) {
        self.inner.left.store(true, Ordering::Release);
        if let Err(e) = self.inner.room.disconnect().await {
            tracing::debug!(error = %e, "leaving");
        }
        self.inner.stop_media();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.inner.left.store(true, Ordering::Release);
        self.inner.stop_media();
    }
}

impl Inner {
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
                return Some(CallEvent::ended(EndReason::ConnectionLost));
            }
            _ => self.update(),
        }
        None
    }

    async fn on_media(self: &Arc<Self>, event: Event) {
        self.on_meeting(&event).await;
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
}
