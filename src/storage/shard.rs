//! The shard engine: glues the slab arena, index, LRU lists, timing wheel
//! and automove policy into the operations the server calls.
//!
//! This module owns the item lifecycle (store, read, unlink, evict,
//! reclaim), the counters, CAS allocation and `flush_all`.
//!
//! * **Memory.** An item is one chunk of its slab class (see
//!   [`super::item`] for the 40-byte header). Stores that overwrite first
//!   unlink the old item (its chunk is then usually reused at once), as
//!   memcached does on a failed allocation too: no stale value survives a
//!   store that could not complete.
//! * **Allocation**: a free chunk of the class; else a new
//!   page from the budget; else a page with no items from any class; else
//!   reclaim the first expired or flushed item among the last
//!   [`TAIL_SEARCH`] of the class LRU; else evict the LRU tail. A class with
//!   no item at all to evict takes the coldest page of the class holding
//!   most pages. Only if that fails is the store `OutOfMemory`.
//! * **Expiry** is checked on every read, and the timing wheel reclaims
//!   items in the background from [`Shard::tick`], at most
//!   [`TICK_EXPIRY_BUDGET`] wheel entries per call. Overwrites, touches and
//!   counter updates leave stale wheel entries behind; when they outnumber
//!   the items with a deadline (plus 4096), `tick` also drops stale entries
//!   slot by slot, so the wheel stays within about twice the timed items.
//! * **Flush** is lazy by epoch: every item records the flush epoch it was
//!   stored in (6 bits), a flush bumps the shard's epoch, and an item from
//!   an older epoch is dead. A sweep in `tick` walks the arena, bounded per
//!   call, to take the memory back; if 64 flushes come before a sweep can
//!   finish, the sweep is completed at once so epochs never alias.
//! * **Rebalancing**: see [`super::automove`].

use super::automove::{Automove, ClassView};
use super::index::Index;
use super::item::{self, EPOCH_MODULUS};
use super::lru::Lru;
use super::slab::{self, ChunkId, Slabs};
use super::wheel::{self, Wheel};
use super::{
    ArithMeta, ArithOp, ArithOutcome, Deadline, DeleteMeta, DeleteOutcome, Item, MetaArithOutcome,
    MetaDebug, MetaGet, MetaHit, Millis, ShardConfig, ShardStats, SlabClassStats, Store, StoreMeta,
    StoreMode, StoreOutcome,
};
use xxhash_rust::xxh3::xxh3_64;

/// How many items from the LRU tail an allocation inspects for an expired
/// one before evicting a live item.
pub const TAIL_SEARCH: usize = 5;
/// A hit moves an item to the head of its LRU only if it was last moved at
/// least this long ago (memcached's `ITEM_UPDATE_INTERVAL`): a bump touches
/// three other items' headers, which at a million items means cache misses
/// on every hit, and an item used within the last minute is near the head
/// anyway.
pub const BUMP_INTERVAL_SECS: u32 = 60;
/// Wheel entries visited per `tick` at most; the rest carry over.
pub const TICK_EXPIRY_BUDGET: usize = 20_000;
/// Chunks the flush sweep visits per `tick`.
pub const TICK_SWEEP_BUDGET: usize = 50_000;
/// Index buckets migrated per `tick` while the index grows.
pub const TICK_MIGRATE_BUDGET: usize = 16_384;

/// Per-class event counters.
#[derive(Clone, Debug, Default)]
struct ClassCounters {
    get_hits: u64,
    cmd_set: u64,
    delete_hits: u64,
    incr_hits: u64,
    decr_hits: u64,
    cas_hits: u64,
    cas_badval: u64,
    touch_hits: u64,
    evicted: u64,
    evicted_by_move: u64,
    evicted_nonzero: u64,
    evicted_unfetched: u64,
    expired_unfetched: u64,
    outofmemory: u64,
    reclaimed: u64,
    mem_requested: u64,
    pages_in: u64,
    pages_out: u64,
}

/// Why an item leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gone {
    Removed,
    Expired,
    Flushed,
    Evicted,
    /// Evicted because its page moved to another class.
    Moved,
}

/// Why a lookup found nothing usable.
enum Miss {
    Absent,
    Expired,
    Flushed,
}

/// Everything but the wheel: the parts an expiry visit needs while the
/// wheel is borrowed.
struct Core {
    slabs: Slabs,
    index: Index,
    lru: Lru,
    stats: ShardStats,
    classes: Vec<ClassCounters>,
    /// The current flush epoch; items keep it modulo [`EPOCH_MODULUS`].
    epoch: u64,
    /// Items with a deadline (each has one current wheel entry).
    timed: usize,
    /// Items of an older flush epoch may still be in the arena (a sweep
    /// has not finished since the last flush).
    flush_pending: bool,
    /// Items a page move relocated, whose wheel entries the shard must
    /// renew (the wheel names chunks, and these changed chunk).
    relocated: Vec<ChunkId>,
}

impl Core {
    fn is_dead(&self, c: &[u8], now: Millis) -> Option<Gone> {
        if item::deadline(c).is_expired(now) {
            Some(Gone::Expired)
        } else if item::epoch(c) != self.epoch % EPOCH_MODULUS {
            Some(Gone::Flushed)
        } else {
            None
        }
    }

    fn find_live(&mut self, key: &[u8], hash: u64, now: Millis) -> Result<ChunkId, Miss> {
        let id = self
            .index
            .find(&self.slabs, key, hash)
            .ok_or(Miss::Absent)?;
        match self.is_dead(self.slabs.chunk(id), now) {
            None => Ok(id),
            Some(why) => {
                self.unlink(id, hash, why);
                Err(if why == Gone::Expired {
                    Miss::Expired
                } else {
                    Miss::Flushed
                })
            }
        }
    }

