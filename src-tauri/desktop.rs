//! Confer on the desktop beyond its window: the tray (quick-join to saved and recent
//! rooms; during a call, the microphone, the camera, leaving and the window), a call
//! that goes on when its window is closed, notifications for chat and joins while the
//! window is out of sight, the global mute shortcut, and quitting that asks first
//! during a call.
//!
//! The call itself lives in [`crate::call`]; this module watches its events (the
//! call's event sink calls [`call_event`]) and acts on it through the same commands
//! the view uses. Its state changes on the main thread only (the tray's menu and the
//! shortcut's registration run there, and a lock held across them from another thread
//! could wait on the main thread forever), so the entry points hand their work to it.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;

use confer_app_core::view::{CallEvent, CallView, EndReason, LocalDevice};
use serde::Serialize;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager};
use tauri_plugin_global_shortcut::{GlobalShortcutExt, Modifiers, Shortcut, ShortcutState};
use tauri_plugin_notification::NotificationExt;
use tauri_specta::Event;

use crate::call::{self, CallState, CallUpdate};
use crate::ipc::AppError;
use crate::settings::{self, AppSettings, RecentRoom};

/// At most this many rooms are offered for quick-join in the tray.
const TRAY_ROOMS: usize = 8;

/// The tray asked to join a saved or recent room straight away (with the stored name
/// and devices; the view shows the call, or why it failed).
#[derive(Debug, Clone, Serialize, specta::Type, Event)]
pub struct QuickJoin(pub RecentRoom);

/// The user asked to quit during a call: the view asks whether to leave and quit.
#[derive(Debug, Clone, Serialize, specta::Type, Event)]
pub struct QuitRequested;

/// Leaves the call, if any, and quits (the view's answer to [`QuitRequested`]).
#[tauri::command]
#[specta::specta]
pub fn quit_app(app: AppHandle) {
    // The exit handler leaves the call and stops a hosted server.
    app.exit(0);
}

/// What the desktop side knows of the app.
#[derive(Default)]
pub struct Desktop(Mutex<State>);

#[derive(Default)]
struct State {
    tray: Option<TrayIcon>,
    /// What the tray shows (its menu is rebuilt only when this changes).
    shown: Vec<Entry>,
    /// The call as last seen; `None` out of a call.
    call: Option<CallView>,
    /// Participants already seen in this call: a join is announced once.
    known: HashSet<String>,
    /// The window was closed during the call, which goes on.
    hidden: bool,
    /// The mute shortcut, registered while in a call.
    shortcut: Option<Shortcut>,
    settings: AppSettings,
    /// The rooms behind the tray's `join:N` items.
    rooms: Vec<RecentRoom>,
}

fn lock(desktop: &Desktop) -> std::sync::MutexGuard<'_, State> {
    desktop.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// One line of the tray's menu.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Item { id: String, label: String, enabled: bool },
    Separator,
}

fn item(id: &str, label: impl Into<String>, enabled: bool) -> Entry {
    Entry::Item { id: id.into(), label: label.into(), enabled }
}

/// The tray's menu for the app's state: the call's controls during a call, quick-join
/// otherwise.
fn menu_model(call: Option<&CallView>, hidden: bool, rooms: &[RecentRoom]) -> Vec<Entry> {
    let mut menu = Vec::new();
    match call {
        Some(call) => {
            let room = if call.room_name.is_empty() { &call.room } else { &call.room_name };
            let status = if hidden {
                format!("In a call: {room} (the window is closed; the call goes on)")
            } else {
                format!("In a call: {room}")
            };
            menu.push(item("status", status, false));
            menu.push(Entry::Separator);
            menu.push(match call.microphone {
                LocalDevice::On => item("microphone", "Mute microphone", true),
                LocalDevice::Off => item("microphone", "Unmute microphone", true),
                LocalDevice::Missing => item("microphone", "No microphone", false),
                LocalDevice::Censored => item("microphone", "Microphone stopped by a moderator", false),
            });
            menu.push(match call.camera {
                LocalDevice::On => item("camera", "Turn camera off", true),
                LocalDevice::Off => item("camera", "Turn camera on", true),
                LocalDevice::Missing => item("camera", "No camera", false),
                LocalDevice::Censored => item("camera", "Camera stopped by a moderator", false),
            });
            menu.push(item("leave", "Leave call", true));
            menu.push(Entry::Separator);
            menu.push(item("show", "Show Confer", true));
        }
        None => {
            menu.push(item("show", "Open Confer", true));
            if !rooms.is_empty() {
                menu.push(Entry::Separator);
                for (i, room) in rooms.iter().enumerate() {
                    let mark = if room.saved { "★ " } else { "" };
                    menu.push(item(&format!("join:{i}"), format!("Join {mark}{}", room.label), true));
                }
            }
        }
    }
    menu.push(Entry::Separator);
    menu.push(item("quit", "Quit Confer", true));
    menu
}

