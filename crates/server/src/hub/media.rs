//! The signaling side of media: publications, subscriptions, mute and censor.
//!
//! The hub decides who may publish and receive what and tells everyone; the media
//! thread ([`crate::sfu`]) carries it out. Every rule is checked here under the hub's
//! lock, then a [`Command`] goes to the media thread, which never refuses one for a
//! reason the hub could have known. What only the media thread can know (an offer it
//! cannot parse, a connection that died) comes back as an error on the publish reply or
//! as an [`SfuEvent`].

use confer_proto::signal::{Event, Reply, TrackUpdate};
use confer_proto::track::{
    PublishTrack, StreamInfo, SubscriptionEndReason, SubscriptionOptions, TrackId, TrackInfo, TrackKind, TrackSource,
};
use confer_proto::{ErrorBody, ErrorCode, ParticipantId, RoomId};
use tokio::sync::oneshot;

use super::participant::Subscription;
use super::{Hub, Now, Session};
use crate::auth::random_secret;
use crate::error::{ApiError, ApiResult};
use crate::sfu::{Command, IncomingTrack, OutgoingTrack, PublishAnswer, SfuEvent, Subscribe, Wants};

/// Longest stream key accepted.
const MAX_KEY_LEN: usize = 64;
/// Most tracks in one stream.
const MAX_TRACKS: usize = 4;
/// Most streams one participant publishes at once.
pub const MAX_STREAMS: usize = 8;

/// Where a published track's media comes from: what it says, or its kind's usual
/// source when it says nothing (audio: the microphone, video: the camera). Data tracks
/// have none.
fn source_of(t: &PublishTrack) -> Option<TrackSource> {
    match t.kind {
        TrackKind::Data => None,
        TrackKind::Audio => Some(t.source.unwrap_or(TrackSource::Microphone)),
        TrackKind::Video => Some(t.source.unwrap_or(TrackSource::Camera)),
    }
}

/// A publish accepted by the hub, waiting for the media thread's answer.
pub struct PendingPublish {
    pub stream: StreamInfo,
    pub answer: oneshot::Receiver<Result<PublishAnswer, ApiError>>,
}

fn wants(options: &SubscriptionOptions) -> Wants {
    Wants { audio: options.audio, video: options.video, quality: options.quality }
}

impl Session {
    fn find_track(&self, id: &TrackId) -> Option<(usize, String, TrackInfo)> {
        self.participants
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.info.streams.iter().find_map(|s| s.track(id).map(|t| (i, s.key.clone(), t.clone()))))
    }

    /// Ends a published stream: its subscribers' subscriptions end, the others hear
    /// `stream_unpublished`, and the publisher hears `stream_failed` if `failed`.
    pub(super) fn end_stream(
        &mut self,
        publisher: usize,
        key: &str,
        failed: Option<ErrorBody>,
        now: std::time::Instant,
    ) {
        let p = &mut self.participants[publisher];
        let Some(pos) = p.info.streams.iter().position(|s| s.key == key) else { return };
        let stream = p.info.streams.remove(pos);
        let publisher_id = p.info.id.clone();
        if let Some(error) = failed {
            p.push(Event::StreamFailed { key: key.to_owned(), error }, now);
        }
        self.sfu.send(Command::Unpublish {
            participant: publisher_id.clone(),
            tracks: stream.tracks.iter().map(|t| t.id.clone()).collect(),
        });
        for other in self.participants.iter_mut().filter(|o| o.info.id != publisher_id) {
            let before = other.subscriptions.len();
            other.subscriptions.retain(|s| !(s.publisher == publisher_id && s.key == key));
            if other.subscriptions.len() != before {
                other.push(
                    Event::SubscriptionEnded {
                        participant_id: publisher_id.clone(),
                        key: key.to_owned(),
                        reason: SubscriptionEndReason::Unpublished,
                    },
                    now,
                );
            }
            other.push(Event::StreamUnpublished { participant_id: publisher_id.clone(), key: key.to_owned() }, now);
        }
        // Sent to each of the others above rather than broadcast (the publisher is not
        // told), so the webhooks hear of it here.
        self.webhook(&Event::StreamUnpublished { participant_id: publisher_id.clone(), key: key.to_owned() });
        tracing::info!(room = %self.room.id, participant = %publisher_id, key, "stream unpublished");
    }

    fn publisher_stream(&self, publisher: &ParticipantId, key: &str) -> ApiResult<&StreamInfo> {
        let idx = self.position(publisher).ok_or(ErrorCode::ParticipantNotFound)?;
        self.participants[idx]
            .info
            .streams
            .iter()
            .find(|s| s.key == key)
            .ok_or_else(|| ApiError::new(ErrorCode::StreamNotFound, format!("{publisher} publishes no stream {key:?}")))
    }
}

