//! Storage: one [`Shard`] is a self-contained, single-threaded cache engine.
//!
//! A shard owns a slice of the keyspace and everything needed to serve it:
//! the index, the item memory, eviction and expiry. It does no I/O, knows
//! nothing of runtimes or sockets, and takes `&mut self` for every operation,
//! so the thread-per-core runtime can own it outright and the work-stealing
//! runtime can put it behind a lock, with the same code inside.
//!
//! Time comes in from outside as [`Millis`] on the server's monotonic clock
//! (see [`crate::clock`]), which keeps the engine deterministic under test.
//! Protocol-level exptime rules (relative seconds, absolute unix time,
//! negative) are resolved into a [`Deadline`] before they reach a shard.
//!
//! The engine is memcached's design, per shard: a slab arena ([`slab`]) of
//! pages ([`page`]: mapped from the system, given back when the memory
//! limit shrinks) carved into chunks, one item per chunk with a small header
//! ([`item`]); a chained hash index threaded through the items that grows
//! incrementally ([`index`]); one LRU list per slab class ([`lru`]); a
//! hierarchical timing wheel that reclaims expired items without reads
//! ([`wheel`]); and a page rebalancing policy ([`automove`]). [`shard`]
//! glues them into the operations the server calls. The parts are public
//! so the benchmarks can measure them on their own.
//!
//! Every shard hashes keys with [`key_hash`], the function the router uses
//! to pick the shard. Besides the data commands a shard serves the engine
//! side of memcached's admin commands: a memory limit changed at run time
//! ([`Shard::set_memory_limit`]), `slabs reassign` and `slabs automove`,
//! `stats cachedump`, a resumable `lru_crawler metadump`, `stats sizes`
//! and the per-prefix counts of `stats detail`.

pub mod automove;
pub mod index;
pub mod item;
pub mod lru;
pub mod page;
pub mod prefetch;
pub mod shard;
pub mod slab;
pub mod wheel;

#[cfg(test)]
mod tests;

use xxhash_rust::xxh3::xxh3_64;

pub use automove::Mode as AutomoveMode;
pub use shard::{Prefetch, PrefixCounts, PrefixEvent, Shard};
pub use slab::SlabConfigError;

/// The hash of a key, the one every layer uses: the router picks the shard
/// from its high bits, the shard's index picks a bucket from its low bits
/// and recomputes it from the stored key when the index grows. Computed
/// once per request by the caller and passed down with the key, so every
/// `hash` argument of a [`Shard`] method must be this function of the key.
///
/// xxh3: fast on short keys and, unlike std's `RandomState`, the same in
/// every process, so the key -> shard -> thread map is stable.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Shard `index`'s share of a server's memory limit of `total` bytes over
/// `count` shards: an even split, the remainder a byte each to the first
/// shards, so the shares add up to `total` exactly.
pub fn memory_share(total: usize, index: usize, count: usize) -> usize {
    total / count + usize::from(index < total % count)
}

/// Checks the slab settings of a shard configuration (page size at least
/// the largest item, growth factor above 1, a sane minimum chunk, a memory
/// limit chunk ids can address). The error's variant is the bad setting,
/// for the configuration layer to name.
pub fn validate_config(config: &ShardConfig) -> Result<(), SlabConfigError> {
    slab::validate(config)
}

/// The chunk size of every slab class a configuration gives, smallest
/// first, item header included.
pub fn slab_class_sizes(config: &ShardConfig) -> Vec<usize> {
    slab::class_sizes(config)
}

