//! Turning what a user types as a server address into the signaling WebSocket URL.
//!
//! Accepted: `http://`, `https://`, `ws://`, `wss://`, or a bare `host[:port]` (taken
//! as `ws://`), with or without the `/v1/signal` path and with an optional path prefix
//! for servers behind a reverse proxy (`https://example.org/confer`). The result always
//! has a `ws` or `wss` scheme, a host, a path ending in `/v1/signal`, and no fragment.

use url::Url;

use crate::error::ClientError;

const SIGNAL_PATH: &str = "/v1/signal";

/// The signaling URL for `input`. See the module docs for what is accepted.
pub fn signal_url(input: &str) -> Result<Url, ClientError> {
    let invalid = |reason| ClientError::InvalidUrl { url: input.to_owned(), reason };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    let with_scheme = if trimmed.contains("://") { trimmed.to_owned() } else { format!("ws://{trimmed}") };
    let mut url = Url::parse(&with_scheme).map_err(|_| invalid("not a URL"))?;
    let scheme = match url.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        _ => return Err(invalid("the scheme must be http, https, ws or wss")),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if url.set_scheme(scheme).is_err() {
        // Unreachable for the four special schemes above; kept as an error, not a panic.
        return Err(invalid("the scheme cannot be changed"));
    }
    let base = url.path().trim_end_matches('/').to_owned();
    let path = if base.ends_with(SIGNAL_PATH) {
        base
    } else if let Some(prefix) = base.strip_suffix("/v1") {
        format!("{prefix}{SIGNAL_PATH}")
    } else {
        format!("{base}{SIGNAL_PATH}")
    };
    url.set_path(&path);
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        signal_url(input).unwrap_or_else(|e| panic!("{input}: {e}")).to_string()
    }

    #[test]
    fn normalizes_schemes_and_paths() {
        assert_eq!(ok("http://127.0.0.1:7880"), "ws://127.0.0.1:7880/v1/signal");
        assert_eq!(ok("http://127.0.0.1:7880/"), "ws://127.0.0.1:7880/v1/signal");
        assert_eq!(ok("https://meet.example.org"), "wss://meet.example.org/v1/signal");
        assert_eq!(ok("ws://localhost:7880/v1/signal"), "ws://localhost:7880/v1/signal");
        assert_eq!(ok("wss://h/v1/signal/"), "wss://h/v1/signal");
        assert_eq!(ok("ws://h/v1"), "ws://h/v1/signal");
        assert_eq!(ok("https://example.org/confer/"), "wss://example.org/confer/v1/signal");
        assert_eq!(ok("  localhost:7880 "), "ws://localhost:7880/v1/signal");
        assert_eq!(ok("http://h:80/#frag"), "ws://h/v1/signal");
        assert_eq!(ok("https://[::1]:8443"), "wss://[::1]:8443/v1/signal");
    }

    #[test]
    fn rejects_what_cannot_be_a_server() {
        for bad in ["", "   ", "ftp://h", "http://", "file:///tmp/x", "ws://:80"] {
            assert!(matches!(signal_url(bad), Err(ClientError::InvalidUrl { .. })), "{bad:?} should be rejected");
        }
    }
}
