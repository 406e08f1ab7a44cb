//! Running the meeting from the app: hands, reactions, the lobby, the lock, muting
//! others and asking them to unmute, co-hosts, breakout rooms, ending for everyone,
//! audio only; and what the app does when a moderator acts on this participant.

use std::sync::Arc;

use confer_client::proto::signal::{Event, Reaction};
use confer_client::proto::track::TrackKind;
use confer_client::proto::ParticipantId;

use crate::view::{CallEvent, LocalDevice};
use crate::CallError;

use super::join::request_error;
use super::{lock, Call, Inner};

impl Call {
    /// Raises (or lowers) the local participant's hand.
    pub async fn raise_hand(&self, raised: bool) -> Result<(), CallError> {
        let room = &self.inner.room;
        let result = if raised { room.raise_hand().await } else { room.lower_hand(None).await };
        result.map_err(|e| request_error("raise_hand", &e))
    }

    /// Lowers someone else's hand (moderators).
    pub async fn lower_hand_of(&self, participant: &str) -> Result<(), CallError> {
        self.inner.room.lower_hand(Some(&participant.into())).await.map_err(|e| request_error("lower_hand", &e))
    }

    /// Sends a reaction: `thumbs_up`, `clap`, `heart`, `laugh`, `surprised`, `celebrate`.
    pub async fn react(&self, reaction: &str) -> Result<(), CallError> {
        let reaction = Reaction::from_name(reaction)
            .ok_or_else(|| CallError::new("unknown_reaction", format!("There is no reaction {reaction:?}.")))?;
        self.inner.room.react(reaction).await.map_err(|e| request_error("react", &e))
    }

    /// Lets someone in from the lobby, or everyone waiting (`None`) (moderators).
    pub async fn admit(&self, participant: Option<&str>) -> Result<(), CallError> {
        let id = participant.map(ParticipantId::from);
        self.inner.room.admit(id.as_ref()).await.map_err(|e| request_error("admit", &e))
    }

    /// Turns someone in the lobby away, or everyone waiting (`None`) (moderators).
    pub async fn deny(&self, participant: Option<&str>) -> Result<(), CallError> {
        let id = participant.map(ParticipantId::from);
        self.inner.room.deny(id.as_ref()).await.map_err(|e| request_error("deny", &e))
    }

    /// Locks the meeting (nobody new gets in) or unlocks it (moderators).
    pub async fn set_locked(&self, locked: bool) -> Result<(), CallError> {
        self.inner.room.set_locked(locked).await.map_err(|e| request_error("lock", &e))
    }

    /// Ends the meeting for everyone (moderators); the call then ends here too.
    pub async fn end_for_all(&self) -> Result<(), CallError> {
        self.inner.room.end_for_all().await.map_err(|e| request_error("end_for_all", &e))
    }

    /// Mutes every microphone but the moderators' (moderators).
    pub async fn mute_all(&self) -> Result<(), CallError> {
        self.inner.room.mute_all().await.map_err(|e| request_error("mute_all", &e))
    }

    /// Mutes someone's microphone, or (`camera`) stops their camera (moderators).
    pub async fn mute_participant(&self, participant: &str, camera: bool) -> Result<(), CallError> {
        let kind = if camera { TrackKind::Video } else { TrackKind::Audio };
        self.inner.room.mute_participant(&participant.into(), kind).await.map_err(|e| request_error("mute", &e))
    }

    /// Asks someone to unmute, or (`camera`) to start their camera (moderators).
    pub async fn ask_to_unmute(&self, participant: &str, camera: bool) -> Result<(), CallError> {
        let kind = if camera { TrackKind::Video } else { TrackKind::Audio };
        let room = &self.inner.room;
        room.request_unmute(&participant.into(), kind).await.map_err(|e| request_error("ask_to_unmute", &e))
    }

    /// Makes someone a co-host, or takes it back (the room's managers).
    pub async fn set_co_host(&self, participant: &str, co_host: bool) -> Result<(), CallError> {
        self.inner.room.set_co_host(&participant.into(), co_host).await.map_err(|e| request_error("co_host", &e))
    }

