//! What the meta commands add to the classic ones: `mg` (touch, vivify,
//! recache and stale win tokens, no-bump), `md` (invalidate, strip),
//! `ma` (vivify, compare, touch) and `me`.
//!
//! Counters follow memcached 1.6.18: an `mg` that finds or creates its
//! item counts as a get hit, or, with `T`, as a touch hit instead; one that
//! finds nothing is a get miss; an item `mg N` or `ma N` creates is not a
//! set, and an `ma N` miss is not an increment miss.

use super::classic::{format_decimal, parse_counter};
use super::{Gone, Shard, secs, view};
use crate::storage::item;
use crate::storage::{
    ArithMeta, ArithOp, Deadline, DeleteMeta, DeleteOutcome, MetaArithOutcome, MetaDebug, MetaGet,
    MetaHit, Millis, ShardStats, Store, StoreMeta, StoreMode, StoreOutcome,
};

impl Shard {
    /// A meta get (`mg`): looks up `key` and applies `req` (touch, vivify on
    /// miss, recache and stale win tokens, LRU bump unless `no_bump`).
    /// `None` is a miss.
    pub fn meta_get(
        &mut self,
        key: &[u8],
        hash: u64,
        req: &MetaGet,
        now: Millis,
    ) -> Option<MetaHit<'_>> {
        self.catch_up(now);
        let mut created = false;
        let id = match self.tables.find_live(key, hash, now) {
            Some(id) => id,
            None => {
                let miss = |stats: &mut ShardStats| {
                    stats.cmd_get += 1;
                    stats.get_misses += 1;
                };
                let Some(deadline) = req.vivify else {
                    miss(&mut self.tables.stats);
                    return None;
                };
                let empty = Store {
                    mode: StoreMode::Add,
                    key,
                    hash,
                    flags: 0,
                    deadline,
                    value: b"",
                };
                let meta = StoreMeta {
                    new_cas: req.new_cas,
                    ..StoreMeta::default()
                };
                let stored = self.store_counted(&empty, &meta, now, false);
                // Absent if it was born expired.
                let found = self.tables.index.find(&self.tables.slabs, key, hash);
                let (StoreOutcome::Stored(_), Some(id)) = (stored, found) else {
                    miss(&mut self.tables.stats);
                    return None;
                };
                created = true;
                id
            }
        };
        let class = self.tables.slabs.class_of(id);
        let (stats, counters) = (&mut self.tables.stats, &mut self.tables.classes[class]);
        if req.touch.is_some() {
            stats.cmd_touch += 1;
            stats.touch_hits += 1;
            counters.touch_hits += 1;
        } else {
            stats.cmd_get += 1;
            stats.get_hits += 1;
            counters.get_hits += 1;
        }
        let c = self.tables.slabs.chunk(id);
        let fetched_before = item::fetched(c);
        let idle_secs = secs(now).saturating_sub(item::time(c));
        let token_taken = item::token_sent(c);
        let stale = item::stale(c);
        let deadline_before = if created {
            Deadline::NEVER
        } else {
            item::deadline(c)
        };
        let expires = item::deadline(c).millis();
        if let Some(deadline) = req.touch {
            self.retime(id, deadline);
        }
        let recache = !created
            && matches!(
                (expires, req.recache_before.and_then(Deadline::millis)),
                (Some(at), Some(before)) if at < before
            );
        let won = !token_taken && (created || recache || stale);
        if won {
            item::set_token_sent(self.tables.slabs.chunk_mut(id), true);
        }
        if !req.no_bump {
            self.hit(id, now);
        }
        Some(MetaHit {
            item: view(self.tables.slabs.chunk(id)),
            fetched_before,
            idle_secs,
            stale,
            token_taken,
            won,
            created,
            binary_key: item::key_binary(self.tables.slabs.chunk(id)),
            deadline_before,
        })
    }

    /// A meta delete (`md`): removes `key`, or with `invalidate` marks it
    /// stale under a new CAS token, or with `strip` empties its value.
    pub fn meta_delete(
        &mut self,
        key: &[u8],
        hash: u64,
        req: &DeleteMeta,
        now: Millis,
    ) -> DeleteOutcome {
        self.catch_up(now);
        let Some(id) = self.tables.find_live(key, hash, now) else {
            self.tables.stats.delete_misses += 1;
            return DeleteOutcome::NotFound;
        };
        let class = self.tables.slabs.class_of(id);
        if req
            .compare
            .is_some_and(|cas| cas != item::cas(self.tables.slabs.chunk(id)))
        {
            self.tables.stats.delete_misses += 1;
            return DeleteOutcome::Exists;
        }
        if !req.invalidate && !req.strip {
            self.tables.classes[class].delete_hits += 1;
            self.tables.unlink(id, hash, Gone::Removed);
            self.tables.stats.delete_hits += 1;
            return DeleteOutcome::Done;
        }
        let cas = req.new_cas.unwrap_or_else(|| self.fresh_cas());
        let tables = &mut self.tables;
        let c = tables.slabs.chunk_mut(id);
        let old = (item::item_size(c), item::cas(c));
        item::set_cas(c, cas);
        if req.strip {
            item::set_value_len(c, 0);
        }
        let new_size = item::item_size(c);
        tables.rewritten(class, old, (new_size, cas));
        let c = tables.slabs.chunk_mut(id);
        if req.invalidate {
            item::set_stale(c, true);
            item::set_token_sent(c, false);
        }
        let deadline = item::deadline(c);
        // The wheel entry is keyed by the CAS token: schedule it again.
        self.schedule(id, cas, deadline);
        if let (true, Some(deadline)) = (req.invalidate, req.touch) {
            self.retime(id, deadline);
        }
        DeleteOutcome::Done
    }

    /// A meta arithmetic (`ma`): adds `delta` to, or subtracts it from, a
    /// decimal value, with the extras of [`ArithMeta`].
    pub fn meta_arith(
        &mut self,
        key: &[u8],
        hash: u64,
        op: ArithOp,
        delta: u64,
        req: &ArithMeta,
        now: Millis,
    ) -> MetaArithOutcome {
        self.catch_up(now);
        let hit = |stats: &mut ShardStats, hit: bool| match (op, hit) {
            (ArithOp::Incr, true) => stats.incr_hits += 1,
            (ArithOp::Incr, false) => stats.incr_misses += 1,
            (ArithOp::Decr, true) => stats.decr_hits += 1,
            (ArithOp::Decr, false) => stats.decr_misses += 1,
        };
        let Some(id) = self.tables.find_live(key, hash, now) else {
            let Some((deadline, initial)) = req.vivify else {
                hit(&mut self.tables.stats, false);
                return MetaArithOutcome::NotFound;
            };
            let mut buf = [0u8; 20];
            let store = Store {
                mode: StoreMode::Add,
                key,
                hash,
                flags: 0,
                deadline,
                value: format_decimal(initial, &mut buf),
            };
            let meta = StoreMeta {
                new_cas: req.new_cas,
                ..StoreMeta::default()
            };
            return match self.store_counted(&store, &meta, now, false) {
                StoreOutcome::Stored(cas) => {
                    let mut deadline = deadline;
                    if let Some(touch) = req.touch
                        && let Some(id) = self.tables.index.find(&self.tables.slabs, key, hash)
                    {
                        self.retime(id, touch);
                        deadline = touch;
                    }
                    MetaArithOutcome::Value {
                        value: initial,
                        cas,
                        deadline,
                        deadline_before: Deadline::NEVER,
                        created: true,
                    }
                }
                _ => MetaArithOutcome::NotStored,
            };
        };
        let c = self.tables.slabs.chunk(id);
        if req.compare.is_some_and(|cas| cas != item::cas(c)) {
            return MetaArithOutcome::Exists;
        }
        let Some(current) = parse_counter(item::value(c)) else {
            return MetaArithOutcome::NonNumeric;
        };
        let value = match op {
            ArithOp::Incr => current.wrapping_add(delta),
            ArithOp::Decr => current.saturating_sub(delta),
        };
        hit(&mut self.tables.stats, true);
        let class = self.tables.slabs.class_of(id);
        match op {
            ArithOp::Incr => self.tables.classes[class].incr_hits += 1,
            ArithOp::Decr => self.tables.classes[class].decr_hits += 1,
        }
        let deadline_before = item::deadline(c);
        let cas = req.new_cas.unwrap_or_else(|| self.fresh_cas());
        let Some(id) = self.set_counter(id, hash, value, cas, now) else {
            return MetaArithOutcome::NotStored;
        };
        if let Some(deadline) = req.touch {
            self.retime(id, deadline);
        }
        MetaArithOutcome::Value {
            value,
            cas,
            deadline: item::deadline(self.tables.slabs.chunk(id)),
            deadline_before,
            created: false,
        }
    }

    /// An item's metadata for `me`, without any side effect on the item
    /// (no bump, no fetched mark); the request counts in `cmd_meta`.
    pub fn meta_debug(&mut self, key: &[u8], hash: u64, now: Millis) -> Option<MetaDebug> {
        self.tables.stats.cmd_meta += 1;
        if !self.peek(key, hash, now) {
            return None;
        }
        let id = self.tables.index.find(&self.tables.slabs, key, hash)?;
        let c = self.tables.slabs.chunk(id);
        Some(MetaDebug {
            deadline: item::deadline(c),
            idle_secs: secs(now).saturating_sub(item::time(c)),
            cas: item::cas(c),
            fetched: item::fetched(c),
            class: self.tables.slabs.class_of(id),
            size: item::item_size(c),
            binary_key: item::key_binary(c),
        })
    }

    /// The value length of the live item under `key`, without any side
    /// effect (the size `ms s` reports after an append).
    pub fn value_len(&self, key: &[u8], hash: u64, now: Millis) -> Option<usize> {
        if !self.peek(key, hash, now) {
            return None;
        }
        let id = self.tables.index.find(&self.tables.slabs, key, hash)?;
        Some(item::value_len(self.tables.slabs.chunk(id)))
    }
}
