//! A publisher's capture clock, read from its sender reports, so that the reports the
//! SFU sends its subscribers say when each packet was captured, not when it arrived.
//!
//! A receiver keeps a publisher's audio and video in sync by mapping each stream's RTP
//! time to a common wall clock through the stream's sender reports. The SFU writes
//! its own reports (str0m makes them from the wall clock given with each packet), so
//! the wall clock it gives must be the capture time: with the arrival time, a video
//! frame that took 60 ms to encode and pace out would play 60 ms late against its
//! audio, and the error would vary with each frame's size.
//!
//! The publisher's reports map each stream's RTP time to the publisher's NTP clock. The
//! server maps that clock to its own through the report that arrived soonest after it
//! was written (the least one-way delay seen): one offset for all of a publisher's
//! streams, so their sync survives. Clocks drift apart slowly, so the offset is the
//! least delay of the last [`WINDOW`] (or less, when a report shows less).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use str0m::media::MediaTime;
use str0m::rtp::rtcp::SenderInfo;
use str0m::rtp::Ssrc;

/// How long a least delay stays the offset before the least of the next window
/// replaces it.
pub const WINDOW: Duration = Duration::from_secs(30);
/// A capture time further than this before arrival is taken as a stale report (a
/// publisher that restarted its stream), and the arrival time is used instead.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// One report: the publisher's NTP time (since the Unix epoch) and when it arrived.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    ntp: Duration,
    arrived: Instant,
}

impl Anchor {
    /// Whether `self` arrived sooner after its writing than `other` did.
    fn sooner_than(&self, other: &Anchor) -> bool {
        signed_nanos(self.arrived, other.arrived) < signed_duration(self.ntp, other.ntp)
    }
}

/// The capture clock of one publisher.
#[derive(Debug, Default)]
pub struct CaptureClock {
    /// The report with the least delay: the offset between the two clocks.
    anchor: Option<Anchor>,
    /// The least delay of the window under way, and when that window began.
    candidate: Option<(Anchor, Instant)>,
    /// Each stream's last report: its RTP time (32 bits, as sent) and NTP time.
    streams: HashMap<Ssrc, (u32, Duration)>,
}

impl CaptureClock {
    /// Takes in a sender report of stream `ssrc`, which arrived at `arrived`.
    pub fn report(&mut self, info: &SenderInfo, arrived: Instant) {
        let Ok(ntp) = info.ntp_time.duration_since(SystemTime::UNIX_EPOCH) else { return };
        // str0m gives the RTP time the clock rate of the stream's last packet: a report
        // before any packet has none.
        if info.rtp_time.denom() <= 1 {
            return;
        }
        self.streams.insert(info.ssrc, (info.rtp_time.numer() as u32, ntp));
        let now = Anchor { ntp, arrived };
        match &mut self.candidate {
            Some((least, began)) => {
                if now.sooner_than(least) {
                    *least = now;
                }
                if arrived.saturating_duration_since(*began) >= WINDOW {
                    self.anchor = Some(*least);
                    self.candidate = Some((now, arrived));
                }
            }
            None => self.candidate = Some((now, arrived)),
        }
        if self.anchor.is_none_or(|a| now.sooner_than(&a)) {
            self.anchor = Some(now);
        }
    }

    /// When the packet of stream `ssrc` with RTP time `time`, which arrived at
    /// `arrival`, was captured, on the server's clock; its arrival when no report of
    /// its stream came yet. Never later than its arrival (a wall clock in the future
    /// stops str0m's reports).
    pub fn capture_time(&self, ssrc: Ssrc, time: MediaTime, arrival: Instant) -> Instant {
        let (Some(anchor), Some(&(rtp, ntp))) = (self.anchor, self.streams.get(&ssrc)) else { return arrival };
        let rate = u64::from(time.denom());
        if rate <= 1 {
            return arrival;
        }
        // Since the report, in the stream's clock (a wrap of the 32 bits is allowed for).
        let ticks = i64::from((time.numer() as u32).wrapping_sub(rtp) as i32);
        let since_report = ticks as i128 * 1_000_000_000 / rate as i128;
        let since_anchor = signed_duration(ntp, anchor.ntp) + since_report;
        let captured = if since_anchor >= 0 {
            anchor.arrived.checked_add(Duration::from_nanos(since_anchor as u64))
        } else {
            anchor.arrived.checked_sub(Duration::from_nanos(since_anchor.unsigned_abs() as u64))
        };
        match captured {
            Some(t) if t >= arrival => arrival,
            Some(t) if arrival.duration_since(t) <= MAX_AGE => t,
            _ => arrival,
        }
    }
}

