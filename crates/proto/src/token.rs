//! Join tokens, refresh tokens and invites.
//!
//! A join token is a JWT (HS256, signed with the API secret, `iss` = the API key) whose
//! claims are [`JoinClaims`]. A refresh token is an opaque secret that the server
//! exchanges for a new join token (and a new refresh token) at `POST /v1/tokens/refresh`.

use serde::{Deserialize, Serialize};

use crate::track::TrackSource;
use crate::{Identity, RoomId, UnixMillis};

/// Default lifetime of a join token, in seconds.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 600;
/// Default lifetime of a refresh token, in seconds.
pub const DEFAULT_REFRESH_TTL_SECS: u64 = 24 * 3600;

/// What the holder of a join token may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    pub publish: bool,
    /// Sources the holder may publish; `None` means every source the room's policy allows.
    pub publish_sources: Option<Vec<TrackSource>>,
    pub subscribe: bool,
    /// Whether the holder may send and receive messages and data.
    pub data: bool,
    /// Moderator rights (kick, censor, end session) regardless of the room's managers.
    pub moderator: bool,
    /// Set on tokens bought with an invite: the holder is a guest, not a member.
    pub guest: bool,
}

impl Default for Grants {
    fn default() -> Self {
        Self { publish: true, publish_sources: None, subscribe: true, data: true, moderator: false, guest: false }
    }
}

/// The claims of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    /// The API key that signed the token.
    pub iss: String,
    /// The identity.
    pub sub: Identity,
    pub room: RoomId,
    /// Display name.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub grants: Grants,
    /// Seconds since the Unix epoch.
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    /// Unique id of this token.
    pub jti: String,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub room: RoomId,
    pub identity: Identity,
    #[serde(default)]
    pub name: Option<String>,
    /// Join-token lifetime in seconds (1..=86400); default [`DEFAULT_TOKEN_TTL_SECS`].
    #[serde(default)]
    pub ttl: Option<u64>,
    #[serde(default)]
    pub grants: Grants,
}

/// A join token and the refresh token that renews it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    pub token: String,
    pub expires_at: UnixMillis,
    pub refresh_token: String,
    pub refresh_expires_at: UnixMillis,
    pub room: RoomId,
    pub identity: Identity,
}

/// `POST /v1/tokens/refresh`. Needs no API credentials: the refresh token is the
/// credential. The refresh token is rotated: the old one stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshToken {
    pub refresh_token: String,
}

/// `POST /v1/rooms/{id}/invites`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateInvite {
    /// Lifetime in seconds; default one day.
    pub ttl: Option<u64>,
    /// How many times the invite can be exchanged; `None` means unlimited.
    pub max_uses: Option<u32>,
}

/// An invite as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The secret that goes in a join link.
    pub invite: String,
    pub room: RoomId,
    pub expires_at: UnixMillis,
    pub max_uses: Option<u32>,
    /// The invite's join page, `<public URL>/j/<room>?invite=<invite>`: the link to
    /// send people. It opens the app, or says why the invite cannot be used.
    pub link: String,
    /// The same invite as a `confer://join?...` link, which opens the app directly.
    pub app_link: String,
}

/// `POST /v1/invites/exchange`. Needs no API credentials: the invite is the credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeInvite {
    pub invite: String,
    /// The guest's display name.
    pub name: String,
}
