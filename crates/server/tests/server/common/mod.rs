//! Shared harness for the server's integration tests: an in-process server on a free
//! port, a room API client, and a raw signaling client that speaks the wire protocol
//! frame by frame (so tests see exactly what a third-party client would).
#![allow(dead_code)] // Each test file uses a different part of the harness.

use std::time::Duration;

use confer_proto::room::Room;
use confer_proto::signal::{ClientMessage, Event, JoinRequest, JoinSnapshot, Outcome, Reply, Request, ServerMessage};
use confer_proto::token::{Grants, TokenPair};
use confer_proto::{ErrorBody, ErrorCode};
use confer_server::{Server, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";
/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn config() -> ServerConfig {
    ServerConfig { api_key: Some(KEY.into()), api_secret: Some(SECRET.into()), ..ServerConfig::default() }
}

pub struct TestServer {
    pub server: Server,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(config()).await
    }

    pub async fn with(config: ServerConfig) -> Self {
        // Another test in this process may have installed it already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = Server::start(config).await.expect("server starts");
        Self { server, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub fn server_limits(&self) -> confer_proto::signal::SignalLimits {
        config().limits
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/signal", self.server.http_addr())
    }

    /// A request to the room API with the right credentials.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).basic_auth(KEY, Some(SECRET))
    }

    pub async fn create_room(&self, body: Value) -> Room {
        let resp = self.api(reqwest::Method::POST, "/v1/rooms").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 201, "create room: {}", resp.text().await.unwrap());
        resp.json().await.unwrap()
    }

    pub async fn token_pair(&self, room: &str, identity: &str, grants: Grants, ttl: Option<u64>) -> TokenPair {
        let body = json!({ "room": room, "identity": identity, "grants": grants, "ttl": ttl });
        let resp = self.api(reqwest::Method::POST, "/v1/tokens").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "mint token: {}", resp.text().await.unwrap());
        resp.json().await.unwrap()
    }

    pub async fn token(&self, room: &str, identity: &str) -> String {
        self.token_pair(room, identity, Grants::default(), None).await.token
    }

    pub async fn moderator_token(&self, room: &str, identity: &str) -> String {
        self.token_pair(room, identity, Grants { moderator: true, ..Grants::default() }, None).await.token
    }

    /// Connects and joins; panics if the join is refused.
    pub async fn join(&self, token: &str) -> (Peer, JoinSnapshot) {
        let mut peer = Peer::connect(&self.ws_url()).await;
        let snapshot = peer.join(token).await.expect("join accepted");
        (peer, snapshot)
    }
}

/// Asserts that an HTTP response carries the given catalog error.
pub async fn assert_error(resp: reqwest::Response, code: ErrorCode) {
    let status = resp.status().as_u16();
    let body: ErrorBody = resp.json().await.expect("error body");
    assert_eq!(body.code, code, "{}", body.message);
    assert_eq!(status, code.http_status());
    assert_eq!(body.name, code.name());
}

/// A raw signaling client.
pub struct Peer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events read while waiting for a response, in order.
    pending: std::collections::VecDeque<(u64, Event)>,
    pub last_seq: u64,
}

impl Peer {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Self { ws, next_id: 1, pending: Default::default(), last_seq: 0 }
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// Sends without panicking when the server has closed the connection.
    pub async fn send_raw_checked(&mut self, msg: Message) -> bool {
        self.ws.send(msg).await.is_ok()
    }

    /// Reads and discards frames until the connection closes.
    pub async fn until_closed_raw(&mut self) {
        while let Some(Ok(frame)) = self.ws.next().await {
            if matches!(frame, Message::Close(_)) {
                return;
            }
        }
    }

    /// Sends a request and returns its id.
    pub async fn send(&mut self, request: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let text = serde_json::to_string(&ClientMessage { id, request }).unwrap();
        self.send_raw(Message::text(text)).await;
        id
    }

    /// The next frame from the server, `None` once the connection is closed.
    pub async fn next_message(&mut self) -> Option<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next()).await.expect("server frame in time");
            match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("valid server frame"))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Waits for the response to `id`, keeping events that arrive first.
    pub async fn response(&mut self, id: u64) -> Result<Reply, ErrorBody> {
        loop {
            match self.next_message().await.expect("connection open while awaiting a response") {
                ServerMessage::Response { id: Some(rid), outcome } if rid == id => {
                    return match outcome {
                        Outcome::Result(r) => Ok(r),
                        Outcome::Error(e) => Err(e),
                    }
                }
                ServerMessage::Response { .. } => continue,
                ServerMessage::Event { seq, event } => {
                    self.last_seq = seq;
                    self.pending.push_back((seq, event));
                }
            }
        }
    }

    pub async fn request(&mut self, request: Request) -> Result<Reply, ErrorBody> {
        let id = self.send(request).await;
        self.response(id).await
    }

    pub async fn join_with(&mut self, req: JoinRequest) -> Result<Reply, ErrorBody> {
        self.request(Request::Join(req)).await
    }

    pub async fn join(&mut self, token: &str) -> Result<JoinSnapshot, ErrorBody> {
        match self.join_with(join_request(token)).await? {
            Reply::Joined(s) => Ok(*s),
            other => panic!("expected joined, got {other:?}"),
        }
    }

    /// The next event, or `None` if the connection closes first.
    pub async fn event(&mut self) -> Option<Event> {
        if let Some((_, e)) = self.pending.pop_front() {
            return Some(e);
        }
        loop {
            match self.next_message().await? {
                ServerMessage::Event { seq, event } => {
                    assert_eq!(seq, self.last_seq + 1, "event seq must increase by one");
                    self.last_seq = seq;
                    return Some(event);
                }
                ServerMessage::Response { .. } => continue,
            }
        }
    }

    /// Events up to and including the first one named `name`.
    pub async fn events_until(&mut self, name: &str) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let e = self.event().await.unwrap_or_else(|| panic!("closed before {name}; saw {seen:?}"));
            let done = e.name() == name;
            seen.push(e);
            if done {
                return seen;
            }
        }
    }

    /// Asserts that no event arrives within `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        assert!(self.pending.is_empty(), "unexpected events: {:?}", self.pending);
        match tokio::time::timeout(quiet, self.ws.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }

    /// Waits until the server closes the connection, returning the events before it.
    pub async fn until_closed(&mut self) -> Vec<Event> {
        let mut seen: Vec<Event> = self.pending.drain(..).map(|(_, e)| e).collect();
        while let Some(e) = self.event().await {
            seen.push(e);
        }
        seen
    }
}

pub fn join_request(token: &str) -> JoinRequest {
    JoinRequest {
        token: token.into(),
        room: None,
        protocol: confer_proto::PROTOCOL_VERSION,
        name: None,
        context: Value::Null,
        resume: None,
    }
}

pub fn names(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::name).collect()
}

/// A JWT over any `claims`, signed with the server's secret as the server signs: for
/// claims the room API would never mint.
pub fn sign(claims: &Value) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{header}.{body}").as_bytes());
    format!("{header}.{body}.{}", b64.encode(mac.finalize().into_bytes()))
}
