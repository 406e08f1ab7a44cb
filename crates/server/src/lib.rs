//! `confer-server`: the room API, WebSocket signaling and storage of Confer.
//!
//! [`Server::start`] binds the HTTP listener, opens the database, resolves the API
//! credentials and spawns the accept loop plus a once-a-second housekeeping tick (the
//! hub's reaping of vanished participants and expired tokens). Everything stateful but
//! storage lives in the [`hub::Hub`], which is driven with explicit time.

// Panics in the protocol, the server and the SDK are bugs: they say why (expect) or
// are handled, never a bare unwrap outside tests.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod auth;
#[cfg(feature = "redis")]
pub mod cluster;
pub mod config;
pub mod error;
mod http;
pub mod hub;
pub mod limit;
pub mod metrics;
mod nodes;
pub mod sfu;
mod signal;
pub mod store;
pub mod turn;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Args, ServerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{random_secret, Credentials};
use crate::hub::{Hub, HubConfig, Now};
use crate::store::{Storage, Store};

/// State shared by every request handler and connection.
pub struct ServerState {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub credentials: Credentials,
    pub public_url: String,
    /// Lifetime of the join tokens the server mints, in seconds.
    pub token_ttl_secs: u64,
    pub metrics: Arc<metrics::Metrics>,
    /// This node's handle on the cluster state, when it is one of several.
    #[cfg(feature = "redis")]
    pub cluster: Option<cluster::Registry>,
    /// For calls to other nodes and webhooks.
    pub http: reqwest::Client,
    /// When draining started: no new session starts here from then on.
    drain: watch::Sender<Option<std::time::Instant>>,
    /// How long a drain waits for running sessions before the server stops.
    drain_grace: Duration,
    next_conn_id: AtomicU64,
    /// Participants whose next signaling request panics ([`Server::inject_fault`]).
    signaling_faults: std::sync::Mutex<std::collections::HashSet<confer_proto::ParticipantId>>,
}

/// A failure a test makes happen, to check that it stays where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The handling of the participant's next signaling request panics.
    Signaling,
    /// The next input to the participant's media connections panics.
    Media,
}

impl ServerState {
    /// Whether this node is draining: it starts no new session.
    pub fn draining(&self) -> bool {
        self.drain.borrow().is_some()
    }

    /// Starts draining (once; later calls change nothing). `by` says who asked, for
    /// the log.
    pub fn start_drain(&self, by: &str) {
        let started = self.drain.send_if_modified(|drain| {
            let first = drain.is_none();
            drain.get_or_insert_with(std::time::Instant::now);
            first
        });
        if !started {
            return;
        }
        let census = self.hub.census();
        tracing::info!(
            by,
            sessions = census.rooms,
            participants = census.participants,
            grace_secs = self.drain_grace.as_secs(),
            "draining: no new meetings start here; running ones go on until they end or the grace runs out"
        );
        #[cfg(feature = "redis")]
        if let Some(cluster) = &self.cluster {
            cluster.set_draining();
        }
    }

