//! A throwaway `redis-server` per test, on a free loopback port with no persistence.
//! It stops when dropped, and when the test process exits however it exits (it runs
//! under a shell that waits on a pipe from this process).
//!
//! Without `redis-server` (Debian's `redis-server`) the Redis tests are skipped with a
//! notice, unless `CONFER_TEST_REDIS=require` (as the test script sets).

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    keeper: Option<ChildStdin>,
    shell: Child,
}

impl RedisServer {
    pub fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port)
    }

    pub fn start_on(port: u16) -> Option<Self> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            assert_ne!(
                std::env::var("CONFER_TEST_REDIS").as_deref(),
                Ok("require"),
                "no redis-server (install redis-server)"
            );
            eprintln!("test_redis: no redis-server; the Redis tests are skipped");
            return None;
        }
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --dir /tmp --logfile '' >/dev/null & \
             p=$!; read _; kill $p; wait $p"
        );
        let mut shell = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        let keeper = shell.stdin.take();
        let server = Self { port, keeper, shell };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers() {
            assert!(Instant::now() < deadline, "the test redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 5];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        drop(self.keeper.take());
        let _ = self.shell.wait();
    }
}
