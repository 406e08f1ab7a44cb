//! Receiver feedback that the encoder must act on: keyframe requests (PLI and FIR).
//!
//! webrtc-rs's interceptors consume inbound RTCP and hand none of it to the application
//! unless an interceptor marks it. This one sits last in the chain (nearest the
//! application), sees every inbound RTCP packet after the NACK and report interceptors
//! have, and reports the SSRC of each keyframe request on a channel; the publisher maps
//! the SSRC to its track and layer and raises that layer's keyframe flag, which the
//! encoder loop reads before its next frame ([`super::LocalTrack::take_keyframe_request`]).

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use tokio::sync::mpsc;

/// Where the interceptor sits in the chain: after every default interceptor.
pub(crate) const SLOT: usize = 14_000;

/// Reports the media SSRC of every keyframe request it sees; passes everything on.
pub(crate) struct KeyframeTap {
    requests: mpsc::UnboundedSender<u32>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl KeyframeTap {
    pub(crate) fn new(requests: mpsc::UnboundedSender<u32>) -> Self {
        Self { requests, read: VecDeque::new(), write: VecDeque::new() }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                    let _ = self.requests.send(pli.media_ssrc);
                } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                    for entry in &fir.fir {
                        let _ = self.requests.send(entry.ssrc);
                    }
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
