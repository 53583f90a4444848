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
//!   message posted to an awake core never needs a wake.
//! - A panic while running a request resets the shard it was running on
//!   (the only state it may have left half-updated), answers that request
//!   `SERVER_ERROR` and closes its connection; the core goes on serving.

use super::connection::{Dispatch, Step};
use super::forward::{
    self, Arrived, Batch, Inbox, Mailbox, Message, Outbox, Referenced, Ticket, WaitList, Waiting,
};
use super::op::Op;
use super::shard_port::Sources;
use super::spin::SpinWindow;
use super::{Control, ServerState, ShardReport, StartError};
use crate::stats::ThreadStats;
use crate::storage::{Millis, Prefetch, Shard};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tokio::task::LocalSet;

/// Forwarded replies at least this long are written from the batch they
/// came back in (a vectored write) rather than copied into the output;
/// shorter ones cost less to copy than an iovec costs the kernel.
const REFERENCE_MIN: u32 = 1024;

/// Staging buffers of a connection that grew past this are given back.
const STAGING_KEEP: usize = 256 * 1024;

/// Rounds of mail the park hook handles itself before it leaves the rest
/// to the mailbox task (and the runtime to its driver).
const PARK_ROUNDS: usize = 4;

/// Longest the park hook polls the mailbox in one go while it spins for
/// replies; between slices the runtime polls its driver, so a request on
/// this core's own connections waits at most this long for a spin.
const SPIN_SLICE: Duration = Duration::from_micros(10);

/// Messages the mailbox task takes per run before it lets the connections
/// of its core have the CPU again.
const DRAIN_LIMIT: usize = 64;

