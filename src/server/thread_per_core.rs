//! The thread-per-core runtime: one pinned `current_thread` tokio runtime
//! per core, each owning its shards outright.
//!
//! ```text
//!  core A (pinned)                                   core B (pinned)
//!  listener -> connections                           listener -> connections
//!   plan a read batch:                                ...
//!    key on A -> run on A's shard now
//!    key on B -> A's outbox for B                    mailbox task, in B's turn or
//!   wait for replies          A's mailbox task -->   when woken: run every op on
//!                             (once per turn)        B's shards, post replies
//!   stitch replies in order <-- A's mailbox task <-- (one message per batch)
//!   one write
//! ```
//!
//! Invariants:
//! - A shard is touched only by its owning thread: no locks on the data path.
//! - A connection's bytes are read by its own core, and written by it, with
//!   one exception: at pipeline 1, when a plain connection's whole read
//!   goes to one other core, that owner writes the replies to the socket
//!   itself (one wake fewer on the client's path); the connection waits for
//!   the batch before it reads or writes again, so the owner's bytes are
//!   always the next the client gets (`forward/hop.rs`, "One wake fewer").
//!   TLS connections are only ever written by their own core.
//! - Replies leave a connection in request order. A multi-key get spanning
//!   cores is stitched back together in key order.
//! - **Writes become visible in the order a connection sent them**, as in
//!   memcached. Three things make it so. Messages between two cores are
//!   run in the order they were posted. A mailbox run takes its messages
//!   before it sends anything, and sends every forward before any reply, so
//!   whoever learns of a write through a reply is behind the forwards that
//!   preceded it, in every queue. And a forwarded write to one owner is
//!   held back while an earlier write of the same batch to *another* owner
//!   is unanswered (the next "wave" of the batch goes once it is): two
//!   owners' queues are not ordered with each other. A local write needs no
//!   wait: it runs at once, before the forwards that preceded it are even
//!   sent, but nothing can observe it except through this core, whose
//!   messages to their owners follow those forwards. With two threads no
//!   batch ever waits. Reads are not held: in one pipelined batch, a read
//!   may run before an earlier read or write of another key on another core
//!   (never before the connection's own earlier requests on the same key,
//!   which share a shard and its queue).
//! - One message per owner per turn, and a core is woken only when it said
//!   it sleeps: see [`super::forward`].
//! - A core drains its mailbox during its turn (its connections wake the
//!   mailbox task whenever something is pending) and before it parks (the
//!   runtime's park hook wakes the task instead of letting it sleep), so a
//!   message posted to an awake core never needs a wake. A batch whose
//!   owner answered every client in it itself comes back without a wake at
//!   all: it is taken the next time the core runs for any reason (at the
//!   latest its next tick), and no client waits on it meanwhile.
//! - A panic while running a request resets the shard it was running on
//!   (the only state it may have left half-updated), answers that request
//!   `SERVER_ERROR` and closes its connection; the core goes on serving.

use super::forward::{self, Exchange, Hop, Inbox, LocalShards, MailRun, Mailbox, Referenced};
use super::incoming::Sources;
use super::listener::Transport;
use super::op::Op;
use super::plan::{Dispatch, Ran, Step};
use super::spin::SpinWindow;
use super::{Control, Router, ServerState, ShardReport, StartError};
use crate::stats::ThreadStats;
use crate::storage::{Millis, Prefetch, Shard};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::LocalSet;

/// Rounds of mail the park hook handles itself before it leaves the rest
/// to the mailbox task (and the runtime to its driver).
const PARK_ROUNDS: usize = 4;

/// Longest the park hook polls the mailbox in one go while it spins for
/// replies; between slices the runtime polls its driver, so a request on
/// this core's own connections waits at most this long for a spin.
const SPIN_SLICE: Duration = Duration::from_micros(10);

