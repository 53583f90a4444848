//! The server: listeners, runtimes, connections, routing and forwarding.
//!
//! [`start`] binds the listeners, builds the shards and starts the chosen
//! runtime's threads, then returns a [`RunningServer`] handle. Both runtimes
//! run the same connection loop (`connection.rs`) and the same `Op::execute`
//! (`op.rs`) on the same [`crate::storage::Shard`]; they differ only in who
//! owns a shard and how an operation reaches it:
//!
//! - `thread_per_core.rs`: each pinned thread owns its shards; operations on
//!   another thread's keys are forwarded to it in batches.
//! - `work_stealing.rs`: tokio's multi-threaded runtime; every shard sits
//!   behind its own lock and requests run in place.

mod admin;
mod binary;
mod connection;
mod listener;
mod meta;
mod op;
pub mod router;
mod thread_per_core;
mod work_stealing;

pub use router::Router;

use crate::clock::Clock;
use crate::config::{Config, RuntimeKind};
use crate::stats::ThreadStats;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, watch};

/// A request that must reach every shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Report each shard's counters.
    Stats,
    /// Invalidate everything stored up to `at` (`flush_all`).
    Flush {
        /// When the flush takes effect, on the server clock.
        at: crate::storage::Millis,
    },
    /// Zero the counters (`stats reset`).
    ResetStats,
    /// Report counters and per-slab-class figures (`stats slabs`/`items`).
    Slabs,
}

/// One shard's answer to a [`Control`] request.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    /// The shard's counters.
    pub stats: crate::storage::ShardStats,
    /// Per-class figures; filled in only for [`Control::Slabs`].
    pub classes: Vec<crate::storage::SlabClassStats>,
    /// Bytes of slab pages the shard has taken from its budget.
    pub page_bytes: u64,
}

impl ShardReport {
    /// Runs `control` on `shard` and reports on it.
    pub fn of(
        shard: &mut crate::storage::Shard,
        control: Control,
        now: crate::storage::Millis,
    ) -> ShardReport {
        match control {
            Control::Stats | Control::Slabs => {}
            Control::Flush { at } => shard.flush(at, now),
            Control::ResetStats => shard.reset_stats(),
        }
        ShardReport {
            stats: shard.stats().clone(),
            classes: if control == Control::Slabs {
                shard.slab_class_stats(now)
            } else {
                Vec::new()
            },
            page_bytes: (shard.pages_allocated() * shard.page_size()) as u64,
        }
    }
}

/// State shared by every thread: read-mostly, nothing on it is locked.
pub struct ServerState {
    /// The configuration the server runs with.
    pub config: Config,
    /// The address the listeners are bound to.
    pub listen: SocketAddr,
    /// The server clock.
    pub clock: Clock,
    /// Key -> shard -> thread.
    pub router: Router,
    /// One slot per thread.
    pub threads: Box<[ThreadStats]>,
    /// Open connections, for the `max_connections` limit.
    connections: AtomicUsize,
    /// Every open connection, for `stats conns`. Locked only when a
    /// connection opens or closes and when `stats conns` reads it: never
    /// per request.
    conns: std::sync::Mutex<slab::Slab<Arc<ConnInfo>>>,
    /// Set to true to stop the server.
    shutdown: watch::Sender<bool>,
    /// Thread-per-core threads meet here after their connections close, so
    /// no core stops serving forwarded work while another still needs it.
    drained: Barrier,
}

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
    let listeners = match config.runtime {
        RuntimeKind::ThreadPerCore => config.threads,
        RuntimeKind::WorkStealing => 1,
    };
    let (listeners, listen) =
        listener::bind(config.listen, listeners).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let state = Arc::new(ServerState {
        router: Router::new(config.shards, config.threads),
        listen,
        clock: Clock::new(),
        threads: (0..config.threads)
            .map(|_| ThreadStats::default())
            .collect(),
        connections: AtomicUsize::new(0),
        conns: std::sync::Mutex::new(slab::Slab::new()),
        drained: Barrier::new(config.threads),
        shutdown,
        config,
    });
    let threads = match state.config.runtime {
        RuntimeKind::ThreadPerCore => start_thread_per_core(&state, listeners, shutdown_rx)?,
        RuntimeKind::WorkStealing => {
            let listener = listeners.into_iter().next().expect("one listener");
            let state = state.clone();
            let thread = std::thread::Builder::new()
                .name("corecache-main".into())
                .spawn(move || work_stealing::run(state, listener, shutdown_rx))
                .map_err(|e| StartError::Thread(e.to_string()))?;
            vec![thread]
        }
    };
    Ok(RunningServer { state, threads })
}

