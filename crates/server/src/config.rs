//! Server configuration: defaults, then a TOML file, then environment variables, then
//! command-line flags, each overriding the one before.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use confer_proto::signal::SignalLimits;
use serde::Deserialize;

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
    /// The address put in SDP as the server's only ICE candidate; defaults to
    /// `udp_addr` (which then must not be unspecified).
    pub advertise_addr: Option<SocketAddr>,
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
    /// SQLite database file, or `:memory:` [default: confer.db in the data directory].
    #[arg(long, env = "CONFER_DB")]
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
    /// Address announced to clients as the media candidate [default: --udp-addr].
    #[arg(long, env = "CONFER_ADVERTISE_ADDR")]
    pub advertise_addr: Option<SocketAddr>,
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
    #[error("--udp-addr {0} is unspecified; set --advertise-addr to the address clients reach")]
    NoAdvertiseAddr(SocketAddr),
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
        if c.advertise_addr.is_none() && c.udp_addr.ip().is_unspecified() {
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
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<Args>("no_such_option = 1").is_err());
    }
}
