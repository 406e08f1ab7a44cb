//! The media task of a room: it answers the server's offers and keeps media flowing
//! through network trouble.
//!
//! It holds what the app asked for (published streams in [`Publisher`], wanted
//! subscriptions in [`Wanted`]) and restores it when the connections that carried it
//! break:
//! - a connection that is down (ICE disconnected or failed) for [`DOWN_BEFORE_RESTART`]
//!   while signaling works gets an ICE restart (the client offers a new publisher
//!   offer; it asks the server to re-offer the subscriber connection);
//! - after a signaling resume, down connections are restarted at once;
//! - a connection the server gave up on (`stream_failed`, `subscription_ended` with
//!   `media_failed`) is replaced: streams are published again on a new one, and
//!   subscriptions made again;
//! - after a fresh join (the server forgot the participant), everything is published
//!   and subscribed again.
//!
//! Run-loop contract: one task per room, ending when the engine drops its end of the
//! signal channel. Its requests go through the engine like the app's, so a restart
//! attempted while signaling is down waits for the reconnection (or times out and is
//! tried again later).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_proto::signal::Event;
use confer_proto::track::{SubscriptionEndReason, SubscriptionOptions};
use confer_proto::ParticipantId;
use tokio::sync::{mpsc, watch};

use super::levels::AudioLevels;
use super::publisher::Publisher;
use super::stats::MediaStats;
use super::subscriber::{Subscriber, SubscriberView};
use super::MediaConfig;
use crate::event::{ConnectionState, RoomEvent};
use crate::room::Requester;
use crate::state::RoomSnapshot;
use crate::ClientError;

/// A connection down this long is restarted.
pub const DOWN_BEFORE_RESTART: Duration = Duration::from_secs(2);
/// At most one restart attempt per connection in this time.
const RESTART_INTERVAL: Duration = Duration::from_secs(5);
/// How often connection health is checked.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// A connection that has not connected this long after it was made has no path: a relay
/// allocation takes seconds, and ICE checks every pair several times by then. It is
/// shorter than the server's 20 s (counted from the offer, which now goes out without
/// waiting for candidates), so that the app hears why before the server gives the
/// connection up and the SDK starts over.
const PATH_TIMEOUT: Duration = Duration::from_secs(15);

/// What the engine tells the media task.
#[derive(Debug)]
pub(crate) enum MediaSignal {
    /// A media event from the server, and when it arrived.
    Event(Event, Instant),
    /// Signaling is back: as the same participant (`resumed`) or as a new one.
    Reconnected { resumed: bool },
    /// The participant moved to another room of the meeting: the subscriptions of the
    /// old room are gone (the app subscribes anew, on the new room's announcements),
    /// and what it publishes is published there again.
    Moved,
}

/// A subscription the app made, to make again when needed.
#[derive(Debug, Clone)]
pub(crate) struct WantedSubscription {
    pub publisher: ParticipantId,
    pub key: String,
    pub options: SubscriptionOptions,
}

pub(crate) type Wanted = Arc<Mutex<Vec<WantedSubscription>>>;

/// What the room handle shares with the media task.
pub(crate) struct MediaShared {
    pub publisher: tokio::sync::Mutex<Publisher>,
    pub wanted: Wanted,
    pub levels: AudioLevels,
    pub subscriber: SubscriberView,
    /// Audio only: no video is received (whatever a subscription asks) or published.
    pub audio_only: std::sync::atomic::AtomicBool,
}

impl MediaShared {
    pub(crate) fn new(config: MediaConfig) -> Arc<Self> {
        let levels = AudioLevels::default();
        Arc::new(Self {
            publisher: tokio::sync::Mutex::new(Publisher::new(config, levels.clone())),
            wanted: Arc::default(),
            levels,
            subscriber: SubscriberView::default(),
            audio_only: Default::default(),
        })
    }

