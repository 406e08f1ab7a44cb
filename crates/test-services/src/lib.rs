//! Throwaway services for tests: a PostgreSQL cluster ([`postgres`]) and
//! `redis-server`s ([`redis`]), each on a free loopback port in a directory of its own.
//!
//! Each runs under a shell that waits on a pipe from the test process: when the test
//! process exits, however it exits, the pipe closes and the shell stops the service
//! and removes its files. Without the service's binaries the tests that need it are
//! skipped with a notice, unless the service's `CONFER_TEST_*` variable says `require`
//! (as `scripts/test.sh` sets).

pub mod postgres;
pub mod redis;

use std::process::{Child, ChildStdin, Command, Stdio};

/// A service's binaries are `missing`: a notice, or a panic when `env` is `require`.
fn skip(env: &str, missing: &str) {
    assert_ne!(std::env::var(env).as_deref(), Ok("require"), "{missing}, and {env}=require");
    eprintln!("confer-test-services: {missing}; the tests that need it are skipped");
}

/// Runs `script` under `sh`, which is to read one line from its stdin once the service
/// is started, and stop it when that read ends. Returns the shell and the pipe: the
/// service stops when the pipe is dropped, or the process exits.
fn keeper_shell(script: &str) -> (Child, ChildStdin) {
    let mut shell = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let keeper = shell.stdin.take().expect("piped");
    (shell, keeper)
}
