//! Confer's Rust client SDK.
//!
//! [`Room::connect`] joins a room with a join token and returns a [`Room`] handle plus
//! the receiver of [`RoomEvent`]s. The handle gives the current [`RoomSnapshot`] and
//! sends requests (messages, kicks, token renewal, leaving); the events say what
//! happened, in order. A dropped connection is repaired behind the handle as the
//! [`ReconnectPolicy`] allows, resuming as the same participant so that nobody sees a
//! leave or misses an event.
//!
//! ```no_run
//! # async fn demo(token: &str) -> Result<(), confer_client::ClientError> {
//! use confer_client::{Room, RoomEvent, RoomOptions};
//! let (room, mut events) = Room::connect("http://127.0.0.1:7880", token, RoomOptions::default()).await?;
//! room.send_message("hello", None).await?;
//! while let Some(event) = events.recv().await {
//!     if let RoomEvent::MessageReceived { from, text, .. } = event {
//!         println!("{}: {text}", from.identity);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Layering: [`state`] is the pure core (events in, app events out); `connection` is one
//! WebSocket; `engine` is the task that ties them together and reconnects; [`room`] is
//! the handle; [`media`] holds the two WebRTC connections (publisher and subscriber) and
//! moves encoded frames; [`api`] is the room API over HTTP (tokens, invites, rooms).

// Panics in the protocol, the server and the SDK are bugs: they say why (expect) or
// are handled, never a bare unwrap outside tests.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod api;
mod connection;
pub mod endpoint;
mod engine;
pub mod error;
pub mod event;
pub mod media;
pub mod reconnect;
pub mod renewal;
pub mod room;
pub mod state;

pub use error::{ClientError, Result};
pub use event::{ConnectionState, RoomEvent};
pub use media::{Codec, EncodedFrame, LocalStream, LocalTrack, RemoteTrack, TrackOptions};
pub use reconnect::{Backoff, ReconnectPolicy};
pub use renewal::{TokenRenewal, TokenSource};
pub use room::{Room, RoomOptions};
pub use state::RoomSnapshot;

/// The wire types the SDK's API uses, so callers need not depend on `confer-proto`.
pub use confer_proto as proto;
