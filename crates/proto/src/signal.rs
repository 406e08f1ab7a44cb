//! The signaling protocol: JSON text frames over one WebSocket per client at `/v1/signal`.
//!
//! The client sends [`ClientMessage`]s, each with an `id` it chooses; the server answers
//! every one with exactly one [`ServerMessage::Response`] carrying the same `id`, and
//! pushes [`ServerMessage::Event`]s as things happen. The first request must be
//! [`Request::Join`]. Events carry `seq`, increasing by one per event for this
//! participant; a client that loses its connection sends the last `seq` it saw when it
//! resumes, and the server replays what it missed, so no event is lost or repeated.

use serde::{Deserialize, Serialize};

use crate::room::RoomInfo;
use crate::track::{
    AudioLevel, NetworkMetrics, PublishTrack, StreamInfo, SubscribedTrack, SubscriptionEndReason, SubscriptionOptions,
    TrackId, TrackKind,
};
use crate::{ErrorBody, Identity, ParticipantId, RoomId, UnixMillis};

/// A frame from client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMessage {
    /// Chosen by the client; echoed in the response.
    pub id: u64,
    pub request: Request,
}

/// What a client asks of the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Enter the room (or resume a dropped connection). Must come first. Answered with
    /// [`Reply::Joined`] or [`Reply::Resumed`].
    Join(JoinRequest),
    /// Leave the room for good. Answered with [`Reply::Ok`]; the server then closes.
    Leave,
    /// Send a text message to everyone (`to` absent) or to the listed participants.
    /// Needs the `data` grant. Answered with [`Reply::MessageSent`].
    SendMessage {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Vec<ParticipantId>>,
    },
    /// Remove a participant from the session. Needs moderator rights.
    Kick {
        participant_id: ParticipantId,
    },
    /// Replace the join token before it expires (same room and identity).
    /// Answered with [`Reply::TokenUpdated`].
    UpdateToken {
        token: String,
    },
    /// Application-level keepalive for clients that cannot see WebSocket pings.
    Ping,
    /// Publish a stream: `sdp` is an offer for the publisher connection (the first one
    /// creates it; later ones renegotiate it and must keep the earlier media sections),
    /// `tracks` says which of its media sections carry this stream. Needs the `publish`
    /// grant and sources the grant and the room's policy allow. Answered with
    /// [`Reply::Published`]; the others get `stream_published`.
    Publish {
        key: String,
        tracks: Vec<PublishTrack>,
        sdp: String,
    },
    /// Mute or unmute published tracks. Answered with [`Reply::Ok`]; everyone gets
    /// `track_disabled` / `track_enabled`.
    UpdateStream {
        key: String,
        tracks: Vec<TrackUpdate>,
    },
    /// Stop publishing a stream. Its subscribers get `subscription_ended`, everyone
    /// `stream_unpublished`.
    Unpublish {
        key: String,
    },
    /// Receive a stream. Needs the `subscribe` grant. Answered with [`Reply::Ok`]; the
    /// server then sends `subscription_started` and a `subscriber_offer` that adds the
    /// stream's tracks to the subscriber connection.
    Subscribe {
        participant_id: ParticipantId,
        key: String,
        #[serde(flatten)]
        options: SubscriptionOptions,
    },
    /// Change what is received of a subscribed stream (no renegotiation).
    UpdateSubscription {
        participant_id: ParticipantId,
        key: String,
        #[serde(flatten)]
        options: SubscriptionOptions,
    },
    Unsubscribe {
        participant_id: ParticipantId,
        key: String,
    },
    /// The answer to the last `subscriber_offer`.
    SubscriberAnswer {
        sdp: String,
    },
    /// Renegotiate the publisher connection without changing what is published: an
    /// ICE restart after a network change, or a new data channel. The offer must keep
    /// every media section. Answered with [`Reply::PublisherAnswer`].
    PublisherOffer {
        sdp: String,
    },
    /// Restart ICE on the subscriber connection: the server sends a `subscriber_offer`
    /// with new ICE credentials. Answered with [`Reply::Ok`].
    RestartSubscriber,
    /// Stop forwarding a track to everyone (moderators). Everyone gets `track_censored`.
    Censor {
        track_id: TrackId,
    },
    Uncensor {
        track_id: TrackId,
    },
    /// Ask for `network_metrics` reports about these participants every few seconds;
    /// an empty list stops them. Include your own id for your own connection.
    SetNetworkMetrics {
        participants: Vec<ParticipantId>,
    },
    /// Let someone waiting in the lobby in (moderators); everyone waiting when
    /// `participant_id` is absent. They get `admitted`, the moderators `knock_ended`.
    Admit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<ParticipantId>,
    },
    /// Turn someone waiting in the lobby away (moderators); everyone waiting when
    /// `participant_id` is absent. They get `denied` and are disconnected.
    Deny {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<ParticipantId>,
    },
    /// Lock the meeting (moderators): nobody new joins or knocks, whoever is in stays.
    /// Everyone gets `room_locked` or `room_unlocked`.
    SetLocked {
        locked: bool,
    },
    /// End the meeting for everyone (moderators): all are removed with `session_ended`.
    EndSession,
    /// Mute someone's microphone (`audio`) or stop their camera (`video`) (moderators).
    /// Everyone, the participant included, gets `track_disabled` with `by`; only the
    /// participant can turn it back on.
    MuteParticipant {
        participant_id: ParticipantId,
        kind: TrackKind,
    },
    /// Mute every microphone but the moderators' (moderators).
    MuteAll,
    /// Ask someone to unmute (`audio`) or start their camera (`video`) (moderators).
    /// They get `unmute_requested`; nothing changes unless they act on it.
    RequestUnmute {
        participant_id: ParticipantId,
        kind: TrackKind,
    },
    /// Make someone a co-host (the room's managers): moderator rights from now on,
    /// without rejoining. Everyone gets `participant_updated`.
    Promote {
        participant_id: ParticipantId,
    },
    /// Take a co-host's moderator rights back (the room's managers).
    Demote {
        participant_id: ParticipantId,
    },
    /// Raise your hand. Everyone gets `hand_raised`; hands are listed in the order raised.
    RaiseHand,
    /// Lower your hand, or (moderators) someone else's. Everyone gets `hand_lowered`.
    LowerHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_id: Option<ParticipantId>,
    },
    /// Send a reaction to everyone (rate-limited). Everyone gets `reaction`.
    React {
        reaction: Reaction,
    },
    /// Set up breakout rooms (moderators), one per name, replacing any not open yet.
    /// With `allow_choice`, people may pick their room themselves (`join_breakout`).
    /// Everyone gets `breakouts_updated`.
    CreateBreakouts {
        rooms: Vec<String>,
        #[serde(default)]
        allow_choice: bool,
    },
    /// Who goes where (moderators): the listed assignments, or with `evenly` everyone
    /// but the moderators spread over the rooms at random.
    AssignBreakouts {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assignments: Vec<BreakoutAssignment>,
        #[serde(default)]
        evenly: bool,
    },
    /// Open the breakout rooms (moderators): everyone assigned moves to their room
    /// (`moved`).
    OpenBreakouts,
    /// Close them (moderators): everyone is told when (`breakouts_closing`), and after
    /// `countdown_secs` (default 10) everyone in a breakout room moves back.
    CloseBreakouts {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        countdown_secs: Option<u32>,
    },
    /// Go to breakout room `room` (an index into the list), or back to the main room
    /// (`room` absent), while they are open: when choosing is allowed, or moderators.
    JoinBreakout {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<u32>,
    },
    /// Move someone to breakout room `room`, or back to the main room (moderators).
    MoveParticipant {
        participant_id: ParticipantId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<u32>,
    },
    /// A message to everyone in every breakout room and the main room (moderators).
    MessageBreakouts {
        text: String,
    },
}

