//! The shard engine: glues the slab arena, index, LRU lists, timing wheel
//! and automove policy into the operations the server calls.
//!
//! This module owns the item lifecycle (store, read, unlink, evict,
//! reclaim), the counters, CAS allocation and `flush_all`. Its files follow
//! memcached's concerns:
//!
//! * `mod.rs`: the [`Shard`] and its `Tables`, construction, lookup and
//!   unlinking, and [`Shard::tick`];
//! * `classic.rs`: get, touch, store, delete, incr/decr;
//! * `meta.rs`: what the meta commands add (`mg`, `md`, `ma`, `me`);
//! * `memory.rs`: allocation, eviction, page moves and automove;
//! * `expiry.rs`: scheduling items on the timing wheel and reclaiming them;
//! * `flush.rs`: flush epochs and the sweep;
//! * `stats.rs`: the counters and per-class statistics.
//!
//! How it works:
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

mod classic;
mod dump;
mod expiry;
mod flush;
mod memory;
mod meta;
mod stats;

#[cfg(test)]
pub(crate) use classic::parse_counter;
pub use dump::{CACHEDUMP_MAX_BYTES, MAX_METADUMPS, METADUMP_SCAN_BUDGET};
pub use stats::{MAX_PREFIXES, PREFIX_DELIMITER, PrefixCounts, PrefixEvent};

use super::automove::Automove;
use super::index::Index;
use super::item::{self, EPOCH_MODULUS};
use super::lru::Lru;
use super::slab::{self, ChunkId, Slabs};
use super::wheel::Wheel;
use super::{Deadline, Item, Millis, ShardConfig, ShardStats, key_hash};
use dump::DumpCursor;
use flush::Sweep;
use stats::{PrefixTable, SizeHistogram};

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
/// Empty pages a shrinking shard gives back per `tick`; it also empties
/// and gives back at most one page holding items per tick.
pub const SHRINK_EMPTY_PAGES_PER_TICK: usize = 64;

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

/// The item tables: the slab arena, the index and the LRU lists, with the
/// counters and flush state they keep. Everything of a shard but the
/// wheel, so an expiry visit can use them while the wheel is borrowed.
struct Tables {
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
    /// Open metadumps, which page moves must keep informed.
    dumps: Vec<DumpCursor>,
    /// Item sizes, while `stats sizes` is enabled.
    sizes: Option<SizeHistogram>,
    /// Tests only: every live item evicted (key and class), once a test
    /// asked for it with [`Shard::log_evictions`], so a model can check
    /// that nothing else went missing and that the victims were the oldest.
    #[cfg(test)]
    eviction_log: Option<Vec<(Vec<u8>, usize)>>,
}

impl Tables {
    fn is_dead(&self, c: &[u8], now: Millis) -> Option<Gone> {
        if item::deadline(c).is_expired(now) {
            Some(Gone::Expired)
        } else if item::epoch(c) != self.epoch % EPOCH_MODULUS {
            Some(Gone::Flushed)
        } else {
            None
        }
    }

