//! Join tokens, refresh tokens and invites.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use confer_proto::token::{
    CreateInvite, CreateToken, ExchangeInvite, Grants, Invite, RefreshToken, TokenPair, DEFAULT_REFRESH_TTL_SECS,
};
use confer_proto::{ErrorCode, Identity, RoomId};

use super::{ApiAuth, ApiJson, ApiPath};
use crate::auth::{hash_secret, random_secret};
use crate::error::{ApiError, ApiResult};
use crate::hub::Now;
use crate::store::{InviteUse, RefreshGrant, RefreshUse, SpentReason, Storage};
use crate::ServerState;

const MAX_TOKEN_TTL_SECS: u64 = 24 * 3600;
const DEFAULT_INVITE_TTL_SECS: u64 = 24 * 3600;
const MAX_INVITE_TTL_SECS: u64 = 30 * 24 * 3600;

pub async fn create(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<Json<TokenPair>> {
    if req.ttl.is_some_and(|ttl| ttl == 0 || ttl > MAX_TOKEN_TTL_SECS) {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            format!("ttl must be 1..={MAX_TOKEN_TTL_SECS} seconds"),
        ));
    }
    check_identity(&req.identity)?;
    state.store.room(&req.room).await?.ok_or(ErrorCode::RoomNotFound)?;
    let grant = RefreshGrant {
        room: req.room,
        name: req.name.unwrap_or_else(|| req.identity.0.clone()),
        identity: req.identity,
        grants: req.grants,
        ttl: req.ttl,
    };
    Ok(Json(issue(&state, grant).await?))
}

pub async fn refresh(
    State(state): State<Arc<ServerState>>,
    ApiJson(req): ApiJson<RefreshToken>,
) -> ApiResult<Json<TokenPair>> {
    let now = Now::system();
    let grant = match state.store.take_refresh(hash_secret(&req.refresh_token), now.unix_ms).await? {
        RefreshUse::Granted(grant) => grant,
        RefreshUse::Unknown => return Err(ApiError::new(ErrorCode::InvalidToken, "unknown refresh token")),
        RefreshUse::Expired => return Err(ApiError::new(ErrorCode::TokenExpired, "the refresh token has expired")),
        RefreshUse::Spent(SpentReason::Used) => return Err(ErrorCode::RefreshTokenUsed.into()),
        RefreshUse::Spent(SpentReason::Kicked) => {
            return Err(ApiError::new(ErrorCode::TokenRevoked, "you were removed from this room"))
        }
        RefreshUse::Spent(SpentReason::RoomDeleted) => {
            return Err(ApiError::new(ErrorCode::RoomNotFound, "the room was deleted"))
        }
    };
    let room = state.store.room(&grant.room).await?.ok_or(ErrorCode::RoomNotFound)?;
    if grant.grants.guest && !room.policy.allow_guests {
        return Err(ApiError::new(ErrorCode::DisabledByPolicy, "this room no longer admits guests"));
    }
    Ok(Json(issue(&state, grant).await?))
}

pub async fn create_invite(
    _: ApiAuth,
    State(state): State<Arc<ServerState>>,
    ApiPath(room): ApiPath<RoomId>,
    ApiJson(req): ApiJson<CreateInvite>,
) -> ApiResult<Json<Invite>> {
    let ttl = req.ttl.unwrap_or(DEFAULT_INVITE_TTL_SECS);
    if ttl == 0 || ttl > MAX_INVITE_TTL_SECS {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            format!("ttl must be 1..={MAX_INVITE_TTL_SECS} seconds"),
        ));
    }
    if req.max_uses == Some(0) {
        return Err(ApiError::new(ErrorCode::MalformedRequest, "max_uses must be at least 1"));
    }
    state.store.room(&room).await?.ok_or(ErrorCode::RoomNotFound)?;
    let secret = random_secret(18);
    let expires_at = Now::system().unix_ms + ttl * 1000;
    state.store.insert_invite(hash_secret(&secret), room.clone(), expires_at, req.max_uses).await?;
    let link = page_link(&state.public_url, &room, &secret);
    let app_link = app_link(&state.public_url, &room, "invite", &secret);
    Ok(Json(Invite { invite: secret, room, expires_at, max_uses: req.max_uses, link, app_link }))
}

