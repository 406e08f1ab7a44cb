//! The server's integration tests: an in-process server on a free port, spoken to over HTTP and the wire protocol.
//!
//! One test binary for the crate (each links the whole stack; CI builds each once):
//! one module per behaviour.

mod common;
use confer_test_services::{postgres as test_pg, redis as test_redis};

mod abuse;
mod auth_matrix;
mod bad_input;
mod cluster;
mod http_api;
mod openapi;
mod persistence;
mod properties;
mod resume;
mod signaling;
mod tls;
