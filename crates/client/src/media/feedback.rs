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
//!
//! It also answers the receiver's reference time (RFC 3611 XR RRTR) with a DLRR block at
//! once, which webrtc-rs does not: that is how a receiver that sends no media of its own,
//! as the SFU towards a publisher, measures the round trip. Without it the SFU assumed
//! 100 ms and spaced its repeated NACKs to the publisher that far apart, holding every
//! subscriber's video for 300 ms whenever a packet's first two requests failed.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::extended_report::{DLRRReport, DLRRReportBlock, ExtendedReport, ReceiverReferenceTimeReportBlock};
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
    /// One of our own streams' SSRCs, as the sender of our DLRR answers.
    ssrc: u32,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl FeedbackTap {
    pub(crate) fn new(requests: mpsc::UnboundedSender<Feedback>) -> Self {
        Self { requests, ssrc: 0, read: VecDeque::new(), write: VecDeque::new() }
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
                } else if let Some(xr) = any.downcast_ref::<ExtendedReport>() {
                    if let Some(answer) = dlrr_answer(xr, self.ssrc) {
                        let message = AttributedPacket::new(Packet::Rtcp(vec![Box::new(answer)]));
                        self.write.push_back(TaggedPacket { now: msg.now, transport: Default::default(), message });
                    }
                    &[][..]
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

    queued_pass_through!();
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

/// The DLRR answer to an extended report's receiver reference times, if it has any. It
/// is sent at once, but says one unit (1/65536 s, 15 µs) since each was received: a
/// delay of zero reads as "no reference time received yet" to str0m (RFC 3550's rule
/// for DLSR), which then measures nothing.
fn dlrr_answer(xr: &ExtendedReport, our_ssrc: u32) -> Option<ExtendedReport> {
    let reports: Vec<DLRRReport> = xr
        .reports
        .iter()
        .filter_map(|block| block.as_any().downcast_ref::<ReceiverReferenceTimeReportBlock>())
        // The middle 32 bits of the 64-bit NTP timestamp.
        .map(|rrt| DLRRReport { ssrc: xr.sender_ssrc, last_rr: (rrt.ntp_timestamp >> 16) as u32, dlrr: 1 })
        .collect();
    (!reports.is_empty())
        .then(|| ExtendedReport { sender_ssrc: our_ssrc, reports: vec![Box::new(DLRRReportBlock { reports })] })
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if self.ssrc == 0 {
            self.ssrc = info.ssrc;
        }
    }
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_reference_time_is_answered_at_once_with_its_middle_bits() {
        let rrt = ReceiverReferenceTimeReportBlock { ntp_timestamp: 0x1122_3344_5566_7788 };
        let xr = ExtendedReport { sender_ssrc: 7, reports: vec![Box::new(rrt)] };
        let answer = dlrr_answer(&xr, 9).expect("an answer");
        assert_eq!(answer.sender_ssrc, 9);
        let block = answer.reports[0].as_any().downcast_ref::<DLRRReportBlock>().expect("a DLRR block");
        assert_eq!(block.reports, vec![DLRRReport { ssrc: 7, last_rr: 0x3344_5566, dlrr: 1 }]);
        let no_rrt = ExtendedReport { sender_ssrc: 7, reports: vec![Box::new(DLRRReportBlock::default())] };
        assert!(dlrr_answer(&no_rrt, 9).is_none(), "only reference times are answered");
    }

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
