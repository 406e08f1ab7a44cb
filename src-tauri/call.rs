//! The call commands and events: a thin layer over `confer_app_core::call`, which
//! holds the logic (and builds and tests without Tauri).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use confer_app_core::call::{Call, EventSink, HostAccess, JoinRequest, MediaSettings};
use confer_app_core::frames::FrameHub;
use confer_app_core::host::HostedServer;
use confer_app_core::link::{Access, JoinTarget};
use confer_app_core::preview::Preview;
use confer_app_core::publish::VideoSource;
use confer_app_core::settings::{TEST_PATTERN, TEST_TONE};
use confer_app_core::view::{CallEvent, CallView, ChatMessage, EndReason, TileWant};
use confer_app_core::CallError;
use confer_media::video::ScreenSource;
use serde::{Deserialize, Serialize};
use tauri::Manager;
use tauri_specta::Event;
use tokio::sync::Mutex;

use crate::ipc::AppError;

impl From<CallError> for AppError {
    fn from(e: CallError) -> Self {
        AppError { code: e.code, message: e.message }
    }
}

/// Everything a call needs that outlives one command.
pub struct CallState {
    pub hub: Arc<FrameHub>,
    call: Mutex<Option<Call>>,
    preview: std::sync::Mutex<Option<Preview>>,
    /// Bumped by every start and stop of the preview: a preview whose devices finish
    /// opening after a newer start or a stop is closed at once, not kept.
    preview_turn: AtomicU64,
    host: Mutex<Option<HostedServer>>,
    /// Meetings this app hosts: room id -> how to let its host in.
    meetings: std::sync::Mutex<HashMap<String, HostAccess>>,
}

impl CallState {
    pub fn new(hub: Arc<FrameHub>) -> Self {
        Self {
            hub,
            call: Mutex::new(None),
            preview: std::sync::Mutex::new(None),
            preview_turn: AtomicU64::new(0),
            host: Mutex::new(None),
            meetings: std::sync::Mutex::default(),
        }
    }
}

/// Something happened in the call (see `CallEvent`).
#[derive(Debug, Clone, Serialize, specta::Type, Event)]
pub struct CallUpdate(pub CallEvent);

/// Devices came or went: the lists as they are now.
#[derive(Debug, Clone, Serialize, specta::Type, Event)]
pub struct DevicesChanged(pub DeviceList);

/// The pre-join microphone meter: 0.0 (silence) to 1.0.
#[derive(Debug, Clone, Serialize, specta::Type, Event)]
pub struct MicLevel(pub f32);

#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct DeviceOption {
    pub id: String,
    pub name: String,
    pub is_default: bool,
}

#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct DeviceList {
    pub microphones: Vec<DeviceOption>,
    pub speakers: Vec<DeviceOption>,
    pub cameras: Vec<DeviceOption>,
    /// Monitors (`monitor:N`) and windows (`window:ID`) that can be shared.
    pub screens: Vec<DeviceOption>,
}

#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct PreviewInfo {
    pub camera_missing: bool,
    pub microphone_missing: bool,
}

#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct HostedMeeting {
    pub server: String,
    pub room: String,
    pub invite_link: String,
    /// Set when the invite link does not reach everyone (a private or no network), and
    /// what to do about it.
    pub reach_note: Option<String>,
}

