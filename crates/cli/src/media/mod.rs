//! The bot's media: what it publishes ([`source`]), what it receives and reports
//! ([`report`]), and the plan that ties them to the room's events and to the timed
//! actions of `--at`.
//!
//! Keeping media flowing through network trouble is the SDK's job (it restarts ICE,
//! republishes and resubscribes); the bot only says what it wants.

pub mod report;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_client::media::Codec;
use confer_client::proto::track::{Quality, StreamInfo, SubscriptionOptions, TrackKind};
use confer_client::proto::{ErrorCode, ParticipantId};
use confer_client::{Room, RoomEvent};
use serde_json::json;

use crate::args::{BotAction, BotArgs, MediaKindArg, VideoCodecArg};
use crate::bot::error_line;
use crate::output::JsonLines;
use confer_app_core::publish::{
    self as source, unix_ms, AudioSource, MediaThread, Publication, PublishPlan, SharedFarEnd, VideoSource,
};
use confer_media::audio::{ProcessingConfig, Speaker};
use report::Receiving;

/// The bot's media actions and what it received.
pub struct MediaPlan {
    publish: Option<PublishPlan>,
    publications: Vec<Publication>,
    far_end: SharedFarEnd,
    speaker: Option<Arc<Speaker>>,
    probe_tones: Vec<f64>,
    snapshot: Option<std::path::PathBuf>,
    subscribe: Vec<String>,
    options: SubscriptionOptions,
    /// Timed actions not done yet, soonest first.
    actions: Vec<(Instant, BotAction)>,
    /// `--accept-unmute`: do what a moderator's `unmute_requested` asks.
    accept_unmute: bool,
    /// `--censor`: whose tracks to censor when they appear, and for how long.
    censor: Option<(String, Option<Duration>)>,
    subscribed: Vec<(ParticipantId, String)>,
    /// `--metrics`: whose network metrics to ask for.
    metrics: Vec<String>,
    receiving: Arc<Receiving>,
    joined_at: Instant,
    pub join_ms: u64,
    report: Option<std::path::PathBuf>,
    /// Join tokens renewed during the call.
    token_renewals: u32,
    /// Why media could not reach the server, as the SDK said (`media_path_failed`,
    /// `token_renewal_failed`).
    errors: Vec<serde_json::Value>,
}

/// The result of one step: whether the server refused something.
type Step = std::io::Result<bool>;

impl MediaPlan {
    pub fn new(args: &BotArgs, joined_at: Instant) -> Self {
        let (width, height, fps) = args.video;
        let codec = match args.codec {
            VideoCodecArg::Vp8 => Codec::Vp8,
            VideoCodecArg::H264 => Codec::H264,
        };
        let mut actions: Vec<(Instant, BotAction)> =
            args.at.iter().map(|(after, action)| (joined_at + *after, action.clone())).collect();
        if let Some((quality, after)) = args.quality_change {
            actions.push((joined_at + after, BotAction::Quality(quality)));
        }
        actions.sort_by_key(|(at, _)| *at);
        let processing = if args.music {
            ProcessingConfig::music()
        } else {
            ProcessingConfig { echo_cancellation: !args.no_aec, ..ProcessingConfig::default() }
        };
        let video = match (args.camera, args.publish) {
            _ if args.audio_only => None,
            (Some(index), _) => Some(VideoSource::Camera(index)),
            (None, true) => Some(VideoSource::Pattern),
            (None, false) => None,
        };
        let audio = match (&args.mic, args.publish) {
            (Some(device), _) => Some(AudioSource::Microphone(device.parse().unwrap_or_default(), processing)),
            (None, true) => Some(AudioSource::Tone(args.tone)),
            (None, false) => None,
        };
        let screen = args.screen.filter(|_| !args.audio_only).map(|m| (m, args.screen_fps));
        let plan = (video.is_some() || audio.is_some() || screen.is_some()).then_some(PublishPlan {
            width,
            height,
            fps,
            codec,
            simulcast: args.simulcast,
            video,
            audio,
            data: args.data,
            screen,
            tap: None,
            first_frame: args.first_frame,
        });
        // Echo cancellation hears what the speaker plays when both run.
        let (far_tx, far_rx) = confer_media::audio::far_end();
        let cancel = args.mic.is_some() && args.speaker.is_some() && processing.echo_cancellation;
        let mut far_tx = cancel.then_some(far_tx);
        let speaker = args.speaker.as_ref().and_then(|choice| {
            match Speaker::open(choice.parse().unwrap_or_default(), far_tx.take()) {
                Err(e) => {
                    tracing::error!(code = e.code(), error = %e, "no speaker: received audio is not played");
                    None
                }
                Ok(s) => Some(Arc::new(s)),
            }
        });
        let far_end: SharedFarEnd = Arc::new(std::sync::Mutex::new(cancel.then_some(far_rx)));
        Self {
            publish: plan,
            publications: Vec::new(),
            far_end,
            speaker,
            probe_tones: args.probe_tones.clone(),
            snapshot: args.snapshot.clone(),
            subscribe: args.subscribe.clone(),
            options: SubscriptionOptions { audio: true, video: true, quality: args.quality.into() },
            actions,
            accept_unmute: args.accept_unmute,
            censor: args.censor.clone().map(|who| (who, args.uncensor_after)),
            subscribed: Vec::new(),
            metrics: args.metrics.clone(),
            receiving: Arc::default(),
            joined_at,
            join_ms: 0,
            report: args.report.clone(),
            token_renewals: 0,
            errors: Vec::new(),
        }
    }

