//! How much a subscriber connection may carry, judged from what its receiver reports.
//!
//! The SFU does not pace its output. (str0m's bandwidth estimator comes with a pacer
//! that sends at 1.1 times the estimate; when the estimate collapses under congestion,
//! frames already accepted wait in that pacer for seconds, which is worse for a call than
//! the loss it avoids.) Instead each subscriber connection's path is judged by the loss
//! its receiver reports in RTCP receiver reports:
//!
//! - a path that has shown no lasting loss gets the layers its subscriber asks for;
//! - loss of [`CONGESTED_LOSS`] or more, once the path has had [`SETTLE`] to carry a new
//!   rate, is congestion: the path becomes *limited* to what got through (the rate that
//!   was forwarded, less the loss, with a margin), and layers must fit that;
//! - after a backoff (doubling while congestion recurs) the limit is lifted to try the
//!   wanted layers again; if that brings no congestion within [`SETTLE`], the path is
//!   free again.

use std::time::{Duration, Instant};

/// How long a path is given to carry a new rate before its loss is held against it
/// (queues and retransmissions of the old rate take a while to clear).
pub const SETTLE: Duration = Duration::from_secs(3);
/// The share of packets lost (0 to 1) that counts as congestion. Random loss of a few
/// percent is not congestion: retransmissions repair it.
pub const CONGESTED_LOSS: f32 = 0.10;
/// The first wait before trying higher layers again; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(15);
pub const MAX_BACKOFF: Duration = Duration::from_secs(120);

/// The state of one subscriber connection's path.
#[derive(Debug, Clone)]
pub struct Downlink {
    /// When the forwarded rate last changed (a layer switch, a new subscription).
    rate_raised_at: Option<Instant>,
    /// The worst loss reported since it was last looked at.
    loss: Option<f32>,
    /// While limited: the rate the path carries, and when to try more.
    limit: Option<(u64, Instant)>,
    /// A trial of higher layers is under way since then.
    trial_since: Option<Instant>,
    backoff: Duration,
}

impl Default for Downlink {
    fn default() -> Self {
        Self { rate_raised_at: None, loss: None, limit: None, trial_since: None, backoff: MIN_BACKOFF }
    }
}

impl Downlink {
    /// A receiver report said this share of a stream's packets was lost.
    pub fn reported_loss(&mut self, loss: f32) {
        self.loss = Some(self.loss.map_or(loss, |l| l.max(loss)));
    }

    /// What layers must fit now: `None` for anything asked for. `forwarded_bps` is the
    /// rate being forwarded on the connection.
    pub fn budget(&mut self, forwarded_bps: u64, now: Instant) -> Option<u64> {
        let settled = self.rate_raised_at.is_none_or(|t| now.saturating_duration_since(t) >= SETTLE);
        if settled {
            if let Some(loss) = self.loss.take().filter(|l| *l >= CONGESTED_LOSS) {
                let carried = (forwarded_bps as f64 * f64::from(1.0 - loss.min(1.0))) as u64;
                let long_settled = self.rate_raised_at.is_none_or(|t| now.saturating_duration_since(t) >= SETTLE * 2);
                match self.limit {
                    // Still losing on a lower rate long after the switch (not the old
                    // rate's queues and retransmissions draining): the path got worse.
                    // The limit falls, by at most half at a time.
                    Some((previous, retry_at)) if long_settled => {
                        self.limit = Some((carried.clamp(previous / 2, previous), retry_at));
                    }
                    Some(_) => {}
                    None => {
                        // A failed trial of more backs off longer; a new bout starts over.
                        let failed_trial = self.trial_since.take().is_some();
                        self.backoff = if failed_trial { (self.backoff * 2).min(MAX_BACKOFF) } else { MIN_BACKOFF };
                        self.limit = Some((carried, now + self.backoff));
                    }
                }
                tracing::debug!(loss, forwarded_bps, limit = ?self.limit, backoff = ?self.backoff, "downlink congested");
            } else if self.trial_since.is_some_and(|t| now.saturating_duration_since(t) >= SETTLE * 2) {
                // The higher rate got through: the path is free again.
                tracing::debug!(forwarded_bps, "downlink carries the wanted rate");
                self.trial_since = None;
                self.backoff = MIN_BACKOFF;
            }
        }
        match self.limit {
            Some((_, retry_at)) if now >= retry_at => {
                self.limit = None;
                self.trial_since = Some(now);
                None
            }
            Some((limit, _)) => Some(limit),
            None => None,
        }
    }

    /// The forwarded rate is about to change (a layer switch, a new subscription); give
    /// the path time to carry the new rate before its loss counts.
    pub fn rate_changed(&mut self, now: Instant) {
        self.rate_raised_at = Some(now);
        // Loss measured at the old rate says nothing about the new one.
        self.loss = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_loss_is_not_congestion() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.reported_loss(0.05);
        assert_eq!(d.budget(700_000, t0), None);
    }

    #[test]
    fn congestion_limits_the_path_then_tries_again_less_often() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.rate_changed(t0);
        d.reported_loss(0.5);
        assert_eq!(d.budget(700_000, t0 + Duration::from_secs(1)), None, "not settled yet");
        d.reported_loss(0.5);
        let t1 = t0 + SETTLE;
        // Half of 700 kbit/s got through.
        assert_eq!(d.budget(700_000, t1), Some(350_000));
        assert_eq!(d.budget(200_000, t1 + Duration::from_secs(1)), Some(350_000), "held while backing off");
        // Still losing on the lower layer: at first the old rate's queues draining,
        // later a path that got worse. Then the limit falls, by half at most.
        d.rate_changed(t1);
        d.reported_loss(0.9);
        assert_eq!(d.budget(200_000, t1 + SETTLE), Some(350_000));
        d.reported_loss(0.9);
        assert_eq!(d.budget(200_000, t1 + SETTLE * 2), Some(175_000));
        d.reported_loss(0.1);
        assert_eq!(d.budget(200_000, t1 + SETTLE * 2 + Duration::from_secs(1)), Some(175_000), "never rises by loss");
        let t2 = t1 + MIN_BACKOFF;
        assert_eq!(d.budget(200_000, t2), None, "then higher layers are tried");
        d.rate_changed(t2);
        d.reported_loss(0.5);
        let t3 = t2 + SETTLE;
        assert_eq!(d.budget(700_000, t3), Some(350_000), "congested again");
        assert_eq!(d.budget(200_000, t3 + MIN_BACKOFF), Some(350_000), "and the backoff doubled");
        assert_eq!(d.budget(200_000, t3 + MIN_BACKOFF * 2), None);
        // This time the trial carries: free again, and the backoff starts over.
        d.rate_changed(t3 + MIN_BACKOFF * 2);
        assert_eq!(d.budget(700_000, t3 + MIN_BACKOFF * 2 + SETTLE * 2), None);
        assert_eq!(d.backoff, MIN_BACKOFF);
    }
}
