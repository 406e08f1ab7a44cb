//! One participant's server-side state: who it is, what it may do, and its event log.
//!
//! Every event for a participant gets the next `seq` and goes into a bounded backlog
//! before it is handed to the attached connection (if any). A connection that drops
//! leaves the participant detached; a resume attaches a new connection and replays the
//! backlog past the client's last seen `seq`. The backlog bound is what limits how much
//! a detached participant can miss and still resume.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use confer_proto::signal::{Event, ParticipantInfo, Role, ServerMessage};
use confer_proto::token::Grants;
use tokio::sync::mpsc;

use crate::limit::TokenBucket;

/// Reactions a participant may send: a burst of this many...
const REACTION_BURST: u32 = 4;
/// ...then this many a second.
const REACTIONS_PER_SECOND: u32 = 1;

/// Most bytes of events kept for a resume, whatever their number: a participant that
/// missed more joins afresh.
const BACKLOG_BYTES: usize = 1 << 20;

/// What the hub hands to a connection's writer.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A serialized [`ServerMessage`].
    Frame(Arc<str>),
    /// Close the socket after the frames before this one.
    Close,
}

/// An [`Outbound`] with the time it was queued: the writer drops a client whose oldest
/// frame waited too long, whatever that client still sends.
#[derive(Debug)]
pub struct Queued {
    pub at: Instant,
    pub out: Outbound,
}

/// The hub's end of one WebSocket connection.
#[derive(Debug, Clone)]
pub struct Link {
    pub conn_id: u64,
    pub tx: mpsc::Sender<Queued>,
    /// Tells the connection's writer to close the socket now, even when its queue is
    /// full (a queued `Close` could not get in then).
    pub kill: Arc<tokio::sync::Notify>,
    /// Tells the writer a `Close` was queued: it has a grace period to get there.
    pub closing: Arc<tokio::sync::Notify>,
}

impl Link {
    /// Queues a frame; `false` when the connection is gone or too far behind, in which
    /// case the caller detaches it (its client resumes and gets the backlog).
    pub fn send(&self, out: Outbound) -> bool {
        if matches!(out, Outbound::Close) {
            // From now on the connection has a short while to deliver what is queued: a
            // client far behind would keep it open long after it was removed.
            self.closing.notify_one();
        }
        match self.tx.try_send(Queued { at: Instant::now(), out }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(conn = self.conn_id, "client too slow, outbound queue full: dropping connection");
                false
            }
        }
    }
}

pub fn frame(msg: &ServerMessage) -> Arc<str> {
    // Serializing the protocol's own types to JSON cannot fail.
    serde_json::to_string(msg).expect("server message serializes").into()
}

pub struct Participant {
    pub info: ParticipantInfo,
    pub grants: Grants,
    /// Seconds since the epoch.
    pub token_expires_at: u64,
    pub resume_token: String,
    next_seq: u64,
    backlog: VecDeque<(u64, Arc<str>)>,
    /// Bytes of text in `backlog`.
    backlog_bytes: usize,
    backlog_cap: usize,
    pub link: Option<Link>,
    /// When the connection dropped, while detached.
    pub detached_at: Option<Instant>,
    /// Stream keys whose publish is with the media thread, not answered yet.
    pub publishing: Vec<String>,
    /// What it receives.
    pub subscriptions: Vec<Subscription>,
    /// Whose network metrics it asked for.
    pub metrics_for: Vec<confer_proto::ParticipantId>,
    /// A manager made it a co-host in this session.
    pub promoted: bool,
    /// Reactions it may still send now.
    pub reactions: TokenBucket,
    /// The room of the meeting it is in, shared with its connection (it moves between
    /// breakout rooms).
    pub location: super::Location,
}

/// One stream a participant receives.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub publisher: confer_proto::ParticipantId,
    pub key: String,
    pub options: confer_proto::track::SubscriptionOptions,
}

impl Participant {
    pub fn new(
        info: ParticipantInfo,
        grants: Grants,
        token_expires_at: u64,
        resume_token: String,
        link: Link,
        backlog_cap: usize,
    ) -> Self {
        Self {
            info,
            grants,
            token_expires_at,
            resume_token,
            next_seq: 1,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            backlog_cap,
            link: Some(link),
            detached_at: None,
            publishing: Vec::new(),
            subscriptions: Vec::new(),
            metrics_for: Vec::new(),
            promoted: false,
            reactions: TokenBucket::new(REACTIONS_PER_SECOND, REACTION_BURST, Instant::now()),
            location: Arc::new(std::sync::Mutex::new(confer_proto::RoomId(String::new()))),
        }
    }

    /// Takes a renewed token's grants and expiry; what others see of this participant
    /// (role, whether it receives messages) follows the new grants.
    pub fn set_token(&mut self, grants: Grants, expires_at: u64, managers: &[confer_proto::Identity]) {
        self.info.can_receive_messages = grants.data;
        self.grants = grants;
        self.token_expires_at = expires_at;
        self.refresh_role(managers);
    }

