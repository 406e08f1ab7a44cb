//! Track vocabulary shared by grants, room policy and (later) publications.

use serde::{Deserialize, Serialize};

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
    Data,
}

/// Where a track's media comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Microphone,
    Camera,
    ScreenShare,
    ScreenShareAudio,
}

impl TrackSource {
    pub const ALL: [TrackSource; 4] =
        [TrackSource::Microphone, TrackSource::Camera, TrackSource::ScreenShare, TrackSource::ScreenShareAudio];
}
