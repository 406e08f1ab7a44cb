//! Settings that outlive the app: who the user is, where they meet, their devices,
//! audio processing and video quality, the mute shortcut, recent and saved rooms, and
//! the window's size and place.
//! Kept with tauri-plugin-store in `settings.json` in the app's data directory.

use confer_app_core::settings::MediaSettings;
use serde::{Deserialize, Serialize};
use tauri::{Manager, PhysicalPosition, PhysicalSize, Runtime};
use tauri_plugin_store::StoreExt;

use crate::ipc::AppError;

const FILE: &str = "settings.json";
const KEY: &str = "settings";
const WINDOW: &str = "window";
/// At most this many recent rooms are kept (saved ones are kept whatever their number).
const RECENT: usize = 8;
/// The mute shortcut until the user picks another.
pub const DEFAULT_MUTE_SHORTCUT: &str = "CommandOrControl+Shift+M";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
#[serde(default)]
pub struct AppSettings {
    /// The server for a bare room name.
    pub server: String,
    /// The display name others see.
    pub name: String,
    pub media: MediaSettings,
    /// Newest first; saved rooms among them.
    pub recent: Vec<RecentRoom>,
    /// Mutes and unmutes the microphone during a call, whichever application has the
    /// focus (`Ctrl+Alt+M`, `CommandOrControl+Shift+M`; empty: none).
    pub mute_shortcut: String,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            server: "http://127.0.0.1:7880".into(),
            name: String::new(),
            media: MediaSettings::default(),
            recent: vec![],
            mute_shortcut: DEFAULT_MUTE_SHORTCUT.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct RecentRoom {
    pub server: String,
    /// The join link (or room name) that got the user in.
    pub link: String,
    pub label: String,
    /// Unix milliseconds.
    pub at: f64,
    /// Kept for quick-join from the tray, however many rooms come after it.
    #[serde(default)]
    pub saved: bool,
}

/// Keeps every saved room and the newest of the others.
fn trim_rooms(rooms: &mut Vec<RecentRoom>) {
    let mut unsaved = 0;
    rooms.retain(|r| {
        unsaved += usize::from(!r.saved);
        r.saved || unsaved <= RECENT
    });
}

/// The window's last size and place (physical pixels).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct WindowState {
    x: i32,
    y: i32,
    width: u32,
    height: u32,
    maximized: bool,
}

/// The stored settings, or the defaults (a damaged file is logged and replaced).
pub fn load<R: Runtime>(app: &tauri::AppHandle<R>) -> AppSettings {
    let Ok(store) = app.store(FILE) else { return AppSettings::default() };
    match store.get(KEY).map(serde_json::from_value::<AppSettings>) {
        Some(Ok(mut s)) => {
            trim_rooms(&mut s.recent);
            s
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "stored settings are unreadable; using the defaults");
            AppSettings::default()
        }
        None => AppSettings::default(),
    }
}

fn save<R: Runtime>(app: &tauri::AppHandle<R>, key: &str, value: serde_json::Value) -> Result<(), AppError> {
    let store = app.store(FILE).map_err(|e| AppError::new("settings_unavailable", e.to_string()))?;
    store.set(key, value);
    store.save().map_err(|e| AppError::new("settings_not_saved", format!("Settings could not be saved: {e}")))
}

/// The user's settings.
#[tauri::command]
#[specta::specta]
pub fn get_settings(app: tauri::AppHandle) -> AppSettings {
    load(&app)
}

/// Replaces the user's settings (and writes them to disk at once). A mute shortcut
/// that is not a key combination is refused with `invalid_shortcut`.
#[tauri::command]
#[specta::specta]
pub fn set_settings(mut settings: AppSettings, app: tauri::AppHandle) -> Result<(), AppError> {
    trim_rooms(&mut settings.recent);
    settings.mute_shortcut = settings.mute_shortcut.trim().to_owned();
    crate::desktop::parse_shortcut(&settings.mute_shortcut)?;
    let value = serde_json::to_value(&settings).map_err(|e| AppError::new("settings_not_saved", e.to_string()))?;
    save(&app, KEY, value)?;
    crate::desktop::settings_changed(&app, &settings);
    Ok(())
}

/// Puts the main window where it was last time.
pub fn restore_window<R: Runtime>(app: &tauri::AppHandle<R>) {
    let (Some(window), Ok(store)) = (app.get_webview_window("main"), app.store(FILE)) else { return };
    let Some(Ok(state)) = store.get(WINDOW).map(serde_json::from_value::<WindowState>) else { return };
    if state.width >= 360 && state.height >= 240 {
        let _ = window.set_size(PhysicalSize::new(state.width, state.height));
        let _ = window.set_position(PhysicalPosition::new(state.x, state.y));
    }
    if state.maximized {
        let _ = window.maximize();
    }
}

/// Remembers the main window's size and place (when it closes or the app exits).
pub fn remember_window<R: Runtime>(window: &tauri::Window<R>) {
    let (Ok(size), Ok(position)) = (window.outer_size(), window.outer_position()) else { return };
    let state = WindowState {
        x: position.x,
        y: position.y,
        width: size.width,
        height: size.height,
        maximized: window.is_maximized().unwrap_or(false),
    };
    if let Err(e) = serde_json::to_value(state)
        .map_err(|e| AppError::new("settings_not_saved", e.to_string()))
        .and_then(|v| save(window.app_handle(), WINDOW, v))
    {
        tracing::warn!(error = %e, "the window's place was not saved");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: usize, saved: bool) -> RecentRoom {
        RecentRoom { server: "s".into(), link: format!("r{n}"), label: format!("r{n}"), at: n as f64, saved }
    }

    #[test]
    fn saved_rooms_outlive_the_recent_limit() {
        let mut rooms: Vec<_> = (0..12).map(|n| room(n, n == 10)).collect();
        trim_rooms(&mut rooms);
        let links: Vec<_> = rooms.iter().map(|r| r.link.as_str()).collect();
        assert_eq!(links, ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r10"]);
    }

    #[test]
    fn settings_from_an_older_version_get_the_new_fields_defaults() {
        let old = serde_json::json!({"server": "http://h:1", "name": "Ann", "recent": [
            {"server": "http://h:1", "link": "standup", "label": "standup", "at": 1.0}
        ]});
        let s: AppSettings = serde_json::from_value(old).unwrap();
        assert_eq!(s.mute_shortcut, DEFAULT_MUTE_SHORTCUT);
        assert!(!s.recent[0].saved);
    }
}
