//! The Confer desktop app shell.
//!
//! The shell hosts the web UI and owns what only a desktop process can: commands and
//! events between the UI and the Rust side, the frame transport to the view, the tray,
//! deep links and settings. Protocol and media logic stay in the `confer-*` crates so
//! that they build and test without WebKit.

/// The app's version, shown in the UI's footer.
#[tauri::command]
fn app_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Builds and runs the app until its last window closes.
pub fn run() {
    tauri::Builder::default()
        .invoke_handler(tauri::generate_handler![app_version])
        .run(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("confer: cannot start the app: {e}");
            std::process::exit(1);
        });
}
