//! Confer's wire types, shared by the server, the client SDK, the CLI and the app.
//!
//! This crate is the only place where the shapes that cross a process boundary live:
//! the HTTP room API bodies ([`room`], [`token`], [`session`]), the WebSocket signaling
//! protocol ([`signal`]) and the error-code catalog ([`error`]). It holds data and serde
//! attributes only: no I/O, no clocks, no business rules. `docs/protocol.md` is the prose
//! form of what is here.

// Panics in the protocol, the server and the SDK are bugs: they say why (expect) or
// are handled, never a bare unwrap outside tests.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod bytes;
pub mod error;
pub mod ids;
pub mod room;
pub mod session;
pub mod signal;
pub mod strict;
pub mod token;
pub mod track;
pub mod turn_url;

pub use bytes::Bytes;
pub use error::{ErrorBody, ErrorCode};
pub use ids::{Identity, ParticipantId, RoomId};

/// Milliseconds since the Unix epoch, UTC. Every timestamp on the wire uses this unit.
pub type UnixMillis = u64;

/// The version of the signaling protocol described by this crate. Sent by the client in
/// `join` so a server can refuse a client it cannot speak to.
pub const PROTOCOL_VERSION: u32 = 1;