/// Saved rooms first, then the most recent others.
fn tray_rooms(settings: &AppSettings) -> Vec<RecentRoom> {
    let saved = settings.recent.iter().filter(|r| r.saved);
    let others = settings.recent.iter().filter(|r| !r.saved);
    saved.chain(others).take(TRAY_ROOMS).cloned().collect()
}

fn build_menu(app: &AppHandle, entries: &[Entry]) -> tauri::Result<Menu<tauri::Wry>> {
    let menu = Menu::new(app)?;
    for entry in entries {
        match entry {
            Entry::Item { id, label, enabled } => {
                // `&` marks a mnemonic in menu labels; a room's name means it literally.
                let label = label.replace('&', "&&");
                menu.append(&MenuItem::with_id(app, id.as_str(), label, *enabled, None::<&str>)?)?
            }
            Entry::Separator => menu.append(&PredefinedMenuItem::separator(app)?)?,
        }
    }
    Ok(menu)
}

/// Puts the tray up, and registers what answers notifications.
pub fn setup(app: &tauri::App) {
    let handle = app.handle().clone();
    let settings = settings::load(&handle);
    app.manage(Desktop::default());
    {
        let desktop = handle.state::<Desktop>();
        let mut state = lock(&desktop);
        state.rooms = tray_rooms(&settings);
        state.settings = settings;
    }
    let mut builder = TrayIconBuilder::with_id("confer")
        .tooltip("Confer")
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()));
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    match builder.build(app) {
        Ok(tray) => lock(&handle.state::<Desktop>()).tray = Some(tray),
        // A desktop without a tray: closing the window during a call still keeps the
        // call, and starting Confer again shows it.
        Err(e) => tracing::warn!(error = %e, "no tray icon"),
    }
    refresh_tray(&handle);
    // A click on a notification brings the window back.
    let shower = handle.clone();
    let _ = handle.notification().on_action(move |_| show_window(&shower));
}

/// Rebuilds the tray's menu when what it shows changed (on the main thread).
fn refresh_tray(app: &AppHandle) {
    let (entries, tray, in_call) = {
        let desktop = app.state::<Desktop>();
        let state = lock(&desktop);
        let entries = menu_model(state.call.as_ref(), state.hidden, &state.rooms);
        if entries == state.shown {
            return;
        }
        let Some(tray) = state.tray.clone() else { return };
        (entries, tray, state.call.is_some())
    };
    let updated = build_menu(app, &entries).and_then(|menu| tray.set_menu(Some(menu)));
    if let Err(e) = updated {
        tracing::warn!(error = %e, "the tray's menu was not updated");
        return;
    }
    let _ = tray.set_tooltip(Some(if in_call { "Confer: in a call" } else { "Confer" }));
    lock(&app.state::<Desktop>()).shown = entries;
}

/// Runs `f` on the main thread (at once when called there).
fn on_main(app: &AppHandle, f: impl FnOnce(&AppHandle) + Send + 'static) {
    let handle = app.clone();
    if let Err(e) = app.run_on_main_thread(move || f(&handle)) {
        tracing::warn!(error = %e, "the main thread is gone");
    }
}

