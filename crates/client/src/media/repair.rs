//! Retransmissions (RTX, RFC 4588) turned back into the packets they repair before the
//! NACK generator sees them, so that a repaired packet counts as arrived and is not
//! asked for again.
//!
//! webrtc-rs unwraps RTX only after its interceptor chain, on the way to the
//! application. Its NACK generator, inside the chain, sees the repair on the RTX
//! stream (which it does not track) and keeps asking for the packet on the primary one
//! until its per-packet limit. This interceptor sits just wire-ward of the generator
//! and does the unwrapping itself, the same way: the primary stream's SSRC and payload
//! type, and the original sequence number from the first two bytes of the payload.
//! Padding-only RTX packets (bandwidth probes) carry no original sequence number and
//! pass on untouched, for the transport-wide feedback to count and the endpoint to drop.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;

/// Where the interceptor sits: after the FEC decoder (6 000), before the NACK
/// generator (7 000), as a repair must be.
pub(crate) const SLOT: usize = 6_500;

/// A repair stream: its payload type, and the primary stream's SSRC and payload type.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Repairs {
    rtx_payload_type: u8,
    ssrc: u32,
    payload_type: u8,
}

/// Unwraps inbound RTX packets of the remote streams that declare an RTX stream.
#[derive(Default)]
pub(crate) struct RtxUnwrap {
    /// By the RTX stream's SSRC.
    streams: HashMap<u32, Repairs>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl RtxUnwrap {
    /// Turns an RTX packet of a known stream, with a payload, into the packet it
    /// repairs; leaves any other packet as it is.
    fn unwrap(&self, packet: &mut rtc::rtp::Packet) {
        let Some(r) = self.streams.get(&packet.header.ssrc) else { return };
        if packet.header.payload_type != r.rtx_payload_type || packet.payload.len() < 2 {
            return;
        }
        packet.header.sequence_number = u16::from_be_bytes([packet.payload[0], packet.payload[1]]);
        packet.header.ssrc = r.ssrc;
        packet.header.payload_type = r.payload_type;
        packet.header.padding = false;
        packet.payload = packet.payload.slice(2..);
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtxUnwrap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &mut msg.message.packet {
            self.unwrap(packet);
        }
        self.read.push_back(msg);
        Ok(())
    }

    queued_pass_through!();
}

impl Interceptor for RtxUnwrap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let (Some(rtx), Some(rtx_payload_type)) = (info.ssrc_rtx, info.payload_type_rtx) {
            self.streams.insert(rtx, Repairs { rtx_payload_type, ssrc: info.ssrc, payload_type: info.payload_type });
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.streams.remove(&rtx);
        }
    }
}

#[cfg(test)]
mod tests {
    use rtc::rtp::{Header, Packet as RtpPacket};

    use super::*;

    fn bound() -> RtxUnwrap {
        let mut u = RtxUnwrap::default();
        let info = StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            payload_type: 96,
            payload_type_rtx: Some(97),
            ..Default::default()
        };
        u.bind_remote_stream(&info);
        u
    }

    fn rtp(ssrc: u32, payload_type: u8, sequence_number: u16, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            header: Header { ssrc, payload_type, sequence_number, ..Default::default() },
            payload: payload.to_vec().into(),
        }
    }

    #[test]
    fn a_retransmission_becomes_the_packet_it_repairs() {
        let u = bound();
        let mut p = rtp(2000, 97, 7, &[0x01, 0x02, 0xaa, 0xbb]);
        u.unwrap(&mut p);
        assert_eq!((p.header.ssrc, p.header.payload_type, p.header.sequence_number), (1000, 96, 0x0102));
        assert_eq!(&p.payload[..], &[0xaa, 0xbb]);
    }

    #[test]
    fn probes_media_and_unknown_streams_pass_untouched() {
        let mut u = bound();
        for p in [rtp(2000, 97, 8, &[]), rtp(1000, 96, 9, &[1, 2, 3]), rtp(3000, 97, 10, &[1, 2, 3])] {
            let mut q = p.clone();
            u.unwrap(&mut q);
            assert_eq!(q, p);
        }
        u.unbind_remote_stream(&StreamInfo { ssrc: 1000, ssrc_rtx: Some(2000), ..Default::default() });
        let p = rtp(2000, 97, 11, &[0, 1, 2]);
        let mut q = p.clone();
        u.unwrap(&mut q);
        assert_eq!(q, p, "an unbound stream's packets are not unwrapped");
    }
}
