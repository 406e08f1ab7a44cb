//! A throwaway PostgreSQL: one cluster per test process, with a fresh database per
//! test ([`database`]).
//!
//! The binaries are `$CONFER_PG_BIN`, or the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package); `CONFER_TEST_POSTGRES=require` makes their absence
//! an error. As root (CI), the cluster runs as the `postgres` user: `initdb` refuses
//! root.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{keeper_shell, skip};

struct Cluster {
    port: u16,
    /// Closed when the process exits: the shell then stops the cluster.
    _keeper: Mutex<ChildStdin>,
    /// The shell, which outlives this process by the moment it takes to stop it.
    _shell: Mutex<Child>,
}

fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CONFER_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
    found.pop()
}

fn run(prefix: &[&str], program: &Path, args: &[&str]) {
    let (first, rest) = match prefix.split_first() {
        Some((first, rest)) => (Path::new(first), [rest, &[program.to_str().unwrap()]].concat()),
        None => (program, vec![]),
    };
    let out = Command::new(first).args(rest).args(args).output().expect("runs");
    assert!(out.status.success(), "{} {args:?}: {}", program.display(), String::from_utf8_lossy(&out.stderr));
}

fn start() -> Option<Cluster> {
    let Some(bin) = binaries() else {
        skip("CONFER_TEST_POSTGRES", "no PostgreSQL binaries (install postgresql, or set CONFER_PG_BIN)");
        return None;
    };
    let dir = std::env::temp_dir().join(format!("confer-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let prefix: &[&str] = if root { &["runuser", "-u", "postgres", "--"] } else { &[] };
    if root {
        run(&[], Path::new("chown"), &["postgres:", dir.to_str().unwrap()]);
    }
    let data = dir.join("data");
    run(
        prefix,
        &bin.join("initdb"),
        &["-D", data.to_str().unwrap(), "-U", "confer", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // setpriv runs postgres in its own process (runuser would stay as its parent and
    // not pass the shell's signal on).
    let setpriv = if root { "setpriv --reuid=postgres --regid=postgres --clear-groups" } else { "" };
    let postgres = format!(
        "exec {setpriv} {} -D {} -h 127.0.0.1 -p {port} -k '' -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        bin.join("postgres").display(),
        data.display()
    );
    let script = format!(
        "({postgres}) >{log} 2>&1 & p=$!; read _; kill -INT $p; wait $p; rm -rf {dir}",
        log = dir.join("postgres.log").display(),
        dir = dir.display()
    );
    let (shell, keeper) = keeper_shell(&script);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "the test PostgreSQL did not start:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Cluster { port, _keeper: Mutex::new(keeper), _shell: Mutex::new(shell) })
}

/// The URL of a new, empty database for the test `name`; `None` when there is no
/// PostgreSQL to test with.
pub async fn database(name: &str) -> Option<String> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = tokio::task::spawn_blocking(|| CLUSTER.get_or_init(start).as_ref().map(|c| c.port)).await.unwrap()?;
    let db = format!("t{}_{name}", NEXT.fetch_add(1, Ordering::Relaxed));
    let admin = format!("postgres://confer@127.0.0.1:{cluster}/postgres");
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE \"{db}\"")).await.unwrap();
    drop(client);
    let _ = connection.await;
    Some(format!("postgres://confer@127.0.0.1:{cluster}/{db}"))
}