    /// Resolves once draining has started and this node holds no session, or the
    /// drain grace has run out.
    async fn drained(&self) {
        let mut drain = self.drain.subscribe();
        let Ok(started) = drain.wait_for(Option::is_some).await.map(|s| s.unwrap_or_else(std::time::Instant::now))
        else {
            return std::future::pending().await;
        };
        let deadline = started + self.drain_grace;
        while !self.hub.rooms().is_empty() {
            if std::time::Instant::now() >= deadline {
                tracing::warn!(sessions = self.hub.rooms().len(), "drain grace ran out: the remaining sessions end");
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tracing::info!("drained: no session left here");
    }

    /// Whether an injected fault is due for `participant`'s request (and clears it).
    pub(crate) fn take_signaling_fault(&self, participant: &confer_proto::ParticipantId) -> bool {
        let mut faults = self.signaling_faults.lock().unwrap_or_else(|p| p.into_inner());
        !faults.is_empty() && faults.remove(participant)
    }
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    http_addr: SocketAddr,
    /// Whether the HTTP address speaks TLS (HTTPS and WSS).
    tls: bool,
    udp_addr: SocketAddr,
    sfu: sfu::SfuHandle,
    state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
        let store = Store::open(&config.db)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", store::display_db(&config.db)))?;
        let credentials = resolve_credentials(&store, &config).await?;
        // rustls for the calls this server makes (other nodes, webhooks); its own
        // listener names its provider itself.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http_addr))?;
        let http_addr = listener.local_addr()?;
        let tls = config.tls.as_ref().map(http::listener::tls_acceptor).transpose()?;
        let tls_on = tls.is_some();
        let scheme = if tls_on { "https" } else { "http" };
        // Where the other nodes reach this one: as configured, or this listener (which
        // must then have an address they can use: the configuration checks it).
        let node_url =
            config.cluster.as_ref().map(|c| c.node_url.clone().unwrap_or_else(|| format!("{scheme}://{http_addr}")));
        #[cfg(feature = "redis")]
        let registry = match (&config.cluster, &node_url) {
            (Some(c), Some(url)) => Some(cluster::join(c, url, &config.db).await?),
            _ => None,
        };
        #[cfg(not(feature = "redis"))]
        if config.cluster.is_some() || node_url.is_some() {
            anyhow::bail!("this build has no cluster support (the `redis` feature)");
        }
        let public_url = config.public_url.clone().unwrap_or_else(|| format!("{scheme}://{http_addr}"));
        let sfu = sfu::Sfu::start(&sfu::SfuConfig {
            udp_addr: config.udp_addr,
            advertise_addr: config.advertise_addr,
            advertise_ips: config.advertise_ips.clone(),
            tcp_addr: config.tcp_addr,
            ice_tcp: config.ice_tcp,
            workers: match config.sfu_workers {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
        })?;
        let udp_addr = sfu.handle.local_addr();
        if let Some(turn) = &config.turn {
            tracing::info!(urls = ?turn.urls.iter().map(ToString::to_string).collect::<Vec<_>>(), "TURN relays handed to clients");
        }
        let (stop, stopped) = watch::channel(false);
        let http_client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        let mut tasks = vec![];
        let webhooks = if config.webhooks.is_empty() {
            webhook::Sink::default()
        } else {
            let node = config.cluster.as_ref().map(|c| c.node_id.clone());
            let secret = credentials.api_secret().to_owned();
            let (sink, task) =
                webhook::start(config.webhooks.clone(), secret, node, http_client.clone(), stopped.clone());
            tasks.push(task);
            sink
        };
        let hub = Hub::new(
            HubConfig { limits: config.limits.clone(), backlog: config.backlog, turn: config.turn.clone(), webhooks },
            sfu.handle.clone(),
        );
        let state = Arc::new(ServerState {
            store,
            hub,
            credentials,
            public_url,
            token_ttl_secs: config.token_ttl_secs,
            metrics: Arc::new(metrics::Metrics::new(&sfu.metrics)),
            #[cfg(feature = "redis")]
            cluster: registry,
            http: http_client,
            drain: watch::channel(None).0,
            drain_grace: config.drain_grace,
            next_conn_id: AtomicU64::new(1),
            signaling_faults: Default::default(),
        });

        let app = http::router(state.clone());
        let limits =
            http::listener::Limits { per_address: config.max_connections_per_ip, ..http::listener::Limits::default() };
        let trusted = http::listener::Trusted::default();
        let serve = tokio::spawn(http::listener::serve(listener, app, (limits, trusted.clone()), tls, stopped.clone()));
        tasks.push(serve);
        if let Some(addr) = config.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
            tracing::info!(addr = %listener.local_addr()?, "metrics listening");
            let mut stop = stopped.clone();
            let app = http::metrics_router(state.clone());
            tasks.push(tokio::spawn(async move {
                let stopping = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopping).await {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            }));
        }
        let housekeeping = tokio::spawn(housekeeping(state.clone(), stopped.clone()));
        #[cfg(feature = "redis")]
        if let Some(registry) = state.cluster.clone() {
            let url = node_url.clone().unwrap_or_default();
            tasks.push(tokio::spawn(cluster::heartbeat(registry, url, state.hub.clone(), trusted, stopped.clone())));
        }
        let media_events = tokio::spawn(media_events(state.clone(), sfu.events, stopped));
        tracing::info!(%http_addr, %udp_addr, db = %store::display_db(&config.db), "confer-server started");
        tasks.extend([housekeeping, media_events]);
        Ok(Server { http_addr, tls: tls_on, udp_addr, sfu: sfu.handle, state, stop, tasks })
    }

    /// The media UDP address (ICE-lite, one port for everyone).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The media ICE-TCP address, if listening.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.sfu.tcp_addr()
    }

