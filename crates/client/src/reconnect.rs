//! How the SDK gets back into a room after the signaling connection drops.
//!
//! The policy is data; the engine runs it. Attempt `n` (from 1) waits
//! [`Backoff::delay`]`(n)`, then has `timeout_per_attempt` to open a socket and be
//! answered: first a resume (same participant, missed events replayed), and if the
//! server refuses that with `resume_failed`, a fresh join on the same socket. A refusal
//! that waiting cannot cure (bad or expired token, not a member, ...) ends the attempts
//! early.

use std::time::Duration;

/// Whether and how to reconnect after a dropped connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// Reconnect at all. When false a dropped connection is reported as
    /// `ConnectionLost` straight away.
    pub allowed: bool,
    /// Attempts before giving up with `ConnectionLost`.
    pub attempts: u32,
    /// Time for one attempt: WebSocket handshake plus the join or resume answer.
    pub timeout_per_attempt: Duration,
    /// The wait before each attempt.
    pub backoff: Backoff,
}

impl ReconnectPolicy {
    /// Reconnect `attempts` times, each within `timeout_per_attempt`, with the default
    /// backoff.
    pub fn new(attempts: u32, timeout_per_attempt: Duration) -> Self {
        Self { allowed: true, attempts, timeout_per_attempt, backoff: Backoff::default() }
    }

    /// Never reconnect.
    pub fn disabled() -> Self {
        Self { allowed: false, ..Self::default() }
    }

    /// Replaces the backoff.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

impl Default for ReconnectPolicy {
    /// Ten attempts of up to 10 s over roughly half a minute of backoff: long enough for
    /// a Wi-Fi handover or a server restart, inside the server's default resume grace.
    fn default() -> Self {
        Self::new(10, Duration::from_secs(10))
    }
}

/// Exponential backoff without jitter: the first attempt goes at once (most drops are
/// momentary), the second after `initial`, each later one after twice the previous
/// wait, capped at `max`. No jitter because a client reconnects alone; a server restart
/// that drops everyone is spread by connection timing already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(300), max: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        match attempt {
            0 | 1 => Duration::ZERO,
            n => {
                // Capping the exponent keeps the multiplication from overflowing; the
                // `max` cap is reached long before 2^16 anyway.
                let factor = 1u32 << (n - 2).min(16);
                self.initial.saturating_mul(factor).min(self.max)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(1000) };
        let waits: Vec<u128> = (1..=7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, [0, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn policies() {
        assert!(!ReconnectPolicy::disabled().allowed);
        let p = ReconnectPolicy::new(3, Duration::from_secs(1));
        assert!(p.allowed);
        assert_eq!(p.attempts, 3);
    }
}
