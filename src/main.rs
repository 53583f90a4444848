//! The `corecache` binary: flags and config file in, a running server out,
//! stopped cleanly by SIGINT, SIGTERM or an enabled `shutdown` command.

use clap::Parser;
use corecache::config::{Cli, Config, allowed_cpus};
use corecache::server;
use std::io::IsTerminal;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = match Config::from_cli(&cli, &allowed_cpus()) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let summary = format!(
        "{} threads, {} shards, {} MiB, {}",
        config.threads,
        config.shards,
        config.memory >> 20,
        config.runtime.name()
    );
    let server = match server::start(config) {
        Ok(server) => server,
        Err(e) => return fail(&e),
    };
    tracing::info!(
        "corecache {} listening on {} ({summary})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr()
    );

    let waited = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            runtime.block_on(async {
                let mut interrupt = signal(SignalKind::interrupt())?;
                let mut terminate = signal(SignalKind::terminate())?;
                tokio::select! {
                    _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                    _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = server.stopping() => tracing::info!("shutdown command: shutting down"),
                }
                Ok::<_, std::io::Error>(())
            })
        });
    if let Err(e) = waited {
        tracing::error!("signal handling failed: {e}");
    }
    server.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Reports a start-up error on one line and exits with status 2.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("corecache: {error}");
    ExitCode::from(2)
}
