//! The one catalog of error codes, shared by HTTP and signaling.
//!
//! Codes are stable numbers: a code's number and name never change meaning once
//! released. They are grouped by the hundred-block: 1xxx the request itself, 2xxx
//! authentication and authorization, 3xxx the things a request names, 4xxx limits and
//! room policy, 5xxx the server. Clients branch on `code`, never on `message`.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! catalog {
    ($( $(#[$doc:meta])* $variant:ident = $num:literal, $name:literal, $status:literal, $msg:literal; )*) => {
        /// A stable, numbered error condition. See the module docs for the numbering.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in catalog order (for documentation and exhaustive tests).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable number.
            pub const fn number(self) -> u16 {
                match self { $(ErrorCode::$variant => $num,)* }
            }

            /// The stable snake_case name.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The HTTP status the code maps to on the room API.
            pub const fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// A human-readable default message.
            pub const fn default_message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $msg,)* }
            }

            pub fn from_number(n: u16) -> Option<Self> {
                match n { $($num => Some(ErrorCode::$variant),)* _ => None }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

catalog! {
    /// The body is not valid JSON, misses a field or has a value out of range.
    MalformedRequest = 1000, "malformed_request", 400, "the request is malformed";
    /// A message or body is over the size limit.
    TooLarge = 1001, "too_large", 413, "the request is too large";
    /// Too many requests in a short time.
    RateLimited = 1002, "rate_limited", 429, "too many requests, slow down";
    /// A signaling request other than `join` arrived before a successful join.
    NotJoined = 1003, "not_joined", 400, "join the room first";
    /// No such route.
    NotFound = 1004, "not_found", 404, "no such resource";
    /// An SDP offer or answer could not be applied, or a media section it names is missing.
    InvalidSdp = 1005, "invalid_sdp", 400, "the session description cannot be used";
    /// An HTTP request (body and answer included) took longer than the server allows.
    RequestTimeout = 1006, "request_timeout", 408, "the request took too long";
    /// A request from someone still waiting in the lobby (only `leave` and `ping` are).
    NotAdmitted = 1007, "not_admitted", 403, "waiting for a moderator to let you in";
    /// The room API was called without valid API credentials.
    Unauthorized = 2000, "unauthorized", 401, "missing or wrong API credentials";
    /// A join or refresh token that is malformed or has a bad signature.
    InvalidToken = 2001, "invalid_token", 401, "the token is invalid";
    /// A join or refresh token past its expiry.
    TokenExpired = 2002, "token_expired", 401, "the token has expired";
    /// The token names another room than the one being joined.
    RoomMismatch = 2003, "room_mismatch", 403, "the token is for another room";
    /// The action is beyond the participant's grants or role.
    PermissionDenied = 2004, "permission_denied", 403, "permission denied";
    /// The room admits only its members and the identity is not one.
    NotAMember = 2005, "not_a_member", 403, "not a member of this room";
    /// The invite is unknown, expired or used up.
    InvalidInvite = 2006, "invalid_invite", 401, "the invite is invalid or has expired";
    /// The token was taken out of use: its holder was kicked from the room (join tokens
    /// issued before the kick, and refresh tokens), or it was issued before the room was
    /// created again under the same id.
    TokenRevoked = 2007, "token_revoked", 401, "the token was revoked";
    /// The refresh token was exchanged already (by a concurrent or earlier request); use
    /// the one that request returned.
    RefreshTokenUsed = 2008, "refresh_token_used", 409, "the refresh token was used already";
    /// No room with that id.
    RoomNotFound = 3000, "room_not_found", 404, "room not found";
    /// A room with that id exists already.
    RoomExists = 3001, "room_exists", 409, "a room with this id exists";
    /// An update named a stale `version` of the room.
    VersionConflict = 3002, "version_conflict", 409, "the room was changed since that version";
    /// No such participant in the session.
    ParticipantNotFound = 3003, "participant_not_found", 404, "participant not found";
    /// The room has no live session.
    SessionNotFound = 3004, "session_not_found", 404, "the room has no live session";
    /// No such stream.
    StreamNotFound = 3005, "stream_not_found", 404, "stream not found";
    /// The participant already publishes a stream with that key.
    DuplicateStreamKey = 3006, "duplicate_stream_key", 409, "a stream with this key is published already";
    /// The resume token is unknown, expired, or the missed events are gone; join afresh.
    ResumeFailed = 3007, "resume_failed", 409, "the session cannot be resumed";
    /// No such published track.
    TrackNotFound = 3008, "track_not_found", 404, "track not found";
    /// The participant has no subscription to that stream.
    SubscriptionNotFound = 3009, "subscription_not_found", 404, "no such subscription";
    /// The room is at its participant limit.
    RoomFull = 4000, "room_full", 403, "the room is full";
    /// The room's policy forbids the action (guests, sources, audio-only).
    DisabledByPolicy = 4001, "disabled_by_policy", 403, "the room's policy does not allow this";
    /// A per-participant limit: streams published at once.
    LimitExceeded = 4002, "limit_exceeded", 403, "a limit of the server was reached";
    /// A moderator locked the meeting: nobody new joins or knocks.
    RoomLocked = 4003, "room_locked", 403, "the meeting is locked";
    /// An unexpected server fault. The server logs the details.
    Internal = 5000, "internal", 500, "internal server error";
    /// The server is shutting down or not ready.
    Unavailable = 5001, "unavailable", 503, "the server is unavailable";
    /// The media connection failed or its peer stopped answering (consent timeout).
    MediaFailed = 5002, "media_failed", 502, "the media connection failed";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.number())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u16::deserialize(d)?;
        ErrorCode::from_number(n).ok_or_else(|| serde::de::Error::custom(format!("unknown error code {n}")))
    }
}

/// An error as it appears on the wire, in HTTP bodies and signaling responses alike:
/// `{"code": 2001, "name": "invalid_token", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub name: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, name: code.name().to_owned(), message: message.into() }
    }
}

impl From<ErrorCode> for ErrorBody {
    fn from(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_and_names_are_unique_and_round_trip() {
        let mut numbers = HashSet::new();
        let mut names = HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(numbers.insert(code.number()), "duplicate number {}", code.number());
            assert!(names.insert(code.name()), "duplicate name {}", code.name());
            assert_eq!(ErrorCode::from_number(code.number()), Some(code));
            assert_eq!(ErrorCode::from_name(code.name()), Some(code));
            assert!((400..600).contains(&code.http_status()));
        }
    }

    #[test]
    fn serializes_as_number() {
        let body = ErrorBody::from(ErrorCode::VersionConflict);
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["code"], 3002);
        assert_eq!(json["name"], "version_conflict");
        assert!(serde_json::from_str::<ErrorCode>("65000").is_err());
    }
}