    pub(crate) fn is_audio_only(&self) -> bool {
        self.audio_only.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What to ask the server for, of what the app wants: no video when audio only.
    pub(crate) fn receivable(&self, options: SubscriptionOptions) -> SubscriptionOptions {
        SubscriptionOptions { video: options.video && !self.is_audio_only(), ..options }
    }

    /// Statistics of both connections.
    pub(crate) async fn stats(&self) -> MediaStats {
        let (mut streams, publisher_rtt_ms) = self.publisher.lock().await.stats().await;
        let publisher_path = self.publisher.lock().await.path().await;
        let (received, subscriber_rtt_ms) = self.subscriber.stats().await;
        let subscriber_path = self.subscriber.path().await;
        streams.extend(received);
        MediaStats { streams, publisher_path, subscriber_path, publisher_rtt_ms, subscriber_rtt_ms }
    }

    pub(crate) fn want(&self, publisher: &ParticipantId, key: &str, options: Option<SubscriptionOptions>) {
        let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        wanted.retain(|w| !(&w.publisher == publisher && w.key == key));
        if let Some(options) = options {
            wanted.push(WantedSubscription { publisher: publisher.clone(), key: key.to_owned(), options });
        }
    }
}

/// Restart bookkeeping of one connection.
#[derive(Default)]
struct Health {
    down_since: Option<Instant>,
    last_restart: Option<Instant>,
}

impl Health {
    /// Whether a connection in this state should be restarted now.
    fn due(&mut self, down: bool, now: Instant) -> bool {
        if !down {
            self.down_since = None;
            return false;
        }
        let since = *self.down_since.get_or_insert(now);
        let quiet = self.last_restart.is_none_or(|t| now.saturating_duration_since(t) >= RESTART_INTERVAL);
        if now.saturating_duration_since(since) >= DOWN_BEFORE_RESTART && quiet {
            self.last_restart = Some(now);
            return true;
        }
        false
    }
}

pub(crate) struct MediaTask {
    pub shared: Arc<MediaShared>,
    pub requester: Requester,
    pub snapshot: watch::Receiver<RoomSnapshot>,
    pub subscriber: Subscriber,
    events: mpsc::UnboundedSender<RoomEvent>,
}

impl MediaTask {
    pub(crate) fn new(
        shared: Arc<MediaShared>,
        config: MediaConfig,
        requester: Requester,
        snapshot: watch::Receiver<RoomSnapshot>,
        events: mpsc::UnboundedSender<RoomEvent>,
    ) -> Self {
        let subscriber = Subscriber::new(config, events.clone(), shared.levels.clone(), shared.subscriber.clone());
        Self { shared, requester, snapshot, subscriber, events }
    }

    pub(crate) async fn run(mut self, mut signals: mpsc::UnboundedReceiver<MediaSignal>) {
        let mut health = tokio::time::interval(HEALTH_INTERVAL);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut publisher_health, mut subscriber_health) = (Health::default(), Health::default());
        // Each connection's missing path is reported once.
        let (mut publisher_told, mut subscriber_told) = (false, false);
        loop {
            tokio::select! {
                signal = signals.recv() => match signal {
                    Some(signal) => self.on_signal(signal, &mut publisher_health, &mut subscriber_health).await,
                    None => break,
                },
                _ = health.tick() => {
                    if self.snapshot.borrow().connection_state != ConnectionState::Connected {
                        continue;
                    }
                    let now = Instant::now();
                    let publisher_down = self.shared.publisher.lock().await.is_down();
                    if publisher_health.due(publisher_down, now) {
                        self.restart_publisher().await;
                    }
                    if subscriber_health.due(self.subscriber.is_down(), now) {
                        self.restart_subscriber().await;
                    }
                    let publisher_trouble = self.shared.publisher.lock().await.no_path(PATH_TIMEOUT);
                    self.tell_no_path("publisher", publisher_trouble, &mut publisher_told);
                    let subscriber_trouble = self.subscriber.no_path(PATH_TIMEOUT);
                    self.tell_no_path("subscriber", subscriber_trouble, &mut subscriber_told);
                }
            }
        }
        self.subscriber.close().await;
        self.shared.publisher.lock().await.close().await;
    }

    async fn on_signal(&mut self, signal: MediaSignal, publisher: &mut Health, subscriber: &mut Health) {
        match signal {
            MediaSignal::Event(event, at) => self.on_event(event, at).await,
            MediaSignal::Reconnected { resumed: true } => {
                // Whatever broke the signaling likely broke the media paths too: restart
                // the ones that noticed, without waiting.
                let now = Instant::now();
                if self.shared.publisher.lock().await.is_down() {
                    publisher.last_restart = Some(now);
                    self.restart_publisher().await;
                }
                if self.subscriber.is_down() {
                    subscriber.last_restart = Some(now);
                    self.restart_subscriber().await;
                }
            }
            MediaSignal::Moved => {
                tracing::info!("moved: publishing again in the new room");
                self.subscriber.close().await;
                let mut publisher = self.shared.publisher.lock().await;
                if let Err(e) = publisher.republish(&self.requester).await {
                    tracing::warn!(error = %e, "republishing after a move failed");
                }
            }
            MediaSignal::Reconnected { resumed: false } => {
                tracing::info!("joined afresh: publishing and subscribing again");
                self.subscriber.close().await;
                let mut publisher = self.shared.publisher.lock().await;
                if let Err(e) = publisher.republish(&self.requester).await {
                    tracing::warn!(error = %e, "republishing after a fresh join failed");
                }
                drop(publisher);
                self.resubscribe(None).await;
            }
        }
    }

