//! A token bucket for per-connection request rates. Sans-IO: the caller passes time in.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        Self { rate_per_sec: rate_per_sec as f64, burst: burst as f64, tokens: burst as f64, last: now }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts events in a sliding window of fixed buckets, to spot sustained abuse.
#[derive(Debug)]
pub struct WindowCounter {
    window: Duration,
    start: Instant,
    count: u32,
}

impl WindowCounter {
    pub fn new(window: Duration, now: Instant) -> Self {
        Self { window, start: now, count: 0 }
    }

    /// Records one event and returns how many fell in the current window.
    pub fn record(&mut self, now: Instant) -> u32 {
        if now.saturating_duration_since(self.start) >= self.window {
            self.start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        assert_eq!((0..8).filter(|_| b.try_take(t0)).count(), 5);
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        assert_eq!((0..10).filter(|_| b.try_take(t0 + Duration::from_secs(10))).count(), 5);
    }

    #[test]
    fn window_resets() {
        let t0 = Instant::now();
        let mut w = WindowCounter::new(Duration::from_secs(1), t0);
        assert_eq!(w.record(t0), 1);
        assert_eq!(w.record(t0), 2);
        assert_eq!(w.record(t0 + Duration::from_secs(1)), 1);
    }
}
