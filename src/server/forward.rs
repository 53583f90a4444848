//! Forwarding between cores: what travels, how a scheduler turn's worth of
//! it is batched, and how a core is woken only when it sleeps.
//!
//! ```text
//!  core A                                               core B
//!  connections --ops--> Outbox[B]                       Inbox (flume queue)
//!   (each waits on        | flushed once per turn         | drained in B's turn
//!    its Ticket)          v by A's mailbox task           v and before B parks
//!                     Mailbox[B].post(Forward) -------->  run every op, then
//!  WaitList <-- deliver <-- A's Inbox <-- Mailbox[A].post(Reply)  (one per origin)
//! ```
//!
//! - **One message per owner per turn.** Connections append their remote
//!   operations to the core's [`Outbox`]; the core's mailbox task, woken
//!   when the outbox becomes non-empty, runs after the connections already
//!   woken in that turn and sends each owner one [`Batch`] holding all of
//!   them. Replies are coalesced the same way: everything an owner drains
//!   from one origin goes back as one message per forward batch, posted
//!   together.
//! - **A core is woken only when it has said it sleeps.** A [`Mailbox`]
//!   keeps one atomic word: the count of messages ever posted, and a
//!   SLEEPING bit. A sender pushes, then adds to the count, and wakes the
//!   owner only if that add saw SLEEPING (and it was the one to clear it).
//!   The owner sets SLEEPING, just before its runtime parks, only with a
//!   compare-and-swap that also checks it has taken every message counted
//!   so far. Both sides act through read-modify-writes of the same word, so
//!   no message is ever left stranded with its owner asleep, and an awake
//!   owner is never sent a wake (an eventfd write costs the sender ~2 µs
//!   even when the owner is running, ~12 µs when it must be woken). Waits
//!   allocate nothing: the owner's waker is stored once.
//! - **Sends never wait.** See [`capacity`]: a mailbox is bounded above
//!   what can ever be in flight to it, so `try_send` cannot fail, and two
//!   cores can never block on each other.
//! - **A late reply cannot reach the wrong connection.** A [`Ticket`]
//!   carries its slot's generation; a connection that went away while its
//!   operations were out leaves a slot whose generation has moved on.

use super::op::{Op, Span};
use super::{Control, ShardReport};
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;
use tokio::sync::oneshot;

/// Buffers of a batch that grew past this (a large value went through)
/// are given back when the batch is reused, so one big multi-get does not
/// pin its memory to the core. A turn's batch for 100 connections
/// pipelining 16 requests with values of a few hundred bytes holds about
/// half a MiB of replies, so this is set above that: such a batch is
/// reused, not freed and grown again every turn.
const BATCH_KEEP: usize = 1024 * 1024;

/// Emptied batches an outbox keeps for reuse, at most.
const POOL_KEEP: usize = 64;

/// Buffer capacity, in bytes, the batches in an outbox's pool may hold
/// in all. Batches in flight at once are a few per owner in steady state,
/// but a core that stalls (preempted, or a long turn) lets its peers pile
/// up many, each as large as a turn's traffic, and without a bound the
/// pool would keep them all when they come back: 64 batches of up to
/// 5 × [`BATCH_KEEP`] each. Batches beyond the budget are freed.
const POOL_BYTES: usize = 8 * 1024 * 1024;

/// The SLEEPING bit of a mailbox's state word; the count of messages
/// posted is kept in the bits above it.
const SLEEPING: u64 = 1;
/// One message in the state word's count.
const ONE: u64 = 2;

/// How many messages a core's mailbox must hold so that a send never
/// waits: everything that can be in flight to one core at once.
///
/// - Forwards: a connection has at most one batch's worth of operations
///   out per owner at a time (it waits for the replies before it plans
///   again), and the outbox puts every connection of a turn into one
///   message, so each core sends a given owner at most one message per
///   waiting connection: at most `max_connections` in all.
/// - Replies: one per forward this core sent that the owner has run:
///   again at most `max_connections`.
/// - Control requests (`stats`, `flush_all`): one per connection waiting
///   on one: at most `max_connections`.
///
/// flume grows its queue on demand, so the bound costs nothing until used.
pub(super) fn capacity(max_connections: usize) -> usize {
    3 * max_connections + 64
}

