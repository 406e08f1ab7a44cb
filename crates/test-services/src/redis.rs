//! A throwaway `redis-server` per test, with no persistence, stopped when dropped.
//! It is Debian's `redis-server`; `CONFER_TEST_REDIS=require` makes its absence an
//! error.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command};
use std::time::{Duration, Instant};

use crate::{keeper_shell, skip};

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
            skip("CONFER_TEST_REDIS", "no redis-server (install redis-server)");
            return None;
        }
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --dir /tmp --logfile '' >/dev/null & \
             p=$!; read _; kill $p; wait $p"
        );
        let (shell, keeper) = keeper_shell(&script);
        let server = Self { port, keeper: Some(keeper), shell };
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