/// One person's breakout room, by index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakoutAssignment {
    pub participant_id: ParticipantId,
    pub room: u32,
}

/// The breakout rooms of a meeting, as everyone in it sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakouts {
    /// In the order created; `room` in assignments and requests is an index into it.
    pub rooms: Vec<BreakoutRoom>,
    pub assignments: Vec<BreakoutAssignment>,
    pub open: bool,
    pub allow_choice: bool,
    /// When they close, once a moderator started the countdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakoutRoom {
    /// The breakout room's id (its session's room id, as `moved` carries it).
    pub id: RoomId,
    pub name: String,
}

/// The reactions there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reaction {
    ThumbsUp,
    Clap,
    Heart,
    Laugh,
    Surprised,
    Celebrate,
}

impl Reaction {
    pub const ALL: [Reaction; 6] = [
        Reaction::ThumbsUp,
        Reaction::Clap,
        Reaction::Heart,
        Reaction::Laugh,
        Reaction::Surprised,
        Reaction::Celebrate,
    ];

    /// The wire name (`thumbs_up`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Reaction::ThumbsUp => "thumbs_up",
            Reaction::Clap => "clap",
            Reaction::Heart => "heart",
            Reaction::Laugh => "laugh",
            Reaction::Surprised => "surprised",
            Reaction::Celebrate => "celebrate",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// A change to one published track in `update_stream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackUpdate {
    pub track_id: TrackId,
    pub muted: bool,
}

