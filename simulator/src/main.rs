//! `voice-agent-simulator`: binds, prints its URL, serves until SIGINT/SIGTERM.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use voice_agent_simulator::{Config, install_crypto_provider, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        // stdout carries the machine-read "listening on" line; logs go elsewhere.
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    install_crypto_provider();
    config.validate().context("Invalid configuration")?;

    let address = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("Failed to bind {address}"))?;
    let local = listener
        .local_addr()
        .context("Failed to read the bound address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "voice-agent-simulator listening on http://{local}")
        .and_then(|()| stdout.flush())
        .context("Failed to print the listening address")?;
    drop(stdout);

    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    run(listener, config, shutdown)
        .await
        .context("Simulator failed")?;
    Ok(())
}

/// First SIGINT/SIGTERM starts a graceful shutdown; a second one exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    for _ in 0..2 {
        if let Err(error) = wait_for_signal().await {
            tracing::error!(error = %error, "cannot listen for signals");
            return;
        }
        if shutdown.is_cancelled() {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
        tracing::info!("signal received: shutting down");
        shutdown.cancel();
    }
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}
