//! The server: listeners, runtimes, connections, routing and forwarding.
//!
//! [`start`] binds the listeners, builds the shards and starts the chosen
//! runtime's threads, then returns a [`RunningServer`] handle. Both runtimes
//! run the same accept loop (`incoming.rs`), the same admission
//! (`state.rs`) and TLS handshake (`tls.rs`) in one task per connection
//! (`serve.rs`), the same connection loop (`connection.rs`), the same
//! execution (`execute/`) on the same [`crate::storage::Shard`], and the
//! same expiry tick (`tick.rs`); they differ only in who owns a shard
//! and how an operation reaches it:
//!
//! - `thread_per_core.rs`: each pinned thread owns its shards; operations on
//!   another thread's keys are forwarded to it (`forward.rs`: batches,
//!   mailboxes, the wake protocol).
//! - `work_stealing.rs`: tokio's multi-threaded runtime; every shard sits
//!   behind its own lock and requests run in place.
//!
//! Connections come from `incoming.rs` (`Incoming`): the plaintext
//! listen port, the TLS port if on, the shard-aware port if on, and
//! (thread-per-core) connections another core accepted there and handed to
//! the core their client port names (`shard_port.rs`). Each comes with the
//! `Transport` of its listener, which decides its handshake and its
//! `listen_addr`.

mod admin;
mod auth;
mod binary;
mod classic;
mod connection;
mod dump;
mod execute;
mod forward;
mod incoming;
mod listener;
mod meta;
mod op;
mod pinned;
mod plan;
pub mod router;
mod serve;
mod settings;
pub mod shard_port;
mod spin;
mod start_error;
mod state;
mod thread_per_core;
mod tick;
mod tls;
mod tunables;
mod work_stealing;

/// The forwarding path's own types driven by two busy threads, for
/// `benches/mailbox.rs` only.
#[doc(hidden)]
pub use forward::saturated;
pub use router::Router;
pub use start_error::StartError;
pub(crate) use state::{ConnInfo, ConnectionSlot};
pub use state::{Control, DumpStep, ServerState, ShardAnswer, ShardReport};
pub use tunables::Tunables;