/// One slab class's memory and counters, for memcached's `stats slabs` and
/// `stats items` (the field names are memcached's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlabClassStats {
    /// Class id, 0-based (memcached numbers classes from 1).
    pub class: usize,
    /// Bytes per chunk, header included.
    pub chunk_size: u64,
    /// Chunks carved from one page.
    pub chunks_per_page: u64,
    /// Pages the class holds.
    pub total_pages: u64,
    /// Chunks the class holds.
    pub total_chunks: u64,
    /// Chunks holding items.
    pub used_chunks: u64,
    /// Chunks on the free list.
    pub free_chunks: u64,
    /// Bytes the items actually need (header, key, value).
    pub mem_requested: u64,
    /// Gets that hit an item of this class.
    pub get_hits: u64,
    /// Stores that wrote an item of this class.
    pub cmd_set: u64,
    /// Deletes that removed an item of this class.
    pub delete_hits: u64,
    /// Increments that hit an item of this class.
    pub incr_hits: u64,
    /// Decrements that hit an item of this class.
    pub decr_hits: u64,
    /// CAS stores that succeeded into this class.
    pub cas_hits: u64,
    /// CAS stores that found an item of this class changed.
    pub cas_badval: u64,
    /// Touches that hit an item of this class.
    pub touch_hits: u64,
    /// Items in the class (`stats items` `number`).
    pub number: u64,
    /// Seconds since the class's LRU tail was last used.
    pub age_secs: u64,
    /// Live items evicted from the LRU tail to make room in this class.
    pub evicted: u64,
    /// Live items evicted because their page was moved to another class
    /// (also counted in the shard's `evictions`, not in `evicted`, so the
    /// automove policy sees only memory pressure).
    pub evicted_by_move: u64,
    /// Evicted items that had a deadline.
    pub evicted_nonzero: u64,
    /// Evicted items never read.
    pub evicted_unfetched: u64,
    /// Expired items never read.
    pub expired_unfetched: u64,
    /// Stores that found no memory in this class.
    pub outofmemory: u64,
    /// Expired items whose chunk was taken back.
    pub reclaimed: u64,
    /// Pages moved into this class.
    pub pages_in: u64,
    /// Pages moved out of this class.
    pub pages_out: u64,
}

/// The answer to `slabs reassign`; see [`Shard::slabs_reassign`]. Each
/// is one of memcached's replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReassignOutcome {
    /// The page moved (`OK`).
    Ok,
    /// The shard is giving pages back after a shrink of its memory limit
    /// (`BUSY currently processing reassign request`).
    Busy,
    /// A class number out of range, or `-1` with no class to take from
    /// (`BADCLASS invalid src or dst class id`).
    BadClass,
    /// The source has fewer than two pages (`NOSPARE source class has no
    /// spare pages`).
    NoSpare,
    /// Source and destination are the same number (`SAME src and dst class
    /// are identical`).
    Same,
}

/// One item of `stats cachedump`; see [`Shard::cachedump`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheDumpItem {
    /// The key.
    pub key: Vec<u8>,
    /// Bytes of value (memcached prints `[<bytes> b; ...]`).
    pub value_len: usize,
    /// When it expires (memcached prints 0 for never, else the absolute
    /// unix time).
    pub deadline: Deadline,
    /// Last access, in seconds since server start: the order in which to
    /// merge the dumps of several shards (most recent first).
    pub last_access_secs: u32,
}

/// Names a metadump under way on one shard; see [`Shard::metadump_start`].
/// The caller picks it, unique among the dumps it keeps open, so one dump
/// over many shards can have the same name on each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MetaDumpId(pub u64);

/// One item of `lru_crawler metadump`, all that memcached's line
/// `key=<key> exp=<..> la=<..> cas=<..> fetch=<yes|no> cls=<..> size=<..>`
/// needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaDumpItem {
    /// The key (memcached URL-encodes it).
    pub key: Vec<u8>,
    /// When it expires (`exp=-1` for never, else the absolute unix time).
    pub deadline: Deadline,
    /// Last access, in seconds since server start (`la=` is absolute).
    pub last_access_secs: u32,
    /// Its CAS token.
    pub cas: u64,
    /// Whether it has been read (`fetch=yes`).
    pub fetched: bool,
    /// Its slab class, 0-based (`cls=` is this plus one).
    pub class: usize,
    /// Header, key and value bytes (`size=`).
    pub size: usize,
}

/// One step of a metadump; see [`Shard::metadump_next`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaDumpBatch {
    /// The items of this step.
    pub items: Vec<MetaDumpItem>,
    /// The dump is complete (and its cursor forgotten).
    pub done: bool,
}

/// Milliseconds on the server's monotonic clock, counted from server start.
pub type Millis = u64;

/// When an item stops being readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Millis);

