//! Unit tests of tickets: a late reply never reaches the wrong connection.

use super::*;
use crate::server::forward::batch::Requester;

#[test]
fn a_late_reply_never_reaches_the_next_user_of_a_slot() {
    let waits = WaitList::default();
    let (gone, _old) = waits.join();
    waits.leave(gone);
    let (ticket, waiting) = waits.join();
    // The new connection took the same slot, with a new generation.
    assert_eq!(ticket.slot, gone.slot);
    assert_ne!(ticket.generation, gone.generation);
    waiting.outstanding.set(1);
    *waiting.waker.borrow_mut() = Some(Waker::noop().clone());
    let late = Rc::new(Batch {
        requesters: vec![Requester {
            ticket: gone,
            ..Requester::default()
        }],
        ..Batch::default()
    });
    assert_eq!(waits.deliver(&late), (0, 1));
    assert_eq!(waiting.outstanding.get(), 1);
    assert!(waiting.arrived.borrow().is_empty());
    let own = Rc::new(Batch {
        owner: 3,
        requesters: vec![Requester {
            ticket,
            ..Requester::default()
        }],
        ..Batch::default()
    });
    assert_eq!(waits.deliver(&own), (1, 0));
    assert_eq!(waiting.outstanding.get(), 0);
    assert_eq!(waiting.arrived.borrow()[0].owner, 3);
}
