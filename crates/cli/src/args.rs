//! The command line, as clap derive types. Parsing only: no I/O here.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use confer_proto::room::RoomSort;

/// Manage a Confer server's rooms, tokens, invites and sessions, and run headless bots.
///
/// Room-API commands print the server's JSON answer on stdout (nothing for answers
/// without a body). When the server refuses, its error `{code,name,message}` is printed
/// on stderr as one JSON line followed by a readable message, and the exit status is 1.
#[derive(Debug, Parser)]
#[command(name = "confer-cli", version)]
pub struct Cli {
    /// Server address: http(s)://, ws(s)://, or host:port; a /v1 or /v1/signal path is
    /// accepted and ignored.
    #[arg(long, global = true, env = "CONFER_URL", default_value = "http://127.0.0.1:7880")]
    pub url: String,
    /// API key for the room API.
    #[arg(long, global = true, env = "CONFER_API_KEY")]
    pub api_key: Option<String>,
    /// API secret for the room API.
    #[arg(long, global = true, env = "CONFER_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stored room definitions.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Join tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Invites for guests.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Live sessions and their participants.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Join a room headless and print every event as one JSON line.
    ///
    /// The bot connects to the global --url (http(s) or ws(s)). Its first line is
    /// `connected`; each line has an `event` field. Exit status: 0 when it ran to the end
    /// (also when kicked or disconnected by the server), 1 when the connection was lost,
    /// 2 when the join was refused, 3 when a request (--send-message, --kick) was refused.
    Bot(Box<BotArgs>),
    /// List the microphones, speakers, cameras and screens this machine offers (the
    /// names `bot --mic/--speaker/--camera/--screen` take), as one JSON document.
    Devices(DevicesArgs),
    /// Load a server with many participants and report what arrived.
    ///
    /// Publishers send pre-encoded synthetic media (the pattern in VP8, a tone in Opus);
    /// subscribers take every stream of their room without decoding, and count packets,
    /// sequence gaps (loss) and the delay of each frame from its RTP time. Prints a table,
    /// or with --json one object (`participants`, `packets_received`, `loss`,
    /// `latency_ms` {`p50`, `p95`}, `join_ms` {`p50`, `p95`}, `failures`, and more). Needs
    /// the API key and secret (to create rooms and mint tokens).
    Load(LoadArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Load this existing room (else --rooms new ones are created).
    #[arg(long, conflicts_with = "rooms")]
    pub room: Option<String>,
    /// Rooms to create and load, each with --publishers and --subscribers.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Publishers per room.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribers per room (each receives every publisher of its room).
    #[arg(long, default_value_t = 5)]
    pub subscribers: usize,
    /// Published video size and rate.
    #[arg(long, value_name = "WxH@FPS", default_value = "640x360@30")]
    pub video: String,
    /// Publish three simulcast layers (q, h, f).
    #[arg(long)]
    pub simulcast: bool,
    /// Publish audio too (Opus, 20 ms packets).
    #[arg(long)]
    pub audio: bool,
    /// The quality subscribers ask for: low, medium or high.
    #[arg(long, default_value = "medium")]
    pub quality: String,
    /// Seconds everyone stays once all have joined.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Joins per second.
    #[arg(long, default_value_t = 20)]
    pub join_rate: u32,
    /// The local address media is sent from.
    #[arg(long, default_value = "127.0.0.1")]
    pub media_ip: std::net::IpAddr,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The server under load: confer, or janus (Janus's VideoRoom over its WebSocket
    /// API at --url, e.g. ws://127.0.0.1:8188; for the side-by-side benchmark).
    #[arg(long, default_value = "confer")]
    pub target: String,
    /// The server's process id (on this machine): report its CPU time per packet
    /// received in the steady state (`steady.server_cpu_us_per_packet`).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// Play an interface sound on --speaker instead of listing (to check an output).
    #[arg(long, value_enum)]
    pub play: Option<SoundArg>,
    #[arg(long, value_name = "DEVICE|default", default_value = "default")]
    pub speaker: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SoundArg {
    Joined,
    Left,
    Message,
}

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room.
    Create(CreateRoomArgs),
    /// List rooms, a page at a time.
    List(ListRoomsArgs),
    /// Show one room.
    Get {
        /// Room id.
        id: String,
    },
    /// Replace a room's definition. Options not given keep the room's current values,
    /// which are fetched first; the update is refused if the room is no longer at
    /// --version, unless --force.
    Update(UpdateRoomArgs),
    /// Delete a room (ending its live session).
    Delete {
        /// Room id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateRoomArgs {
    #[arg(long)]
    pub name: String,
    /// Room id; the server generates one when absent.
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub fields: RoomFields,
}

/// Room fields shared by `create` and `update`.
#[derive(Debug, Args, Default)]
pub struct RoomFields {
    /// An identity allowed to join (repeat for more). No members: anyone with a token.
    #[arg(long = "member", value_name = "IDENTITY")]
    pub members: Vec<String>,
    /// An identity with moderator rights (repeat for more).
    #[arg(long = "manager", value_name = "IDENTITY")]
    pub managers: Vec<String>,
    /// At most this many participants at once.
    #[arg(long, value_name = "N")]
    pub max_participants: Option<u32>,
    /// Metadata shown to participants (stored as bytes, shown base64-encoded).
    #[arg(long, value_name = "STR")]
    pub public_meta: Option<String>,
    /// Metadata only the room API returns.
    #[arg(long, value_name = "STR")]
    pub private_meta: Option<String>,
    /// Refuse guests joining by invite.
    #[arg(long)]
    pub no_guests: bool,
    /// Audio only: no video or screen sharing.
    #[arg(long)]
    pub audio_only: bool,
    /// A lobby: people who are not managers wait until a moderator lets them in.
    #[arg(long)]
    pub lobby: bool,
}

#[derive(Debug, Args)]
pub struct ListRoomsArgs {
    #[arg(long, default_value_t = 0)]
    pub skip: u32,
    /// Page size, 1 to 100.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[arg(long, value_enum, default_value_t = SortArg::CreatedAsc)]
    pub sort: SortArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SortArg {
    CreatedAsc,
    CreatedDesc,
    NameAsc,
    NameDesc,
}

impl From<SortArg> for RoomSort {
    fn from(s: SortArg) -> Self {
        match s {
            SortArg::CreatedAsc => RoomSort::CreatedAsc,
            SortArg::CreatedDesc => RoomSort::CreatedDesc,
            SortArg::NameAsc => RoomSort::NameAsc,
            SortArg::NameDesc => RoomSort::NameDesc,
        }
    }
}

#[derive(Debug, Args)]
pub struct UpdateRoomArgs {
    /// Room id.
    pub id: String,
    /// The room version this update is based on.
    #[arg(long)]
    pub version: u64,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// Members given replace the current list.
    #[command(flatten)]
    pub fields: RoomFields,
    /// Empty the member list (anyone with a token may join).
    #[arg(long, conflicts_with = "members")]
    pub clear_members: bool,
    /// Empty the manager list.
    #[arg(long, conflicts_with = "managers")]
    pub clear_managers: bool,
    /// Allow guests again.
    #[arg(long, conflicts_with = "no_guests")]
    pub guests: bool,
    /// Allow video again.
    #[arg(long, conflicts_with = "audio_only")]
    pub no_audio_only: bool,
    /// Let people straight in again (no lobby).
    #[arg(long, conflicts_with = "lobby")]
    pub no_lobby: bool,
    /// Remove the participant limit.
    #[arg(long, conflicts_with = "max_participants")]
    pub unlimited: bool,
    /// Apply even if the room changed since --version.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a join token; prints the token alone (the whole token pair with --json).
    Create(CreateTokenArgs),
    /// Buy a new join token with a refresh token; prints the new token pair (the
    /// refresh token rotates: the old one stops working).
    Refresh {
        // Secrets are base64url: one may start with '-'.
        #[arg(long, allow_hyphen_values = true)]
        refresh_token: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateTokenArgs {
    #[arg(long)]
    pub room: String,
    #[arg(long)]
    pub identity: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<u64>,
    #[arg(long)]
    pub moderator: bool,
    #[arg(long)]
    pub no_publish: bool,
    #[arg(long)]
    pub no_subscribe: bool,
    /// No messages or data, sent or received.
    #[arg(long)]
    pub no_data: bool,
    /// Print the whole token pair as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create an invite for a room; prints it as JSON.
    Create {
        #[arg(long)]
        room: String,
        /// Lifetime in seconds.
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        #[arg(long)]
        max_uses: Option<u32>,
    },
    /// Exchange an invite for a guest's join token; prints the token pair as JSON.
    Exchange {
        #[arg(long, allow_hyphen_values = true)]
        invite: String,
        /// The guest's display name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Every live session.
    List,
    /// The live session of a room.
    Get { room: String },
    /// End a room's session for everyone.
    End { room: String },
    /// Remove a participant from a room's session.
    Kick { room: String, participant_id: String },
}

/// Options of `bot`; see [`Command::Bot`].
#[derive(Debug, Args)]
pub struct BotArgs {
    /// Join token.
    #[arg(long, env = "CONFER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The room to join; a token for another room is then refused.
    #[arg(long)]
    pub room: Option<String>,
    /// Display name (overrides the token's).
    #[arg(long)]
    pub name: Option<String>,
    /// Send this text once joined (after --wait-for).
    #[arg(long, value_name = "TEXT")]
    pub send_message: Option<String>,
    /// Send the message only to these identities.
    #[arg(long, value_name = "IDENTITY,...", value_delimiter = ',', requires = "send_message")]
    pub to: Vec<String>,
    /// Answer every chat message received with "re: TEXT", to everyone.
    #[arg(long)]
    pub echo_messages: bool,
    /// Kick this identity once joined (after --wait-for; needs moderator rights).
    #[arg(long, value_name = "IDENTITY")]
    pub kick: Option<String>,
    /// Leave after this many seconds (default: run until Ctrl-C or disconnected).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Act only once these identities are in the room.
    #[arg(long, value_name = "IDENTITY,...", value_delimiter = ',')]
    pub wait_for: Vec<String>,
    /// Publish a synthetic camera (moving pattern carrying frame number and capture
    /// time) and microphone (a tone) as stream `main`.
    #[arg(long)]
    pub publish: bool,
    /// Camera size and frame rate.
    #[arg(long, value_name = "WxH@FPS", default_value = "640x360@30", value_parser = parse_video)]
    pub video: (usize, usize, u32),
    /// Send the camera as three simulcast layers (full, half, quarter size).
    #[arg(long)]
    pub simulcast: bool,
    /// The pattern's first frame number: bots started with different ones (0, 1000000,
    /// 2000000...) can be told apart by their pictures alone.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub first_frame: u32,
    #[arg(long, value_enum, default_value = "vp8")]
    pub codec: VideoCodecArg,
    /// Tone frequency of the synthetic microphone, in Hz.
    #[arg(long, value_name = "HZ", default_value_t = 440.0)]
    pub tone: f64,
    /// Whose streams to receive: `all`, `none`, or identities.
    #[arg(long, value_name = "all|none|IDENTITY,...", default_value = "all", value_delimiter = ',')]
    pub subscribe: Vec<String>,
    /// Simulcast layer to ask for.
    #[arg(long, value_enum, default_value = "high")]
    pub quality: QualityArg,
    /// Change the requested quality during the run: `QUALITY@SECONDS` after joining.
    #[arg(long, value_name = "QUALITY@SECONDS", value_parser = parse_quality_change)]
    pub quality_change: Option<(QualityArg, Duration)>,
    /// Censor this identity's tracks once they are published (needs moderator rights).
    #[arg(long, value_name = "IDENTITY")]
    pub censor: Option<String>,
    /// Lift the censorship this many seconds after it took effect.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, requires = "censor")]
    pub uncensor_after: Option<Duration>,
    /// Do something at a time after joining: `SECONDS:ACTION`, repeatable. Actions:
    /// `mute=audio|video`, `unmute=audio|video`, `quality=low|medium|high`,
    /// `receive=audio|video|both|none` (what to receive of the subscribed streams),
    /// `censor=IDENTITY`, `uncensor=IDENTITY`, `unpublish`, `publish`,
    /// `audio_only=on|off`, `mic=DEVICE`, `speaker=DEVICE` (switched live); running the
    /// meeting: `raise_hand`, `lower_hand`, `react=NAME` (thumbs_up, clap, heart,
    /// laugh, surprised, celebrate), and for moderators `lock`, `unlock`,
    /// `end_for_all`, `mute_all`, `mute=IDENTITY:audio|video`,
    /// `ask_unmute=IDENTITY:audio|video`, `lower_hand=IDENTITY`,
    /// `admit=IDENTITY|all`, `deny=IDENTITY|all`, `promote=IDENTITY`,
    /// `demote=IDENTITY`, `kick=IDENTITY`, `breakouts=N` (set up N rooms, spread
    /// everyone evenly, open), `close_breakouts[=SECONDS]`, `move=IDENTITY:N|main`,
    /// `message_breakouts=TEXT`; and `join_breakout=N|main` where choosing is allowed.
    #[arg(long = "at", value_name = "SECONDS:ACTION", value_parser = parse_timed_action)]
    pub at: Vec<(Duration, BotAction)>,
    /// Unmute (or start the camera) when a moderator asks to (`unmute_requested`).
    #[arg(long)]
    pub accept_unmute: bool,
    /// Audio only, as on a weak link: no video is received or published (with
    /// --publish, only the tone). Switch in the call with `--at SECONDS:audio_only=off`.
    #[arg(long)]
    pub audio_only: bool,
    /// Also publish a data track in stream `main`, sending a small message every 100 ms.
    #[arg(long)]
    pub data: bool,
    /// Ask for network metrics about these participants (`all` for everyone, this bot
    /// included); they arrive as `network_metrics` lines every 2 s.
    #[arg(long, value_name = "all|IDENTITY,...", value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Bind media (UDP) to this local address.
    #[arg(long, value_name = "IP")]
    pub media_ip: Option<std::net::IpAddr>,
    /// Renew the join token with this refresh token (from `token create --json` or an
    /// invite exchange) for as long as the bot runs.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CONFER_REFRESH_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub refresh_token: Option<String>,
    /// Media through the server's TURN relays only (relay candidates), never directly.
    #[arg(long)]
    pub force_relay: bool,
    /// Write a JSON report of what was received to this file when the bot ends.
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,
    /// Publish this microphone (`default`: the system's, followed as it changes)
    /// instead of the synthetic tone; it goes through echo cancellation, noise
    /// suppression and gain control.
    #[arg(long, value_name = "DEVICE|default")]
    pub mic: Option<String>,
    /// Play what is received on this output (`default`: the system's).
    #[arg(long, value_name = "DEVICE|default")]
    pub speaker: Option<String>,
    /// Publish this camera instead of the synthetic pattern.
    #[arg(long, value_name = "INDEX")]
    pub camera: Option<u32>,
    /// Share this monitor (0 is the first) as stream `screen`.
    #[arg(long, value_name = "MONITOR")]
    pub screen: Option<usize>,
    /// Frame rate of the screen share: few frames, full resolution, legible text.
    #[arg(long, value_name = "FPS", default_value_t = 5)]
    pub screen_fps: u32,
    /// Microphone without echo cancellation.
    #[arg(long)]
    pub no_aec: bool,
    /// Music mode: microphone without any processing.
    #[arg(long)]
    pub music: bool,
    /// Report the level of these frequencies in each received audio track
    /// (`tone_levels_db`), over its last two seconds.
    #[arg(long, value_name = "HZ,...", value_delimiter = ',')]
    pub probe_tones: Vec<f64>,
    /// Write the last decoded frame of each received video track to this directory
    /// (PPM images) when the bot ends.
    #[arg(long, value_name = "DIR")]
    pub snapshot: Option<std::path::PathBuf>,
}

/// A timed action of `--at`.
#[derive(Debug, Clone, PartialEq)]
pub enum BotAction {
    Mute(MediaKindArg),
    Unmute(MediaKindArg),
    Quality(QualityArg),
    Receive {
        audio: bool,
        video: bool,
    },
    Censor(String),
    Uncensor(String),
    Unpublish,
    Publish,
    /// Audio only on or off.
    AudioOnly(bool),
    /// Move the microphone (`--mic`) to another device, live.
    Mic(String),
    /// Move the speaker (`--speaker`) to another device, live.
    Speaker(String),
    /// Running the meeting (see [`crate::host`]).
    Host(HostAction),
}

/// A meeting control of `--at`.
#[derive(Debug, Clone, PartialEq)]
pub enum HostAction {
    RaiseHand,
    /// Your own hand (`None`) or, moderating, someone's.
    LowerHand(Option<String>),
    React(confer_client::proto::signal::Reaction),
    Lock,
    Unlock,
    EndForAll,
    MuteAll,
    Mute(String, MediaKindArg),
    AskUnmute(String, MediaKindArg),
    /// An identity waiting in the lobby, or everyone (`None`).
    Admit(Option<String>),
    Deny(Option<String>),
    Promote(String),
    Demote(String),
    Kick(String),
    /// Set up this many breakout rooms, spread everyone evenly, open them.
    Breakouts(u32),
    /// Close them after this many seconds.
    CloseBreakouts(Option<u32>),
    /// Go to breakout room N (from 1), or back to the main room (`None`).
    JoinBreakout(Option<u32>),
    /// Move someone to breakout room N (from 1), or back (`None`).
    Move(String, Option<u32>),
    /// A message to every room.
    MessageBreakouts(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MediaKindArg {
    Audio,
    Video,
}

/// A breakout room as the bot's actions name it: `1`, `2`, ... or `main`.
fn breakout_room(v: &str) -> Result<Option<u32>, String> {
    if v == "main" {
        return Ok(None);
    }
    match v.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(Some(n - 1)),
        _ => Err(format!("{v:?}: a breakout room number from 1, or main")),
    }
}

fn parse_timed_action(s: &str) -> Result<(Duration, BotAction), String> {
    use clap::ValueEnum;
    let (secs, action) = s.split_once(':').ok_or_else(|| format!("{s:?} is not SECONDS:ACTION"))?;
    let at = parse_seconds(secs)?;
    let (name, value) = match action.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (action, None),
    };
    let needs = || value.filter(|v| !v.is_empty()).ok_or_else(|| format!("{name} needs a value: {name}=..."));
    // `IDENTITY:audio|video`.
    let someone_kind = || -> Result<(String, MediaKindArg), String> {
        let v = needs()?;
        let (who, kind) = v.rsplit_once(':').ok_or_else(|| format!("{name}={v}: use {name}=IDENTITY:audio|video"))?;
        Ok((who.to_owned(), MediaKindArg::from_str(kind, true)?))
    };
    let all_or = |v: &str| (v != "all").then(|| v.to_owned());
    let action = match name {
        "mute" if value.is_some_and(|v| v.contains(':')) => {
            let (who, kind) = someone_kind()?;
            BotAction::Host(HostAction::Mute(who, kind))
        }
        "mute" => BotAction::Mute(MediaKindArg::from_str(needs()?, true)?),
        "unmute" => BotAction::Unmute(MediaKindArg::from_str(needs()?, true)?),
        "quality" => BotAction::Quality(QualityArg::from_str(needs()?, true)?),
        "receive" => match needs()? {
            "audio" => BotAction::Receive { audio: true, video: false },
            "video" => BotAction::Receive { audio: false, video: true },
            "both" => BotAction::Receive { audio: true, video: true },
            "none" => BotAction::Receive { audio: false, video: false },
            other => return Err(format!("receive={other}: use audio, video, both or none")),
        },
        "censor" => BotAction::Censor(needs()?.to_owned()),
        "uncensor" => BotAction::Uncensor(needs()?.to_owned()),
        "unpublish" => BotAction::Unpublish,
        "publish" => BotAction::Publish,
        "mic" => BotAction::Mic(needs()?.to_owned()),
        "speaker" => BotAction::Speaker(needs()?.to_owned()),
        "audio_only" => match needs()? {
            "on" => BotAction::AudioOnly(true),
            "off" => BotAction::AudioOnly(false),
            other => return Err(format!("audio_only={other}: use on or off")),
        },
        "raise_hand" => BotAction::Host(HostAction::RaiseHand),
        "lower_hand" => BotAction::Host(HostAction::LowerHand(value.map(str::to_owned))),
        "react" => {
            let v = needs()?;
            let reaction = confer_client::proto::signal::Reaction::from_name(v).ok_or_else(|| {
                let names: Vec<&str> = confer_client::proto::signal::Reaction::ALL.iter().map(|r| r.name()).collect();
                format!("react={v}: use one of {}", names.join(", "))
            })?;
            BotAction::Host(HostAction::React(reaction))
        }
        "lock" => BotAction::Host(HostAction::Lock),
        "unlock" => BotAction::Host(HostAction::Unlock),
        "end_for_all" => BotAction::Host(HostAction::EndForAll),
        "mute_all" => BotAction::Host(HostAction::MuteAll),
        "ask_unmute" => {
            let (who, kind) = someone_kind()?;
            BotAction::Host(HostAction::AskUnmute(who, kind))
        }
        "admit" => BotAction::Host(HostAction::Admit(all_or(needs()?))),
        "deny" => BotAction::Host(HostAction::Deny(all_or(needs()?))),
        "promote" => BotAction::Host(HostAction::Promote(needs()?.to_owned())),
        "demote" => BotAction::Host(HostAction::Demote(needs()?.to_owned())),
        "kick" => BotAction::Host(HostAction::Kick(needs()?.to_owned())),
        "breakouts" => {
            let n: u32 = needs()?
                .parse()
                .map_err(|_| format!("breakouts={}: a number of rooms", needs().unwrap_or_default()))?;
            BotAction::Host(HostAction::Breakouts(n))
        }
        "close_breakouts" => {
            let secs =
                value.map(|v| v.parse::<u32>().map_err(|_| format!("close_breakouts={v}: seconds"))).transpose()?;
            BotAction::Host(HostAction::CloseBreakouts(secs))
        }
        "join_breakout" => BotAction::Host(HostAction::JoinBreakout(breakout_room(needs()?)?)),
        "move" => {
            let v = needs()?;
            let (who, room) = v.rsplit_once(':').ok_or_else(|| format!("move={v}: use move=IDENTITY:N|main"))?;
            BotAction::Host(HostAction::Move(who.to_owned(), breakout_room(room)?))
        }
        "message_breakouts" => BotAction::Host(HostAction::MessageBreakouts(needs()?.to_owned())),
        other => return Err(format!("unknown action {other:?}")),
    };
    Ok((at, action))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VideoCodecArg {
    Vp8,
    H264,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QualityArg {
    Low,
    Medium,
    High,
}

impl From<QualityArg> for confer_client::proto::track::Quality {
    fn from(q: QualityArg) -> Self {
        match q {
            QualityArg::Low => Self::Low,
            QualityArg::Medium => Self::Medium,
            QualityArg::High => Self::High,
        }
    }
}

fn parse_video(s: &str) -> Result<(usize, usize, u32), String> {
    let bad = || format!("{s:?} is not WxH@FPS (for example 640x360@30)");
    let (size, fps) = s.split_once('@').ok_or_else(bad)?;
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let (w, h, fps): (usize, usize, u32) =
        (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?, fps.parse().map_err(|_| bad())?);
    if w < 64 || h < 48 || w % 8 != 0 || h % 8 != 0 || w > 3840 || h > 2160 || fps == 0 || fps > 60 {
        return Err(format!("{s:?}: sizes from 64x48 to 3840x2160 in multiples of 8, 1 to 60 fps"));
    }
    Ok((w, h, fps))
}

fn parse_quality_change(s: &str) -> Result<(QualityArg, Duration), String> {
    use clap::ValueEnum;
    let (q, secs) = s.split_once('@').ok_or_else(|| format!("{s:?} is not QUALITY@SECONDS"))?;
    let q = QualityArg::from_str(q, true)?;
    Ok((q, parse_seconds(secs)?))
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a usable number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        let mut full = vec!["confer-cli"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn fails(args: &[&str]) -> bool {
        let mut full = vec!["confer-cli"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).is_err()
    }

    #[test]
    fn timed_actions_parse() {
        assert_eq!(
            parse_timed_action("5:quality=high"),
            Ok((Duration::from_secs(5), BotAction::Quality(QualityArg::High)))
        );
        assert_eq!(
            parse_timed_action("2.5:mute=audio"),
            Ok((Duration::from_millis(2500), BotAction::Mute(MediaKindArg::Audio)))
        );
        assert_eq!(
            parse_timed_action("1:receive=audio"),
            Ok((Duration::from_secs(1), BotAction::Receive { audio: true, video: false }))
        );
        assert_eq!(parse_timed_action("3:censor=bob"), Ok((Duration::from_secs(3), BotAction::Censor("bob".into()))));
        assert_eq!(parse_timed_action("4:unpublish"), Ok((Duration::from_secs(4), BotAction::Unpublish)));
        assert!(parse_timed_action("mute=audio").is_err());
        assert!(parse_timed_action("1:mute").is_err());
        assert!(parse_timed_action("1:mute=smell").is_err());
        let host = |s: &str| parse_timed_action(s).map(|(_, a)| a);
        assert_eq!(host("1:raise_hand"), Ok(BotAction::Host(HostAction::RaiseHand)));
        assert_eq!(host("1:admit=all"), Ok(BotAction::Host(HostAction::Admit(None))));
        assert_eq!(host("1:admit=carol"), Ok(BotAction::Host(HostAction::Admit(Some("carol".into())))));
        assert_eq!(host("1:mute=bob:video"), Ok(BotAction::Host(HostAction::Mute("bob".into(), MediaKindArg::Video))));
        assert_eq!(
            host("1:react=clap"),
            Ok(BotAction::Host(HostAction::React(confer_client::proto::signal::Reaction::Clap)))
        );
        assert!(host("1:react=shrug").is_err());
        assert!(host("1:ask_unmute=bob").is_err());
        assert!(host("1:promote").is_err());
        assert!(parse_timed_action("1:dance").is_err());
    }

    #[test]
    fn secrets_that_start_with_a_hyphen_are_values() {
        // Refresh tokens and invites are base64url, so one in 64 starts with '-'.
        let cli = parse(&["bot", "--token", "t", "--refresh-token", "-kQx9"]);
        let Command::Bot(args) = cli.command else { panic!("not a bot") };
        assert_eq!(args.refresh_token.as_deref(), Some("-kQx9"));
        let cli = parse(&["token", "refresh", "--refresh-token", "-abc"]);
        assert!(
            matches!(cli.command, Command::Token(TokenCommand::Refresh { refresh_token }) if refresh_token == "-abc")
        );
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&["room", "list", "--url", "ws://h:1", "--api-key", "k", "--api-secret", "s"]);
        assert_eq!(cli.url, "ws://h:1");
        assert_eq!(cli.api_key.as_deref(), Some("k"));
        let cli = parse(&["--url", "http://x", "session", "list"]);
        assert_eq!(cli.url, "http://x");
    }

    #[test]
    fn room_create_collects_repeated_options() {
        let cli = parse(&[
            "room",
            "create",
            "--name",
            "Standup",
            "--id",
            "standup",
            "--member",
            "alice",
            "--member",
            "bob",
            "--manager",
            "alice",
            "--max-participants",
            "8",
            "--public-meta",
            "hello",
            "--no-guests",
            "--audio-only",
        ]);
        let Command::Room(RoomCommand::Create(args)) = cli.command else { panic!("not room create") };
        assert_eq!(args.name, "Standup");
        assert_eq!(args.id.as_deref(), Some("standup"));
        assert_eq!(args.fields.members, ["alice", "bob"]);
        assert_eq!(args.fields.managers, ["alice"]);
        assert_eq!(args.fields.max_participants, Some(8));
        assert!(args.fields.no_guests && args.fields.audio_only);
        assert!(fails(&["room", "create"]), "--name is required");
    }

    #[test]
    fn room_update_takes_version_and_rejects_contradictions() {
        let cli = parse(&["room", "update", "r1", "--version", "3", "--name", "New", "--force"]);
        let Command::Room(RoomCommand::Update(args)) = cli.command else { panic!("not room update") };
        assert_eq!((args.id.as_str(), args.version, args.force), ("r1", 3, true));
        assert!(fails(&["room", "update", "r1"]), "--version is required");
        assert!(fails(&["room", "update", "r1", "--version", "1", "--guests", "--no-guests"]));
        assert!(fails(&["room", "update", "r1", "--version", "1", "--member", "a", "--clear-members"]));
        // `--version` of the program itself still works at the top.
        assert!(Cli::try_parse_from(["confer-cli", "--version"])
            .is_err_and(|e| e.kind() == clap::error::ErrorKind::DisplayVersion));
    }

    #[test]
    fn room_list_defaults_and_sorts() {
        let Command::Room(RoomCommand::List(args)) = parse(&["room", "list"]).command else { panic!() };
        assert_eq!((args.skip, args.limit, args.sort), (0, 20, SortArg::CreatedAsc));
        let Command::Room(RoomCommand::List(args)) =
            parse(&["room", "list", "--sort", "name_desc", "--limit", "5"]).command
        else {
            panic!()
        };
        assert_eq!(RoomSort::from(args.sort), RoomSort::NameDesc);
        assert!(fails(&["room", "list", "--sort", "sideways"]));
    }

    #[test]
    fn token_create_flags() {
        let cli = parse(&[
            "token",
            "create",
            "--room",
            "r",
            "--identity",
            "bob",
            "--ttl",
            "60",
            "--moderator",
            "--no-publish",
            "--json",
        ]);
        let Command::Token(TokenCommand::Create(args)) = cli.command else { panic!() };
        assert_eq!((args.room.as_str(), args.identity.as_str(), args.ttl), ("r", "bob", Some(60)));
        assert!(args.moderator && args.no_publish && !args.no_subscribe && args.json);
        assert!(fails(&["token", "create", "--room", "r"]), "--identity is required");
    }

    #[test]
    fn bot_options() {
        let cli = parse(&[
            "bot",
            "--url",
            "ws://h:1/v1/signal",
            "--token",
            "T",
            "--room",
            "r",
            "--send-message",
            "hi",
            "--to",
            "bob,carol",
            "--wait-for",
            "bob,carol",
            "--kick",
            "dave",
            "--duration",
            "1.5",
        ]);
        assert_eq!(cli.url, "ws://h:1/v1/signal");
        let Command::Bot(args) = cli.command else { panic!() };
        assert_eq!(args.to, ["bob", "carol"]);
        assert_eq!(args.wait_for, ["bob", "carol"]);
        assert_eq!(args.kick.as_deref(), Some("dave"));
        assert_eq!(args.duration, Some(Duration::from_millis(1500)));
        assert!(fails(&["bot", "--token", "T", "--to", "bob"]), "--to needs --send-message");
        assert!(fails(&["bot", "--token", "T", "--duration", "soon"]));
        assert!(fails(&["bot", "--token", "T", "--duration", "-1"]));
    }

    #[test]
    fn session_commands() {
        let Command::Session(SessionCommand::Kick { room, participant_id }) =
            parse(&["session", "kick", "r", "PA_1"]).command
        else {
            panic!()
        };
        assert_eq!((room.as_str(), participant_id.as_str()), ("r", "PA_1"));
    }
}