fn on_menu(app: &AppHandle, id: &str) {
    tracing::info!(item = id, "tray");
    match id {
        "show" => show_window(app),
        "quit" => request_quit(app),
        "microphone" => toggle(app, Device::Microphone),
        "camera" => toggle(app, Device::Camera),
        "leave" => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move { call::leave_from_outside(&app).await });
        }
        other => {
            let room = other
                .strip_prefix("join:")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| lock(&app.state::<Desktop>()).rooms.get(i).cloned());
            if let Some(room) = room {
                show_window(app);
                if let Err(e) = QuickJoin(room).emit(app) {
                    tracing::warn!(error = %e, "quick-join did not reach the view");
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Device {
    Microphone,
    Camera,
}

/// Turns the microphone or the camera over, as its button in the view would.
fn toggle(app: &AppHandle, device: Device) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let state = app.state::<CallState>();
        let result = call::with_call(&state, async |c| {
            let view = c.view();
            match device {
                Device::Microphone => c.set_microphone(view.microphone != LocalDevice::On).await,
                Device::Camera => c.set_camera(view.camera != LocalDevice::On).await,
            }
        })
        .await;
        if let Err(e) = result {
            tracing::info!(code = e.code, "{}", e.message);
            tell(&app, &e.message, &e.code);
        }
    });
}

/// A notice in the view, and a notification too when the window is out of sight.
fn tell(app: &AppHandle, message: &str, code: &str) {
    let _ = CallUpdate(CallEvent::Notice { code: code.into(), message: message.into() }).emit(app);
    let message = message.to_owned();
    on_main(app, move |app| {
        if !window_in_view(app) {
            notify(app, "Confer", &message);
        }
    });
}

fn main_window(app: &AppHandle) -> Option<tauri::WebviewWindow> {
    app.get_webview_window("main")
}

/// Whether the user sees the window now (shown, and the window they are in).
fn window_in_view(app: &AppHandle) -> bool {
    main_window(app).is_some_and(|w| w.is_visible().unwrap_or(false) && w.is_focused().unwrap_or(false))
}

fn notify(app: &AppHandle, title: &str, body: &str) {
    if let Err(e) = app.notification().builder().title(title).body(body).show() {
        tracing::debug!(error = %e, "notification not shown");
    }
}

/// Shows, restores and focuses the window.
pub fn show_window(app: &AppHandle) {
    on_main(app, |app| {
        if let Some(window) = main_window(app) {
            let _ = window.show();
            let _ = window.unminimize();
            let _ = window.set_focus();
        }
        lock(&app.state::<Desktop>()).hidden = false;
        refresh_tray(app);
    });
}

/// The window is asked to close: during a call it hides instead, and the call goes on
/// (returns `true`: keep the window).
pub fn keep_call_running(window: &tauri::Window) -> bool {
    let app = window.app_handle();
    let in_call = {
        let desktop = app.state::<Desktop>();
        let mut state = lock(&desktop);
        state.hidden = state.call.is_some();
        state.hidden
    };
    if !in_call {
        return false;
    }
    let _ = window.hide();
    tracing::info!("window closed during the call; the call goes on");
    refresh_tray(app);
    notify(
        app,
        "Confer is still in your call",
        "Closing the window did not leave the call. Use Confer's tray icon (or open Confer again) to come back, mute or leave.",
    );
    true
}

/// Quits, or during a call shows the window and lets the view ask first.
fn request_quit(app: &AppHandle) {
    if lock(&app.state::<Desktop>()).call.is_none() {
        app.exit(0);
        return;
    }
    show_window(app);
    if QuitRequested.emit(app).is_err() {
        app.exit(0);
    }
}

