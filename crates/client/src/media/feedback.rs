//! Receiver feedback that the encoder must act on: keyframe requests (PLI and FIR), and
//! the loss the receiver (the SFU) reports for each sent stream, which sets how much of
//! its nominal bitrate each encoder should use ([`SendRate`]).
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
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use tokio::sync::mpsc;

/// Where the interceptor sits in the chain: after every default interceptor.
pub(crate) const SLOT: usize = 14_000;

/// What the receiver said about one of our streams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Feedback {
    Keyframe {
        ssrc: u32,
    },
    /// The share of packets lost since the last report (0..1).
    Loss {
        ssrc: u32,
        fraction: f32,
    },
}

/// Reports every keyframe request and reception report it sees; passes everything on.
pub(crate) struct FeedbackTap {
    requests: mpsc::UnboundedSender<Feedback>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl FeedbackTap {
    pub(crate) fn new(requests: mpsc::UnboundedSender<Feedback>) -> Self {
        Self { requests, read: VecDeque::new(), write: VecDeque::new() }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                let reports = if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                    let _ = self.requests.send(Feedback::Keyframe { ssrc: pli.media_ssrc });
                    &[][..]
                } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                    for entry in &fir.fir {
                        let _ = self.requests.send(Feedback::Keyframe { ssrc: entry.ssrc });
                    }
                    &[][..]
                } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    &rr.reports[..]
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    &sr.reports[..]
                } else {
                    &[][..]
                };
                for r in reports {
                    let fraction = f32::from(r.fraction_lost) / 256.0;
                    let _ = self.requests.send(Feedback::Loss { ssrc: r.ssrc, fraction });
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

/// Loss-based send-rate control for one encoder (the loss half of Google Congestion
/// Control): well above 10 % loss the rate falls by half the loss, under 2 % it climbs
/// 8 % per report (reports come about once a second), in between it holds. The result
/// is a share of the encoder's nominal bitrate, never under [`SendRate::FLOOR`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SendRate {
    share: f32,
}

impl Default for SendRate {
    fn default() -> Self {
        Self { share: 1.0 }
    }
}

impl SendRate {
    pub(crate) const FLOOR: f32 = 0.15;

    pub(crate) fn share(&self) -> f32 {
        self.share
    }

    pub(crate) fn on_loss(&mut self, fraction: f32) {
        let fraction = fraction.clamp(0.0, 1.0);
        if fraction > 0.10 {
            self.share *= 1.0 - 0.5 * fraction;
        } else if fraction < 0.02 {
            self.share *= 1.08;
        }
        self.share = self.share.clamp(Self::FLOOR, 1.0);
    }
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::SendRate;

    #[test]
    fn heavy_loss_cuts_the_rate_and_a_clean_path_restores_it() {
        let mut r = SendRate::default();
        r.on_loss(0.05);
        assert_eq!(r.share(), 1.0, "a little loss is repaired, not a reason to slow down");
        r.on_loss(0.30);
        assert!((r.share() - 0.85).abs() < 1e-6);
        for _ in 0..20 {
            r.on_loss(0.5);
        }
        assert_eq!(r.share(), SendRate::FLOOR);
        for _ in 0..30 {
            r.on_loss(0.0);
        }
        assert_eq!(r.share(), 1.0);
    }
}
