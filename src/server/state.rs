//! State every thread shares, and admission: the connection limit and
//! the registry `stats conns` reads.

use super::listener::Transport;
use super::{Barrier, watch};
use crate::clock::Clock;
use crate::config::Config;
use crate::protocol::admin::ClassSet;
use crate::server::Router;
use crate::stats::ThreadStats;
use crate::storage::{
    AutomoveMode, CacheDumpItem, MetaDumpBatch, MetaDumpId, Millis, PrefixCounts, ReassignOutcome,
    Shard, memory_share,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A request that must reach every shard. Plain data (`Copy`), so one
/// value is posted to every core; a request about one shard names it, and
/// the others only report.
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
    /// Give every shard its share of a new memory limit (`cache_memlimit`).
    MemoryLimit {
        /// The server's new limit in bytes.
        total: u64,
    },
    /// Set the automove mode (`slabs automove`).
    Automove(AutomoveMode),
    /// Move one page on one shard (`slabs reassign`, memcached's class
    /// numbers).
    Reassign {
        /// The shard to move it on.
        shard: usize,
        /// Source class.
        src: i64,
        /// Destination class.
        dst: i64,
    },
    /// Report item sizes, after switching counting on or off if asked
    /// (`stats sizes`, `sizes_enable`, `sizes_disable`).
    Sizes(Option<bool>),
    /// Count requests per key prefix, or stop (`stats detail on|off`).
    Detail(bool),
    /// Report the per-prefix counts (`stats detail dump`).
    DetailDump,
    /// List items of a class on one shard (`stats cachedump`).
    CacheDump {
        /// The shard to list.
        shard: usize,
        /// The class, 0-based.
        class: usize,
        /// Items at most; 0 for as many as fit in memcached's 2 MiB.
        limit: usize,
    },
    /// One step of a metadump on every shard (`lru_crawler metadump`).
    MetaDump {
        /// The dump, named by the server.
        id: u64,
        /// What to do.
        step: DumpStep,
    },
}

/// One step of a metadump; see [`Control::MetaDump`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpStep {
    /// Open a cursor over these classes (memcached's numbers), or all.
    Start(Option<ClassSet>),
    /// List up to this many more items.
    Next(usize),
    /// Close the cursor (the client went away).
    End,
}

/// One shard's answer to a [`Control`] request.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    /// The shard's index.
    pub shard: usize,
    /// The shard's counters.
    pub stats: crate::storage::ShardStats,
    /// Per-class figures; filled in only for [`Control::Slabs`].
    pub classes: Vec<crate::storage::SlabClassStats>,
    /// Bytes of slab pages the shard has taken from its budget.
    pub page_bytes: u64,
    /// Bytes of the shard's hash index.
    pub index_bytes: u64,
    /// The index is growing into a larger table.
    pub index_growing: bool,
    /// What a request about something other than counters found.
    pub answer: ShardAnswer,
}

/// The part of a [`ShardReport`] particular to its request.
#[derive(Clone, Debug, Default)]
pub enum ShardAnswer {
    /// Nothing beyond the counters (or the request named another shard).
    #[default]
    None,
    /// [`Control::MemoryLimit`]: whether the shard took its share.
    MemoryLimit(Result<(), String>),
    /// [`Control::Reassign`]
    Reassign(ReassignOutcome),
    /// [`Control::Sizes`]: `None` while counting is off.
    Sizes(Option<Vec<(usize, u64)>>),
    /// [`Control::DetailDump`]
    Prefixes(Vec<(Vec<u8>, PrefixCounts)>),
    /// [`Control::CacheDump`]
    CacheDump(Vec<CacheDumpItem>),
    /// [`Control::MetaDump`]: this step's items; `None` once the shard's
    /// cursor is closed.
    MetaDump(Option<MetaDumpBatch>),
}