    /// The media candidates announced to clients.
    pub fn media_addrs(&self) -> &sfu::MediaAddrs {
        self.sfu.addrs()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// `http://host:port` (`https://` with TLS) of the room API.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.http_addr)
    }

    /// `ws://host:port/v1/signal` (`wss://` with TLS).
    pub fn signal_url(&self) -> String {
        format!("{}://{}/v1/signal", if self.tls { "wss" } else { "ws" }, self.http_addr)
    }

    pub fn api_key(&self) -> &str {
        self.state.credentials.api_key()
    }

    pub fn api_secret(&self) -> &str {
        self.state.credentials.api_secret()
    }

    /// Makes a failure happen, for tests of fault isolation: a panic while serving the
    /// participant `identity` of `room`, which must end only what it concerns. Nothing a
    /// client sends can do this. `false` if there is no such participant.
    #[doc(hidden)]
    pub fn inject_fault(&self, room: &confer_proto::RoomId, identity: &str, fault: Fault) -> bool {
        let Some(session) = self.state.hub.session(room) else { return false };
        let Some(p) = session.participants.into_iter().find(|p| p.identity.0 == identity) else { return false };
        match fault {
            Fault::Signaling => {
                self.state.signaling_faults.lock().unwrap_or_else(|p| p.into_inner()).insert(p.id);
            }
            Fault::Media => self.sfu.broadcast(|| sfu::Command::InjectPanic { participant: p.id.clone() }),
        }
        true
    }

    /// Starts draining: no new session starts here, running ones go on (see
    /// [`Server::drained`]).
    pub fn drain(&self) {
        self.state.start_drain("a signal");
    }

    /// Resolves when a drain (started by [`Server::drain`] or through the room API) is
    /// done: no session is left here, or the drain grace ran out. Never, until one
    /// starts.
    pub async fn drained(&self) {
        self.state.drained().await
    }

    /// Tells every participant the server is going away, then stops listening.
    pub async fn shutdown(self) {
        self.state.hub.shutdown(Now::system());
        self.sfu.broadcast(|| sfu::Command::Stop);
        let _ = self.stop.send(true);
        for task in self.tasks {
            // Connections still open after a grace period are cut.
            if tokio::time::timeout(Duration::from_secs(3), task).await.is_err() {
                tracing::warn!("server task did not stop in time");
            }
        }
    }
}

async fn resolve_credentials(store: &Store, config: &ServerConfig) -> anyhow::Result<Credentials> {
    if let (Some(key), Some(secret)) = (&config.api_key, &config.api_secret) {
        return Ok(Credentials::new(key.clone(), secret.clone()));
    }
    if let (Some(key), Some(secret)) = (store.setting("api_key").await?, store.setting("api_secret").await?) {
        return Ok(Credentials::new(key, secret));
    }
    // Another server sharing the database may be generating its own right now: the
    // first one stored is what every server uses.
    let key = store.init_setting("api_key", &format!("dev_{}", random_secret(9))).await?;
    let secret = store.init_setting("api_secret", &random_secret(32)).await?;
    Ok(Credentials::new(key, secret))
}

/// Hands what the media thread reports to the hub.
async fn media_events(
    state: Arc<ServerState>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<sfu::SfuEvent>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stopped.wait_for(|s| *s) => return,
        };
        match event {
            Some(event) => state.hub.media_event(event, Now::system()),
            None => return,
        }
    }
}

async fn housekeeping(state: Arc<ServerState>, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = Now::system();
        state.hub.tick(now);
        ticks += 1;
        if ticks % 3600 == 1 {
            match state.store.purge_expired(now.unix_ms).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "purged expired invites and refresh tokens"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "purging expired secrets failed"),
            }
        }
    }
}