/// Longest display name accepted at join, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest participant `context` accepted at join, in bytes of JSON.
pub const MAX_CONTEXT_BYTES: usize = 8 * 1024;

/// The body of [`Request::Join`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    /// The room the client means to join. When present it must match the token's room,
    /// otherwise the join is refused with `room_mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
    /// [`crate::PROTOCOL_VERSION`] of the client.
    #[serde(default = "default_protocol")]
    pub protocol: u32,
    /// Overrides the display name in the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// App-defined metadata shown to the others as [`ParticipantInfo::context`].
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub context: serde_json::Value,
    /// Present to come back as the same participant after a dropped connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

fn default_protocol() -> u32 {
    crate::PROTOCOL_VERSION
}

/// Resume a participant whose connection dropped less than the grace period ago.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub participant_id: ParticipantId,
    /// From [`JoinSnapshot::resume_token`].
    pub resume_token: String,
    /// The `seq` of the last event the client received (0 if none).
    pub last_seq: u64,
}

/// A frame from server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to the request with the same `id`. `id` is null when the request could
    /// not be read far enough to find its id (malformed JSON, oversized frame).
    Response {
        id: Option<u64>,
        #[serde(flatten)]
        outcome: Outcome,
    },
    /// Something happened. `seq` increases by one per event for this participant.
    Event {
        seq: u64,
        #[serde(flatten)]
        event: Event,
    },
}

/// Either `"result": {...}` or `"error": {...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Result(Reply),
    Error(ErrorBody),
}

/// Successful answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// A fresh join: the whole room state as of now.
    Joined(Box<JoinSnapshot>),
    /// A resume: the `replayed` missed events follow this response, in order.
    Resumed {
        participant_id: ParticipantId,
        replayed: u64,
    },
    MessageSent {
        message_id: String,
    },
    TokenUpdated {
        expires_at: UnixMillis,
        /// The relays again, with credentials that expire with the new token (for
        /// connections made from now on; relays in use keep working).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
    },
    /// The publisher connection's answer and the stream as the others see it.
    Published {
        stream: StreamInfo,
        sdp: String,
    },
    /// The answer to a `publisher_offer`.
    PublisherAnswer {
        sdp: String,
    },
    Pong,
    Ok,
    /// The room has a lobby: wait for `admitted` (with the room state) or `denied`.
    /// Until then only `leave` and `ping` are answered.
    Knocking {
        participant_id: ParticipantId,
        /// Lets this knock survive a dropped connection, as after a join.
        resume_token: String,
        room: RoomInfo,
        limits: SignalLimits,
    },
}

/// The room state handed to a participant when it joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinSnapshot {
    pub room: RoomInfo,
    /// You.
    pub participant: ParticipantInfo,
    /// Everyone else, in join order.
    pub participants: Vec<ParticipantInfo>,
    /// Keep it secret; it lets this participant resume after a dropped connection.
    pub resume_token: String,
    /// When the join token expires; send `update_token` before then.
    pub token_expires_at: UnixMillis,
    pub ice_servers: Vec<IceServer>,
    pub limits: SignalLimits,
    /// Whether the meeting is locked.
    #[serde(default)]
    pub locked: bool,
    /// Raised hands, first raised first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hands: Vec<RaisedHand>,
    /// Who waits in the lobby (for moderators; empty for the others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knocks: Vec<Knock>,
    /// The meeting's breakout rooms, when a moderator set them up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakouts: Option<Breakouts>,
    /// In a breakout room: the main room's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_room: Option<RoomId>,
}

