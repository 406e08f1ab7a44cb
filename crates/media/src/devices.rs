//! The device manager: everything a user can pick (microphones, speakers, cameras,
//! screens), what changed since the last look, and the choices to remember.
//!
//! Platforms mostly give no signal when a device comes or goes, so [`DeviceManager::poll`]
//! looks again; the app calls it every second or two while a picker or a call is open.

use serde::{Deserialize, Serialize};

use crate::audio::device::{AudioDevice, DeviceChange, DeviceChoice, DeviceWatcher, Direction};
use crate::audio::ProcessingConfig;
use crate::video::camera::{self, CameraInfo};

/// A user's picks, as settings store them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceChoices {
    pub microphone: DeviceChoice,
    pub speaker: DeviceChoice,
    /// `None`: the first camera.
    pub camera: Option<u32>,
    pub processing: ProcessingConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Devices {
    pub microphones: Vec<AudioDevice>,
    pub speakers: Vec<AudioDevice>,
    pub cameras: Vec<CameraInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Audio(DeviceChange),
    CameraAdded(CameraInfo),
    CameraRemoved(CameraInfo),
}

pub struct DeviceManager {
    audio: DeviceWatcher,
    cameras: Vec<CameraInfo>,
}

impl DeviceManager {
    pub fn new() -> Self {
        Self { audio: DeviceWatcher::new(), cameras: camera::list() }
    }

    pub fn devices(&self) -> Devices {
        let of = |d: Direction| self.audio.devices().iter().filter(|a| a.direction == d).cloned().collect();
        Devices { microphones: of(Direction::Input), speakers: of(Direction::Output), cameras: self.cameras.clone() }
    }

    /// Looks again: what was added, removed, or became the default.
    pub fn poll(&mut self) -> Vec<Change> {
        let mut changes: Vec<Change> = self.audio.poll().into_iter().map(Change::Audio).collect();
        let now = camera::list();
        changes.extend(now.iter().filter(|c| !self.cameras.contains(c)).cloned().map(Change::CameraAdded));
        changes.extend(self.cameras.iter().filter(|c| !now.contains(c)).cloned().map(Change::CameraRemoved));
        self.cameras = now;
        changes
    }
}

impl Default for DeviceManager {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_round_trip_and_default_when_missing() {
        let c = DeviceChoices { microphone: DeviceChoice::Named("USB".into()), camera: Some(1), ..Default::default() };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<DeviceChoices>(&json).unwrap(), c);
        // Settings written before a field existed still load.
        assert_eq!(serde_json::from_str::<DeviceChoices>("{}").unwrap(), DeviceChoices::default());
    }
}
