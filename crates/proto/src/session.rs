//! Live sessions as the room API reports them.

use serde::{Deserialize, Serialize};

use crate::signal::ParticipantInfo;
use crate::{RoomId, UnixMillis};

/// One live session: a room while anyone is in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub room: RoomId,
    pub started_at: UnixMillis,
    pub participants: Vec<ParticipantInfo>,
}

/// Answer of `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}
