//! Server configuration: defaults, then a TOML file, then environment variables, then
//! command-line flags, each overriding the one before.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use confer_proto::signal::SignalLimits;
use serde::Deserialize;

use crate::turn::{TurnConfig, TurnUrl, TurnUrlError};

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub http_addr: SocketAddr,
    /// A SQLite file path, or `:memory:`.
    pub db: String,
    /// Both or neither: when neither is set, a development pair is generated once and
    /// kept in the database.
    pub api_key: Option<String>,
    pub api_secret: Option<String>,
    /// The address clients use to reach this server (for invite links); defaults to
    /// `http://{http_addr}`.
    pub public_url: Option<String>,
    pub limits: SignalLimits,
    /// Events kept per participant for replay on resume.
    pub backlog: usize,
    /// The one UDP socket every media connection uses.
    pub udp_addr: SocketAddr,
    /// The address put in SDP as the server's UDP candidate, port included (for a port
    /// forwarded to another number); defaults to `udp_addr` or `advertise_ips`.
    pub advertise_addr: Option<SocketAddr>,
    /// Addresses clients reach the media ports at (IPv4 and IPv6; a cloud VM's public
    /// address beside its private one). Each becomes a UDP and a TCP candidate. Empty:
    /// the bound address.
    pub advertise_ips: Vec<IpAddr>,
    /// ICE over TCP (RFC 6544 passive, RFC 4571 framing): `None` means the UDP port's
    /// number on the UDP address.
    pub tcp_addr: Option<SocketAddr>,
    /// Whether to offer ICE over TCP at all.
    pub ice_tcp: bool,
    /// Lifetime of join tokens minted by the API (when the request names none), by
    /// invite exchange and by refresh, in seconds.
    pub token_ttl_secs: u64,
    /// TURN relays handed to participants, with credentials.
    pub turn: Option<TurnConfig>,
    /// Most HTTP and WebSocket connections one client address may hold.
    pub max_connections_per_ip: usize,
    /// Media worker threads; 0 for one per core.
    pub sfu_workers: usize,
    /// A second listener for `/metrics` alone, without credentials.
    pub metrics_addr: Option<SocketAddr>,
    /// HTTPS and WSS on the HTTP address, with this certificate chain and key.
    pub tls: Option<TlsFiles>,
    /// Cluster state shared with other nodes in Redis; `None`: a node on its own.
    pub cluster: Option<ClusterConfig>,
    /// How long a drain (SIGTERM, or `confer-server drain`) waits for running
    /// sessions to end before the server stops.
    pub drain_grace: Duration,
    /// Where room and participant events are posted (webhooks).
    pub webhooks: Vec<String>,
}

/// This node as a member of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port/db`.
    pub redis: String,
    /// This node's name among the others (stable across restarts).
    pub node_id: String,
    /// Where the other nodes reach this one's HTTP and signaling [default: its HTTP
    /// listener's own URL].
    pub node_url: Option<String>,
}

/// PEM files: the certificate chain (leaf first) and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for ServerConfig {
    /// An in-memory server on a free loopback port: what tests and embedders want.
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            db: ":memory:".into(),
            api_key: None,
            api_secret: None,
            public_url: None,
            limits: SignalLimits {
                max_message_bytes: 64 * 1024,
                requests_per_second: 20,
                burst: 60,
                ping_interval_ms: 10_000,
                resume_grace_ms: 20_000,
            },
            backlog: 1024,
            udp_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_addr: None,
            advertise_ips: Vec::new(),
            tcp_addr: None,
            ice_tcp: true,
            token_ttl_secs: confer_proto::token::DEFAULT_TOKEN_TTL_SECS,
            turn: None,
            max_connections_per_ip: 256,
            sfu_workers: 0,
            metrics_addr: None,
            tls: None,
            cluster: None,
            drain_grace: Duration::ZERO,
            webhooks: Vec::new(),
        }
    }
}

