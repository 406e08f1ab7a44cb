//! ICE over TCP (RFC 6544): the SFU's passive TCP candidate, for clients whose
//! networks drop UDP.
//!
//! Every accepted connection gets two tasks on the media thread's runtime: a reader that
//! cuts the byte stream into packets (RFC 4571: a two-byte big-endian length before each
//! one) and hands them to the router, and a writer that frames what the router sends.
//! The router never touches a socket: it `try_send`s into the writer's bounded queue,
//! so a client that reads slowly loses packets (as it would on UDP) instead of holding
//! up everyone else, and a writer stuck for [`WRITE_STALL`] closes its connection. A
//! connection that sends nothing for [`IDLE`] (ICE consent checks come every few
//! seconds) is closed, which bounds half-open connections.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// Packets queued toward one client before new ones are dropped.
const SEND_QUEUE: usize = 512;
/// A write that makes no progress for this long closes the connection.
const WRITE_STALL: Duration = Duration::from_secs(5);
/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// Open connections at most; more are refused until some close.
const MAX_CONNECTIONS: usize = 4096;

/// What the TCP side tells the router.
#[derive(Debug)]
pub enum TcpInput {
    Opened {
        remote: SocketAddr,
        sender: mpsc::Sender<Vec<u8>>,
    },
    /// One packet, its framing removed.
    Packet {
        remote: SocketAddr,
        local: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        remote: SocketAddr,
    },
}

/// Accepts connections until the listener fails or the router is gone.
pub async fn accept(listener: TcpListener, router: mpsc::Sender<TcpInput>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, usually: wait rather than spin.
                tracing::warn!(error = %e, "media TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many media TCP connections; refused");
            continue;
        };
        if router.is_closed() {
            return;
        }
        let router = router.clone();
        tokio::spawn(async move {
            serve(stream, canonical(remote), router).await;
            drop(slot);
        });
    }
}

async fn serve(stream: TcpStream, remote: SocketAddr, router: mpsc::Sender<TcpInput>) {
    let local = match stream.local_addr() {
        Ok(a) => SocketAddr::new(canonical_ip(a.ip()), a.port()),
        Err(_) => return,
    };
    // Media is latency-bound: no Nagle delay on small packets.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY");
    }
    tracing::debug!(%remote, "media TCP connection");
    let (mut read, mut write) = stream.into_split();
    let (sender, mut outgoing) = mpsc::channel::<Vec<u8>>(SEND_QUEUE);
    if router.send(TcpInput::Opened { remote, sender }).await.is_err() {
        return;
    }
    let writer = async move {
        let mut framed = Vec::with_capacity(1502);
        while let Some(packet) = outgoing.recv().await {
            framed.clear();
            framed.extend_from_slice(&(packet.len() as u16).to_be_bytes());
            framed.extend_from_slice(&packet);
            match tokio::time::timeout(WRITE_STALL, write.write_all(&framed)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return format!("write failed: {e}"),
                Err(_) => return "the client stopped reading".to_owned(),
            }
        }
        "closed by the server".to_owned()
    };
    let reader = async {
        let mut buf = vec![0u8; u16::MAX as usize];
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(IDLE, read.read_exact(&mut len)).await {
                Err(_) => return "idle".to_owned(),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return "closed by the client".to_owned()
                }
                Ok(Err(e)) => return format!("read failed: {e}"),
                Ok(Ok(_)) => {}
            }
            let len = u16::from_be_bytes(len) as usize;
            if len == 0 {
                continue;
            }
            match tokio::time::timeout(IDLE, read.read_exact(&mut buf[..len])).await {
                Err(_) => return "stalled mid-packet".to_owned(),
                Ok(Err(e)) => return format!("read failed: {e}"),
                Ok(Ok(_)) => {}
            }
            let data = buf[..len].to_vec();
            if router.send(TcpInput::Packet { remote, local, data }).await.is_err() {
                return "the media thread stopped".to_owned();
            }
        }
    };
    let why = tokio::select! {
        why = writer => why,
        why = reader => why,
    };
    tracing::debug!(%remote, %why, "media TCP connection closed");
    // Best effort: the router forgets the connection when it hears this, or when its
    // queue is found closed.
    let _ = router.send(TcpInput::Closed { remote }).await;
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) as plain IPv4, so that they
/// match IPv4 candidates.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn packets_are_unframed_in_and_framed_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (router_tx, mut router_rx) = mpsc::channel(16);
        tokio::spawn(accept(listener, router_tx));
        let mut client = TcpStream::connect(addr).await.unwrap();
        // Two packets in one write, and one split across writes.
        client.write_all(&[0, 3, 1, 2, 3, 0, 1, 9, 0]).await.unwrap();
        client.write_all(&[2, 7]).await.unwrap();
        client.write_all(&[8]).await.unwrap();
        let TcpInput::Opened { sender, remote, .. } = router_rx.recv().await.unwrap() else { panic!("not opened") };
        let mut packets = Vec::new();
        while packets.len() < 3 {
            match router_rx.recv().await.unwrap() {
                TcpInput::Packet { data, remote: r, .. } => {
                    assert_eq!(r, remote);
                    packets.push(data);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(packets, vec![vec![1, 2, 3], vec![9], vec![7, 8]]);
        sender.send(vec![4, 5]).await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [0, 2, 4, 5]);
        drop(client);
        assert!(matches!(router_rx.recv().await.unwrap(), TcpInput::Closed { .. }));
    }

    #[tokio::test]
    async fn a_client_that_never_reads_loses_packets_without_blocking_the_sender() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (router_tx, mut router_rx) = mpsc::channel(16);
        tokio::spawn(accept(listener, router_tx));
        let _client = TcpStream::connect(addr).await.unwrap();
        let TcpInput::Opened { sender, .. } = router_rx.recv().await.unwrap() else { panic!("not opened") };
        let mut dropped = 0;
        for _ in 0..20_000 {
            if sender.try_send(vec![0u8; 1200]).is_err() {
                dropped += 1;
            }
        }
        assert!(dropped > 0, "a full queue refuses packets at once");
    }
}
