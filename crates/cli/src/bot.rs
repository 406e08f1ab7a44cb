//! `confer-cli bot`: a headless participant that prints what it sees as JSON lines.
//!
//! Output contract (one JSON object per stdout line, flushed per line, each with an
//! `event` field): the first line is `connected` (own identity, participant id, and the
//! identities already present); then one line per SDK event, named as the SDK names
//! them, with people named by identity; then the bot's own results (`message_sent`,
//! `kick_succeeded`) or `error` lines (`request`, `code`, `name`, `message`). A refused
//! join prints one `error` line with `"request":"join"` and nothing else.
//!
//! Actions (`--send-message`, `--kick`) run once, after the connected line, as soon as
//! every `--wait-for` identity is in the room.

use std::io::Write;
use std::time::Duration;

use confer_client::proto::signal::{Event, ParticipantInfo};
use confer_client::proto::{Identity, ParticipantId};
use confer_client::{ClientError, Room, RoomEvent, RoomOptions, RoomSnapshot};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::args::BotArgs;
use crate::media::MediaPlan;
use crate::output::JsonLines;
use crate::CliError;

/// How long the bot waits for the last events after it asked to leave.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a bot run ended; see [`BotExit::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotExit {
    /// Ran to the end: duration over, stopped by a signal, or disconnected by the server.
    Finished,
    ConnectionLost,
    JoinRefused,
    RequestRefused,
}

impl BotExit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            BotExit::Finished => 0,
            BotExit::ConnectionLost => 1,
            BotExit::JoinRefused => 2,
            BotExit::RequestRefused => 3,
        }
    }
}

pub async fn run(url: &str, args: BotArgs, out: &mut JsonLines<impl Write>) -> Result<BotExit, CliError> {
    let mut options = RoomOptions::default();
    if let Some(room) = &args.room {
        options = options.with_room(room.as_str());
    }
    if let Some(name) = &args.name {
        options = options.with_name(name.as_str());
    }
    if let Some(ip) = args.media_ip {
        options = options.with_media_ip(ip);
    }
    if let Some(refresh_token) = &args.refresh_token {
        options = options.with_refresh_token(refresh_token.as_str());
    }
    options = options.with_force_relay(args.force_relay);
    options = options.with_audio_only(args.audio_only);
    let connect_started = Instant::now();
    // A room with a lobby answers the join with a wait: say so, then wait to be let in.
    let (knocking, mut knocked) = tokio::sync::oneshot::channel();
    let connect = Room::connect_through_lobby(url, &args.token, options, Some(knocking));
    tokio::pin!(connect);
    let mut waiting = false;
    let joined = loop {
        tokio::select! {
            joined = &mut connect => break joined,
            Ok(room) = &mut knocked, if !waiting => {
                waiting = true;
                out.emit_event(json!({"event": "lobby_waiting", "room": room.id, "name": room.name}))?;
            }
        }
    };
    let (room, mut events) = match joined {
        Ok(joined) => joined,
        Err(ClientError::Denied { reason }) => {
            out.emit_event(json!({"event": "denied", "reason": reason}))?;
            return Ok(BotExit::JoinRefused);
        }
        Err(error) => {
            out.emit_event(error_line("join", &error))?;
            return Ok(BotExit::JoinRefused);
        }
    };
    let joined_at = Instant::now();
    let mut plan = Plan::new(&args);
    let mut media = MediaPlan::new(&args, joined_at.into_std());
    media.join_ms = joined_at.duration_since(connect_started).as_millis() as u64;
    let mut refused = false;
    let deadline = args.duration.map(|d| Instant::now() + d);
    let stop = stop_requested();
    tokio::pin!(stop);
    let mut media_tick = tokio::time::interval(Duration::from_millis(100));
    let mut names = Names::default();

    let ended = loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break None };
                out.emit_event(names.with_identity(describe(&event), &room.state()))?;
                if event.is_final() {
                    break Some(event);
                }
                if let (true, RoomEvent::MessageReceived { text, from, .. }) = (args.echo_messages, &event) {
                    if from.id != room.local_participant().id {
                        refused |= echo(&room, text, out).await?;
                    }
                }
                if plan.is_ready(&room.state()) {
                    refused |= plan.run(&room, out).await?;
                }
                refused |= media.on_event(&room, event, out).await?;
            }
            _ = media_tick.tick() => refused |= media.on_tick(&room, out).await?,
            () = sleep_until_or_never(deadline) => break None,
            () = &mut stop => break None,
        }
    };
    media.write_report(&room).await?;
    let lost = match ended {
        Some(event) => matches!(event, RoomEvent::ConnectionLost { .. }),
        None => {
            if let Err(error) = room.disconnect().await {
                out.emit_event(error_line("leave", &error))?;
            }
            // Print what the leave produced (our own leaving, `disconnected`).
            let drain_until = Instant::now() + DRAIN_TIMEOUT;
            let mut lost = false;
            while let Ok(Some(event)) = tokio::time::timeout_at(drain_until, events.recv()).await {
                out.emit_event(describe(&event))?;
                lost |= matches!(event, RoomEvent::ConnectionLost { .. });
                // The room's last word: nothing follows it.
                if matches!(event, RoomEvent::Disconnected { .. } | RoomEvent::ConnectionLost { .. }) {
                    break;
                }
            }
            lost
        }
    };
    Ok(if refused {
        BotExit::RequestRefused
    } else if lost {
        BotExit::ConnectionLost
    } else {
        BotExit::Finished
    })
}

