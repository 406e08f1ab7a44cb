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

/// Answer of `GET /v1/node` and `POST /v1/node/drain`: the node that answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// This node's id in its cluster; absent for a server on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// It starts no new meeting, and stops once its meetings have ended.
    pub draining: bool,
    /// Live sessions held here.
    pub sessions: u32,
    pub participants: u32,
}

/// Answer of `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}
