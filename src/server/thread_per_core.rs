//! The thread-per-core runtime: one pinned `current_thread` tokio runtime
//! per core, each owning its shards outright.
//!
//! ```text
//!  core A (pinned)                                core B (pinned)
//!  listener -> connections                        listener -> connections
//!   plan a read batch:                             ...
//!    key on A -> run on A's shard now
//!    key on B -> ForwardBatch for B  --inbox B-->  inbox task: drain, run every
//!   wait for replies                               op on B's shards, then send
//!   stitch replies in request order  <--inbox A--  each batch back as a Reply
//!   one write
//! ```
//!
//! Invariants:
//! - A shard is touched only by its owning thread: no locks on the data path.
//! - A connection forwards at most one batch per owner per read batch and
//!   waits for all replies before reading again, so replies leave in request
//!   order and an inbox holds at most `(threads + 1) * max_connections`
//!   messages. Inboxes are bounded at that size, so a send never waits and
//!   two cores sending to each other can never deadlock; the backpressure a
//!   busy owner puts on its senders is that their connections wait for its
//!   replies.
//! - Replies return through the origin core's inbox, not a channel per
//!   connection: a whole drain's worth of replies costs the origin one
//!   wake-up (a cross-core wake costs ~31 µs here), and a core that is awake
//!   is not woken again (flume only wakes a receiver that is parked).
//! - The inbox task yields every [`DRAIN_LIMIT`] messages, since flume's
//!   `recv_async` does not count against tokio's cooperative budget and a
//!   busy inbox would otherwise starve the connections on its core.

use super::connection::{Connection, Dispatch, Step};
use super::op::{Op, Span};
use super::{Control, ServerState, ShardReport};
use crate::stats::ThreadStats;
use crate::storage::Shard;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::LocalSet;

/// Messages an inbox task handles before yielding to the connections.
const DRAIN_LIMIT: usize = 64;

/// Keyed operations bound for one owner core, and on the way back, their
/// replies. The buffers travel back and forth and are reused, so forwarding
/// allocates nothing once a connection is warm.
#[derive(Default)]
pub(super) struct ForwardBatch {
    /// The core that sent the batch.
    origin: usize,
    /// The sending connection's slot in the origin's waiting table.
    ticket: usize,
    /// The core that runs the batch.
    owner: usize,
    /// Operations; their spans refer to `bytes`.
    ops: Vec<Op>,
    /// Keys and values of `ops`.
    bytes: Vec<u8>,
    /// Replies, concatenated in op order.
    replies: Vec<u8>,
    /// End offset of each op's reply in `replies`.
    ends: Vec<u32>,
}

impl ForwardBatch {
    fn push(&mut self, op: &Op, base: &[u8]) -> usize {
        let mut copy = *op;
        copy.key = self.append(op.key.of(base));
        copy.data = self.append(op.data.of(base));
        copy.tokens = self.append(op.tokens.of(base));
        self.ops.push(copy);
        self.ops.len() - 1
    }

    fn append(&mut self, part: &[u8]) -> Span {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(part);
        Span {
            start,
            len: part.len() as u32,
        }
    }

    fn reply(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.replies[start as usize..self.ends[index] as usize]
    }

    fn clear(&mut self) {
        self.ops.clear();
        self.bytes.clear();
        self.replies.clear();
        self.ends.clear();
    }
}

/// What travels between cores.
pub(super) enum Message {
    /// Operations to run on the receiver's shards.
    Forward(ForwardBatch),
    /// A batch this core sent, with its replies filled in.
    Reply(ForwardBatch),
    /// A whole-server request, answered with the receiver's shard stats.
    Control(Control, oneshot::Sender<Vec<ShardReport>>),
}

/// A connection waiting for forwarded replies.
#[derive(Default)]
struct Waiting {
    outstanding: Cell<usize>,
    returned: RefCell<Vec<ForwardBatch>>,
    waker: RefCell<Option<Waker>>,
}

/// One core's state, shared by the tasks on its thread.
struct Core {
    index: usize,
    /// The shards this core owns, by local index.
    shards: RefCell<Vec<Shard>>,
    /// Every core's inbox, this one's included.
    inboxes: Vec<flume::Sender<Message>>,
    waiting: RefCell<Slab<Rc<Waiting>>>,
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

