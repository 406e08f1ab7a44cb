//! What the view is told about a call: typed once here (serde for the wire, specta for
//! the generated TypeScript).

use serde::{Deserialize, Serialize};

/// The call as the view draws it, sent whole on every change (small: one entry per
/// participant), so the view never has to patch state of its own.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct CallView {
    pub room: String,
    pub room_name: String,
    /// The local participant's id.
    pub me: String,
    /// Whether the local participant may kick and censor.
    pub moderator: bool,
    /// Local first, then the others in join order.
    pub participants: Vec<ParticipantView>,
    pub active_speaker: Option<String>,
    pub connection: Connection,
    pub microphone: LocalDevice,
    pub camera: LocalDevice,
    pub sharing_screen: bool,
    /// An invite link others can join with, when the app knows one.
    pub invite_link: Option<String>,
    /// A moderator locked the meeting: nobody new gets in.
    pub locked: bool,
    /// Receiving and sending no video (a weak link).
    pub audio_only: bool,
    /// Raised hands, first raised first: participant ids.
    pub hands: Vec<String>,
    /// Who waits in the lobby (shown to moderators).
    pub knocks: Vec<KnockView>,
    /// Breakout rooms, once a moderator set them up.
    pub breakouts: Option<BreakoutsView>,
}

/// The meeting's breakout rooms.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct BreakoutsView {
    /// In order; a room's number in requests is its index here.
    pub rooms: Vec<BreakoutRoomView>,
    /// People are in (or on their way to) their rooms.
    pub open: bool,
    /// People may pick their room.
    pub allow_choice: bool,
    /// When they close (Unix ms), once a moderator started the countdown.
    pub closes_at: Option<f64>,
    /// The breakout room this participant is in; `None` in the main room.
    pub current: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
pub struct BreakoutRoomView {
    pub name: String,
    /// Who is assigned to it, by name.
    pub members: Vec<String>,
}

/// Someone waiting in the lobby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
pub struct KnockView {
    pub id: String,
    pub name: String,
    /// Came with an invite (a guest) rather than a token.
    pub guest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    Connected,
    Reconnecting,
}

/// The state of the local microphone or camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum LocalDevice {
    On,
    Off,
    /// There is none, or it could not be opened.
    Missing,
    /// A moderator stopped it.
    Censored,
}

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct ParticipantView {
    pub id: String,
    pub identity: String,
    pub name: String,
    pub local: bool,
    pub moderator: bool,
    /// Made a co-host during the call (a moderator too).
    pub co_host: bool,
    pub guest: bool,
    pub hand_raised: bool,
    /// No audio track, or muted, or censored.
    pub mic_muted: bool,
    pub camera_off: bool,
    pub speaking: bool,
    /// 1 (bad) to 5 (excellent); 0 while unknown.
    pub network_quality: u8,
    /// Video this participant shows: its camera tile and its screen share, when present.
    pub tiles: Vec<TileInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
pub struct TileInfo {
    /// The frame socket's tile name (`/frames/{tile}`).
    pub tile: String,
    /// The stream key (`main`, `screen`).
    pub key: String,
    pub screen: bool,
}

/// A chat message, sent or received.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct ChatMessage {
    pub id: String,
    pub from_id: String,
    pub from_name: String,
    pub text: String,
    /// Sent to chosen people rather than everyone.
    pub private: bool,
    /// The recipient of a private message this app sent.
    pub to_name: Option<String>,
    pub sent_at: f64,
    pub mine: bool,
}

/// How the view shows one tile, so that the call subscribes to what is seen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, specta::Type)]
pub struct TileWant {
    pub tile: String,
    /// On screen (a tile on another page is not).
    pub visible: bool,
    /// Drawn large (a speaker or screen-share stage, or a grid of few tiles).
    pub large: bool,
}

/// Why a call ended, as the view and the desktop branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The user left (the leave button, the tray).
    Left,
    Kicked,
    TokenExpired,
    /// The same person joined from somewhere else.
    Replaced,
    /// A moderator ended the meeting for everyone.
    SessionEnded,
    RoomDeleted,
    ProtocolViolation,
    ServerShutdown,
    ServerError,
    /// The host did not let this person in from the lobby.
    Denied,
    /// The connection was lost and could not be restored.
    ConnectionLost,
}

impl EndReason {
    /// What the user reads.
    pub fn message(self) -> &'static str {
        match self {
            Self::Left => "You left the call.",
            Self::Kicked => "A moderator removed you from the call.",
            Self::TokenExpired => "Your access to this meeting expired. Join again with a fresh link.",
            Self::Replaced => "You joined this meeting from somewhere else, so this window left it.",
            Self::SessionEnded => "The meeting was ended for everyone.",
            Self::RoomDeleted => "The meeting's room was deleted.",
            Self::ProtocolViolation => "The server closed the connection after an error in this app.",
            Self::ServerShutdown => "The server shut down.",
            Self::ServerError => "The server ran into an error. Join again to continue.",
            Self::Denied => "The host did not let you into the meeting.",
            Self::ConnectionLost => "The connection to the meeting was lost and could not be restored.",
        }
    }
}

impl CallEvent {
    /// The end of the call, for `reason`.
    pub fn ended(reason: EndReason) -> Self {
        Self::Ended { code: reason, message: reason.message().to_owned() }
    }
}

/// Something the call tells the view.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallEvent {
    Updated {
        view: CallView,
    },
    Chat {
        message: ChatMessage,
    },
    /// Worth telling the user, not fatal (a device missing, a request refused).
    Notice {
        code: String,
        message: String,
    },
    /// The call is over: left, kicked, ended, connection lost for good.
    Ended {
        code: EndReason,
        message: String,
    },
    /// Someone reacted (`thumbs_up`, `clap`, `heart`, `laugh`, `surprised`, `celebrate`).
    Reaction {
        from_id: String,
        from_name: String,
        reaction: String,
    },
    /// A moderator asks the user to unmute (or, `camera`, to start the camera).
    UnmuteRequested {
        by_name: String,
        camera: bool,
    },
}
