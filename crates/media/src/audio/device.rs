//! Audio devices: list them, resolve a user's choice to a device, and notice changes.
//!
//! On Linux cpal talks to PulseAudio (or PipeWire's Pulse server) directly when one
//! runs, so devices are the sinks and sources a user knows by name; elsewhere, and on
//! bare ALSA, the platform's host. A choice is either "the system default", which
//! follows the default as it changes, or a device by id or name, which falls back to
//! the default while that device is missing.

use std::fmt;
use std::str::FromStr;

use cpal::traits::{DeviceTrait, HostTrait};
use serde::{Deserialize, Serialize};

use super::AudioError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Input,
    Output,
}

/// Which device a user chose (what settings remember).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// The system default, followed as it changes.
    #[default]
    Default,
    /// A device by id, or by (part of) its name.
    Named(String),
}

impl FromStr for DeviceChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s.is_empty() || s.eq_ignore_ascii_case("default") { Self::Default } else { Self::Named(s.to_owned()) })
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Named(n) => f.write_str(n),
        }
    }
}

/// A device as a picker shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AudioDevice {
    /// Stable across runs where the platform allows (what a choice should store).
    pub id: String,
    pub name: String,
    pub direction: Direction,
    pub is_default: bool,
}

/// The audio host of this platform (see the module documentation).
pub fn host() -> cpal::Host {
    cpal::default_host()
}

fn id_of(d: &cpal::Device) -> String {
    d.id().map(|id| id.id().to_owned()).unwrap_or_else(|_| d.to_string())
}

fn name_of(d: &cpal::Device) -> String {
    d.description().map(|desc| desc.name().to_owned()).unwrap_or_else(|_| d.to_string())
}

fn default_device(host: &cpal::Host, direction: Direction) -> Option<cpal::Device> {
    match direction {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    }
}

/// The devices of one direction, the default first.
pub fn list(host: &cpal::Host, direction: Direction) -> Result<Vec<AudioDevice>, AudioError> {
    let default_id = default_device(host, direction).map(|d| id_of(&d));
    let devices = match direction {
        Direction::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    }
    .map_err(|e| AudioError::Device(e.to_string()))?;
    let mut out: Vec<AudioDevice> = devices
        .iter()
        .map(|d| {
            let id = id_of(d);
            AudioDevice { is_default: default_id.as_ref() == Some(&id), name: name_of(d), id, direction }
        })
        .collect();
    out.sort_by_key(|d| !d.is_default);
    Ok(out)
}

/// The device a choice means now, and whether it is the one chosen (`false`: the
/// chosen one is missing and this is the default standing in).
pub fn resolve(
    host: &cpal::Host,
    direction: Direction,
    choice: &DeviceChoice,
) -> Result<(cpal::Device, bool), AudioError> {
    if let DeviceChoice::Named(wanted) = choice {
        let devices = match direction {
            Direction::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
            Direction::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
        }
        .unwrap_or_default();
        let lower = wanted.to_lowercase();
        let found = devices
            .iter()
            .find(|d| id_of(d) == *wanted)
            .or_else(|| devices.iter().find(|d| name_of(d) == *wanted))
            .or_else(|| devices.iter().find(|d| name_of(d).to_lowercase().contains(&lower)));
        if let Some(d) = found {
            return Ok((d.clone(), true));
        }
        tracing::warn!(device = %wanted, ?direction, "chosen audio device not found: using the default");
    }
    let d = default_device(host, direction)
        .ok_or_else(|| AudioError::NoDevice(format!("no default {direction:?} audio device").to_lowercase()))?;
    Ok((d, matches!(choice, DeviceChoice::Default)))
}

/// The id of the current default device.
pub fn default_id(host: &cpal::Host, direction: Direction) -> Option<String> {
    default_device(host, direction).map(|d| id_of(&d))
}

/// What changed between two looks at the devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum DeviceChange {
    Added(AudioDevice),
    Removed(AudioDevice),
    DefaultChanged { direction: Direction, id: Option<String> },
}

/// Notices devices coming and going by polling (most platforms give cpal no signal).
pub struct DeviceWatcher {
    host: cpal::Host,
    known: Vec<AudioDevice>,
}

impl DeviceWatcher {
    pub fn new() -> Self {
        let host = host();
        let known = snapshot(&host);
        Self { host, known }
    }

    pub fn devices(&self) -> &[AudioDevice] {
        &self.known
    }

    /// Looks again; what changed since the last look.
    pub fn poll(&mut self) -> Vec<DeviceChange> {
        let now = snapshot(&self.host);
        let changes = diff(&self.known, &now);
        self.known = now;
        changes
    }
}

impl Default for DeviceWatcher {
    fn default() -> Self {
        Self::new()
    }
}

fn snapshot(host: &cpal::Host) -> Vec<AudioDevice> {
    [Direction::Input, Direction::Output].into_iter().flat_map(|d| list(host, d).unwrap_or_default()).collect()
}

fn diff(before: &[AudioDevice], after: &[AudioDevice]) -> Vec<DeviceChange> {
    let same = |a: &AudioDevice, b: &AudioDevice| a.id == b.id && a.direction == b.direction;
    let mut changes: Vec<DeviceChange> =
        after.iter().filter(|d| !before.iter().any(|b| same(b, d))).map(|d| DeviceChange::Added(d.clone())).collect();
    changes
        .extend(before.iter().filter(|b| !after.iter().any(|d| same(b, d))).map(|b| DeviceChange::Removed(b.clone())));
    for direction in [Direction::Input, Direction::Output] {
        let default =
            |list: &[AudioDevice]| list.iter().find(|d| d.direction == direction && d.is_default).map(|d| d.id.clone());
        let (was, is) = (default(before), default(after));
        if was != is {
            changes.push(DeviceChange::DefaultChanged { direction, id: is });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, direction: Direction, is_default: bool) -> AudioDevice {
        AudioDevice { id: id.into(), name: id.into(), direction, is_default }
    }

    #[test]
    fn changes_between_two_looks() {
        let before = vec![dev("mic", Direction::Input, true), dev("spk", Direction::Output, true)];
        let after = vec![
            dev("mic", Direction::Input, false),
            dev("usb", Direction::Input, true),
            dev("spk", Direction::Output, true),
        ];
        assert_eq!(
            diff(&before, &after),
            vec![
                DeviceChange::Added(dev("usb", Direction::Input, true)),
                DeviceChange::DefaultChanged { direction: Direction::Input, id: Some("usb".into()) },
            ]
        );
        assert_eq!(diff(&after, &after), vec![]);
        let gone = diff(&after, &after[..1]);
        assert!(gone.contains(&DeviceChange::Removed(dev("spk", Direction::Output, true))));
    }

    #[test]
    fn choices_parse_and_print() {
        assert_eq!("default".parse::<DeviceChoice>().unwrap(), DeviceChoice::Default);
        assert_eq!("vmic".parse::<DeviceChoice>().unwrap(), DeviceChoice::Named("vmic".into()));
        assert_eq!(DeviceChoice::Named("vmic".into()).to_string(), "vmic");
    }
}
