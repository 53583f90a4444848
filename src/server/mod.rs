//! The server: listeners, runtimes, connections, routing and forwarding.
//!
//! [`start`] binds the listeners, builds the shards and starts the chosen
//! runtime's threads, then returns a [`RunningServer`] handle. Both runtimes
//! run the same accept loop ([`accept_until_shutdown`]), the same admission
//! (`state.rs`), the same connection loop (`connection.rs`), the same
//! `Op::execute` (`op.rs`) on the same [`crate::storage::Shard`], and the
//! same expiry tick ([`tick_every`]); they differ only in who owns a shard
//! and how an operation reaches it:
//!
//! - `thread_per_core.rs`: each pinned thread owns its shards; operations on
//!   another thread's keys are forwarded to it (`forward.rs`: batches,
//!   mailboxes, the wake protocol).
//! - `work_stealing.rs`: tokio's multi-threaded runtime; every shard sits
//!   behind its own lock and requests run in place.
//!
//! Connections come from `shard_port.rs` (`Incoming`): the listen port, the
//! shard-aware port if on, and (thread-per-core) connections another core
//! accepted there and handed to the core their client port names.

mod admin;
mod binary;
mod connection;
mod dump;
mod forward;
mod listener;
mod meta;
mod op;
pub mod router;
mod settings;
pub mod shard_port;
mod state;
mod thread_per_core;
mod work_stealing;

pub use router::Router;
pub use settings::Tunables;
pub(crate) use state::{Admitted, ConnInfo, ConnectionSlot, admit};
pub use state::{Control, DumpStep, ServerState, ShardAnswer, ShardReport};

use crate::clock::Clock;
use crate::config::{Config, RuntimeKind};
use crate::stats::ThreadStats;
use crate::storage::Millis;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::JoinHandle;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, watch};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listen address failed.
    #[error("--listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Binding the shard-aware port failed.
    #[error("--shard-aware-port {}: {source}", addr.port())]
    ShardAwareBind {
        /// The address (the listen address's IP).
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A thread could not be started or pinned.
    #[error("--cpus: {0}")]
    Thread(String),
}

/// A started server.
pub struct RunningServer {
    state: Arc<ServerState>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
}

impl RunningServer {
    /// The address clients connect to (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.state.listen
    }

    /// The server's clock; tests start the server on a held one and move it.
    pub fn clock(&self) -> &Clock {
        &self.state.clock
    }

    /// Asks the server to stop: listeners close, requests already read are
    /// answered, connections close.
    pub fn begin_shutdown(&self) {
        let _ = self.state.shutdown.send(true);
    }

    /// Resolves when shutdown has been asked for (a signal handler or the
    /// `shutdown` command).
    pub async fn stopping(&self) {
        let mut rx = self.state.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Stops the server and waits for its threads.
    pub fn shutdown(self) {
        self.begin_shutdown();
        self.join();
    }

    /// Waits for the server's threads to finish.
    pub fn join(self) {
        for thread in self.threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("server thread failed: {e}"),
                Err(_) => tracing::error!("server thread panicked"),
            }
        }
    }
}

/// Binds the listeners and starts the server's threads.
pub fn start(config: Config) -> Result<RunningServer, StartError> {
    start_with_clock(config, Clock::new())
}

/// [`start`] on a given clock: tests pass [`Clock::held`] and move time
/// with [`Clock::advance`] instead of sleeping.
pub fn start_with_clock(config: Config, clock: Clock) -> Result<RunningServer, StartError> {
    let listeners = match config.runtime {
        RuntimeKind::ThreadPerCore => config.threads,
        RuntimeKind::WorkStealing => 1,
    };
    let (listeners, listen) =
        listener::bind(config.listen, listeners).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    // The shard-aware port gets as many listeners as the listen port.
    let shard_aware = match config.shard_aware_port {
        0 => None,
        port => {
            let addr = SocketAddr::new(listen.ip(), port);
            let (bound, _) = listener::bind(addr, listeners.len())
                .map_err(|source| StartError::ShardAwareBind { addr, source })?;
            Some(bound)
        }
    };
    let hand_off = config.runtime == RuntimeKind::ThreadPerCore;
    let sources = shard_port::sources(listeners, shard_aware, hand_off);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let state = Arc::new(ServerState {
        router: Router::new(config.shards, config.threads),
        listen,
        clock,
        threads: (0..config.threads)
            .map(|_| ThreadStats::default())
            .collect(),
        connections: AtomicUsize::new(0),
        conns: std::sync::Mutex::new(slab::Slab::new()),
        drained: Barrier::new(config.threads),
        shutdown,
        tunables: Tunables::new(&config),
        config,
    });
    let threads = match state.config.runtime {
        RuntimeKind::ThreadPerCore => thread_per_core::start(&state, sources, shutdown_rx)?,
        RuntimeKind::WorkStealing => {
            let sources = sources.into_iter().next().expect("one listener");
            let state = state.clone();
            let thread = std::thread::Builder::new()
                .name("corecache-main".into())
                .spawn(move || work_stealing::run(state, sources, shutdown_rx))
                .map_err(|e| StartError::Thread(e.to_string()))?;
            vec![thread]
        }
    };
    Ok(RunningServer { state, threads })
}

/// Pins the calling thread to `cpu`; false if the OS refused.
pub(crate) fn pin_current_thread(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// Accepts connections until shutdown is asked for, handing each to
/// `serve` (which spawns its task). Both runtimes use it.
pub(crate) async fn accept_until_shutdown(
    incoming: &shard_port::Incoming,
    shutdown: &watch::Receiver<bool>,
    mut serve: impl FnMut(TcpStream),
) {
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = incoming.next() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        if let Some(stream) = accepted {
            serve(stream);
        }
    }
}

/// Calls `tick` with the server clock every `--ttl-tick`, forever: the
/// shards' expiry and background work. Both runtimes use it.
pub(crate) async fn tick_every(state: Arc<ServerState>, mut tick: impl FnMut(Millis)) {
    let mut interval = tokio::time::interval(state.config.ttl_tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        tick(state.clock.now());
    }
}