/// `--echo-messages`: answers a message with `re: TEXT`. Returns whether it was refused.
async fn echo(room: &Room, text: &str, out: &mut JsonLines<impl Write>) -> std::io::Result<bool> {
    let reply = format!("re: {text}");
    match room.send_message(reply.as_str(), None).await {
        Ok(message_id) => {
            out.emit_event(json!({"event": "message_sent", "message_id": message_id, "text": reply}))?;
            Ok(false)
        }
        Err(error) => {
            out.emit_event(error_line("send_message", &error))?;
            Ok(true)
        }
    }
}

/// The one-shot actions and when they may run.
struct Plan {
    wait_for: Vec<Identity>,
    message: Option<(String, Vec<Identity>)>,
    kick: Option<Identity>,
}

impl Plan {
    fn new(args: &BotArgs) -> Self {
        let identities = |list: &[String]| list.iter().map(|i| Identity::from(i.as_str())).collect::<Vec<_>>();
        Self {
            wait_for: identities(&args.wait_for),
            message: args.send_message.clone().map(|text| (text, identities(&args.to))),
            kick: args.kick.as_deref().map(Identity::from),
        }
    }

    fn is_ready(&self, state: &RoomSnapshot) -> bool {
        (self.message.is_some() || self.kick.is_some())
            && self.wait_for.iter().all(|i| state.participant_by_identity(i).is_some())
    }

    /// Runs the pending actions once. Returns whether any was refused.
    async fn run(&mut self, room: &Room, out: &mut JsonLines<impl Write>) -> std::io::Result<bool> {
        let mut refused = false;
        if let Some((text, to)) = self.message.take() {
            let state = room.state();
            match resolve(&state, &to) {
                Err(unknown) => {
                    out.emit_event(unknown_identity("send_message", &unknown))?;
                    refused = true;
                }
                Ok(ids) => {
                    let recipients = (!ids.is_empty()).then_some(ids);
                    match room.send_message(text.as_str(), recipients).await {
                        Ok(message_id) => {
                            let to: Option<Vec<&str>> =
                                (!to.is_empty()).then(|| to.iter().map(Identity::as_str).collect());
                            out.emit_event(
                                json!({"event": "message_sent", "message_id": message_id, "text": text, "to": to}),
                            )?;
                        }
                        Err(error) => {
                            out.emit_event(error_line("send_message", &error))?;
                            refused = true;
                        }
                    }
                }
            }
        }
        if let Some(identity) = self.kick.take() {
            let target = room.state().participant_by_identity(&identity).map(|p| p.id.clone());
            match target {
                None => {
                    out.emit_event(unknown_identity("kick", &identity))?;
                    refused = true;
                }
                Some(id) => match room.kick(&id).await {
                    Ok(()) => {
                        out.emit_event(json!({"event": "kick_succeeded", "identity": identity, "participant_id": id}))?
                    }
                    Err(error) => {
                        out.emit_event(error_line("kick", &error))?;
                        refused = true;
                    }
                },
            }
        }
        Ok(refused)
    }
}

/// Participant ids for identities, or the first identity not in the room.
fn resolve(state: &RoomSnapshot, identities: &[Identity]) -> Result<Vec<ParticipantId>, Identity> {
    identities.iter().map(|i| state.participant_by_identity(i).map(|p| p.id.clone()).ok_or_else(|| i.clone())).collect()
}