#[derive(Debug, Clone, Deserialize, specta::Type)]
pub struct JoinForm {
    /// The server to use when the link names none.
    pub server: String,
    pub name: String,
    /// A join link, or a room id.
    pub link: String,
    pub media: MediaSettings,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Microphones, speakers, cameras (with the test tone and pattern) and screens.
#[tauri::command]
#[specta::specta]
pub async fn list_devices() -> DeviceList {
    tauri::async_runtime::spawn_blocking(|| device_list(confer_media::devices::DeviceManager::new().devices()))
        .await
        .unwrap_or(DeviceList { microphones: vec![], speakers: vec![], cameras: vec![], screens: vec![] })
}

fn device_list(devices: confer_media::devices::Devices) -> DeviceList {
    // "Default" names what the default choice opens: the test tone and pattern
    // when the environment forces them (test machines), else the system's devices.
    let defaults = MediaSettings::default();
    let tone_forced = defaults.microphone_tone().is_some();
    let mut microphones: Vec<DeviceOption> = devices
        .microphones
        .into_iter()
        .map(|d| DeviceOption { id: d.id, name: d.name, is_default: d.is_default && !tone_forced })
        .collect();
    microphones.push(DeviceOption { id: TEST_TONE.into(), name: "Test tone".into(), is_default: tone_forced });
    let speakers = devices
        .speakers
        .into_iter()
        .map(|d| DeviceOption { id: d.id, name: d.name, is_default: d.is_default })
        .collect();
    let default_camera = defaults.video_source();
    let mut cameras: Vec<DeviceOption> = devices
        .cameras
        .iter()
        .map(|c| DeviceOption {
            id: c.index.to_string(),
            name: c.name.clone(),
            is_default: default_camera == Some(VideoSource::Camera(c.index)),
        })
        .collect();
    cameras.push(DeviceOption {
        id: TEST_PATTERN.into(),
        name: "Test pattern".into(),
        is_default: default_camera == Some(VideoSource::Pattern),
    });
    let screens = confer_media::video::screen::list()
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let id = match s.source {
                ScreenSource::Monitor(i) => format!("monitor:{i}"),
                ScreenSource::Window(w) => format!("window:{w}"),
            };
            DeviceOption { id, name: format!("{} ({}x{})", s.name, s.width, s.height), is_default: s.primary }
        })
        .collect();
    DeviceList { microphones, speakers, cameras, screens }
}

/// How often devices are looked for: platforms mostly give no signal when one comes or
/// goes, and a headset plugged in should show in a couple of seconds.
const DEVICE_LOOK: std::time::Duration = std::time::Duration::from_secs(2);

/// Looks for devices coming and going for as long as the app runs: the view's pickers
/// follow ([`DevicesChanged`]), and a call whose device went away falls back to the
/// default and says so.
pub fn watch_devices(app: tauri::AppHandle) {
    tauri::async_runtime::spawn(async move {
        let manager = tauri::async_runtime::spawn_blocking(confer_media::devices::DeviceManager::new).await;
        let Ok(manager) = manager else { return };
        let manager = Arc::new(std::sync::Mutex::new(manager));
        loop {
            tokio::time::sleep(DEVICE_LOOK).await;
            let looked = manager.clone();
            let polled = tauri::async_runtime::spawn_blocking(move || {
                let mut m = lock(&looked);
                let changes = m.poll();
                (changes, m.devices())
            })
            .await;
            let Ok((changes, devices)) = polled else { return };
            if changes.is_empty() {
                continue;
            }
            tracing::info!(?changes, "devices changed");
            if let Err(e) = DevicesChanged(device_list(devices)).emit(&app) {
                tracing::warn!(error = %e, "the view was not told of changed devices");
            }
            let state = app.state::<CallState>();
            let call = state.call.lock().await;
            if let Some(call) = call.as_ref() {
                call.devices_changed(&changes).await;
            }
        }
    });
}

/// Starts the camera preview (tile `preview`) and the `MicLevel` meter. Opening the
/// devices blocks for a moment, so it runs off the main thread.
#[tauri::command]
#[specta::specta]
pub async fn start_preview(
    media: MediaSettings,
    app: tauri::AppHandle,
    state: tauri::State<'_, CallState>,
) -> Result<PreviewInfo, AppError> {
    let (turn, previous) = stop(&state);
    if let Some(previous) = previous {
        close_in_background(previous);
    }
    let (emitter, hub) = (app.clone(), state.hub.clone());
    let (running, missing) = tauri::async_runtime::spawn_blocking(move || {
        Preview::start(&media, hub, move |level| {
            let _ = MicLevel(level).emit(&emitter);
        })
    })
    .await
    .map_err(|e| AppError::new("preview_failed", e.to_string()))?;
    let mut slot = lock(&state.preview);
    if state.preview_turn.load(Ordering::SeqCst) == turn {
        *slot = Some(running);
    } else {
        drop(slot);
        close_in_background(running);
    }
    Ok(PreviewInfo { camera_missing: missing.camera, microphone_missing: missing.microphone })
}

/// Ends the preview's turn (a start still opening its devices will not be kept) and
/// takes the running preview; returns the new turn.
fn stop(state: &CallState) -> (u64, Option<Preview>) {
    let mut slot = lock(&state.preview);
    (state.preview_turn.fetch_add(1, Ordering::SeqCst) + 1, slot.take())
}

/// Closing devices takes a moment: not on the caller's (maybe the main) thread.
fn close_in_background(preview: Preview) {
    tauri::async_runtime::spawn_blocking(move || drop(preview));
}