/// The mute shortcut in the settings: `None` when there is none. It needs Ctrl, Alt or
/// Super (or a function key): a plain key would be taken from every other application.
pub fn parse_shortcut(text: &str) -> Result<Option<Shortcut>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let shortcut = Shortcut::from_str(text).map_err(|e| {
        AppError::new(
            "invalid_shortcut",
            format!("\"{text}\" is not a key combination (for example Ctrl+Shift+M): {e}"),
        )
    })?;
    let held = shortcut.mods.intersects(Modifiers::CONTROL | Modifiers::ALT | Modifiers::SUPER);
    let function_key = matches!(format!("{:?}", shortcut.key).strip_prefix('F'), Some(n) if n.parse::<u8>().is_ok());
    if !held && !function_key {
        return Err(AppError::new(
            "invalid_shortcut",
            format!("\"{text}\" needs Ctrl, Alt or Super: without one it would take the key from every application."),
        ));
    }
    Ok(Some(shortcut))
}

/// The global-shortcut plugin, with the mute shortcut's handler.
pub fn shortcut_plugin() -> tauri::plugin::TauriPlugin<tauri::Wry> {
    tauri_plugin_global_shortcut::Builder::new()
        .with_handler(|app, shortcut, event| {
            if event.state() == ShortcutState::Pressed {
                tracing::info!(shortcut = %shortcut, "mute shortcut");
                toggle(app, Device::Microphone);
            }
        })
        .build()
}

/// Registers the mute shortcut for the call (any other one is released first).
fn register_shortcut(app: &AppHandle, state: &mut State) {
    release_shortcut(app, state);
    let wanted = match parse_shortcut(&state.settings.mute_shortcut) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "mute shortcut");
            return;
        }
    };
    match app.global_shortcut().register(wanted) {
        Ok(()) => state.shortcut = Some(wanted),
        Err(e) => {
            let text = &state.settings.mute_shortcut;
            tracing::warn!(shortcut = text, error = %e, "the mute shortcut is not available");
            let message = format!("The mute shortcut {text} is not available (another application may use it): {e}");
            let _ = CallUpdate(CallEvent::Notice { code: "shortcut_unavailable".into(), message }).emit(app);
        }
    }
}

fn release_shortcut(app: &AppHandle, state: &mut State) {
    if let Some(s) = state.shortcut.take() {
        if let Err(e) = app.global_shortcut().unregister(s) {
            tracing::debug!(error = %e, "mute shortcut not released");
        }
    }
}

/// The settings changed: the tray's rooms, and the call's mute shortcut.
pub fn settings_changed(app: &AppHandle, settings: &AppSettings) {
    let settings = settings.clone();
    on_main(app, move |app| {
        {
            let desktop = app.state::<Desktop>();
            let mut state = lock(&desktop);
            let shortcut_changed = state.settings.mute_shortcut != settings.mute_shortcut;
            state.rooms = tray_rooms(&settings);
            state.settings = settings;
            if shortcut_changed && state.call.is_some() {
                register_shortcut(app, &mut state);
            }
        }
        refresh_tray(app);
    });
}

/// The call started.
pub fn call_started(app: &AppHandle, view: &CallView) {
    let view = view.clone();
    on_main(app, move |app| {
        {
            let desktop = app.state::<Desktop>();
            let mut state = lock(&desktop);
            state.known = view.participants.iter().map(|p| p.id.clone()).collect();
            state.call = Some(view);
            state.hidden = false;
            register_shortcut(app, &mut state);
        }
        refresh_tray(app);
    });
}

/// The call is over: left in the view.
pub fn call_ended(app: &AppHandle) {
    on_main(app, |app| end_call(app, false));
}

/// Out of the call. With `reveal`, a closed window comes back to say why it ended (a
/// kick, the meeting's end, a lost connection; not leaving from the tray on purpose).
fn end_call(app: &AppHandle, reveal: bool) {
    let was_hidden = {
        let desktop = app.state::<Desktop>();
        let mut state = lock(&desktop);
        state.call = None;
        state.known.clear();
        release_shortcut(app, &mut state);
        state.hidden && reveal
    };
    if was_hidden {
        show_window(app);
    }
    refresh_tray(app);
}

