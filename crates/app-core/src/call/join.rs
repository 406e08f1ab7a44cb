//! Getting into a call: the join token (from a link's token, an invite, or the app's own
//! hosted server), and what the user reads when something refuses or ends the call.

use confer_client::api::{ApiClient, ApiError, Call as ApiCall};
use confer_client::proto::signal::{DenyReason, DisconnectReason};
use confer_client::proto::token::{CreateToken, ExchangeInvite, Grants, TokenPair};
use confer_client::proto::ErrorBody;
use confer_client::ClientError;

use crate::link::Access;
use crate::publish::unix_ms;
use crate::view::{CallEvent, EndReason};
use crate::CallError;

use super::JoinRequest;

const USER_AGENT: &str = concat!("confer-app/", env!("CARGO_PKG_VERSION"));

/// The end of a call the server ended.
pub(super) fn ended(reason: DisconnectReason) -> CallEvent {
    CallEvent::ended(match reason {
        DisconnectReason::Left => EndReason::Left,
        DisconnectReason::Kicked => EndReason::Kicked,
        DisconnectReason::TokenExpired => EndReason::TokenExpired,
        DisconnectReason::Replaced => EndReason::Replaced,
        DisconnectReason::SessionEnded => EndReason::SessionEnded,
        DisconnectReason::RoomDeleted => EndReason::RoomDeleted,
        DisconnectReason::ProtocolViolation => EndReason::ProtocolViolation,
        DisconnectReason::ServerShutdown => EndReason::ServerShutdown,
        DisconnectReason::ServerError => EndReason::ServerError,
        DisconnectReason::Denied => EndReason::Denied,
    })
}

/// A join token, and the refresh token that renews it when there is one.
pub(super) struct Credentials {
    pub(super) token: String,
    pub(super) refresh_token: Option<String>,
}

impl From<TokenPair> for Credentials {
    fn from(pair: TokenPair) -> Self {
        Self { token: pair.token, refresh_token: Some(pair.refresh_token) }
    }
}

/// A join token for the request: the link's token, an invite traded for one, or one
/// minted by the app's own server. A token from a link comes without a refresh token
/// (the call ends when it expires, and the message says so).
pub(super) async fn join_token(server: &str, name: &str, request: &JoinRequest) -> Result<Credentials, CallError> {
    let base = confer_client::endpoint::server_base(server)
        .map_err(|_| CallError::new("invalid_server", format!("{server:?} is not a server address.")))?;
    match (&request.target.access, &request.host) {
        (Access::Token { token }, _) => Ok(Credentials { token: token.clone(), refresh_token: None }),
        (Access::Invite { invite }, _) => {
            let api = ApiClient::new(base, None, None, USER_AGENT).map_err(|e| api_error(server, e))?;
            let exchange = ApiCall::ExchangeInvite(ExchangeInvite { invite: invite.clone(), name: name.to_owned() });
            let pair: TokenPair = api.send_as(&exchange).await.map_err(|e| api_error(server, e))?;
            Ok(pair.into())
        }
        (Access::RoomOnly, Some(host)) => {
            let api = ApiClient::new(base, Some(host.api_key.clone()), Some(host.api_secret.clone()), USER_AGENT)
                .map_err(|e| api_error(server, e))?;
            let mint = ApiCall::CreateToken(CreateToken {
                room: request.target.room.as_str().into(),
                identity: format!("host-{}", unix_ms()).as_str().into(),
                name: Some(name.to_owned()),
                // The server's lifetime; the refresh token renews it.
                ttl: None,
                grants: Grants { moderator: true, ..Grants::default() },
            });
            let pair: TokenPair = api.send_as(&mint).await.map_err(|e| api_error(server, e))?;
            Ok(pair.into())
        }
        (Access::RoomOnly, None) => Err(CallError::new(
            "link_needed",
            "To join a room on a server you do not host, open the join link its organiser shared.",
        )),
    }
}

/// A refusal in words a user can act on.
pub(super) fn refusal(body: &ErrorBody) -> CallError {
    let message = match body.name.as_str() {
        "invalid_invite" => "This invite link is invalid or has expired. Ask for a new one.",
        "invalid_token" | "token_expired" => "This join link is invalid or has expired. Ask for a new one.",
        "room_full" => "This meeting is full.",
        "room_not_found" => "This meeting's room does not exist.",
        "disabled_by_policy" => "This meeting does not admit guests.",
        "not_a_member" => "You are not allowed into this meeting.",
        "room_locked" => "The host locked this meeting: nobody new can join.",
        _ => return CallError::new(body.name.clone(), body.message.clone()),
    };
    CallError::new(body.name.clone(), message)
}

pub(super) fn unreachable(server: &str) -> CallError {
    CallError::new(
        "server_unreachable",
        format!("Cannot reach the server at {server}. Check the address and your network connection."),
    )
}

pub(super) fn api_error(server: &str, error: ApiError) -> CallError {
    tracing::warn!(error = %error, server, "room API request failed");
    match error {
        ApiError::Refused { body, .. } => refusal(&body),
        ApiError::Http(_) | ApiError::Unexpected { .. } => unreachable(server),
        other => CallError::new("join_failed", other.to_string()),
    }
}

pub(super) fn client_error(server: &str, error: &ClientError) -> CallError {
    tracing::warn!(error = %error, server, "joining failed");
    match error {
        ClientError::Server(body) => refusal(body),
        ClientError::Denied { reason } => {
            let message = match reason {
                DenyReason::Denied => "The host did not let you into the meeting.",
                DenyReason::TimedOut => "Nobody let you into the meeting in time. Try joining again.",
                DenyReason::SessionEnded => "The meeting ended while you were waiting.",
            };
            CallError::new("denied", message)
        }
        ClientError::Transport(_) | ClientError::Timeout(_) | ClientError::Tls(_) => unreachable(server),
        other => CallError::new(other.name().to_owned(), other.to_string()),
    }
}

/// A refused in-call request, for a notice.
pub(super) fn request_error(what: &str, error: &ClientError) -> CallError {
    tracing::warn!(error = %error, what, "request refused");
    match error {
        ClientError::Server(body) => CallError::new(body.name.clone(), body.message.clone()),
        other => CallError::new(other.name().to_owned(), format!("{what} failed: {other}")),
    }
}
