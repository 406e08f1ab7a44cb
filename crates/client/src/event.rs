//! What a [`crate::Room`] tells its owner, in order, on the receiver returned by
//! [`crate::Room::connect`].
//!
//! Invariants:
//! - The first event is always [`RoomEvent::Connected`].
//! - When an event about the room arrives, [`crate::Room::state`] already reflects it
//!   (the snapshot is updated before the event is sent).
//! - Exactly one of [`RoomEvent::Disconnected`] or [`RoomEvent::ConnectionLost`] is the
//!   last event; the channel closes after it.
//! - Participant events carry the participant's [`ParticipantInfo`], so no lookup is
//!   needed, even after the participant is gone from the state.

use confer_proto::room::RoomInfo;
use confer_proto::signal::{DisconnectReason, Event, LeaveReason, ParticipantInfo};
use confer_proto::UnixMillis;
use serde::Serialize;

use crate::error::ClientError;
use crate::media::RemoteTrack;
use crate::state::RoomSnapshot;

/// Where the connection to the room stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Joined and the signaling connection is up.
    Connected,
    /// The connection dropped; the SDK is trying to get back in.
    Reconnecting,
    /// Gone for good: left, removed by the server, or reconnection gave up.
    Disconnected,
}

/// One thing that happened to the room or to the connection.
#[derive(Debug)]
pub enum RoomEvent {
    /// The connection state changed. Not sent for the initial state, which is
    /// [`ConnectionState::Connected`] once `connect` returns.
    StateChanged(ConnectionState),
    /// First event on every receiver: the room as it was when the join succeeded.
    Connected { snapshot: Box<RoomSnapshot> },
    /// The server ended this connection, and why (left, kicked, token expired, session
    /// ended, ...). Final: no reconnection follows. A server shutting down is not
    /// reported this way but as an interrupted connection, because it may come back.
    Disconnected { reason: DisconnectReason },
    /// A participant entered the room (not sent when one resumes after a dropped
    /// connection: to the others it never left).
    ParticipantJoined { participant: ParticipantInfo },
    /// A participant is about to leave, and why (`None` for a plain leave). Also sent
    /// about the local participant, e.g. when it is kicked. It is still in the state.
    ParticipantLeaving { participant: ParticipantInfo, reason: Option<LeaveReason> },
    /// A participant has left and is no longer in the state.
    ParticipantLeft { participant: ParticipantInfo, reason: Option<LeaveReason> },
    /// A text message for the local participant.
    MessageReceived {
        message_id: String,
        /// The sender.
        from: ParticipantInfo,
        text: String,
        /// The recipients when the message was targeted; `None` for a broadcast.
        to: Option<Vec<ParticipantInfo>>,
        sent_at: UnixMillis,
    },
    /// The room's definition changed (name, public metadata, policy).
    RoomUpdated { room: RoomInfo },
    /// The signaling connection dropped (read error, close without `disconnected`,
    /// silence, server shutdown). Reconnection starts if the policy allows it. Requests
    /// in flight fail with [`ClientError::Interrupted`].
    ConnectionInterrupted { error: ClientError },
    /// Reconnection attempt `attempt` (from 1) is starting.
    Reconnecting { attempt: u32 },
    /// Back in the room. With `resumed` true the participant kept its id and no one saw
    /// it leave; missed events follow this one, in order, without gaps or repeats. With
    /// `resumed` false the server could not resume, so the SDK joined afresh as a new
    /// participant: the state was replaced, and joined/left events for the differences
    /// follow this one.
    Reconnected { resumed: bool },
    /// Reconnection is not allowed or gave up; `error` is the last failure. Final.
    ConnectionLost { error: ClientError },
    /// A media event from the server (`stream_published`, `track_disabled`,
    /// `audio_activity`, `subscription_started`, ...), after the state reflects it.
    Media { event: Box<Event> },
    /// A subscribed track's media started arriving; read its frames.
    TrackSubscribed { track: Box<RemoteTrack> },
    /// The join token was renewed (through the refresh token or the app's
    /// [`crate::TokenSource`]); the server accepted it and keeps the participant until
    /// `expires_at`.
    TokenRenewed { expires_at: UnixMillis },
    /// Renewing the join token failed and will not be retried (the refresh token was
    /// refused: revoked, used elsewhere, its room deleted). The server ends the call
    /// with `token_expired` when the current token runs out, unless the app calls
    /// [`crate::Room::update_token`] before then. Failures that may pass (the server
    /// unreachable for a moment) are retried with backoff and not reported.
    TokenRenewalFailed { error: ClientError },
    /// One of the media connections (`publisher` or `subscriber`) found no path to the
    /// server: every direct and relayed candidate failed. Media does not flow until the
    /// network changes; the SDK keeps trying. Sent once per connection until it
    /// connects.
    MediaPathFailed { connection: &'static str, error: ClientError },
}

impl RoomEvent {
    /// A stable snake_case name, the same as the protocol's event names where the
    /// event comes from the server.
    pub fn name(&self) -> &'static str {
        match self {
            RoomEvent::StateChanged(_) => "state_changed",
            RoomEvent::Connected { .. } => "connected",
            RoomEvent::Disconnected { .. } => "disconnected",
            RoomEvent::ParticipantJoined { .. } => "participant_joined",
            RoomEvent::ParticipantLeaving { .. } => "participant_leaving",
            RoomEvent::ParticipantLeft { .. } => "participant_left",
            RoomEvent::MessageReceived { .. } => "message_received",
            RoomEvent::RoomUpdated { .. } => "room_updated",
            RoomEvent::ConnectionInterrupted { .. } => "connection_interrupted",
            RoomEvent::Reconnecting { .. } => "reconnecting",
            RoomEvent::Reconnected { .. } => "reconnected",
            RoomEvent::ConnectionLost { .. } => "connection_lost",
            RoomEvent::Media { event } => event.name(),
            RoomEvent::TrackSubscribed { .. } => "track_subscribed",
            RoomEvent::TokenRenewed { .. } => "token_renewed",
            RoomEvent::TokenRenewalFailed { .. } => "token_renewal_failed",
            RoomEvent::MediaPathFailed { .. } => "media_path_failed",
        }
    }

    /// Whether nothing follows this event.
    pub fn is_final(&self) -> bool {
        matches!(self, RoomEvent::Disconnected { .. } | RoomEvent::ConnectionLost { .. })
    }
}