    /// The live item under `key`. A dead one found instead is reclaimed
    /// and counted in `get_expired` or `get_flushed`, whatever the command
    /// looking (a store, delete, touch or counter too), as memcached counts
    /// every lookup that meets one.
    fn find_live(&mut self, key: &[u8], hash: u64, now: Millis) -> Option<ChunkId> {
        let id = self.index.find(&self.slabs, key, hash)?;
        match self.is_dead(self.slabs.chunk(id), now) {
            None => Some(id),
            Some(why) => {
                self.unlink(id, hash, why);
                if why == Gone::Expired {
                    self.stats.get_expired += 1;
                } else {
                    self.stats.get_flushed += 1;
                }
                None
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
        if let Some(sizes) = &mut self.sizes {
            sizes.remove(size as usize, item::cas(c));
        }
        #[cfg(test)]
        let key_copy = (self.eviction_log.is_some() && matches!(why, Gone::Evicted | Gone::Moved))
            .then(|| item::key(c).to_vec());
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
                #[cfg(test)]
                if let (Some(log), Some(key)) = (&mut self.eviction_log, key_copy) {
                    log.push((key, class));
                }
                self.stats.evictions += 1;
                if why == Gone::Moved {
                    counters.evicted_by_move += 1;
                    self.stats.slab_reassign_evictions_nomem += 1;
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

    /// Accounts for an item rewritten in its chunk: its size and CAS
    /// before and after.
    fn rewritten(&mut self, class: usize, old: (usize, u64), new: (usize, u64)) {
        self.stats.bytes = self.stats.bytes + new.0 as u64 - old.0 as u64;
        let counters = &mut self.classes[class];
        counters.mem_requested = counters.mem_requested + new.0 as u64 - old.0 as u64;
        if let Some(sizes) = &mut self.sizes {
            sizes.remove(old.0, old.1);
            sizes.add(new.0, new.1);
        }
    }

    /// Unlinks an item whose hash the caller does not have.
    fn unlink_unhashed(&mut self, id: ChunkId, why: Gone) {
        let hash = key_hash(item::key(self.slabs.chunk(id)));
        self.unlink(id, hash, why);
    }
}

/// One single-threaded cache engine owning a slice of the keyspace.
pub struct Shard {
    tables: Tables,
    wheel: Wheel,
    automove: Automove,
    /// The automove policy's view of the classes, refilled every tick (kept
    /// so that a tick allocates nothing).
    automove_views: Vec<super::automove::ClassView>,
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
    /// The class (memcached's number) `slabs reassign -1` last took from.
    spare_cursor: usize,
    /// Requests per key prefix, for `stats detail`.
    prefixes: PrefixTable,
}

/// What [`Shard::prefetch`] starts loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefetch {
    /// The index bucket of a hash.
    Bucket,
    /// The first item header of that bucket's chain.
    Item,
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
            tables: Tables {
                slabs,
                index: Index::new(),
                lru: Lru::new(classes),
                stats,
                classes: vec![ClassCounters::default(); classes],
                epoch: 0,
                timed: 0,
                flush_pending: false,
                relocated: Vec::new(),
                dumps: Vec::new(),
                sizes: None,
                #[cfg(test)]
                eviction_log: None,
            },
            wheel: Wheel::new(0),
            automove: Automove::new(),
            automove_views: Vec::new(),
            next_cas: config.index as u64 + 1,
            config: config.clone(),
            flush_at: None,
            sweep: None,
            oldest_epoch: 0,
            scratch: Vec::new(),
            compacting: false,
            spare_cursor: 0,
            prefixes: PrefixTable::default(),
        }
    }

    /// Empties the shard, as if just built with its configuration, keeping
    /// what admin commands changed since start (the memory limit, which
    /// `set_memory_limit` keeps in the configuration, and the automove
    /// mode): what a server does to a shard a panic may have left
    /// half-updated.
    pub fn reset(&mut self) {
        let config = self.config.clone();
        let automove = self.automove_mode();
        *self = Shard::new(&config);
        self.set_automove(automove);
    }

    /// Starts loading what a lookup of `hash` touches, without waiting for
    /// it: [`Prefetch::Bucket`] its index bucket, [`Prefetch::Item`] the
    /// header of the first item in that bucket's chain (reading the bucket,
    /// which should have arrived by then). A batch of operations runs
    /// fastest as: every key's bucket, then every key's item, then the
    /// operations, so their misses to memory overlap.
    #[inline]
    pub fn prefetch(&self, hash: u64, what: Prefetch) {
        match what {
            Prefetch::Bucket => self.tables.index.prefetch_bucket(hash),
            Prefetch::Item => {
                let first = self.tables.index.first(hash);
                self.tables.slabs.prefetch_chunk(first);
            }
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

    /// Marks an item read and bumps it in its LRU.
    fn hit(&mut self, id: ChunkId, now: Millis) {
        item::set_fetched(self.tables.slabs.chunk_mut(id));
        self.bump(id, now);
    }

    /// Moves an item to the head of its LRU, unless it was moved within the
    /// last [`BUMP_INTERVAL_SECS`].
    fn bump(&mut self, id: ChunkId, now: Millis) {
        let tables = &mut self.tables;
        let c = tables.slabs.chunk_mut(id);
        let now_secs = secs(now);
        if now_secs.saturating_sub(item::time(c)) >= BUMP_INTERVAL_SECS {
            item::set_time(c, now_secs);
            let class = tables.slabs.class_of(id);
            tables.lru.bump(&mut tables.slabs, class, id);
        }
    }

    /// Whether a live item is stored under `key`, without any side effect
    /// (no LRU bump, no counters, nothing reclaimed).
    pub fn peek(&self, key: &[u8], hash: u64, now: Millis) -> bool {
        let flush_due = self.flush_due(now);
        self.tables
            .index
            .find(&self.tables.slabs, key, hash)
            .is_some_and(|id| {
                let c = self.tables.slabs.chunk(id);
                !flush_due && self.tables.is_dead(c, now).is_none()
            })
    }

    /// Periodic work, bounded per call: applies a due delayed flush,
    /// advances the index migration, reclaims expired items from the timing
    /// wheel, continues a flush sweep, runs the automove policy and gives
    /// pages back while the shard holds more than its memory limit.
    pub fn tick(&mut self, now: Millis) {
        crate::fault::check(crate::fault::Site::Tick);
        self.catch_up(now);
        let tables = &mut self.tables;
        tables.index.migrate(&mut tables.slabs, TICK_MIGRATE_BUDGET);
        self.expire(now);
        self.sweep_step(TICK_SWEEP_BUDGET, now);
        self.automove(now);
        self.shrink(now);
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

    /// An upper bound of any item the shard holds now, header and key
    /// included: the chunk size of the largest class with an item in it
    /// (0 when empty). The server bounds what a read can make it send by
    /// this.
    pub fn largest_item(&self) -> usize {
        self.tables.slabs.largest_in_use()
    }

    /// Bytes of index bucket memory (outside the slab budget).
    pub fn index_memory(&self) -> usize {
        self.tables.index.memory()
    }

    /// Pages holding memory now (the server's `total_malloced` is these
    /// times [`Shard::page_size`]).
    pub fn pages_allocated(&self) -> usize {
        self.tables.slabs.pages_allocated()
    }

    /// This shard's index among the server's shards (its configuration's
    /// `index`).
    pub fn index(&self) -> usize {
        self.config.index
    }

    /// How many shards the server has (its configuration's `shard_count`).
    pub fn shard_count(&self) -> usize {
        self.config.shard_count
    }

    /// Whether the index is moving its buckets to a larger table.
    pub fn index_growing(&self) -> bool {
        self.tables.index.is_growing()
    }
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