    fn wants(&self, identity: &str) -> bool {
        match self.subscribe.as_slice() {
            [one] if one == "all" => true,
            [one] if one == "none" => false,
            list => list.iter().any(|i| i == identity),
        }
    }

    fn since_join(&self) -> u64 {
        self.joined_at.elapsed().as_millis() as u64
    }

    /// Reacts to one room event.
    pub async fn on_event(&mut self, room: &Room, event: RoomEvent, out: &mut JsonLines<impl Write>) -> Step {
        use confer_client::proto::signal::Event;
        let mut refused = false;
        match event {
            RoomEvent::Connected { snapshot } => {
                refused |= self.watch_metrics(room, out).await?;
                if let Some(plan) = self.publish.clone() {
                    refused |= self.start_publishing(room, &plan, out).await?;
                }
                for p in &snapshot.remote {
                    for s in &p.streams {
                        refused |= self.consider(room, &p.id, &p.identity.0, s, out).await?;
                    }
                }
            }
            RoomEvent::Media { event } => match *event {
                Event::StreamPublished { participant_id, stream } => {
                    let identity = room.participant(&participant_id).map(|p| p.identity.0).unwrap_or_default();
                    refused |= self.consider(room, &participant_id, &identity, &stream, out).await?;
                }
                Event::SubscriptionEnded { participant_id, key, .. } => {
                    // The SDK subscribes again by itself after a media failure.
                    self.subscribed.retain(|(p, k)| !(*p == participant_id && *k == key));
                }
                Event::SubscriptionStarted { participant_id, key, .. }
                    if !self.subscribed.iter().any(|(p, k)| *p == participant_id && *k == key) =>
                {
                    self.subscribed.push((participant_id, key));
                }
                // Another room: what was received in the old one is gone.
                Event::Moved { .. } => self.subscribed.clear(),
                Event::UnmuteRequested { kind, .. } if self.accept_unmute => {
                    let kind = match kind {
                        TrackKind::Video => MediaKindArg::Video,
                        _ => MediaKindArg::Audio,
                    };
                    refused |= self.act(room, BotAction::Unmute(kind), out).await?;
                }
                _ => {}
            },
            RoomEvent::ParticipantJoined { participant }
                if self.metrics.iter().any(|m| m == "all" || *m == participant.identity.0) =>
            {
                refused |= self.watch_metrics(room, out).await?;
            }
            RoomEvent::TrackSubscribed { track } => {
                let identity =
                    room.participant(&track.info.publisher).map(|p| p.identity.0).unwrap_or_else(|| "?".into());
                let name = format!("decode-{identity}");
                let playback = match (&self.speaker, track.info.kind) {
                    (Some(speaker), TrackKind::Audio) => speaker.add_stream().ok(),
                    _ => None,
                };
                let keep = self.snapshot.is_some();
                let receiving = self.receiving.clone();
                MediaThread::spawn(&name, report::receive(*track, identity, self.joined_at, receiving, playback, keep))
                    .detach();
            }
            RoomEvent::TokenRenewed { .. } => self.token_renewals += 1,
            RoomEvent::MediaPathFailed { connection, error } => self.errors.push(json!({
                "event": "media_path_failed", "connection": connection, "error": error.name(), "message": error.to_string(),
            })),
            RoomEvent::TokenRenewalFailed { error } => self.errors.push(json!({
                "event": "token_renewal_failed", "error": error.name(), "message": error.to_string(),
            })),
            _ => {}
        }
        Ok(refused)
    }

    /// Asks for network metrics about the `--metrics` participants present now.
    async fn watch_metrics(&mut self, room: &Room, out: &mut JsonLines<impl Write>) -> Step {
        if self.metrics.is_empty() {
            return Ok(false);
        }
        let state = room.state();
        let ids: Vec<ParticipantId> = std::iter::once(&state.local)
            .chain(&state.remote)
            .filter(|p| self.metrics.iter().any(|m| m == "all" || *m == p.identity.0))
            .map(|p| p.id.clone())
            .collect();
        match room.set_network_metrics(ids).await {
            Ok(()) => Ok(false),
            Err(e) => {
                out.emit_event(error_line("set_network_metrics", &e))?;
                Ok(true)
            }
        }
    }

