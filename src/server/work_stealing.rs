//! The work-stealing runtime, for comparison: tokio's `multi_thread`
//! scheduler, one accept loop, and every shard behind its own lock.
//!
//! Connections run on whichever worker is free and lock the owning shard
//! for each operation. The shard code, the connection loop and the
//! protocol are the ones the thread-per-core runtime uses, so an experiment
//! comparing the two compares ownership and dispatch and nothing else.

use super::connection::{Connection, Dispatch, Step};
use super::{Control, ServerState, ShardReport};
use crate::stats::ThreadStats;
use crate::storage::Shard;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
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
}

impl Dispatch for SharedDispatch {
    async fn run(&mut self, steps: &[Step], base: &[u8], out: &mut Vec<u8>) {
        let state = &self.shared.state;
        let now = state.clock.now();
        for step in steps {
            match step {
                Step::Op(op) => {
                    let mut shard = self.shared.lock(state.router.shard(op.hash));
                    op.execute(base, &mut shard, &state.clock, now, out);
                }
                Step::Text(text) => out.extend_from_slice(text),
                Step::Error(error) => error.write(out),
                Step::Binary(reply) => reply.write(out),
                Step::Admin(_) => unreachable!("admin steps are run by the connection"),
            }
        }
    }

    async fn control(&mut self, control: Control) -> Vec<ShardReport> {
        let now = self.shared.state.clock.now();
        (0..self.shared.shards.len())
            .map(|index| ShardReport::of(&mut self.shared.lock(index), control, now))
            .collect()
    }

    fn thread_stats(&self) -> &ThreadStats {
        &self.shared.state.threads[WORKER.with(Cell::get)]
    }
}

/// Runs the work-stealing server until shutdown (blocks the calling thread).
pub fn run(
    state: Arc<ServerState>,
    listener: std::net::TcpListener,
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
            if pin && !super::pin_current_thread(cpus[worker]) {
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
        let listener = TcpListener::from_std(listener)?;
        let ticker = tokio::spawn(tick(shared.clone()));
        let mut connections = tokio::task::JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let worker = WORKER.with(Cell::get);
            let Some(admitted) = super::admit(&state, worker, stream).await else {
                continue;
            };
            let dispatch = SharedDispatch {
                shared: shared.clone(),
            };
            let connection = Connection::new(admitted, state.clone(), dispatch);
            let stop = shutdown.clone();
            connections.spawn(async move {
                connection.serve(stop).await;
            });
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
        ticker.abort();
        Ok(())
    })
}

/// Periodic expiry: each shard is locked in turn, briefly.
async fn tick(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(shared.state.config.ttl_tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = shared.state.clock.now();
        for index in 0..shared.shards.len() {
            shared.lock(index).tick(now);
        }
    }
}