thread_local! {
    /// This thread's core, for the runtime's park hooks.
    static PARKING: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// One core's state, shared by the tasks on its thread.
struct Core {
    index: usize,
    /// The shards this core owns, by local index.
    shards: RefCell<Vec<Shard>>,
    /// Every core's mailbox, this one's included (unused).
    mailboxes: Vec<Arc<Mailbox>>,
    inbox: Inbox,
    outbox: Outbox,
    waiting: WaitList,
    /// The mailbox task's waker, and whether it is already woken.
    mail_waker: RefCell<Option<Waker>>,
    mail_woken: Cell<bool>,
    /// How long to poll the mailbox before parking while replies are due.
    spin: SpinWindow,
    /// Where the spin for the replies now due stands.
    spinning: Cell<Spin>,
    state: Arc<ServerState>,
}

impl Core {
    fn stats(&self) -> &ThreadStats {
        &self.state.threads[self.index]
    }

    /// Runs a control request on this core's shards.
    fn control(&self, control: Control) -> Vec<ShardReport> {
        let now = self.state.clock.now();
        let mut shards = self.shards.borrow_mut();
        shards
            .iter_mut()
            .map(|shard| ShardReport::of(shard, control, now))
            .collect()
    }

    /// Runs `op` on the shard it belongs to, appending its reply to `out`;
    /// false if it panicked (see [`ServerState::run_op`]).
    fn run_op(&self, op: &Op, base: &[u8], now: Millis, out: &mut Vec<u8>) -> bool {
        let router = &self.state.router;
        let shard = router.shard(op.hash);
        let mut shards = self.shards.borrow_mut();
        let local = &mut shards[router.local_index(shard)];
        self.state.run_op(op, base, local, now, out, self.stats())
    }

    /// Runs a forwarded batch on this core's shards, filling in its replies.
    fn execute(&self, batch: &mut Batch) {
        let now = self.state.clock.now();
        let Batch {
            ops,
            bytes,
            replies,
            ends,
            failed,
            ..
        } = batch;
        self.prefetch(ops.iter());
        for op in ops.iter() {
            if !self.run_op(op, bytes, now, replies) {
                *failed = true;
            }
            ends.push(replies.len() as u32);
        }
        self.stats().forwarded_in.add(ops.len() as u64);
    }

    /// Starts loading the index buckets, then the item headers, of `ops`
    /// (all on this core's shards), so their misses overlap.
    fn prefetch<'o>(&self, ops: impl Iterator<Item = &'o Op> + Clone) {
        let router = &self.state.router;
        let shards = self.shards.borrow();
        for what in [Prefetch::Bucket, Prefetch::Item] {
            for op in ops.clone() {
                shards[router.local_index(router.shard(op.hash))].prefetch(op.hash, what);
            }
        }
    }

    /// Makes sure the mailbox task runs soon (it is a local wake: no system
    /// call).
    fn wake_mail(&self) {
        if !self.mail_woken.replace(true)
            && let Some(waker) = self.mail_waker.borrow().as_ref()
        {
            waker.wake_by_ref();
        }
    }

    /// Whether the mailbox task has work: messages to take or to send.
    fn mail_pending(&self) -> bool {
        self.inbox.pending() || !self.outbox.is_empty()
    }

    /// One run of the mailbox: take up to [`DRAIN_LIMIT`] messages, handle
    /// them, then send what this core has for others.
    fn mail(&self) -> MailRun {
        let mut run = MailRun::default();
        let stats = self.stats();
        let mut taken = 0;
        while taken < DRAIN_LIMIT {
            // Looked at before every message, not once per run: a run
            // that follows a long stall takes the backlog it found.
            stats.mailbox_max_depth.raise_to(self.inbox.depth());
            let Some(message) = self.inbox.next() else {
                break;
            };
            taken += 1;
            match message {
                Message::Forward(mut batch) => {
                    self.execute(&mut batch);
                    self.outbox.reply(batch);
                }
                Message::Reply(batch) => {
                    stats.forward_replies.add(1);
                    stats.forward_inflight.sub(1);
                    let batch = self.outbox.share(batch);
                    let (woken, orphaned) = self.waiting.deliver(&batch);
                    run.woke_tasks |= woken > 0;
                    stats.forward_orphans.add(orphaned as u64);
                    self.outbox.recycle(batch);
                }
                Message::Control(control, reply) => {
                    // The requester is a task of another core.
                    let _ = reply.send(self.control(control));
                }
            }
        }
        if taken > 0 {
            // A spin for replies waits its window from the last message.
            if let Spin::Until(_) = self.spinning.replace(Spin::Idle) {
                self.spin.hit();
                stats.spin_hits.add(1);
            }
        }
        self.spin.woke(taken > 0, Instant::now);
        let (forwards, _, woken) = self.outbox.flush(self.index, &self.mailboxes);
        stats.forward_messages.add(forwards);
        stats.forward_inflight.add(forwards);
        stats.core_wakes.add(woken);
        run.more = taken == DRAIN_LIMIT;
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
            if self.mail_pending() {
                let run = self.mail();
                if run.more {
                    return self.wake_mail();
                }
                if run.woke_tasks {
                    return;
                }
                continue;
            }
            if self.spin_for_replies() {
                // Back through the runtime, which polls its driver (this
                // core's connections) before it comes here again.
                return self.wake_mail();
            }
            if self.inbox.try_sleep() {
                self.stats().core_sleeps.add(1);
                if self.stats().forward_waiting.get() > 0 {
                    self.spin.sleeping(Instant::now());
                }
                return;
            }
        }
        self.wake_mail();
    }

    /// While connections wait for replies and the spin window since the
    /// last message has not run out, polls the mailbox for up to
    /// [`SPIN_SLICE`]; true if the core should stay awake (mail came, or
    /// the window goes on), false if it may sleep. A window that runs out
    /// is not started again before the next message.
    fn spin_for_replies(&self) -> bool {
        let window = self.spin.window();
        if window.is_zero() || self.stats().forward_waiting.get() == 0 {
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
            if self.inbox.pending() {
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

/// What one run of a core's mailbox did.
#[derive(Default)]
struct MailRun {
    /// Messages are still waiting (the run stopped at [`DRAIN_LIMIT`]).
    more: bool,
    /// Replies woke connections of this core.
    woke_tasks: bool,
}

/// Takes and sends messages for the core whenever woken: by its
/// connections (something to send, or something pending), by the park hook,
/// or by another core that found it asleep.
async fn mailbox(core: Rc<Core>) {
    poll_fn(|cx| {
        core.inbox.set_waker(cx.waker());
        if core.mail_waker.borrow().is_none() {
            *core.mail_waker.borrow_mut() = Some(cx.waker().clone());
        }
        core.mail_woken.set(false);
        if core.mail().more {
            // More is waiting: come back after the connections had a turn.
            core.wake_mail();
        }
        Poll::<()>::Pending
    })
    .await
}

/// The [`Dispatch`] of a connection on a thread-per-core runtime.
struct CoreDispatch {
    core: Rc<Core>,
    ticket: Ticket,
    waiting: Rc<Waiting>,
    /// Where each reply of a batch with remote work comes from.
    segments: Vec<Segment>,
    /// Local replies held back until the remote ones before them arrive.
    staging: Vec<u8>,
    /// Replies that came back, by wave and owner.
    received: Vec<Option<Rc<Batch>>>,
    /// For each owner, its place in `received` in the current wave.
    slot_of: Vec<u32>,
    /// A forwarded op failed in a way that closes the connection.
    failed: bool,
    /// Large forwarded replies to be written from their batches.
    referenced: Vec<Referenced>,
}

#[derive(Clone, Copy)]
enum Segment {
    Local { start: u32, end: u32 },
    Remote { batch: u32, index: u32 },
}

/// An op's owner has not been given a slot in the current wave.
const NO_SLOT: u32 = u32::MAX;

impl CoreDispatch {
    fn new(core: Rc<Core>) -> CoreDispatch {
        let (ticket, waiting) = core.waiting.join();
        let threads = core.mailboxes.len();
        CoreDispatch {
            core,
            ticket,
            waiting,
            segments: Vec::new(),
            staging: Vec::new(),
            received: Vec::new(),
            slot_of: vec![NO_SLOT; threads],
            failed: false,
            referenced: Vec::new(),
        }
    }

    /// Runs steps from the start of `steps` until the end or a write that
    /// must wait for earlier forwarded writes (see the module docs). Local
    /// ops run now; remote ones go to the core's outbox. Returns how many
    /// steps were taken and how many owners were sent work.
    fn wave(&mut self, steps: &[Step], base: &[u8], out: &mut Vec<u8>) -> (usize, usize) {
        let core = self.core.clone();
        let router = &core.state.router;
        let now = core.state.clock.now();
        let (mut owners, mut forwarded, mut taken) = (0, 0, 0);
        let local = |step: &&Step| matches!(step, Step::Op(op) if router.owner(router.shard(op.hash)) == core.index);
        core.prefetch(steps.iter().filter(local).map(|step| match step {
            Step::Op(op) => op,
            _ => unreachable!("only ops pass the filter"),
        }));
        // The owner of the wave's forwarded writes, if any: a forwarded
        // write to another owner waits for the next wave.
        let mut writes_to: Option<usize> = None;
        for step in steps {
            // Until the first remote op, replies go straight to `out`;
            // after it, local replies wait in `staging` for their turn.
            let staged = !self.segments.is_empty();
            let target = if staged { &mut self.staging } else { &mut *out };
            let start = target.len() as u32;
            match step {
                Step::Op(op) => {
                    let owner = router.owner(router.shard(op.hash));
                    let write = op.is_write() && owner != core.index;
                    if write && writes_to.is_some_and(|to| to != owner) {
                        break;
                    }
                    if owner != core.index {
                        if self.slot_of[owner] == NO_SLOT {
                            self.slot_of[owner] = (self.received.len() + owners) as u32;
                            owners += 1;
                        }
                        let index = core.outbox.filling()[owner].push(op, base);
                        self.segments.push(Segment::Remote {
                            batch: self.slot_of[owner],
                            index,
                        });
                        if write {
                            writes_to = Some(owner);
                        }
                        forwarded += 1;
                        taken += 1;
                        continue;
                    }
                    if !core.run_op(op, base, now, target) {
                        self.failed = true;
                    }
                }
                Step::Text(text) => target.extend_from_slice(text),
                Step::Error(error) => error.write(target),
                Step::Binary(reply) => reply.write(target),
                Step::Admin(_) => unreachable!("admin steps are run by the connection"),
            }
            if staged {
                self.segments.push(Segment::Local {
                    start,
                    end: self.staging.len() as u32,
                });
            }
            taken += 1;
        }
        if owners > 0 {
            // Sign each batch this wave used with the ticket and the end of
            // this connection's ops: they are contiguous, since nothing else
            // runs on this core while a wave is planned.
            for (owner, batch) in core.outbox.filling().iter_mut().enumerate() {
                if self.slot_of[owner] != NO_SLOT {
                    batch.requesters.push((self.ticket, batch.ops.len() as u32));
                }
            }
            core.stats().forwarded_out.add(forwarded);
        }
        (taken, owners)
    }

    /// Waits until every owner sent work in this wave has answered, and
    /// files their batches by slot.
    async fn collect(&mut self, owners: usize) {
        let core = &self.core;
        self.waiting.outstanding.set(owners);
        core.stats().forward_waiting.add(1);
        core.wake_mail();
        let waiting = &self.waiting;
        poll_fn(|cx| {
            if waiting.outstanding.get() == 0 {
                Poll::Ready(())
            } else {
                *waiting.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        core.stats().forward_waiting.sub(1);
        self.received.resize(self.received.len() + owners, None);
        for Arrived { owner, batch } in self.waiting.arrived.borrow_mut().drain(..) {
            self.failed |= batch.failed;
            self.received[self.slot_of[owner] as usize] = Some(batch);
        }
        self.slot_of.fill(NO_SLOT);
    }
}

impl Drop for CoreDispatch {
    fn drop(&mut self) {
        self.core.waiting.leave(self.ticket);
    }
}

impl Dispatch for CoreDispatch {
    async fn run(&mut self, steps: &[Step], base: &[u8], out: &mut Vec<u8>) -> bool {
        // Messages for this core are taken in its turn, not only when it
        // is about to park: a busy core may not park for a long time.
        if self.core.inbox.pending() {
            self.core.wake_mail();
        }
        self.segments.clear();
        self.staging.clear();
        self.failed = false;
        let mut from = 0;
        while from < steps.len() {
            let (taken, owners) = self.wave(&steps[from..], base, out);
            if owners > 0 {
                self.collect(owners).await;
            }
            from += taken;
        }
        if !self.segments.is_empty() {
            for segment in &self.segments {
                match *segment {
                    Segment::Local { start, end } => {
                        out.extend_from_slice(&self.staging[start as usize..end as usize])
                    }
                    Segment::Remote { batch, index } => {
                        let batch = self.received[batch as usize].as_ref();
                        let batch = batch.expect("every owner answered");
                        let (start, end) = batch.reply_range(index);
                        if end - start < REFERENCE_MIN {
                            out.extend_from_slice(batch.reply(index));
                            continue;
                        }
                        // A large reply is written from the batch it came
                        // back in: copying it would cost more than an iovec.
                        match self.referenced.last_mut() {
                            Some(last)
                                if last.at == out.len()
                                    && last.end == start
                                    && Rc::ptr_eq(&last.batch, batch) =>
                            {
                                last.end = end;
                            }
                            _ => self.referenced.push(Referenced {
                                at: out.len(),
                                batch: batch.clone(),
                                start,
                                end,
                            }),
                        }
                    }
                }
            }
            for batch in self.received.drain(..).flatten() {
                self.core.outbox.recycle(batch);
            }
            // A large batch (a multi-get of big values) must not pin its
            // memory to the connection.
            if self.staging.capacity() > STAGING_KEEP {
                self.staging = Vec::new();
            }
            if self.segments.capacity() * std::mem::size_of::<Segment>() > STAGING_KEEP {
                self.segments = Vec::new();
            }
        }
        !self.failed
    }

    async fn control(&mut self, control: Control) -> Vec<ShardReport> {
        let mut pending = Vec::new();
        for (index, mailbox) in self.core.mailboxes.iter().enumerate() {
            if index != self.core.index {
                let (tx, rx) = oneshot::channel();
                mailbox.post([Message::Control(control, tx)]);
                pending.push(rx);
            }
        }
        let mut all = self.core.control(control);
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
        &self.referenced
    }

    fn written(&mut self) {
        for reply in self.referenced.drain(..) {
            self.core.outbox.recycle(reply.batch);
        }
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
                    core.inbox.awake();
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
        mailboxes: setup.mailboxes,
        inbox: setup.inbox,
        outbox: Outbox::new(router.threads()),
        waiting: WaitList::default(),
        mail_waker: RefCell::new(None),
        mail_woken: Cell::new(false),
        spin: SpinWindow::new(state.config.spin),
        spinning: Cell::new(Spin::Idle),
        state: state.clone(),
    });
    PARKING.set(Some(core.clone()));
    let served = local.block_on(&runtime, async move {
        let incoming = setup.sources.into_incoming(setup.index, state.clone())?;
        let mail_task = tokio::task::spawn_local(mailbox(core.clone()));
        let tick_core = core.clone();
        let tick_task = tokio::task::spawn_local(super::tick_every(
            state.clone(),
            Some(core.index),
            move |now| {
                for shard in tick_core.shards.borrow_mut().iter_mut() {
                    shard.tick(now);
                }
                tick_core.stats().expiry_ticks.add(1);
            },
        ));
        let mut connections = tokio::task::JoinSet::new();
        incoming
            .accept_until_shutdown(&shutdown, |stream, transport| {
                let (state, core, stop) = (state.clone(), core.clone(), shutdown.clone());
                let index = core.index;
                // The handshake, if any, runs in this task: on this core.
                let serve = super::serve_accepted(state, index, stream, transport, stop, |_| {
                    CoreDispatch::new(core)
                });
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

#[cfg(test)]
mod tests;
