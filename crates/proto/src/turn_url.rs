//! TURN server URLs (RFC 7065), as the server's `--turn-url` takes them and as clients
//! read them from a join response's `ice_servers`: one grammar for both sides.

use std::fmt;

/// A TURN server's URL, as RFC 7065 writes it: `turn:HOST[:PORT][?transport=udp|tcp]` or
/// `turns:HOST[:PORT][?transport=tcp]`.
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

/// Why a TURN URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnUrlError {
    pub url: String,
    pub why: &'static str,
}

impl fmt::Display for TurnUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad TURN URL {:?}: {} (expected turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT][?transport=tcp])",
            self.url, self.why
        )
    }
}

impl std::error::Error for TurnUrlError {}

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

impl TurnUrl {
    /// `host:port`, with an IPv6 host in brackets: what to connect to.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for TurnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "turns" } else { "turn" };
        let transport = match self.transport {
            TurnTransport::Udp => "udp",
            TurnTransport::Tcp => "tcp",
        };
        write!(f, "{scheme}:{}?transport={transport}", self.authority())
    }
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
}