impl ShardReport {
    /// Runs `control` on `shard` and reports on it.
    pub fn of(shard: &mut Shard, control: Control, now: Millis) -> ShardReport {
        crate::fault::check(crate::fault::Site::Report);
        let index = shard.index();
        let answer = match control {
            Control::Stats | Control::Slabs => ShardAnswer::None,
            Control::Flush { at } => {
                shard.flush(at, now);
                ShardAnswer::None
            }
            Control::ResetStats => {
                shard.reset_stats();
                ShardAnswer::None
            }
            Control::MemoryLimit { total } => {
                let share = memory_share(total as usize, index, shard.shard_count());
                ShardAnswer::MemoryLimit(shard.set_memory_limit(share))
            }
            Control::Automove(mode) => {
                shard.set_automove(mode);
                ShardAnswer::None
            }
            Control::Reassign {
                shard: at,
                src,
                dst,
            } if at == index => ShardAnswer::Reassign(shard.slabs_reassign(src, dst, now)),
            Control::Sizes(switch) => {
                if let Some(on) = switch {
                    shard.set_size_histogram(on);
                }
                ShardAnswer::Sizes(shard.size_histogram())
            }
            Control::Detail(on) => {
                shard.set_prefix_stats(on);
                ShardAnswer::None
            }
            Control::DetailDump => ShardAnswer::Prefixes(shard.prefix_stats()),
            Control::CacheDump {
                shard: at,
                class,
                limit,
            } if at == index => ShardAnswer::CacheDump(shard.cachedump(class, limit, now)),
            Control::MetaDump { id, step } => {
                let id = MetaDumpId(id);
                match step {
                    DumpStep::Start(classes) => {
                        let classes: Option<Vec<usize>> =
                            classes.map(|set| set.iter().map(|c| c - 1).collect());
                        shard.metadump_start(id, classes.as_deref());
                        ShardAnswer::None
                    }
                    DumpStep::Next(max) => ShardAnswer::MetaDump(shard.metadump_next(id, max, now)),
                    DumpStep::End => {
                        shard.metadump_end(id);
                        ShardAnswer::None
                    }
                }
            }
            Control::Reassign { .. } | Control::CacheDump { .. } => ShardAnswer::None,
        };
        ShardReport {
            shard: index,
            stats: shard.stats().clone(),
            classes: if control == Control::Slabs {
                shard.slab_class_stats(now)
            } else {
                Vec::new()
            },
            page_bytes: (shard.pages_allocated() * shard.page_size()) as u64,
            index_bytes: shard.index_memory() as u64,
            index_growing: shard.index_growing(),
            answer,
        }
    }
}

/// State shared by every thread: read-mostly, nothing on it is locked.
pub struct ServerState {
    /// The configuration the server runs with.
    pub config: Config,
    /// The address `--listen` is bound to (plaintext, or TLS when TLS
    /// took it).
    pub listen: SocketAddr,
    /// The address TLS clients connect to, when TLS is on.
    pub tls_listen: Option<SocketAddr>,
    /// The shard-aware port's address, when it is on.
    pub shard_aware: Option<SocketAddr>,
    /// Each thread's own port (`--port-per-core`), by thread; empty when
    /// off.
    pub per_core: Vec<SocketAddr>,
    /// The TLS configuration every TLS listener shares, when TLS is on.
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    /// The users of `--auth-file`, when clients must authenticate.
    pub(super) auth: Option<super::auth::AuthFile>,
    /// The server clock.
    pub clock: Clock,
    /// Key -> shard -> thread.
    pub router: Router,
    /// One slot per thread.
    pub threads: Box<[ThreadStats]>,
    /// Open connections, for the `max_connections` limit.
    pub(super) connections: AtomicUsize,
    /// Every open connection, for `stats conns`. Locked only when a
    /// connection opens or closes and when `stats conns` reads it: never
    /// per request.
    pub(super) conns: std::sync::Mutex<slab::Slab<Arc<ConnInfo>>>,
    /// Set to true to stop the server.
    pub(super) shutdown: watch::Sender<bool>,
    /// Thread-per-core threads meet here after their connections close, so
    /// no core stops serving forwarded work while another still needs it.
    pub(super) drained: Barrier,
    /// What the admin commands change while the server runs.
    pub tunables: super::Tunables,
    /// Where `debug_hold` waits for `debug_release` (debug builds only).
    pub(crate) debug_gate: DebugGate,
}

