//! A worker's datagrams on their way out: collected over one turn of its loop, then sent
//! together.
//!
//! On Linux the turn goes out (at the latest every [`MAX_QUEUE`] datagrams) in
//! `sendmmsg` calls of up to [`BATCH`] messages, and
//! a subscriber's packets of one frame travel as one message with *UDP generic
//! segmentation offload* (GSO, `UDP_SEGMENT`): the kernel routes and queues the
//! message once and cuts it into datagrams at the last moment (in the network card, when
//! it can). A turn that read a frame's packets forwards each to every subscriber, so its
//! output holds, for each subscriber, the frame's packets: full-size ones and a shorter
//! last, which is what GSO wants (every segment the same size but the last, which may be
//! shorter). Elsewhere each datagram is one `send_to`.
//!
//! Datagrams to one address keep their order; those to different addresses may be
//! reordered, which nothing on the path can tell from the network's doing.
//!
//! A datagram the kernel refuses (a full send buffer) is dropped, as the network would
//! drop it. A kernel or interface without GSO (older than Linux 4.18, or a device that
//! cannot compute UDP checksums) refuses the first segmented message with `EIO` or
//! `EINVAL`; from then on every datagram is sent alone.

// Elsewhere than Linux there is no GSO: the planning of messages serves only the tests.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::net::UdpSocket;

use str0m::net::Transmit;

/// Messages per `sendmmsg`.
#[cfg(target_os = "linux")]
const BATCH: usize = 64;
/// Datagrams held before they are sent, in a turn that makes many (a keyframe to a
/// large room): enough for a few packets of a frame to each of a hundred subscribers,
/// few enough that the first do not wait long or reach a receiver in one burst.
const MAX_QUEUE: usize = 512;
/// Segments in one GSO message: the kernel's `UDP_MAX_SEGMENTS` (64 before Linux 6.8).
const MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO message: what fits in one IPv6 datagram (IPv4 allows a little more).
const MAX_MESSAGE: usize = 65_527 - 40;

/// Datagrams to send, sent together by [`Outgoing::send`].
pub(super) struct Outgoing {
    queue: Vec<Transmit>,
    /// Whether the kernel takes segmented messages; cleared by its first refusal.
    gso: bool,
}

impl Default for Outgoing {
    fn default() -> Self {
        Self { queue: Vec::new(), gso: cfg!(target_os = "linux") }
    }
}

/// One message: `queue[start..end]`, to one address; with more than one datagram, all
/// but the last are `segment` bytes long, and the last no longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Message {
    start: usize,
    end: usize,
    segment: usize,
}

