//! Credentials: the API key and secret that guard the room API, the join tokens (JWT,
//! HS256, signed with the API secret) they mint, and the hashing of stored secrets
//! (refresh tokens, invites) so that a leaked database does not leak usable secrets.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use confer_proto::token::{Grants, JoinClaims};
use confer_proto::{ErrorCode, Identity, RoomId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// How far in the future a token's `nbf` may be, for clocks that are a little ahead.
const NBF_LEEWAY_SECS: u64 = 60;
/// The longest a join token may still be valid for. Tokens the server mints live at most
/// a day; this bounds those signed elsewhere with the API secret, so that every expiry
/// is a time the server can compute with.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 400 * 86_400;

/// The server's API credentials and the keys derived from them.
#[derive(Clone)]
pub struct Credentials {
    api_key: String,
    api_secret: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("api_key", &self.api_key).finish_non_exhaustive()
    }
}

/// What a verified join token says.
#[derive(Debug, Clone)]
pub struct JoinToken {
    pub room: RoomId,
    pub identity: Identity,
    pub name: String,
    pub grants: Grants,
    /// Seconds since the epoch (`iat`): a token issued before a kick, or before its
    /// room was created, is refused.
    pub issued_at: u64,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

impl Credentials {
    pub fn new(api_key: String, api_secret: String) -> Self {
        let encoding = EncodingKey::from_secret(api_secret.as_bytes());
        let decoding = DecodingKey::from_secret(api_secret.as_bytes());
        Self { api_key, api_secret, encoding, decoding }
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    pub fn api_secret(&self) -> &str {
        &self.api_secret
    }

    /// Checks an `Authorization` header value: HTTP Basic with `key:secret`.
    pub fn check_basic(&self, header: Option<&str>) -> Result<(), ApiError> {
        let unauthorized = || ApiError::from(ErrorCode::Unauthorized);
        let encoded = header.and_then(|h| h.strip_prefix("Basic ")).ok_or_else(unauthorized)?;
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| unauthorized())?;
        let expected = format!("{}:{}", self.api_key, self.api_secret);
        if bool::from(decoded.ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(unauthorized())
        }
    }

    /// Mints a join token valid from `now` (seconds) for `ttl` seconds.
    pub fn mint(&self, room: &RoomId, identity: &Identity, name: &str, grants: &Grants, now: u64, ttl: u64) -> String {
        let claims = JoinClaims {
            iss: self.api_key.clone(),
            sub: identity.clone(),
            room: room.clone(),
            name: name.to_owned(),
            grants: grants.clone(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl),
            jti: random_secret(12),
        };
        // HS256 over a serializable struct cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims")
    }

    /// Verifies a join token's signature, issuer and expiry at `now` (seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<JoinToken, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry and not-before are checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.set_issuer(&[&self.api_key]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &validation).map_err(|e| {
            let reason = match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::InvalidIssuer => "signed with another API key",
                ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) => "missing or malformed claims",
                _ => "not a valid join token",
            };
            ApiError::new(ErrorCode::InvalidToken, format!("invalid token: {reason}"))
        })?;
        let claims: JoinClaims = confer_proto::strict::from_value(data.claims)
            .map_err(|e| ApiError::new(ErrorCode::InvalidToken, format!("invalid token: malformed claims: {e}")))?;
        if claims.nbf > now.saturating_add(NBF_LEEWAY_SECS) {
            return Err(ApiError::new(ErrorCode::InvalidToken, "invalid token: not valid yet (nbf)"));
        }
        if claims.exp <= now {
            return Err(ApiError::new(ErrorCode::TokenExpired, "the join token has expired"));
        }
        if claims.exp > now.saturating_add(MAX_TOKEN_LIFETIME_SECS) {
            return Err(ApiError::new(
                ErrorCode::InvalidToken,
                format!("invalid token: expires more than {} days ahead", MAX_TOKEN_LIFETIME_SECS / 86_400),
            ));
        }
        Ok(JoinToken {
            room: claims.room,
            identity: claims.sub,
            name: claims.name,
            grants: claims.grants,
            issued_at: claims.iat,
            expires_at: claims.exp,
        })
    }
}

/// A random URL-safe secret carrying `bytes` bytes of entropy.
pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The form in which secrets handed to clients are stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new("key".into(), "secret".into())
    }

    #[test]
    fn tokens_verify_and_expire() {
        let c = creds();
        let t = c.mint(&"r".into(), &"alice".into(), "Alice", &Grants::default(), 1000, 600);
        let v = c.verify(&t, 1599).unwrap();
        assert_eq!((v.room.0.as_str(), v.identity.0.as_str(), v.expires_at), ("r", "alice", 1600));
        assert_eq!(c.verify(&t, 1600).unwrap_err().code, ErrorCode::TokenExpired);
        // Not before its nbf (beyond the leeway).
        assert_eq!(c.verify(&t, 1000 - 61).unwrap_err().code, ErrorCode::InvalidToken);
        assert!(c.verify(&t, 1000 - 30).is_ok());
    }

    #[test]
    fn foreign_and_garbled_tokens_are_invalid() {
        let other = Credentials::new("key".into(), "other".into());
        let t = other.mint(&"r".into(), &"a".into(), "", &Grants::default(), 1000, 600);
        assert_eq!(creds().verify(&t, 1000).unwrap_err().code, ErrorCode::InvalidToken);
        assert_eq!(creds().verify("garbage", 1000).unwrap_err().code, ErrorCode::InvalidToken);
        let wrong_key = Credentials::new("k2".into(), "secret".into());
        let t = wrong_key.mint(&"r".into(), &"a".into(), "", &Grants::default(), 1000, 600);
        assert_eq!(creds().verify(&t, 1000).unwrap_err().code, ErrorCode::InvalidToken);
    }

    #[test]
    fn basic_auth() {
        let c = creds();
        let good = format!("Basic {}", STANDARD.encode("key:secret"));
        assert!(c.check_basic(Some(&good)).is_ok());
        let bad = format!("Basic {}", STANDARD.encode("key:nope"));
        assert_eq!(c.check_basic(Some(&bad)).unwrap_err().code, ErrorCode::Unauthorized);
        assert!(c.check_basic(None).is_err());
        assert!(c.check_basic(Some("Basic !!!")).is_err());
    }
}
