//! The SDK's integration tests against an in-process server.
//!
//! One test binary for the crate (each links the whole stack; CI builds each once):
//! one module per behaviour.

mod common;

mod connect;
mod connection_lost;
mod fresh_join;
mod kick;
mod media_interop;
mod messages;
mod resume;
mod room_updated;
