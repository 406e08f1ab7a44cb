//! `confer://join?...` links. The desktop starts Confer with the link as an argument;
//! when Confer already runs, tauri-plugin-single-instance hands the link to the running
//! instance and the new process exits. Either way the view gets the link, and goes to
//! the pre-join screen for it.

use std::sync::Mutex;

use serde::Serialize;
use tauri::Manager;
use tauri_plugin_deep_link::DeepLinkExt;
use tauri_specta::Event;

/// A join link opened while the app runs.
#[derive(Debug, Clone, Serialize, specta::Type, Event)]
pub struct LinkOpened(pub String);

/// The link the app was started with, until the view takes it.
#[derive(Default)]
pub struct LaunchLink(Mutex<Option<String>>);

/// The link the app was started with, once.
#[tauri::command]
#[specta::specta]
pub fn take_launch_link(state: tauri::State<'_, LaunchLink>) -> Option<String> {
    state.0.lock().unwrap_or_else(|p| p.into_inner()).take()
}

fn is_join_link(url: &str) -> bool {
    url.starts_with("confer://")
}

/// Sends a link to the view and brings the window forward.
pub fn open(app: &tauri::AppHandle, url: String) {
    if !is_join_link(&url) {
        tracing::warn!(url, "ignoring a link that is not confer://");
        return;
    }
    tracing::info!("join link opened");
    crate::desktop::show_window(app);
    if let Err(e) = LinkOpened(url).emit(app) {
        tracing::warn!(error = %e, "the link did not reach the view");
    }
}

/// Registers the scheme with the desktop (for development builds, run without an
/// installer; the packages register it themselves, and an installed app should not
/// rewrite a desktop entry at every start), keeps the launch link, and forwards links
/// that arrive later.
pub fn setup(app: &tauri::App) {
    #[cfg(all(debug_assertions, any(target_os = "linux", windows)))]
    if std::env::var_os("CONFER_NO_SCHEME_REGISTRATION").is_none() {
        if let Err(e) = app.deep_link().register_all() {
            tracing::debug!(error = %e, "confer:// not registered with the desktop");
        }
    }
    let launch = app
        .deep_link()
        .get_current()
        .ok()
        .flatten()
        .into_iter()
        .flatten()
        .map(|u| u.to_string())
        .chain(std::env::args().skip(1))
        .find(|u| is_join_link(u));
    *app.state::<LaunchLink>().0.lock().unwrap_or_else(|p| p.into_inner()) = launch;
    let handle = app.handle().clone();
    app.deep_link().on_open_url(move |event| {
        for url in event.urls() {
            open(&handle, url.to_string());
        }
    });
}