/// Everything the call tells the view passes here first.
pub fn call_event(app: &AppHandle, event: &CallEvent) {
    if matches!(event, CallEvent::Notice { .. }) {
        return;
    }
    let event = event.clone();
    on_main(app, move |app| on_call_event(app, &event));
}

fn on_call_event(app: &AppHandle, event: &CallEvent) {
    match event {
        CallEvent::Updated { view } => {
            let (joined, for_moderators) = {
                let desktop = app.state::<Desktop>();
                let mut state = lock(&desktop);
                let Some(before) = state.call.take() else {
                    // Still joining (or already ended): `call_started` takes over.
                    return;
                };
                let joined: Vec<String> = view
                    .participants
                    .iter()
                    .filter(|p| !p.local && state.known.insert(p.id.clone()))
                    .map(|p| p.name.clone())
                    .collect();
                state.call = Some(view.clone());
                (joined, moderator_news(&before, view))
            };
            refresh_tray(app);
            if !window_in_view(app) {
                if !joined.is_empty() {
                    notify(app, &joined_text(&joined), &format!("In {}", room_name(view)));
                }
                for news in for_moderators {
                    notify(app, &news, &format!("In {}", room_name(view)));
                }
            }
        }
        CallEvent::Chat { message } if !message.mine && !window_in_view(app) => {
            let title =
                if message.private { format!("{} (to you)", message.from_name) } else { message.from_name.clone() };
            notify(app, &title, &message.text);
        }
        CallEvent::Ended { code, message } => {
            let hidden = lock(&app.state::<Desktop>()).hidden;
            let on_purpose = *code == EndReason::Left;
            end_call(app, !on_purpose);
            if hidden && !on_purpose {
                notify(app, "The call ended", message);
            }
        }
        _ => {}
    }
}

fn room_name(view: &CallView) -> &str {
    if view.room_name.is_empty() {
        &view.room
    } else {
        &view.room_name
    }
}

/// What a moderator should hear of with the window out of sight: hands raised and
/// people knocking since the last view.
fn moderator_news(before: &CallView, now: &CallView) -> Vec<String> {
    if !now.moderator {
        return Vec::new();
    }
    let name = |id: &str| now.participants.iter().find(|p| p.id == id && !p.local).map(|p| p.name.clone());
    let hands = now.hands.iter().filter(|h| !before.hands.contains(h)).filter_map(|h| name(h));
    let knocks = now.knocks.iter().filter(|k| !before.knocks.iter().any(|b| b.id == k.id));
    hands
        .map(|n| format!("{n} raised a hand"))
        .chain(knocks.map(|k| format!("{} is waiting to join", k.name)))
        .collect()
}