/// Command-line flags; each also reads an environment variable.
#[derive(Debug, Parser, Default, Deserialize)]
#[command(name = "confer-server", version, about = "Confer room server: room API, signaling and media")]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Args {
    /// TOML file with any of these options (snake_case keys).
    #[arg(long, env = "CONFER_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// HTTP and WebSocket listen address [default: 127.0.0.1:7880].
    #[arg(long, env = "CONFER_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// The store: a SQLite database file, `:memory:`, or a PostgreSQL URL
    /// (`postgres://user:password@host/database`) that several servers share
    /// [default: confer.db in the data directory].
    #[arg(long, env = "CONFER_DB", hide_env_values = true)]
    pub db: Option<String>,
    /// API key for the room API [default: generated once and kept in the database].
    #[arg(long, env = "CONFER_API_KEY")]
    pub api_key: Option<String>,
    /// API secret for the room API; also signs join tokens.
    #[arg(long, env = "CONFER_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
    /// Address clients reach this server at, used in invite links.
    #[arg(long, env = "CONFER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest signaling frame accepted, in bytes.
    #[arg(long, env = "CONFER_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u32>,
    /// Signaling requests per second allowed per connection (sustained).
    #[arg(long, env = "CONFER_REQUESTS_PER_SECOND")]
    pub requests_per_second: Option<u32>,
    /// Signaling request burst allowed per connection.
    #[arg(long, env = "CONFER_REQUEST_BURST")]
    pub request_burst: Option<u32>,
    /// Keepalive ping interval in milliseconds.
    #[arg(long, env = "CONFER_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// How long a dropped participant may resume, in milliseconds.
    #[arg(long, env = "CONFER_RESUME_GRACE_MS")]
    pub resume_grace_ms: Option<u64>,
    /// UDP address for all media (ICE-lite, one port) [default: 127.0.0.1:7882].
    #[arg(long, env = "CONFER_UDP_ADDR")]
    pub udp_addr: Option<SocketAddr>,
    /// Address and port announced to clients as the UDP media candidate [default:
    /// --udp-addr].
    #[arg(long, env = "CONFER_ADVERTISE_ADDR")]
    pub advertise_addr: Option<SocketAddr>,
    /// Addresses clients reach the media ports at, IPv4 or IPv6 (repeatable, or
    /// comma-separated); each is announced with the UDP and the TCP port [default: the
    /// address of --udp-addr].
    #[arg(long = "advertise-ip", env = "CONFER_ADVERTISE_IPS", value_delimiter = ',')]
    pub advertise_ip: Option<Vec<IpAddr>>,
    /// TCP address for ICE over TCP, for clients whose networks drop UDP [default: the
    /// UDP address and port number].
    #[arg(long, env = "CONFER_TCP_ADDR")]
    pub tcp_addr: Option<SocketAddr>,
    /// Offer no ICE-over-TCP candidate (media over UDP and TURN only).
    #[arg(long, env = "CONFER_NO_ICE_TCP")]
    #[serde(default)]
    pub no_ice_tcp: bool,
    /// Lifetime of the join tokens the server mints (API, invites, refresh), in seconds
    /// [default: 600].
    #[arg(long, env = "CONFER_TOKEN_TTL")]
    pub token_ttl: Option<u64>,
    /// A TURN relay for clients (repeatable, or comma-separated):
    /// turn:HOST:3478?transport=udp, turn:HOST:3478?transport=tcp,
    /// turns:HOST:443?transport=tcp. Needs --turn-secret.
    #[arg(long = "turn-url", env = "CONFER_TURN_URLS", value_delimiter = ',')]
    pub turn_url: Option<Vec<String>>,
    /// The secret shared with the TURN server (coturn's static-auth-secret); each
    /// participant gets credentials signed with it that expire with its join token.
    #[arg(long, env = "CONFER_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Most HTTP and WebSocket connections one client address may hold; 0 for no cap
    /// (behind a reverse proxy, every client has the proxy's address) [default: 256].
    #[arg(long, env = "CONFER_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Media worker threads; each room lives on one [default: the number of cores].
    #[arg(long, env = "CONFER_SFU_WORKERS")]
    pub sfu_workers: Option<usize>,
    /// Serve `/metrics` (Prometheus) on this address too, without credentials (on the
    /// HTTP address it needs the API key and secret as HTTP Basic credentials).
    #[arg(long, env = "CONFER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve HTTPS and WSS with this certificate chain (PEM, leaf first); needs
    /// --tls-key. Behind a TLS-terminating proxy, leave it unset.
    #[arg(long, env = "CONFER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "CONFER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Join a cluster of nodes sharing this Redis (`redis://host:port/db`); the nodes
    /// also share the --db, which must then be PostgreSQL.
    #[arg(long, env = "CONFER_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// This node's name in the cluster [default: the host name and the HTTP port].
    #[arg(long, env = "CONFER_NODE_ID")]
    pub node_id: Option<String>,
    /// Where the other nodes reach this one [default: http://HTTP_ADDR].
    #[arg(long, env = "CONFER_NODE_URL")]
    pub node_url: Option<String>,
    /// On SIGTERM (or `confer-server drain`), how long to wait for running meetings
    /// to end before stopping, in seconds; a second SIGTERM stops at once
    /// [default: 300 in a cluster, 0 on its own].
    #[arg(long, env = "CONFER_DRAIN_GRACE")]
    pub drain_grace: Option<u64>,
    /// Post room and participant events to this URL, signed with the API secret
    /// (repeat for several, or separate with commas).
    #[arg(long, env = "CONFER_WEBHOOK_URL", value_delimiter = ',')]
    pub webhook_url: Option<Vec<String>>,
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<Command>,
}

