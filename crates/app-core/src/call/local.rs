//! The local side of a call: publishing the camera and microphone as stream `main`,
//! feeding them, and following a moderator's stop.

use std::sync::Arc;

use confer_client::media::{Codec, TrackOptions};
use confer_client::proto::track::{TrackKind, TrackSource};
use confer_client::LocalTrack;
use confer_media::audio::{DeviceSwitch, FarEndReceiver, Microphone};

use crate::publish::{self, unix_ms, FrameTap, MediaThread, MutedSpeech, PublishPlan, VideoSource};
use crate::view::{CallEvent, LocalDevice};

use super::join::request_error;
use super::{lock, Inner, LOCAL_TILE};

impl Inner {
    /// Publishes stream `main` (camera and microphone, as far as present), starting
    /// muted or with the camera off as the settings say.
    pub(super) async fn publish_main(self: &Arc<Self>, far: Option<FarEndReceiver>) {
        let media = lock(&self.local).media.clone();
        let fake_tone = media.microphone_tone();
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
        let size = media.video_size();
        let mut local = lock(&self.local);
        if let Some(track) = stream.track(TrackKind::Audio).cloned() {
            let (feeder, switch) = self.microphone_feeder(track, mic, fake_tone);
            (local.mic, local.mic_switch) = (Some(feeder), switch);
            local.mic_state = if media.start_muted { LocalDevice::Off } else { LocalDevice::On };
        }
        if let (Some(track), Some(source)) = (stream.track(TrackKind::Video).cloned(), video) {
            if media.start_camera_off {
                local.camera_state = LocalDevice::Off;
            } else {
                local.camera = Some(self.camera_feeder(track, source, size));
                local.camera_state = LocalDevice::On;
            }
        }
        local.main = Some(stream);
    }

    /// Encodes the microphone (or the test tone when there is none) into `track`, and
    /// says so when someone talks while it is muted.
    pub(super) fn microphone_feeder(
        self: &Arc<Self>,
        track: LocalTrack,
        mic: Option<Microphone>,
        tone: Option<f64>,
    ) -> (MediaThread, Option<DeviceSwitch>) {
        let sink = self.sink.clone();
        let heard = MutedSpeech::new(move || {
            sink(CallEvent::Notice {
                code: "speaking_while_muted".into(),
                message: "You are muted: unmute to be heard.".into(),
            })
        });
        match mic {
            Some(mic) => {
                let switch = mic.switch();
                (MediaThread::spawn("microphone", publish::mic_loop(track, mic, heard)), Some(switch))
            }
            None => {
                let hz = tone.unwrap_or(440.0);
                (MediaThread::spawn("microphone", publish::audio_loop(track, hz, heard)), None)
            }
        }
    }

    /// The camera's size as the quality setting asks.
    pub(super) fn video_size(&self) -> (usize, usize) {
        lock(&self.local).media.video_size()
    }

    /// Captures and encodes the camera, showing each frame in the local tile.
    pub(super) fn camera_feeder(
        self: &Arc<Self>,
        track: LocalTrack,
        source: VideoSource,
        (width, height): (usize, usize),
    ) -> MediaThread {
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
            first_frame: 0,
        };
        MediaThread::spawn("camera", publish::video_loop(track, plan, source))
    }

    pub(super) fn stop_media(&self) {
        let mut local = lock(&self.local);
        local.mic = None;
        local.camera = None;
        local.screen = None;
        drop(local);
        lock(&self.remote).readers.clear();
        self.hub.remove(LOCAL_TILE);
    }

    /// A moderator's censor of a local track shows on the local controls (and closes
    /// the camera); once lifted, the device is off until the user turns it on.
    pub(super) fn follow_censorship(&self) {
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
}
