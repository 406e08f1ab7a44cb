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
pub use confer_proto::turn_url::{TurnTransport, TurnUrl, TurnUrlError};
use confer_proto::Identity;
use hmac::{Hmac, Mac};
use sha1::Sha1;

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
