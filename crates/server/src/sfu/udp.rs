//! The SFU's UDP sockets on the reading side.
//!
//! - [`ReadSocket`]: a socket the runtime watches for reading only. The worker threads
//!   send through the same socket (a duplicate of its descriptor), and a socket watched
//!   for writing too wakes its reader after every send that frees buffer space: one
//!   wasted turn of the loop per send.
//! - [`Paths`]: with several workers, the sockets a worker opens for the clients it
//!   serves. Each is *connected* to one client's address, in the port's `SO_REUSEPORT`
//!   group, so the kernel delivers that client's datagrams to it rather than to the
//!   receive thread. They are watched by one epoll set of the worker's own, which its
//!   runtime watches in turn: a readable client costs the worker one `epoll_wait` and its
//!   reads, not a task, a channel and a copy per datagram, and the cost does not grow
//!   with the clients a worker serves. (Linux only: elsewhere a worker opens no sockets
//!   of its own, and the receive thread hands it every datagram.)

use std::io;
use std::net::SocketAddr;

#[cfg(target_os = "linux")]
pub(super) use linux::Paths;

/// A UDP socket the runtime watches for reading only.
#[cfg(unix)]
pub(super) struct ReadSocket(tokio::io::unix::AsyncFd<std::net::UdpSocket>);

#[cfg(unix)]
impl ReadSocket {
    /// Must be made inside the runtime that reads it.
    #[allow(unsafe_code)] // AsyncFd's registration: tokio cannot check the descriptor.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        // SAFETY: the socket owns its descriptor, which stays open, and is always the one
        // `as_raw_fd` returns, for as long as the `AsyncFd` holds it.
        let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) };
        Ok(Self(fd.map_err(io::Error::from)?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut guard = self.0.readable().await?;
            if let Ok(r) = guard.try_io(|s| s.get_ref().recv_from(buf)) {
                return r;
            }
        }
    }

    /// A datagram if one is waiting.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.get_ref().recv_from(buf)
    }
}

/// Elsewhere, the runtime's own socket.
#[cfg(not(unix))]
pub(super) struct ReadSocket(tokio::net::UdpSocket);

#[cfg(not(unix))]
impl ReadSocket {
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        Ok(Self(tokio::net::UdpSocket::from_std(socket)?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }

    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.try_recv_from(buf)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::net::UdpSocket;
    use std::os::fd::{AsRawFd, RawFd};

    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    use super::*;

    struct EpollFd(Epoll);

    impl AsRawFd for EpollFd {
        fn as_raw_fd(&self) -> RawFd {
            self.0 .0.as_raw_fd()
        }
    }

    /// The sockets connected to each client, by a token that the epoll set reports.
    pub struct Paths {
        epoll: AsyncFd<EpollFd>,
        sockets: HashMap<u64, (SocketAddr, UdpSocket)>,
        tokens: HashMap<SocketAddr, u64>,
        next_token: u64,
    }

    impl Paths {
        /// An empty set; must be made inside the worker's runtime.
        #[allow(unsafe_code)] // AsyncFd's registration: tokio cannot check the descriptor.
        pub fn new() -> io::Result<Self> {
            let epoll = EpollFd(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
            // SAFETY: `EpollFd` owns its descriptor, which stays open, and is always the
            // one `as_raw_fd` returns, for as long as the `AsyncFd` holds it.
            let epoll =
                unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE) }.map_err(io::Error::from)?;
            Ok(Self { epoll, sockets: HashMap::new(), tokens: HashMap::new(), next_token: 0 })
        }

        /// Watches `socket`, connected to `remote` (and replaces one for it).
        pub fn add(&mut self, remote: SocketAddr, socket: UdpSocket) -> io::Result<()> {
            self.remove(remote);
            let token = self.next_token;
            self.epoll.get_ref().0.add(&socket, EpollEvent::new(EpollFlags::EPOLLIN, token))?;
            self.next_token += 1;
            self.sockets.insert(token, (remote, socket));
            self.tokens.insert(remote, token);
            Ok(())
        }

        pub fn remove(&mut self, remote: SocketAddr) {
            let Some(token) = self.tokens.remove(&remote) else { return };
            if let Some((_, socket)) = self.sockets.remove(&token) {
                let _ = self.epoll.get_ref().0.delete(&socket);
            }
        }

        /// Waits until some client's socket is readable; returns the readable ones'
        /// tokens (empty after a spurious wake).
        pub async fn readable(&self) -> Vec<u64> {
            let Ok(mut guard) = self.epoll.readable().await else { return std::future::pending().await };
            let mut events = [EpollEvent::empty(); 64];
            // The set is level-triggered: a socket left with datagrams is reported again.
            match guard.try_io(|epoll| match epoll.get_ref().0.wait(&mut events, 0u8) {
                Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                Ok(n) => Ok(n),
                Err(e) => Err(e.into()),
            }) {
                Ok(Ok(n)) => events[..n].iter().map(|e| e.data()).collect(),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "client sockets' epoll_wait");
                    Vec::new()
                }
                // Nothing ready: the readiness is cleared, and the next wait sleeps.
                Err(_would_block) => Vec::new(),
            }
        }

        /// Reads up to `limit` datagrams from the socket of `token` into `buf`, handing
        /// each to `each` with its sender; returns how many it read.
        pub fn read(&self, token: u64, buf: &mut [u8], limit: usize, mut each: impl FnMut(SocketAddr, &[u8])) -> usize {
            let Some((remote, socket)) = self.sockets.get(&token) else { return 0 };
            let mut read = 0;
            for _ in 0..limit {
                match socket.recv(buf) {
                    Ok(n) => {
                        read += 1;
                        each(*remote, &buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // An ICMP error for an earlier send: the client may be gone; its
                    // transport times out on its own.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) => {
                        tracing::debug!(%remote, error = %e, "client socket receive");
                        break;
                    }
                }
            }
            read
        }
    }
}

/// Elsewhere: no sockets of a worker's own.
#[cfg(not(target_os = "linux"))]
pub(super) struct Paths;

#[cfg(not(target_os = "linux"))]
impl Paths {
    pub fn new() -> io::Result<Self> {
        Ok(Self)
    }

    pub fn add(&mut self, _remote: SocketAddr, _socket: std::net::UdpSocket) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn remove(&mut self, _remote: SocketAddr) {}

    pub async fn readable(&self) -> Vec<u64> {
        std::future::pending().await
    }

    pub fn read(&self, _token: u64, _buf: &mut [u8], _limit: usize, _each: impl FnMut(SocketAddr, &[u8])) -> usize {
        0
    }
}