    async fn start_publishing(&mut self, room: &Room, plan: &PublishPlan, out: &mut JsonLines<impl Write>) -> Step {
        match source::publish(room, plan, &self.far_end).await {
            Ok(publications) => {
                for publication in publications {
                    let info = publication.stream.info();
                    out.emit_event(json!({"event": "published", "key": info.key, "tracks": info.tracks}))?;
                    self.publications.push(publication);
                }
                Ok(false)
            }
            Err(e) => {
                out.emit_event(error_line("publish", &e))?;
                Ok(true)
            }
        }
    }

    /// Subscribes to and censors a published stream as the flags say.
    async fn consider(
        &mut self,
        room: &Room,
        participant: &ParticipantId,
        identity: &str,
        stream: &StreamInfo,
        out: &mut JsonLines<impl Write>,
    ) -> Step {
        let mut refused = false;
        if let Some((who, uncensor_after)) = self.censor.clone() {
            if who == identity {
                refused |= self.set_censored(room, identity, stream, true, out).await?;
                if let Some(after) = uncensor_after {
                    self.actions.push((Instant::now() + after, BotAction::Uncensor(who)));
                    self.actions.sort_by_key(|(at, _)| *at);
                }
            }
        }
        let already = self.subscribed.iter().any(|(p, k)| p == participant && *k == stream.key);
        if self.wants(identity) && !already {
            match room.subscribe(participant, &stream.key, self.options).await {
                Ok(()) => self.subscribed.push((participant.clone(), stream.key.clone())),
                Err(e) => {
                    out.emit_event(error_line("subscribe", &e))?;
                    refused = true;
                }
            }
        }
        Ok(refused)
    }

    async fn set_censored(
        &mut self,
        room: &Room,
        identity: &str,
        stream: &StreamInfo,
        censored: bool,
        out: &mut JsonLines<impl Write>,
    ) -> Step {
        let (verb, done) = if censored { ("censor", "censor_succeeded") } else { ("uncensor", "uncensor_succeeded") };
        let mut refused = false;
        for t in &stream.tracks {
            match room.censor(&t.id, censored).await {
                Ok(()) => out.emit_event(json!({"event": done, "identity": identity, "track_id": t.id}))?,
                Err(e) => {
                    out.emit_event(error_line(verb, &e))?;
                    refused = true;
                }
            }
        }
        Ok(refused)
    }

    /// Runs the timed actions that are due.
    pub async fn on_tick(&mut self, room: &Room, out: &mut JsonLines<impl Write>) -> Step {
        let now = Instant::now();
        let mut refused = false;
        while self.actions.first().is_some_and(|(at, _)| *at <= now) {
            let (_, action) = self.actions.remove(0);
            refused |= self.act(room, action, out).await?;
        }
        Ok(refused)
    }