pub async fn exchange_invite(
    State(state): State<Arc<ServerState>>,
    ApiJson(req): ApiJson<ExchangeInvite>,
) -> ApiResult<Json<TokenPair>> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::new(ErrorCode::MalformedRequest, "a guest needs a name of 1 to 100 bytes"));
    }
    let hash = hash_secret(&req.invite);
    // The policy is checked before the invite is used, so a refusal does not use it up.
    let room = state.store.invite_room(hash.clone(), Now::system().unix_ms).await?.ok_or(ErrorCode::InvalidInvite)?;
    let stored = state.store.room(&room).await?.ok_or(ErrorCode::RoomNotFound)?;
    if !stored.policy.allow_guests {
        return Err(ApiError::new(ErrorCode::DisabledByPolicy, "this room does not admit guests"));
    }
    let room = match state.store.use_invite(hash, Now::system().unix_ms).await? {
        InviteUse::Accepted(room) => room,
        InviteUse::Invalid => return Err(ErrorCode::InvalidInvite.into()),
    };
    let grant = RefreshGrant {
        room,
        identity: Identity(format!("guest-{}", random_secret(6))),
        name: name.to_owned(),
        grants: Grants { guest: true, moderator: false, ..Grants::default() },
        ttl: None,
    };
    Ok(Json(issue(&state, grant).await?))
}

/// Mints a join token (with the grant's lifetime, else the server's) and stores a fresh
/// refresh token for the same grant.
async fn issue(state: &ServerState, grant: RefreshGrant) -> ApiResult<TokenPair> {
    let now = Now::system();
    let ttl = grant.ttl.unwrap_or(state.token_ttl_secs);
    let token = state.credentials.mint(&grant.room, &grant.identity, &grant.name, &grant.grants, now.unix_secs(), ttl);
    let refresh_token = random_secret(24);
    let refresh_expires_at = now.unix_ms + DEFAULT_REFRESH_TTL_SECS * 1000;
    let pair = TokenPair {
        token,
        expires_at: (now.unix_secs() + ttl) * 1000,
        refresh_token: refresh_token.clone(),
        refresh_expires_at,
        room: grant.room.clone(),
        identity: grant.identity.clone(),
    };
    state.store.insert_refresh(hash_secret(&refresh_token), grant, refresh_expires_at).await?;
    Ok(pair)
}

fn check_identity(identity: &Identity) -> ApiResult<()> {
    if identity.0.is_empty() || identity.0.len() > 200 || identity.0.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "an identity is 1 to 200 bytes without control characters",
        ));
    }
    Ok(())
}

/// The invite's join page on this server (`/j/{room}?invite=...`): what people click.
pub(super) fn page_link(public_url: &str, room: &RoomId, invite: &str) -> String {
    format!("{}/j/{}?invite={}", public_url.trim_end_matches('/'), url_encode(&room.0), url_encode(invite))
}

/// The link that opens the Confer app: `confer://join?server=...&room=...&{kind}=...`.
pub(super) fn app_link(public_url: &str, room: &RoomId, kind: &str, secret: &str) -> String {
    format!(
        "confer://join?server={}&room={}&{kind}={}",
        url_encode(public_url),
        url_encode(&room.0),
        url_encode(secret)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(super) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_encoding() {
        assert_eq!(super::url_encode("http://a:1/x y"), "http%3A%2F%2Fa%3A1%2Fx%20y");
        let room = confer_proto::RoomId("stand up".into());
        assert_eq!(super::page_link("https://m.example/", &room, "s3"), "https://m.example/j/stand%20up?invite=s3");
        assert_eq!(
            super::app_link("https://m.example", &room, "invite", "s3"),
            "confer://join?server=https%3A%2F%2Fm.example&room=stand%20up&invite=s3"
        );
    }
}
