//! End-to-end tests: the real `confer-server` and `confer-cli` binaries (and the desktop app, Chromium, coturn) as child processes.
//!
//! One test binary for the crate (each links the whole stack; CI builds each once):
//! one module per behaviour.

mod acceptance;
mod activity_and_metrics;
mod app_ui;
mod audio_only;
mod breakouts;
mod browser_interop;
mod cluster;
mod data_tracks;
mod devices;
mod fault_isolation;
mod h264;
mod host_controls;
mod join_page;
mod load;
mod mute_and_censor;
mod network_interruption;
mod packet_loss;
mod protocol_schema;
mod real_networks;
mod server_restart;
mod simulcast;
mod subscriptions;
mod three_bots;
mod vanishing_publisher;
mod web_client;