/// What to do instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Drain a running node: no new meeting starts on it, and it stops once its
    /// meetings have ended (or its --drain-grace has run out).
    Drain {
        /// The node's HTTP address [default: http://HTTP_ADDR of the options given].
        #[arg(long)]
        url: Option<String>,
        /// Return at once instead of waiting for the node to stop.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("bad config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("set both --api-key and --api-secret, or neither")]
    HalfCredentials,
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("--udp-addr {0} is unspecified; set --advertise-ip to the address clients reach")]
    NoAdvertiseAddr(SocketAddr),
    #[error(transparent)]
    TurnUrl(#[from] TurnUrlError),
    #[error("--turn-url needs --turn-secret (coturn's static-auth-secret), and --turn-secret needs a --turn-url")]
    HalfTurn,
    #[error("--advertise-ip {0} is unspecified; name the address clients reach")]
    UnspecifiedAdvertiseIp(IpAddr),
    #[error("--token-ttl must be 1 to 86400 seconds")]
    TokenTtl,
    #[error("set both --tls-cert and --tls-key, or neither")]
    HalfTls,
    #[error("--webhook-url {0} is not an http:// or https:// URL")]
    WebhookUrl(String),
    #[error("--http-addr {0} listens on every interface; set --node-url to the URL the other nodes reach this one at")]
    NoNodeUrl(SocketAddr),
}

