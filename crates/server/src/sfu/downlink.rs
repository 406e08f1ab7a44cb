//! How much a subscriber connection may carry: congestion detection and backoff.
//!
//! The TWCC estimate says what the path carried, not what it could carry: while a
//! subscriber receives little (a low layer, audio only) the estimate drifts down toward
//! a small multiple of what is sent. So an estimate below a layer's rate is no reason
//! to withhold that layer. What is a reason is *congestion*: the estimate falling below
//! what is actually being forwarded, once the estimator has had [`SETTLE`] to see the
//! current rate. Then layers are chosen to fit the estimate, and no layer above the
//! current one is tried for a backoff period (doubling on each repeat, up to
//! [`MAX_BACKOFF`]). Outside congestion, subscribers get the layer they ask for, and
//! the estimator probes toward it.

use std::time::{Duration, Instant};

/// How long the estimator is given to see a new sending rate before it is trusted.
pub const SETTLE: Duration = Duration::from_secs(3);
/// The first wait before trying a higher layer again after congestion.
pub const MIN_BACKOFF: Duration = Duration::from_secs(5);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Congestion: the estimate below this share (percent) of the forwarded rate.
const CONGESTED_SHARE: u64 = 90;

/// The state of one subscriber connection's path.
#[derive(Debug, Clone)]
pub struct Downlink {
    /// When the forwarded rate last went up (an upgrade, a new subscription).
    rate_raised_at: Option<Instant>,
    /// No upgrades before this.
    blocked_until: Option<Instant>,
    backoff: Duration,
    last_congestion: Option<Instant>,
}

impl Default for Downlink {
    fn default() -> Self {
        Self { rate_raised_at: None, blocked_until: None, backoff: MIN_BACKOFF, last_congestion: None }
    }
}

/// What the layer choice may do this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Layers must fit this many bits per second (shared among video tracks).
    pub budget_bps: Option<u64>,
    /// Whether layers above the current ones may be chosen.
    pub upgrades: bool,
}

impl Downlink {
    /// Judges the path from the estimate and the rate being forwarded now.
    pub fn assess(&mut self, estimate_bps: Option<u64>, forwarded_bps: u64, now: Instant) -> Allowance {
        let settled = self.rate_raised_at.is_none_or(|t| now.saturating_duration_since(t) >= SETTLE);
        let congested = settled
            && estimate_bps.is_some_and(|e| forwarded_bps > 0 && e * 100 < forwarded_bps * CONGESTED_SHARE);
        if congested {
            if self.blocked_until.is_none_or(|t| now >= t) {
                // A new bout of congestion: back off for longer each time it recurs.
                let recurring = self.last_congestion.is_some_and(|t| now.saturating_duration_since(t) < MAX_BACKOFF);
                self.backoff = if recurring { (self.backoff * 2).min(MAX_BACKOFF) } else { MIN_BACKOFF };
                tracing::debug!(?estimate_bps, forwarded_bps, backoff = ?self.backoff, "downlink congested");
            }
            self.blocked_until = Some(now + self.backoff);
            self.last_congestion = Some(now);
        }
        let blocked = self.blocked_until.is_some_and(|t| now < t);
        Allowance { budget_bps: if congested || blocked { estimate_bps } else { None }, upgrades: !blocked }
    }

    /// The forwarded rate is about to go up; give the estimator time to see it.
    pub fn raised(&mut self, now: Instant) {
        self.rate_raised_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_estimate_alone_is_not_congestion() {
        let mut d = Downlink::default();
        let now = Instant::now();
        // Sending 200 kbps, estimate drifted to 450 kbps: ask for anything.
        let a = d.assess(Some(450_000), 200_000, now);
        assert_eq!(a, Allowance { budget_bps: None, upgrades: true });
    }

    #[test]
    fn congestion_limits_and_backs_off_longer_each_time() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.raised(t0);
        // Right after raising the rate the estimate is not trusted yet.
        assert!(d.assess(Some(300_000), 700_000, t0 + Duration::from_secs(1)).upgrades);
        let t1 = t0 + SETTLE;
        let a = d.assess(Some(300_000), 700_000, t1);
        assert_eq!(a, Allowance { budget_bps: Some(300_000), upgrades: false });
        // Recovered (forwarding 200k now) but still within the backoff: no upgrades yet.
        let a = d.assess(Some(320_000), 200_000, t1 + Duration::from_secs(2));
        assert_eq!(a, Allowance { budget_bps: Some(320_000), upgrades: false });
        let t2 = t1 + MIN_BACKOFF;
        assert!(d.assess(Some(320_000), 200_000, t2).upgrades, "tries again after the backoff");
        d.raised(t2);
        let t3 = t2 + SETTLE;
        assert!(!d.assess(Some(300_000), 700_000, t3).upgrades);
        assert!(!d.assess(Some(320_000), 200_000, t3 + MIN_BACKOFF).upgrades, "the second backoff is longer");
        assert!(d.assess(Some(320_000), 200_000, t3 + MIN_BACKOFF * 2).upgrades);
    }
}
