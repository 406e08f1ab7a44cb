//! The harness every integration test shares: an in-process `confer_server`, tokens
//! minted through its HTTP API, a TCP proxy that can sever connections, and helpers to
//! wait for events with a deadline.
#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_client::proto::room::{CreateRoom, Room as StoredRoom, UpdateRoom};
use confer_client::proto::token::{CreateToken, Grants, TokenPair};
use confer_client::{Backoff, ReconnectPolicy, Room, RoomEvent, RoomOptions};
use confer_server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::AbortHandle;

/// Long enough for a loaded CI machine, short enough that a hang fails the test.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn init_tracing() {
    // Tests in one binary share the process: the second init fails, harmlessly.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub struct TestServer {
    server: Option<Server>,
    http: reqwest::Client,
    pub url: String,
    pub addr: SocketAddr,
    key: String,
    secret: String,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServerConfig::default()).await
    }

    pub async fn start_with(config: ServerConfig) -> Self {
        init_tracing();
        // reqwest is built without a crypto provider of its own (see the CLI); the
        // harness talks plain HTTP but reqwest still wants one installed. A second
        // install in the same process fails, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = Server::start(config).await.expect("server starts");
        Self {
            url: server.url(),
            addr: server.http_addr(),
            key: server.api_key().to_owned(),
            secret: server.api_secret().to_owned(),
            http: reqwest::Client::new(),
            server: Some(server),
        }
    }

    pub async fn create_room(&self, id: &str) {
        let body = CreateRoom { id: Some(id.into()), name: format!("Room {id}"), ..Default::default() };
        let resp = self
            .http
            .post(format!("{}/v1/rooms", self.url))
            .basic_auth(&self.key, Some(&self.secret))
            .json(&body)
            .send()
            .await
            .expect("create room request");
        assert_eq!(resp.status().as_u16(), 201, "create room: {}", resp.text().await.unwrap_or_default());
    }

    /// Renames a room through the room API (a full replacement based on the current
    /// version), as an operator would.
    pub async fn rename_room(&self, id: &str, name: &str) {
        let url = format!("{}/v1/rooms/{id}", self.url);
        let current: StoredRoom = self
            .http
            .get(&url)
            .basic_auth(&self.key, Some(&self.secret))
            .send()
            .await
            .expect("get room")
            .json()
            .await
            .expect("room body");
        let update = UpdateRoom {
            name: name.to_owned(),
            members: current.members,
            managers: current.managers,
            public_meta: current.public_meta,
            private_meta: current.private_meta,
            policy: current.policy,
            version: current.version,
            force: false,
        };
        let resp =
            self.http.put(&url).basic_auth(&self.key, Some(&self.secret)).json(&update).send().await.expect("put room");
        assert!(resp.status().is_success(), "update room: {}", resp.status());
    }

    /// A join token for `identity` in `room` with default grants.
    pub async fn token(&self, room: &str, identity: &str) -> String {
        self.token_with(room, identity, Grants::default()).await
    }

    pub async fn moderator_token(&self, room: &str, identity: &str) -> String {
        self.token_with(room, identity, Grants { moderator: true, ..Grants::default() }).await
    }

    pub async fn token_with(&self, room: &str, identity: &str, grants: Grants) -> String {
        self.token_pair(room, identity, grants).await.token
    }

    /// A join token and its refresh token.
    pub async fn token_pair(&self, room: &str, identity: &str, grants: Grants) -> TokenPair {
        let body = CreateToken { room: room.into(), identity: identity.into(), name: None, ttl: None, grants };
        let resp = self
            .http
            .post(format!("{}/v1/tokens", self.url))
            .basic_auth(&self.key, Some(&self.secret))
            .json(&body)
            .send()
            .await
            .expect("token request");
        assert!(resp.status().is_success(), "mint token: {}", resp.status());
        resp.json::<TokenPair>().await.expect("token pair")
    }

    pub async fn delete_room(&self, id: &str) {
        let url = format!("{}/v1/rooms/{id}", self.url);
        let resp = self.http.delete(&url).basic_auth(&self.key, Some(&self.secret)).send().await.expect("delete room");
        assert!(resp.status().is_success(), "delete room: {}", resp.status());
    }

    /// `POST /v1/tokens/refresh`: the new pair, or the catalog error.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, confer_client::proto::ErrorBody> {
        let body = serde_json::json!({ "refresh_token": refresh_token });
        let resp = self.http.post(format!("{}/v1/tokens/refresh", self.url)).json(&body).send().await.expect("refresh");
        if resp.status().is_success() {
            Ok(resp.json().await.expect("token pair"))
        } else {
            Err(resp.json().await.expect("error body"))
        }
    }

    /// Joins `room` as `identity` straight at the server.
    pub async fn join(&self, room: &str, identity: &str) -> (Room, UnboundedReceiver<RoomEvent>) {
        let token = self.token(room, identity).await;
        Room::connect(&self.url, &token, fast_options()).await.expect("join")
    }

    pub async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// Reconnection tuned for tests: quick, bounded attempts.