    async fn on_event(&mut self, event: Event, at: Instant) {
        match event {
            Event::SubscriptionStarted { participant_id, key, tracks } => {
                self.subscriber.expect(&participant_id, &key, tracks);
            }
            Event::SubscriberOffer { sdp } => match self.subscriber.answer(sdp, &self.requester).await {
                Ok(()) => {}
                // The room is being left: nothing to answer for.
                Err(e @ ClientError::Disconnected { .. }) => {
                    tracing::debug!(error = %e, "subscriber offer not answered")
                }
                Err(e) => tracing::warn!(error = %e, "cannot answer the subscriber offer"),
            },
            Event::SubscriptionEnded { participant_id, key, reason } => {
                self.subscriber.end(&participant_id, &key);
                match reason {
                    SubscriptionEndReason::MediaFailed => {
                        // The server dropped the subscriber connection: make a new one.
                        if self.subscriber.exists() {
                            self.subscriber.close().await;
                        }
                        self.resubscribe(Some((&participant_id, &key))).await;
                    }
                    SubscriptionEndReason::Unpublished => self.shared.want(&participant_id, &key, None),
                    SubscriptionEndReason::Unsubscribed => {}
                }
            }
            Event::StreamUnpublished { participant_id, key } => self.shared.want(&participant_id, &key, None),
            // A moderator muted one of our tracks: what feeds it stops sending, as after
            // `Room::set_track_muted` (the server stopped forwarding it already).
            Event::TrackDisabled { participant_id, track_id, by: Some(by), .. }
                if participant_id == self.snapshot.borrow().local.id =>
            {
                let publisher = self.shared.publisher.lock().await;
                let mut tracks = publisher.streams().iter().flat_map(|s| s.tracks());
                let track = tracks.find(|t| t.id().as_ref() == Some(&track_id));
                if let Some(track) = track {
                    tracing::info!(track = %track_id, %by, "muted by a moderator");
                    track.set_muted(true);
                }
            }
            Event::StreamFailed { key, error } => {
                let mut publisher = self.shared.publisher.lock().await;
                // One failed connection fails every stream on it; the first event
                // republishes them all, and the rest are about streams republished since.
                let stale = publisher.stream(&key).is_none_or(|s| s.published_at() > at);
                if !stale {
                    tracing::info!(%key, code = ?error.code, "publisher connection failed; publishing again");
                    if let Err(e) = publisher.republish(&self.requester).await {
                        tracing::warn!(error = %e, "republishing failed");
                    }
                }
            }
            _ => {}
        }
    }

    /// Tells the app, once per connection, that media cannot reach the server.
    fn tell_no_path(&self, connection: &'static str, trouble: Option<ClientError>, told: &mut bool) {
        match trouble {
            Some(error) if !*told => {
                *told = true;
                tracing::error!(connection, %error, "no media path");
                let _ = self.events.send(RoomEvent::MediaPathFailed { connection, error });
            }
            Some(_) => {}
            None => *told = false,
        }
    }

    async fn restart_publisher(&mut self) {
        let mut publisher = self.shared.publisher.lock().await;
        match publisher.restart_ice(&self.requester).await {
            Ok(()) => {}
            Err(ClientError::Server(e)) => {
                tracing::info!(code = ?e.code, "the server has no publisher connection; publishing again");
                if let Err(e) = publisher.republish(&self.requester).await {
                    tracing::warn!(error = %e, "republishing failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "ICE restart of the publisher connection failed"),
        }
    }

    async fn restart_subscriber(&mut self) {
        tracing::info!("asking the server to restart ICE on the subscriber connection");
        if let Err(e) = self.requester.request(confer_proto::signal::Request::RestartSubscriber).await {
            tracing::warn!(error = %e, "subscriber ICE restart failed");
        }
    }

    /// Subscribes again to the wanted streams that still exist (`only` one of them).
    async fn resubscribe(&mut self, only: Option<(&ParticipantId, &str)>) {
        let wanted = self.shared.wanted.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for w in wanted {
            if only.is_some_and(|(p, k)| *p != w.publisher || k != w.key) {
                continue;
            }
            let exists = self
                .snapshot
                .borrow()
                .participant(&w.publisher)
                .is_some_and(|p| p.streams.iter().any(|s| s.key == w.key));
            if !exists {
                self.shared.want(&w.publisher, &w.key, None);
                continue;
            }
            let request = confer_proto::signal::Request::Subscribe {
                participant_id: w.publisher.clone(),
                key: w.key.clone(),
                options: self.shared.receivable(w.options),
            };
            if let Err(e) = self.requester.request(request).await {
                tracing::warn!(publisher = %w.publisher, key = %w.key, error = %e, "cannot subscribe again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_after_being_down_a_while_and_not_too_often() {
        let mut h = Health::default();
        let t0 = Instant::now();
        assert!(!h.due(true, t0));
        assert!(!h.due(true, t0 + Duration::from_secs(1)));
        assert!(h.due(true, t0 + DOWN_BEFORE_RESTART));
        assert!(!h.due(true, t0 + DOWN_BEFORE_RESTART + Duration::from_secs(1)), "not again so soon");
        assert!(h.due(true, t0 + DOWN_BEFORE_RESTART + RESTART_INTERVAL));
        assert!(!h.due(false, t0 + Duration::from_secs(30)));
    }
}