/// Lets a test stop a core dead, as a core that cannot keep up would be,
/// and start it again: `debug_hold` blocks the thread that runs it until a
/// `debug_release` from a connection of another thread. Debug builds only
/// (the parser knows neither command in a release build).
#[derive(Default)]
pub(crate) struct DebugGate {
    released: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
}

impl DebugGate {
    /// A held test must not hang the process if it never releases: a hold
    /// gives up after this long.
    const LONGEST: std::time::Duration = std::time::Duration::from_secs(60);

    /// Blocks until released (or [`DebugGate::LONGEST`] has passed), then
    /// re-arms the gate for the next hold.
    pub(crate) fn hold(&self) {
        let released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        let (mut released, _) = self
            .wake
            .wait_timeout_while(released, Self::LONGEST, |released| !*released)
            .unwrap_or_else(|e| e.into_inner());
        *released = false;
    }

    /// Lets the current (or next) hold go.
    pub(crate) fn release(&self) {
        *self.released.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }
}

/// What `stats conns` shows about one open connection.
pub(crate) struct ConnInfo {
    /// The socket's file descriptor (memcached names connections by it).
    pub fd: i32,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The address of the listener it came in on.
    pub listen: SocketAddr,
    /// The thread serving it (work-stealing: the worker it last ran on).
    pub thread: AtomicUsize,
    /// Server-clock milliseconds of its last request.
    pub last_active: std::sync::atomic::AtomicU64,
    /// Told by the idle sweep ([`ServerState::kick_idle`]) that the
    /// connection looks idle; the connection checks for itself.
    pub idle_kick: tokio::sync::Notify,
    /// What the connection is doing, as `stats conns` names it.
    pub state: std::sync::atomic::AtomicU8,
}

/// What a connection is doing, in memcached's words for `stats conns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ConnState {
    /// Waiting for the client to send something.
    Waiting = 0,
    /// Running what it read.
    ParseCmd = 1,
    /// Writing replies (a client that does not read keeps it here).
    Mwrite = 2,
}

impl ConnState {
    /// memcached's name for the state.
    pub(crate) fn name(state: u8) -> &'static str {
        match state {
            0 => "conn_waiting",
            1 => "conn_parse_cmd",
            _ => "conn_mwrite",
        }
    }
}

