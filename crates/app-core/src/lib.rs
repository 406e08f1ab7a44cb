//! The desktop app's Rust side that builds and tests without Tauri.
//!
//! Today: [`frames`], the path decoded video takes to the web view. The call engine
//! (devices, publishing, subscriptions, playback behind typed commands and events)
//! joins it with the app issue.

pub mod frames;
