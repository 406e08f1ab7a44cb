//! How much a subscriber connection may carry: congestion from the TWCC bandwidth
//! estimate and from receiver-reported loss.
//!
//! Every subscriber connection runs str0m's TWCC bandwidth estimator, probing toward
//! what its subscriptions want, but its media is not paced: str0m's pacer sends at 1.1
//! times the estimate, and when the estimate collapses under congestion, frames already
//! accepted would wait in it for seconds. The estimate instead decides which layers are
//! sent, which is how an SFU should shed load.
//!
//! The estimate says what the path carried, not what it could carry: while a subscriber
//! receives little it drifts toward a small multiple of what is sent, and right after a
//! connection starts it swings. So by itself an estimate below a layer's rate is no
//! reason to withhold that layer, and neither is an estimate still climbing toward a rate
//! just raised (it grows by a few percent a second). What is a reason is *congestion*,
//! either of:
//! - the estimate *falling* (below [`FALL_SHARE`] of its peak over [`FALL_WINDOW`], the
//!   estimator's reaction to overuse) and staying below what is being forwarded for
//!   [`HOLD`], once the path has had [`SETTLE`] to carry the current rate;
//! - the receiver reporting [`CONGESTED_LOSS`] or more of the packets lost (random loss
//!   of a few percent is not congestion: retransmissions repair it).
//!
//! A congested path is *limited*: layers must fit what it showed it carries (after loss,
//! what got through; otherwise the estimate). The limit lifts itself when probing shows
//! room: every [`PROBE_INTERVAL`] the estimator is asked to probe for the wanted rate
//! with a short burst of padding, which costs the path a few milliseconds of queue
//! where trying the wanted layers would cost it seconds of loss. (Left to itself the
//! estimator would not find the room: it climbs to a small multiple of what is sent,
//! and its own periodic probes wait for the sending to fall well below the estimate.)
//! A path that cannot be probed (its receiver sends no TWCC feedback, so there is no
//! estimate) is instead tried with the wanted layers after a backoff, doubling while
//! congestion recurs. Either way, the higher rate carried without congestion for two
//! [`SETTLE`]s frees the path.

use std::time::{Duration, Instant};

/// How long a path is given to carry a new rate before its loss and estimate count
/// (queues and retransmissions of the old rate take a while to clear).
pub const SETTLE: Duration = Duration::from_secs(3);
/// How long the estimate must stay below the forwarded rate to count as congestion.
pub const HOLD: Duration = Duration::from_secs(1);
/// The share of packets lost (0 to 1) that counts as congestion.
pub const CONGESTED_LOSS: f32 = 0.10;
/// The first wait before trying higher layers again; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(15);
pub const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// Congestion: the estimate below this share (percent) of the forwarded rate (one
/// routine back-off of the estimator, to 85% of what was delivered, stays above it)...
const BELOW_SHARE: u64 = 80;
/// ...after falling below this share (percent) of its peak within [`FALL_WINDOW`].
pub const FALL_SHARE: u64 = 85;
pub const FALL_WINDOW: Duration = Duration::from_secs(3);
/// How often a limited path is probed for the wanted rate; doubling, up to
/// [`MAX_PROBE_INTERVAL`], while the rates probing made room for bring congestion.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(32);

/// The state of one subscriber connection's path.
#[derive(Debug, Clone)]
pub struct Downlink {
    /// When the forwarded rate last changed (a layer switch, a new subscription).
    rate_changed_at: Option<Instant>,
    /// The worst loss reported since it was last looked at.
    loss: Option<f32>,
    /// Since when the estimate has been falling and below the forwarded rate.
    below_since: Option<Instant>,
    /// Recent estimates, to tell a falling one from one still climbing.
    recent: std::collections::VecDeque<(Instant, u64)>,
    /// While limited: what got through, and when to try more regardless.
    limit: Option<(u64, Instant)>,
    /// A trial of higher layers is under way since then.
    trial_since: Option<Instant>,
    backoff: Duration,
    /// While limited: when to probe for the wanted rate next (set with every new limit,
    /// so left as it is when the limit goes), and how often.
    next_probe: Option<Instant>,
    probe_every: Duration,
    /// When the limit was set.
    limited_at: Option<Instant>,
}