fn start_thread_per_core(
    state: &Arc<ServerState>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<std::io::Result<()>>>, StartError> {
    let config = &state.config;
    let (senders, receivers) = thread_per_core::inboxes(config.threads, config.max_connections);
    let mut threads = Vec::new();
    // Every thread pins itself and reports; then all start, or all exit if
    // any could not pin, so a bad --cpus fails start-up cleanly.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let gate = Arc::new((
        std::sync::Barrier::new(config.threads + 1),
        AtomicBool::new(false),
    ));
    for (index, (listener, inbox)) in listeners.into_iter().zip(receivers).enumerate() {
        let setup = thread_per_core::CoreSetup {
            index,
            listener,
            inboxes: senders.clone(),
            inbox,
            state: state.clone(),
        };
        let cpu = config.pin.then(|| config.cpus[index]);
        let shutdown = shutdown.clone();
        let ready = ready_tx.clone();
        let gate = gate.clone();
        let thread = std::thread::Builder::new()
            .name(format!("corecache-{index}"))
            .spawn(move || {
                let pinned = cpu.is_none_or(pin_current_thread);
                let _ = ready.send((cpu, pinned));
                gate.0.wait();
                if !gate.1.load(Ordering::Acquire) {
                    return Ok(());
                }
                thread_per_core::run_core(setup, shutdown)
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        threads.push(thread);
    }
    drop(ready_tx);
    // Exactly one report per thread (the threads keep their senders).
    let failed = ready_rx
        .iter()
        .take(config.threads)
        .fold(None, |failed, (cpu, pinned)| {
            failed.or((!pinned).then_some(cpu))
        });
    gate.1.store(failed.is_none(), Ordering::Release);
    gate.0.wait();
    if let Some(cpu) = failed {
        for thread in threads {
            let _ = thread.join();
        }
        return Err(StartError::Thread(format!(
            "could not pin a thread to CPU {}",
            cpu.unwrap_or_default()
        )));
    }
    Ok(threads)
}

/// Pins the calling thread to `cpu`; false if the OS refused.
pub(crate) fn pin_current_thread(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// What `stats conns` shows about one open connection.
pub(crate) struct ConnInfo {
    /// The socket's file descriptor (memcached names connections by it).
    pub fd: i32,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The thread that accepted it.
    pub thread: usize,
    /// Server-clock milliseconds of its last request.
    pub last_active: std::sync::atomic::AtomicU64,
}

impl ServerState {
    /// A snapshot of the open connections, by file descriptor.
    pub(crate) fn open_connections(&self) -> Vec<Arc<ConnInfo>> {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = conns.iter().map(|(_, info)| info.clone()).collect();
        all.sort_by_key(|info| info.fd);
        all
    }
}

/// An admitted connection: counted and listed until the slot is dropped.
pub(crate) struct Admitted {
    pub stream: TcpStream,
    pub slot: ConnectionSlot,
}

/// Keeps a connection counted and listed; undoes both when dropped.
pub(crate) struct ConnectionSlot {
    state: Arc<ServerState>,
    thread: usize,
    key: usize,
    pub info: Arc<ConnInfo>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.state.connections.fetch_sub(1, Ordering::Relaxed);
        self.state.threads[self.thread]
            .curr_connections
            .sub_shared(1);
        let mut conns = self.state.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.remove(self.key);
    }
}

/// Counts a new connection, or refuses it with memcached's error when the
/// server is full.
pub(crate) async fn admit(
    state: &Arc<ServerState>,
    thread: usize,
    mut stream: TcpStream,
) -> Option<Admitted> {
    let stats = &state.threads[thread];
    let open = state.connections.fetch_add(1, Ordering::Relaxed);
    if open >= state.config.max_connections {
        state.connections.fetch_sub(1, Ordering::Relaxed);
        stats.rejected_connections.add_shared(1);
        let _ = stream
            .write_all(b"ERROR Too many open connections\r\n")
            .await;
        return None;
    }
    stats.curr_connections.add_shared(1);
    stats.total_connections.add_shared(1);
    let info = Arc::new(ConnInfo {
        fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
        peer: stream.peer_addr().ok(),
        thread,
        last_active: state.clock.now().into(),
    });
    let key = state
        .conns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(info.clone());
    Some(Admitted {
        stream,
        slot: ConnectionSlot {
            state: state.clone(),
            thread,
            key,
            info,
        },
    })
}