    /// Runs a forwarded batch on this core's shards, filling in its replies.
    fn execute(&self, batch: &mut ForwardBatch) {
        let router = &self.state.router;
        let clock = &self.state.clock;
        let now = clock.now();
        let mut shards = self.shards.borrow_mut();
        let ForwardBatch {
            ops,
            bytes,
            replies,
            ends,
            ..
        } = batch;
        for op in ops.iter() {
            let shard = &mut shards[router.local_index(router.shard(op.hash))];
            op.execute(bytes, shard, clock, now, replies);
            ends.push(replies.len() as u32);
        }
        self.stats().forwarded_in.add(ops.len() as u64);
    }

    /// Hands a returned batch to the connection waiting for it.
    fn deliver(&self, batch: ForwardBatch) {
        let waiting = self.waiting.borrow();
        // A connection that went away (shutdown) no longer has a slot.
        if let Some(waiting) = waiting.get(batch.ticket) {
            waiting.returned.borrow_mut().push(batch);
            let left = waiting.outstanding.get() - 1;
            waiting.outstanding.set(left);
            if left == 0
                && let Some(waker) = waiting.waker.borrow_mut().take()
            {
                waker.wake();
            }
        }
    }
}

/// Drains the inbox: forwarded work, returning replies, control requests.
async fn inbox(core: Rc<Core>, rx: flume::Receiver<Message>) {
    let mut outgoing: Vec<ForwardBatch> = Vec::new();
    while let Ok(first) = rx.recv_async().await {
        let mut message = Some(first);
        let mut handled = 0;
        while let Some(m) = message.take() {
            match m {
                Message::Forward(mut batch) => {
                    core.execute(&mut batch);
                    outgoing.push(batch);
                }
                Message::Reply(batch) => core.deliver(batch),
                Message::Control(control, reply) => {
                    let _ = reply.send(core.control(control));
                }
            }
            handled += 1;
            if handled < DRAIN_LIMIT {
                message = rx.try_recv().ok();
            }
        }
        // Replies go out after the drain: origins are woken once per drain.
        for batch in outgoing.drain(..) {
            let origin = batch.origin;
            // Cannot wait: inboxes are sized for every message in flight.
            let _ = core.inboxes[origin].send_async(Message::Reply(batch)).await;
        }
        if handled == DRAIN_LIMIT {
            tokio::task::yield_now().await;
        }
    }
}

/// The [`Dispatch`] of a connection on a thread-per-core runtime.
struct CoreDispatch {
    core: Rc<Core>,
    ticket: usize,
    waiting: Rc<Waiting>,
    /// One batch per core (this core's own entry stays empty).
    batches: Vec<ForwardBatch>,
    /// Where each reply of a batch with remote work comes from.
    segments: Vec<Segment>,
    /// Local replies held back until the remote ones before them arrive.
    staging: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Segment {
    Local { start: u32, end: u32 },
    Remote { owner: u32, index: u32 },
}

impl CoreDispatch {
    fn new(core: Rc<Core>) -> CoreDispatch {
        let waiting = Rc::new(Waiting::default());
        let ticket = core.waiting.borrow_mut().insert(waiting.clone());
        let batches = (0..core.inboxes.len())
            .map(|_| ForwardBatch::default())
            .collect();
        CoreDispatch {
            core,
            ticket,
            waiting,
            batches,
            segments: Vec::new(),
            staging: Vec::new(),
        }
    }

