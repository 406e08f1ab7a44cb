//! The desktop app's Rust side that builds and tests without Tauri.
//!
//! - [`call`]: the call engine behind the app's commands and events: joining, devices,
//!   publishing, subscriptions that follow what the view shows, playback and chat.
//! - [`host`]: the room server inside the app ("host a meeting on this machine").
//! - [`link`]: join links.
//! - [`preview`]: the pre-join screen's camera preview and microphone meter.
//! - [`publish`]: capture and encoding loops, shared with `confer-cli bot`.
//! - [`frames`]: the path decoded video takes to the web view.
//! - [`view`]: the types the view is told about.

pub mod call;
pub mod frames;
pub mod host;
pub mod link;
pub mod preview;
pub mod publish;
pub mod settings;
pub mod view;

use serde::Serialize;

/// A failure as the user sees it: a stable snake_case `code` to branch on (the
/// server's catalog names, or the app's own such as `server_unreachable`), and a
/// sentence to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallError {
    pub code: String,
    pub message: String,
}

impl CallError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}