/// A raised hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaisedHand {
    pub participant_id: ParticipantId,
    pub raised_at: UnixMillis,
}

/// Someone waiting in the lobby, as moderators see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knock {
    pub participant_id: ParticipantId,
    pub identity: Identity,
    pub name: String,
    /// How they came: with an invite (a guest) or a join token.
    pub via: JoinVia,
    pub knocked_at: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinVia {
    Invite,
    Token,
}

/// How a knock ended, as moderators are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnockOutcome {
    Admitted,
    Denied,
    /// Nobody answered in time.
    TimedOut,
    /// The person gave up (left, or their connection did not come back).
    Left,
}

/// Why a knock was turned away, as the person waiting is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// A moderator said no.
    Denied,
    /// Nobody let them in in time.
    TimedOut,
    /// The meeting ended while they waited.
    SessionEnded,
}

/// The server's limits and timers, so that clients can stay within them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalLimits {
    /// Larger frames are refused with `too_large`.
    pub max_message_bytes: u32,
    /// Sustained request rate allowed per connection; bursts up to `burst`.
    pub requests_per_second: u32,
    pub burst: u32,
    /// The server pings this often; a connection silent for three intervals is dropped.
    pub ping_interval_ms: u64,
    /// How long after a dropped connection the participant can still resume.
    pub resume_grace_ms: u64,
}

/// A STUN/TURN server for the media connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A participant's role in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    /// The room's managers and holders of the `moderator` grant.
    Manager,
    Guest,
    /// Promoted by a manager during this session: moderator rights until demoted.
    CoHost,
}

impl Role {
    /// Whether this role may moderate (admit, lock, mute, kick...).
    pub fn moderates(self) -> bool {
        matches!(self, Role::Manager | Role::CoHost)
    }
}

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub identity: Identity,
    pub name: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub context: serde_json::Value,
    pub role: Role,
    /// Whether it can be sent messages (it holds the `data` grant).
    pub can_receive_messages: bool,
    pub joined_at: UnixMillis,
    /// What it publishes now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamInfo>,
}

/// Why a participant is leaving, as the others are told. Absent for a plain leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// A moderator removed it.
    Kicked,
    /// Its connection dropped and it did not resume within the grace period.
    ConnectionLost,
    /// Its join token expired without being renewed.
    TokenExpired,
    /// The same identity joined again from elsewhere.
    Replaced,
    /// A moderator ended the session for everyone, or the room was deleted.
    SessionEnded,
    /// It moved to another room of the meeting (a breakout room, or back).
    Moved,
}

/// Why the server is closing this connection; sent as [`Event::Disconnected`] just
/// before the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// The client asked to leave.
    Left,
    Kicked,
    TokenExpired,
    Replaced,
    SessionEnded,
    RoomDeleted,
    /// The client kept breaking the rate or size limits.
    ProtocolViolation,
    ServerShutdown,
    /// The server failed while serving this participant (a bug, logged there); the
    /// others carry on. Joining again works.
    ServerError,
    /// The knock was turned away (see the `denied` event before this).
    Denied,
}