#[tauri::command]
#[specta::specta]
pub fn stop_preview(state: tauri::State<'_, CallState>) {
    if let (_, Some(preview)) = stop(&state) {
        close_in_background(preview);
    }
}

/// Starts the room server inside the app (once) and creates a meeting on it.
#[tauri::command]
#[specta::specta]
pub async fn host_meeting(
    title: String,
    app: tauri::AppHandle,
    state: tauri::State<'_, CallState>,
) -> Result<HostedMeeting, AppError> {
    let mut host = state.host.lock().await;
    if host.is_none() {
        let dir = app.path().app_data_dir().map_err(|e| AppError::new("host_failed", e.to_string()))?;
        std::fs::create_dir_all(&dir).map_err(|e| AppError::new("host_failed", e.to_string()))?;
        let db = dir.join("hosted-rooms.sqlite3").to_string_lossy().into_owned();
        *host = Some(HostedServer::start(db).await?);
    }
    let server = host.as_ref().expect("started above");
    let meeting = server.create_meeting(&title).await?;
    let hosted = HostedMeeting {
        server: server.url().to_owned(),
        room: meeting.room.clone(),
        invite_link: meeting.access.invite_link.clone(),
        reach_note: server.reach().note(server.url()),
    };
    lock(&state.meetings).insert(meeting.room, meeting.access);
    Ok(hosted)
}

/// Joins a call; its events arrive as `CallUpdate`.
#[tauri::command]
#[specta::specta]
pub async fn join_call(
    form: JoinForm,
    app: tauri::AppHandle,
    state: tauri::State<'_, CallState>,
) -> Result<CallView, AppError> {
    let target = JoinTarget::parse(&form.link)?;
    let host = match target.access {
        Access::RoomOnly => lock(&state.meetings).get(&target.room).cloned(),
        _ => None,
    };
    let mut slot = state.call.lock().await;
    if let Some(previous) = slot.take() {
        previous.leave().await;
    }
    // The call opens the same devices: the preview lets go of them first.
    if let Some(preview) = stop(&state).1 {
        let _ = tauri::async_runtime::spawn_blocking(move || drop(preview)).await;
    }
    let emitter = app.clone();
    let sink: EventSink = Arc::new(move |event| {
        crate::desktop::call_event(&emitter, &event);
        if let Err(e) = CallUpdate(event).emit(&emitter) {
            tracing::warn!(error = %e, "a call event did not reach the view");
        }
    });
    let request = JoinRequest { server: form.server, name: form.name, target, media: form.media, host };
    let call = Call::join(request, state.hub.clone(), sink).await?;
    let view = call.view();
    *slot = Some(call);
    crate::desktop::call_started(&app, &view);
    Ok(view)
}

#[tauri::command]
#[specta::specta]
pub async fn leave_call(app: tauri::AppHandle, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    if let Some(call) = state.call.lock().await.take() {
        call.leave().await;
    }
    crate::desktop::call_ended(&app);
    Ok(())
}

/// Leaves the call from outside the view (the tray); the view is told it ended.
pub async fn leave_from_outside(app: &tauri::AppHandle) {
    let Some(call) = app.state::<CallState>().call.lock().await.take() else { return };
    call.leave().await;
    let ended = CallEvent::ended(EndReason::Left);
    crate::desktop::call_event(app, &ended);
    if let Err(e) = CallUpdate(ended).emit(app) {
        tracing::warn!(error = %e, "the view was not told the call ended");
    }
}