/// The JSON line for an SDK event.
pub fn describe(event: &RoomEvent) -> Value {
    let name = event.name();
    let who = |p: &ParticipantInfo| json!({"event": name, "identity": p.identity, "participant_id": p.id});
    match event {
        RoomEvent::Connected { snapshot } => json!({
            "event": name,
            "identity": snapshot.local.identity,
            "participant_id": snapshot.local.id,
            "name": snapshot.local.name,
            "room": snapshot.room.id,
            "participants": snapshot.remote.iter().map(|p| p.identity.as_str()).collect::<Vec<_>>(),
        }),
        RoomEvent::StateChanged(state) => json!({"event": name, "state": state}),
        RoomEvent::Disconnected { reason } => json!({"event": name, "reason": reason}),
        RoomEvent::ParticipantJoined { participant } => {
            let mut line = who(participant);
            line["name"] = json!(participant.name);
            line["role"] = json!(participant.role);
            line
        }
        RoomEvent::ParticipantLeaving { participant, reason } | RoomEvent::ParticipantLeft { participant, reason } => {
            let mut line = who(participant);
            line["reason"] = json!(reason);
            line
        }
        RoomEvent::MessageReceived { message_id, from, text, to, sent_at } => json!({
            "event": name,
            "message_id": message_id,
            "from": from.identity,
            "from_name": from.name,
            "from_participant_id": from.id,
            "text": text,
            "to": to.as_ref().map(|to| to.iter().map(|p| p.identity.as_str()).collect::<Vec<_>>()),
            "sent_at": sent_at,
        }),
        RoomEvent::RoomUpdated { room } => json!({"event": name, "room": room}),
        RoomEvent::ConnectionInterrupted { error } | RoomEvent::ConnectionLost { error } => {
            json!({"event": name, "error": error.name(), "message": error.to_string()})
        }
        RoomEvent::Reconnecting { attempt } => json!({"event": name, "attempt": attempt}),
        RoomEvent::TokenRenewed { expires_at } => json!({"event": name, "expires_at": expires_at}),
        RoomEvent::TokenRenewalFailed { error } => {
            json!({"event": name, "error": error.name(), "message": error.to_string()})
        }
        RoomEvent::MediaPathFailed { connection, error } => {
            json!({"event": name, "connection": connection, "error": error.name(), "message": error.to_string()})
        }
        RoomEvent::Reconnected { resumed } => json!({"event": name, "resumed": resumed}),
        RoomEvent::TrackSubscribed { track } => json!({
            "event": name,
            "participant_id": track.info.publisher,
            "key": track.info.key,
            "track_id": track.info.track_id,
            "kind": track.info.kind,
            "codec": track.codec,
        }),
        RoomEvent::Media { event } => {
            // A room's whole state: what a reader needs of it is where, and with whom.
            if let Event::Moved { snapshot } | Event::Admitted { snapshot } = event.as_ref() {
                return json!({
                    "event": name,
                    "room": snapshot.room.id,
                    "room_name": snapshot.room.name,
                    "main_room": snapshot.main_room,
                    "participants": snapshot.participants.iter().map(|p| p.identity.as_str()).collect::<Vec<_>>(),
                });
            }
            // The protocol's own shape, with the event name; identities are added by the caller.
            let mut line = serde_json::to_value(event.as_ref()).unwrap_or(Value::Null);
            if let Some(map) = line.as_object_mut() {
                map.insert("event".into(), json!(name));
                // Offers are long and say nothing to a reader of the log.
                map.remove("sdp");
            }
            line
        }
    }
}

/// Who is (or was) who: media events name people by id on the wire, and the lines of
/// the events that come with a departure are printed after it left the state.
#[derive(Default)]
struct Names(std::collections::HashMap<ParticipantId, Identity>);

impl Names {
    /// Adds `identity` next to a `participant_id` the line names.
    fn with_identity(&mut self, mut line: Value, state: &RoomSnapshot) -> Value {
        for p in std::iter::once(&state.local).chain(&state.remote) {
            self.0.entry(p.id.clone()).or_insert_with(|| p.identity.clone());
        }
        // People in the lobby are in no participant list.
        for k in &state.knocks {
            self.0.entry(k.participant_id.clone()).or_insert_with(|| k.identity.clone());
        }
        let id = line.get("participant_id").and_then(Value::as_str).map(|s| ParticipantId(s.to_owned()));
        if let (Some(id), Some(map)) = (id, line.as_object_mut()) {
            if !map.contains_key("identity") {
                if let Some(identity) = self.0.get(&id) {
                    map.insert("identity".into(), json!(identity));
                }
            }
        }
        line
    }
}

/// `{"event":"error","request":...,"code":...,"name":...,"message":...}`; `code` is
/// null when the server did not refuse (timeout, network, ...).
pub fn error_line(request: &str, error: &ClientError) -> Value {
    let (code, message) = match error {
        ClientError::Server(body) => (Some(body.code.number()), body.message.clone()),
        other => (None, other.to_string()),
    };
    json!({"event": "error", "request": request, "code": code, "name": error.name(), "message": message})
}

fn unknown_identity(request: &str, identity: &Identity) -> Value {
    json!({
        "event": "error",
        "request": request,
        "code": null,
        "name": "unknown_identity",
        "message": format!("no participant with identity \"{identity}\" is in the room"),
    })
}

/// Resolves on Ctrl-C, or SIGTERM on Unix, so that `kill` also makes the bot leave
/// cleanly. If no handler can be installed it never resolves: the bot then runs until
/// its duration ends or the server disconnects it.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => return,
                    () = ctrl_c() => return,
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM"),
        }
    }
    ctrl_c().await
}

