use std::io::Write;

use clap::Parser;
use confer_server::config::Command;
use confer_server::{Args, Server, ServerConfig};
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
    let args = Args::parse();
    let command = args.command.clone();
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("confer-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(Command::Drain { url, no_wait }) = command {
        return drain(&config, url, no_wait).await;
    }
    let drain_grace = config.drain_grace;
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
    tokio::select! {
        () = wait_for_stop() => {
            if !drain_grace.is_zero() {
                server.drain();
                tokio::select! {
                    () = server.drained() => {}
                    () = wait_for_stop() => tracing::info!("second signal: stopping without waiting"),
                }
            }
        }
        // Drained through the room API (`confer-server drain`).
        () = server.drained() => {}
    }
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

/// `confer-server drain`: asks the node to drain, then follows it until it stops.
async fn drain(config: &ServerConfig, url: Option<String>, no_wait: bool) -> std::process::ExitCode {
    let url = url.unwrap_or_else(|| format!("http://{}", config.http_addr));
    let url = url.trim_end_matches('/');
    let (Some(key), Some(secret)) = (&config.api_key, &config.api_secret) else {
        eprintln!(
            "confer-server drain: needs the node's --api-key and --api-secret (or CONFER_API_KEY, CONFER_API_SECRET)"
        );
        return std::process::ExitCode::from(2);
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let node = |request: reqwest::RequestBuilder| async move {
        let answer = request.basic_auth(key, Some(secret)).timeout(std::time::Duration::from_secs(10)).send().await?;
        answer.error_for_status()?.json::<confer_proto::session::NodeInfo>().await
    };
    let info = match node(client.post(format!("{url}/v1/node/drain"))).await {
        Ok(info) => info,
        Err(e) => {
            eprintln!("confer-server drain: {url}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let census = |info: &confer_proto::session::NodeInfo| (info.sessions, info.participants);
    let (sessions, participants) = census(&info);
    println!("{url} is draining: {sessions} meetings, {participants} participants");
    if no_wait {
        return std::process::ExitCode::SUCCESS;
    }
    let mut last = (sessions, participants);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        match node(client.get(format!("{url}/v1/node"))).await {
            Ok(info) if census(&info) != last => {
                last = census(&info);
                println!("  {} meetings, {} participants left", last.0, last.1);
            }
            Ok(_) => {}
            // The node stopped: it answers no more.
            Err(e) if e.is_connect() => {
                println!("{url} has stopped");
                return std::process::ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("confer-server drain: {url}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
}
