//! What the view is told: the call projected into a [`CallView`].

use confer_client::proto::signal::{JoinVia, ParticipantInfo, Role};
use confer_client::proto::track::TrackKind;

use crate::view::{
    BreakoutRoomView, BreakoutsView, CallEvent, CallView, Connection, KnockView, LocalDevice, ParticipantView, TileInfo,
};

use super::remote::is_screen;
use super::{lock, tile_of, Inner, LOCAL_TILE};

impl Inner {
    /// Sends the whole view to the view.
    pub(super) fn update(&self) {
        (self.sink)(CallEvent::Updated { view: self.view() });
    }

    pub(super) fn view(&self) -> CallView {
        let state = self.room.state();
        let local = lock(&self.local);
        let mut remote = lock(&self.remote);
        let me = &state.local;
        // Names of everyone seen, for the breakout rooms' lists (people in another room
        // are not in this room's state).
        for p in state.remote.iter().chain([me]) {
            remote.names.insert(p.id.to_string(), p.name.clone());
        }
        let person = |p: &ParticipantInfo, is_local: bool| {
            let id = p.id.to_string();
            let track = |kind: TrackKind| {
                p.streams.iter().filter(|s| s.key == "main").flat_map(|s| &s.tracks).find(|t| t.kind == kind)
            };
            let off = |kind: TrackKind| track(kind).is_none_or(|t| t.muted || t.censored);
            let (mic_muted, camera_off, tiles) = if is_local {
                // What this app publishes, as it knows it (its own screen is not shown
                // back to it: the view says "you are sharing" instead).
                let has_camera = local.main.as_ref().is_some_and(|s| s.track(TrackKind::Video).is_some());
                let tiles = has_camera
                    .then(|| TileInfo { tile: LOCAL_TILE.to_owned(), key: "main".into(), screen: false })
                    .into_iter()
                    .collect();
                (local.mic_state != LocalDevice::On, local.camera_state != LocalDevice::On, tiles)
            } else {
                let tiles = p
                    .streams
                    .iter()
                    .filter(|s| s.tracks.iter().any(|t| t.kind == TrackKind::Video))
                    .map(|s| TileInfo { tile: tile_of(&p.id, &s.key), key: s.key.clone(), screen: is_screen(s) })
                    .collect();
                (off(TrackKind::Audio), off(TrackKind::Video), tiles)
            };
            ParticipantView {
                speaking: remote.speaking.contains(&id),
                network_quality: remote.quality.get(&id).copied().unwrap_or(0),
                identity: p.identity.0.clone(),
                name: p.name.clone(),
                local: is_local,
                moderator: p.role.moderates(),
                co_host: p.role == Role::CoHost,
                guest: p.role == Role::Guest,
                hand_raised: state.hands.iter().any(|h| h.participant_id == p.id),
                mic_muted,
                camera_off,
                tiles,
                id,
            }
        };
        let mut participants = vec![person(me, true)];
        participants.extend(state.remote.iter().map(|p| person(p, false)));
        CallView {
            room: state.room.id.to_string(),
            room_name: state.room.name.clone(),
            me: me.id.to_string(),
            moderator: me.role.moderates(),
            participants,
            active_speaker: remote.active_speaker.clone(),
            connection: if remote.reconnecting { Connection::Reconnecting } else { Connection::Connected },
            microphone: local.mic_state,
            camera: local.camera_state,
            sharing_screen: local.screen.is_some(),
            invite_link: self.invite_link.clone(),
            locked: state.locked,
            audio_only: self.room.is_audio_only(),
            hands: state.hands.iter().map(|h| h.participant_id.to_string()).collect(),
            knocks: state
                .knocks
                .iter()
                .map(|k| KnockView {
                    id: k.participant_id.to_string(),
                    name: k.name.clone(),
                    guest: k.via == JoinVia::Invite,
                })
                .collect(),
            breakouts: state.breakouts.as_ref().map(|b| BreakoutsView {
                rooms: b
                    .rooms
                    .iter()
                    .enumerate()
                    .map(|(i, r)| BreakoutRoomView {
                        name: r.name.clone(),
                        members: b
                            .assignments
                            .iter()
                            .filter(|a| a.room as usize == i)
                            .map(|a| remote.names.get(a.participant_id.as_str()).cloned().unwrap_or_default())
                            .collect(),
                    })
                    .collect(),
                open: b.open,
                allow_choice: b.allow_choice,
                closes_at: b.closes_at.map(|t| t as f64),
                current: b.rooms.iter().position(|r| r.id == state.room.id).map(|i| i as u32),
            }),
        }
    }
}