/// `a - b` in nanoseconds.
fn signed_nanos(a: Instant, b: Instant) -> i128 {
    if a >= b {
        a.duration_since(b).as_nanos() as i128
    } else {
        -(b.duration_since(a).as_nanos() as i128)
    }
}

/// `a - b` in nanoseconds.
fn signed_duration(a: Duration, b: Duration) -> i128 {
    a.as_nanos() as i128 - b.as_nanos() as i128
}

#[cfg(test)]
mod tests {
    use str0m::media::Frequency;

    use super::*;

    fn info(ssrc: u32, ntp: Duration, rtp: u64, rate: Frequency) -> SenderInfo {
        SenderInfo {
            ssrc: ssrc.into(),
            ntp_time: SystemTime::UNIX_EPOCH + ntp,
            rtp_time: MediaTime::new(rtp, rate),
            sender_packet_count: 0,
            sender_octet_count: 0,
        }
    }

    const SECS: Duration = Duration::from_secs(1_800_000_000);

    #[test]
    fn capture_times_follow_each_streams_report_through_the_least_delay() {
        let t0 = Instant::now();
        let mut clock = CaptureClock::default();
        let video = 1.into();
        let audio = 2.into();
        // Video: RTP 900_000 was at NTP SECS; its report took 30 ms to arrive.
        clock.report(&info(1, SECS, 900_000, Frequency::NINETY_KHZ), t0 + Duration::from_millis(30));
        // Audio: RTP 48_000 at SECS + 1 s, arrived after 10 ms: the least delay.
        clock.report(
            &info(2, SECS + Duration::from_secs(1), 48_000, Frequency::FORTY_EIGHT_KHZ),
            t0 + Duration::from_millis(1010),
        );
        // So NTP SECS is t0 + 10 ms on the server's clock, for both streams.
        let late = t0 + Duration::from_secs(3);
        let frame = MediaTime::new(900_000 + 90_000, Frequency::NINETY_KHZ);
        assert_eq!(clock.capture_time(video, frame, late), t0 + Duration::from_millis(1010));
        let sample = MediaTime::new(48_000 + 24_000, Frequency::FORTY_EIGHT_KHZ);
        assert_eq!(clock.capture_time(audio, sample, late), t0 + Duration::from_millis(1510));
        // A stream with no report yet, and a time past its arrival, give the arrival.
        assert_eq!(clock.capture_time(3.into(), frame, late), late);
        let early = t0 + Duration::from_millis(500);
        assert_eq!(clock.capture_time(video, frame, early), early);
        // A report long stale gives the arrival.
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!(clock.capture_time(video, frame, much_later), much_later);
    }

    #[test]
    fn the_rtp_time_may_wrap_and_the_offset_follows_drift() {
        let t0 = Instant::now();
        let mut clock = CaptureClock::default();
        let video = 1.into();
        let near_wrap = u64::from(u32::MAX) - 45_000;
        clock.report(&info(1, SECS, near_wrap, Frequency::NINETY_KHZ), t0);
        // 45_001 ticks after it wraps to 0: 0.5 s (and a tick) after the report.
        let after = MediaTime::new(0, Frequency::NINETY_KHZ);
        let captured = clock.capture_time(video, after, t0 + Duration::from_secs(2));
        assert_eq!(captured.duration_since(t0).as_millis(), 500);
        // The path got slower for good (drift): after a window, the least delay of the
        // last window is the offset.
        for s in 1..=70u64 {
            let ntp = SECS + Duration::from_secs(s);
            let rtp = near_wrap + s * 90_000;
            clock.report(
                &info(1, ntp, rtp, Frequency::NINETY_KHZ),
                t0 + Duration::from_secs(s) + Duration::from_millis(40),
            );
        }
        let frame = MediaTime::new((near_wrap + 70 * 90_000) & u64::from(u32::MAX), Frequency::NINETY_KHZ);
        let captured = clock.capture_time(video, frame, t0 + Duration::from_secs(71));
        assert_eq!(captured, t0 + Duration::from_secs(70) + Duration::from_millis(40));
    }
}