/// Things that happen in the room, pushed by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Someone entered the room. Not sent for a resume.
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    /// Someone is about to leave; sent to everyone including the one leaving, before
    /// `participant_left`.
    ParticipantLeaving {
        participant_id: ParticipantId,
        identity: Identity,
        #[serde(default)]
        reason: Option<LeaveReason>,
    },
    /// Someone has left and is gone from the room state.
    ParticipantLeft {
        participant_id: ParticipantId,
        identity: Identity,
        #[serde(default)]
        reason: Option<LeaveReason>,
    },
    /// A text message for you (broadcast when `to` is absent).
    MessageReceived {
        message_id: String,
        from: ParticipantId,
        from_identity: Identity,
        /// The sender's display name: a moderator messaging every breakout room is in
        /// another room than most of the people who read it.
        #[serde(default)]
        from_name: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Vec<ParticipantId>>,
        sent_at: UnixMillis,
    },
    /// The room's definition changed through the room API.
    RoomUpdated {
        room: RoomInfo,
    },
    /// The server is closing this connection, and why. Nothing follows.
    Disconnected {
        reason: DisconnectReason,
    },
    /// Someone (else) published a stream.
    StreamPublished {
        participant_id: ParticipantId,
        stream: StreamInfo,
    },
    /// A stream is gone: unpublished, or its publisher's media connection failed.
    StreamUnpublished {
        participant_id: ParticipantId,
        key: String,
    },
    /// Your stream could not be kept up (its media connection failed); it is unpublished.
    StreamFailed {
        key: String,
        error: ErrorBody,
    },
    /// A track was muted: by its publisher, or by the moderator `by` (then the
    /// publisher is told too, and its client stops the device).
    TrackDisabled {
        participant_id: ParticipantId,
        key: String,
        track_id: TrackId,
        kind: TrackKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<ParticipantId>,
    },
    /// A track's publisher unmuted it.
    TrackEnabled {
        participant_id: ParticipantId,
        key: String,
        track_id: TrackId,
        kind: TrackKind,
    },
    /// A moderator stopped a track's forwarding.
    TrackCensored {
        participant_id: ParticipantId,
        key: String,
        track_id: TrackId,
        kind: TrackKind,
        by: ParticipantId,
    },
    TrackUncensored {
        participant_id: ParticipantId,
        key: String,
        track_id: TrackId,
        kind: TrackKind,
        by: ParticipantId,
    },
    /// A subscription's tracks are in the `subscriber_offer` that follows.
    SubscriptionStarted {
        participant_id: ParticipantId,
        key: String,
        tracks: Vec<SubscribedTrack>,
    },
    SubscriptionReconfigured {
        participant_id: ParticipantId,
        key: String,
        #[serde(flatten)]
        options: SubscriptionOptions,
    },
    SubscriptionEnded {
        participant_id: ParticipantId,
        key: String,
        reason: SubscriptionEndReason,
    },
    /// An offer for the subscriber connection; answer with `subscriber_answer`. No other
    /// offer comes until it is answered.
    SubscriberOffer {
        sdp: String,
    },
    /// Audio levels of everyone audible, at most a few times a second, plus who speaks
    /// loudest (held for a moment so that it does not flicker).
    AudioActivity {
        levels: Vec<AudioLevel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        active_speaker: Option<ParticipantId>,
    },
    /// Connection quality of the participants asked for with `set_network_metrics`.
    NetworkMetrics {
        reports: Vec<NetworkMetrics>,
    },
    /// Someone is waiting in the lobby (moderators).
    Knocking {
        knock: Knock,
    },
    /// A knock is over (moderators): let in, turned away, timed out, or given up.
    KnockEnded {
        participant_id: ParticipantId,
        outcome: KnockOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<ParticipantId>,
    },
    /// You were let in: the room state, as a join's reply would have had it.
    Admitted {
        snapshot: Box<JoinSnapshot>,
    },
    /// Your knock was turned away; `disconnected` follows.
    Denied {
        reason: DenyReason,
    },
    RoomLocked {
        by: ParticipantId,
    },
    RoomUnlocked {
        by: ParticipantId,
    },
    /// Someone's role changed (promoted to co-host, or demoted).
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    /// A moderator asks you to unmute (`audio`) or start your camera (`video`).
    UnmuteRequested {
        by: ParticipantId,
        kind: TrackKind,
    },
    HandRaised {
        participant_id: ParticipantId,
        raised_at: UnixMillis,
    },
    /// A hand went down: lowered by its owner or by the moderator `by`. A hand also goes
    /// when its owner leaves (no event: `participant_left` says it).
    HandLowered {
        participant_id: ParticipantId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<ParticipantId>,
    },
    Reaction {
        participant_id: ParticipantId,
        reaction: Reaction,
        sent_at: UnixMillis,
    },
    /// The breakout rooms changed (set up, assigned, opened, closing, closed: `None`).
    BreakoutsUpdated {
        breakouts: Option<Breakouts>,
    },
    /// You are now in another room of the meeting (a breakout room, or back in the
    /// main one): its state, as a join would have given it. Your streams and
    /// subscriptions of the room you left are gone: publish and subscribe again.
    Moved {
        snapshot: Box<JoinSnapshot>,
    },
}