    /// Whether it may moderate: a manager of the room, or promoted to co-host.
    pub fn can_moderate(&self) -> bool {
        self.info.role.moderates()
    }

    /// Sets the role others see from the grants, the room's managers and a promotion.
    pub fn refresh_role(&mut self, managers: &[confer_proto::Identity]) {
        self.info.role = Self::role_for(&self.info.identity, &self.grants, managers);
        if self.promoted && self.info.role != Role::Manager {
            self.info.role = Role::CoHost;
        }
    }

    pub fn role_for(identity: &confer_proto::Identity, grants: &Grants, managers: &[confer_proto::Identity]) -> Role {
        if grants.moderator || managers.contains(identity) {
            Role::Manager
        } else if grants.guest {
            Role::Guest
        } else {
            Role::Member
        }
    }

    /// Records an event and forwards it to the attached connection.
    pub fn push(&mut self, event: Event, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let text = frame(&ServerMessage::Event { seq, event });
        self.backlog_bytes += text.len();
        self.backlog.push_back((seq, text.clone()));
        while self.backlog.len() > self.backlog_cap || self.backlog_bytes > BACKLOG_BYTES {
            let Some((_, old)) = self.backlog.pop_front() else { break };
            self.backlog_bytes -= old.len();
        }
        self.send(Outbound::Frame(text), now);
    }

    /// Sends straight to the connection, outside the event log (responses, closes).
    pub fn send(&mut self, out: Outbound, now: Instant) {
        if let Some(link) = &self.link {
            if !link.send(out) {
                self.detach(now);
            }
        }
    }

    pub fn detach(&mut self, now: Instant) {
        if let Some(link) = self.link.take() {
            // A permit is kept if the writer is not waiting yet, so this cannot be missed.
            link.kill.notify_one();
            self.detached_at = Some(now);
        }
    }

    /// The logged events after `last_seq`, or `None` if some of them were dropped from
    /// the backlog (or `last_seq` is from the future) and a resume cannot be exact.
    pub fn replay_after(&self, last_seq: u64) -> Option<Vec<Arc<str>>> {
        if last_seq >= self.next_seq {
            return None;
        }
        let first_needed = last_seq + 1;
        if first_needed < self.next_seq {
            let oldest = self.backlog.front().map(|(s, _)| *s)?;
            if oldest > first_needed {
                return None;
            }
        }
        Some(self.backlog.iter().filter(|(s, _)| *s > last_seq).map(|(_, t)| t.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confer_proto::signal::DisconnectReason;

    fn participant(cap: usize) -> (Participant, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(16);
        let info = ParticipantInfo {
            id: "p".into(),
            identity: "a".into(),
            name: String::new(),
            context: serde_json::Value::Null,
            role: Role::Member,
            can_receive_messages: true,
            joined_at: 0,
            streams: Vec::new(),
        };
        let link = Link { conn_id: 1, tx, kill: Default::default(), closing: Default::default() };
        (Participant::new(info, Grants::default(), 0, "r".into(), link, cap), rx)
    }

    fn ev() -> Event {
        Event::Disconnected { reason: DisconnectReason::Left }
    }

    #[test]
    fn replay_is_exact_or_refused() {
        let now = Instant::now();
        let (mut p, _rx) = participant(3);
        assert_eq!(p.replay_after(0).unwrap().len(), 0);
        for _ in 0..5 {
            p.push(ev(), now);
        }
        // Backlog holds seq 3..=5.
        assert!(p.replay_after(1).is_none());
        assert_eq!(p.replay_after(2).unwrap().len(), 3);
        assert_eq!(p.replay_after(5).unwrap().len(), 0);
        assert!(p.replay_after(6).is_none());
    }

    #[test]
    fn a_closed_connection_detaches() {
        let now = Instant::now();
        let (mut p, rx) = participant(3);
        drop(rx);
        p.push(ev(), now);
        assert!(p.link.is_none());
        assert_eq!(p.detached_at, Some(now));
        assert_eq!(p.replay_after(0).unwrap().len(), 1);
    }

    #[test]
    fn the_backlog_is_bounded_by_bytes_too() {
        let now = Instant::now();
        let (mut p, _rx) = participant(1024);
        p.detach(now);
        let big = Event::MessageReceived {
            message_id: "m".into(),
            from: "q".into(),
            from_identity: "b".into(),
            from_name: "B".into(),
            text: "x".repeat(60 * 1024),
            to: None,
            sent_at: 0,
        };
        for _ in 0..100 {
            p.push(big.clone(), now);
        }
        assert!(p.backlog_bytes <= BACKLOG_BYTES, "{} bytes kept", p.backlog_bytes);
        assert!(p.backlog.len() < 20, "{} events kept", p.backlog.len());
        assert!(p.replay_after(0).is_none(), "what was dropped cannot be replayed");
        assert!(p.replay_after(99).is_some());
    }
}