/// Names one connection waiting for forwarded replies: its slot in its
/// core's [`WaitList`] and the slot's generation when it was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Ticket {
    slot: u32,
    generation: u32,
}

/// Keyed operations bound for one owner core from one origin, and on the
/// way back, their replies. Batches are pooled by the origin and reused,
/// so forwarding allocates nothing once warm.
#[derive(Default)]
pub(super) struct Batch {
    /// The core that sent the batch.
    pub origin: usize,
    /// The core that runs it.
    pub owner: usize,
    /// Operations; their spans refer to `bytes`.
    pub ops: Vec<Op>,
    /// Keys and values of `ops`.
    pub bytes: Vec<u8>,
    /// Replies, concatenated in op order.
    pub replies: Vec<u8>,
    /// End offset of each op's reply in `replies`.
    pub ends: Vec<u32>,
    /// The connections whose operations ride in this batch, in order: each
    /// one's ticket and the index just past its last op.
    pub requesters: Vec<(Ticket, u32)>,
    /// An op of the batch panicked (its shard was reset): the connections
    /// it came from are closed after their replies.
    pub failed: bool,
}

impl Batch {
    /// Copies `op` and the bytes it refers to (in `base`) into the batch;
    /// returns its index.
    pub fn push(&mut self, op: &Op, base: &[u8]) -> u32 {
        let mut copy = *op;
        copy.key = self.append(op.key.of(base));
        copy.data = self.append(op.data.of(base));
        copy.tokens = self.append(op.tokens.of(base));
        self.ops.push(copy);
        self.ops.len() as u32 - 1
    }

    fn append(&mut self, part: &[u8]) -> Span {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(part);
        Span {
            start,
            len: part.len() as u32,
        }
    }

    /// The reply to the op at `index`.
    pub fn reply(&self, index: u32) -> &[u8] {
        let (start, end) = self.reply_range(index);
        &self.replies[start as usize..end as usize]
    }

    /// Where the reply to the op at `index` lies in `replies`.
    pub fn reply_range(&self, index: u32) -> (u32, u32) {
        let index = index as usize;
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        (start, self.ends[index])
    }

    /// Bytes of buffer capacity the batch holds.
    fn capacity_bytes(&self) -> usize {
        fn bytes<T>(buffer: &Vec<T>) -> usize {
            buffer.capacity() * std::mem::size_of::<T>()
        }
        bytes(&self.ops)
            + bytes(&self.bytes)
            + bytes(&self.replies)
            + bytes(&self.ends)
            + bytes(&self.requesters)
    }

    /// Empties the batch for reuse, giving back buffers a large batch grew.
    fn reset(&mut self) {
        fn reuse<T>(buffer: &mut Vec<T>) {
            buffer.clear();
            if buffer.capacity() * std::mem::size_of::<T>() > BATCH_KEEP {
                *buffer = Vec::new();
            }
        }
        reuse(&mut self.ops);
        reuse(&mut self.bytes);
        reuse(&mut self.replies);
        reuse(&mut self.ends);
        reuse(&mut self.requesters);
        self.failed = false;
    }
}

/// A forwarded reply written from the batch it came back in, not copied
/// into the connection's output: it goes out just before byte `at` of the
/// output, in a vectored write.
pub(crate) struct Referenced {
    /// Where in the output it belongs.
    pub at: usize,
    /// The batch holding it.
    pub batch: Rc<Batch>,
    /// Its range in the batch's replies.
    pub start: u32,
    /// The end of that range.
    pub end: u32,
}

impl super::connection::OutputPart for Referenced {
    fn at(&self) -> usize {
        self.at
    }

    fn bytes(&self) -> &[u8] {
        &self.batch.replies[self.start as usize..self.end as usize]
    }
}

