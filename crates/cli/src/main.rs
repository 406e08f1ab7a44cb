//! The `confer-cli` binary: parse, run, exit. See the library for everything else.

use std::process::ExitCode;

use clap::Parser;
use confer_cli::args::Cli;
use confer_cli::output::JsonLines;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr so that stdout carries only the command's JSON.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: scripts keep bots' stderr in files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,rtc=error,webrtc=error")),
        )
        .init();
    // reqwest is built without a TLS crypto provider of its own (to keep aws-lc-rs out
    // of the build) and uses the process default; this is the only install, so it
    // cannot fail for a reason that matters.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut out = JsonLines::stdout();
    match confer_cli::run(cli, &mut out).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let (json, message) = confer_cli::report(&error);
            eprintln!("{json}");
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
