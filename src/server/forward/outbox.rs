//! The operations a core's connections forward during one turn, one
//! [`Batch`] per owner, the replies it owes other cores, and the pool of
//! emptied batches; flushed once per turn by the core's mailbox task.

use super::batch::Batch;
use super::mailbox::{Mailbox, Message};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// Emptied batches an outbox keeps for reuse, at most.
const POOL_KEEP: usize = 64;

/// Buffer capacity, in bytes, the batches in an outbox's pool may hold
/// in all. Batches in flight at once are a few per owner in steady state,
/// but a core that stalls (preempted, or a long turn) lets its peers pile
/// up many, each as large as a turn's traffic, and without a bound the
/// pool would keep them all when they come back: 64 batches of up to
/// 5 × [`super::batch::BATCH_KEEP`] each. Batches beyond the budget are freed.
const POOL_BYTES: usize = 8 * 1024 * 1024;

/// The operations this core's connections forward during one turn, one
/// batch per owner, and the pool of batches to fill next.
pub(crate) struct Outbox {
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
    pub fn flush(&self, index: usize, mailboxes: &[Arc<Mailbox>]) -> (u64, u64, u64) {
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
            // All of one origin's replies in one post: one wake at most,
            // and none if no connection needs them to answer its client.
            let quiet = pending
                .iter()
                .filter(|batch| batch.origin == origin)
                .all(|batch| batch.quiet);
            let back = pending
                .extract_if(.., |batch| batch.origin == origin)
                .map(Message::Reply);
            if quiet {
                mailboxes[origin].post_quietly(back);
            } else {
                woken += u64::from(mailboxes[origin].post(back));
            }
        }
        (forwards, replies, woken)
    }
}

#[cfg(test)]
#[path = "tests/outbox.rs"]
mod tests;