impl Deadline {
    /// The item never expires.
    pub const NEVER: Deadline = Deadline(0);

    /// An item that expires at `at` (a value of 0 is bumped to 1 so it is not
    /// mistaken for [`Deadline::NEVER`]).
    pub fn at(at: Millis) -> Deadline {
        Deadline(at.max(1))
    }

    /// The deadline as milliseconds, or `None` for an item that never expires.
    pub fn millis(self) -> Option<Millis> {
        (self.0 != 0).then_some(self.0)
    }

    /// Whether an item with this deadline is expired at `now`.
    pub fn is_expired(self, now: Millis) -> bool {
        self.0 != 0 && self.0 <= now
    }
}

/// Sizing of one shard's memory, derived from the server configuration.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// Bytes of item memory this shard may use (`memory / shards`).
    pub memory_limit: usize,
    /// Largest item (header, key and value) the shard accepts.
    pub max_item_size: usize,
    /// Size of one slab page; pages are the unit taken from the budget.
    pub slab_page_size: usize,
    /// Smallest chunk size, in bytes of item data.
    pub slab_min_chunk: usize,
    /// Each slab class's chunk size is the previous one times this factor.
    pub slab_growth_factor: f64,
    /// This shard's index, `0..shard_count`.
    pub index: usize,
    /// How many shards the server has; with `index` it keeps CAS values
    /// unique across shards without any shared counter.
    pub shard_count: usize,
}

impl ShardConfig {
    /// A small configuration for unit tests and benchmarks.
    pub fn for_tests(memory_limit: usize) -> ShardConfig {
        ShardConfig {
            memory_limit,
            max_item_size: 1024 * 1024,
            slab_page_size: 1024 * 1024,
            slab_min_chunk: 48,
            slab_growth_factor: 1.25,
            index: 0,
            shard_count: 1,
        }
    }
}

/// A read-only view of a stored item, valid until the shard is next used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value (the data block, without the trailing `\r\n`).
    pub value: &'a [u8],
    /// The client's opaque 32-bit flags.
    pub flags: u32,
    /// The item's compare-and-swap token, fresh on every store.
    pub cas: u64,
    /// When the item expires.
    pub deadline: Deadline,
}

/// What a store operation does with an existing item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// Store unconditionally.
    Set,
    /// Store only if the key is absent.
    Add,
    /// Store only if the key is present.
    Replace,
    /// Add the value after the existing one (flags and deadline are kept).
    Append,
    /// Add the value before the existing one (flags and deadline are kept).
    Prepend,
    /// Store only if the item's CAS token still equals this one.
    Cas(u64),
}

/// One store request, as handed to [`Shard::store`].
#[derive(Clone, Copy, Debug)]
pub struct Store<'a> {
    /// How the store treats an existing item.
    pub mode: StoreMode,
    /// The key.
    pub key: &'a [u8],
    /// [`key_hash`] of the key (the same hash that picked the shard).
    pub hash: u64,
    /// Client flags.
    pub flags: u32,
    /// When the item expires.
    pub deadline: Deadline,
    /// The value.
    pub value: &'a [u8],
}

/// The result of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The item was stored; carries its new CAS token.
    Stored(u64),
    /// `add` found the key, or `replace`/`append`/`prepend` did not.
    NotStored,
    /// `cas` found the item changed since the client read it.
    Exists,
    /// `cas` found no item.
    NotFound,
    /// The item is larger than the largest item this shard stores. Any
    /// existing item under the key has been removed, as memcached does, so
    /// a failed overwrite never leaves stale data readable.
    TooLarge,
    /// No memory could be found for the item even after eviction.
    OutOfMemory,
}

/// Increment or decrement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// Add, wrapping at 2^64.
    Incr,
    /// Subtract, stopping at 0.
    Decr,
}

/// The result of `incr`/`decr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value.
    Value(u64),
    /// No such item.
    NotFound,
    /// The stored value is not a decimal number that fits in 64 bits.
    NonNumeric,
}