    /// Removes an item from the index and LRU and frees its chunk.
    fn unlink(&mut self, id: ChunkId, hash: u64, why: Gone) {
        let class = self.slabs.class_of(id);
        let c = self.slabs.chunk(id);
        let size = item::item_size(c) as u64;
        let fetched = item::fetched(c);
        let timed = item::deadline(c) != Deadline::NEVER;
        let found = self.index.remove(&mut self.slabs, id, hash);
        debug_assert!(found, "unlinking an item the index does not hold");
        self.lru.unlink(&mut self.slabs, class, id);
        self.slabs.free(id);
        self.timed -= usize::from(timed);
        self.stats.curr_items -= 1;
        self.stats.bytes -= size;
        let counters = &mut self.classes[class];
        counters.mem_requested -= size;
        match why {
            Gone::Removed | Gone::Flushed => {}
            Gone::Expired => {
                self.stats.reclaimed += 1;
                counters.reclaimed += 1;
                if !fetched {
                    self.stats.expired_unfetched += 1;
                    counters.expired_unfetched += 1;
                }
            }
            Gone::Evicted | Gone::Moved => {
                self.stats.evictions += 1;
                if why == Gone::Moved {
                    counters.evicted_by_move += 1;
                } else {
                    counters.evicted += 1;
                }
                if timed {
                    counters.evicted_nonzero += 1;
                }
                if !fetched {
                    self.stats.evicted_unfetched += 1;
                    counters.evicted_unfetched += 1;
                }
            }
        }
    }

    /// Unlinks an item whose hash the caller does not have.
    fn unlink_unhashed(&mut self, id: ChunkId, why: Gone) {
        let hash = xxh3_64(item::key(self.slabs.chunk(id)));
        self.unlink(id, hash, why);
    }

    /// Empties a page and gives it to class `to`. Expired and flushed
    /// items are reclaimed; live ones are rescued into other chunks of their
    /// class, and where the class has no room, its least recently used items
    /// are evicted instead. So a page move costs the donor class its oldest
    /// items, never the ones just written that happened to sit on the page.
    fn move_page(&mut self, page: usize, to: usize, now: Millis) {
        let from = self.slabs.page_class(page);
        self.slabs.begin_move(page);
        let ids: Vec<ChunkId> = self.slabs.page_chunks(page).collect();
        for id in ids {
            let c = self.slabs.chunk(id);
            // Checked per chunk: rescuing an earlier one may have evicted it.
            if !item::is_allocated(c) {
                continue;
            }
            match self.is_dead(c, now) {
                Some(why) => self.unlink_unhashed(id, why),
                None => self.rescue(id, page, from, now),
            }
        }
        self.slabs.reassign_page(page, to);
        self.stats.slabs_moved += 1;
        self.classes[from].pages_out += 1;
        self.classes[to].pages_in += 1;
    }

    /// Moves live item `id` off `page` to another chunk of `class`, evicting
    /// the class's oldest items until one is free (or `id` is the oldest).
    fn rescue(&mut self, id: ChunkId, page: usize, class: usize, now: Millis) {
        loop {
            if let Some(to) = self.slabs.alloc_outside(class, page) {
                let hash = xxh3_64(item::key(self.slabs.chunk(id)));
                let found = self.index.remove(&mut self.slabs, id, hash);
                debug_assert!(found, "rescuing an item the index does not hold");
                self.slabs.copy_chunk(id, to);
                self.lru.replace(&mut self.slabs, class, id, to);
                self.index.insert(&mut self.slabs, to, hash);
                self.slabs.free(id);
                self.relocated.push(to);
                return;
            }
            let tail = self
                .lru
                .tail(class)
                .expect("the item being rescued is linked");
            let why = self
                .is_dead(self.slabs.chunk(tail), now)
                .unwrap_or(Gone::Moved);
            self.unlink_unhashed(tail, why);
            if tail == id {
                return;
            }
        }
    }

    /// The page of `class` to give away: an empty one, else the one holding
    /// the class's LRU tail (its coldest item).
    fn donor_page(&self, class: usize) -> Option<usize> {
        self.slabs
            .empty_page_of(class)
            .or_else(|| self.lru.tail(class).map(|id| self.slabs.page_of(id)))
    }

    /// A chunk for an item of `class`; see the module doc for the order of
    /// resorts. `None` only if nothing can be freed.
    fn alloc(&mut self, class: usize, now: Millis) -> Option<ChunkId> {
        loop {
            if let Some(id) = self.slabs.alloc(class) {
                return Some(id);
            }
            if self.slabs.empty_pages() > 0 {
                let page = (0..self.slabs.class_count())
                    .find_map(|c| self.slabs.empty_page_of(c))
                    .expect("an empty page is counted");
                self.move_page(page, class, now);
                continue;
            }
            if let Some(tail) = self.lru.tail(class) {
                let mut at = Some(tail);
                let mut victim = (tail, Gone::Evicted);
                // Each look is a header read (a cache miss in a big cache):
                // only look past the tail if something can be dead there.
                let search = if self.timed > 0 || self.flush_pending {
                    TAIL_SEARCH
                } else {
                    1
                };
                for _ in 0..search {
                    let Some(id) = at else { break };
                    if let Some(why) = self.is_dead(self.slabs.chunk(id), now) {
                        victim = (id, why);
                        break;
                    }
                    at = Lru::newer(&self.slabs, id);
                }
                self.unlink_unhashed(victim.0, victim.1);
                continue;
            }
            // Nothing of its own to evict: take the coldest page of the class
            // with the most pages.
            let donor = (0..self.slabs.class_count())
                .filter(|&c| c != class && self.slabs.class_pages(c) > 0)
                .max_by_key(|&c| self.slabs.class_pages(c));
            match donor.and_then(|d| self.donor_page(d)) {
                Some(page) => self.move_page(page, class, now),
                None => {
                    self.classes[class].outofmemory += 1;
                    return None;
                }
            }
        }
    }
}

/// Progress of a flush sweep over the arena.
#[derive(Clone, Copy)]
struct Sweep {
    /// The epoch when this pass started: once it completes, no item older
    /// than it is left.
    start_epoch: u64,
    page: usize,
    slot: usize,
}

