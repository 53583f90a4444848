//! One core's end of forwarding: its inbox, its outbox, every core's
//! mailbox, the connections waiting for replies, and the mailbox task's
//! wake-up. [`Exchange::mail`] is one run of the mailbox: take messages,
//! run forwarded batches on the core's shards, hand replies to the
//! connections waiting on them, send what the core has for others.

use super::batch::Batch;
use super::mailbox::{Inbox, Mailbox, Message};
use super::outbox::Outbox;
use super::ticket::Ticket;
use super::waiting::{Arrived, WaitList, Waiting};
use crate::server::op::Op;
use crate::server::{Control, Router, ShardReport};
use crate::stats::ThreadStats;
use crate::storage::Millis;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Waker};
use tokio::sync::oneshot;

/// Messages one mailbox run takes at most before it lets the core's
/// connections have the CPU again.
const DRAIN_LIMIT: usize = 64;

/// What forwarding needs of the core it runs on: its shards, its clock and
/// counters. The thread-per-core runtime's core implements it.
pub(crate) trait LocalShards {
    /// The key -> shard -> core map.
    fn router(&self) -> &Router;
    /// The server clock's time now.
    fn now(&self) -> Millis;
    /// This core's counters.
    fn stats(&self) -> &ThreadStats;
    /// Runs `op` (its bytes in `base`) on the shard of this core it belongs
    /// to, appending its reply to `out`; false if it panicked (the shard
    /// was reset: see `ServerState::run_op`).
    fn run_op(&self, op: &Op, base: &[u8], now: Millis, out: &mut Vec<u8>) -> bool;
    /// Starts loading the index buckets, then the item headers, of `ops`
    /// (all on this core's shards), so their misses overlap.
    fn prefetch<'o>(&self, ops: impl Iterator<Item = &'o Op> + Clone);
    /// Runs a whole-server request on this core's shards.
    fn control(&self, control: Control) -> Vec<ShardReport>;
    /// The largest reply a read on this core's shards can produce now.
    fn largest_reply(&self) -> usize;
}

/// What one run of the mailbox did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MailRun {
    /// Messages taken.
    pub taken: usize,
    /// Messages are still waiting (the run stopped at [`DRAIN_LIMIT`]).
    pub more: bool,
    /// Replies woke connections of this core.
    pub woke_tasks: bool,
}

/// One core's end of forwarding.
pub(crate) struct Exchange {
    index: usize,
    /// Every core's mailbox, this one's included (unused).
    mailboxes: Vec<Arc<Mailbox>>,
    inbox: Inbox,
    outbox: Outbox,
    waiting: WaitList,
    /// The mailbox task's waker, and whether it is already woken.
    mail_waker: RefCell<Option<Waker>>,
    mail_woken: Cell<bool>,
    /// Connections waiting for a batch whose owner answers their client
    /// itself: nothing on their clients' path waits for it.
    direct_waits: Cell<usize>,
}

impl Exchange {
    /// Core `index`'s end, given every core's mailbox and its own inbox.
    pub fn new(index: usize, mailboxes: Vec<Arc<Mailbox>>, inbox: Inbox) -> Exchange {
        let threads = mailboxes.len();
        Exchange {
            index,
            mailboxes,
            inbox,
            outbox: Outbox::new(threads),
            waiting: WaitList::default(),
            mail_waker: RefCell::new(None),
            mail_woken: Cell::new(false),
            direct_waits: Cell::new(0),
        }
    }

    /// This core's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many cores there are.
    pub fn threads(&self) -> usize {
        self.mailboxes.len()
    }

    /// The largest reply a read on `owner`'s shards can produce now, as it
    /// last published it.
    pub fn largest_reply(&self, owner: usize) -> usize {
        self.mailboxes[owner].largest_reply()
    }

    /// The batches being filled this turn, by owner.
    pub(super) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Registers a connection that may wait for replies.
    pub fn join(&self) -> (Ticket, Rc<Waiting>) {
        self.waiting.join()
    }

    /// Forgets a connection: replies still on their way to it are dropped.
    pub fn leave(&self, ticket: Ticket) {
        self.waiting.leave(ticket)
    }

    /// A connection starts (`by` 1) or stops (-1) waiting for a batch; with
    /// `direct`, one whose owner answers its client itself.
    pub(super) fn count_direct_wait(&self, direct: bool, by: isize) {
        if direct {
            self.direct_waits
                .set(self.direct_waits.get().wrapping_add_signed(by));
        }
    }

    /// Whether a connection of this core waits for replies its client
    /// waits for too, of the `waiting` connections waiting at all: only
    /// then is spinning for replies worth it.
    pub fn replies_awaited(&self, waiting: u64) -> bool {
        waiting > self.direct_waits.get() as u64
    }

