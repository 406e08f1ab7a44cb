//! What the fuzz targets share: reading peer bytes the way the server does, and the
//! round trip every wire type must survive.

use std::fmt::Debug;

use confer_proto::strict;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Reads `T` strictly from `bytes`, as the server reads a frame or a body. When that
/// succeeds, what `T` serializes to must read back, strictly, as an equal value: a
/// value the server accepts can always be written by a client and by the SDK.
pub fn read_and_round_trip<T>(bytes: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let Ok(value) = strict::from_slice::<T>(bytes) else { return };
    let written = serde_json::to_vec(&value).expect("a value read from JSON serializes");
    let again = strict::from_slice::<T>(&written).unwrap_or_else(|e| {
        panic!("{value:?} wrote {:?}, which does not read back: {e}", String::from_utf8_lossy(&written))
    });
    assert_eq!(value, again, "changed on the way through {:?}", String::from_utf8_lossy(&written));
}