thread_local! {
    /// This thread's core, for the runtime's park hooks.
    static PARKING: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// One core's state, shared by the tasks on its thread.
struct Core {
    index: usize,
    /// The shards this core owns, by local index.
    shards: RefCell<Vec<Shard>>,
    /// This core's end of forwarding: mailboxes, outbox, waiting
    /// connections.
    exchange: Exchange,
    /// How long to poll the mailbox before parking while replies are due.
    spin: SpinWindow,
    /// Where the spin for the replies now due stands.
    spinning: Cell<Spin>,
    state: Arc<ServerState>,
}

impl LocalShards for Core {
    fn router(&self) -> &Router {
        &self.state.router
    }

    fn now(&self) -> Millis {
        self.state.clock.now()
    }

    fn stats(&self) -> &ThreadStats {
        &self.state.threads[self.index]
    }

    /// Runs `op` on the shard it belongs to, appending its reply to `out`;
    /// false if it panicked (see [`ServerState::run_op`]).
    fn run_op(&self, op: &Op, base: &[u8], now: Millis, out: &mut Vec<u8>) -> bool {
        let mut shards = self.shards.borrow_mut();
        let local = self.local_shard(op.hash, shards.len());
        self.state
            .run_op(op, base, &mut shards[local], now, out, self.stats())
    }

    fn prefetch<'o>(&self, ops: impl Iterator<Item = &'o Op> + Clone) {
        let shards = self.shards.borrow();
        for what in [Prefetch::Bucket, Prefetch::Item] {
            for op in ops.clone() {
                shards[self.local_shard(op.hash, shards.len())].prefetch(op.hash, what);
            }
        }
    }

    fn control(&self, control: Control) -> Vec<ShardReport> {
        let now = self.state.clock.now();
        let mut shards = self.shards.borrow_mut();
        shards
            .iter_mut()
            .map(|shard| self.state.report(shard, control, now, self.stats()))
            .collect()
    }

    fn largest_reply(&self) -> usize {
        let shards = self.shards.borrow();
        shards.iter().map(Shard::largest_item).max().unwrap_or(0)
    }
}

impl Core {
    /// Which of this core's `owned` shards keeps keys with `hash`. A key
    /// this core owns by its hash is in its own shard's local slot; a key
    /// sent on this core's own port (`--port-per-core`) may hash to another
    /// core's shard, whose local slot is taken modulo this core's count
    /// (a core may own one shard fewer). The same rule for both, so a key
    /// this core owns is in one place whichever port it came by.
    #[inline]
    fn local_shard(&self, hash: u64, owned: usize) -> usize {
        let local = self.state.router.local_index(self.state.router.shard(hash));
        if local < owned { local } else { local % owned }
    }

    /// One run of the mailbox ([`Exchange::mail`]), and what it tells the
    /// spin: mail ends a spin (a hit), and mail soon after a sleep with
    /// replies due says a spin would have caught it.
    fn mail(&self) -> MailRun {
        let run = self.exchange.mail(self);
        if run.taken > 0 {
            // A spin for replies waits its window from the last message.
            if let Spin::Until(_) = self.spinning.replace(Spin::Idle) {
                self.spin.hit();
                self.stats().spin_hits.add(1);
            }
        }
        self.spin.woke(run.taken > 0, Instant::now);
        run
    }

    /// The runtime is about to park, its tasks all idle. Handle pending
    /// mail right here (waking the mailbox task instead would cost another
    /// turn of the runtime, with a poll of the driver); while replies are
    /// due and `--spin` allows, poll for them; then say this core sleeps.
    /// Returns only once the core has said so, or once it has woken a task
    /// (then the runtime does not park).
    fn before_park(&self) {
        // Mail that keeps coming is left to the mailbox task after a few
        // rounds, so the driver is polled and connections are served.
        for _ in 0..PARK_ROUNDS {
            if self.exchange.mail_pending() {
                let run = self.mail();
                if run.more {
                    return self.exchange.wake_mail();
                }
                if run.woke_tasks {
                    return;
                }
                continue;
            }
            if self.spin_for_replies() {
                // Back through the runtime, which polls its driver (this
                // core's connections) before it comes here again.
                return self.exchange.wake_mail();
            }
            if self.exchange.try_sleep() {
                self.stats().core_sleeps.add(1);
                if self
                    .exchange
                    .replies_awaited(self.stats().forward_waiting.get())
                {
                    self.spin.sleeping(Instant::now());
                }
                return;
            }
        }
        self.exchange.wake_mail();
    }