    /// Sets up `count` breakout rooms ("Room 1", ...), spreads everyone but the
    /// moderators over them at random and opens them (moderators). With `allow_choice`
    /// people may move to another room themselves.
    pub async fn open_breakouts(&self, count: u32, allow_choice: bool) -> Result<(), CallError> {
        if !(1..=50).contains(&count) {
            return Err(CallError::new("invalid_breakouts", "Choose between 1 and 50 breakout rooms."));
        }
        let room = &self.inner.room;
        let names = (1..=count).map(|i| format!("Room {i}")).collect();
        room.create_breakouts(names, allow_choice).await.map_err(|e| request_error("breakouts", &e))?;
        room.assign_breakouts(Vec::new(), true).await.map_err(|e| request_error("breakouts", &e))?;
        room.open_breakouts().await.map_err(|e| request_error("breakouts", &e))
    }

    /// Brings everyone back to the main room after `countdown_secs` (moderators).
    pub async fn close_breakouts(&self, countdown_secs: u32) -> Result<(), CallError> {
        let room = &self.inner.room;
        room.close_breakouts(Some(countdown_secs)).await.map_err(|e| request_error("breakouts", &e))
    }

    /// Goes to breakout room `room`, or back to the main room (`None`): moderators, or
    /// anyone when choosing is allowed.
    pub async fn join_breakout(&self, room: Option<u32>) -> Result<(), CallError> {
        self.inner.room.join_breakout(room).await.map_err(|e| request_error("breakouts", &e))
    }

    /// Moves someone to breakout room `room`, or to the main room (moderators).
    pub async fn move_participant(&self, participant: &str, room: Option<u32>) -> Result<(), CallError> {
        let id = ParticipantId::from(participant);
        self.inner.room.move_participant(&id, room).await.map_err(|e| request_error("breakouts", &e))
    }

    /// A message to everyone in every room of the meeting (moderators).
    pub async fn message_breakouts(&self, text: &str) -> Result<(), CallError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CallError::new("empty_message", "Type a message first."));
        }
        self.inner.room.message_breakouts(text).await.map(drop).map_err(|e| request_error("breakouts", &e))
    }

    /// Audio only (no video received or sent: the camera goes off) or back.
    pub async fn set_audio_only(&self, on: bool) -> Result<(), CallError> {
        if on && lock(&self.inner.local).camera_state == LocalDevice::On {
            self.set_camera(false).await?;
        }
        self.inner.room.set_audio_only(on).await.map_err(|e| request_error("audio_only", &e))?;
        self.inner.update();
        Ok(())
    }
}

impl Inner {
    /// The meeting's events that need more than a new view: a moderator muting this
    /// participant, asking it to unmute, and reactions.
    pub(super) async fn on_meeting(self: &Arc<Self>, event: &Event) {
        let me = self.room.local_participant().id;
        let name_of = |id: &ParticipantId| self.room.participant(id).map(|p| p.name).unwrap_or_default();
        match event {
            Event::TrackDisabled { participant_id, kind, by: Some(by), .. } if *participant_id == me => {
                // The SDK stopped sending already; the view follows.
                let who = name_of(by);
                let what = if *kind == TrackKind::Video { "camera" } else { "microphone" };
                {
                    let mut local = lock(&self.local);
                    match kind {
                        TrackKind::Audio if local.mic_state == LocalDevice::On => local.mic_state = LocalDevice::Off,
                        TrackKind::Video if local.camera_state == LocalDevice::On => {
                            local.camera = None;
                            local.camera_state = LocalDevice::Off;
                        }
                        _ => {}
                    }
                }
                (self.sink)(CallEvent::Notice {
                    code: "muted_by_moderator".into(),
                    message: format!("{who} turned your {what} off. You can turn it on again."),
                });
            }
            Event::Moved { snapshot } => {
                let message = match &snapshot.main_room {
                    Some(_) => format!("You are now in breakout room “{}”.", snapshot.room.name),
                    None => "You are back in the main room.".to_owned(),
                };
                (self.sink)(CallEvent::Notice { code: "moved".into(), message });
            }
            Event::UnmuteRequested { by, kind } => {
                (self.sink)(CallEvent::UnmuteRequested { by_name: name_of(by), camera: *kind == TrackKind::Video });
            }
            Event::Reaction { participant_id, reaction, .. } => {
                (self.sink)(CallEvent::Reaction {
                    from_id: participant_id.to_string(),
                    from_name: name_of(participant_id),
                    reaction: reaction.name().to_owned(),
                });
            }
            _ => {}
        }
    }
}