use crate::clock::Clock;
use crate::config::{Config, RuntimeKind};
use crate::stats::ThreadStats;
use listener::Transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::JoinHandle;
use tokio::sync::{Barrier, watch};

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

    /// Each thread's own port (`--port-per-core`), thread `i`'s at index
    /// `i`; empty when off.
    pub fn per_core_addrs(&self) -> &[SocketAddr] {
        &self.state.per_core
    }

    /// The address TLS clients connect to, when TLS is on: the one
    /// `--tls-listen` bound, or [`RunningServer::local_addr`] when TLS took
    /// `--listen` itself.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.state.tls_listen
    }

    /// What the server should warn of at start: each listener on an
    /// address other than loopback that lets in any client that reaches
    /// it. A plaintext listener (the shard-aware port is one) does so
    /// without `--auth-file`; a TLS one without `--auth-file` and without
    /// `--tls-ca` (TLS with no client certificate check encrypts, but keeps
    /// no one out).
    pub fn exposure_warnings(&self) -> Vec<String> {
        let (state, config) = (&self.state, &self.state.config);
        let mut warnings = Vec::new();
        if config.auth_file.is_some() {
            return warnings;
        }
        let plain = config.plaintext_listen().map(|_| state.listen);
        let per_core = state.per_core.iter().copied();
        // The per-core ports speak TLS when --listen does, so they are
        // warned of with it (below).
        let plain_per_core = per_core.clone().filter(|_| plain.is_some());
        let plain = plain
            .into_iter()
            .chain(state.shard_aware)
            .chain(plain_per_core);
        for addr in plain.filter(|addr| !addr.ip().to_canonical().is_loopback()) {
            warnings.push(format!(
                "{addr} is not a loopback address and has neither TLS nor --auth-file: \
                 anyone who can reach it can read, change and flush every item, \
                 and the traffic is in clear; listen on 127.0.0.1, or add \
                 --auth-file and TLS (README: Security)"
            ));
        }
        let verified = config.tls.as_ref().is_some_and(|tls| tls.ca.is_some());
        let tls_per_core = per_core.filter(|_| config.plaintext_listen().is_none());
        let tls = state.tls_listen.into_iter().chain(tls_per_core);
        let tls = tls.filter(|_| !verified);
        for addr in tls.filter(|addr| !addr.ip().to_canonical().is_loopback()) {
            warnings.push(format!(
                "TLS on {addr} is not on a loopback address and checks no client \
                 (no --tls-ca, no --auth-file): anyone who can reach it can read, \
                 change and flush every item; add --tls-ca or --auth-file \
                 (README: Security)"
            ));
        }
        warnings
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
    let count = match config.runtime {
        RuntimeKind::ThreadPerCore => config.threads,
        RuntimeKind::WorkStealing => 1,
    };
    let bind = |setting, addr| {
        listener::bind(addr, count).map_err(|source| StartError::Bind {
            setting,
            addr,
            source,
        })
    };
    // The files first: a bad one stops start-up before any port is taken.
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let auth = config.auth_file.as_deref().map(auth::AuthFile::load);
    let auth = auth.transpose().map_err(StartError::Auth)?;
    let plain = config
        .plaintext_listen()
        .map(|addr| bind("--listen", addr))
        .transpose()?;
    let tls_listen = match (&config.tls, config.tls_listen()) {
        (Some(settings), Some(addr)) => {
            let setting = match settings.listen {
                Some(_) => "--tls-listen",
                None => "--listen",
            };
            Some(bind(setting, addr)?)
        }
        _ => None,
    };
    let listen = match (&plain, &tls_listen) {
        (Some((_, addr)), _) | (None, Some((_, addr))) => *addr,
        (None, None) => unreachable!("--listen is plaintext unless TLS took it"),
    };
    // The shard-aware port: on --listen's address, as many listeners as
    // it has, plaintext whether or not TLS took --listen.
    let shard_aware = match config.shard_aware_port {
        0 => None,
        port => {
            let addr = SocketAddr::new(listen.ip(), port);
            let (bound, addr) = listener::bind(addr, count)
                .map_err(|source| StartError::ShardAwareBind { addr, source })?;
            Some((bound, addr))
        }
    };
    // The per-core ports: on --listen's address, one listener each, bound
    // by its own thread only; they speak what --listen speaks.
    let per_core_tls = plain.is_none();
    let mut per_core = Vec::new();
    for (thread, port) in config.per_core_ports().into_iter().enumerate() {
        let addr = SocketAddr::new(listen.ip(), port);
        let (mut bound, addr) =
            listener::bind(addr, 1).map_err(|source| StartError::PerCoreBind {
                addr,
                thread,
                source,
            })?;
        per_core.push((bound.pop().expect("one listener"), addr));
    }
    let per_core_addrs = per_core.iter().map(|(_, addr)| *addr).collect();
    let tls_addr = tls_listen.as_ref().map(|(_, addr)| *addr);
    let shard_aware_addr = shard_aware.as_ref().map(|(_, addr)| *addr);
    let hand_off = config.runtime == RuntimeKind::ThreadPerCore;
    let sources = incoming::sources(
        count,
        [plain, tls_listen, shard_aware].map(|bound| bound.map(|(listeners, _)| listeners)),
        per_core.into_iter().map(|(listener, _)| listener).collect(),
        Transport::PerCore { tls: per_core_tls },
        hand_off,
    );
    let (shutdown, shutdown_rx) = watch::channel(false);
    let state = Arc::new(ServerState {
        router: Router::new(config.shards, config.threads),
        listen,
        tls_listen: tls_addr,
        shard_aware: shard_aware_addr,
        per_core: per_core_addrs,
        tls,
        auth,
        clock,
        threads: (0..config.threads)
            .map(|_| ThreadStats::default())
            .collect(),
        connections: AtomicUsize::new(0),
        conns: std::sync::Mutex::new(slab::Slab::new()),
        drained: Barrier::new(config.threads),
        shutdown,
        tunables: Tunables::new(&config),
        debug_gate: Default::default(),
        config,
    });
    let threads = match state.config.runtime {
        RuntimeKind::ThreadPerCore => thread_per_core::start(&state, sources, shutdown_rx)?,
        RuntimeKind::WorkStealing => {
            let sources = sources.into_iter().next().expect("one set of listeners");
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