impl Event {
    /// The event's wire name (`participant_joined`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::ParticipantJoined { .. } => "participant_joined",
            Event::ParticipantLeaving { .. } => "participant_leaving",
            Event::ParticipantLeft { .. } => "participant_left",
            Event::MessageReceived { .. } => "message_received",
            Event::RoomUpdated { .. } => "room_updated",
            Event::Disconnected { .. } => "disconnected",
            Event::StreamPublished { .. } => "stream_published",
            Event::StreamUnpublished { .. } => "stream_unpublished",
            Event::StreamFailed { .. } => "stream_failed",
            Event::TrackDisabled { .. } => "track_disabled",
            Event::TrackEnabled { .. } => "track_enabled",
            Event::TrackCensored { .. } => "track_censored",
            Event::TrackUncensored { .. } => "track_uncensored",
            Event::SubscriptionStarted { .. } => "subscription_started",
            Event::SubscriptionReconfigured { .. } => "subscription_reconfigured",
            Event::SubscriptionEnded { .. } => "subscription_ended",
            Event::SubscriberOffer { .. } => "subscriber_offer",
            Event::AudioActivity { .. } => "audio_activity",
            Event::NetworkMetrics { .. } => "network_metrics",
            Event::Knocking { .. } => "knocking",
            Event::KnockEnded { .. } => "knock_ended",
            Event::Admitted { .. } => "admitted",
            Event::Denied { .. } => "denied",
            Event::RoomLocked { .. } => "room_locked",
            Event::RoomUnlocked { .. } => "room_unlocked",
            Event::ParticipantUpdated { .. } => "participant_updated",
            Event::UnmuteRequested { .. } => "unmute_requested",
            Event::HandRaised { .. } => "hand_raised",
            Event::HandLowered { .. } => "hand_lowered",
            Event::Reaction { .. } => "reaction",
            Event::BreakoutsUpdated { .. } => "breakouts_updated",
            Event::Moved { .. } => "moved",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    #[test]
    fn client_message_shape() {
        let msg: ClientMessage = serde_json::from_value(json!({
            "id": 7,
            "request": {"type": "send_message", "text": "hi", "to": ["p1"]}
        }))
        .unwrap();
        assert_eq!(msg.request, Request::SendMessage { text: "hi".into(), to: Some(vec!["p1".into()]) });
        let join: ClientMessage = serde_json::from_value(json!({
            "id": 1, "request": {"type": "join", "token": "t"}
        }))
        .unwrap();
        let Request::Join(join) = join.request else { panic!("not a join") };
        assert_eq!(join.protocol, crate::PROTOCOL_VERSION);
        assert!(join.resume.is_none());
    }

    #[test]
    fn server_message_shapes_round_trip() {
        let err = ServerMessage::Response { id: Some(3), outcome: Outcome::Error(ErrorCode::PermissionDenied.into()) };
        let v = serde_json::to_value(&err).unwrap();
        assert_eq!(v["type"], "response");
        assert_eq!(v["id"], 3);
        assert_eq!(v["error"]["code"], 2004);
        assert_eq!(serde_json::from_value::<ServerMessage>(v).unwrap(), err);

        let ok = ServerMessage::Response { id: Some(4), outcome: Outcome::Result(Reply::Pong) };
        let v = serde_json::to_value(&ok).unwrap();
        assert_eq!(v["result"]["type"], "pong");
        assert_eq!(serde_json::from_value::<ServerMessage>(v).unwrap(), ok);

        let ev = ServerMessage::Event {
            seq: 9,
            event: Event::ParticipantLeaving {
                participant_id: "p2".into(),
                identity: "carol".into(),
                reason: Some(LeaveReason::Kicked),
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["event"], "participant_leaving");
        assert_eq!(v["reason"], "kicked");
        assert_eq!(v["seq"], 9);
        assert_eq!(serde_json::from_value::<ServerMessage>(v).unwrap(), ev);
    }

    #[test]
    fn unknown_request_type_is_an_error() {
        let r = serde_json::from_value::<ClientMessage>(json!({"id": 1, "request": {"type": "fly"}}));
        assert!(r.is_err());
    }
}
