//! The boundary between the view and the Rust side, declared once: every command and
//! every type crossing it is registered here, and `ui/src/bindings.ts` is generated
//! from this list (tauri-specta). The test below fails when the file is stale;
//! `UPDATE_BINDINGS=1 cargo test -p confer --features custom-protocol --lib` rewrites it.
//!
//! Failures cross as [`AppError`] (`{ code, message }`): the view branches on `code`,
//! never on the message.

use serde::Serialize;
use tauri_specta::{collect_commands, collect_events, Builder};

use crate::{call, desktop, links, settings};

/// An error as the view sees it.
#[derive(Debug, Clone, Serialize, specta::Type, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    /// Stable snake_case code (the server's catalog names, or the app's own such as
    /// `no_camera`).
    pub code: String,
    pub message: String,
}

impl AppError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }
}

pub fn builder() -> Builder<tauri::Wry> {
    Builder::<tauri::Wry>::new()
        .commands(collect_commands![
            super::app_version,
            super::frame_endpoint,
            super::bench_config,
            super::bench_report,
            call::list_devices,
            call::start_preview,
            call::stop_preview,
            call::host_meeting,
            call::join_call,
            call::leave_call,
            call::set_microphone,
            call::set_camera,
            call::use_devices,
            call::share_screen,
            call::send_chat,
            call::kick,
            call::censor,
            call::raise_hand,
            call::lower_hand_of,
            call::react,
            call::admit,
            call::deny,
            call::set_locked,
            call::end_for_all,
            call::mute_all,
            call::mute_participant,
            call::ask_to_unmute,
            call::set_co_host,
            call::open_breakouts,
            call::close_breakouts,
            call::join_breakout,
            call::move_participant,
            call::message_breakouts,
            call::set_audio_only,
            call::set_tiles,
            settings::get_settings,
            settings::set_settings,
            links::take_launch_link,
            desktop::quit_app,
        ])
        .events(collect_events![
            call::CallUpdate,
            call::MicLevel,
            call::DevicesChanged,
            links::LinkOpened,
            desktop::QuickJoin,
            desktop::QuitRequested
        ])
        .typ::<AppError>()
}

#[cfg(test)]
mod tests {
    use specta_typescript::Typescript;

    const BINDINGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ui/src/bindings.ts");

    fn language() -> Typescript {
        Typescript::default().header("// Generated from src-tauri/ipc.rs by tauri-specta: do not edit.\n")
    }

    #[test]
    fn the_typescript_bindings_match_the_commands() {
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            super::builder().export(language(), BINDINGS).expect("bindings written");
        }
        let fresh = std::env::temp_dir().join(format!("confer-bindings-{}.ts", std::process::id()));
        super::builder().export(language(), &fresh).expect("bindings generated");
        let (want, have) =
            (std::fs::read_to_string(&fresh).unwrap(), std::fs::read_to_string(BINDINGS).unwrap_or_default());
        let _ = std::fs::remove_file(&fresh);
        assert!(
            want == have,
            "ui/src/bindings.ts is stale: run UPDATE_BINDINGS=1 cargo test -p confer --features custom-protocol --lib"
        );
    }
}
