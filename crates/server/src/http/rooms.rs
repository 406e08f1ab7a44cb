//! `/v1/rooms`: create, list, get, update (full replacement, optimistic versioning), delete.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use confer_proto::room::{CreateRoom, ListRooms, Room, RoomPage, UpdateRoom};
use confer_proto::signal::DisconnectReason;
use confer_proto::{Bytes, ErrorCode, Identity, RoomId};

use super::{ApiAuth, ApiJson, ApiPath, ApiQuery};
use crate::auth::random_secret;
use crate::error::{ApiError, ApiResult};
use crate::hub::Now;
use crate::store::Storage;
use crate::ServerState;

/// Largest `public_meta` or `private_meta`.
const MAX_META_BYTES: usize = 64 * 1024;
/// Longest member or manager list.
const MAX_IDENTITIES: usize = 10_000;

pub async fn create(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiJson(req): ApiJson<CreateRoom>,
) -> ApiResult<(StatusCode, Json<Room>)> {
    let id = match req.id {
        Some(id) => {
            check_room_id(&id)?;
            id
        }
        None => RoomId(format!("RM_{}", random_secret(9))),
    };
    check_fields(&req.name, &req.members, &req.managers, &req.public_meta, &req.private_meta)?;
    let now = Now::system().unix_ms;
    let room = Room {
        id,
        name: req.name,
        members: req.members,
        managers: req.managers,
        public_meta: req.public_meta,
        private_meta: req.private_meta,
        policy: req.policy,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    if !state.store.insert_room(room.clone()).await? {
        return Err(ErrorCode::RoomExists.into());
    }
    tracing::info!(room = %room.id, name = %room.name, "room created");
    Ok((StatusCode::CREATED, Json(room)))
}

pub async fn list(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiQuery(q): ApiQuery<ListRooms>,
) -> ApiResult<Json<RoomPage>> {
    if q.limit == 0 || q.limit > ListRooms::MAX_LIMIT {
        return Err(ApiError::new(ErrorCode::MalformedRequest, format!("limit must be 1..={}", ListRooms::MAX_LIMIT)));
    }
    let (rooms, total) = state.store.list_rooms(q.skip, q.limit, q.sort).await?;
    Ok(Json(RoomPage { rooms, total, skip: q.skip, limit: q.limit }))
}

pub async fn get(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiPath(id): ApiPath<RoomId>,
) -> ApiResult<Json<Room>> {
    let room = state.store.room(&id).await?.ok_or(ErrorCode::RoomNotFound)?;
    Ok(Json(room))
}

pub async fn update(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiPath(id): ApiPath<RoomId>,
    ApiJson(req): ApiJson<UpdateRoom>,
) -> ApiResult<Json<Room>> {
    check_fields(&req.name, &req.members, &req.managers, &req.public_meta, &req.private_meta)?;
    let room = Room {
        id: id.clone(),
        name: req.name,
        members: req.members,
        managers: req.managers,
        public_meta: req.public_meta,
        private_meta: req.private_meta,
        policy: req.policy,
        version: req.version,
        created_at: 0,
        updated_at: Now::system().unix_ms,
    };
    let expected = (!req.force).then_some(req.version);
    let (room, updated) = state.store.update_room(room, expected).await?.ok_or(ErrorCode::RoomNotFound)?;
    if !updated {
        return Err(ApiError::new(
            ErrorCode::VersionConflict,
            format!("the room is at version {}, not {}; fetch it again or force", room.version, req.version),
        ));
    }
    tracing::info!(room = %room.id, version = room.version, "room updated");
    state.hub.room_updated(&room, Now::system());
    Ok(Json(room))
}

pub async fn delete(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiPath(id): ApiPath<RoomId>,
) -> ApiResult<StatusCode> {
    if !state.store.delete_room(&id).await? {
        return Err(ErrorCode::RoomNotFound.into());
    }
    state.hub.end_session(&id, DisconnectReason::RoomDeleted, Now::system());
    tracing::info!(room = %id, "room deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn check_room_id(id: &RoomId) -> ApiResult<()> {
    let ok =
        !id.0.is_empty() && id.0.len() <= 64 && id.0.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::MalformedRequest, "a room id is 1 to 64 of A-Z a-z 0-9 - _"))
    }
}

fn check_fields(
    name: &str,
    members: &[Identity],
    managers: &[Identity],
    public: &Bytes,
    private: &Bytes,
) -> ApiResult<()> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::new(ErrorCode::MalformedRequest, "a room needs a name of 1 to 200 bytes"));
    }
    if members.len() > MAX_IDENTITIES || managers.len() > MAX_IDENTITIES {
        return Err(ApiError::new(ErrorCode::TooLarge, format!("at most {MAX_IDENTITIES} members and managers")));
    }
    if members.iter().chain(managers).any(|i| i.0.is_empty()) {
        return Err(ApiError::new(ErrorCode::MalformedRequest, "empty identity in members or managers"));
    }
    if public.0.len() > MAX_META_BYTES || private.0.len() > MAX_META_BYTES {
        return Err(ApiError::new(ErrorCode::TooLarge, format!("room metadata is limited to {MAX_META_BYTES} bytes")));
    }
    Ok(())
}
