//! TURN relays as the peer connections use them, including TURN over TCP and TLS, and
//! ICE over TCP to the server.
//!
//! webrtc-rs 0.21 allocates relays only over UDP: it skips `turn:…?transport=tcp` and
//! `turns:` URLs (with a log line and nothing else). A network that drops UDP is exactly
//! the one that needs TURN over TCP, so the SDK carries those itself: for each such URL a
//! [`TcpBridge`] listens on a loopback UDP port, and webrtc-rs is pointed at that
//! port as an ordinary UDP TURN server. The bridge opens one TCP (or TLS) connection to
//! the real TURN server per local socket that talks to it, and moves STUN messages and
//! ChannelData between the datagrams and the stream (RFC 8656 §12: over TCP each
//! ChannelData message is padded to a multiple of four bytes, and STUN messages are
//! delimited by their own length). The allocation is still a UDP relay toward the SFU
//! (what RFC 8656 calls TURN over TCP with `REQUESTED-TRANSPORT` UDP): only the
//! client's leg rides TCP.
//!
//! The server's own ICE-TCP candidate (RFC 6544 passive) is reached the same way, with
//! RFC 4571 framing (a two-byte length before each packet): webrtc-rs 0.21 has active TCP
//! candidates, but it files the answers from a remote whose TCP and UDP candidates share
//! an address and port (the server's default) under the UDP candidate, so its TCP pair
//! never succeeds. The bridge gives it a loopback UDP candidate instead, which ICE checks
//! like any other and prefers less than a direct UDP path.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_proto::signal::IceServer;
use confer_proto::turn_url::{TurnTransport, TurnUrl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long connecting to a TURN server over TCP (and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong reaching the relays, for error messages.
#[derive(Debug, Clone, Default)]
pub struct RelayHealth {
    failures: Arc<Mutex<Vec<String>>>,
}

impl RelayHealth {
    fn failed(&self, what: String) {
        tracing::warn!("{what}");
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !f.contains(&what) {
            f.push(what);
        }
    }

    /// Every failure seen so far, one per line.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The ICE servers to give webrtc-rs, and the bridges that carry the TCP and TLS ones.
pub(crate) struct Relays {
    pub servers: Vec<rtc::peer_connection::transport::RTCIceServer>,
    /// Kept alive as long as the peer connection.
    _bridges: Vec<TcpBridge>,
    pub health: RelayHealth,
}

impl Relays {
    pub(crate) async fn prepare(ice_servers: &[IceServer]) -> Relays {
        let health = RelayHealth::default();
        let mut servers = Vec::new();
        let mut bridges = Vec::new();
        for server in ice_servers {
            let (username, credential) =
                (server.username.clone().unwrap_or_default(), server.credential.clone().unwrap_or_default());
            let mut urls = Vec::new();
            for url in &server.urls {
                match TurnUrl::parse(url) {
                    Ok(target) if target.transport == TurnTransport::Tcp => {
                        match TcpBridge::start(target, health.clone()).await {
                            Ok(bridge) => {
                                urls.push(format!("turn:{}?transport=udp", bridge.local));
                                bridges.push(bridge);
                            }
                            Err(e) => health.failed(format!("cannot start the TURN-over-TCP bridge for {url}: {e}")),
                        }
                    }
                    Ok(_) => urls.push(url.clone()),
                    Err(_) if url.starts_with("stun:") => urls.push(url.clone()),
                    Err(e) => tracing::warn!(error = %e, "ICE server URL skipped"),
                }
            }
            if !urls.is_empty() {
                servers.push(rtc::peer_connection::transport::RTCIceServer { urls, username, credential });
            }
        }
        Relays { servers, _bridges: bridges, health }
    }

    pub(crate) fn has_relay(&self) -> bool {
        self.servers.iter().any(|s| s.urls.iter().any(|u| u.starts_with("turn")))
    }
}

/// How packets are delimited on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// TURN over TCP: STUN messages and padded ChannelData, each self-delimiting.
    Turn,
    /// ICE over TCP (RFC 4571): a two-byte length before each packet.
    Rfc4571,
}

/// A loopback UDP port whose datagrams travel to a TCP (or TLS) peer and back.
pub(crate) struct TcpBridge {
    pub local: SocketAddr,
    framing: Framing,
    task: JoinHandle<()>,
}

impl Drop for TcpBridge {
    fn drop(&mut self) {
        self.task.abort();
        if self.framing == Framing::Rfc4571 {
            ice_tcp_bridges().retain(|a| *a != self.local);
        }
    }
}

/// The loopback addresses standing in for ICE-TCP candidates in this process, so that
/// statistics can say that a path through one of them is TCP.
fn ice_tcp_bridges() -> std::sync::MutexGuard<'static, Vec<SocketAddr>> {
    static BRIDGES: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());
    BRIDGES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `addr` (`ip:port`) is a loopback stand-in for the server's ICE-TCP candidate.
pub(crate) fn is_ice_tcp_bridge(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| ice_tcp_bridges().contains(&a))
}

impl TcpBridge {
    pub(crate) async fn start(target: TurnUrl, health: RelayHealth) -> std::io::Result<Self> {
        Self::open(target, Framing::Turn, health).await
    }

    /// A bridge to the server's passive ICE-TCP candidate at `server`.
    pub(crate) async fn to_ice_tcp(server: SocketAddr, health: RelayHealth) -> std::io::Result<Self> {
        let target = TurnUrl {
            secure: false,
            host: server.ip().to_string(),
            port: server.port(),
            transport: TurnTransport::Tcp,
        };
        Self::open(target, Framing::Rfc4571, health).await
    }

