//! Strict JSON reading of what peers send.
//!
//! serde's derived `Deserialize` for a struct accepts a JSON array as well as an object
//! and reads the array positionally (`[true, null, true]` becomes the first three
//! fields). That is never what the protocol means, and it lets a peer set fields whose
//! names it never wrote. [`from_slice`] reads a value as usual, then checks that every
//! place where the value is an object in the protocol's own (serialized) form was an
//! object in the input too.
//!
//! The check compares shapes after the fact instead of wrapping the deserializer, so it
//! also holds inside internally tagged enums, which serde buffers before reading.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Why a strict read failed.
#[derive(Debug)]
pub enum StrictError {
    /// Not JSON, or not the expected shape by serde's own rules.
    Json(serde_json::Error),
    /// An array (or other non-object) stood where an object is meant; the path says where.
    NotAnObject(String),
}

impl std::fmt::Display for StrictError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StrictError::Json(e) => e.fmt(f),
            StrictError::NotAnObject(path) => write!(f, "{path} must be a JSON object"),
        }
    }
}

impl std::error::Error for StrictError {}

/// Reads `T` from JSON text, refusing arrays where `T` has objects.
pub fn from_slice<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, StrictError> {
    let input: Value = serde_json::from_slice(bytes).map_err(StrictError::Json)?;
    from_value(input)
}

/// Reads `T` from parsed JSON, refusing arrays where `T` has objects.
pub fn from_value<T: DeserializeOwned + Serialize>(input: Value) -> Result<T, StrictError> {
    let value: T = serde_json::from_value(input.clone()).map_err(StrictError::Json)?;
    // The protocol's types serialize to plain JSON; should one not, there is nothing to
    // compare and serde's reading stands.
    if let Ok(canonical) = serde_json::to_value(&value) {
        check(&input, &canonical, &mut String::from("the body"))?;
    }
    Ok(value)
}

/// Walks `canonical` (the value as the protocol writes it) beside `input`.
fn check(input: &Value, canonical: &Value, path: &mut String) -> Result<(), StrictError> {
    match (input, canonical) {
        (Value::Object(input), Value::Object(canonical)) => {
            for (key, inner) in canonical {
                if let Some(given) = input.get(key) {
                    let len = path.len();
                    path.push('.');
                    path.push_str(key);
                    check(given, inner, path)?;
                    path.truncate(len);
                }
            }
            Ok(())
        }
        (Value::Array(input), Value::Array(canonical)) => {
            for (i, (given, inner)) in input.iter().zip(canonical).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check(given, inner, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        // Serde filled an object from something else: an array read positionally.
        (_, Value::Object(_)) => Err(StrictError::NotAnObject(path.clone())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::ClientMessage;
    use crate::token::{CreateToken, Grants, JoinClaims};

    #[test]
    fn objects_are_read_as_usual() {
        let t: CreateToken =
            from_slice(br#"{"room":"r","identity":"a","grants":{"moderator":true}}"#).expect("a valid body");
        assert!(t.grants.moderator);
    }

    #[test]
    fn arrays_never_stand_for_objects() {
        // Serde alone reads this array as a `Grants`, moderator included.
        let lenient: Grants = serde_json::from_str("[true, null, true, true, true, false]").unwrap();
        assert!(lenient.moderator);
        assert!(matches!(
            from_slice::<Grants>(b"[true, null, true, true, true, false]"),
            Err(StrictError::NotAnObject(_))
        ));
        let claims = br#"{"iss":"k","sub":"a","room":"r","grants":[true,null,true,true,true,false],
            "iat":1,"nbf":1,"exp":2,"jti":"j"}"#;
        let err = from_slice::<JoinClaims>(claims).unwrap_err();
        assert_eq!(err.to_string(), "the body.grants must be a JSON object");
        assert!(from_slice::<CreateToken>(br#"["r", "a", null, null, {}]"#).is_err());
    }

    #[test]
    fn tagged_requests_are_checked_inside() {
        let ok =
            br#"{"id":1,"request":{"type":"update_stream","key":"main","tracks":[{"track_id":"TR_1","muted":true}]}}"#;
        assert!(from_slice::<ClientMessage>(ok).is_ok());
        let array = br#"{"id":1,"request":{"type":"update_stream","key":"main","tracks":[["TR_1",true]]}}"#;
        assert!(serde_json::from_slice::<ClientMessage>(array).is_ok(), "serde alone reads it");
        assert!(from_slice::<ClientMessage>(array).is_err());
    }
}
