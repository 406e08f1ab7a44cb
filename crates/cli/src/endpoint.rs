//! The room API's base URL from what the user passes as `--url`.
//!
//! The same `--url` serves the room API and the bot, so it accepts `http(s)://`,
//! `ws(s)://` (mapped to `http(s)://`), or a bare `host[:port]` (taken as `http://`),
//! with or without `/v1` or `/v1/signal`, and with a path prefix for servers behind a
//! reverse proxy. The result has an `http` or `https` scheme, a host, no trailing slash
//! and no query or fragment; API paths are appended to it.

use url::Url;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid server url {url:?}: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: &'static str,
}

/// The base URL of the room API for `input` (see [`confer_client::endpoint::server_base`]).
pub fn api_base(input: &str) -> Result<Url, UrlError> {
    confer_client::endpoint::server_base(input).map_err(|e| match e {
        confer_client::ClientError::InvalidUrl { url, reason } => UrlError { url, reason },
        _ => UrlError { url: input.to_owned(), reason: "not a server address" },
    })
}

pub use confer_client::api::api_url;

#[cfg(test)]
mod tests {
    use super::*;

    fn base(input: &str) -> String {
        api_base(input).unwrap_or_else(|e| panic!("{e}")).to_string()
    }

    #[test]
    fn accepts_every_form_of_the_server_address() {
        assert_eq!(base("http://127.0.0.1:7880"), "http://127.0.0.1:7880/");
        assert_eq!(base("http://127.0.0.1:7880/"), "http://127.0.0.1:7880/");
        assert_eq!(base("ws://127.0.0.1:7880/v1/signal"), "http://127.0.0.1:7880/");
        assert_eq!(base("wss://meet.example.org/v1/"), "https://meet.example.org/");
        assert_eq!(base("localhost:7880"), "http://localhost:7880/");
        assert_eq!(base("https://example.org/confer/v1?x=1#y"), "https://example.org/confer");
    }

    #[test]
    fn rejects_what_cannot_be_a_server() {
        for bad in ["", "ftp://h", "http://", "wss://", "gopher://h:70"] {
            assert!(api_base(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_paths_are_encoded() {
        let b = api_base("http://h:1").unwrap();
        assert_eq!(api_url(&b, &["rooms", "a b/c"]).as_str(), "http://h:1/v1/rooms/a%20b%2Fc");
        let b = api_base("https://h/confer/").unwrap();
        assert_eq!(api_url(&b, &["sessions"]).as_str(), "https://h/confer/v1/sessions");
    }
}
