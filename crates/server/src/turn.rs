//! TURN relays for clients whose networks block a direct path to the SFU.
//!
//! Confer does not relay itself: it points clients at a TURN server (coturn) and hands
//! each participant short-lived credentials in the "TURN REST" scheme that coturn checks
//! with `use-auth-secret` / `static-auth-secret`: the username is
//! `<expiry unix seconds>:<identity>` and the password is
//! `base64(HMAC-SHA1(secret, username))`. Nothing is shared with coturn but the secret,
//! and a credential is useless after its expiry (coturn checks it when an allocation is
//! made; an allocation made in time lives on). Credentials expire with the join token
//! they came with and are renewed with it.

use std::fmt;

use base64::Engine as _;
use confer_proto::signal::IceServer;
use confer_proto::Identity;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// One `--turn-url`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnUrl {
    /// `turns` (TLS) or `turn`.
    pub secure: bool,
    pub host: String,
    pub port: u16,
    pub transport: TurnTransport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnTransport {
    Udp,
    Tcp,
}

/// Why a `--turn-url` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad TURN URL {url:?}: {why} (expected turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT][?transport=tcp])")]
pub struct TurnUrlError {
    pub url: String,
    pub why: &'static str,
}

impl TurnUrl {
    pub fn parse(url: &str) -> Result<Self, TurnUrlError> {
        let fail = |why| TurnUrlError { url: url.to_owned(), why };
        let (scheme, rest) = url.split_once(':').ok_or(fail("no scheme"))?;
        let secure = match scheme {
            "turn" => false,
            "turns" => true,
            "stun" | "stuns" => return Err(fail("a STUN URL is not a relay")),
            _ => return Err(fail("the scheme must be turn or turns")),
        };
        if rest.starts_with("//") {
            return Err(fail("no // after the scheme"));
        }
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (host, port) = split_host_port(authority).ok_or(fail("the host or port is malformed"))?;
        let valid_host = |h: &str| {
            !h.is_empty()
                && (h.parse::<std::net::Ipv6Addr>().is_ok()
                    || h.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        };
        if !valid_host(host) {
            return Err(fail("the host is malformed"));
        }
        let transport = match query {
            None => {
                if secure {
                    TurnTransport::Tcp
                } else {
                    TurnTransport::Udp
                }
            }
            Some("transport=udp") if !secure => TurnTransport::Udp,
            Some("transport=udp") => return Err(fail("turns (TLS) runs over TCP only")),
            Some("transport=tcp") => TurnTransport::Tcp,
            Some(_) => return Err(fail("the only query is transport=udp or transport=tcp")),
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(fail("the port must be 1 to 65535"))?,
            None if secure => 5349,
            None => 3478,
        };
        Ok(TurnUrl { secure, host: host.to_owned(), port, transport })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

impl fmt::Display for TurnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "turns" } else { "turn" };
        let transport = match self.transport {
            TurnTransport::Udp => "udp",
            TurnTransport::Tcp => "tcp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}:[{}]:{}?transport={transport}", self.host, self.port)
        } else {
            write!(f, "{scheme}:{}:{}?transport={transport}", self.host, self.port)
        }
    }
}

/// The relays handed to clients, and the secret their credentials are signed with.
#[derive(Clone)]
pub struct TurnConfig {
    pub urls: Vec<TurnUrl>,
    secret: String,
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig").field("urls", &self.urls).finish_non_exhaustive()
    }
}

impl TurnConfig {
    pub fn new(urls: Vec<TurnUrl>, secret: String) -> Self {
        Self { urls, secret }
    }

    /// The ICE servers for `identity`, with credentials that expire at `expires_at`
    /// (Unix seconds).
    pub fn ice_servers(&self, identity: &Identity, expires_at: u64) -> Vec<IceServer> {
        // A colon in the identity would not confuse coturn (it reads the number before
        // the first one), but keep the username one token for logs.
        let user: String = identity.0.chars().map(|c| if c == ':' { '_' } else { c }).collect();
        let username = format!("{expires_at}:{user}");
        let credential = sign(&self.secret, &username);
        vec![IceServer {
            urls: self.urls.iter().map(ToString::to_string).collect(),
            username: Some(username),
            credential: Some(credential),
        }]
    }
}

fn sign(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_defaults() {
        let u = TurnUrl::parse("turn:turn.example.com").unwrap();
        assert_eq!((u.secure, u.port, u.transport), (false, 3478, TurnTransport::Udp));
        let u = TurnUrl::parse("turn:10.0.0.1:3479?transport=tcp").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.transport), ("10.0.0.1", 3479, TurnTransport::Tcp));
        let u = TurnUrl::parse("turns:turn.example.com:443?transport=tcp").unwrap();
        assert_eq!(u.to_string(), "turns:turn.example.com:443?transport=tcp");
        let u = TurnUrl::parse("turns:relay").unwrap();
        assert_eq!((u.port, u.transport), (5349, TurnTransport::Tcp));
        let u = TurnUrl::parse("turn:[2001:db8::1]:3478?transport=udp").unwrap();
        assert_eq!(u.host, "2001:db8::1");
        assert_eq!(u.to_string(), "turn:[2001:db8::1]:3478?transport=udp");
    }

    #[test]
    fn malformed_urls_say_what_is_wrong() {
        for bad in [
            "",
            "turn",
            "http://x",
            "stun:x:3478",
            "turn://x:3478",
            "turn:x:0",
            "turn:x:99999",
            "turn:x:port",
            "turn:x?transport=sctp",
            "turns:x?transport=udp",
            "turn:",
            "turn:a b",
            "turn:[::1",
        ] {
            let e = TurnUrl::parse(bad).unwrap_err();
            assert!(e.to_string().contains("bad TURN URL"), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        let config = TurnConfig::new(vec![TurnUrl::parse("turn:127.0.0.1:3478").unwrap()], "north".into());
        let servers = config.ice_servers(&Identity("alice".into()), 1_700_000_000);
        assert_eq!(servers[0].username.as_deref(), Some("1700000000:alice"));
        // HMAC-SHA1("north", "1700000000:alice"), base64: what coturn computes.
        assert_eq!(servers[0].credential.as_deref(), Some(sign("north", "1700000000:alice").as_str()));
        assert_eq!(sign("key", "The quick brown fox jumps over the lazy dog"), "3nybhbi3iqa8ino29wqQcBydtNk=");
        assert_eq!(servers[0].urls, vec!["turn:127.0.0.1:3478?transport=udp"]);
    }
}