    /// Whether messages wait to be taken.
    pub fn inbox_pending(&self) -> bool {
        self.inbox.pending()
    }

    /// Whether the mailbox task has work: messages to take or to send.
    pub fn mail_pending(&self) -> bool {
        self.inbox.pending() || !self.outbox.is_empty()
    }

    /// Says this core is going to sleep, if it has taken every message;
    /// see [`Inbox::try_sleep`].
    pub fn try_sleep(&self) -> bool {
        self.inbox.try_sleep()
    }

    /// Says this core is awake again.
    pub fn awake(&self) {
        self.inbox.awake()
    }

    /// Makes sure the mailbox task runs soon (it is a local wake: no
    /// system call).
    pub fn wake_mail(&self) {
        if !self.mail_woken.replace(true)
            && let Some(waker) = self.mail_waker.borrow().as_ref()
        {
            waker.wake_by_ref();
        }
    }

    /// The mailbox task is running with `cx`: other cores wake it through
    /// its waker, and a new [`Exchange::wake_mail`] schedules it again.
    pub fn mail_task_polled(&self, cx: &Context<'_>) {
        self.inbox.set_waker(cx.waker());
        if self.mail_waker.borrow().is_none() {
            *self.mail_waker.borrow_mut() = Some(cx.waker().clone());
        }
        self.mail_woken.set(false);
    }

    /// Sends `control` to every other core; their answers come through the
    /// returned receivers.
    pub fn post_control(&self, control: Control) -> Vec<oneshot::Receiver<Vec<ShardReport>>> {
        let mut pending = Vec::new();
        for (index, mailbox) in self.mailboxes.iter().enumerate() {
            if index != self.index {
                let (tx, rx) = oneshot::channel();
                mailbox.post([Message::Control(control, tx)]);
                pending.push(rx);
            }
        }
        pending
    }

    /// One run of the mailbox: take up to [`DRAIN_LIMIT`] messages, handle
    /// them on `shards`, then send what this core has for others.
    pub fn mail(&self, shards: &impl LocalShards) -> MailRun {
        let mut run = MailRun::default();
        let stats = shards.stats();
        while run.taken < DRAIN_LIMIT {
            // Looked at before every message, not once per run: a run
            // that follows a long stall takes the backlog it found.
            stats.mailbox_max_depth.raise_to(self.inbox.depth());
            let Some(message) = self.inbox.next() else {
                break;
            };
            run.taken += 1;
            match message {
                Message::Forward(mut batch) => {
                    self.execute(&mut batch, shards);
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
                    let _ = reply.send(shards.control(control));
                }
            }
        }
        if run.taken > 0 {
            self.publish_largest_reply(shards);
        }
        let (forwards, _, woken) = self.outbox.flush(self.index, &self.mailboxes);
        stats.forward_messages.add(forwards);
        stats.forward_inflight.add(forwards);
        stats.core_wakes.add(woken);
        run.more = run.taken == DRAIN_LIMIT;
        run
    }

    /// Publishes, for the origins planning their waves, the largest reply
    /// a read on this core's shards can produce now. Called after this
    /// core ran writes (a mailbox run, a connection's local writes) and on
    /// its ticks.
    pub fn publish_largest_reply(&self, shards: &impl LocalShards) {
        self.inbox.publish_largest_reply(shards.largest_reply());
    }

    /// Runs a forwarded batch on this core's shards, filling in its
    /// replies.
    fn execute(&self, batch: &mut Batch, shards: &impl LocalShards) {
        let now = shards.now();
        shards.prefetch(batch.ops.iter());
        let stats = shards.stats();
        stats.forwarded_in.add(batch.ops.len() as u64);
        let done = batch.execute(|op, base, out| shards.run_op(op, base, now, out));
        stats.forward_deferred.add(done.deferred);
        stats.get_budget_refused.add(done.refused);
        stats.forward_direct_replies.add(done.direct);
        stats.bytes_written.add(done.direct_bytes);
    }

    /// Files the batches that came back for `waiting` (from this wave's
    /// owners) with `file`, which gets each owner, its batch and the
    /// connection's place among the batch's requesters.
    pub(super) fn take_arrived(
        &self,
        waiting: &Waiting,
        mut file: impl FnMut(usize, Rc<Batch>, usize),
    ) {
        for Arrived {
            owner,
            batch,
            requester,
        } in waiting.arrived.borrow_mut().drain(..)
        {
            file(owner, batch, requester);
        }
    }

    /// Lets go of a returned batch (see [`Outbox::recycle`]).
    pub(super) fn recycle(&self, batch: Rc<Batch>) {
        self.outbox.recycle(batch)
    }
}
