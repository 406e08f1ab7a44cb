//! Join tokens kept fresh for as long as the call lasts.
//!
//! A join token is short-lived (ten minutes by default) and the server removes a
//! participant whose token runs out (`token_expired`). When [`crate::RoomOptions`] names
//! a refresh token or a [`TokenSource`], a task renews the token once two thirds of its
//! remaining life have passed: it gets a new one from the source (for a refresh token,
//! `POST /v1/tokens/refresh`, keeping the rotated refresh token) and hands it to the
//! server with `update_token`. The engine then reports [`RoomEvent::TokenRenewed`].
//!
//! Failures that may pass (the server unreachable for a moment, the signaling
//! connection being repaired) are retried with backoff until the token has expired; a
//! refusal that will not change (a revoked or spent refresh token, a deleted room) is
//! reported once as [`RoomEvent::TokenRenewalFailed`] and not retried. Either way the
//! server, not the SDK, ends the call: only when the token has really expired.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confer_proto::signal::{Reply, Request};
use confer_proto::token::{RefreshToken, TokenPair};
use confer_proto::{ErrorCode, UnixMillis};
use tokio::sync::{mpsc, watch};
use url::Url;

use crate::api::{ApiClient, ApiError, Call};
use crate::error::{ClientError, Result};
use crate::event::RoomEvent;
use crate::room::Requester;
use crate::state::RoomSnapshot;

/// Where new join tokens come from, for an app that mints them its own way (its
/// backend, say). The SDK calls it when the current token is two thirds through its
/// remaining life, and again with backoff while it fails with an error for which
/// [`ClientError::is_transient`] holds.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// A new join token for the same room and identity.
    async fn fresh_token(&self) -> Result<String>;
}

/// How the room's join token is renewed (see [`crate::RoomOptions::with_refresh_token`]).
#[derive(Clone)]
pub enum TokenRenewal {
    /// Trade this refresh token (and the ones it is rotated into) at the room's server.
    RefreshToken(String),
    /// Ask the app.
    Source(Arc<dyn TokenSource>),
}

impl std::fmt::Debug for TokenRenewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenRenewal::RefreshToken(_) => f.write_str("RefreshToken(..)"),
            TokenRenewal::Source(_) => f.write_str("Source(..)"),
        }
    }
}

impl PartialEq for TokenRenewal {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TokenRenewal::RefreshToken(a), TokenRenewal::RefreshToken(b)) => a == b,
            (TokenRenewal::Source(a), TokenRenewal::Source(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl TokenRenewal {
    pub(crate) fn source(self, server: &Url) -> Result<Arc<dyn TokenSource>> {
        match self {
            TokenRenewal::Source(s) => Ok(s),
            TokenRenewal::RefreshToken(token) => {
                let mut base = server.clone();
                let scheme = if base.scheme() == "wss" { "https" } else { "http" };
                // `server` is the signaling URL, whose scheme can always become http(s).
                let _ = base.set_scheme(scheme);
                base.set_path("/");
                let api = ApiClient::new(base, None, None, concat!("confer-client/", env!("CARGO_PKG_VERSION")))
                    .map_err(|e| ClientError::Protocol { detail: e.to_string() })?;
                Ok(Arc::new(RefreshTokenSource { api, refresh_token: Mutex::new(token) }))
            }
        }
    }
}

/// Renews through the server's `POST /v1/tokens/refresh`, keeping the rotated refresh
/// token for next time.
struct RefreshTokenSource {
    api: ApiClient,
    refresh_token: Mutex<String>,
}

#[async_trait::async_trait]
impl TokenSource for RefreshTokenSource {
    async fn fresh_token(&self) -> Result<String> {
        let refresh_token = self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let call = Call::RefreshToken(RefreshToken { refresh_token });
        match self.api.send_as::<TokenPair>(&call).await {
            Ok(pair) => {
                *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) = pair.refresh_token;
                Ok(pair.token)
            }
            Err(ApiError::Refused { body, .. }) => Err(ClientError::Server(body)),
            Err(e) => Err(ClientError::Protocol { detail: e.to_string() }),
        }
    }
}

/// When to renew a token that expires at `expires_at` and was received at `received_at`
/// (Unix ms): two thirds of the way, so that a third of its life is left for retries.
fn renew_at(received_at: UnixMillis, expires_at: UnixMillis) -> UnixMillis {
    received_at + expires_at.saturating_sub(received_at) * 2 / 3
}

/// The wait before retry `attempt` (from 1): 1 s doubling to 30 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

fn unix_ms() -> UnixMillis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Whether an error from the source or the server may pass by waiting.
fn may_pass(error: &ClientError) -> bool {
    match error {
        ClientError::Server(body) => {
            matches!(body.code, ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable)
        }
        // A refresh over HTTP that did not get an answer (the server restarting).
        ClientError::Protocol { .. } => true,
        other => other.is_transient(),
    }
}

/// The renewal task: runs until the room is left.
pub(crate) async fn run(
    source: Arc<dyn TokenSource>,
    requester: Requester,
    mut snapshot: watch::Receiver<RoomSnapshot>,
    events: mpsc::UnboundedSender<RoomEvent>,
) {
    let mut received_at = unix_ms();
    let mut expires_at = snapshot.borrow().token_expires_at;
    loop {
        let wait = renew_at(received_at, expires_at).saturating_sub(unix_ms());
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            changed = snapshot.changed() => {
                if changed.is_err() {
                    return;
                }
                // The app renewed the token itself (`update_token`): start over from it.
                let now_expires = snapshot.borrow().token_expires_at;
                if now_expires != expires_at {
                    expires_at = now_expires;
                    received_at = unix_ms();
                }
                continue;
            }
        }
        match renew(&*source, &requester, expires_at).await {
            Renewed::Until(next) => {
                tracing::info!(expires_at = next, "join token renewed");
                expires_at = next;
                received_at = unix_ms();
                // The engine's snapshot update for this renewal is not news.
                snapshot.borrow_and_update();
            }
            Renewed::Refused(error) => {
                tracing::warn!(%error, "the join token cannot be renewed; the call ends when it expires");
                let _ = events.send(RoomEvent::TokenRenewalFailed { error });
                return;
            }
            Renewed::Gone => return,
        }
    }
}

