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
        "{} threads, {} shards, {} MiB, {}, {}, spin {:?}",
        config.threads,
        config.shards,
        config.memory >> 20,
        config.runtime.name(),
        if config.pin { "pinned" } else { "not pinned" },
        config.spin,
    );
    let pinning = format!(
        "threads {}: {}",
        if config.pin { "pinned" } else { "not pinned" },
        config.pin_rule.why()
    );
    // The spin suits cores the server has to itself; beside other busy
    // processes (a load generator on the same box) it burns CPU they need.
    let spins = config.threads > 1
        && config.runtime == corecache::config::RuntimeKind::ThreadPerCore
        && !config.spin.is_zero();
    let spin_hint = "if these CPUs are shared with other busy processes, --spin 0 serves better";
    // Signal handlers go in before the server starts, so a SIGTERM that
    // arrives the moment it is listening is a clean shutdown, not a kill.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    let signals = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    });
    let (mut interrupt, mut terminate) = match signals {
        Ok(signals) => signals,
        Err(e) => return fail(&format!("installing signal handlers: {e}")),
    };
    let shard_aware = (config.shard_aware_port != 0).then(|| {
        format!(
            "shard-aware port {}: a connection from client port p is served by thread p % {}",
            config.shard_aware_port, config.threads
        )
    });
    let per_core = (!config.per_core_ports().is_empty()).then(|| {
        format!(
            "per-core ports {}-{}: thread i keeps every key sent to port {} + i",
            config.port_per_core,
            usize::from(config.port_per_core) + config.threads - 1,
            config.port_per_core
        )
    });
    let server = match server::start(config) {
        Ok(server) => server,
        Err(e) => return fail(&e),
    };
    let tls = match server.tls_addr() {
        Some(addr) if addr == server.local_addr() => ", TLS".to_string(),
        Some(addr) => format!(", TLS on {addr}"),
        None => String::new(),
    };
    // Before the listening line, so everything said at start precedes it.
    tracing::info!("{pinning}");
    for warning in server.exposure_warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        "corecache {} listening on {} ({summary}{tls})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr()
    );
    if let Some(shard_aware) = shard_aware {
        tracing::info!("{shard_aware}");
    }
    if let Some(per_core) = per_core {
        tracing::info!("{per_core}");
    }
    if spins {
        tracing::info!("{spin_hint}");
    }
    runtime.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = server.stopping() => tracing::info!("shutdown command: shutting down"),
        }
    });
    // Shut down on a blocking thread; a second signal while that runs
    // exits at once, as an operator who presses Ctrl-C twice expects.
    let forced = runtime.block_on(async {
        let stopping = tokio::task::spawn_blocking(move || server.shutdown());
        tokio::select! {
            _ = stopping => false,
            _ = interrupt.recv() => true,
            _ = terminate.recv() => true,
        }
    });
    if forced {
        tracing::warn!("second signal: exiting without waiting for connections");
        return ExitCode::from(1);
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Reports a start-up error on one line and exits with status 2.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("corecache: {error}");
    ExitCode::from(2)
}
