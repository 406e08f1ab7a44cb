//! The Confer desktop app shell.
//!
//! The shell hosts the web UI and owns what only a desktop process can: commands and
//! events between the UI and the Rust side, the frame transport to the view, the tray,
//! deep links and settings. Protocol and media logic stay in the `confer-*` crates so
//! that they build and test without WebKit.

mod bench;
mod call;
mod desktop;
mod ipc;
mod links;
mod settings;

use std::time::Instant;

use confer_app_core::frames::{FrameHub, FrameServer};
use serde::Serialize;
use tauri::Manager;

/// The app's version, shown in the UI's footer.
#[tauri::command]
#[specta::specta]
fn app_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Decoded video for the view: where its frame sockets are.
struct Frames {
    server: FrameServer,
}

#[derive(Debug, Clone, Serialize, specta::Type)]
struct FrameEndpoint {
    /// `ws://127.0.0.1:PORT`; a tile is at `{base}/frames/{tile}?key={key}`.
    base: String,
    key: String,
}

/// Where the view reads video frames from (the key is made per launch).
#[tauri::command]
#[specta::specta]
fn frame_endpoint(frames: tauri::State<'_, Frames>) -> FrameEndpoint {
    FrameEndpoint { base: format!("ws://{}", frames.server.addr()), key: frames.server.secret().to_owned() }
}

/// The frame benchmark's settings, when the app runs as the benchmark.
#[tauri::command]
#[specta::specta]
fn bench_config() -> Option<bench::BenchConfig> {
    bench::config()
}

/// When the benchmark started, and its CPU reading then (managed only in benchmark mode).
struct BenchStart(Instant, f64);

/// The view's measurements: print the table and quit.
#[tauri::command]
#[specta::specta]
fn bench_report(results: Vec<bench::TileResult>, app: tauri::AppHandle) {
    let (cpu, rss) = bench::process_tree_usage();
    let (t0, cpu0) = app.try_state::<BenchStart>().map_or((Instant::now(), cpu), |s| (s.0, s.1));
    println!("{}", bench::table(&results, cpu - cpu0, t0.elapsed().as_secs_f64(), rss));
    app.exit(0);
}

/// Builds and runs the app until its last window closes.
pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,webrtc=error,rtc=error,rtc_ice=error,rtc_dtls=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let commands = ipc::builder();
    let events = ipc::builder();
    tauri::Builder::default()
        // First: a second start hands its arguments (a join link) to this instance and
        // exits; the deep-link feature passes the link on to `links`.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| desktop::show_window(app)))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_store::Builder::new().build())
        .plugin(tauri_plugin_notification::init())
        .plugin(desktop::shortcut_plugin())
        .manage(links::LaunchLink::default())
        .on_window_event(|window, event| {
            if let tauri::WindowEvent::CloseRequested { api, .. } = event {
                settings::remember_window(window);
                // During a call the window hides and the call goes on (the tray says so).
                if desktop::keep_call_running(window) {
                    api.prevent_close();
                }
            }
        })
        .setup(move |app| {
            events.mount_events(app);
            desktop::setup(app);
            links::setup(app);
            settings::restore_window(app.handle());
            let hub = FrameHub::new();
            let server = tauri::async_runtime::block_on(FrameServer::start(hub.clone()))?;
            if bench::config().is_some() {
                app.manage(BenchStart(Instant::now(), bench::process_tree_usage().0));
                bench::start_producers(hub.clone());
            }
            app.manage(call::CallState::new(hub));
            call::watch_devices(app.handle().clone());
            app.manage(Frames { server });
            Ok(())
        })
        .invoke_handler(commands.invoke_handler())
        .build(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("confer: cannot start the app: {e}");
            std::process::exit(1);
        })
        .run(|app, event| {
            if let tauri::RunEvent::Exit = event {
                // Say goodbye to the room, and stop a hosted server's rooms cleanly.
                tauri::async_runtime::block_on(call::shutdown(&app.state::<call::CallState>()));
            }
        });
}
