//! The HTTP listener: accepts connections and serves each with hyper, under the bounds
//! that keep one client from starving the others.
//!
//! - A connection must send a request's complete headers within [`HEADER_TIMEOUT`] of
//!   opening, or of its previous response: this ends slowloris requests and idle
//!   keep-alive connections alike (hyper starts the clock when it waits for a head).
//! - One address holds at most [`Limits::per_address`] connections, WebSockets
//!   included; further ones are closed on accept. The other nodes of a cluster
//!   ([`Trusted`]) are not held to it: each signaling connection they relay is a
//!   client's, counted by the node that client reached.
//! - All addresses together hold at most [`Limits::total`], kept below the process's
//!   file-descriptor limit so that accepting never fails for want of one.
//!
//! Request bodies are bounded in time by the router's own timeout (see
//! [`super::router`]).
//!
//! With `--tls-cert` and `--tls-key` every connection is TLS (rustls, HTTP/1.1, so
//! WebSocket signaling is WSS); its handshake must finish within [`HEADER_TIMEOUT`].

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a connection may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests may take to finish once the server is stopping.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// File descriptors kept back from connections for the database, the media sockets and
/// the rest of the process.
const FD_RESERVE: usize = 256;

/// How many connections the listener holds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_address: usize,
    pub total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { per_address: 256, total: fd_budget() }
    }
}

/// Addresses free of the per-address cap: the other nodes of this node's cluster.
#[derive(Debug, Clone, Default)]
pub struct Trusted(Arc<RwLock<HashSet<IpAddr>>>);

impl Trusted {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn set(&self, ips: HashSet<IpAddr>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = ips;
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).contains(ip)
    }
}

/// The TLS side of the listener, from PEM files.
pub fn tls_acceptor(files: &crate::config::TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("cannot read the TLS certificate {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("the TLS certificate file {} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow::anyhow!("cannot read the TLS key {}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("the TLS certificate and key do not make a pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` (over TLS with `tls`) until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    (limits, trusted): (Limits, Trusted),
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let counts = Counts::new(limits, trusted);
    let mut refused_logged = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors despite the budget (something else in the
                    // process holds them), or a connection reset before it was taken:
                    // wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async { let _ = stop.wait_for(|s| *s).await; } => return,
        };
        let Some(slot) = counts.admit(peer.ip()) else {
            // One line per 100 refusals: a flood must not flood the log too.
            if refused_logged.is_multiple_of(100) {
                tracing::warn!(%peer, refused = refused_logged + 1, "connection refused: too many connections");
            }
            refused_logged += 1;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = Counted { stream, _slot: slot };
        let (app, stop) = (app.clone(), stop.clone());
        match &tls {
            None => drop(tokio::spawn(serve_connection(stream, peer, app, stop))),
            Some(tls) => {
                let handshake = tls.accept(stream);
                tokio::spawn(async move {
                    match tokio::time::timeout(HEADER_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, app, stop).await,
                        // Scanners and plain-HTTP clients: routine, not worth a warning.
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, app: Router, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN_TIMEOUT, conn.as_mut()).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        // Timeouts and clients that vanish mid-request are routine on the internet.
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Connections held, per address and in all.
#[derive(Clone)]
struct Counts {
    inner: Arc<Mutex<CountsInner>>,
}

struct CountsInner {
    limits: Limits,
    trusted: Trusted,
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Counts {
    fn new(limits: Limits, trusted: Trusted) -> Self {
        Self { inner: Arc::new(Mutex::new(CountsInner { limits, trusted, total: 0, by_address: HashMap::new() })) }
    }

    /// A slot for one more connection from `ip`, or `None` past a limit.
    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let limits = inner.limits;
        if inner.total >= limits.total {
            return None;
        }
        let trusted = inner.trusted.contains(&ip);
        let held = inner.by_address.entry(ip).or_default();
        if *held >= limits.per_address && !trusted {
            return None;
        }
        *held += 1;
        inner.total += 1;
        Some(Slot { counts: self.clone(), ip })
    }
}

/// One admitted connection; frees its place when dropped.
struct Slot {
    counts: Counts,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.counts.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.total -= 1;
        if let Some(held) = inner.by_address.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                inner.by_address.remove(&self.ip);
            }
        }
    }
}

/// A socket that holds its [`Slot`] for as long as it lives, through an upgrade to
/// WebSocket too (hyper hands the socket itself to the upgraded connection).
struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Connections the process can hold: its descriptor limit (raised to the hard limit
/// first) less a reserve.
#[allow(unsafe_code)] // getrlimit/setrlimit: libc has no safe wrapper.
fn fd_budget() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                if lim.rlim_cur < lim.rlim_max {
                    let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                        lim = raised;
                    }
                }
                let soft = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
                return soft.saturating_sub(FD_RESERVE).clamp(64, 1 << 20);
            }
        }
    }
    4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_and_the_whole_have_a_cap() {
        let counts = Counts::new(Limits { per_address: 2, total: 3 }, Trusted::default());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = counts.admit(a).expect("first from a");
        let _a2 = counts.admit(a).expect("second from a");
        assert!(counts.admit(a).is_none(), "a third from one address");
        let _b1 = counts.admit(b).expect("another address");
        assert!(counts.admit(b).is_none(), "past the total");
        drop(a1);
        assert!(counts.admit(b).is_some(), "a freed place is free for anyone");
    }

    #[test]
    fn other_nodes_have_no_cap_of_their_own() {
        let trusted = Trusted::default();
        let counts = Counts::new(Limits { per_address: 1, total: 4 }, trusted.clone());
        let node: IpAddr = [10, 0, 0, 7].into();
        let _first = counts.admit(node).expect("first");
        assert!(counts.admit(node).is_none());
        trusted.set([node].into());
        let held: Vec<_> = (0..3).map(|_| counts.admit(node).expect("relayed connections")).collect();
        assert!(counts.admit(node).is_none(), "the total still holds");
        drop(held);
    }
}
