//! Devices during the call: the user's picks applied live, on the same tracks (no
//! renegotiation), and devices that come and go under a running call.
//!
//! The microphone and speaker move with their keepers' [`DeviceSwitch`] (a gap of a few
//! tens of milliseconds); a vanished one is replaced by the system default by the keeper
//! itself, and the call only says so. The camera restarts its feeder on the same track
//! (the new camera's size may differ: the next keyframe carries it).

use std::sync::Arc;

use confer_client::proto::track::TrackKind;
use confer_media::audio::{AudioDevice, DeviceChange, Direction, Microphone};
use confer_media::devices::Change;

use crate::publish::VideoSource;
use crate::settings::MediaSettings;
use crate::view::{CallEvent, LocalDevice};
use crate::CallError;

use super::{lock, Call, Inner, LOCAL_TILE};

impl Call {
    /// Moves the call to the microphone, speaker and camera that `picked` names, live.
    /// Other settings (quality, processing, the network) apply to the next call.
    pub async fn use_devices(&self, picked: &MediaSettings) -> Result<(), CallError> {
        let inner = &self.inner;
        let before = lock(&inner.local).media.clone();
        if picked.speaker != before.speaker {
            if let Some(speaker) = &inner.speaker {
                speaker.switch().switch_to(picked.speaker_choice());
            }
            lock(&inner.local).media.speaker = picked.speaker.clone();
        }
        if picked.microphone != before.microphone {
            inner.use_microphone(picked).await?;
        }
        if picked.camera != before.camera {
            inner.use_camera(picked)?;
        }
        inner.update();
        Ok(())
    }

    /// Devices came or went (the shell looks every couple of seconds): one in use that
    /// went away is replaced by the default, and the user is told.
    pub async fn devices_changed(&self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Audio(DeviceChange::Removed(device)) => self.inner.audio_device_gone(device),
                Change::CameraRemoved(camera) => self.inner.camera_gone(camera.index, &camera.name).await,
                _ => {}
            }
        }
    }
}

impl Inner {
    /// The microphone moves to `picked`'s: between devices its keeper switches; to or
    /// from the test tone the track gets a new feeder.
    async fn use_microphone(self: &Arc<Self>, picked: &MediaSettings) -> Result<(), CallError> {
        let (track, switch) = {
            let local = lock(&self.local);
            let track = local.main.as_ref().and_then(|s| s.track(TrackKind::Audio).cloned());
            (track, local.mic_switch.clone())
        };
        let Some(track) = track else {
            return Err(CallError::new(
                "no_microphone",
                "This call started without a microphone: leave and join again to use one.",
            ));
        };
        let tone = picked.microphone_tone();
        match (switch, tone) {
            (Some(switch), None) => switch.switch_to(picked.microphone_choice()),
            _ => {
                let (choice, processing) = (picked.microphone_choice(), picked.processing());
                let mic = match tone {
                    Some(_) => None,
                    None => {
                        let opened = tokio::task::spawn_blocking(move || Microphone::open(choice, processing, None))
                            .await
                            .map_err(|e| CallError::new("audio_device_failed", e.to_string()))?;
                        Some(
                            opened.map_err(|e| {
                                CallError::new(e.code(), format!("The microphone cannot be opened: {e}."))
                            })?,
                        )
                    }
                };
                let (feeder, switch) = self.microphone_feeder(track, mic, tone);
                let mut local = lock(&self.local);
                (local.mic, local.mic_switch) = (Some(feeder), switch);
            }
        }
        tracing::info!(microphone = ?picked.microphone, "microphone switched");
        lock(&self.local).media.microphone = picked.microphone.clone();
        Ok(())
    }

    /// The camera moves to `picked`'s; if it is on, its feeder restarts on the same track.
    fn use_camera(self: &Arc<Self>, picked: &MediaSettings) -> Result<(), CallError> {
        let source = picked.video_source();
        let mut local = lock(&self.local);
        let track = local.main.as_ref().and_then(|s| s.track(TrackKind::Video).cloned());
        let Some(track) = track else {
            return Err(CallError::new(
                "no_camera",
                "This call started without a camera: leave and join again to use one.",
            ));
        };
        local.media.camera = picked.camera.clone();
        if local.camera_state == LocalDevice::On {
            local.camera = None; // closes the old camera before the new one opens
            match source {
                Some(source) => {
                    let size = local.media.video_size();
                    drop(local);
                    let feeder = self.camera_feeder(track, source, size);
                    lock(&self.local).camera = Some(feeder);
                }
                None => {
                    drop(local);
                    self.hub.remove(LOCAL_TILE);
                }
            }
        }
        tracing::info!(camera = ?picked.camera, "camera switched");
        Ok(())
    }

    /// A microphone or speaker went away: if it was the one picked, the keeper is on
    /// the default already; say so.
    fn audio_device_gone(&self, device: &AudioDevice) {
        let media = lock(&self.local).media.clone();
        let (picked, what) = match device.direction {
            Direction::Input => (media.microphone, "microphone"),
            Direction::Output => (media.speaker, "speaker"),
        };
        if picked.is_some_and(|p| p == device.id || p == device.name) {
            tracing::warn!(device = %device.name, "a device in use went away: on the default now");
            (self.sink)(CallEvent::Notice {
                code: "device_lost".into(),
                message: format!("“{}” was disconnected: using the default {what}.", device.name),
            });
        }
    }

    /// A camera went away: if it was the one in use, the first camera left takes over,
    /// or the camera turns off.
    async fn camera_gone(self: &Arc<Self>, index: u32, name: &str) {
        let media = lock(&self.local).media.clone();
        if media.video_source() != Some(VideoSource::Camera(index)) {
            return;
        }
        tracing::warn!(camera = name, "the camera in use went away");
        let first = MediaSettings { camera: None, ..media };
        let message = if first.video_source().is_some_and(|s| s != VideoSource::Camera(index)) {
            if let Err(e) = self.use_camera(&first) {
                tracing::warn!(error = %e, "no camera to fall back on");
            }
            format!("“{name}” was disconnected: using another camera.")
        } else {
            let track = lock(&self.local).main.as_ref().and_then(|s| s.track(TrackKind::Video).cloned());
            if let Some(track) = track {
                if let Err(e) = self.room.set_track_muted(&track, true).await {
                    tracing::warn!(error = %e, "the camera's track could not be muted");
                }
            }
            let mut local = lock(&self.local);
            local.camera = None;
            if local.camera_state == LocalDevice::On {
                local.camera_state = LocalDevice::Off;
            }
            drop(local);
            self.hub.remove(LOCAL_TILE);
            format!("“{name}” was disconnected: your camera is off.")
        };
        (self.sink)(CallEvent::Notice { code: "device_lost".into(), message });
        self.update();
    }
}
