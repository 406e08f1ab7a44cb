//! Rooms: the stored definitions behind sessions, and the room API's bodies.

use serde::{Deserialize, Serialize};

use crate::track::TrackSource;
use crate::{Bytes, Identity, RoomId, UnixMillis};

/// What a room allows. Every field has a permissive default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomPolicy {
    /// At most this many participants at once; `None` means no limit.
    pub max_participants: Option<u32>,
    /// Sources members may publish.
    pub publish_sources: Vec<TrackSource>,
    /// Whether invite holders may join as guests.
    pub allow_guests: bool,
    /// Whether the room carries audio only.
    pub audio_only: bool,
    /// Whether people who are not the room's managers wait in a lobby until a
    /// moderator lets them in.
    pub lobby: bool,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            max_participants: None,
            publish_sources: TrackSource::ALL.to_vec(),
            allow_guests: true,
            audio_only: false,
            lobby: false,
        }
    }
}

/// A stored room, as the room API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub id: RoomId,
    pub name: String,
    /// Identities allowed to join; empty admits anyone with a valid token or invite.
    pub members: Vec<Identity>,
    /// Identities with moderator rights.
    pub managers: Vec<Identity>,
    pub public_meta: Bytes,
    pub private_meta: Bytes,
    pub policy: RoomPolicy,
    /// Starts at 1 and increases by one on every update.
    pub version: u64,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Room {
    /// The part of the room that participants see (no member lists, no private meta).
    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            public_meta: self.public_meta.clone(),
            policy: self.policy.clone(),
            version: self.version,
        }
    }
}

/// A room as participants see it over signaling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub id: RoomId,
    pub name: String,
    pub public_meta: Bytes,
    pub policy: RoomPolicy,
    pub version: u64,
}

/// `POST /v1/rooms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateRoom {
    /// Optional id; the server generates one when absent.
    pub id: Option<RoomId>,
    pub name: String,
    pub members: Vec<Identity>,
    pub managers: Vec<Identity>,
    pub public_meta: Bytes,
    pub private_meta: Bytes,
    pub policy: RoomPolicy,
}

/// `PUT /v1/rooms/{id}`: a full replacement of the room's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoom {
    pub name: String,
    #[serde(default)]
    pub members: Vec<Identity>,
    #[serde(default)]
    pub managers: Vec<Identity>,
    #[serde(default)]
    pub public_meta: Bytes,
    #[serde(default)]
    pub private_meta: Bytes,
    #[serde(default)]
    pub policy: RoomPolicy,
    /// The version this update was based on. A different current version is refused
    /// with `version_conflict` unless `force` is set.
    pub version: u64,
    #[serde(default)]
    pub force: bool,
}

/// Sort orders for `GET /v1/rooms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomSort {
    #[default]
    CreatedAsc,
    CreatedDesc,
    NameAsc,
    NameDesc,
}

/// Query of `GET /v1/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListRooms {
    pub skip: u32,
    /// 1..=100.
    pub limit: u32,
    pub sort: RoomSort,
}

impl ListRooms {
    pub const MAX_LIMIT: u32 = 100;
}

impl Default for ListRooms {
    fn default() -> Self {
        Self { skip: 0, limit: 20, sort: RoomSort::default() }
    }
}

/// Answer of `GET /v1/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPage {
    pub rooms: Vec<Room>,
    /// How many rooms exist in all.
    pub total: u64,
    pub skip: u32,
    pub limit: u32,
}