    /// Sends every non-empty batch and waits until all have come back.
    async fn forward(&mut self) {
        let stats = self.core.stats();
        // The count must be in place before the first send: a reply to an
        // early batch can arrive while a later send is still in progress.
        let sent = self.batches.iter().filter(|b| !b.ops.is_empty()).count();
        self.waiting.outstanding.set(sent);
        for (owner, batch) in self.batches.iter_mut().enumerate() {
            if batch.ops.is_empty() {
                continue;
            }
            stats.forwarded_out.add(batch.ops.len() as u64);
            stats.forward_batches.add(1);
            let mut batch = std::mem::take(batch);
            batch.origin = self.core.index;
            batch.ticket = self.ticket;
            batch.owner = owner;
            let _ = self.core.inboxes[owner]
                .send_async(Message::Forward(batch))
                .await;
        }
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
        for batch in self.waiting.returned.borrow_mut().drain(..) {
            let owner = batch.owner;
            self.batches[owner] = batch;
        }
    }
}

impl Drop for CoreDispatch {
    fn drop(&mut self) {
        self.core.waiting.borrow_mut().remove(self.ticket);
    }
}

impl Dispatch for CoreDispatch {
    async fn run(&mut self, steps: &[Step], base: &[u8], out: &mut Vec<u8>) {
        let core = self.core.clone();
        let router = &core.state.router;
        let clock = &core.state.clock;
        let now = clock.now();
        let mut remote = false;
        self.segments.clear();
        self.staging.clear();
        {
            let mut shards = core.shards.borrow_mut();
            for step in steps {
                // Until the first remote op, replies go straight to `out`;
                // after it, local replies wait in `staging` for their turn.
                let target = if remote { &mut self.staging } else { &mut *out };
                let start = target.len() as u32;
                match step {
                    Step::Op(op) => {
                        let shard = router.shard(op.hash);
                        let owner = router.owner(shard);
                        if owner != core.index {
                            remote = true;
                            let index = self.batches[owner].push(op, base) as u32;
                            self.segments.push(Segment::Remote {
                                owner: owner as u32,
                                index,
                            });
                            continue;
                        }
                        op.execute(
                            base,
                            &mut shards[router.local_index(shard)],
                            clock,
                            now,
                            target,
                        );
                    }
                    Step::Text(text) => target.extend_from_slice(text),
                    Step::Error(error) => error.write(target),
                    Step::Binary(reply) => reply.write(target),
                    Step::Admin(_) => unreachable!("admin steps are run by the connection"),
                }
                if remote {
                    self.segments.push(Segment::Local {
                        start,
                        end: self.staging.len() as u32,
                    });
                }
            }
        }
        if !remote {
            return;
        }
        self.forward().await;
        for segment in &self.segments {
            match *segment {
                Segment::Local { start, end } => {
                    out.extend_from_slice(&self.staging[start as usize..end as usize])
                }
                Segment::Remote { owner, index } => {
                    out.extend_from_slice(self.batches[owner as usize].reply(index as usize))
                }
            }
        }
        for batch in &mut self.batches {
            batch.clear();
        }
    }