    /// While connections wait for replies and the spin window since the
    /// last message has not run out, polls the mailbox for up to
    /// [`SPIN_SLICE`]; true if the core should stay awake (mail came, or
    /// the window goes on), false if it may sleep. A window that runs out
    /// is not started again before the next message.
    fn spin_for_replies(&self) -> bool {
        let window = self.spin.window();
        let waiting = self.stats().forward_waiting.get();
        if window.is_zero() || !self.exchange.replies_awaited(waiting) {
            self.spinning.set(Spin::Idle);
            return false;
        }
        let now = Instant::now();
        let until = match self.spinning.get() {
            Spin::RanOut => return false,
            Spin::Idle => now + window,
            Spin::Until(until) => until,
        };
        self.spinning.set(Spin::Until(until));
        let slice = until.min(now + SPIN_SLICE);
        while Instant::now() < slice {
            if self.exchange.inbox_pending() {
                return true;
            }
            std::hint::spin_loop();
        }
        if Instant::now() < until {
            return true;
        }
        self.spinning.set(Spin::RanOut);
        self.spin.missed();
        self.stats().spin_misses.add(1);
        false
    }
}

/// Where a core's spin for replies stands.
#[derive(Clone, Copy)]
enum Spin {
    /// Not spinning: a spin may start.
    Idle,
    /// Spinning until then, across park attempts.
    Until(Instant),
    /// The window ran out with no message; no new spin before one comes.
    RanOut,
}

/// Takes and sends messages for the core whenever woken: by its
/// connections (something to send, or something pending), by the park hook,
/// or by another core that found it asleep.
async fn mailbox(core: Rc<Core>) {
    poll_fn(|cx| {
        core.exchange.mail_task_polled(cx);
        if core.mail().more {
            // More is waiting: come back after the connections had a turn.
            core.exchange.wake_mail();
        }
        Poll::<()>::Pending
    })
    .await
}

/// The [`Dispatch`] of a connection on a thread-per-core runtime: its
/// side of the hop ([`Hop`]) on its core.
struct CoreDispatch {
    core: Rc<Core>,
    hop: Hop,
}

impl CoreDispatch {
    /// A connection's dispatch; `socket` is its socket when another core
    /// may write a reply to it directly (plaintext connections);
    /// `every_key_here` when it came in on this core's own port.
    fn new(
        core: Rc<Core>,
        socket: Option<std::os::fd::RawFd>,
        every_key_here: bool,
    ) -> CoreDispatch {
        let hop = Hop::new(&core.exchange, socket);
        let hop = if every_key_here {
            hop.owning_every_key()
        } else {
            hop
        };
        CoreDispatch { core, hop }
    }
}

impl Drop for CoreDispatch {
    fn drop(&mut self) {
        self.hop.leave(&self.core.exchange);
    }
}

impl Dispatch for CoreDispatch {
    async fn run(&mut self, steps: &[Step], base: &[u8], out: &mut Vec<u8>, budget: usize) -> Ran {
        let core = &*self.core;
        self.hop
            .run(&core.exchange, core, steps, base, out, budget)
            .await
    }

    async fn control(&mut self, control: Control) -> Vec<ShardReport> {
        let pending = self.core.exchange.post_control(control);
        let mut all = LocalShards::control(&*self.core, control);
        for rx in pending {
            all.extend(rx.await.unwrap_or_default());
        }
        all
    }

    fn thread_stats(&self) -> &ThreadStats {
        self.core.stats()
    }

    type Referenced = Referenced;

    fn referenced(&self) -> &[Referenced] {
        self.hop.referenced()
    }

    fn written(&mut self) {
        self.hop.written(&self.core.exchange);
    }
}