impl Default for Downlink {
    fn default() -> Self {
        Self {
            rate_changed_at: None,
            loss: None,
            below_since: None,
            recent: std::collections::VecDeque::new(),
            limit: None,
            trial_since: None,
            backoff: MIN_BACKOFF,
            next_probe: None,
            probe_every: PROBE_INTERVAL,
            limited_at: None,
        }
    }
}

impl Downlink {
    /// Whether congestion holds its layers below what is wanted.
    pub fn is_limited(&self) -> bool {
        self.limit.is_some()
    }

    /// A receiver report said this share of a stream's packets was lost.
    pub fn reported_loss(&mut self, loss: f32) {
        self.loss = Some(self.loss.map_or(loss, |l| l.max(loss)));
    }

    /// What layers must fit now: `None` for anything asked for. `forwarded_bps` is the
    /// rate being forwarded on the connection, `estimate_bps` the TWCC estimate.
    pub fn budget(&mut self, forwarded_bps: u64, estimate_bps: Option<u64>, now: Instant) -> Option<u64> {
        let since_change = self.rate_changed_at.map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        if let Some(e) = estimate_bps {
            self.recent.push_back((now, e));
        }
        while self.recent.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > FALL_WINDOW) {
            self.recent.pop_front();
        }
        let peak = self.recent.iter().map(|(_, e)| *e).max().unwrap_or(0);
        // Forwarding more than the limit allows, since a probe showed room for it.
        let raised = self.rate_changed_at.zip(self.limited_at).is_some_and(|(c, l)| c > l);
        let above_limit = raised && self.limit.is_some_and(|(l, _)| forwarded_bps > l);
        if since_change >= SETTLE {
            let below =
                estimate_bps.is_some_and(|e| e * 100 < forwarded_bps * BELOW_SHARE && e * 100 < peak * FALL_SHARE);
            let below_for = if below {
                now.saturating_duration_since(*self.below_since.get_or_insert(now))
            } else {
                self.below_since = None;
                Duration::ZERO
            };
            let lossy = self.loss.take().filter(|l| *l >= CONGESTED_LOSS);
            if lossy.is_some() || below_for >= HOLD {
                // With loss reported, what got through is measured: the path carried at
                // least that much. The estimate at that moment is the estimator's first
                // reaction to the queue overflowing and can sit well below it (a 450 kbit/s
                // path was once estimated at 200 while 320 got through), which would drop
                // the subscriber a layer further than the path requires. Without loss,
                // the falling estimate is all there is to go by.
                let carried = match (lossy, estimate_bps) {
                    (Some(loss), _) => (forwarded_bps as f64 * f64::from(1.0 - loss.min(1.0))) as u64,
                    (None, Some(e)) => forwarded_bps.min(e),
                    (None, None) => forwarded_bps,
                };
                let before = self.limit.map(|(l, _)| l);
                self.congested(carried, since_change >= SETTLE * 2, above_limit, now);
                let limit = self.limit.map(|(l, _)| l);
                if limit != before {
                    tracing::info!(?lossy, ?estimate_bps, forwarded_bps, ?limit, "downlink congested: limited");
                }
            } else {
                // A trial, or a rate above the limit that probing made room for, carried
                // without congestion: the path is free.
                let tried = self.trial_since.is_some_and(|t| now.saturating_duration_since(t) >= SETTLE * 2);
                if tried || (above_limit && since_change >= SETTLE * 2) {
                    tracing::debug!(forwarded_bps, "downlink carries the wanted rate");
                    self.limit = None;
                    self.probe_every = PROBE_INTERVAL;
                    self.trial_since = None;
                    self.backoff = MIN_BACKOFF;
                }
            }
        } else {
            // Loss and estimates of the old rate say nothing about the new one.
            self.loss = None;
            self.below_since = None;
        }
        match self.limit {
            // A path that can be probed is tried again when probing shows room; one
            // that cannot (no estimate: the receiver sends no TWCC feedback) only by
            // trying the wanted layers.
            Some((_, retry_at)) if now >= retry_at && estimate_bps.is_none() => {
                self.limit = None;
                self.trial_since = Some(now);
                None
            }
            // Probing found room above the limit: the estimate decides.
            Some((limit, _)) => Some(estimate_bps.map_or(limit, |e| e.max(limit))),
            None => None,
        }
    }

    fn congested(&mut self, carried: u64, long_settled: bool, above_limit: bool, now: Instant) {
        match self.limit {
            // The rate a probe made room for brought congestion: the probe misjudged the
            // path (a policer that lets a burst through, a path that got worse since).
            // Back to what got through, and probe less often, so that a path like that
            // is not made to drop packets every few seconds.
            Some((_, retry_at)) if above_limit => {
                self.limit = Some((carried, retry_at));
                self.limited_at = Some(now);
                self.probe_every = (self.probe_every * 2).min(MAX_PROBE_INTERVAL);
                self.next_probe = Some(now + self.probe_every);
            }
            // Still congested on a lower rate long after the switch: the path got worse.
            // The limit falls, by at most half at a time.
            Some((previous, retry_at)) if long_settled => {
                self.limit = Some((carried.clamp(previous / 2, previous), retry_at));
            }
            // Right after a switch down: the old rate's queues draining.
            Some(_) => {}
            None => {
                // A failed trial of more backs off longer; a new bout starts over.
                let failed_trial = self.trial_since.take().is_some();
                self.backoff = if failed_trial { (self.backoff * 2).min(MAX_BACKOFF) } else { MIN_BACKOFF };
                self.limit = Some((carried, now + self.backoff));
                self.limited_at = Some(now);
                // The first probe after the queues of the old rate have drained.
                self.probe_every = PROBE_INTERVAL;
                self.next_probe = Some(now + PROBE_INTERVAL);
            }
        }
    }

    /// The subscriber asked for a higher quality: a limit learned on what it received
    /// before is tried again now rather than after the backoff (a failed trial still
    /// doubles the backoff, so asking again and again on a poor path costs little).
    pub fn more_wanted(&mut self, now: Instant) {
        if self.limit.take().is_some() {
            tracing::info!("higher quality asked for: trying the limited downlink again");
            self.trial_since = Some(now);
        }
    }

    /// Whether to probe for the wanted rate now (then not again for the probe interval).
    pub fn probe_due(&mut self, now: Instant) -> bool {
        match self.next_probe {
            Some(at) if now >= at && self.limit.is_some() => {
                self.next_probe = Some(now + self.probe_every);
                true
            }
            _ => false,
        }
    }

    /// The forwarded rate is about to change (a layer switch, a new subscription); give
    /// the path time to carry the new rate before its loss and estimate count.
    pub fn rate_changed(&mut self, now: Instant) {
        self.rate_changed_at = Some(now);
        self.loss = None;
        self.below_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_loss_and_a_drifting_estimate_are_not_congestion() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.reported_loss(0.05);
        assert_eq!(d.budget(700_000, Some(2_000_000), t0), None);
        // Sending 200 kbps, estimate drifted to 450 kbps: anything may be asked for.
        assert_eq!(d.budget(200_000, Some(450_000), t0), None);
        // A dip below the forwarded rate shorter than HOLD is noise.
        assert_eq!(d.budget(200_000, Some(150_000), t0 + Duration::from_millis(100)), None);
        assert_eq!(d.budget(200_000, Some(300_000), t0 + Duration::from_millis(900)), None);
    }

    #[test]
    fn an_estimate_climbing_toward_a_new_rate_is_not_congestion() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.rate_changed(t0);
        for (i, e) in [300_000, 330_000, 360_000, 400_000, 440_000, 480_000, 520_000].into_iter().enumerate() {
            let t = t0 + Duration::from_secs(i as u64);
            assert_eq!(d.budget(700_000, Some(e), t), None, "at {e}");
        }
    }

    #[test]
    fn a_falling_estimate_below_the_rate_limits_the_path() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.rate_changed(t0);
        assert_eq!(d.budget(700_000, Some(1_000_000), t0 + Duration::from_secs(1)), None);
        let t1 = t0 + SETTLE;
        assert_eq!(d.budget(700_000, Some(900_000), t1 - Duration::from_millis(500)), None);
        assert_eq!(d.budget(700_000, Some(300_000), t1), None, "not for long enough yet");
        assert_eq!(d.budget(700_000, Some(300_000), t1 + HOLD), Some(300_000));
        // Probing finds more room: the estimate decides.
        assert_eq!(d.budget(200_000, Some(900_000), t1 + HOLD * 2), Some(900_000));
    }

    #[test]
    fn loss_limits_the_path_then_more_is_tried_less_often() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.rate_changed(t0);
        d.reported_loss(0.5);
        assert_eq!(d.budget(700_000, None, t0 + Duration::from_secs(1)), None, "not settled yet");
        d.reported_loss(0.5);
        let t1 = t0 + SETTLE;
        // Half of 700 kbit/s got through.
        assert_eq!(d.budget(700_000, None, t1), Some(350_000));
        // Still losing on the lower layer: at first the old rate's queues draining,
        // later a path that got worse. Then the limit falls, by half at most.
        d.rate_changed(t1);
        d.reported_loss(0.9);
        assert_eq!(d.budget(200_000, None, t1 + SETTLE), Some(350_000));
        d.reported_loss(0.9);
        assert_eq!(d.budget(200_000, None, t1 + SETTLE * 2), Some(175_000));
        let t2 = t1 + MIN_BACKOFF;
        assert_eq!(d.budget(200_000, None, t2), None, "then higher layers are tried");
        d.rate_changed(t2);
        d.reported_loss(0.5);
        let t3 = t2 + SETTLE;
        assert_eq!(d.budget(700_000, None, t3), Some(350_000), "congested again");
        assert_eq!(d.budget(200_000, None, t3 + MIN_BACKOFF), Some(350_000), "and the backoff doubled");
        assert_eq!(d.budget(200_000, None, t3 + MIN_BACKOFF * 2), None);
        // This time the trial carries: free again, and the backoff starts over.
        d.rate_changed(t3 + MIN_BACKOFF * 2);
        assert_eq!(d.budget(700_000, None, t3 + MIN_BACKOFF * 2 + SETTLE * 2), None);
        assert_eq!(d.backoff, MIN_BACKOFF);
    }

    #[test]
    fn under_loss_the_limit_is_what_got_through_not_a_collapsed_estimate() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        // 830 kbit/s into a 450 kbit/s path: 61 % lost, and the estimator, seeing the
        // queue overflow, has dropped to 200 kbit/s. The path carried 320.
        d.reported_loss(0.61);
        let limit = d.budget(830_000, Some(200_000), t0).unwrap();
        assert!((323_000..=324_000).contains(&limit), "{limit}");
        // Without loss, a falling estimate is the measure.
        let mut d = Downlink::default();
        d.budget(700_000, Some(1_000_000), t0);
        d.budget(700_000, Some(200_000), t0 + Duration::from_millis(100));
        assert_eq!(d.budget(700_000, Some(200_000), t0 + Duration::from_millis(100) + HOLD), Some(200_000));
    }

    #[test]
    fn a_limited_path_is_probed_until_probing_shows_room_and_is_not_tried_blindly() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        assert!(!d.probe_due(t0 + PROBE_INTERVAL * 10), "a free path is not probed");
        d.reported_loss(0.5);
        assert_eq!(d.budget(700_000, Some(300_000), t0), Some(350_000));
        d.rate_changed(t0);
        assert!(!d.probe_due(t0 + PROBE_INTERVAL / 2), "the old rate's queues drain first");
        let probes: Vec<u32> = (1..=80).filter(|i| d.probe_due(t0 + PROBE_INTERVAL / 8 * *i)).collect();
        assert_eq!(probes, [8, 16, 24, 32, 40, 48, 56, 64, 72, 80]);
        // The estimate can be had: no blind trial of the wanted layers after the backoff.
        let t1 = t0 + MIN_BACKOFF * 3;
        assert_eq!(d.budget(200_000, Some(320_000), t1), Some(350_000));
        // A probe found room: the estimate decides. Once the higher rate it allows has
        // been carried without congestion, the path is free and probing stops.
        assert_eq!(d.budget(200_000, Some(900_000), t1), Some(900_000));
        d.rate_changed(t1);
        assert_eq!(d.budget(700_000, Some(900_000), t1 + SETTLE), Some(900_000));
        assert_eq!(d.budget(700_000, Some(900_000), t1 + SETTLE * 2), None);
        assert!(!d.is_limited() && !d.probe_due(t1 + SETTLE * 4));
    }

    #[test]
    fn a_rate_probing_made_room_for_that_congests_the_path_again_is_probed_less_often() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.reported_loss(0.5);
        assert_eq!(d.budget(700_000, Some(300_000), t0), Some(350_000));
        d.rate_changed(t0);
        let mut t = t0;
        for every in [PROBE_INTERVAL * 2, PROBE_INTERVAL * 4] {
            // A probe shows room (a policer let its burst through), the rate goes up,
            // and the path loses 40 % of it: back to what got through.
            t += SETTLE * 2;
            assert_eq!(d.budget(200_000, Some(900_000), t), Some(900_000));
            d.rate_changed(t);
            t += SETTLE;
            d.reported_loss(0.4);
            assert_eq!(d.budget(700_000, Some(500_000), t), Some(500_000), "limited to what got through (420)");
            assert!(d.is_limited());
            d.rate_changed(t);
            assert!(!d.probe_due(t + every - Duration::from_millis(1)));
            assert!(d.probe_due(t + every), "probed every {every:?}");
        }
    }

    #[test]
    fn a_limit_that_changes_no_layer_is_not_taken_for_room_found() {
        // A track without simulcast keeps its rate under a limit below it: that is no
        // sign that the path carries it.
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.reported_loss(0.5);
        assert_eq!(d.budget(700_000, Some(300_000), t0), Some(350_000));
        assert_eq!(d.budget(700_000, Some(300_000), t0 + SETTLE * 3), Some(350_000));
    }

    #[test]
    fn asking_for_more_tries_a_limited_path_at_once() {
        let mut d = Downlink::default();
        let t0 = Instant::now();
        d.reported_loss(0.5);
        assert_eq!(d.budget(200_000, None, t0), Some(100_000));
        d.more_wanted(t0 + HOLD);
        assert_eq!(d.budget(100_000, None, t0 + HOLD), None, "tried now, not after the backoff");
        d.rate_changed(t0 + HOLD);
        d.reported_loss(0.5);
        let t1 = t0 + HOLD + SETTLE;
        assert_eq!(d.budget(700_000, None, t1), Some(350_000), "the trial failed");
        assert_eq!(d.backoff, MIN_BACKOFF * 2);
        // Without a limit, asking for more changes nothing.
        let mut free = Downlink::default();
        free.more_wanted(t0);
        assert!(free.trial_since.is_none());
    }
}
