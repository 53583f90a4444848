//! Unit tests of the outbox's pool: batches reused, within their budget.

use super::*;
use crate::server::forward::batch::BATCH_KEEP;
use crate::server::op::Op;

#[test]
fn a_batch_that_grew_gives_its_memory_back_when_recycled() {
    let outbox = Outbox::new(2);
    let mut big = Batch::default();
    big.replies.resize(100 << 20, b'x');
    big.ops.reserve(10_000);
    outbox.recycle(Rc::new(big));
    let reused = outbox.pool.borrow_mut().pop().unwrap();
    assert!(reused.replies.capacity() <= BATCH_KEEP);
    assert!(reused.ops.capacity() * std::mem::size_of::<Op>() <= BATCH_KEEP);
    // A batch still held by a connection is not taken back.
    let held = Rc::new(Batch::default());
    outbox.recycle(held.clone());
    assert!(outbox.pool.borrow().is_empty());
    outbox.recycle(held);
    assert_eq!(outbox.pool.borrow().len(), 1);
}

/// However many large batches come back at once (a peer piled them up
/// while this core stalled), the pool keeps at most `POOL_BYTES` of their
/// buffers; the rest are freed. What it keeps is handed out again, and
/// the count follows.
#[test]
fn the_pool_keeps_at_most_its_byte_budget() {
    let outbox = Outbox::new(2);
    for _ in 0..POOL_KEEP {
        let mut batch = Batch::default();
        batch.replies.reserve_exact(BATCH_KEEP);
        batch.bytes.reserve_exact(BATCH_KEEP / 2);
        outbox.recycle(Rc::new(batch));
    }
    let pooled: usize = outbox.pool.borrow().iter().map(Batch::capacity_bytes).sum();
    assert_eq!(pooled, outbox.pooled.get());
    assert!(pooled <= POOL_BYTES, "{pooled}");
    // Full batches up to the budget were kept, not dropped for nothing.
    assert!(pooled > POOL_BYTES - 2 * BATCH_KEEP, "{pooled}");
    // The shells are all kept: they cost nothing.
    assert_eq!(outbox.shells.borrow().len(), POOL_KEEP);
    let kept = outbox.pool.borrow().len();
    for _ in 0..kept {
        let batch = outbox.take_pooled();
        assert!(batch.replies.capacity() >= BATCH_KEEP);
    }
    assert_eq!(outbox.pooled.get(), 0);
    assert_eq!(outbox.take_pooled().capacity_bytes(), 0);
}