/// One single-threaded cache engine owning a slice of the keyspace.
pub struct Shard {
    core: Core,
    wheel: Wheel,
    automove: Automove,
    config: ShardConfig,
    next_cas: u64,
    /// A delayed `flush_all`: its time, and whether it has been applied
    /// (kept only during that very millisecond).
    flush_at: Option<(Millis, bool)>,
    sweep: Option<Sweep>,
    /// No item from an epoch before this one is left in the arena.
    oldest_epoch: u64,
    /// Reused buffer for append/prepend and counters that change size.
    scratch: Vec<u8>,
    /// A pass dropping stale wheel entries is under way.
    compacting: bool,
}

impl Shard {
    /// An empty shard with the given sizing.
    ///
    /// # Panics
    ///
    /// If the slab settings are invalid; check them first with
    /// [`super::validate_config`].
    pub fn new(config: &ShardConfig) -> Shard {
        if let Err(e) = slab::validate(config) {
            panic!("invalid slab settings: {e}");
        }
        let slabs = Slabs::new(config);
        let classes = slabs.class_count();
        let stats = ShardStats {
            limit_maxbytes: config.memory_limit as u64,
            ..ShardStats::default()
        };
        Shard {
            core: Core {
                slabs,
                index: Index::new(),
                lru: Lru::new(classes),
                stats,
                classes: vec![ClassCounters::default(); classes],
                epoch: 0,
                timed: 0,
                flush_pending: false,
                relocated: Vec::new(),
            },
            wheel: Wheel::new(0),
            automove: Automove::new(),
            next_cas: config.index as u64 + 1,
            config: config.clone(),
            flush_at: None,
            sweep: None,
            oldest_epoch: 0,
            scratch: Vec::new(),
            compacting: false,
        }
    }

    /// Empties the shard, as if just built with its configuration: what a
    /// server does to a shard a panic may have left half-updated.
    pub fn reset(&mut self) {
        let config = self.config.clone();
        *self = Shard::new(&config);
    }

    /// This shard's counters.
    pub fn stats(&self) -> &ShardStats {
        &self.core.stats
    }

    /// Zeroes the event counters (`stats reset`); gauges such as
    /// `curr_items` and `bytes` are kept.
    pub fn reset_stats(&mut self) {
        let s = &self.core.stats;
        self.core.stats = ShardStats {
            curr_items: s.curr_items,
            bytes: s.bytes,
            limit_maxbytes: s.limit_maxbytes,
            ..ShardStats::default()
        };
        for c in &mut self.core.classes {
            *c = ClassCounters {
                mem_requested: c.mem_requested,
                ..ClassCounters::default()
            };
        }
    }

    /// Whether an item of this key and value length could ever be stored.
    pub fn fits(&self, key_len: usize, value_len: usize) -> bool {
        key_len <= u8::MAX as usize
            && item::total_size(key_len, value_len) <= self.config.max_item_size
    }

    fn fresh_cas(&mut self) -> u64 {
        let cas = self.next_cas;
        self.next_cas += self.config.shard_count as u64;
        cas
    }

    /// Applies a delayed flush that has fallen due. While its very
    /// millisecond lasts the delayed flush stays recorded: a store made then
    /// is also "at or before" it, so it is never readable.
    fn catch_up(&mut self, now: Millis) {
        if let Some((at, bumped)) = self.flush_at
            && at <= now
        {
            if !bumped {
                self.bump_epoch();
            }
            self.flush_at = (at == now).then_some((at, true));
        }
    }

    /// Whether a store now is invalidated by a delayed flush falling due in
    /// this same millisecond.
    fn flushed_on_arrival(&self, now: Millis) -> bool {
        matches!(self.flush_at, Some((at, _)) if at == now)
    }

    fn bump_epoch(&mut self) {
        if self.core.epoch + 1 - self.oldest_epoch >= EPOCH_MODULUS {
            // The header could no longer tell the oldest epoch left from
            // the new one: finish sweeping first.
            if self.sweep.is_none() {
                self.sweep = Some(Sweep {
                    start_epoch: self.core.epoch,
                    page: 0,
                    slot: 0,
                });
            }
            while self.sweep.is_some() {
                self.sweep_step(usize::MAX, 0);
            }
        }
        self.core.epoch += 1;
        self.core.flush_pending = true;
        self.sweep = Some(Sweep {
            start_epoch: self.core.epoch,
            page: 0,
            slot: 0,
        });
    }

    /// Visits up to `budget` chunks of the sweep, reclaiming dead items.
    fn sweep_step(&mut self, budget: usize, now: Millis) {
        let Some(mut sweep) = self.sweep else { return };
        let core = &mut self.core;
        let mut visited = 0;
        while visited < budget {
            if sweep.page >= core.slabs.pages_allocated() {
                self.oldest_epoch = sweep.start_epoch;
                core.flush_pending = false;
                self.sweep = None;
                return;
            }
            let ids: Vec<ChunkId> = core
                .slabs
                .page_chunks(sweep.page)
                .skip(sweep.slot)
                .take(budget - visited)
                .collect();
            visited += ids.len().max(1);
            sweep.slot += ids.len();
            for id in ids {
                let c = core.slabs.chunk(id);
                if !item::is_allocated(c) {
                    continue;
                }
                // `now` 0 during a forced sweep: only flushed items go.
                if let Some(why) = core.is_dead(c, now) {
                    core.unlink_unhashed(id, why);
                }
            }
            if sweep.slot >= core.slabs.page_chunks(sweep.page).count() {
                sweep.page += 1;
                sweep.slot = 0;
            }
        }
        self.sweep = Some(sweep);
    }

