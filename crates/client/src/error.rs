//! The SDK's one error type.
//!
//! Callers branch on the variant, and for [`ClientError::Server`] on the error `code`
//! from the shared catalog in `confer_proto::error`, never on message text. The type is
//! `Clone` so that it can travel inside [`crate::RoomEvent::ConnectionLost`]; that is why
//! foreign errors are held in an `Arc`.

use std::sync::Arc;
use std::time::Duration;

use confer_proto::signal::{DenyReason, DisconnectReason};
use confer_proto::{ErrorBody, ErrorCode};

/// `Result` with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server URL given to [`crate::Room::connect`] cannot be used.
    #[error("invalid server url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },

    /// The WebSocket could not be opened, or failed while open.
    #[error("signaling transport: {0}")]
    Transport(Arc<tokio_tungstenite::tungstenite::Error>),

    /// TLS could not be set up for a `wss://` server.
    #[error("tls setup: {0}")]
    Tls(rustls::Error),

    /// The server refused the request; branch on `.0.code`.
    #[error("server refused: {0}")]
    Server(ErrorBody),

    /// No answer (or no connection) within the allotted time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),

    /// The server said something that does not follow the protocol.
    #[error("protocol violation by the server: {detail}")]
    Protocol { detail: String },

    /// The local WebRTC stack failed (creating a connection, applying a description,
    /// writing media).
    #[error("media: {detail}")]
    Media { detail: String },

    /// No path for media can be made as configured: relay-only without a usable TURN
    /// relay, or every candidate path failed. `detail` says what was tried and failed.
    #[error("no media path: {detail}")]
    NoMediaPath { detail: String },

    /// The connection dropped while the request was in flight: it may or may not have
    /// taken effect. Not retried automatically, because requests are not idempotent.
    #[error("the connection dropped before the answer arrived")]
    Interrupted,

    /// The room is no longer connected (left, removed by the server, or lost).
    #[error("not connected to the room{}", reason.map(|r| format!(" ({})", reason_name(r))).unwrap_or_default())]
    Disconnected { reason: Option<DisconnectReason> },

    /// The server said it is shutting down. Reconnection follows if allowed: a restarted
    /// server takes the client back (as a new participant, the old session being gone).
    #[error("the server is shutting down")]
    ServerShutdown,

    /// The server closed the connection without saying why (no `disconnected` event).
    #[error("the server closed the connection")]
    Closed,

    /// The silence watchdog fired: no frame from the server for three ping intervals.
    #[error("the server went silent for {0:?}")]
    Silent(Duration),

    /// The room has a lobby and the knock was turned away: by a moderator, because
    /// nobody let it in in time, or because the meeting ended meanwhile.
    #[error("not let into the meeting ({})", deny_reason_name(*reason))]
    Denied { reason: DenyReason },
}

fn deny_reason_name(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::Denied => "a moderator said no",
        DenyReason::TimedOut => "nobody let you in in time",
        DenyReason::SessionEnded => "the meeting ended",
    }
}

impl ClientError {
    /// The catalog code when the server refused, so callers can branch on it.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(body) => Some(body.code),
            _ => None,
        }
    }

    /// A stable snake_case name: the catalog name for [`ClientError::Server`], else
    /// the variant's. For logs and for tools that print errors as data.
    pub fn name(&self) -> &str {
        match self {
            ClientError::InvalidUrl { .. } => "invalid_url",
            ClientError::Transport(_) => "transport",
            ClientError::Tls(_) => "tls",
            ClientError::Server(body) => &body.name,
            ClientError::Timeout(_) => "timeout",
            ClientError::Protocol { .. } => "protocol",
            ClientError::Media { .. } => "media",
            ClientError::NoMediaPath { .. } => "no_media_path",
            ClientError::Interrupted => "interrupted",
            ClientError::Disconnected { .. } => "disconnected",
            ClientError::Closed => "closed",
            ClientError::ServerShutdown => "server_shutdown",
            ClientError::Silent(_) => "silent",
            ClientError::Denied { .. } => "denied",
        }
    }

    /// Whether retrying the same connection attempt later might succeed. A refusal that
    /// is about the token, the room or the participant's rights will not change by
    /// waiting, so reconnection stops on those.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ClientError::Server(body) => {
                matches!(body.code, ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable)
            }
            ClientError::InvalidUrl { .. } | ClientError::Tls(_) | ClientError::NoMediaPath { .. } => false,
            ClientError::Transport(_)
            | ClientError::Timeout(_)
            | ClientError::Protocol { .. }
            | ClientError::Media { .. }
            | ClientError::Interrupted
            | ClientError::Closed
            | ClientError::ServerShutdown
            | ClientError::Silent(_) => true,
            ClientError::Disconnected { .. } | ClientError::Denied { .. } => false,
        }
    }
}

/// The reason's wire name (`kicked`, `session_ended`, ...).
fn reason_name(reason: DisconnectReason) -> String {
    match serde_json::to_value(reason) {
        Ok(serde_json::Value::String(name)) => name,
        // A unit enum variant always serializes to its name; keep a fallback anyway.
        _ => format!("{reason:?}"),
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::Transport(Arc::new(e))
    }
}

impl From<ErrorBody> for ClientError {
    fn from(body: ErrorBody) -> Self {
        ClientError::Server(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_transience() {
        let denied = ClientError::from(ErrorBody::from(ErrorCode::PermissionDenied));
        assert_eq!(denied.code(), Some(ErrorCode::PermissionDenied));
        assert!(!denied.is_transient());
        assert!(ClientError::from(ErrorBody::from(ErrorCode::Unavailable)).is_transient());
        assert!(ClientError::Timeout(Duration::from_secs(1)).is_transient());
        assert_eq!(ClientError::Interrupted.code(), None);
        assert_eq!(denied.name(), "permission_denied");
        assert_eq!(ClientError::Closed.name(), "closed");
    }

    #[test]
    fn disconnected_message_names_the_reason() {
        let e = ClientError::Disconnected { reason: Some(DisconnectReason::Kicked) };
        assert_eq!(e.to_string(), "not connected to the room (kicked)");
        assert_eq!(ClientError::Disconnected { reason: None }.to_string(), "not connected to the room");
    }
}