/// Starts one pinned thread per core (`pinned.rs`): all start, or none
/// if any could not pin.
pub(super) fn start(
    state: &Arc<ServerState>,
    sources: Vec<Sources>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<std::io::Result<()>>>, StartError> {
    let config = &state.config;
    let (mailboxes, inboxes) = forward::mailboxes(config.threads, config.max_connections);
    let setups = (sources.into_iter().zip(inboxes).enumerate())
        .map(|(index, (sources, inbox))| CoreSetup {
            index,
            sources,
            mailboxes: mailboxes.clone(),
            inbox,
            state: state.clone(),
            shutdown: shutdown.clone(),
        })
        .collect();
    super::pinned::start_all(
        setups,
        |index| config.pin.then(|| config.cpus[index]),
        run_core,
    )
}

/// Everything one core thread needs, prepared on the main thread.
struct CoreSetup {
    index: usize,
    /// This core's listeners (SO_REUSEPORT, already bound) and adoptions.
    sources: Sources,
    mailboxes: Vec<Arc<Mailbox>>,
    inbox: Inbox,
    state: Arc<ServerState>,
    shutdown: watch::Receiver<bool>,
}

/// Runs one core until shutdown. Called on the core's own (pinned) thread.
fn run_core(setup: CoreSetup) -> std::io::Result<()> {
    let shutdown = setup.shutdown;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(|| {
            PARKING.with_borrow(|core| {
                if let Some(core) = core {
                    core.before_park();
                }
            })
        })
        .on_thread_unpark(|| {
            PARKING.with_borrow(|core| {
                if let Some(core) = core {
                    core.exchange.awake();
                }
            })
        })
        .build()?;
    let local = LocalSet::new();
    let state = setup.state;
    let router = state.router;
    let shards = (0..router.shards())
        .filter(|&shard| router.owner(shard) == setup.index)
        .map(|shard| Shard::new(&state.config.shard_config(shard)))
        .collect();
    let core = Rc::new(Core {
        index: setup.index,
        shards: RefCell::new(shards),
        exchange: Exchange::new(setup.index, setup.mailboxes, setup.inbox),
        spin: SpinWindow::new(state.config.spin),
        spinning: Cell::new(Spin::Idle),
        state: state.clone(),
    });
    PARKING.set(Some(core.clone()));
    let served = local.block_on(&runtime, async move {
        let incoming = setup.sources.into_incoming(setup.index, state.clone())?;
        let mail_task = tokio::task::spawn_local(mailbox(core.clone()));
        let tick_core = core.clone();
        let tick_task = tokio::task::spawn_local(super::tick::tick_every(
            state.clone(),
            Some(core.index),
            move |now| {
                let (state, stats) = (&tick_core.state, tick_core.stats());
                for shard in tick_core.shards.borrow_mut().iter_mut() {
                    state.tick_shard(shard, now, stats);
                }
                // Expiry and page moves may have shrunk what a read can return.
                tick_core.exchange.publish_largest_reply(&*tick_core);
                tick_core.stats().expiry_ticks.add(1);
            },
        ));
        let mut connections = tokio::task::JoinSet::new();
        incoming
            .accept_until_shutdown(&shutdown, |stream, transport| {
                let (state, core, stop) = (state.clone(), core.clone(), shutdown.clone());
                let index = core.index;
                // On this core's own port, every key is this core's.
                let every_key_here = matches!(transport, Transport::PerCore { .. });
                // The handshake, if any, runs in this task: on this core.
                let serve = super::serve::serve_accepted(
                    state,
                    index,
                    stream,
                    transport,
                    stop,
                    move |_, fd| CoreDispatch::new(core, fd, every_key_here),
                );
                connections.spawn_local(serve);
                while connections.try_join_next().is_some() {}
            })
            .await;
        // Connections still queued for adoption here are closed with it.
        drop(incoming);
        // Answer what was already read, then wait for every other core to
        // do the same: their connections may still need our shards.
        while connections.join_next().await.is_some() {}
        state.drained.wait().await;
        mail_task.abort();
        tick_task.abort();
        Ok(())
    });
    PARKING.set(None);
    served
}