impl Outgoing {
    /// Queues a datagram; sends the queue if it holds [`MAX_QUEUE`].
    pub fn push(&mut self, t: Transmit, socket: &UdpSocket) {
        self.queue.push(t);
        if self.queue.len() >= MAX_QUEUE {
            self.send(socket);
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sends every datagram pushed since the last call.
    #[cfg(target_os = "linux")]
    pub fn send(&mut self, socket: &UdpSocket) {
        if self.queue.is_empty() {
            return;
        }
        if self.gso {
            // Stable: each address's datagrams stay in their order.
            self.queue.sort_by_key(|t| t.destination);
        }
        let mut messages = plan(&self.queue, self.gso);
        let mut next = 0;
        while next < messages.len() {
            let batch = &messages[next..(next + BATCH).min(messages.len())];
            match linux::sendmmsg(socket, &self.queue, batch) {
                Ok(sent) => next += sent.max(1),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if self.gso && batch[0].end - batch[0].start > 1 && linux::refuses_gso(&e) => {
                    tracing::info!(error = %e, "UDP segmentation offload refused; datagrams go out one by one");
                    self.gso = false;
                    let rest = plan(&self.queue[batch[0].start..], false);
                    let offset = batch[0].start;
                    messages.truncate(next);
                    messages.extend(rest.into_iter().map(|m| Message {
                        start: m.start + offset,
                        end: m.end + offset,
                        ..m
                    }));
                }
                // Only the first message failed (sendmmsg reports an error only for the
                // first): it is dropped, and the rest tried.
                Err(e) => {
                    let first = &self.queue[batch[0].start];
                    tracing::trace!(destination = %first.destination, error = %e, "media send dropped");
                    next += 1;
                }
            }
        }
        self.queue.clear();
    }

    #[cfg(not(target_os = "linux"))]
    pub fn send(&mut self, socket: &UdpSocket) {
        for t in self.queue.drain(..) {
            if let Err(e) = socket.send_to(&t.contents, t.destination) {
                tracing::trace!(destination = %t.destination, error = %e, "media send dropped");
            }
        }
    }
}

/// Cuts `queue` (sorted by address, when `gso`) into messages: runs of datagrams to one
/// address that GSO can carry as one, or one datagram each without it.
fn plan(queue: &[Transmit], gso: bool) -> Vec<Message> {
    let mut messages = Vec::with_capacity(queue.len());
    let mut start = 0;
    while start < queue.len() {
        let first = &queue[start];
        let segment = first.contents.len();
        let mut end = start + 1;
        let mut bytes = segment;
        if gso {
            while end < queue.len() && end - start < MAX_SEGMENTS {
                let t = &queue[end];
                let len = t.contents.len();
                // The run ends at a shorter datagram (taken as its last) or a longer one
                // (not taken).
                if t.destination != first.destination || len > segment || bytes + len > MAX_MESSAGE {
                    break;
                }
                bytes += len;
                end += 1;
                if len < segment {
                    break;
                }
            }
        }
        messages.push(Message { start, end, segment });
        start = end;
    }
    messages
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // sendmmsg with a control message per message: nix has one set for all.
mod linux {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use socket2::SockAddr;
    use str0m::net::Transmit;

    use super::Message;

    /// Room for one `UDP_SEGMENT` control message (a `u16`), aligned for `cmsghdr`.
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct Control([u8; 32]);

    /// Whether `e`, for a segmented message, says the kernel or interface has no GSO.
    pub fn refuses_gso(e: &io::Error) -> bool {
        matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP))
    }

    /// Sends `messages` (at most a batch) of `queue` with one `sendmmsg`; returns how
    /// many went.
    pub fn sendmmsg(socket: &UdpSocket, queue: &[Transmit], messages: &[Message]) -> io::Result<usize> {
        let count = messages.len();
        let addrs: Vec<SockAddr> = messages.iter().map(|m| SockAddr::from(queue[m.start].destination)).collect();
        let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(messages.iter().map(|m| m.end - m.start).sum());
        for m in messages {
            for t in &queue[m.start..m.end] {
                iovecs.push(libc::iovec {
                    iov_base: t.contents.as_ptr() as *mut libc::c_void,
                    iov_len: t.contents.len(),
                });
            }
        }
        let mut controls = vec![Control([0; 32]); count];
        // SAFETY: every pointer below points into `addrs`, `iovecs`, `controls` or the
        // queue's buffers, all of which outlive the call and are not moved during it;
        // the lengths given are those of what they point to. The control buffer is
        // zeroed, aligned for `cmsghdr` and large enough for one header and a `u16`
        // (CMSG_SPACE(2) is 24 on 64-bit Linux, 16 on 32-bit).
        unsafe {
            let mut headers: Vec<libc::mmsghdr> = Vec::with_capacity(count);
            let mut iov = 0;
            for (i, m) in messages.iter().enumerate() {
                let segments = m.end - m.start;
                let mut hdr: libc::msghdr = zeroed();
                hdr.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
                hdr.msg_namelen = addrs[i].len();
                hdr.msg_iov = iovecs.as_mut_ptr().add(iov);
                hdr.msg_iovlen = segments as _;
                iov += segments;
                if segments > 1 {
                    let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                    debug_assert!(space <= size_of::<Control>());
                    hdr.msg_control = controls[i].0.as_mut_ptr() as *mut libc::c_void;
                    hdr.msg_controllen = space as _;
                    let cmsg = libc::CMSG_FIRSTHDR(&hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, m.segment as u16);
                }
                headers.push(libc::mmsghdr { msg_hdr: hdr, msg_len: 0 });
            }
            let sent = libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), count as _, libc::MSG_DONTWAIT as _);
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(sent as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use str0m::net::Protocol;

    use super::*;

    fn transmit(destination: SocketAddr, len: usize, tag: u8) -> Transmit {
        let source: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Transmit { proto: Protocol::Udp, source, destination, contents: vec![tag; len].into() }
    }

    fn runs(queue: &[Transmit], gso: bool) -> Vec<usize> {
        plan(queue, gso).iter().map(|m| m.end - m.start).collect()
    }

    #[test]
    fn a_frame_to_one_address_is_one_message() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        // A frame of three packets, then audio; a longer datagram starts a new message.
        let q = [transmit(a, 1164, 0), transmit(a, 1164, 1), transmit(a, 199, 2), transmit(a, 120, 3)];
        assert_eq!(runs(&q, true), [3, 1]);
        assert_eq!(runs(&q, false), [1, 1, 1, 1]);
        let q = [transmit(a, 100, 0), transmit(a, 1164, 1), transmit(a, 1164, 2), transmit(b, 1164, 3)];
        assert_eq!(runs(&q, true), [1, 2, 1]);
        // At most MAX_SEGMENTS, and at most MAX_MESSAGE bytes.
        let q: Vec<_> = (0..70).map(|i| transmit(a, 100, i)).collect();
        assert_eq!(runs(&q, true), [64, 6]);
        let q: Vec<_> = (0..60).map(|i| transmit(a, 1200, i)).collect();
        assert_eq!(runs(&q, true), [54, 6]);
    }

    /// Through the kernel: every datagram arrives whole, each address's in its order.
    #[cfg(target_os = "linux")]
    #[test]
    fn every_datagram_arrives_whole_and_in_order() {
        let receivers: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut outgoing = Outgoing::default();
        let mut expected: Vec<Vec<(u8, usize)>> = vec![Vec::new(); receivers.len()];
        let mut tag = 0u8;
        // Frames interleaved across receivers, as forwarding makes them, with audio and
        // a long run that needs two messages.
        for round in 0..3 {
            for (r, socket) in receivers.iter().enumerate() {
                let to = socket.local_addr().unwrap();
                let sizes: Vec<usize> = match (round + r) % 3 {
                    0 => vec![1164, 1164, 199],
                    1 => vec![80, 1000, 1000, 1000, 1000],
                    _ => std::iter::repeat_n(100, 66).chain([1]).collect(),
                };
                for len in sizes {
                    tag = tag.wrapping_add(1);
                    outgoing.push(transmit(to, len, tag), &sender);
                    expected[r].push((tag, len));
                }
            }
        }
        outgoing.send(&sender);
        assert!(outgoing.is_empty());
        assert!(outgoing.gso, "loopback takes segmented messages (Linux 4.18 and later)");
        let mut buf = [0u8; 2048];
        for (r, socket) in receivers.iter().enumerate() {
            socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            for &(tag, len) in &expected[r] {
                let n = socket.recv(&mut buf).expect("every datagram arrives");
                assert_eq!((n, buf[0], buf[n - 1]), (len, tag, tag), "receiver {r}");
            }
        }
    }
}
