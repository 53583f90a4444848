//! `flush_all`, lazily: a flush bumps the shard's epoch (an item of an older
//! epoch is dead), a delayed flush is applied when its time comes, and a
//! sweep bounded per tick walks the arena to take the memory back.

use super::Shard;
use crate::storage::Millis;
use crate::storage::item::{self, EPOCH_MODULUS};
use crate::storage::slab::ChunkId;

/// Progress of a flush sweep over the arena.
#[derive(Clone, Copy)]
pub(super) struct Sweep {
    /// The epoch when this pass started: once it completes, no item older
    /// than it is left.
    start_epoch: u64,
    page: usize,
    slot: usize,
}

impl Shard {
    /// Applies a delayed flush that has fallen due. While its very
    /// millisecond lasts the delayed flush stays recorded: a store made then
    /// is also "at or before" it, so it is never readable.
    pub(super) fn catch_up(&mut self, now: Millis) {
        if let Some((at, bumped)) = self.flush_at
            && at <= now
        {
            if !bumped {
                self.bump_epoch();
            }
            self.flush_at = (at == now).then_some((at, true));
        }
    }

    /// Whether a delayed flush has fallen due but is not applied yet (a
    /// `&self` caller cannot apply it): then everything stored so far is
    /// dead.
    pub(super) fn flush_due(&self, now: Millis) -> bool {
        matches!(self.flush_at, Some((at, false)) if at <= now)
    }

    /// Whether a store now is invalidated by a delayed flush falling due in
    /// this same millisecond.
    pub(super) fn flushed_on_arrival(&self, now: Millis) -> bool {
        matches!(self.flush_at, Some((at, _)) if at == now)
    }

    fn bump_epoch(&mut self) {
        if self.tables.epoch + 1 - self.oldest_epoch >= EPOCH_MODULUS {
            // The header could no longer tell the oldest epoch left from
            // the new one: finish sweeping first.
            if self.sweep.is_none() {
                self.sweep = Some(Sweep {
                    start_epoch: self.tables.epoch,
                    page: 0,
                    slot: 0,
                });
            }
            while self.sweep.is_some() {
                self.sweep_step(usize::MAX, 0);
            }
        }
        self.tables.epoch += 1;
        self.tables.flush_pending = true;
        self.sweep = Some(Sweep {
            start_epoch: self.tables.epoch,
            page: 0,
            slot: 0,
        });
    }

    /// Visits up to `budget` chunks of the sweep, reclaiming dead items.
    pub(super) fn sweep_step(&mut self, budget: usize, now: Millis) {
        let Some(mut sweep) = self.sweep else { return };
        let tables = &mut self.tables;
        let mut visited = 0;
        while visited < budget {
            if sweep.page >= tables.slabs.page_numbers() {
                self.oldest_epoch = sweep.start_epoch;
                tables.flush_pending = false;
                self.sweep = None;
                return;
            }
            let ids: Vec<ChunkId> = tables
                .slabs
                .page_chunks(sweep.page)
                .skip(sweep.slot)
                .take(budget - visited)
                .collect();
            visited += ids.len().max(1);
            sweep.slot += ids.len();
            for id in ids {
                let c = tables.slabs.chunk(id);
                if !item::is_allocated(c) {
                    continue;
                }
                // `now` 0 during a forced sweep: only flushed items go.
                if let Some(why) = tables.is_dead(c, now) {
                    tables.unlink_unhashed(id, why);
                }
            }
            if sweep.slot >= tables.slabs.page_chunks(sweep.page).count() {
                sweep.page += 1;
                sweep.slot = 0;
            }
        }
        self.sweep = Some(sweep);
    }

    /// Invalidates every item stored at or before `at`. With `at <= now`
    /// the shard is emptied at once; a later `at` takes effect lazily when
    /// that time comes (`flush_all <delay>`). Either way the memory comes
    /// back through the sweep run from [`Shard::tick`].
    pub fn flush(&mut self, at: Millis, now: Millis) {
        self.catch_up(now);
        if at <= now {
            self.flush_at = None;
            self.bump_epoch();
        } else {
            self.flush_at = Some((at, false));
        }
    }
}
