//! The bot running a meeting: the host controls, hands and reactions of `--at`, by
//! identity (the wire speaks participant ids).

use std::io::Write;

use confer_client::proto::track::TrackKind;
use confer_client::proto::{Identity, ParticipantId};
use confer_client::{ClientError, Room};
use serde_json::{json, Value};

use crate::args::{HostAction, MediaKindArg};
use crate::bot::error_line;
use crate::output::JsonLines;

/// Does `action`; prints `action_done` (with the action's name and whom it was about)
/// or the server's refusal. Returns whether it was refused.
pub async fn act(
    room: &Room,
    action: HostAction,
    at_ms: u64,
    out: &mut JsonLines<impl Write>,
) -> std::io::Result<bool> {
    let (name, about, result) = run(room, &action).await;
    match result {
        Ok(()) => {
            out.emit_event(json!({"event": "action_done", "action": name, "identity": about, "at_ms": at_ms}))?;
            Ok(false)
        }
        Err(error) => {
            let mut line = error_line(name, &error);
            line["identity"] = json!(about);
            out.emit_event(line)?;
            Ok(true)
        }
    }
}

async fn run(room: &Room, action: &HostAction) -> (&'static str, Value, Result<(), ClientError>) {
    let someone = |identity: &str| -> Result<ParticipantId, ClientError> {
        room.participant_by_identity(&Identity::from(identity))
            .map(|p| p.id)
            .ok_or_else(|| not_here(&format!("{identity} is not in the room")))
    };
    let waiting = |identity: &Option<String>| -> Result<Option<ParticipantId>, ClientError> {
        let Some(identity) = identity else { return Ok(None) };
        let state = room.state();
        let knock = state.knocks.iter().find(|k| k.identity.as_str() == identity);
        knock.map(|k| Some(k.participant_id.clone())).ok_or_else(|| not_here(&format!("{identity} is not waiting")))
    };
    let who = |identity: &Option<String>| identity.as_deref().map_or(Value::Null, |i| json!(i));
    match action {
        HostAction::RaiseHand => ("raise_hand", Value::Null, room.raise_hand().await),
        HostAction::LowerHand(identity) => {
            let result = match identity.as_deref().map(someone).transpose() {
                Ok(target) => room.lower_hand(target.as_ref()).await,
                Err(e) => Err(e),
            };
            ("lower_hand", who(identity), result)
        }
        HostAction::React(reaction) => ("react", Value::Null, room.react(*reaction).await),
        HostAction::Lock => ("lock", Value::Null, room.set_locked(true).await),
        HostAction::Unlock => ("unlock", Value::Null, room.set_locked(false).await),
        HostAction::EndForAll => ("end_for_all", Value::Null, room.end_for_all().await),
        HostAction::MuteAll => ("mute_all", Value::Null, room.mute_all().await),
        HostAction::Mute(identity, kind) => {
            let result = match someone(identity) {
                Ok(id) => room.mute_participant(&id, track_kind(*kind)).await,
                Err(e) => Err(e),
            };
            ("mute_participant", json!(identity), result)
        }
        HostAction::AskUnmute(identity, kind) => {
            let result = match someone(identity) {
                Ok(id) => room.request_unmute(&id, track_kind(*kind)).await,
                Err(e) => Err(e),
            };
            ("request_unmute", json!(identity), result)
        }
        HostAction::Admit(identity) => {
            let result = match waiting(identity) {
                Ok(target) => room.admit(target.as_ref()).await,
                Err(e) => Err(e),
            };
            ("admit", who(identity), result)
        }
        HostAction::Deny(identity) => {
            let result = match waiting(identity) {
                Ok(target) => room.deny(target.as_ref()).await,
                Err(e) => Err(e),
            };
            ("deny", who(identity), result)
        }
        HostAction::Promote(identity) | HostAction::Demote(identity) => {
            let promote = matches!(action, HostAction::Promote(_));
            let result = match someone(identity) {
                Ok(id) => room.set_co_host(&id, promote).await,
                Err(e) => Err(e),
            };
            (if promote { "promote" } else { "demote" }, json!(identity), result)
        }
        HostAction::Breakouts(n) => {
            let names = (1..=*n).map(|i| format!("Room {i}")).collect();
            let mut result = room.create_breakouts(names, false).await;
            if result.is_ok() {
                result = room.assign_breakouts(Vec::new(), true).await;
            }
            if result.is_ok() {
                result = room.open_breakouts().await;
            }
            ("breakouts", Value::Null, result)
        }
        HostAction::CloseBreakouts(secs) => ("close_breakouts", Value::Null, room.close_breakouts(*secs).await),
        HostAction::JoinBreakout(index) => ("join_breakout", Value::Null, room.join_breakout(*index).await),
        HostAction::Move(identity, index) => {
            let result = match someone(identity) {
                Ok(id) => room.move_participant(&id, *index).await,
                Err(e) => Err(e),
            };
            ("move_participant", json!(identity), result)
        }
        HostAction::MessageBreakouts(text) => {
            ("message_breakouts", Value::Null, room.message_breakouts(text.as_str()).await.map(|_| ()))
        }
        HostAction::Kick(identity) => {
            let result = match someone(identity) {
                Ok(id) => room.kick(&id).await,
                Err(e) => Err(e),
            };
            ("kick", json!(identity), result)
        }
    }
}

fn track_kind(kind: MediaKindArg) -> TrackKind {
    match kind {
        MediaKindArg::Audio => TrackKind::Audio,
        MediaKindArg::Video => TrackKind::Video,
    }
}

/// A target that is not there: refused here, as the server would refuse an unknown id.
fn not_here(message: &str) -> ClientError {
    ClientError::Server(confer_client::proto::ErrorBody::new(
        confer_client::proto::ErrorCode::ParticipantNotFound,
        message,
    ))
}