impl Hub {
    /// Checks a publish and hands its offer to the media thread.
    pub fn publish(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        key: String,
        tracks: Vec<PublishTrack>,
        sdp: String,
    ) -> ApiResult<PendingPublish> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let idx = session.position(id).ok_or(ErrorCode::ParticipantNotFound)?;
        let (policy, censored) = (&session.room.policy, &session.censored);
        let p = &mut session.participants[idx];
        if !p.grants.publish {
            return Err(ApiError::new(ErrorCode::PermissionDenied, "the token has no publish grant"));
        }
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(ApiError::new(
                ErrorCode::MalformedRequest,
                format!("a stream key has 1 to {MAX_KEY_LEN} bytes"),
            ));
        }
        if tracks.is_empty() || tracks.len() > MAX_TRACKS {
            return Err(ApiError::new(ErrorCode::MalformedRequest, format!("a stream has 1 to {MAX_TRACKS} tracks")));
        }
        if p.info.streams.iter().any(|s| s.key == key) || p.publishing.contains(&key) {
            return Err(ErrorCode::DuplicateStreamKey.into());
        }
        if p.info.streams.len() + p.publishing.len() >= MAX_STREAMS {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("a participant publishes at most {MAX_STREAMS} streams at once"),
            ));
        }
        let mids: Vec<&str> = tracks.iter().map(|t| t.mid.as_str()).collect();
        if (1..mids.len()).any(|i| mids[..i].contains(&mids[i])) {
            return Err(ApiError::new(ErrorCode::MalformedRequest, "two tracks name the same mid"));
        }
        for t in &tracks {
            if t.kind == TrackKind::Data {
                if !p.grants.data {
                    return Err(ApiError::new(ErrorCode::PermissionDenied, "the token has no data grant"));
                }
                if t.source.is_some() || t.simulcast || t.mid.is_empty() || t.mid.len() > MAX_KEY_LEN {
                    return Err(ApiError::new(
                        ErrorCode::MalformedRequest,
                        "a data track names its data channel's label in mid and has no source",
                    ));
                }
                continue;
            }
            // Held to the same rules whether it names its source or not.
            if let Some(source) = source_of(t) {
                if source.kind() != t.kind {
                    return Err(ApiError::new(
                        ErrorCode::MalformedRequest,
                        format!("a {source:?} track cannot be of kind {:?}", t.kind),
                    ));
                }
                if p.grants.publish_sources.as_ref().is_some_and(|allowed| !allowed.contains(&source)) {
                    return Err(ApiError::new(
                        ErrorCode::PermissionDenied,
                        format!("the token does not allow publishing {source:?}"),
                    ));
                }
                if !policy.publish_sources.contains(&source) {
                    return Err(ApiError::new(
                        ErrorCode::DisabledByPolicy,
                        format!("this room does not allow publishing {source:?}"),
                    ));
                }
            }
            if policy.audio_only && t.kind == TrackKind::Video {
                return Err(ApiError::new(ErrorCode::DisabledByPolicy, "this room carries audio only"));
            }
        }
        let identity = p.info.identity.clone();
        let infos: Vec<TrackInfo> = tracks
            .iter()
            .map(|t| {
                let source = source_of(t);
                TrackInfo {
                    id: TrackId(format!("TR_{}", random_secret(9))),
                    kind: t.kind,
                    source,
                    codec: None,
                    mid: Some(t.mid.clone()),
                    simulcast: t.simulcast && t.kind == TrackKind::Video,
                    muted: t.muted,
                    // A moderator's stop follows the source into a new publication.
                    censored: source.is_some_and(|s| censored.contains(&(identity.clone(), s))),
                }
            })
            .collect();
        let incoming = tracks
            .iter()
            .zip(&infos)
            .map(|(t, info)| IncomingTrack {
                track_id: info.id.clone(),
                mid: t.mid.clone(),
                kind: t.kind,
                simulcast: info.simulcast,
                muted: t.muted,
            })
            .collect();
        p.publishing.push(key.clone());
        let (reply, answer) = oneshot::channel();
        session.sfu.send(Command::Publish {
            room: room.clone(),
            participant: id.clone(),
            tracks: incoming,
            offer: sdp,
            reply,
        });
        Ok(PendingPublish { stream: StreamInfo { key, tracks: infos }, answer })
    }

    /// The media thread answered a publish: the stream goes live (or the publish fails).
    pub fn publish_done(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        mut stream: StreamInfo,
        answer: Result<PublishAnswer, ApiError>,
        now: Now,
    ) -> ApiResult<Reply> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let media = session.sfu.clone();
        let p = session.get_mut(id)?;
        p.publishing.retain(|k| *k != stream.key);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                // The media thread may hold some of the tracks; let it forget them.
                media.send(Command::Unpublish {
                    participant: id.clone(),
                    tracks: stream.tracks.iter().map(|t| t.id.clone()).collect(),
                });
                return Err(e);
            }
        };
        for (track_id, codec) in answer.codecs {
            if let Some(t) = stream.tracks.iter_mut().find(|t| t.id == track_id) {
                t.codec = Some(codec);
            }
        }
        for t in stream.tracks.iter().filter(|t| t.censored) {
            media.send(Command::SetTrackState { track_id: t.id.clone(), muted: t.muted, censored: true });
        }
        p.info.streams.push(stream.clone());
        tracing::info!(%room, participant = %id, key = %stream.key, tracks = stream.tracks.len(), "stream published");
        session.broadcast(
            &Event::StreamPublished { participant_id: id.clone(), stream: stream.clone() },
            Some(id),
            now.mono,
        );
        Ok(Reply::Published { stream, sdp: answer.sdp })
    }

    /// Mutes or unmutes the caller's own tracks.
    pub fn update_stream(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        key: &str,
        updates: Vec<TrackUpdate>,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let media = session.sfu.clone();
        let p = session.get_mut(id)?;
        let stream = p
            .info
            .streams
            .iter_mut()
            .find(|s| s.key == key)
            .ok_or_else(|| ApiError::new(ErrorCode::StreamNotFound, format!("you publish no stream {key:?}")))?;
        if let Some(u) = updates.iter().find(|u| stream.track(&u.track_id).is_none()) {
            return Err(ApiError::new(ErrorCode::TrackNotFound, format!("stream {key:?} has no track {}", u.track_id)));
        }
        let mut events = Vec::new();
        for u in updates {
            let Some(t) = stream.tracks.iter_mut().find(|t| t.id == u.track_id) else { continue };
            if t.muted == u.muted {
                continue;
            }
            t.muted = u.muted;
            media.send(Command::SetTrackState { track_id: t.id.clone(), muted: t.muted, censored: t.censored });
            let (participant_id, key, track_id, kind) = (id.clone(), key.to_owned(), t.id.clone(), t.kind);
            events.push(if u.muted {
                Event::TrackDisabled { participant_id, key, track_id, kind, by: None }
            } else {
                Event::TrackEnabled { participant_id, key, track_id, kind }
            });
        }
        for e in &events {
            session.broadcast(e, Some(id), now.mono);
        }
        Ok(())
    }

    pub fn unpublish(&self, room: &RoomId, id: &ParticipantId, key: &str, now: Now) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let idx = session.position(id).ok_or(ErrorCode::ParticipantNotFound)?;
        if !session.participants[idx].info.streams.iter().any(|s| s.key == key) {
            return Err(ApiError::new(ErrorCode::StreamNotFound, format!("you publish no stream {key:?}")));
        }
        session.end_stream(idx, key, None, now.mono);
        Ok(())
    }

    pub fn subscribe(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        publisher: &ParticipantId,
        key: &str,
        options: SubscriptionOptions,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        if publisher == id {
            return Err(ApiError::new(ErrorCode::MalformedRequest, "you cannot subscribe to your own stream"));
        }
        let stream = session.publisher_stream(publisher, key)?.clone();
        let me = session.get_mut(id)?;
        if !me.grants.subscribe {
            return Err(ApiError::new(ErrorCode::PermissionDenied, "the token has no subscribe grant"));
        }
        if let Some(existing) = me.subscriptions.iter_mut().find(|s| &s.publisher == publisher && s.key == key) {
            existing.options = options;
            session.sfu.send(Command::UpdateSubscription {
                subscriber: id.clone(),
                tracks: stream.tracks.iter().map(|t| t.id.clone()).collect(),
                wants: wants(&options),
            });
            return Ok(());
        }
        me.subscriptions.push(Subscription { publisher: publisher.clone(), key: key.to_owned(), options });
        // Data tracks carry what chat does: only holders of the data grant receive them.
        let data = me.grants.data;
        session.sfu.send(Command::Subscribe(Subscribe {
            room: room.clone(),
            subscriber: id.clone(),
            publisher: publisher.clone(),
            key: key.to_owned(),
            tracks: stream
                .tracks
                .iter()
                .filter(|t| data || t.kind != TrackKind::Data)
                .map(|t| OutgoingTrack { track_id: t.id.clone(), kind: t.kind })
                .collect(),
            wants: wants(&options),
        }));
        Ok(())
    }

    pub fn update_subscription(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        publisher: &ParticipantId,
        key: &str,
        options: SubscriptionOptions,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let media = session.sfu.clone();
        let stream = session.publisher_stream(publisher, key)?.clone();
        let me = session.get_mut(id)?;
        let sub = me
            .subscriptions
            .iter_mut()
            .find(|s| &s.publisher == publisher && s.key == key)
            .ok_or(ErrorCode::SubscriptionNotFound)?;
        sub.options = options;
        media.send(Command::UpdateSubscription {
            subscriber: id.clone(),
            tracks: stream.tracks.iter().map(|t| t.id.clone()).collect(),
            wants: wants(&options),
        });
        me.push(
            Event::SubscriptionReconfigured { participant_id: publisher.clone(), key: key.to_owned(), options },
            now.mono,
        );
        Ok(())
    }

    pub fn unsubscribe(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        publisher: &ParticipantId,
        key: &str,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        let media = session.sfu.clone();
        let tracks: Vec<TrackId> = session
            .publisher_stream(publisher, key)
            .map(|s| s.tracks.iter().map(|t| t.id.clone()).collect())
            .unwrap_or_default();
        let me = session.get_mut(id)?;
        let before = me.subscriptions.len();
        me.subscriptions.retain(|s| !(&s.publisher == publisher && s.key == key));
        if me.subscriptions.len() == before {
            return Err(ErrorCode::SubscriptionNotFound.into());
        }
        media.send(Command::Unsubscribe { subscriber: id.clone(), tracks });
        me.push(
            Event::SubscriptionEnded {
                participant_id: publisher.clone(),
                key: key.to_owned(),
                reason: SubscriptionEndReason::Unsubscribed,
            },
            now.mono,
        );
        Ok(())
    }

    /// Hands a renegotiation of the publisher connection to the media thread.
    pub fn publisher_offer(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        sdp: String,
    ) -> oneshot::Receiver<Result<String, ApiError>> {
        let (reply, rx) = oneshot::channel();
        self.media(room, Command::PublisherOffer { participant: id.clone(), offer: sdp, reply });
        rx
    }

    /// Asks the media thread for a subscriber offer with new ICE credentials.
    pub fn restart_subscriber(&self, room: &RoomId, id: &ParticipantId) {
        self.media(room, Command::RestartSubscriber { participant: id.clone() });
    }

    /// Hands the subscriber's answer to the media thread.
    pub fn subscriber_answer(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        sdp: String,
    ) -> oneshot::Receiver<Result<(), ApiError>> {
        let (reply, rx) = oneshot::channel();
        self.media(room, Command::Answer { participant: id.clone(), sdp, reply });
        rx
    }

    /// Sends a command to the worker of `room`'s session; dropped (and its reply with
    /// it) when the session is gone.
    fn media(&self, room: &RoomId, command: Command) {
        let media = self.lock().get(room).map(|s| s.sfu.clone());
        match media {
            Some(m) => m.send(command),
            None => tracing::debug!(%room, "no session for a media command"),
        }
    }

    /// A moderator stops (or resumes) a track's forwarding to everyone.
    pub fn censor(
        &self,
        room: &RoomId,
        by: &ParticipantId,
        track_id: &TrackId,
        censored: bool,
        now: Now,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        if !session.get_mut(by)?.can_moderate() {
            return Err(ApiError::new(ErrorCode::PermissionDenied, "only the host and co-hosts can stop a track"));
        }
        let (idx, key, _) = session.find_track(track_id).ok_or(ErrorCode::TrackNotFound)?;
        let p = &mut session.participants[idx];
        let (participant_id, identity) = (p.info.id.clone(), p.info.identity.clone());
        let Some(t) = p.info.streams.iter_mut().flat_map(|s| s.tracks.iter_mut()).find(|t| &t.id == track_id) else {
            return Err(ErrorCode::TrackNotFound.into());
        };
        if t.censored == censored {
            return Ok(());
        }
        t.censored = censored;
        let (kind, source) = (t.kind, t.source);
        session.sfu.send(Command::SetTrackState { track_id: track_id.clone(), muted: t.muted, censored });
        // The stop holds for this source until lifted, across unpublish and publish.
        if let Some(source) = source {
            if censored {
                session.censored.insert((identity, source));
            } else {
                session.censored.remove(&(identity, source));
            }
        }
        tracing::info!(%room, by = %by, track = %track_id, censored, "track censorship changed");
        let (track_id, by) = (track_id.clone(), by.clone());
        let event = if censored {
            Event::TrackCensored { participant_id, key, track_id, kind, by }
        } else {
            Event::TrackUncensored { participant_id, key, track_id, kind, by }
        };
        session.broadcast(&event, None, now.mono);
        Ok(())
    }

    /// Asks for `network_metrics` about these participants (empty: stop).
    pub fn set_network_metrics(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        participants: Vec<ParticipantId>,
    ) -> ApiResult<()> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(room).ok_or(ErrorCode::SessionNotFound)?;
        if let Some(missing) = participants.iter().find(|p| session.position(p).is_none()) {
            return Err(ApiError::new(ErrorCode::ParticipantNotFound, format!("no participant {missing}")));
        }
        session.get_mut(id)?.metrics_for = participants;
        let mut watched: Vec<ParticipantId> =
            session.participants.iter().flat_map(|p| p.metrics_for.iter().cloned()).collect();
        watched.sort();
        watched.dedup();
        session.sfu.send(Command::WatchMetrics { room: room.clone(), participants: watched });
        Ok(())
    }

    /// Something happened on the media side.
    pub fn media_event(&self, event: SfuEvent, now: Now) {
        let mut sessions = self.lock();
        match event {
            SfuEvent::SubscriberOffer { room, participant, sdp, started } => {
                let Some(p) = sessions.get_mut(&room).and_then(|s| s.get_mut(&participant).ok()) else { return };
                for (publisher, key, tracks) in started {
                    p.push(Event::SubscriptionStarted { participant_id: publisher, key, tracks }, now.mono);
                }
                if let Some(sdp) = sdp {
                    p.push(Event::SubscriberOffer { sdp }, now.mono);
                }
            }
            SfuEvent::PeerFailed { room, participant, publisher } => {
                let Some(session) = sessions.get_mut(&room) else { return };
                let Some(idx) = session.position(&participant) else { return };
                let error = ErrorBody::from(ErrorCode::MediaFailed);
                if publisher {
                    let keys: Vec<String> =
                        session.participants[idx].info.streams.iter().map(|s| s.key.clone()).collect();
                    for key in keys {
                        session.end_stream(idx, &key, Some(error.clone()), now.mono);
                    }
                } else {
                    let p = &mut session.participants[idx];
                    for sub in std::mem::take(&mut p.subscriptions) {
                        p.push(
                            Event::SubscriptionEnded {
                                participant_id: sub.publisher,
                                key: sub.key,
                                reason: SubscriptionEndReason::MediaFailed,
                            },
                            now.mono,
                        );
                    }
                }
            }
            SfuEvent::AudioActivity { room, levels, active_speaker } => {
                let Some(session) = sessions.get_mut(&room) else { return };
                session.broadcast(&Event::AudioActivity { levels, active_speaker }, None, now.mono);
            }
            SfuEvent::Metrics { room, reports } => {
                let Some(session) = sessions.get_mut(&room) else { return };
                for p in session.participants.iter_mut().filter(|p| !p.metrics_for.is_empty()) {
                    let mine: Vec<_> =
                        reports.iter().filter(|r| p.metrics_for.contains(&r.participant_id)).cloned().collect();
                    if !mine.is_empty() {
                        p.push(Event::NetworkMetrics { reports: mine }, now.mono);
                    }
                }
            }
        }
    }
}