/// Counters one shard keeps about itself; summed over shards for `stats`.
///
/// The names follow memcached's `stats` output so the mapping is obvious.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Keys looked up by get-like commands.
    pub cmd_get: u64,
    /// Store commands of any kind.
    pub cmd_set: u64,
    /// Touch and get-and-touch commands.
    pub cmd_touch: u64,
    /// Gets that found an item.
    pub get_hits: u64,
    /// Gets that found nothing.
    pub get_misses: u64,
    /// Gets that found only an expired item.
    pub get_expired: u64,
    /// Gets that found only an item invalidated by `flush_all`.
    pub get_flushed: u64,
    /// Deletes that removed an item.
    pub delete_hits: u64,
    /// Deletes that found nothing.
    pub delete_misses: u64,
    /// Increments that found an item.
    pub incr_hits: u64,
    /// Increments that found nothing.
    pub incr_misses: u64,
    /// Decrements that found an item.
    pub decr_hits: u64,
    /// Decrements that found nothing.
    pub decr_misses: u64,
    /// CAS stores that succeeded.
    pub cas_hits: u64,
    /// CAS stores that found no item.
    pub cas_misses: u64,
    /// CAS stores that found the item changed.
    pub cas_badval: u64,
    /// Touches that found an item.
    pub touch_hits: u64,
    /// Touches that found nothing.
    pub touch_misses: u64,
    /// Items stored now.
    pub curr_items: u64,
    /// Items ever stored.
    pub total_items: u64,
    /// Bytes used by stored items (headers, keys and values).
    pub bytes: u64,
    /// Live items removed to make room.
    pub evictions: u64,
    /// Expired items whose memory was taken back (by a read, the expiry
    /// wheel, or eviction finding them first).
    pub reclaimed: u64,
    /// Items that expired without ever being read.
    pub expired_unfetched: u64,
    /// Items evicted without ever being read.
    pub evicted_unfetched: u64,
    /// Slab pages moved from one class to another.
    pub slabs_moved: u64,
    /// Stores refused because the item was larger than any chunk.
    pub store_too_large: u64,
    /// Stores refused because no memory could be freed for them.
    pub store_no_memory: u64,
    /// Bytes of memory this shard may use.
    pub limit_maxbytes: u64,
    /// `me` requests (memcached's `cmd_meta`, which counts only these).
    pub cmd_meta: u64,
    /// Live items a page move (or a shrink) copied to another chunk of
    /// their class (memcached's `slab_reassign_rescues`).
    pub slab_reassign_rescues: u64,
    /// Live items a page move (or a shrink) evicted because their class
    /// had no free chunk to take them (`slab_reassign_evictions_nomem`).
    pub slab_reassign_evictions_nomem: u64,
}

impl ShardStats {
    /// Adds `other` into `self`, field by field.
    pub fn add(&mut self, other: &ShardStats) {
        macro_rules! sum {
            ($($field:ident),*) => { $( self.$field += other.$field; )* };
        }
        sum!(
            cmd_get,
            cmd_set,
            cmd_touch,
            get_hits,
            get_misses,
            get_expired,
            get_flushed,
            delete_hits,
            delete_misses,
            incr_hits,
            incr_misses,
            decr_hits,
            decr_misses,
            cas_hits,
            cas_misses,
            cas_badval,
            touch_hits,
            touch_misses,
            curr_items,
            total_items,
            bytes,
            evictions,
            reclaimed,
            expired_unfetched,
            evicted_unfetched,
            slabs_moved,
            store_too_large,
            store_no_memory,
            limit_maxbytes,
            cmd_meta,
            slab_reassign_rescues,
            slab_reassign_evictions_nomem
        );
    }
}

/// What a meta get (`mg`) does besides reading; see [`Shard::meta_get`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaGet {
    /// Give a hit this new deadline (`T`).
    pub touch: Option<Deadline>,
    /// On a miss, create an empty item with this deadline and hand the
    /// caller its win token (`N`).
    pub vivify: Option<Deadline>,
    /// Hand out the win token if the item expires before this (`R`).
    pub recache_before: Option<Deadline>,
    /// Leave the LRU position, fetched bit and access time alone (`u`).
    pub no_bump: bool,
    /// The CAS token a vivified item gets instead of a fresh one (`E`).
    pub new_cas: Option<u64>,
}