    async fn open(target: TurnUrl, framing: Framing, health: RelayHealth) -> std::io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await?);
        let local = socket.local_addr()?;
        let task = tokio::spawn(bridge(socket, target, framing, health));
        if framing == Framing::Rfc4571 {
            ice_tcp_bridges().push(local);
        }
        Ok(Self { local, framing, task })
    }
}

/// Datagrams from each local socket go down that socket's own stream.
async fn bridge(socket: Arc<UdpSocket>, target: TurnUrl, framing: Framing, health: RelayHealth) {
    let mut streams: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "TURN bridge receive");
                continue;
            }
        };
        let datagram = match framing {
            Framing::Turn => pad_channel_data(&buf[..n]),
            Framing::Rfc4571 => {
                let mut framed = Vec::with_capacity(n + 2);
                framed.extend_from_slice(&(n as u16).to_be_bytes());
                framed.extend_from_slice(&buf[..n]);
                framed
            }
        };
        streams.retain(|_, s| !s.is_closed());
        let stream = streams.entry(from).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(carry(socket.clone(), from, rx, target.clone(), framing, health.clone()));
            tx
        });
        if stream.try_send(datagram).is_err() {
            tracing::trace!(%from, "TURN bridge queue full; datagram dropped");
        }
    }
}

/// One local socket's stream to the TURN server, for as long as both ends last.
async fn carry(
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    rx: mpsc::Receiver<Vec<u8>>,
    target: TurnUrl,
    framing: Framing,
    health: RelayHealth,
) {
    let scheme = match (framing, target.secure) {
        (Framing::Rfc4571, _) => "ICE-TCP",
        (Framing::Turn, true) => "turns",
        (Framing::Turn, false) => "turn",
    };
    let what = if framing == Framing::Turn { "TURN server" } else { "media server" };
    let authority = target.authority();
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return health.failed(format!("the {what} {scheme}:{authority} (TCP) is unreachable: {e}")),
        Err(_) => return health.failed(format!("the {what} {scheme}:{authority} (TCP) did not answer in time")),
    };
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY");
    }
    tracing::debug!(%peer, %authority, secure = target.secure, "TURN over TCP connected");
    if !target.secure {
        let (read, write) = tcp.into_split();
        return pump(socket, peer, rx, read, write, framing).await;
    }
    let tls = match tls_connect(&target.host, tcp).await {
        Ok(s) => s,
        Err(e) => return health.failed(format!("TLS to the TURN server {scheme}:{authority} failed: {e}")),
    };
    let (read, write) = tokio::io::split(tls);
    pump(socket, peer, rx, read, write, framing).await;
}

async fn tls_connect(
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Box<dyn std::error::Error + Send + Sync>> {
    use rustls_platform_verifier::ConfigVerifierExt;
    let config = rustls::ClientConfig::with_platform_verifier()?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Ok(tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await??)
}

async fn pump(
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut read: impl AsyncRead + Unpin,
    mut write: impl AsyncWrite + Unpin,
    framing: Framing,
) {
    let up = async {
        while let Some(message) = rx.recv().await {
            if write.write_all(&message).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        loop {
            let message = match framing {
                Framing::Turn => read_message(&mut read).await,
                Framing::Rfc4571 => read_rfc4571(&mut read).await,
            };
            match message {
                Ok(message) => {
                    if let Err(e) = socket.send_to(&message, peer).await {
                        tracing::debug!(error = %e, "TURN bridge send");
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "TURN over TCP closed");
                    break;
                }
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// Reads one STUN message or ChannelData message off a TURN stream; ChannelData comes
/// back without its padding.
async fn read_message(read: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    read.read_exact(&mut header).await?;
    let length = u16::from_be_bytes([header[2], header[3]]) as usize;
    let (total, keep) = match header[0] >> 6 {
        // STUN: a 20-byte header; the length counts the attributes (a multiple of 4).
        0b00 => (20 + length, 20 + length),
        // ChannelData: a 4-byte header, the data, padding to 4 on a stream.
        0b01 => (4 + length.div_ceil(4) * 4, 4 + length),
        _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a TURN message")),
    };
    let mut message = vec![0u8; total];
    message[..4].copy_from_slice(&header);
    read.read_exact(&mut message[4..]).await?;
    message.truncate(keep);
    Ok(message)
}

/// Reads one RFC 4571 packet: a two-byte length, then that many bytes.
async fn read_rfc4571(read: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    read.read_exact(&mut len).await?;
    let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
    read.read_exact(&mut packet).await?;
    Ok(packet)
}

/// A datagram as it goes on a stream: ChannelData padded to a multiple of four bytes.
fn pad_channel_data(datagram: &[u8]) -> Vec<u8> {
    let mut out = datagram.to_vec();
    if datagram.len() >= 4 && datagram[0] >> 6 == 0b01 {
        let length = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
        out.truncate(4 + length.min(datagram.len() - 4));
        out.resize(4 + length.div_ceil(4) * 4, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stream_messages_are_split_and_unpadded() {
        // A STUN binding request (no attributes), then ChannelData of 5 bytes padded to 8.
        let mut stream = Vec::new();
        stream.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]);
        stream.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        stream.extend_from_slice(&[7u8; 12]);
        stream.extend_from_slice(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]);
        let mut read = &stream[..];
        assert_eq!(read_message(&mut read).await.unwrap().len(), 20);
        assert_eq!(read_message(&mut read).await.unwrap(), vec![0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5]);
        assert!(read_message(&mut read).await.is_err());
        assert_eq!(pad_channel_data(&[0x40, 0, 0, 1, 9]), vec![0x40, 0, 0, 1, 9, 0, 0, 0]);
        assert_eq!(pad_channel_data(&[0, 1, 0, 0]), vec![0, 1, 0, 0]);
    }
}
