//! A small client for the room API (`/v1/...` over HTTP with Basic auth), for the CLI
//! and for apps that trade an invite for a token or host their own server.
//!
//! Each operation is a [`Call`]: method, path, body and whether it needs the API
//! credentials are all decided there, in one table, so the commands cannot disagree
//! about them. Answers come back as raw JSON so the CLI prints exactly what the server
//! sent; [`ApiClient::send_as`] parses into a `confer_proto` type where a command needs
//! the fields. Errors the server reports keep their catalog body, so callers (and
//! scripts) branch on `code`.

use confer_proto::room::{CreateRoom, ListRooms, RoomSort, UpdateRoom};
use confer_proto::token::{CreateInvite, CreateToken, ExchangeInvite, RefreshToken};
use confer_proto::{ErrorBody, ParticipantId, RoomId};
use reqwest::Method;
use serde::de::DeserializeOwned;
use url::Url;

/// One room-API operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    CreateRoom(CreateRoom),
    ListRooms(ListRooms),
    GetRoom(RoomId),
    UpdateRoom(RoomId, UpdateRoom),
    DeleteRoom(RoomId),
    CreateToken(CreateToken),
    RefreshToken(RefreshToken),
    CreateInvite(RoomId, CreateInvite),
    ExchangeInvite(ExchangeInvite),
    ListSessions,
    GetSession(RoomId),
    EndSession(RoomId),
    Kick(RoomId, ParticipantId),
}

impl Call {
    pub fn method(&self) -> Method {
        match self {
            Call::ListRooms(_) | Call::GetRoom(_) | Call::ListSessions | Call::GetSession(_) => Method::GET,
            Call::UpdateRoom(..) => Method::PUT,
            Call::DeleteRoom(_) | Call::EndSession(_) | Call::Kick(..) => Method::DELETE,
            Call::CreateRoom(_)
            | Call::CreateToken(_)
            | Call::RefreshToken(_)
            | Call::CreateInvite(..)
            | Call::ExchangeInvite(_) => Method::POST,
        }
    }

    /// Path segments after `/v1`.
    pub fn segments(&self) -> Vec<&str> {
        match self {
            Call::CreateRoom(_) | Call::ListRooms(_) => vec!["rooms"],
            Call::GetRoom(id) | Call::UpdateRoom(id, _) | Call::DeleteRoom(id) => vec!["rooms", id.as_str()],
            Call::CreateToken(_) => vec!["tokens"],
            Call::RefreshToken(_) => vec!["tokens", "refresh"],
            Call::CreateInvite(id, _) => vec!["rooms", id.as_str(), "invites"],
            Call::ExchangeInvite(_) => vec!["invites", "exchange"],
            Call::ListSessions => vec!["sessions"],
            Call::GetSession(id) | Call::EndSession(id) => vec!["rooms", id.as_str(), "session"],
            Call::Kick(room, p) => vec!["rooms", room.as_str(), "participants", p.as_str()],
        }
    }

    /// Refresh and invite exchange carry their own credential (the refresh token, the
    /// invite); everything else needs the API key and secret.
    pub fn needs_credentials(&self) -> bool {
        !matches!(self, Call::RefreshToken(_) | Call::ExchangeInvite(_))
    }

    fn body(&self) -> Result<Option<serde_json::Value>, serde_json::Error> {
        let value = match self {
            Call::CreateRoom(b) => serde_json::to_value(b)?,
            Call::UpdateRoom(_, b) => serde_json::to_value(b)?,
            Call::CreateToken(b) => serde_json::to_value(b)?,
            Call::RefreshToken(b) => serde_json::to_value(b)?,
            Call::CreateInvite(_, b) => serde_json::to_value(b)?,
            Call::ExchangeInvite(b) => serde_json::to_value(b)?,
            _ => return Ok(None),
        };
        Ok(Some(value))
    }

