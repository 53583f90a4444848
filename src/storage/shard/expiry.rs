//! The shard's side of the timing wheel: scheduling items when they get a
//! deadline, renewing entries of items a page move relocated, and
//! reclaiming what comes due. The wheel names chunks; an entry is current
//! only while its chunk holds the same item with the same deadline.

use super::{Shard, TICK_EXPIRY_BUDGET, Tables};
use crate::storage::item;
use crate::storage::slab::ChunkId;
use crate::storage::wheel;
use crate::storage::{Deadline, Millis};

impl Shard {
    /// Gives an item a new deadline and reschedules it.
    pub(super) fn retime(&mut self, id: ChunkId, deadline: Deadline) {
        let c = self.tables.slabs.chunk_mut(id);
        let old = item::deadline(c);
        if old == deadline {
            return;
        }
        item::set_deadline(c, deadline);
        let cas = item::cas(c);
        let tables = &mut self.tables;
        tables.timed = tables.timed + usize::from(deadline != Deadline::NEVER)
            - usize::from(old != Deadline::NEVER);
        self.schedule(id, cas, item::deadline(self.tables.slabs.chunk(id)));
    }

    /// Renews the wheel entries of items a page move relocated.
    pub(super) fn renew_relocated(&mut self) {
        while let Some(id) = self.tables.relocated.pop() {
            let c = self.tables.slabs.chunk(id);
            // A later rescue in the same move may have evicted it again.
            if item::is_allocated(c) {
                let (cas, deadline) = (item::cas(c), item::deadline(c));
                self.schedule(id, cas, deadline);
            }
        }
    }

    pub(super) fn schedule(&mut self, id: ChunkId, cas: u64, deadline: Deadline) {
        if let Some(ms) = deadline.millis() {
            let entry = wheel::Entry {
                chunk: id,
                check: wheel::check(cas, ms),
            };
            self.wheel.schedule(entry, ms);
        }
    }

    /// Reclaims what the timing wheel has due (at most
    /// [`TICK_EXPIRY_BUDGET`] entries), and drops stale entries when they
    /// outnumber the current ones.
    pub(super) fn expire(&mut self, now: Millis) {
        let tables = &mut self.tables;
        self.wheel.advance(now, TICK_EXPIRY_BUDGET, |entry| {
            if !is_current(tables, entry) {
                return None;
            }
            let c = tables.slabs.chunk(entry.chunk);
            let deadline = item::deadline(c).millis()?;
            match tables.is_dead(c, now) {
                Some(why) => {
                    tables.unlink_unhashed(entry.chunk, why);
                    None
                }
                None => Some(deadline),
            }
        });
        if self.wheel.len() > 2 * tables.timed + 4096 || self.compacting {
            self.compacting = !self
                .wheel
                .compact(TICK_EXPIRY_BUDGET, |e| is_current(tables, e));
        }
    }
}

/// Whether a wheel entry still belongs to the item in its chunk: the chunk
/// holds an item whose CAS and deadline give the entry's check.
fn is_current(tables: &Tables, entry: wheel::Entry) -> bool {
    if !tables.slabs.is_live(entry.chunk) {
        return false;
    }
    let c = tables.slabs.chunk(entry.chunk);
    item::deadline(c)
        .millis()
        .is_some_and(|d| wheel::check(item::cas(c), d) == entry.check)
}