/// Runs `f` on the current call, or says there is none.
pub(crate) async fn with_call<T>(
    state: &CallState,
    f: impl AsyncFnOnce(&Call) -> Result<T, CallError>,
) -> Result<T, AppError> {
    let call = state.call.lock().await;
    let call = call.as_ref().ok_or_else(|| AppError::new("not_in_call", "You are not in a call."))?;
    Ok(f(call).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn set_microphone(on: bool, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.set_microphone(on).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn set_camera(on: bool, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.set_camera(on).await).await
}

/// Moves the call to the microphone, speaker and camera the settings name, live.
#[tauri::command]
#[specta::specta]
pub async fn use_devices(media: MediaSettings, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.use_devices(&media).await).await
}

/// Shares `monitor:N` or `window:ID`; `null` stops sharing.
#[tauri::command]
#[specta::specta]
pub async fn share_screen(source: Option<String>, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    let source = match source.as_deref() {
        None => None,
        Some(s) => {
            Some(parse_screen(s).ok_or_else(|| AppError::new("invalid_source", format!("No such screen: {s}")))?)
        }
    };
    with_call(&state, async |c| c.share_screen(source).await).await
}

fn parse_screen(id: &str) -> Option<ScreenSource> {
    let (kind, n) = id.split_once(':')?;
    match kind {
        "monitor" => n.parse().ok().map(ScreenSource::Monitor),
        "window" => n.parse().ok().map(ScreenSource::Window),
        _ => None,
    }
}

/// Sends a chat message to everyone (`to` null) or to one participant.
#[tauri::command]
#[specta::specta]
pub async fn send_chat(
    text: String,
    to: Option<String>,
    state: tauri::State<'_, CallState>,
) -> Result<ChatMessage, AppError> {
    with_call(&state, async |c| c.send_chat(&text, to).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn kick(participant: String, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.kick(&participant).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn censor(participant: String, censored: bool, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.censor(&participant, censored).await).await
}

// Running the meeting (see `confer_app_core::call::meeting`).

#[tauri::command]
#[specta::specta]
pub async fn raise_hand(raised: bool, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.raise_hand(raised).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn lower_hand_of(participant: String, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.lower_hand_of(&participant).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn react(reaction: String, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.react(&reaction).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn admit(participant: Option<String>, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.admit(participant.as_deref()).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn deny(participant: Option<String>, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.deny(participant.as_deref()).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn set_locked(locked: bool, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.set_locked(locked).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn end_for_all(state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.end_for_all().await).await
}

#[tauri::command]
#[specta::specta]
pub async fn mute_all(state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.mute_all().await).await
}

#[tauri::command]
#[specta::specta]
pub async fn mute_participant(
    participant: String,
    camera: bool,
    state: tauri::State<'_, CallState>,
) -> Result<(), AppError> {
    with_call(&state, async |c| c.mute_participant(&participant, camera).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn ask_to_unmute(
    participant: String,
    camera: bool,
    state: tauri::State<'_, CallState>,
) -> Result<(), AppError> {
    with_call(&state, async |c| c.ask_to_unmute(&participant, camera).await).await
}

/// Sets up `count` breakout rooms, spreads people over them and opens them.
#[tauri::command]
#[specta::specta]
pub async fn open_breakouts(
    count: u32,
    allow_choice: bool,
    state: tauri::State<'_, CallState>,
) -> Result<(), AppError> {
    with_call(&state, async |c| c.open_breakouts(count, allow_choice).await).await
}

/// Everyone back to the main room after `countdown_secs`.
#[tauri::command]
#[specta::specta]
pub async fn close_breakouts(countdown_secs: u32, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.close_breakouts(countdown_secs).await).await
}

/// Goes to breakout room `room`, or back to the main room (`null`).
#[tauri::command]
#[specta::specta]
pub async fn join_breakout(room: Option<u32>, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.join_breakout(room).await).await
}

/// Moves someone to breakout room `room`, or to the main room (`null`).
#[tauri::command]
#[specta::specta]
pub async fn move_participant(
    participant: String,
    room: Option<u32>,
    state: tauri::State<'_, CallState>,
) -> Result<(), AppError> {
    with_call(&state, async |c| c.move_participant(&participant, room).await).await
}

/// A message to every room of the meeting.
#[tauri::command]
#[specta::specta]
pub async fn message_breakouts(text: String, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.message_breakouts(&text).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn set_co_host(
    participant: String,
    co_host: bool,
    state: tauri::State<'_, CallState>,
) -> Result<(), AppError> {
    with_call(&state, async |c| c.set_co_host(&participant, co_host).await).await
}

#[tauri::command]
#[specta::specta]
pub async fn set_audio_only(on: bool, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| c.set_audio_only(on).await).await
}

/// What the view shows, so that subscriptions follow it.
#[tauri::command]
#[specta::specta]
pub async fn set_tiles(tiles: Vec<TileWant>, state: tauri::State<'_, CallState>) -> Result<(), AppError> {
    with_call(&state, async |c| {
        c.set_tiles(tiles).await;
        Ok(())
    })
    .await
}

/// Leaves and stops the hosted server when the app exits.
pub async fn shutdown(state: &CallState) {
    if let Some(call) = state.call.lock().await.take() {
        call.leave().await;
    }
    if let Some(host) = state.host.lock().await.take() {
        host.stop().await;
    }
}
