//! The server: listeners, runtimes, connections, routing and forwarding.
//!
//! [`start`] binds the listeners, builds the shards and starts the chosen
//! runtime's threads, then returns a [`RunningServer`] handle. Both runtimes
//! run the same accept loop (`shard_port.rs`), the same admission
//! (`state.rs`) and TLS handshake (`tls.rs`) in [`serve_accepted`], the
//! same connection loop (`connection.rs`), the same
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
//! Connections come from `shard_port.rs` (`Incoming`): the plaintext
//! listen port, the TLS port if on, the shard-aware port if on, and
//! (thread-per-core) connections another core accepted there and handed to
//! the core their client port names. Each comes with the [`Transport`] of
//! its listener, which decides its handshake and its `listen_addr`.

mod admin;
mod auth;
mod binary;
mod connection;
mod dump;
mod forward;
/// The forwarding path's own types driven by two busy threads, for
/// `benches/mailbox.rs` only.
#[doc(hidden)]
pub use forward::saturated;
mod listener;
mod meta;
mod op;
mod pinned;
mod plan;
pub mod router;
mod settings;
pub mod shard_port;
mod spin;
mod state;
mod thread_per_core;
mod tls;
mod work_stealing;

pub use router::Router;
pub use settings::Tunables;
pub(crate) use state::{ConnInfo, ConnectionSlot, admit};
pub use state::{Control, DumpStep, ServerState, ShardAnswer, ShardReport};

use crate::clock::Clock;
use crate::config::{Config, RuntimeKind};
use crate::stats::ThreadStats;
use crate::storage::Millis;
use connection::Connection;
use listener::Transport;
use plan::Dispatch;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::JoinHandle;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, watch};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding a listen address failed.
    #[error("{setting} {addr}: {source}")]
    Bind {
        /// The setting that named the address.
        setting: &'static str,
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
    /// Binding a per-core port failed.
    #[error("--port-per-core: port {} (thread {thread}): {source}", addr.port())]
    PerCoreBind {
        /// The address (the listen address's IP).
        addr: SocketAddr,
        /// The thread whose port it is.
        thread: usize,
        /// The cause.
        source: std::io::Error,
    },
    /// The `--auth-file` could not be read or has a bad line.
    #[error("--auth-file {0}")]
    Auth(String),
    /// A TLS certificate, key or CA file could not be read or used.
    #[error("{setting} {reason}")]
    Tls {
        /// The setting that named the file.
        setting: &'static str,
        /// The file and what is wrong with it.
        reason: String,
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
    let sources = shard_port::sources(
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

/// Serves one accepted connection on `thread`, the task's whole life:
/// admission, the TLS handshake if it came in on a TLS listener, then the
/// connection loop with the dispatch `dispatch` makes. Both runtimes spawn
/// it for every accepted connection.
///
/// A panic in the connection's own work (its handshake, its login, its
/// parsing; a keyed operation's is contained in `ServerState::run_op`)
/// ends the connection, is logged and counted, and leaves the core's other
/// tasks (mail, ticks, accepts) running.
pub(crate) async fn serve_accepted<D: Dispatch>(
    state: Arc<ServerState>,
    thread: usize,
    stream: TcpStream,
    transport: Transport,
    stop: watch::Receiver<bool>,
    dispatch: impl FnOnce(&ConnectionSlot, Option<RawFd>) -> D,
) {
    let serve = serve_connection(state.clone(), thread, stream, transport, stop, dispatch);
    let mut serve = std::pin::pin!(serve);
    let panicked = std::future::poll_fn(|cx| {
        let poll = std::panic::AssertUnwindSafe(|| serve.as_mut().poll(cx));
        match std::panic::catch_unwind(poll) {
            Ok(std::task::Poll::Ready(())) => std::task::Poll::Ready(false),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(true),
        }
    })
    .await;
    if panicked {
        tracing::error!("a connection's task panicked; the connection is closed");
        state.threads[thread].request_panics.add_shared(1);
    }
}

/// [`serve_accepted`]'s work.
async fn serve_connection<D: Dispatch>(
    state: Arc<ServerState>,
    thread: usize,
    mut stream: TcpStream,
    transport: Transport,
    mut stop: watch::Receiver<bool>,
    dispatch: impl FnOnce(&ConnectionSlot, Option<RawFd>) -> D,
) {
    // Replies are written whole, once per batch: Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let Some(slot) = admit(&state, thread, &mut stream, transport).await else {
        return;
    };
    match transport {
        Transport::Plain | Transport::ShardAware | Transport::PerCore { tls: false } => {
            // Plaintext: another core may write a reply to the socket itself.
            let dispatch = dispatch(&slot, Some(slot.info.fd));
            Connection::new(stream, slot, state, dispatch, stop)
                .serve()
                .await
        }
        Transport::Tls | Transport::PerCore { tls: true } => {
            let acceptor = state.tls.as_ref().expect("a TLS listener has TLS on");
            let (timeout, stats) = (state.config.tls_handshake_timeout, &state.threads[thread]);
            let handshake = tls::handshake(acceptor, stream, timeout, &mut stop, stats);
            let Some(stream) = handshake.await else {
                return;
            };
            let dispatch = dispatch(&slot, None);
            Connection::new(stream, slot, state, dispatch, stop)
                .serve()
                .await
        }
    }
}

/// Calls `tick` with the server clock every `--ttl-tick`, forever: the
/// shards' expiry and background work; and, with `--idle-timeout`, about
/// once a second of the server clock, wakes the idle connections of
/// `thread` (all, if `None`). Both runtimes use it.
pub(crate) async fn tick_every(
    state: Arc<ServerState>,
    thread: Option<usize>,
    mut tick: impl FnMut(Millis),
) {
    const SWEEP_EVERY: Millis = 1000;
    let mut interval = tokio::time::interval(state.config.ttl_tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweeps = !state.config.idle_timeout.is_zero();
    let mut next_sweep = 0;
    loop {
        interval.tick().await;
        let now = state.clock.now();
        tick(now);
        if sweeps && now >= next_sweep {
            state.kick_idle(thread, now);
            next_sweep = now + SWEEP_EVERY;
        }
    }
}
