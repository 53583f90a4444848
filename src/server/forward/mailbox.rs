//! A core's mailbox: a bounded flume queue every core posts to, and one
//! atomic word that says whether its owner sleeps, so a sender wakes it
//! only then.
//!
//! A [`Mailbox`] keeps the count of messages ever posted and a SLEEPING
//! bit in one word. A sender pushes, then adds to the count, and wakes the
//! owner only if that add saw SLEEPING (and it was the one to clear it).
//! The owner ([`Inbox`]) sets SLEEPING, just before its runtime parks, only
//! with a compare-and-swap that also checks it has taken every message
//! counted so far. Both sides act through read-modify-writes of the same
//! word, so no message is ever left stranded with its owner asleep, and an
//! awake owner is never sent a wake (an eventfd write costs the sender
//! ~2 µs even when the owner is running, ~12 µs when it must be woken).
//! Waits allocate nothing: the owner's waker is stored once.

use super::batch::Batch;
use crate::server::{Control, ShardReport};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use tokio::sync::oneshot;

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
pub(crate) fn capacity(max_connections: usize) -> usize {
    3 * max_connections + 64
}

/// What travels between cores.
pub(crate) enum Message {
    /// Operations to run on the receiver's shards.
    Forward(Batch),
    /// A batch this core sent, with its replies filled in.
    Reply(Batch),
    /// A whole-server request, answered with the receiver's shard reports.
    Control(Control, oneshot::Sender<Vec<ShardReport>>),
}

/// The side of a core's mailbox that every core holds.
pub(crate) struct Mailbox {
    queue: flume::Sender<Message>,
    /// `posted * ONE | SLEEPING`: see the module docs.
    state: AtomicU64,
    /// Wakes the owner's mailbox task; set once, when it first runs.
    waker: OnceLock<Waker>,
    /// An upper bound, published by the owner, of the reply any read on
    /// its shards can produce now: origins plan with it (see `hop.rs`).
    largest_reply: AtomicUsize,
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

    /// Posts `messages` without ever waking the owner, even asleep: for
    /// replies whose clients have been answered already (the owner wrote
    /// to their sockets). The owner takes them the next time it runs for
    /// any reason (its connection's next request, any other mail, a tick),
    /// which is all the connection waiting on them needs: it has nothing
    /// to send its client before then. A sleeping owner's SLEEPING bit
    /// stays set, so the next ordinary post still wakes it.
    pub fn post_quietly(&self, messages: impl IntoIterator<Item = Message>) {
        let mut count = 0;
        for message in messages {
            let sent = self.queue.try_send(message);
            assert!(sent.is_ok(), "a core's mailbox overflowed its bound");
            count += 1;
        }
        self.state.fetch_add(count * ONE, Ordering::AcqRel);
    }

    /// The largest reply a read on the owner's shards can produce now, as
    /// the owner last published it (it may have grown since: the owner
    /// copes, see [`super::Batch::execute`]).
    pub fn largest_reply(&self) -> usize {
        self.largest_reply.load(Ordering::Relaxed)
    }
}

/// The owner's side of its mailbox.
pub(crate) struct Inbox {
    queue: flume::Receiver<Message>,
    mailbox: Arc<Mailbox>,
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

    /// Publishes the largest reply a read on this core's shards can produce
    /// now (see [`Mailbox::largest_reply`]). Written only when it changes:
    /// every origin reads this line.
    pub fn publish_largest_reply(&self, bytes: usize) {
        if self.mailbox.largest_reply.load(Ordering::Relaxed) != bytes {
            self.mailbox.largest_reply.store(bytes, Ordering::Relaxed);
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
pub(crate) fn mailboxes(threads: usize, max_connections: usize) -> (Vec<Arc<Mailbox>>, Vec<Inbox>) {
    (0..threads)
        .map(|_| {
            let (tx, rx) = flume::bounded(capacity(max_connections));
            let mailbox = Arc::new(Mailbox {
                queue: tx,
                state: AtomicU64::new(0),
                waker: OnceLock::new(),
                largest_reply: AtomicUsize::new(0),
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

#[cfg(test)]
#[path = "tests/mailbox.rs"]
mod tests;