/// What travels between cores.
pub(super) enum Message {
    /// Operations to run on the receiver's shards.
    Forward(Batch),
    /// A batch this core sent, with its replies filled in.
    Reply(Batch),
    /// A whole-server request, answered with the receiver's shard reports.
    Control(Control, oneshot::Sender<Vec<ShardReport>>),
}

/// The side of a core's mailbox that every core holds.
pub(super) struct Mailbox {
    queue: flume::Sender<Message>,
    /// `posted * ONE | SLEEPING`: see the module docs.
    state: AtomicU64,
    /// Wakes the owner's mailbox task; set once, when it first runs.
    waker: OnceLock<Waker>,
}

impl Mailbox {
    /// Posts `messages` to the owner; wakes it if, and only if, it had
    /// said it is going to sleep. Returns whether it woke it.
    pub fn post(&self, messages: impl IntoIterator<Item = Message>) -> bool {
        let mut count = 0;
        for message in messages {
            let sent = self.queue.try_send(message);
            // The mailbox is sized for everything that can be in flight
            // (`capacity`); a full one is a broken invariant, not load.
            assert!(sent.is_ok(), "a core's mailbox overflowed its bound");
            count += 1;
        }
        if count == 0 {
            return false;
        }
        let before = self.state.fetch_add(count * ONE, Ordering::AcqRel);
        if before & SLEEPING == 0 {
            return false;
        }
        // Several senders can see SLEEPING; the one that clears it wakes.
        let cleared = self.state.fetch_and(!SLEEPING, Ordering::AcqRel) & SLEEPING != 0;
        if cleared && let Some(waker) = self.waker.get() {
            waker.wake_by_ref();
        }
        cleared
    }
}

/// The owner's side of its mailbox.
pub(super) struct Inbox {
    queue: flume::Receiver<Message>,
    mailbox: std::sync::Arc<Mailbox>,
    /// Messages taken off the queue so far.
    taken: Cell<u64>,
}

impl Inbox {
    /// Whether messages were posted that have not been taken.
    pub fn pending(&self) -> bool {
        let posted = self.mailbox.state.load(Ordering::Acquire) / ONE;
        // A message can be taken before its sender has counted it, so
        // `taken` may briefly run ahead: only a positive gap is pending.
        (posted.wrapping_sub(self.taken.get()) as i64) > 0
    }

    /// Messages posted and not yet taken.
    pub fn depth(&self) -> u64 {
        let posted = self.mailbox.state.load(Ordering::Acquire) / ONE;
        // See `pending`: `taken` may briefly run ahead.
        (posted.wrapping_sub(self.taken.get()) as i64).max(0) as u64
    }

    /// Takes the next message, if any.
    pub fn next(&self) -> Option<Message> {
        let message = self.queue.try_recv().ok()?;
        self.taken.set(self.taken.get() + 1);
        Some(message)
    }

