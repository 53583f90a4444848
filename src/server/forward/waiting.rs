//! The connections of a core that wait for forwarded replies: a
//! [`WaitList`] of slots named by [`Ticket`]s, each holding a [`Waiting`]
//! that returned batches are filed in.
//!
//! A late reply cannot reach the wrong connection: a ticket carries its
//! slot's generation, and a connection that went away while its operations
//! were out leaves a slot whose generation has moved on.

use super::batch::{Batch, Requester};
use super::ticket::Ticket;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

/// What a waiting connection is told when one owner's replies come back.
pub(crate) struct Arrived {
    /// The owner.
    pub owner: usize,
    /// The returned batch; the connection's replies are in it.
    pub batch: Rc<Batch>,
    /// The connection's entry among the batch's requesters.
    pub requester: usize,
}

/// One connection waiting for forwarded replies.
#[derive(Default)]
pub(crate) struct Waiting {
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
pub(crate) struct WaitList {
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
        for (requester, &Requester { ticket, .. }) in batch.requesters.iter().enumerate() {
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
                requester,
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

#[cfg(test)]
#[path = "tests/waiting.rs"]
mod tests;
