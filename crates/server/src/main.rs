use std::io::Write;

use clap::Parser;
use confer_server::{Args, Server};
use tracing_subscriber::EnvFilter;

/// Logging when `CONFER_LOG` is not set. str0m warns of things a peer's packets cause
/// (a data channel's late event after it closed, odd packets): at `info` they would
/// flood the log of a busy server; `CONFER_LOG=info,str0m=warn` shows them.
const DEFAULT_LOG: &str = "info,str0m=error";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("CONFER_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Args::parse().resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("confer-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let db = confer_server::store::display_db(&config.db);
    let generated_credentials = config.api_key.is_none();
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("confer-server: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // A configured secret stays out of the output (and so out of logs); a generated
    // development one is shown, since there is no other way to learn it.
    let secret = if generated_credentials {
        format!("{}   (development credentials, kept in the database)", server.api_secret())
    } else {
        "(as configured)".to_owned()
    };
    let banner = format!(
        "confer-server listening on {}\n  signaling:  {}\n  database:   {db}\n  API key:    {}\n  API secret: {secret}\n",
        server.url(),
        server.signal_url(),
        server.api_key(),
    );
    // Whoever started the server may not read its output (or may have closed it): the
    // server runs on regardless.
    let mut stdout = std::io::stdout();
    if let Err(e) = stdout.write_all(banner.as_bytes()).and_then(|()| stdout.flush()) {
        tracing::warn!(error = %e, "cannot print the banner");
    }
    wait_for_stop().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn wait_for_stop() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