enum Renewed {
    Until(UnixMillis),
    Refused(ClientError),
    /// The room was left, or the token ran out while retrying.
    Gone,
}

/// One renewal, with retries while they can help.
async fn renew(source: &dyn TokenSource, requester: &Requester, expires_at: UnixMillis) -> Renewed {
    let mut token: Option<String> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let fresh = match token.clone() {
                Some(t) => t,
                None => {
                    let t = source.fresh_token().await?;
                    token = Some(t.clone());
                    t
                }
            };
            match requester.request(Request::UpdateToken { token: fresh }).await? {
                Reply::TokenUpdated { expires_at, .. } => Ok(expires_at),
                other => Err(ClientError::Protocol { detail: format!("unexpected answer to update_token: {other:?}") }),
            }
        }
        .await;
        match result {
            Ok(until) => return Renewed::Until(until),
            Err(ClientError::Disconnected { .. }) => return Renewed::Gone,
            // The fresh token itself was refused: get another next time.
            Err(ClientError::Server(body))
                if matches!(body.code, ErrorCode::InvalidToken | ErrorCode::TokenExpired) && token.is_some() =>
            {
                tracing::info!(code = ?body.code, "the server refused the renewed token; fetching another");
                token = None;
                if attempt > 3 {
                    return Renewed::Refused(ClientError::Server(body));
                }
            }
            Err(error) if !may_pass(&error) => return Renewed::Refused(error),
            Err(error) => {
                let left = expires_at.saturating_sub(unix_ms());
                if left == 0 {
                    tracing::warn!(%error, "the join token expired while renewing it");
                    return Renewed::Gone;
                }
                let wait = backoff(attempt).min(Duration::from_millis(left));
                tracing::info!(%error, attempt, ?wait, "renewing the join token failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_two_thirds_through_and_backs_off_to_thirty_seconds() {
        assert_eq!(renew_at(1_000, 31_000), 21_000);
        assert_eq!(renew_at(0, 600_000), 400_000);
        assert_eq!(renew_at(5_000, 1_000), 5_000, "an expired token is renewed at once");
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn refusals_that_will_not_change_are_not_retried() {
        let refused = |code: ErrorCode| {
            ClientError::Server(confer_proto::ErrorBody {
                code,
                name: code.name().into(),
                message: code.default_message().into(),
            })
        };
        assert!(!may_pass(&refused(ErrorCode::TokenRevoked)));
        assert!(!may_pass(&refused(ErrorCode::RefreshTokenUsed)));
        assert!(!may_pass(&refused(ErrorCode::RoomNotFound)));
        assert!(may_pass(&refused(ErrorCode::Unavailable)));
        assert!(may_pass(&ClientError::Timeout(Duration::from_secs(1))));
    }
}