    async fn act(&mut self, room: &Room, action: BotAction, out: &mut JsonLines<impl Write>) -> Step {
        let at_ms = self.since_join();
        let mut refused = false;
        match action {
            BotAction::Mute(kind) | BotAction::Unmute(kind) => {
                let muted = matches!(action, BotAction::Mute(_));
                let kind = match kind {
                    MediaKindArg::Audio => TrackKind::Audio,
                    MediaKindArg::Video => TrackKind::Video,
                };
                let track = self.publications.iter().find_map(|p| p.stream.track(kind).cloned());
                let Some(track) = track else {
                    out.emit_event(
                        json!({"event": "error", "request": "mute", "message": "nothing of that kind is published"}),
                    )?;
                    return Ok(true);
                };
                match room.set_track_muted(&track, muted).await {
                    Ok(()) => out.emit_event(
                        json!({"event": if muted {"muted"} else {"unmuted"}, "kind": kind, "at_ms": at_ms}),
                    )?,
                    Err(e) => {
                        out.emit_event(error_line("update_stream", &e))?;
                        refused = true;
                    }
                }
            }
            BotAction::Quality(q) => {
                self.options.quality = Quality::from(q);
                refused |= self.update_subscriptions(room, out).await?;
                out.emit_event(json!({"event": "quality_changed", "quality": self.options.quality, "at_ms": at_ms}))?;
            }
            BotAction::Receive { audio, video } => {
                self.options.audio = audio;
                self.options.video = video;
                refused |= self.update_subscriptions(room, out).await?;
                out.emit_event(json!({"event": "receive_changed", "audio": audio, "video": video, "at_ms": at_ms}))?;
            }
            BotAction::Censor(ref identity) | BotAction::Uncensor(ref identity) => {
                let censored = matches!(action, BotAction::Censor(_));
                let identity = identity.clone();
                let who = room.participant_by_identity(&identity.as_str().into());
                let Some(who) = who else {
                    out.emit_event(json!({"event": "error", "request": "censor", "message": format!("{identity} is not in the room")}))?;
                    return Ok(true);
                };
                for stream in who.streams.clone() {
                    refused |= self.set_censored(room, &identity, &stream, censored, out).await?;
                }
            }
            BotAction::Unpublish => {
                for publication in std::mem::take(&mut self.publications) {
                    let key = publication.stream.key().to_owned();
                    drop(publication);
                    match room.unpublish(&key).await {
                        Ok(()) => out.emit_event(json!({"event": "unpublished", "key": key, "at_ms": at_ms}))?,
                        Err(e) => {
                            out.emit_event(error_line("unpublish", &e))?;
                            refused = true;
                        }
                    }
                }
            }
            BotAction::Publish => {
                if let (true, Some(plan)) = (self.publications.is_empty(), self.publish.clone()) {
                    refused |= self.start_publishing(room, &plan, out).await?;
                }
            }
            BotAction::Mic(device) => {
                let switch = self.publications.iter().find_map(|p| p.microphone.clone());
                let Some(switch) = switch else {
                    out.emit_event(
                        json!({"event": "error", "request": "mic", "message": "no microphone is published (--mic)"}),
                    )?;
                    return Ok(true);
                };
                switch.switch_to(device.parse().unwrap_or_default());
                out.emit_event(json!({"event": "mic_switched", "device": device, "at_ms": at_ms}))?;
            }
            BotAction::Speaker(device) => {
                let Some(speaker) = &self.speaker else {
                    out.emit_event(
                        json!({"event": "error", "request": "speaker", "message": "no speaker is playing (--speaker)"}),
                    )?;
                    return Ok(true);
                };
                speaker.switch().switch_to(device.parse().unwrap_or_default());
                out.emit_event(json!({"event": "speaker_switched", "device": device, "at_ms": at_ms}))?;
            }
            BotAction::AudioOnly(on) => match room.set_audio_only(on).await {
                Ok(()) => out.emit_event(json!({"event": "audio_only_changed", "audio_only": on, "at_ms": at_ms}))?,
                Err(e) => {
                    out.emit_event(error_line("update_subscription", &e))?;
                    refused = true;
                }
            },
            BotAction::Host(host) => refused |= crate::host::act(room, host, at_ms, out).await?,
        }
        Ok(refused)
    }

    async fn update_subscriptions(&mut self, room: &Room, out: &mut JsonLines<impl Write>) -> Step {
        let mut refused = false;
        for (p, key) in self.subscribed.clone() {
            match room.update_subscription(&p, &key, self.options).await {
                Ok(()) => {}
                // Unpublished, or its publisher left, while the request was on its way: the
                // subscription's end is on its way too. Not a refusal.
                Err(e) if matches!(e.code(), Some(ErrorCode::StreamNotFound | ErrorCode::ParticipantNotFound)) => {
                    self.subscribed.retain(|(q, k)| !(*q == p && *k == key));
                }
                Err(e) => {
                    out.emit_event(error_line("update_subscription", &e))?;
                    refused = true;
                }
            }
        }
        Ok(refused)
    }

    /// Writes `--report`, if asked for, with the connections' WebRTC statistics.
    pub async fn write_report(&self, room: &Room) -> std::io::Result<()> {
        let Some(path) = &self.report else { return Ok(()) };
        let webrtc = room.media_stats().await;
        let state = room.state();
        let levels: Vec<serde_json::Value> = room
            .audio_levels()
            .into_iter()
            .map(|l| {
                let identity = l.participant_id.as_ref().and_then(|id| state.participant(id)).map(|p| p.identity.0.clone());
                json!({"identity": identity, "track_id": l.track_id, "level": l.level, "local": l.participant_id.is_none()})
            })
            .collect();
        let streams = self.receiving.reports(&self.probe_tones);
        if let Some(dir) = &self.snapshot {
            self.receiving.write_snapshots(dir)?;
        }
        let first_frame_ms =
            streams.iter().filter(|s| s.kind == TrackKind::Video).filter_map(|s| s.first_frame_ms).min();
        let report = json!({
            "join_ms": self.join_ms,
            "first_frame_ms": first_frame_ms,
            "written_at": unix_ms(),
            "published": self.publications.iter().map(|p| p.stream.info()).collect::<Vec<_>>(),
            "streams": streams,
            "media_path": { "publisher": webrtc.publisher_path, "subscriber": webrtc.subscriber_path },
            "token_renewals": self.token_renewals,
            "errors": self.errors,
            "webrtc": webrtc,
            "audio_levels": levels,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
    }
}