    fn query(&self) -> Option<Vec<(&'static str, String)>> {
        let Call::ListRooms(q) = self else { return None };
        let sort = match q.sort {
            RoomSort::CreatedAsc => "created_asc",
            RoomSort::CreatedDesc => "created_desc",
            RoomSort::NameAsc => "name_asc",
            RoomSort::NameDesc => "name_desc",
        };
        Some(vec![("skip", q.skip.to_string()), ("limit", q.limit.to_string()), ("sort", sort.to_owned())])
    }
}

/// `base` + `/v1/` + the given path segments, each percent-encoded.
pub fn api_url(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // `server_base` guarantees a hierarchical http(s) URL, which always has segments.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push("v1").extend(segments);
    }
    url
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server refused; the body is the catalog error.
    #[error("{body}")]
    Refused { status: u16, body: ErrorBody },
    #[error("missing API credentials: pass --api-key and --api-secret or set CONFER_API_KEY and CONFER_API_SECRET")]
    MissingCredentials,
    #[error("request to the server failed: {}", with_causes(.0))]
    Http(#[from] reqwest::Error),
    /// An answer that is neither success nor a catalog error (a proxy's error page...).
    #[error("unexpected answer from the server (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
    #[error("cannot encode or decode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `error` and its sources, `: `-separated: reqwest's own message omits the cause
/// ("connection refused") that a user needs.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    credentials: Option<(String, String)>,
}

impl ApiClient {
    /// `base` comes from [`crate::endpoint::server_base`]. Credentials are checked
    /// when a call needs them, so calls that do not (refresh, exchange) work without.
    /// `user_agent` names the program (`confer-cli/0.1.0`).
    pub fn new(
        base: Url,
        api_key: Option<String>,
        api_secret: Option<String>,
        user_agent: &str,
    ) -> Result<Self, ApiError> {
        // reqwest is built without a TLS provider of its own: use the SDK's (ring),
        // unless the program installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().user_agent(user_agent).build()?;
        let credentials = api_key.zip(api_secret);
        Ok(Self { http, base, credentials })
    }

    /// Performs `call`. `Ok(None)` for answers without a body (204).
    pub async fn send(&self, call: &Call) -> Result<Option<serde_json::Value>, ApiError> {
        let url = api_url(&self.base, &call.segments());
        let mut request = self.http.request(call.method(), url);
        if call.needs_credentials() {
            let (key, secret) = self.credentials.as_ref().ok_or(ApiError::MissingCredentials)?;
            request = request.basic_auth(key, Some(secret));
        }
        if let Some(query) = call.query() {
            request = request.query(&query);
        }
        if let Some(body) = call.body()? {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|_| ApiError::Unexpected { status: status.as_u16(), body: text });
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(ApiError::Refused { status: status.as_u16(), body }),
            Err(_) => Err(ApiError::Unexpected { status: status.as_u16(), body: text }),
        }
    }

    /// Performs `call` and parses its answer as `T`.
    pub async fn send_as<T: DeserializeOwned>(&self, call: &Call) -> Result<T, ApiError> {
        let value = self.send(call).await?.unwrap_or(serde_json::Value::Null);
        Ok(serde_json::from_value(value)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_table() {
        let kick = Call::Kick("r 1".into(), "PA_x".into());
        assert_eq!(kick.method(), Method::DELETE);
        assert_eq!(kick.segments(), ["rooms", "r 1", "participants", "PA_x"]);
        assert!(kick.needs_credentials());

        let refresh = Call::RefreshToken(RefreshToken { refresh_token: "t".into() });
        assert_eq!(refresh.method(), Method::POST);
        assert!(!refresh.needs_credentials());
        assert_eq!(refresh.body().unwrap().unwrap()["refresh_token"], "t");
        assert!(!Call::ExchangeInvite(ExchangeInvite { invite: "i".into(), name: "n".into() }).needs_credentials());

        let list = Call::ListRooms(ListRooms { skip: 5, limit: 7, sort: RoomSort::NameDesc });
        assert_eq!(list.method(), Method::GET);
        assert!(list.body().unwrap().is_none());
        let query = list.query().unwrap();
        assert_eq!(query[2], ("sort", "name_desc".to_owned()));
        assert_eq!(Call::GetSession("r".into()).segments(), ["rooms", "r", "session"]);
    }
}
