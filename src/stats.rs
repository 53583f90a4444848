//! Per-thread counters: connections, requests and forwarding, for `stats`
//! and `stats threads`.
//!
//! Each thread writes only its own [`ThreadStats`]; any thread may read all
//! of them. A [`Counter`] is an atomic used with plain loads and stores
//! (one writer), so counting costs an ordinary add, never a locked
//! instruction, and a reader sees a recent value. Counters kept by the
//! shards themselves (hits, misses, items, bytes) live in
//! [`crate::storage::ShardStats`] and are gathered from the shards.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with a single writer and any number of readers.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread may call this: two writers could
    /// lose updates (never corrupt memory).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Subtracts `n` (same rule as [`Counter::add`]).
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    /// Adds `n` with an atomic read-modify-write, for the few counters
    /// more than one thread updates (connection gauges in the work-stealing
    /// runtime, where a connection may close on another worker).
    pub fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    /// Subtracts `n` atomically (see [`Counter::add_shared`]).
    pub fn sub_shared(&self, n: u64) {
        self.0.fetch_sub(n, Relaxed);
    }

    /// Raises the value to `n` if it is below (a high-water mark; same
    /// rule as [`Counter::add`]).
    #[inline]
    pub fn raise_to(&self, n: u64) {
        if n > self.0.load(Relaxed) {
            self.0.store(n, Relaxed);
        }
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// Sets the value to zero (`stats reset`).
    pub fn reset(&self) {
        self.0.store(0, Relaxed);
    }
}

/// One thread's counters. Aligned to a cache line so two threads never
/// write the same line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ThreadStats {
    /// Connections open now on this thread.
    pub curr_connections: Counter,
    /// Connections ever accepted by this thread.
    pub total_connections: Counter,
    /// Connections refused because the server was full.
    pub rejected_connections: Counter,
    /// Connections this thread accepted on the shard-aware port and handed
    /// to the thread their client port names.
    pub handed_off: Counter,
    /// Connections this thread accepted on the shard-aware port and closed
    /// because their thread's adoption queue was full (or it had stopped).
    pub handoffs_refused: Counter,
    /// Requests parsed by this thread's connections.
    pub cmd_total: Counter,
    /// Keyed operations this thread sent to another thread's shards.
    pub forwarded_out: Counter,
    /// Keyed operations this thread ran for another thread.
    pub forwarded_in: Counter,
    /// Forward messages this thread sent (one per owner per turn, each
    /// carrying the forwarded operations of all its connections).
    pub forward_messages: Counter,
    /// Reply messages this thread received for its forwards.
    pub forward_replies: Counter,
    /// Gauge: forward messages this thread sent whose replies have not
    /// come back yet. Zero whenever no connection of the thread waits.
    pub forward_inflight: Counter,
    /// Gauge: this thread's connections waiting for forwarded replies.
    pub forward_waiting: Counter,
    /// Forwarded replies that came back for a connection that had gone
    /// (dropped unread; the owner had already run the operations).
    pub forward_orphans: Counter,
    /// The most messages this thread's mailbox held at once, seen when it
    /// drains it (bounded by the open connections: see `forward::capacity`).
    pub mailbox_max_depth: Counter,
    /// Connections closed by `--idle-timeout`.
    pub idle_kicks: Counter,
    /// Times this thread woke another one that had said it sleeps.
    pub core_wakes: Counter,
    /// Times this thread said it sleeps (its runtime was about to park).
    pub core_sleeps: Counter,
    /// Spins for forwarded replies that ended with a message (`--spin`).
    pub spin_hits: Counter,
    /// Spins for forwarded replies that ran out their window; each halves
    /// the next one (see `server::spin`).
    pub spin_misses: Counter,
    /// Requests whose handling panicked: a keyed operation or a shard's
    /// report for an admin request (the shard was reset), or a connection's
    /// own work, its TLS handshake or login included (it was closed).
    pub request_panics: Counter,
    /// Expiry ticks (and the page moves they run) that panicked on a shard
    /// (the shard was reset).
    pub tick_panics: Counter,
    /// Times a connection of this thread stopped taking requests because
    /// its queued output reached `--output-budget`, and wrote first.
    pub output_budget_waits: Counter,
    /// Forwarded requests whose replies this thread wrote to the client's
    /// socket itself, sparing the connection's thread a wake (pipeline 1).
    pub forward_direct_replies: Counter,
    /// Forwarded operations this thread left for a later batch because
    /// their connection's share of its output budget was spent.
    pub forward_deferred: Counter,
    /// Forwarded reads this thread answered `SERVER_ERROR out of memory
    /// writing get response`: their connection's share of its output
    /// budget was spent and they could not wait (see `server::forward`).
    pub get_budget_refused: Counter,
    /// Bytes read from clients.
    pub bytes_read: Counter,
    /// Bytes written to clients.
    pub bytes_written: Counter,
    /// `flush_all` commands.
    pub cmd_flush: Counter,
    /// TLS handshakes that failed or timed out (`ssl_handshake_errors`).
    pub tls_handshake_errors: Counter,
    /// Authentication attempts (`--auth-file`), right or wrong.
    pub auth_cmds: Counter,
    /// Authentication attempts with a wrong user or password.
    pub auth_errors: Counter,
    /// Expiry ticks run over this thread's shards (work-stealing: the one
    /// tick task, over every shard, counts on thread 0). Lets a test wait
    /// for the wheel to have run after it moved a held clock.
    pub expiry_ticks: Counter,
}

impl ThreadStats {
    /// Zeroes the event counters, keeping the gauges (`curr_connections`,
    /// `forward_inflight`, `forward_waiting`) and `expiry_ticks` (background work, which a reset must not make look
    /// as if it had not happened since some earlier reading).
    pub fn reset(&self) {
        for counter in [
            &self.total_connections,
            &self.rejected_connections,
            &self.handed_off,
            &self.handoffs_refused,
            &self.cmd_total,
            &self.forwarded_out,
            &self.forwarded_in,
            &self.forward_messages,
            &self.forward_replies,
            &self.forward_orphans,
            &self.mailbox_max_depth,
            &self.idle_kicks,
            &self.core_wakes,
            &self.core_sleeps,
            &self.spin_hits,
            &self.spin_misses,
            &self.request_panics,
            &self.tick_panics,
            &self.output_budget_waits,
            &self.forward_deferred,
            &self.forward_direct_replies,
            &self.get_budget_refused,
            &self.bytes_read,
            &self.bytes_written,
            &self.cmd_flush,
            &self.tls_handshake_errors,
            &self.auth_cmds,
            &self.auth_errors,
        ] {
            counter.reset();
        }
    }
}
