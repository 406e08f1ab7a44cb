//! The server's integration tests: an in-process server on a free port, spoken to over HTTP and the wire protocol.
//!
//! One test binary for the crate (each links the whole stack; CI builds each once):
//! one module per behaviour.

mod common;

mod abuse;
mod auth_matrix;
mod bad_input;
mod http_api;
mod openapi;
mod persistence;
mod properties;
mod resume;
mod signaling;
mod tls;