impl Args {
    /// Resolves the flags (and the file they name) into a configuration.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.clone(), e))?;
                toml::from_str::<Args>(&text).map_err(|e| ConfigError::Parse(path.clone(), e))?
            }
            None => Args::default(),
        };
        let mut c = ServerConfig {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7880)),
            db: default_db_path(),
            udp_addr: SocketAddr::from(([127, 0, 0, 1], 7882)),
            ..ServerConfig::default()
        };
        macro_rules! layer {
            ($field:ident => $target:expr) => {
                if let Some(v) = self.$field.or(file.$field) {
                    $target = v.into();
                }
            };
        }
        layer!(http_addr => c.http_addr);
        if let Some(cap) = self.max_connections_per_ip.or(file.max_connections_per_ip) {
            c.max_connections_per_ip = if cap == 0 { usize::MAX } else { cap };
        }
        layer!(db => c.db);
        layer!(api_key => c.api_key);
        layer!(api_secret => c.api_secret);
        layer!(public_url => c.public_url);
        layer!(max_message_bytes => c.limits.max_message_bytes);
        layer!(requests_per_second => c.limits.requests_per_second);
        layer!(request_burst => c.limits.burst);
        layer!(ping_interval_ms => c.limits.ping_interval_ms);
        layer!(resume_grace_ms => c.limits.resume_grace_ms);
        layer!(udp_addr => c.udp_addr);
        if let Some(v) = self.advertise_addr.or(file.advertise_addr) {
            c.advertise_addr = Some(v);
        }
        layer!(advertise_ip => c.advertise_ips);
        if let Some(v) = self.tcp_addr.or(file.tcp_addr) {
            c.tcp_addr = Some(v);
        }
        c.ice_tcp = !(self.no_ice_tcp || file.no_ice_tcp);
        layer!(sfu_workers => c.sfu_workers);
        if let Some(v) = self.metrics_addr.or(file.metrics_addr) {
            c.metrics_addr = Some(v);
        }
        c.tls = match (self.tls_cert.or(file.tls_cert), self.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(ConfigError::HalfTls),
        };
        if let Some(redis) = self.redis.or(file.redis) {
            let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
            c.cluster = Some(ClusterConfig {
                redis,
                node_id: self.node_id.or(file.node_id).unwrap_or_else(|| format!("{host}:{}", c.http_addr.port())),
                // Unset: the HTTP listener's own address (see `Server::start`).
                node_url: self.node_url.or(file.node_url),
            });
            if c.cluster.as_ref().is_some_and(|k| k.node_url.is_none()) && c.http_addr.ip().is_unspecified() {
                return Err(ConfigError::NoNodeUrl(c.http_addr));
            }
        }
        let default_grace = if c.cluster.is_some() { 300 } else { 0 };
        c.drain_grace = Duration::from_secs(self.drain_grace.or(file.drain_grace).unwrap_or(default_grace));
        c.webhooks = self.webhook_url.or(file.webhook_url).unwrap_or_default();
        if let Some(bad) = c.webhooks.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(ConfigError::WebhookUrl(bad.clone()));
        }
        layer!(token_ttl => c.token_ttl_secs);
        if !(1..=86_400).contains(&c.token_ttl_secs) {
            return Err(ConfigError::TokenTtl);
        }
        if let Some(ip) = c.advertise_ips.iter().find(|ip| ip.is_unspecified()) {
            return Err(ConfigError::UnspecifiedAdvertiseIp(*ip));
        }
        let turn_urls = self.turn_url.or(file.turn_url).unwrap_or_default();
        let turn_urls = turn_urls.iter().map(|u| TurnUrl::parse(u.trim())).collect::<Result<Vec<_>, _>>()?;
        c.turn = match (turn_urls.is_empty(), self.turn_secret.or(file.turn_secret)) {
            (true, None) => None,
            (false, Some(secret)) if !secret.is_empty() => Some(TurnConfig::new(turn_urls, secret)),
            _ => return Err(ConfigError::HalfTurn),
        };
        if c.api_key.is_some() != c.api_secret.is_some() {
            return Err(ConfigError::HalfCredentials);
        }
        for (name, v) in [
            ("max_message_bytes", c.limits.max_message_bytes as u64),
            ("requests_per_second", c.limits.requests_per_second as u64),
            ("request_burst", c.limits.burst as u64),
            ("ping_interval_ms", c.limits.ping_interval_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if c.advertise_addr.is_none() && c.advertise_ips.is_empty() && c.udp_addr.ip().is_unspecified() {
            return Err(ConfigError::NoAdvertiseAddr(c.udp_addr));
        }
        Ok(c)
    }
}