impl ConnInfo {
    /// Records what the connection is doing (only its own task writes it).
    pub(crate) fn set_state(&self, state: ConnState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Whether the connection has sent nothing for `--idle-timeout` (never,
    /// with the timeout off).
    pub(crate) fn is_idle(&self, config: &Config, now: Millis) -> bool {
        let timeout = config.idle_timeout.as_millis() as Millis;
        let since = self.last_active.load(Ordering::Relaxed);
        timeout > 0 && now.saturating_sub(since) >= timeout
    }
}

impl ServerState {
    /// A snapshot of the open connections, by file descriptor.
    pub(crate) fn open_connections(&self) -> Vec<Arc<ConnInfo>> {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = conns.iter().map(|(_, info)| info.clone()).collect();
        all.sort_by_key(|info| info.fd);
        all
    }

    /// Wakes the connections of `thread` (every thread's, if `None`) that
    /// have sent nothing for `--idle-timeout`, as memcached's idle thread
    /// does. Each checks again before it closes: one that was busy
    /// answering when the sweep passed read since. Called from the ticks,
    /// about once a second (of the server clock).
    pub(crate) fn kick_idle(&self, thread: Option<usize>, now: Millis) {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        for (_, info) in conns.iter() {
            let mine = thread.is_none_or(|t| info.thread.load(Ordering::Relaxed) == t);
            if mine && info.is_idle(&self.config, now) {
                info.idle_kick.notify_one();
            }
        }
    }
}

/// Keeps a connection counted and listed; undoes both when dropped.
pub(crate) struct ConnectionSlot {
    state: Arc<ServerState>,
    key: usize,
    pub info: Arc<ConnInfo>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.state.connections.fetch_sub(1, Ordering::Relaxed);
        self.state.threads[self.info.thread.load(Ordering::Relaxed)]
            .curr_connections
            .sub_shared(1);
        let mut conns = self.state.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.remove(self.key);
    }
}

/// Counts a new connection, or refuses it when the server is full: with
/// memcached's error on a plaintext connection, by closing it on a TLS one
/// (nothing can be said to a client before its handshake, and a refused
/// client is not worth one). Counting comes before any handshake, so
/// handshakes in flight count against `--max-connections` too.
pub(crate) async fn admit(
    state: &Arc<ServerState>,
    thread: usize,
    stream: &mut TcpStream,
    transport: Transport,
) -> Option<ConnectionSlot> {
    let stats = &state.threads[thread];
    let open = state.connections.fetch_add(1, Ordering::Relaxed);
    if open >= state.config.max_connections {
        state.connections.fetch_sub(1, Ordering::Relaxed);
        stats.rejected_connections.add_shared(1);
        if !transport.is_tls() {
            let _ = stream
                .write_all(b"ERROR Too many open connections\r\n")
                .await;
        }
        return None;
    }
    stats.curr_connections.add_shared(1);
    stats.total_connections.add_shared(1);
    let listen = match transport {
        Transport::Plain => state.listen,
        Transport::Tls => state.tls_listen.unwrap_or(state.listen),
        Transport::ShardAware => state.shard_aware.unwrap_or(state.listen),
        Transport::PerCore { .. } => state.per_core[thread],
    };
    let info = Arc::new(ConnInfo {
        fd: std::os::fd::AsRawFd::as_raw_fd(&*stream),
        peer: stream.peer_addr().ok(),
        listen,
        thread: thread.into(),
        last_active: state.clock.now().into(),
        idle_kick: tokio::sync::Notify::new(),
        state: std::sync::atomic::AtomicU8::new(ConnState::Waiting as u8),
    });
    let key = state
        .conns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(info.clone());
    Some(ConnectionSlot {
        state: state.clone(),
        key,
        info,
    })
}

impl ServerState {
    /// Runs `control` on `shard` ([`ShardReport::of`]), containing a panic
    /// as [`ServerState::run_op`] does: the shard is reset, the panic
    /// logged and counted, and an empty report stands in for its answer.
    /// Both runtimes report through this, on whatever task asks.
    pub(crate) fn report(
        &self,
        shard: &mut crate::storage::Shard,
        control: Control,
        now: crate::storage::Millis,
        stats: &ThreadStats,
    ) -> ShardReport {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ShardReport::of(shard, control, now)
        }));
        ran.unwrap_or_else(|_| {
            tracing::error!(
                "a {control:?} report on shard {} panicked; the shard is reset to empty",
                shard.index()
            );
            shard.reset();
            stats.request_panics.add_shared(1);
            ShardReport {
                shard: shard.index(),
                ..ShardReport::default()
            }
        })
    }

    /// Runs `shard`'s tick (expiry, the page mover, a memory shrink),
    /// containing a panic: the shard is reset, the panic logged and
    /// counted, and the next tick runs as usual.
    pub(crate) fn tick_shard(
        &self,
        shard: &mut crate::storage::Shard,
        now: crate::storage::Millis,
        stats: &ThreadStats,
    ) {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.tick(now)));
        if ran.is_err() {
            tracing::error!(
                "a tick on shard {} panicked; the shard is reset to empty",
                shard.index()
            );
            shard.reset();
            stats.tick_panics.add_shared(1);
        }
    }
}

#[cfg(test)]
impl ServerState {
    /// State for unit tests that need one without starting a server.
    pub(crate) fn for_tests(config: Config) -> ServerState {
        ServerState {
            router: Router::new(config.shards, config.threads),
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen: None,
            shard_aware: None,
            per_core: Vec::new(),
            tls: None,
            auth: None,
            clock: Clock::new(),
            threads: (0..config.threads)
                .map(|_| ThreadStats::default())
                .collect(),
            connections: AtomicUsize::new(0),
            conns: Default::default(),
            shutdown: watch::channel(false).0,
            drained: Barrier::new(config.threads),
            tunables: super::Tunables::new(&config),
            debug_gate: DebugGate::default(),
            config,
        }
    }
}
