//! A worker's timer queue: when each of its transports wants time next.
//!
//! Most of what a transport's timer does is housekeeping that runs every few tens of
//! milliseconds: NACK and TWCC feedback, receiver and sender reports, statistics, the
//! pacer's budget, SCTP. A few milliseconds late is as good as on time for these, so
//! such a deadline waits up to [`SLACK`] for the thread to wake for something else (a
//! datagram, an urgent timer) and is served then. In a call a packet arrives every few
//! milliseconds, so they seldom wake the thread themselves (each wake-up is a trip
//! through the kernel and a context switch). Pacing, bandwidth probes and handshakes
//! are urgent and wake it on time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use str0m::{PacerReason, Reason};

use super::transport::{Transport, TransportId};

/// How late a deadline that is not urgent may be served.
pub const SLACK: Duration = Duration::from_millis(10);

/// Whether a timer set for `reason` must wake the thread on time.
fn is_urgent(reason: Reason) -> bool {
    match reason {
        Reason::Nack
        | Reason::Twcc
        | Reason::Feedback
        | Reason::Stats
        | Reason::Sctp
        | Reason::Channel
        | Reason::PauseCheck
        | Reason::SendStream
        | Reason::BweDelayControl
        | Reason::Pacer(PacerReason::Handle)
        | Reason::NotHappening => false,
        // Pacing and probing (their timing is what they measure), DTLS and ICE
        // (a handshake waits on them), and whatever str0m adds.
        _ => true,
    }
}

/// One transport's timer.
#[derive(Debug, Clone, Copy)]
pub struct Timer {
    /// When the transport wants `Input::Timeout` next.
    pub deadline: Instant,
    /// Whether that deadline must wake the thread on time.
    urgent: bool,
    /// Its earliest entry in the queue, and whether that is in the urgent heap.
    scheduled: Option<(Instant, bool)>,
}

impl Timer {
    pub fn new(now: Instant) -> Self {
        Self { deadline: now, urgent: true, scheduled: None }
    }

    /// Sets the deadline `rtc` asked for, and why.
    pub fn set(&mut self, deadline: Instant, reason: Reason) {
        self.deadline = deadline;
        self.urgent = is_urgent(reason);
    }
}

type Heap = BinaryHeap<Reverse<(Instant, TransportId)>>;

/// Where the queue finds a transport's timer.
pub trait Timed {
    fn timer(&mut self, id: TransportId) -> Option<&mut Timer>;
}

impl Timed for HashMap<TransportId, Transport> {
    fn timer(&mut self, id: TransportId) -> Option<&mut Timer> {
        self.get_mut(&id).map(|t| &mut t.timer)
    }
}

/// Two heaps of deadlines: the urgent, woken for on time, and the rest, woken for
/// [`SLACK`] late unless served earlier. Entries are pushed only when a deadline moves
/// earlier (or becomes urgent); one that moved later is moved when it comes up, and
/// entries a transport no longer has are skipped.
#[derive(Debug, Default)]
pub struct Timers {
    urgent: Heap,
    lazy: Heap,
}

impl Timers {
    /// Queues the transport's deadline unless an entry early enough is queued already.
    pub fn update(&mut self, id: TransportId, timer: &mut Timer) {
        let queued = timer.scheduled.is_some_and(|(at, urgent)| at <= timer.deadline && (urgent || !timer.urgent));
        if !queued {
            self.push(id, timer);
        }
    }

    fn push(&mut self, id: TransportId, timer: &mut Timer) {
        timer.scheduled = Some((timer.deadline, timer.urgent));
        let heap = if timer.urgent { &mut self.urgent } else { &mut self.lazy };
        heap.push(Reverse((timer.deadline, id)));
    }

    /// A transport whose deadline has come by `now`, taken off the queue.
    pub fn pop_due(&mut self, now: Instant, timers: &mut impl Timed) -> Option<TransportId> {
        loop {
            let urgent = self.urgent.peek().map(|Reverse(e)| *e);
            let lazy = self.lazy.peek().map(|Reverse(e)| *e);
            let (in_urgent, (at, id)) = match (urgent, lazy) {
                (Some(u), Some(l)) if l.0 < u.0 => (false, l),
                (Some(u), _) => (true, u),
                (None, Some(l)) => (false, l),
                (None, None) => return None,
            };
            if at > now {
                return None;
            }
            let heap = if in_urgent { &mut self.urgent } else { &mut self.lazy };
            heap.pop();
            let Some(timer) = timers.timer(id) else { continue };
            if timer.scheduled != Some((at, in_urgent)) {
                continue;
            }
            if timer.deadline > now {
                // Moved later since: wait for it.
                self.push(id, timer);
                continue;
            }
            timer.scheduled = None;
            return Some(id);
        }
    }