    /// Looks up `key`; a hit is marked as fetched.
    pub fn get(&mut self, key: &[u8], hash: u64, now: Millis) -> Option<Item<'_>> {
        self.catch_up(now);
        self.core.stats.cmd_get += 1;
        match self.core.find_live(key, hash, now) {
            Ok(id) => {
                self.hit(id, now);
                self.core.stats.get_hits += 1;
                let class = self.core.slabs.class_of(id);
                self.core.classes[class].get_hits += 1;
                Some(view(self.core.slabs.chunk(id)))
            }
            Err(miss) => {
                count_get_miss(&mut self.core.stats, miss);
                None
            }
        }
    }

    /// Marks an item read and bumps it in its LRU.
    fn hit(&mut self, id: ChunkId, now: Millis) {
        item::set_fetched(self.core.slabs.chunk_mut(id));
        self.bump(id, now);
    }

    /// Moves an item to the head of its LRU, unless it was moved within the
    /// last [`BUMP_INTERVAL_SECS`].
    fn bump(&mut self, id: ChunkId, now: Millis) {
        let core = &mut self.core;
        let c = core.slabs.chunk_mut(id);
        let now_secs = secs(now);
        if now_secs.saturating_sub(item::time(c)) >= BUMP_INTERVAL_SECS {
            item::set_time(c, now_secs);
            let class = core.slabs.class_of(id);
            core.lru.bump(&mut core.slabs, class, id);
        }
    }

    /// Gives an item a new deadline and reschedules it.
    fn retime(&mut self, id: ChunkId, deadline: Deadline) {
        let c = self.core.slabs.chunk_mut(id);
        let old = item::deadline(c);
        if old == deadline {
            return;
        }
        item::set_deadline(c, deadline);
        let cas = item::cas(c);
        let core = &mut self.core;
        core.timed = core.timed + usize::from(deadline != Deadline::NEVER)
            - usize::from(old != Deadline::NEVER);
        self.schedule(id, cas, item::deadline(self.core.slabs.chunk(id)));
    }

    /// Renews the wheel entries of items a page move relocated.
    fn renew_relocated(&mut self) {
        while let Some(id) = self.core.relocated.pop() {
            let c = self.core.slabs.chunk(id);
            // A later rescue in the same move may have evicted it again.
            if item::is_allocated(c) {
                let (cas, deadline) = (item::cas(c), item::deadline(c));
                self.schedule(id, cas, deadline);
            }
        }
    }

    fn schedule(&mut self, id: ChunkId, cas: u64, deadline: Deadline) {
        if let Some(ms) = deadline.millis() {
            let entry = wheel::Entry {
                chunk: id,
                check: wheel::check(cas, ms),
            };
            self.wheel.schedule(entry, ms);
        }
    }

    /// Whether a live item is stored under `key`, without any side effect
    /// (no LRU bump, no counters, nothing reclaimed).
    pub fn peek(&self, key: &[u8], hash: u64, now: Millis) -> bool {
        // A due flush not applied yet kills everything stored so far.
        let flush_due = matches!(self.flush_at, Some((at, false)) if at <= now);
        self.core
            .index
            .find(&self.core.slabs, key, hash)
            .is_some_and(|id| {
                let c = self.core.slabs.chunk(id);
                !flush_due && self.core.is_dead(c, now).is_none()
            })
    }

    /// Looks up `key` and, on a hit, gives it a new deadline (`gat`).
    pub fn get_and_touch(
        &mut self,
        key: &[u8],
        hash: u64,
        deadline: Deadline,
        now: Millis,
    ) -> Option<Item<'_>> {
        self.catch_up(now);
        self.core.stats.cmd_get += 1;
        self.core.stats.cmd_touch += 1;
        match self.core.find_live(key, hash, now) {
            Ok(id) => {
                self.hit(id, now);
                self.retime(id, deadline);
                self.core.stats.get_hits += 1;
                self.core.stats.touch_hits += 1;
                let class = self.core.slabs.class_of(id);
                self.core.classes[class].get_hits += 1;
                self.core.classes[class].touch_hits += 1;
                Some(view(self.core.slabs.chunk(id)))
            }
            Err(miss) => {
                count_get_miss(&mut self.core.stats, miss);
                self.core.stats.touch_misses += 1;
                None
            }
        }
    }

    /// Gives `key` a new deadline; false if there is no such item.
    pub fn touch(&mut self, key: &[u8], hash: u64, deadline: Deadline, now: Millis) -> bool {
        self.catch_up(now);
        self.core.stats.cmd_touch += 1;
        match self.core.find_live(key, hash, now) {
            Ok(id) => {
                let class = self.core.slabs.class_of(id);
                self.bump(id, now);
                self.retime(id, deadline);
                self.core.stats.touch_hits += 1;
                self.core.classes[class].touch_hits += 1;
                true
            }
            Err(_) => {
                self.core.stats.touch_misses += 1;
                false
            }
        }
    }

    /// Stores an item according to `store.mode`.
    pub fn store(&mut self, store: &Store<'_>, now: Millis) -> StoreOutcome {
        self.store_meta(store, &StoreMeta::default(), now)
    }

    /// Stores an item with the meta protocol's extras (see [`StoreMeta`]).
    pub fn store_meta(&mut self, store: &Store<'_>, meta: &StoreMeta, now: Millis) -> StoreOutcome {
        let outcome = self.store_counted(store, meta, now);
        match outcome {
            StoreOutcome::TooLarge => self.core.stats.store_too_large += 1,
            StoreOutcome::OutOfMemory => self.core.stats.store_no_memory += 1,
            _ => {}
        }
        outcome
    }

    fn store_counted(&mut self, store: &Store<'_>, meta: &StoreMeta, now: Millis) -> StoreOutcome {
        self.catch_up(now);
        self.core.stats.cmd_set += 1;
        let Store {
            mut mode,
            key,
            hash,
            flags,
            mut deadline,
            value,
        } = *store;
        // The index recomputes hashes when it grows, so it relies on this.
        debug_assert_eq!(hash, xxh3_64(key), "Store::hash must be xxh3_64 of the key");
        if !self.fits(key.len(), value.len()) {
            if let Ok(id) = self.core.find_live(key, hash, now) {
                self.core.unlink(id, hash, Gone::Removed);
            }
            return StoreOutcome::TooLarge;
        }
        let existing = self.core.find_live(key, hash, now).ok();
        let old = existing.map(|id| {
            let c = self.core.slabs.chunk(id);
            (id, item::cas(c), item::value_len(c))
        });
        // A lower token with `invalidate` stores a stale item that keeps
        // the old deadline and win token.
        let mut stale_bits = None;
        if meta.compare.is_some() && old.is_none() {
            self.core.stats.cas_misses += 1;
            return StoreOutcome::NotFound;
        }
        if let (StoreMode::Append | StoreMode::Prepend, None, Some(vivify)) =
            (mode, old, meta.vivify)
        {
            mode = StoreMode::Set;
            deadline = vivify;
        }
        let new_len = match (mode, old) {
            (StoreMode::Add, Some(_)) => return StoreOutcome::NotStored,
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return StoreOutcome::NotStored;
            }
            (StoreMode::Cas(_), None) => {
                self.core.stats.cas_misses += 1;
                return StoreOutcome::NotFound;
            }
            (StoreMode::Cas(expected), Some((id, cas, _))) if expected != cas => {
                if meta.invalidate && expected < cas {
                    let c = self.core.slabs.chunk(id);
                    deadline = item::deadline(c);
                    stale_bits = Some(item::token_sent(c));
                    value.len()
                } else {
                    self.core.stats.cas_badval += 1;
                    let class = self.core.slabs.class_of(id);
                    self.core.classes[class].cas_badval += 1;
                    return StoreOutcome::Exists;
                }
            }
            (StoreMode::Append | StoreMode::Prepend, Some((id, cas, old_len))) => {
                if meta.compare.is_some_and(|expected| expected != cas) {
                    self.core.stats.cas_badval += 1;
                    let class = self.core.slabs.class_of(id);
                    self.core.classes[class].cas_badval += 1;
                    return StoreOutcome::Exists;
                }
                old_len + value.len()
            }
            _ => value.len(),
        };
        let outcome = self.store_checked(
            mode,
            store,
            flags,
            deadline,
            new_len,
            existing,
            meta.new_cas,
            now,
        );
        if (stale_bits.is_some() || meta.binary_key)
            && matches!(outcome, StoreOutcome::Stored(_))
            && let Some(id) = self.core.index.find(&self.core.slabs, key, hash)
        {
            let c = self.core.slabs.chunk_mut(id);
            item::set_key_binary(c, meta.binary_key);
            if let Some(token) = stale_bits {
                item::set_stale(c, true);
                item::set_token_sent(c, token);
            }
        }
        outcome
    }

    /// The writing half of a store whose conditions have been checked.
    #[allow(clippy::too_many_arguments)]
    fn store_checked(
        &mut self,
        mode: StoreMode,
        store: &Store<'_>,
        flags: u32,
        deadline: Deadline,
        new_len: usize,
        existing: Option<ChunkId>,
        new_cas: Option<u64>,
        now: Millis,
    ) -> StoreOutcome {
        let (key, hash, value) = (store.key, store.hash, store.value);
        if !self.fits(key.len(), new_len) {
            return StoreOutcome::TooLarge;
        }
        let cas_mode = matches!(mode, StoreMode::Cas(_));
        if cas_mode {
            self.core.stats.cas_hits += 1;
        }
        let size = item::total_size(key.len(), new_len);
        if let Some(id) = existing
            && self.core.slabs.class_for(size) == Some(self.core.slabs.class_of(id))
            && !self.flushed_on_arrival(now)
        {
            let (flags, deadline) = match mode {
                StoreMode::Append | StoreMode::Prepend => {
                    let c = self.core.slabs.chunk(id);
                    (item::flags(c), item::deadline(c))
                }
                _ => (flags, deadline),
            };
            if !deadline.is_expired(now) {
                let cas = new_cas.unwrap_or_else(|| self.fresh_cas());
                return self.rewrite(id, mode, value, flags, deadline, size, cas, now);
            }
        }
        // Append and prepend keep the old item's flags and deadline and need
        // its value; copy it out before the old chunk is freed.
        let (flags, deadline) = match (mode, existing) {
            (StoreMode::Append | StoreMode::Prepend, Some(id)) => {
                let c = self.core.slabs.chunk(id);
                self.scratch.clear();
                self.scratch.extend_from_slice(item::value(c));
                (item::flags(c), item::deadline(c))
            }
            _ => (flags, deadline),
        };
        if let Some(id) = existing {
            self.core.unlink(id, hash, Gone::Removed);
        }
        let cas = new_cas.unwrap_or_else(|| self.fresh_cas());
        if deadline.is_expired(now) || self.flushed_on_arrival(now) {
            // Never readable: storing it would only waste a chunk.
            return StoreOutcome::Stored(cas);
        }
        let Some(class) = self.core.slabs.class_for(size) else {
            return StoreOutcome::TooLarge;
        };
        let allocated = self.core.alloc(class, now);
        self.renew_relocated();
        let Some(id) = allocated else {
            return StoreOutcome::OutOfMemory;
        };
        let epoch = self.core.epoch;
        let c = self.core.slabs.chunk_mut(id);
        item::init(c, key, new_len, flags, cas, deadline, secs(now), epoch);
        let v = item::value_mut(c);
        match mode {
            StoreMode::Append => {
                let old_len = self.scratch.len();
                v[..old_len].copy_from_slice(&self.scratch);
                v[old_len..].copy_from_slice(value);
            }
            StoreMode::Prepend => {
                v[..value.len()].copy_from_slice(value);
                v[value.len()..].copy_from_slice(&self.scratch);
            }
            _ => v.copy_from_slice(value),
        }
        self.link(id, hash, class, size);
        self.schedule(id, cas, deadline);
        let counters = &mut self.core.classes[class];
        counters.cmd_set += 1;
        if cas_mode {
            counters.cas_hits += 1;
        }
        self.core.stats.total_items += 1;
        StoreOutcome::Stored(cas)
    }

    /// A store whose new item needs the same slab class as the old one:
    /// rewritten in its chunk, keeping its index and LRU links (no unlink,
    /// free, alloc and relink).
    #[allow(clippy::too_many_arguments)]
    fn rewrite(
        &mut self,
        id: ChunkId,
        mode: StoreMode,
        value: &[u8],
        flags: u32,
        deadline: Deadline,
        size: usize,
        cas: u64,
        now: Millis,
    ) -> StoreOutcome {
        let core = &mut self.core;
        let class = core.slabs.class_of(id);
        let c = core.slabs.chunk_mut(id);
        let old_size = item::item_size(c);
        let old_len = item::value_len(c);
        let was_timed = item::deadline(c) != Deadline::NEVER;
        let new_len = size - item::HEADER - item::key_len(c);
        item::rewrite(c, new_len, flags, cas, deadline, item::time(c));
        let v = item::value_mut(c);
        match mode {
            StoreMode::Append => v[old_len..].copy_from_slice(value),
            StoreMode::Prepend => {
                v.copy_within(..old_len, value.len());
                v[..value.len()].copy_from_slice(value);
            }
            _ => v.copy_from_slice(value),
        }
        core.timed = core.timed + usize::from(deadline != Deadline::NEVER) - usize::from(was_timed);
        core.stats.bytes = core.stats.bytes + size as u64 - old_size as u64;
        core.stats.total_items += 1;
        let counters = &mut core.classes[class];
        counters.mem_requested = counters.mem_requested + size as u64 - old_size as u64;
        counters.cmd_set += 1;
        if matches!(mode, StoreMode::Cas(_)) {
            counters.cas_hits += 1;
        }
        self.bump(id, now);
        self.schedule(id, cas, deadline);
        StoreOutcome::Stored(cas)
    }

    /// Indexes and links a freshly written item.
    fn link(&mut self, id: ChunkId, hash: u64, class: usize, size: usize) {
        let core = &mut self.core;
        core.index.insert(&mut core.slabs, id, hash);
        core.lru.push_front(&mut core.slabs, class, id);
        core.stats.curr_items += 1;
        core.stats.bytes += size as u64;
        if item::deadline(core.slabs.chunk(id)) != Deadline::NEVER {
            core.timed += 1;
        }
        core.classes[class].mem_requested += size as u64;
    }

    /// Removes `key` if present, without counting it as a delete: what a
    /// refused oversized `set` does to the old value.
    pub fn discard(&mut self, key: &[u8], hash: u64, now: Millis) {
        self.core.stats.store_too_large += 1;
        if let Ok(id) = self.core.find_live(key, hash, now) {
            self.core.unlink(id, hash, Gone::Removed);
        }
    }

    /// Removes `key`; false if there was no live item.
    pub fn delete(&mut self, key: &[u8], hash: u64, now: Millis) -> bool {
        self.catch_up(now);
        match self.core.find_live(key, hash, now) {
            Ok(id) => {
                let class = self.core.slabs.class_of(id);
                self.core.classes[class].delete_hits += 1;
                self.core.unlink(id, hash, Gone::Removed);
                self.core.stats.delete_hits += 1;
                true
            }
            Err(_) => {
                self.core.stats.delete_misses += 1;
                false
            }
        }
    }

    /// Adds `delta` to, or subtracts it from, a decimal value.
    pub fn arith(
        &mut self,
        key: &[u8],
        hash: u64,
        op: ArithOp,
        delta: u64,
        now: Millis,
    ) -> ArithOutcome {
        self.catch_up(now);
        let outcome = match self.core.find_live(key, hash, now) {
            Err(_) => ArithOutcome::NotFound,
            Ok(id) => match parse_decimal(item::value(self.core.slabs.chunk(id))) {
                None => ArithOutcome::NonNumeric,
                Some(current) => {
                    let value = match op {
                        ArithOp::Incr => current.wrapping_add(delta),
                        ArithOp::Decr => current.saturating_sub(delta),
                    };
                    let class = self.core.slabs.class_of(id);
                    match op {
                        ArithOp::Incr => self.core.classes[class].incr_hits += 1,
                        ArithOp::Decr => self.core.classes[class].decr_hits += 1,
                    }
                    let cas = self.fresh_cas();
                    self.set_counter(id, hash, value, cas, now);
                    ArithOutcome::Value(value)
                }
            },
        };
        let hit = !matches!(outcome, ArithOutcome::NotFound);
        let stats = &mut self.core.stats;
        match (op, hit) {
            (ArithOp::Incr, true) => stats.incr_hits += 1,
            (ArithOp::Incr, false) => stats.incr_misses += 1,
            (ArithOp::Decr, true) => stats.decr_hits += 1,
            (ArithOp::Decr, false) => stats.decr_misses += 1,
        }
        outcome
    }

    /// Writes a new counter value with the given CAS: in place when the
    /// chunk has room, else into a new chunk (flags and deadline kept).
    /// Returns the chunk now holding it, if any.
    fn set_counter(
        &mut self,
        id: ChunkId,
        hash: u64,
        value: u64,
        cas: u64,
        now: Millis,
    ) -> Option<ChunkId> {
        let mut buf = [0u8; 20];
        let digits = format_decimal(value, &mut buf);
        let class = self.core.slabs.class_of(id);
        let chunk_size = self.core.slabs.chunk_size(class);
        let c = self.core.slabs.chunk(id);
        let (key_len, old_size) = (item::key_len(c), item::item_size(c));
        let new_size = item::total_size(key_len, digits.len());
        let deadline = item::deadline(c);
        if new_size <= chunk_size {
            let c = self.core.slabs.chunk_mut(id);
            item::set_value_len(c, digits.len());
            item::value_mut(c).copy_from_slice(digits);
            item::set_cas(c, cas);
            let stats = &mut self.core.stats;
            stats.bytes = stats.bytes + new_size as u64 - old_size as u64;
            let counters = &mut self.core.classes[class];
            counters.mem_requested = counters.mem_requested + new_size as u64 - old_size as u64;
            self.schedule(id, cas, deadline);
            return Some(id);
        }
        let flags = item::flags(c);
        self.scratch.clear();
        self.scratch.extend_from_slice(item::key(c));
        self.core.unlink(id, hash, Gone::Removed);
        let class = self.core.slabs.class_for(new_size)?;
        let allocated = self.core.alloc(class, now);
        self.renew_relocated();
        let new = allocated?;
        let epoch = self.core.epoch;
        let c = self.core.slabs.chunk_mut(new);
        item::init(
            c,
            &self.scratch,
            digits.len(),
            flags,
            cas,
            deadline,
            secs(now),
            epoch,
        );
        item::value_mut(c).copy_from_slice(digits);
        self.link(new, hash, class, new_size);
        self.schedule(new, cas, deadline);
        Some(new)
    }

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
        let id = match self.core.find_live(key, hash, now) {
            Ok(id) => id,
            Err(miss) => {
                self.core.stats.cmd_get += 1;
                count_get_miss(&mut self.core.stats, miss);
                let deadline = req.vivify?;
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
                if !matches!(self.store_meta(&empty, &meta, now), StoreOutcome::Stored(_)) {
                    return None;
                }
                created = true;
                // Absent if it was born expired.
                self.core.index.find(&self.core.slabs, key, hash)?
            }
        };
        if !created {
            self.core.stats.cmd_get += 1;
            self.core.stats.get_hits += 1;
            let class = self.core.slabs.class_of(id);
            self.core.classes[class].get_hits += 1;
        }
        let c = self.core.slabs.chunk(id);
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
            self.core.stats.cmd_touch += 1;
            self.core.stats.touch_hits += 1;
            self.retime(id, deadline);
        }
        let recache = !created
            && matches!(
                (expires, req.recache_before.and_then(Deadline::millis)),
                (Some(at), Some(before)) if at < before
            );
        let won = !token_taken && (created || recache || stale);
        if won {
            item::set_token_sent(self.core.slabs.chunk_mut(id), true);
        }
        if !req.no_bump {
            self.hit(id, now);
        }
        Some(MetaHit {
            item: view(self.core.slabs.chunk(id)),
            fetched_before,
            idle_secs,
            stale,
            token_taken,
            won,
            created,
            binary_key: item::key_binary(self.core.slabs.chunk(id)),
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
        let Ok(id) = self.core.find_live(key, hash, now) else {
            self.core.stats.delete_misses += 1;
            return DeleteOutcome::NotFound;
        };
        let class = self.core.slabs.class_of(id);
        if req
            .compare
            .is_some_and(|cas| cas != item::cas(self.core.slabs.chunk(id)))
        {
            self.core.stats.delete_misses += 1;
            return DeleteOutcome::Exists;
        }
        if !req.invalidate && !req.strip {
            self.core.classes[class].delete_hits += 1;
            self.core.unlink(id, hash, Gone::Removed);
            self.core.stats.delete_hits += 1;
            return DeleteOutcome::Done;
        }
        let cas = req.new_cas.unwrap_or_else(|| self.fresh_cas());
        let core = &mut self.core;
        let c = core.slabs.chunk_mut(id);
        item::set_cas(c, cas);
        if req.strip {
            let old_size = item::item_size(c) as u64;
            item::set_value_len(c, 0);
            let new_size = item::item_size(c) as u64;
            core.stats.bytes = core.stats.bytes + new_size - old_size;
            let counters = &mut core.classes[class];
            counters.mem_requested = counters.mem_requested + new_size - old_size;
        }
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
        let Ok(id) = self.core.find_live(key, hash, now) else {
            hit(&mut self.core.stats, false);
            let Some((deadline, initial)) = req.vivify else {
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
            return match self.store_meta(&store, &meta, now) {
                StoreOutcome::Stored(cas) => {
                    let mut deadline = deadline;
                    if let Some(touch) = req.touch
                        && let Some(id) = self.core.index.find(&self.core.slabs, key, hash)
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
        let c = self.core.slabs.chunk(id);
        if req.compare.is_some_and(|cas| cas != item::cas(c)) {
            return MetaArithOutcome::Exists;
        }
        let Some(current) = parse_decimal(item::value(c)) else {
            return MetaArithOutcome::NonNumeric;
        };
        let value = match op {
            ArithOp::Incr => current.wrapping_add(delta),
            ArithOp::Decr => current.saturating_sub(delta),
        };
        hit(&mut self.core.stats, true);
        let class = self.core.slabs.class_of(id);
        match op {
            ArithOp::Incr => self.core.classes[class].incr_hits += 1,
            ArithOp::Decr => self.core.classes[class].decr_hits += 1,
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
            deadline: item::deadline(self.core.slabs.chunk(id)),
            deadline_before,
            created: false,
        }
    }

    /// An item's metadata for `me`, without any side effect.
    pub fn meta_debug(&self, key: &[u8], hash: u64, now: Millis) -> Option<MetaDebug> {
        if !self.peek(key, hash, now) {
            return None;
        }
        let id = self.core.index.find(&self.core.slabs, key, hash)?;
        let c = self.core.slabs.chunk(id);
        Some(MetaDebug {
            deadline: item::deadline(c),
            idle_secs: secs(now).saturating_sub(item::time(c)),
            cas: item::cas(c),
            fetched: item::fetched(c),
            class: self.core.slabs.class_of(id),
            size: item::item_size(c),
        })
    }

    /// The value length of the live item under `key`, without any side
    /// effect (the size `ms s` reports after an append).
    pub fn value_len(&self, key: &[u8], hash: u64, now: Millis) -> Option<usize> {
        if !self.peek(key, hash, now) {
            return None;
        }
        let id = self.core.index.find(&self.core.slabs, key, hash)?;
        Some(item::value_len(self.core.slabs.chunk(id)))
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

    /// Periodic work, bounded per call: applies a due delayed flush,
    /// advances the index migration, reclaims expired items from the timing
    /// wheel, continues a flush sweep and runs the automove policy.
    pub fn tick(&mut self, now: Millis) {
        self.catch_up(now);
        let core = &mut self.core;
        core.index.migrate(&mut core.slabs, TICK_MIGRATE_BUDGET);
        self.wheel.advance(now, TICK_EXPIRY_BUDGET, |entry| {
            if !is_current(core, entry) {
                return None;
            }
            let c = core.slabs.chunk(entry.chunk);
            let deadline = item::deadline(c).millis()?;
            match core.is_dead(c, now) {
                Some(why) => {
                    core.unlink_unhashed(entry.chunk, why);
                    None
                }
                None => Some(deadline),
            }
        });
        if self.wheel.len() > 2 * core.timed + 4096 || self.compacting {
            self.compacting = !self
                .wheel
                .compact(TICK_EXPIRY_BUDGET, |e| is_current(core, e));
        }
        self.sweep_step(TICK_SWEEP_BUDGET, now);
        self.automove(now);
    }

    fn automove(&mut self, now: Millis) {
        let core = &self.core;
        let views: Vec<ClassView> = (0..core.slabs.class_count())
            .map(|class| ClassView {
                evictions: core.classes[class].evicted,
                pages: core.slabs.class_pages(class),
                empty_pages: core.slabs.class_empty_pages(class),
                tail_time: core
                    .lru
                    .tail(class)
                    .map(|id| item::time(core.slabs.chunk(id))),
            })
            .collect();
        if let Some(m) = self.automove.evaluate(now, &views)
            && let Some(page) = self.core.donor_page(m.from)
        {
            self.core.move_page(page, m.to, now);
            self.renew_relocated();
        }
    }

    /// Per-class statistics for `stats slabs` and `stats items`, one entry
    /// per class (classes that never held a page included), smallest first.
    pub fn slab_class_stats(&self, now: Millis) -> Vec<SlabClassStats> {
        let core = &self.core;
        (0..core.slabs.class_count())
            .map(|class| {
                let m = core.slabs.class_memory(class);
                let k = &core.classes[class];
                let age = core.lru.tail(class).map_or(0, |id| {
                    secs(now).saturating_sub(item::time(core.slabs.chunk(id)))
                });
                SlabClassStats {
                    class,
                    chunk_size: m.chunk_size as u64,
                    chunks_per_page: u64::from(m.chunks_per_page),
                    total_pages: m.total_pages,
                    total_chunks: m.total_chunks,
                    used_chunks: m.used_chunks,
                    free_chunks: m.free_chunks,
                    mem_requested: k.mem_requested,
                    get_hits: k.get_hits,
                    cmd_set: k.cmd_set,
                    delete_hits: k.delete_hits,
                    incr_hits: k.incr_hits,
                    decr_hits: k.decr_hits,
                    cas_hits: k.cas_hits,
                    cas_badval: k.cas_badval,
                    touch_hits: k.touch_hits,
                    number: core.lru.len(class),
                    age_secs: u64::from(age),
                    evicted: k.evicted,
                    evicted_by_move: k.evicted_by_move,
                    evicted_nonzero: k.evicted_nonzero,
                    evicted_unfetched: k.evicted_unfetched,
                    expired_unfetched: k.expired_unfetched,
                    outofmemory: k.outofmemory,
                    reclaimed: k.reclaimed,
                    pages_in: k.pages_in,
                    pages_out: k.pages_out,
                }
            })
            .collect()
    }

    /// Bytes in one slab page.
    pub fn page_size(&self) -> usize {
        self.config.slab_page_size
    }

    /// Chunk sizes of the slab classes, smallest first.
    pub fn class_sizes(&self) -> Vec<usize> {
        slab::class_sizes(&self.config)
    }

    /// Wheel entries still scheduled (current or stale).
    pub fn wheel_len(&self) -> usize {
        self.wheel.len()
    }

    /// Bytes of index bucket memory (outside the slab budget).
    pub fn index_memory(&self) -> usize {
        self.core.index.memory()
    }

    /// Pages taken from the budget so far.
    pub fn pages_allocated(&self) -> usize {
        self.core.slabs.pages_allocated()
    }
}

/// Writes `value` in decimal into `buf`, returning the digits.
fn format_decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[at..];
        }
    }
}

/// Whether a wheel entry still belongs to the item in its chunk: the chunk
/// holds an item whose CAS and deadline give the entry's check.
fn is_current(core: &Core, entry: wheel::Entry) -> bool {
    if !core.slabs.is_live(entry.chunk) {
        return false;
    }
    let c = core.slabs.chunk(entry.chunk);
    item::deadline(c)
        .millis()
        .is_some_and(|d| wheel::check(item::cas(c), d) == entry.check)
}

fn secs(now: Millis) -> u32 {
    (now / 1000).min(u64::from(u32::MAX)) as u32
}

fn view(c: &[u8]) -> Item<'_> {
    Item {
        key: item::key(c),
        value: item::value(c),
        flags: item::flags(c),
        cas: item::cas(c),
        deadline: item::deadline(c),
    }
}

fn count_get_miss(stats: &mut ShardStats, miss: Miss) {
    stats.get_misses += 1;
    match miss {
        Miss::Absent => {}
        Miss::Expired => stats.get_expired += 1,
        Miss::Flushed => stats.get_flushed += 1,
    }
}

/// Parses a stored counter: ASCII digits, optionally followed by the spaces
/// memcached pads a shrunken counter with. `None` if it is anything else or
/// does not fit in 64 bits.
pub(crate) fn parse_decimal(value: &[u8]) -> Option<u64> {
    let digits = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (number, padding) = value.split_at(digits);
    if number.is_empty() || number.len() > 20 || padding.iter().any(|&b| b != b' ') {
        return None;
    }
    number.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}
