use clap::Parser;
use confer_server::{Args, Server};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("CONFER_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
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
    let db = config.db.clone();
    let generated_credentials = config.api_key.is_none();
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("confer-server: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("confer-server listening on {}", server.url());
    println!("  signaling:  ws://{}/v1/signal", server.http_addr());
    println!("  database:   {db}");
    println!("  API key:    {}", server.api_key());
    // A configured secret stays out of the output (and so out of logs); a generated
    // development one is shown, since there is no other way to learn it.
    if generated_credentials {
        println!("  API secret: {}   (development credentials, kept in the database)", server.api_secret());
    } else {
        println!("  API secret: (as configured)");
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
