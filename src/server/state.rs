//! State every thread shares, and admission: the connection limit and
//! the registry `stats conns` reads.

use super::listener::Transport;
use super::{Barrier, watch};
use crate::clock::Clock;
use crate::config::Config;
use crate::server::Router;
use crate::stats::ThreadStats;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
    /// The address `--listen` is bound to (plaintext, or TLS when TLS
    /// took it).
    pub listen: SocketAddr,
    /// The address TLS clients connect to, when TLS is on.
    pub tls_listen: Option<SocketAddr>,
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
        if transport == Transport::Plain {
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
    };
    let info = Arc::new(ConnInfo {
        fd: std::os::fd::AsRawFd::as_raw_fd(&*stream),
        peer: stream.peer_addr().ok(),
        listen,
        thread: thread.into(),
        last_active: state.clock.now().into(),
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
    /// Runs `op` on `shard`, appending its reply to
    /// `out`. A panic is contained here: the shard, which the panic may
    /// have left half-updated, is replaced by an empty one, the request is
    /// answered `SERVER_ERROR internal error`, logged and counted, and false
    /// is returned so the connection is closed. Both runtimes run every op
    /// through this.
    pub(crate) fn run_op(
        &self,
        op: &super::op::Op,
        base: &[u8],
        shard: &mut crate::storage::Shard,
        now: crate::storage::Millis,
        out: &mut Vec<u8>,
        stats: &ThreadStats,
    ) -> bool {
        let start = out.len();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            op.execute(base, shard, &self.clock, now, out);
        }));
        if ran.is_ok() {
            return true;
        }
        tracing::error!(
            "a {:?} request for key {:?} panicked; its shard is reset to empty",
            op.kind,
            String::from_utf8_lossy(op.key.of(base)),
        );
        shard.reset();
        stats.request_panics.add_shared(1);
        out.truncate(start);
        op.write_error(crate::protocol::ErrorReply::Internal, out);
        false
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
            config,
        }
    }
}
