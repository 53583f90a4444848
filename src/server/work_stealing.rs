//! The work-stealing runtime, for comparison: tokio's `multi_thread`
//! scheduler, one accept loop, and every shard behind its own lock.
//!
//! Connections run on whichever worker is free and lock the owning shard
//! for each operation. The shard code, the connection loop and the
//! protocol are the ones the thread-per-core runtime uses, so an experiment
//! comparing the two compares ownership and dispatch and nothing else.

use super::plan::{Dispatch, Ran, Step};
use super::{ConnInfo, Control, ServerState, ShardReport};
use crate::stats::ThreadStats;
use crate::storage::{Prefetch, Shard};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

thread_local! {
    /// This worker's slot in the per-thread stats (assigned at thread start).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The shards, each behind its own lock.
struct Shared {
    shards: Box<[Mutex<Shard>]>,
    state: Arc<ServerState>,
}

impl Shared {
    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard would be a bug, but the shard's own
        // structures are still consistent between operations: keep serving.
        self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct SharedDispatch {
    shared: Arc<Shared>,
    /// The connection, whose thread says which worker counts it as open.
    conn: Arc<ConnInfo>,
    /// The ops of a batch as (shard, hash), sorted by shard to prefetch
    /// under one lock per shard; reused.
    by_shard: Vec<(usize, u64)>,
}

impl SharedDispatch {
    /// Starts loading the index buckets, then the item headers, of the ops
    /// in `steps`, taking each shard's lock once (only to read its index:
    /// the ops themselves still lock per op, as before).
    fn prefetch(&mut self, steps: &[Step]) {
        let router = &self.shared.state.router;
        self.by_shard.clear();
        self.by_shard
            .extend(steps.iter().filter_map(|step| match step {
                Step::Op(op) => Some((router.shard(op.hash), op.hash)),
                _ => None,
            }));
        self.by_shard.sort_unstable_by_key(|&(shard, _)| shard);
        for group in self.by_shard.chunk_by(|a, b| a.0 == b.0) {
            let shard = self.shared.lock(group[0].0);
            for what in [Prefetch::Bucket, Prefetch::Item] {
                for &(_, hash) in group {
                    shard.prefetch(hash, what);
                }
            }
        }
    }
}

impl Dispatch for SharedDispatch {
    async fn run(&mut self, steps: &[Step], base: &[u8], out: &mut Vec<u8>, budget: usize) -> Ran {
        self.prefetch(steps);
        let state = &self.shared.state;
        let now = state.clock.now();
        let mut ran = Ran::default();
        for step in steps {
            // Past the budget, the client reads what it has first.
            if out.len() >= budget && ran.answered > 0 {
                self.thread_stats().output_budget_waits.add(1);
                break;
            }
            match step {
                Step::Op(op) => {
                    let index = state.router.shard(op.hash);
                    let mut shard = self.shared.lock(index);
                    let ok = state.run_op(op, base, &mut shard, now, out, self.thread_stats());
                    ran.close |= !ok;
                }
                Step::Admin(_) => unreachable!("admin steps are run by the connection"),
                fixed => fixed.write_fixed(out),
            }
            ran.answered += 1;
        }
        ran
    }

    async fn control(&mut self, control: Control) -> Vec<ShardReport> {
        let state = &self.shared.state;
        let now = state.clock.now();
        let stats = self.thread_stats();
        (0..self.shared.shards.len())
            .map(|index| state.report(&mut self.shared.lock(index), control, now, stats))
            .collect()
    }

    /// Every reply is copied into the output.
    type Referenced = std::convert::Infallible;

    fn referenced(&self) -> &[Self::Referenced] {
        &[]
    }

    fn written(&mut self) {}

    fn thread_stats(&self) -> &ThreadStats {
        let threads = &self.shared.state.threads;
        let worker = WORKER.with(Cell::get);
        // Tasks move between workers: keep the connection counted open on
        // the one running it now, so each worker's gauge says what it
        // serves and the gauges still add up to the open connections.
        let counted = self.conn.thread.load(Ordering::Relaxed);
        if counted != worker {
            threads[counted].curr_connections.sub_shared(1);
            threads[worker].curr_connections.add_shared(1);
            self.conn.thread.store(worker, Ordering::Relaxed);
        }
        &threads[worker]
    }
}

/// Runs the work-stealing server until shutdown (blocks the calling thread).
pub fn run(
    state: Arc<ServerState>,
    sources: super::incoming::Sources,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let config = &state.config;
    let next_worker = Arc::new(AtomicUsize::new(0));
    let (threads, cpus, pin) = (config.threads, config.cpus.clone(), config.pin);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("corecache-worker")
        .on_thread_start(move || {
            // Workers are pinned like the thread-per-core threads, so the
            // two runtimes get the same CPUs; tasks still move between them.
            let worker = next_worker.fetch_add(1, Ordering::Relaxed) % threads;
            WORKER.with(|slot| slot.set(worker));
            if pin && !super::pinned::pin_current_thread(cpus[worker]) {
                tracing::warn!("could not pin worker {worker} to CPU {}", cpus[worker]);
            }
        })
        .enable_all()
        .build()?;
    let shared = Arc::new(Shared {
        shards: (0..config.shards)
            .map(|i| Mutex::new(Shard::new(&config.shard_config(i))))
            .collect(),
        state: state.clone(),
    });
    runtime.block_on(async move {
        // Both ports accept alike: any worker serves any key.
        let incoming = sources.into_incoming(0, state.clone())?;
        let tick_shared = shared.clone();
        let ticker = tokio::spawn(super::tick::tick_every(state.clone(), None, move |now| {
            // Each shard is locked in turn, briefly.
            let (state, stats) = (&tick_shared.state, &tick_shared.state.threads[0]);
            for index in 0..tick_shared.shards.len() {
                state.tick_shard(&mut tick_shared.lock(index), now, stats);
            }
            // This task is the counter's only writer, wherever it runs.
            tick_shared.state.threads[0].expiry_ticks.add(1);
        }));
        let mut connections = tokio::task::JoinSet::new();
        incoming
            .accept_until_shutdown(&shutdown, |stream, transport| {
                let (state, shared, stop) = (state.clone(), shared.clone(), shutdown.clone());
                connections.spawn(async move {
                    // Counted on the worker running it: this accept loop runs
                    // on the thread that called block_on, which is no worker.
                    let worker = WORKER.with(Cell::get);
                    let dispatch = |slot: &super::ConnectionSlot, _| SharedDispatch {
                        shared,
                        conn: slot.info.clone(),
                        by_shard: Vec::new(),
                    };
                    super::serve::serve_accepted(state, worker, stream, transport, stop, dispatch)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            })
            .await;
        drop(incoming);
        while connections.join_next().await.is_some() {}
        ticker.abort();
        Ok(())
    })
}