    /// Says the owner is going to sleep, if every message posted so far has
    /// been taken; false (and nothing said) if there is more to take.
    pub fn try_sleep(&self) -> bool {
        let mut state = self.mailbox.state.load(Ordering::Acquire);
        loop {
            if (state / ONE).wrapping_sub(self.taken.get()) as i64 > 0 {
                return false;
            }
            match self.mailbox.state.compare_exchange_weak(
                state,
                state | SLEEPING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    /// Says the owner is awake again (it may have been woken by something
    /// other than a sender, which then finds the bit already clear).
    pub fn awake(&self) {
        if self.mailbox.state.load(Ordering::Relaxed) & SLEEPING != 0 {
            self.mailbox.state.fetch_and(!SLEEPING, Ordering::AcqRel);
        }
    }

    /// Stores the waker senders use to wake the owner; only the first call
    /// stores anything (the owner's mailbox task lives as long as the core).
    pub fn set_waker(&self, waker: &Waker) {
        if self.mailbox.waker.get().is_none() {
            let _ = self.mailbox.waker.set(waker.clone());
        }
    }
}

/// Makes the mailboxes of `threads` cores: every core gets the senders'
/// side of all of them, and its own inbox.
pub(super) fn mailboxes(
    threads: usize,
    max_connections: usize,
) -> (Vec<std::sync::Arc<Mailbox>>, Vec<Inbox>) {
    (0..threads)
        .map(|_| {
            let (tx, rx) = flume::bounded(capacity(max_connections));
            let mailbox = std::sync::Arc::new(Mailbox {
                queue: tx,
                state: AtomicU64::new(0),
                waker: OnceLock::new(),
            });
            let inbox = Inbox {
                queue: rx,
                mailbox: mailbox.clone(),
                taken: Cell::new(0),
            };
            (mailbox, inbox)
        })
        .unzip()
}

/// What a waiting connection is told when one owner's replies come back.
pub(super) struct Arrived {
    /// The owner.
    pub owner: usize,
    /// The returned batch; the connection's replies are in it.
    pub batch: Rc<Batch>,
}

/// One connection waiting for forwarded replies.
#[derive(Default)]
pub(super) struct Waiting {
    /// Owners that have not answered yet.
    pub outstanding: Cell<usize>,
    /// Batches that came back, in the order they arrived.
    pub arrived: RefCell<Vec<Arrived>>,
    /// Woken when `outstanding` reaches zero.
    pub waker: RefCell<Option<Waker>>,
}

/// The connections of one core that may wait for forwarded replies, by
/// ticket. Only the core's own thread touches it.
#[derive(Default)]
pub(super) struct WaitList {
    slots: RefCell<Slab<(u32, Rc<Waiting>)>>,
    generation: Cell<u32>,
}

impl WaitList {
    /// Registers a connection; the ticket names it until [`WaitList::leave`].
    pub fn join(&self) -> (Ticket, Rc<Waiting>) {
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        let waiting = Rc::new(Waiting::default());
        let slot = self
            .slots
            .borrow_mut()
            .insert((generation, waiting.clone()));
        let ticket = Ticket {
            slot: slot as u32,
            generation,
        };
        (ticket, waiting)
    }

    /// Forgets a connection: replies still on their way to it are dropped.
    pub fn leave(&self, ticket: Ticket) {
        let mut slots = self.slots.borrow_mut();
        if slots
            .get(ticket.slot as usize)
            .is_some_and(|(generation, _)| *generation == ticket.generation)
        {
            slots.remove(ticket.slot as usize);
        }
    }

    /// Hands a returned batch to every connection whose operations rode in
    /// it; connections that have gone (or whose slot was reused since) are
    /// skipped. Returns how many it woke (they had all their replies) and
    /// how many it skipped.
    pub fn deliver(&self, batch: &Rc<Batch>) -> (usize, usize) {
        let (mut woken, mut orphaned) = (0, 0);
        let owner = batch.owner;
        let slots = self.slots.borrow();
        for &(ticket, _) in &batch.requesters {
            let waiting = match slots.get(ticket.slot as usize) {
                Some((generation, waiting)) if *generation == ticket.generation => waiting,
                _ => {
                    orphaned += 1;
                    continue;
                }
            };
            waiting.arrived.borrow_mut().push(Arrived {
                owner,
                batch: batch.clone(),
            });
            let left = waiting.outstanding.get() - 1;
            waiting.outstanding.set(left);
            if left == 0
                && let Some(waker) = waiting.waker.borrow_mut().take()
            {
                waker.wake();
                woken += 1;
            }
        }
        (woken, orphaned)
    }
}

/// The operations this core's connections forward during one turn, one
/// batch per owner, and the pool of batches to fill next.
pub(super) struct Outbox {
    /// The batch being filled for each core (this core's stays empty).
    filling: RefCell<Vec<Batch>>,
    /// Replies of forwarded batches this core ran, to go back to their
    /// origins.
    replies: RefCell<Vec<Batch>>,
    /// Emptied batches, ready to be filled again.
    pool: RefCell<Vec<Batch>>,
    /// Buffer capacity of the batches in `pool` (at most [`POOL_BYTES`]).
    pooled: Cell<usize>,
    /// Empty `Rc`s, so that sharing a returned batch with its connections
    /// reuses an allocation instead of making one.
    shells: RefCell<Vec<Rc<Batch>>>,
}

impl Outbox {
    /// An outbox for a core among `threads`.
    pub fn new(threads: usize) -> Outbox {
        Outbox {
            filling: RefCell::new((0..threads).map(|_| Batch::default()).collect()),
            replies: RefCell::new(Vec::new()),
            pool: RefCell::new(Vec::new()),
            pooled: Cell::new(0),
            shells: RefCell::new(Vec::new()),
        }
    }

    /// The batches being filled, by owner, for a connection to append to.
    pub fn filling(&self) -> std::cell::RefMut<'_, Vec<Batch>> {
        self.filling.borrow_mut()
    }

    /// Whether anything waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.replies.borrow().is_empty() && self.filling.borrow().iter().all(|b| b.ops.is_empty())
    }

    /// Queues a forwarded batch's replies for its origin.
    pub fn reply(&self, batch: Batch) {
        self.replies.borrow_mut().push(batch);
    }

    /// Wraps a batch that came back in an `Rc`, to share with the
    /// connections waiting on it (see [`Outbox::recycle`]).
    pub fn share(&self, mut batch: Batch) -> Rc<Batch> {
        match self.shells.borrow_mut().pop() {
            Some(mut shell) => {
                let empty = Rc::get_mut(&mut shell).expect("a pooled shell is held by no one");
                std::mem::swap(empty, &mut batch);
                shell
            }
            None => Rc::new(batch),
        }
    }

    /// Lets go of a returned batch. The last holder (its connections hold
    /// it until they have copied their replies out) puts it back in the
    /// pool, emptied, with any buffer a large batch grew given back, if the
    /// pool has room for it within [`POOL_BYTES`]; and its `Rc` with it.
    pub fn recycle(&self, mut batch: Rc<Batch>) {
        let Some(contents) = Rc::get_mut(&mut batch) else {
            return;
        };
        let mut contents = std::mem::take(contents);
        let mut pool = self.pool.borrow_mut();
        if pool.len() >= POOL_KEEP {
            return;
        }
        contents.reset();
        let bytes = contents.capacity_bytes();
        if self.pooled.get() + bytes <= POOL_BYTES {
            self.pooled.set(self.pooled.get() + bytes);
            pool.push(contents);
        }
        // An empty shell costs next to nothing: always worth keeping.
        self.shells.borrow_mut().push(batch);
    }

    /// An emptied batch to fill: a pooled one, or a new one.
    fn take_pooled(&self) -> Batch {
        match self.pool.borrow_mut().pop() {
            Some(batch) => {
                self.pooled.set(self.pooled.get() - batch.capacity_bytes());
                batch
            }
            None => Batch::default(),
        }
    }

    /// Sends everything queued: one forward per owner, then every reply.
    /// Returns (forward messages, reply messages, cores woken).
    ///
    /// Every forward is posted before any reply. A reply can carry news of
    /// a write this core made (a read of it, run here); the forwards of the
    /// same connection's earlier writes must be in their owners' queues by
    /// then, ahead of anything the reply's receiver sends after reading it.
    pub fn flush(&self, index: usize, mailboxes: &[std::sync::Arc<Mailbox>]) -> (u64, u64, u64) {
        let (mut forwards, mut woken) = (0, 0);
        let mut filling = self.filling.borrow_mut();
        for (owner, mailbox) in mailboxes.iter().enumerate() {
            if filling[owner].ops.is_empty() {
                continue;
            }
            let fresh = self.take_pooled();
            let mut batch = std::mem::replace(&mut filling[owner], fresh);
            batch.origin = index;
            batch.owner = owner;
            forwards += 1;
            woken += u64::from(mailbox.post([Message::Forward(batch)]));
        }
        let mut pending = self.replies.borrow_mut();
        let replies = pending.len() as u64;
        while let Some(origin) = pending.last().map(|batch| batch.origin) {
            // All of one origin's replies in one post: one wake at most.
            let back = pending
                .extract_if(.., |batch| batch.origin == origin)
                .map(Message::Reply);
            woken += u64::from(mailboxes[origin].post(back));
        }
        (forwards, replies, woken)
    }
}

#[cfg(test)]
mod tests;