fn default_db_path() -> String {
    let dir = dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("confer-server");
    dir.join("confer.db").to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file() {
        let dir = std::env::temp_dir().join(format!("confer-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "db = \":memory:\"\nhttp_addr = \"127.0.0.1:9000\"\nresume_grace_ms = 5\n").unwrap();
        let args =
            Args::parse_from(["confer-server", "--config", path.to_str().unwrap(), "--http-addr", "127.0.0.1:9100"]);
        let c = args.resolve().unwrap();
        assert_eq!(c.http_addr.port(), 9100);
        assert_eq!(c.db, ":memory:");
        assert_eq!(c.limits.resume_grace_ms, 5);
    }

    #[test]
    fn half_credentials_are_refused() {
        let args = Args::parse_from(["confer-server", "--api-key", "k"]);
        assert!(matches!(args.resolve(), Err(ConfigError::HalfCredentials)));
    }

    #[test]
    fn turn_and_advertised_addresses_are_read_and_checked() {
        let c = Args::parse_from([
            "confer-server",
            "--turn-url",
            "turn:10.0.0.1:3478?transport=udp,turn:10.0.0.1:3478?transport=tcp",
            "--turn-url",
            "turns:relay.example.com:443?transport=tcp",
            "--turn-secret",
            "s",
            "--advertise-ip",
            "203.0.113.5,2001:db8::5",
            "--udp-addr",
            "0.0.0.0:7882",
            "--token-ttl",
            "30",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.turn.unwrap().urls.len(), 3);
        assert_eq!(c.advertise_ips.len(), 2);
        assert_eq!(c.token_ttl_secs, 30);
        let bad = Args::parse_from(["confer-server", "--turn-url", "turn:x:99999", "--turn-secret", "s"]).resolve();
        assert!(matches!(bad, Err(ConfigError::TurnUrl(_))), "{bad:?}");
        let half = Args::parse_from(["confer-server", "--turn-url", "turn:x"]).resolve();
        assert!(matches!(half, Err(ConfigError::HalfTurn)));
        let ttl = Args::parse_from(["confer-server", "--token-ttl", "0"]).resolve();
        assert!(matches!(ttl, Err(ConfigError::TokenTtl)));
    }

    #[test]
    fn the_deploy_guides_file_is_read() {
        let text = r#"
            advertise_ip = ["203.0.113.10", "10.0.0.5"]
            udp_addr = "10.0.0.5:7882"
            tcp_addr = "10.0.0.5:7882"
            token_ttl = 600
            turn_url = ["turn:meet.example.com:3478?transport=udp", "turns:meet.example.com:5349?transport=tcp"]
            turn_secret = "s"
        "#;
        let file: Args = toml::from_str(text).unwrap();
        let dir = std::env::temp_dir().join(format!("confer-deploy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.toml");
        std::fs::write(&path, text).unwrap();
        drop(file);
        let c = Args::parse_from(["confer-server", "--config", path.to_str().unwrap()]).resolve().unwrap();
        assert_eq!(c.advertise_ips.len(), 2);
        assert_eq!(c.tcp_addr, Some("10.0.0.5:7882".parse().unwrap()));
        assert_eq!(c.turn.unwrap().urls.len(), 2);
    }

    #[test]
    fn a_node_listening_everywhere_needs_its_url() {
        let node = ["confer-server", "--redis", "redis://10.0.0.5/", "--http-addr", "0.0.0.0:7880"];
        assert!(matches!(Args::parse_from(node).resolve(), Err(ConfigError::NoNodeUrl(_))));
        let named = Args::parse_from([&node[..], &["--node-url", "http://10.0.0.11:7880"]].concat()).resolve().unwrap();
        assert_eq!(named.cluster.unwrap().node_url.as_deref(), Some("http://10.0.0.11:7880"));
        let local = Args::parse_from(["confer-server", "--redis", "redis://10.0.0.5/"]).resolve().unwrap();
        assert_eq!(local.cluster.unwrap().node_url, None, "the listener's own address, once bound");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<Args>("no_such_option = 1").is_err());
    }
}