    async fn control(&mut self, control: Control) -> Vec<ShardReport> {
        let mut pending = Vec::new();
        for (index, inbox) in self.core.inboxes.iter().enumerate() {
            if index != self.core.index {
                let (tx, rx) = oneshot::channel();
                let _ = inbox.send_async(Message::Control(control, tx)).await;
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
}

/// Everything one core thread needs, prepared on the main thread.
pub struct CoreSetup {
    /// Core index.
    pub index: usize,
    /// This core's listener (SO_REUSEPORT, already bound).
    pub listener: StdListener,
    /// Every core's inbox sender.
    pub inboxes: Vec<flume::Sender<Message>>,
    /// This core's inbox receiver.
    pub inbox: flume::Receiver<Message>,
    /// Shared server state.
    pub state: Arc<ServerState>,
}

/// Makes the inboxes for `threads` cores: senders for everyone, one
/// receiver per core.
pub fn inboxes(
    threads: usize,
    max_connections: usize,
) -> (Vec<flume::Sender<Message>>, Vec<flume::Receiver<Message>>) {
    // Every message that can be in flight to one core at once: a forward
    // from each connection elsewhere, a reply from every other core to each
    // connection here (a multi-key get can span all cores), and a control
    // request per connection. Sized for all of them, a send never waits, so
    // two cores can never block on each other. flume grows its queue on
    // demand: the bound costs nothing until it is used.
    let capacity = (threads + 1) * max_connections + 64;
    (0..threads).map(|_| flume::bounded(capacity)).unzip()
}

/// Runs one core until shutdown. Called on the core's own (pinned) thread.
pub fn run_core(setup: CoreSetup, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
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
        inboxes: setup.inboxes,
        waiting: RefCell::new(Slab::new()),
        state: state.clone(),
    });
    local.block_on(&runtime, async move {
        let listener = TcpListener::from_std(setup.listener)?;
        let inbox_task = tokio::task::spawn_local(inbox(core.clone(), setup.inbox));
        let tick_task = tokio::task::spawn_local(tick(core.clone()));
        let mut connections = tokio::task::JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let Some(guard) = super::admit(&state, setup.index, stream).await else {
                continue;
            };
            let dispatch = CoreDispatch::new(core.clone());
            let stop = shutdown.clone();
            let connection = Connection::new(guard, state.clone(), dispatch);
            connections.spawn_local(async move {
                connection.serve(stop).await;
            });
            // Reap finished connections so the set does not grow.
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        // Answer what was already read, then wait for every other core to
        // do the same: their connections may still need our shards.
        while connections.join_next().await.is_some() {}
        state.drained.wait().await;
        inbox_task.abort();
        tick_task.abort();
        Ok(())
    })
}

/// Periodic expiry on this core's shards.
async fn tick(core: Rc<Core>) {
    let mut interval = tokio::time::interval(core.state.config.ttl_tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = core.state.clock.now();
        for shard in core.shards.borrow_mut().iter_mut() {
            shard.tick(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::op::{OpKind, Wire};
    use std::time::Duration;

    fn key_on(router: &crate::server::Router, core: usize) -> Vec<u8> {
        (0..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| router.owner(router.shard(crate::server::Router::hash(k))) == core)
            .unwrap()
    }

    /// A reply to an early batch arriving while the send of a later batch
    /// waits must not be lost (nor underflow the count of replies due).
    #[test]
    fn a_reply_arriving_while_a_forward_send_waits_is_not_lost() {
        let mut config = crate::config::Config::defaults(&[0, 1]);
        config.threads = 3;
        config.shards = 3;
        config.pin = false;
        let router = crate::server::Router::new(3, 3);
        let (shutdown, _keep) = watch::channel(false);
        let state = Arc::new(ServerState {
            router,
            listen: "127.0.0.1:0".parse().unwrap(),
            clock: crate::clock::Clock::new(),
            threads: (0..3).map(|_| ThreadStats::default()).collect(),
            connections: Default::default(),
            conns: Default::default(),
            shutdown,
            drained: tokio::sync::Barrier::new(3),
            config,
        });
        let (tx0, rx0) = flume::bounded(16);
        let (tx1, rx1) = flume::bounded(16);
        // Core 2's inbox is full, so the send of the second batch waits.
        let (tx2, rx2) = flume::bounded(1);
        let (dummy_tx, _dummy_rx) = oneshot::channel();
        tx2.try_send(Message::Control(Control::Stats, dummy_tx))
            .ok()
            .unwrap();
        let core = Rc::new(Core {
            index: 0,
            shards: RefCell::new(vec![Shard::new(&state.config.shard_config(0))]),
            inboxes: vec![tx0.clone(), tx1, tx2],
            waiting: RefCell::new(Slab::new()),
            state: state.clone(),
        });
        let (k1, k2) = (key_on(&router, 1), key_on(&router, 2));
        let base: Vec<u8> = [k1.clone(), k2.clone()].concat();
        let op = |start: usize, key: &[u8]| Op {
            kind: OpKind::Get {
                cas: false,
                touch: false,
            },
            hash: crate::server::Router::hash(key),
            key: Span {
                start: start as u32,
                len: key.len() as u32,
            },
            data: Span::default(),
            flags: 0,
            exptime: 0,
            number: 0,
            noreply: false,
            wire: Wire::Classic,
            tokens: Span::default(),
        };
        let steps = vec![
            Step::Op(op(0, &k1)),
            Step::Op(op(k1.len(), &k2)),
            Step::Text(b"END\r\n"),
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = LocalSet::new();
        local.block_on(&rt, async move {
            tokio::task::spawn_local(inbox(core.clone(), rx0));
            let mut dispatch = CoreDispatch::new(core.clone());
            let run = tokio::task::spawn_local(async move {
                let mut out = Vec::new();
                dispatch.run(&steps, &base, &mut out).await;
                out
            });
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            // Core 1 answers its batch (a miss: an empty reply).
            let Message::Forward(mut b) = rx1.recv_async().await.unwrap() else {
                panic!("expected a forward")
            };
            b.ends.resize(b.ops.len(), 0);
            tx0.send_async(Message::Reply(b)).await.ok().unwrap();
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            // Core 2 drains its inbox and answers too.
            let _ = rx2.recv_async().await.unwrap();
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let Message::Forward(mut b) = rx2.recv_async().await.unwrap() else {
                panic!("expected a forward")
            };
            b.ends.resize(b.ops.len(), 0);
            tx0.send_async(Message::Reply(b)).await.ok().unwrap();
            let out = tokio::time::timeout(Duration::from_secs(10), run).await;
            assert!(
                matches!(&out, Ok(Ok(o)) if o == b"END\r\n"),
                "the connection never got both replies: {out:?}"
            );
        });
    }
}