/// A meta get hit: the item and what the meta protocol reports about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaHit<'a> {
    /// The item, after the request's changes.
    pub item: Item<'a>,
    /// Whether it had been read before this request (`h`).
    pub fetched_before: bool,
    /// Seconds since it was last accessed, before this request (`l`).
    pub idle_secs: u32,
    /// It is marked stale (`X`).
    pub stale: bool,
    /// Another client already holds its win token (`Z`).
    pub token_taken: bool,
    /// This request won the token (`W`).
    pub won: bool,
    /// The item was created by `vivify`.
    pub created: bool,
    /// The item was stored with a base64 key.
    pub binary_key: bool,
    /// The deadline before this request changed it (a vivified item counts
    /// as never expiring until its `N` applies, as in memcached).
    pub deadline_before: Deadline,
}

/// What a meta store (`ms`) adds to a [`Store`]; see [`Shard::store_meta`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMeta {
    /// Compare this CAS token first, for modes other than
    /// [`StoreMode::Cas`] (append/prepend/add with `C`).
    pub compare: Option<u64>,
    /// Give the stored item this CAS token instead of a fresh one (`E`).
    pub new_cas: Option<u64>,
    /// With [`StoreMode::Cas`]: a token older than the item's still stores,
    /// but the item is marked stale and keeps its deadline and win token
    /// (`I`).
    pub invalidate: bool,
    /// Append/prepend on a miss store the value as a new item with this
    /// deadline (`N`).
    pub vivify: Option<Deadline>,
    /// The key was sent base64-encoded (`b`): remember it, so `mg k`
    /// echoes it that way.
    pub binary_key: bool,
}

/// What a meta delete (`md`) does; see [`Shard::meta_delete`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteMeta {
    /// Act only if the item's CAS token is this one (`C`).
    pub compare: Option<u64>,
    /// Mark stale and take back the win token instead of removing (`I`).
    pub invalidate: bool,
    /// The CAS token a kept item gets instead of a fresh one (`E`).
    pub new_cas: Option<u64>,
    /// With `invalidate`: a new deadline (`T`).
    pub touch: Option<Deadline>,
    /// Empty the value but keep the item (`x`).
    pub strip: bool,
}

/// The result of [`Shard::meta_delete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed, invalidated or emptied.
    Done,
    /// No live item.
    NotFound,
    /// The CAS token did not match.
    Exists,
}

/// What a meta arithmetic (`ma`) does besides the delta; see
/// [`Shard::meta_arith`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArithMeta {
    /// Act only if the item's CAS token is this one (`C`).
    pub compare: Option<u64>,
    /// The CAS token the updated item gets instead of a fresh one (`E`).
    pub new_cas: Option<u64>,
    /// On a miss, create the item with this deadline and the initial value
    /// (`N`, `J`); the delta is not applied to it.
    pub vivify: Option<(Deadline, u64)>,
    /// On success, a new deadline (`T`).
    pub touch: Option<Deadline>,
}

/// The result of [`Shard::meta_arith`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaArithOutcome {
    /// The counter now holds `value`.
    Value {
        /// The new value.
        value: u64,
        /// Its CAS token.
        cas: u64,
        /// Its deadline.
        deadline: Deadline,
        /// Its deadline before `touch` (never, for a created item).
        deadline_before: Deadline,
        /// The item was created by `vivify`.
        created: bool,
    },
    /// No item, and no `vivify`.
    NotFound,
    /// `vivify` could not create the item.
    NotStored,
    /// The CAS token did not match.
    Exists,
    /// The value is not a decimal number.
    NonNumeric,
}

/// An item's metadata for `me` (meta debug); see [`Shard::meta_debug`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaDebug {
    /// Its deadline.
    pub deadline: Deadline,
    /// Seconds since it was last accessed.
    pub idle_secs: u32,
    /// Its CAS token.
    pub cas: u64,
    /// Whether it has been read.
    pub fetched: bool,
    /// Its slab class, 0-based.
    pub class: usize,
    /// Header, key and value bytes.
    pub size: usize,
    /// The item was stored with a base64 key (`ms <key> b`): memcached's
    /// `me` prints such a key base64-encoded.
    pub binary_key: bool,
}