async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confer_client::proto::signal::{DisconnectReason, LeaveReason, Role};
    use confer_client::proto::{ErrorBody, ErrorCode};

    fn info(id: &str, identity: &str) -> ParticipantInfo {
        ParticipantInfo {
            id: id.into(),
            identity: identity.into(),
            name: identity.into(),
            context: Value::Null,
            role: Role::Member,
            can_receive_messages: true,
            joined_at: 0,
            streams: Vec::new(),
        }
    }

    #[test]
    fn lines_name_people_by_identity() {
        let line = describe(&RoomEvent::MessageReceived {
            message_id: "m".into(),
            from: info("p1", "alice"),
            text: "hi".into(),
            to: Some(vec![info("p2", "bob")]),
            sent_at: 1,
        });
        assert_eq!(line["event"], "message_received");
        assert_eq!(line["from"], "alice");
        assert_eq!(line["to"], json!(["bob"]));
        assert_eq!(line["text"], "hi");

        let broadcast = describe(&RoomEvent::MessageReceived {
            message_id: "m".into(),
            from: info("p1", "alice"),
            text: "all".into(),
            to: None,
            sent_at: 1,
        });
        assert_eq!(broadcast["to"], Value::Null);

        let line = describe(&RoomEvent::ParticipantLeaving {
            participant: info("p3", "carol"),
            reason: Some(LeaveReason::Kicked),
        });
        assert_eq!(
            line,
            json!({"event": "participant_leaving", "identity": "carol", "participant_id": "p3", "reason": "kicked"})
        );

        let line = describe(&RoomEvent::ParticipantJoined { participant: info("p2", "bob") });
        assert_eq!((line["event"].as_str(), line["name"].as_str()), (Some("participant_joined"), Some("bob")));

        let line = describe(&RoomEvent::Disconnected { reason: DisconnectReason::Kicked });
        assert_eq!(line, json!({"event": "disconnected", "reason": "kicked"}));
        assert_eq!(describe(&RoomEvent::Reconnecting { attempt: 2 })["attempt"], 2);
    }

    #[test]
    fn error_lines_carry_the_catalog_code() {
        let refused = ClientError::Server(ErrorBody::from(ErrorCode::PermissionDenied));
        let line = error_line("kick", &refused);
        assert_eq!(line["event"], "error");
        assert_eq!(line["request"], "kick");
        assert_eq!(line["code"], 2004);
        assert_eq!(line["name"], "permission_denied");
        let line = error_line("join", &ClientError::Timeout(Duration::from_secs(1)));
        assert_eq!((line["code"].clone(), line["name"].as_str()), (Value::Null, Some("timeout")));
    }

    fn snapshot(remote: Vec<ParticipantInfo>) -> RoomSnapshot {
        use confer_client::proto::room::{RoomInfo, RoomPolicy};
        use confer_client::proto::signal::SignalLimits;
        RoomSnapshot {
            room: RoomInfo {
                id: "r".into(),
                name: "R".into(),
                public_meta: Default::default(),
                policy: RoomPolicy::default(),
                version: 1,
            },
            local: info("p0", "bot"),
            remote,
            connection_state: confer_client::ConnectionState::Connected,
            token_expires_at: 0,
            ice_servers: vec![],
            limits: SignalLimits {
                max_message_bytes: 1,
                requests_per_second: 1,
                burst: 1,
                ping_interval_ms: 1,
                resume_grace_ms: 1,
            },
            locked: false,
            hands: vec![],
            knocks: vec![],
            breakouts: None,
            main_room: None,
        }
    }

    #[test]
    fn actions_wait_for_their_people() {
        let plan = Plan {
            wait_for: vec!["bob".into(), "carol".into()],
            message: Some(("hi".into(), vec!["bob".into()])),
            kick: None,
        };
        assert!(!plan.is_ready(&snapshot(vec![info("p1", "bob")])));
        let full = snapshot(vec![info("p1", "bob"), info("p2", "carol")]);
        assert!(plan.is_ready(&full));
        assert_eq!(resolve(&full, &["carol".into(), "bob".into()]), Ok(vec!["p2".into(), "p1".into()]));
        assert_eq!(resolve(&full, &["dave".into()]), Err("dave".into()));
        let idle = Plan { wait_for: vec![], message: None, kick: None };
        assert!(!idle.is_ready(&full), "nothing to do is never ready");
    }

    #[test]
    fn exit_codes() {
        let codes: Vec<u8> =
            [BotExit::Finished, BotExit::ConnectionLost, BotExit::JoinRefused, BotExit::RequestRefused]
                .map(BotExit::code)
                .into();
        assert_eq!(codes, [0, 1, 2, 3]);
    }
}