pub fn fast_options() -> RoomOptions {
    RoomOptions::default()
        .with_reconnect(
            ReconnectPolicy::new(20, Duration::from_secs(2))
                .with_backoff(Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(250) }),
        )
        .with_request_timeout(Duration::from_secs(5))
}

/// A TCP relay between clients and the server that a test can break in the ways a
/// network does.
///
/// `sever` drops every relayed connection at once (both ends see the close);
/// `freeze` makes the current connections a black hole (bytes and closes are swallowed,
/// nothing is delivered either way) while new ones work; `block` makes new connections
/// fail (accepted, then closed) until unblocked, so a test can hold a client in the
/// reconnecting state for as long as it needs.
pub struct Proxy {
    pub addr: SocketAddr,
    links: Arc<Mutex<Vec<Link>>>,
    blocked: Arc<AtomicBool>,
    acceptor: AbortHandle,
}

struct Link {
    task: AbortHandle,
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy addr");
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let blocked = Arc::new(AtomicBool::new(false));
        let acceptor = tokio::spawn({
            let links = links.clone();
            let blocked = blocked.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if blocked.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let frozen = Arc::new(AtomicBool::new(false));
                    let task = tokio::spawn({
                        let frozen = frozen.clone();
                        async move {
                            let Ok(server) = TcpStream::connect(target).await else { return };
                            let (client_rx, client_tx) = client.into_split();
                            let (server_rx, server_tx) = server.into_split();
                            tokio::join!(
                                pump(client_rx, server_tx, frozen.clone()),
                                pump(server_rx, client_tx, frozen)
                            );
                        }
                    });
                    links.lock().expect("proxy lock").push(Link { task: task.abort_handle(), frozen });
                }
            }
        })
        .abort_handle();
        Self { addr, links, blocked, acceptor }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every relayed connection: both sockets are dropped.
    pub fn sever(&self) {
        for link in self.links.lock().expect("proxy lock").drain(..) {
            link.task.abort();
        }
    }

    /// Turns every current connection into a black hole.
    pub fn freeze(&self) {
        for link in self.links.lock().expect("proxy lock").iter() {
            link.frozen.store(true, Ordering::SeqCst);
        }
    }

    pub fn block(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
    }
}

/// Copies one direction until EOF. While `frozen`, data is swallowed and an EOF is not
/// passed on: a dead network path delivers neither.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    if frozen.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    // The peer may be gone already; the link ends either way.
    let _ = to.shutdown().await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.sever();
    }
}

/// The next event, or a panic after [`WAIT`].
pub async fn next_event(events: &mut UnboundedReceiver<RoomEvent>) -> RoomEvent {
    match tokio::time::timeout(WAIT, events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("event channel closed"),
        Err(_) => panic!("no event within {WAIT:?}"),
    }
}

/// Skips events until one matches; returns it and the ones skipped.
pub async fn wait_for(
    events: &mut UnboundedReceiver<RoomEvent>,
    what: &str,
    matches: impl Fn(&RoomEvent) -> bool,
) -> (RoomEvent, Vec<RoomEvent>) {
    let mut skipped = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if matches(&event) => return (event, skipped),
            Ok(Some(event)) => skipped.push(event),
            Ok(None) => panic!("event channel closed while waiting for {what}; saw {skipped:#?}"),
            Err(_) => panic!("no {what} within {WAIT:?}; saw {skipped:#?}"),
        }
    }
}

/// Everything already queued, without waiting.
pub fn drain(events: &mut UnboundedReceiver<RoomEvent>) -> Vec<RoomEvent> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

/// Consumes the `Connected` event every receiver starts with.
pub async fn expect_connected(events: &mut UnboundedReceiver<RoomEvent>) {
    let event = next_event(events).await;
    assert!(matches!(event, RoomEvent::Connected { .. }), "first event should be connected: {event:?}");
}
