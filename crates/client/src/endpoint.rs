//! Turning what a user types as a server address into the server's URLs.
//!
//! Accepted: `http://`, `https://`, `ws://`, `wss://`, or a bare `host[:port]` (taken
//! as `http://`), with or without `/v1` or `/v1/signal`, and with an optional path
//! prefix for servers behind a reverse proxy (`https://example.org/confer`). The CLI, the
//! app and the SDK all read addresses through here, so they accept the same forms.

use url::Url;

use crate::error::ClientError;

const SIGNAL_PATH: &str = "/v1/signal";

/// The server's base URL for `input`: an `http` or `https` scheme, a host, the path
/// prefix if any (no trailing slash, no `/v1`), no query or fragment. The room API lives
/// under `{base}/v1/`.
pub fn server_base(input: &str) -> Result<Url, ClientError> {
    let invalid = |reason| ClientError::InvalidUrl { url: input.to_owned(), reason };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    let with_scheme = if trimmed.contains("://") { trimmed.to_owned() } else { format!("http://{trimmed}") };
    let mut url = Url::parse(&with_scheme).map_err(|_| invalid("not a URL"))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        _ => return Err(invalid("the scheme must be http, https, ws or wss")),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if url.set_scheme(scheme).is_err() {
        // Unreachable between the special schemes above; an error all the same, not a panic.
        return Err(invalid("the scheme cannot be changed"));
    }
    let mut path = url.path().trim_end_matches('/');
    for suffix in [SIGNAL_PATH, "/v1"] {
        if let Some(prefix) = path.strip_suffix(suffix) {
            path = prefix;
            break;
        }
    }
    let path = path.to_owned();
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The signaling WebSocket URL for `input`: `ws(s)://{base}/v1/signal`.
pub fn signal_url(input: &str) -> Result<Url, ClientError> {
    let mut url = server_base(input)?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    if url.set_scheme(scheme).is_err() {
        return Err(ClientError::InvalidUrl { url: input.to_owned(), reason: "the scheme cannot be changed" });
    }
    let path = format!("{}{SIGNAL_PATH}", url.path().trim_end_matches('/'));
    url.set_path(&path);
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
    fn base_drops_api_paths_and_queries() {
        let base = |i: &str| server_base(i).unwrap().to_string();
        assert_eq!(base("ws://127.0.0.1:7880/v1/signal"), "http://127.0.0.1:7880/");
        assert_eq!(base("wss://meet.example.org/v1/"), "https://meet.example.org/");
        assert_eq!(base("localhost:7880"), "http://localhost:7880/");
        assert_eq!(base("https://example.org/confer/v1?x=1#y"), "https://example.org/confer");
    }

    #[test]
    fn rejects_what_cannot_be_a_server() {
        for bad in ["", "   ", "ftp://h", "http://", "file:///tmp/x", "ws://:80"] {
            assert!(matches!(signal_url(bad), Err(ClientError::InvalidUrl { .. })), "{bad:?} should be rejected");
        }
    }
}