    /// When the thread must wake for its transports, if ever.
    pub fn next_wake(&mut self, timers: &mut impl Timed) -> Option<Instant> {
        // Entries whose deadline moved later are moved first, so that the thread is not
        // woken for nothing; stale ones go.
        while let Some(id) = self.stale_head(timers) {
            if let Some(timer) = timers.timer(id) {
                self.push(id, timer);
            }
        }
        let urgent = self.urgent.peek().map(|Reverse((at, _))| *at);
        let lazy = self.lazy.peek().map(|Reverse((at, _))| *at + SLACK);
        urgent.into_iter().chain(lazy).min()
    }

    /// Drops stale entries off the heads of the heaps, and takes off a current one
    /// whose transport's deadline has moved later than it.
    fn stale_head(&mut self, timers: &mut impl Timed) -> Option<TransportId> {
        for urgent in [true, false] {
            let heap = if urgent { &mut self.urgent } else { &mut self.lazy };
            while let Some(Reverse((at, id))) = heap.peek().copied() {
                match timers.timer(id) {
                    Some(timer) if timer.scheduled == Some((at, urgent)) => {
                        if timer.deadline > at {
                            heap.pop();
                            return Some(id);
                        }
                        break;
                    }
                    _ => {
                        heap.pop();
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Timed for HashMap<TransportId, Timer> {
        fn timer(&mut self, id: TransportId) -> Option<&mut Timer> {
            self.get_mut(&id)
        }
    }

    const NACK: Reason = Reason::Nack;
    const PROBE: Reason = Reason::Pacer(PacerReason::Probe1);

    fn set(queue: &mut Timers, timers: &mut HashMap<TransportId, Timer>, id: u64, at: Instant, reason: Reason) {
        let timer = timers.get_mut(&TransportId(id)).unwrap();
        timer.set(at, reason);
        queue.update(TransportId(id), timer);
    }

    fn due(queue: &mut Timers, timers: &mut HashMap<TransportId, Timer>, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| queue.pop_due(now, timers)).map(|id| id.0).collect()
    }

    #[test]
    fn housekeeping_waits_for_a_wake_up_and_pacing_does_not() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers: HashMap<TransportId, Timer> = (1..=2).map(|i| (TransportId(i), Timer::new(t0))).collect();
        let mut queue = Timers::default();
        set(&mut queue, &mut timers, 1, ms(20), NACK);
        assert_eq!(queue.next_wake(&mut timers), Some(ms(20) + SLACK), "a report may be late");
        set(&mut queue, &mut timers, 2, ms(25), PROBE);
        assert_eq!(queue.next_wake(&mut timers), Some(ms(25)), "a probe is on time");
        // A wake-up for a datagram at 22 ms serves the report then.
        assert_eq!(due(&mut queue, &mut timers, ms(22)), vec![1]);
        assert_eq!(due(&mut queue, &mut timers, ms(25)), vec![2]);
        assert_eq!(queue.next_wake(&mut timers), None);
    }

    #[test]
    fn a_deadline_that_moves_is_followed() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers: HashMap<TransportId, Timer> = [(TransportId(1), Timer::new(t0))].into();
        let mut queue = Timers::default();
        set(&mut queue, &mut timers, 1, ms(20), NACK);
        // Later: the thread is not woken at the old time.
        set(&mut queue, &mut timers, 1, ms(40), NACK);
        assert_eq!(queue.next_wake(&mut timers), Some(ms(40) + SLACK));
        assert!(due(&mut queue, &mut timers, ms(30)).is_empty());
        // Becoming urgent, a little later still: woken on time.
        set(&mut queue, &mut timers, 1, ms(45), PROBE);
        assert_eq!(queue.next_wake(&mut timers), Some(ms(45)));
        // Earlier and lazy again: the new time, with its slack.
        set(&mut queue, &mut timers, 1, ms(35), NACK);
        assert_eq!(queue.next_wake(&mut timers), Some(ms(35) + SLACK));
        assert_eq!(due(&mut queue, &mut timers, ms(36)), vec![1]);
        assert!(due(&mut queue, &mut timers, ms(100)).is_empty(), "served once");
        assert_eq!(queue.next_wake(&mut timers), None);
    }
}
