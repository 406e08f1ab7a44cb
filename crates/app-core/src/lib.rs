//! The desktop app's Rust side that builds and tests without Tauri.
//!
//! - [`call`]: the call engine behind the app's commands and events: joining, devices,
//!   publishing, subscriptions that follow what the view shows, playback and chat.
//! - [`publish`]: capture and encoding loops, shared with `confer-cli bot`.
//! - [`frames`]: the path decoded video takes to the web view.

pub mod frames;
pub mod publish;