/// "Ann joined", "Ann and Bo joined", "Ann, Bo and 3 others joined".
fn joined_text(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("{one} joined"),
        [a, b] => format!("{a} and {b} joined"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} others joined", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confer_app_core::view::Connection;

    fn call(microphone: LocalDevice, camera: LocalDevice) -> CallView {
        CallView {
            room: "RM_1".into(),
            room_name: "Design review".into(),
            me: "PA_1".into(),
            moderator: false,
            participants: vec![],
            active_speaker: None,
            connection: Connection::Connected,
            microphone,
            camera,
            sharing_screen: false,
            invite_link: None,
            locked: false,
            audio_only: false,
            hands: vec![],
            knocks: vec![],
            breakouts: None,
        }
    }

    fn labels(entries: &[Entry]) -> Vec<(&str, &str, bool)> {
        entries
            .iter()
            .filter_map(|e| match e {
                Entry::Item { id, label, enabled } => Some((id.as_str(), label.as_str(), *enabled)),
                Entry::Separator => None,
            })
            .collect()
    }

    fn room(label: &str, saved: bool) -> RecentRoom {
        RecentRoom { server: "http://h:1".into(), link: label.into(), label: label.into(), at: 0.0, saved }
    }

    #[test]
    fn out_of_a_call_the_tray_offers_saved_rooms_first() {
        let settings = AppSettings {
            recent: vec![room("standup", false), room("board", true), room("1:1", false)],
            ..AppSettings::default()
        };
        let rooms = tray_rooms(&settings);
        assert_eq!(
            labels(&menu_model(None, false, &rooms)),
            [
                ("show", "Open Confer", true),
                ("join:0", "Join ★ board", true),
                ("join:1", "Join standup", true),
                ("join:2", "Join 1:1", true),
                ("quit", "Quit Confer", true),
            ]
        );
    }

    fn person(id: &str, name: &str, local: bool) -> confer_app_core::view::ParticipantView {
        confer_app_core::view::ParticipantView {
            id: id.into(),
            identity: name.to_lowercase(),
            name: name.into(),
            local,
            moderator: local,
            co_host: false,
            guest: false,
            hand_raised: false,
            mic_muted: false,
            camera_off: false,
            speaking: false,
            network_quality: 0,
            tiles: vec![],
        }
    }

    #[test]
    fn a_moderator_out_of_sight_hears_of_new_hands_and_knocks_only() {
        let mut before = call(LocalDevice::On, LocalDevice::On);
        before.moderator = true;
        before.participants =
            vec![person("PA_1", "Me", true), person("PA_2", "Ann", false), person("PA_3", "Bo", false)];
        before.hands = vec!["PA_2".into()];
        let mut now = before.clone();
        now.hands = vec!["PA_2".into(), "PA_3".into(), "PA_1".into()];
        now.knocks = vec![confer_app_core::view::KnockView { id: "PA_9".into(), name: "Cy".into(), guest: true }];
        assert_eq!(moderator_news(&before, &now), ["Bo raised a hand", "Cy is waiting to join"]);
        assert!(moderator_news(&now, &now).is_empty(), "nothing new");
        now.moderator = false;
        assert!(moderator_news(&before, &now).is_empty(), "not for those who cannot act on it");
    }

    #[test]
    fn in_a_call_the_tray_has_its_controls_and_says_when_the_window_is_closed() {
        let view = call(LocalDevice::On, LocalDevice::Off);
        let open = menu_model(Some(&view), false, &[room("standup", false)]);
        assert_eq!(
            labels(&open),
            [
                ("status", "In a call: Design review", false),
                ("microphone", "Mute microphone", true),
                ("camera", "Turn camera on", true),
                ("leave", "Leave call", true),
                ("show", "Show Confer", true),
                ("quit", "Quit Confer", true),
            ]
        );
        let closed = menu_model(Some(&view), true, &[]);
        assert_eq!(labels(&closed)[0].1, "In a call: Design review (the window is closed; the call goes on)");
        let censored = menu_model(Some(&call(LocalDevice::Censored, LocalDevice::Missing)), false, &[]);
        assert_eq!(labels(&censored)[1], ("microphone", "Microphone stopped by a moderator", false));
        assert_eq!(labels(&censored)[2], ("camera", "No camera", false));
    }

    #[test]
    fn shortcuts_parse_or_say_why_not() {
        assert!(parse_shortcut("").unwrap().is_none());
        assert!(parse_shortcut("Ctrl+Alt+K").unwrap().is_some());
        assert!(parse_shortcut(crate::settings::DEFAULT_MUTE_SHORTCUT).unwrap().is_some());
        assert!(parse_shortcut("F9").unwrap().is_some());
        assert_eq!(parse_shortcut("Ctrl+Banana").unwrap_err().code, "invalid_shortcut");
        assert_eq!(parse_shortcut("Shift+M").unwrap_err().code, "invalid_shortcut");
    }

    #[test]
    fn joins_are_told_in_a_sentence() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(joined_text(&names(&["Ann"])), "Ann joined");
        assert_eq!(joined_text(&names(&["Ann", "Bo"])), "Ann and Bo joined");
        assert_eq!(joined_text(&names(&["Ann", "Bo", "Cy", "Di"])), "Ann, Bo and 2 others joined");
    }
}
