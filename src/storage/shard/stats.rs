//! The shard's counters: the shard-wide ones `stats` sums over shards, the
//! per-class ones behind `stats slabs` and `stats items`, the item sizes of
//! `stats sizes`, and the per-prefix counts of `stats detail`.
//!
//! Per-prefix counts live here, one table per shard, because a shard is
//! only ever used by one thread at a time (its owner, or the holder of its
//! lock): counting takes no lock of its own, and the server sums the
//! shards' tables when asked to dump them. While `stats detail` is off the
//! data path pays one test of a flag the shard already has in cache.

use super::{ClassCounters, Shard, secs};
use std::collections::HashMap;

/// memcached's default `stats detail` delimiter: a key's prefix is what
/// comes before its first `:`.
pub const PREFIX_DELIMITER: u8 = b':';
/// Prefixes one shard counts at most; requests on a key whose prefix is
/// first seen once the table holds this many are not counted, so a client
/// cannot grow the table without bound (memcached sets no bound).
pub const MAX_PREFIXES: usize = 65_536;

/// What a request did, for `stats detail` (memcached counts gets, hits,
/// stores and deletes; the other commands are not counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixEvent {
    /// A key of a get; `hit` if it was found.
    Get {
        /// The key was found.
        hit: bool,
    },
    /// A store of any kind, whether or not it stored.
    Set,
    /// A delete, whether or not it found the key.
    Delete,
}

/// One prefix's counts (`PREFIX <prefix> get <n> hit <n> set <n> del <n>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixCounts {
    /// Keys looked up by gets.
    pub gets: u64,
    /// Of those, the ones found.
    pub hits: u64,
    /// Stores.
    pub sets: u64,
    /// Deletes.
    pub deletes: u64,
}

impl PrefixCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &PrefixCounts) {
        self.gets += other.gets;
        self.hits += other.hits;
        self.sets += other.sets;
        self.deletes += other.deletes;
    }
}

/// The per-prefix table and whether it is counting.
#[derive(Default)]
pub(super) struct PrefixTable {
    pub(super) on: bool,
    counts: HashMap<Box<[u8]>, PrefixCounts>,
}

/// memcached's `stats sizes` buckets are this many bytes wide.
pub const SIZE_BUCKET: usize = 32;

/// Live items by size, in [`SIZE_BUCKET`] steps, counting (as memcached
/// does) only items whose CAS is at least the one the shard would have
/// handed out when the histogram was enabled: items stored since.
pub(super) struct SizeHistogram {
    cas_min: u64,
    buckets: Vec<u32>,
}

impl SizeHistogram {
    fn bucket(size: usize) -> usize {
        size.div_ceil(SIZE_BUCKET)
    }

    pub(super) fn add(&mut self, size: usize, cas: u64) {
        if cas >= self.cas_min {
            self.buckets[Self::bucket(size)] += 1;
        }
    }

    pub(super) fn remove(&mut self, size: usize, cas: u64) {
        if cas >= self.cas_min {
            // Saturating: an item stored before with a client-chosen CAS
            // (meta `E`) above `cas_min` was never counted.
            let n = &mut self.buckets[Self::bucket(size)];
            *n = n.saturating_sub(1);
        }
    }
}
use crate::storage::item;
use crate::storage::{Millis, ShardStats, SlabClassStats};

impl Shard {
    /// This shard's counters.
    pub fn stats(&self) -> &ShardStats {
        &self.tables.stats
    }

    /// Zeroes the event counters (`stats reset`); gauges such as
    /// `curr_items` and `bytes` are kept.
    pub fn reset_stats(&mut self) {
        let s = &self.tables.stats;
        self.tables.stats = ShardStats {
            curr_items: s.curr_items,
            bytes: s.bytes,
            limit_maxbytes: s.limit_maxbytes,
            ..ShardStats::default()
        };
        for c in &mut self.tables.classes {
            *c = ClassCounters {
                mem_requested: c.mem_requested,
                ..ClassCounters::default()
            };
        }
        // memcached's `stats reset` forgets the prefixes too.
        self.prefixes.counts = HashMap::new();
    }

    /// `stats detail on` and `stats detail off`: start or stop counting
    /// requests per key prefix. Stopping keeps the counts (a dump still
    /// shows them), as in memcached.
    pub fn set_prefix_stats(&mut self, on: bool) {
        self.prefixes.on = on;
    }

    /// Whether requests are counted per prefix: the server asks before
    /// [`Shard::record_prefix`], so with `stats detail` off a request
    /// costs one test.
    #[inline]
    pub fn prefix_stats_on(&self) -> bool {
        self.prefixes.on
    }

    /// Counts `event` under the prefix of `key`, memcached's way: the
    /// bytes before the first [`PREFIX_DELIMITER`]; a key without one (or
    /// with a NUL before it) is not counted. Nor is a prefix holding a
    /// space, CR or LF, which could not be printed on a line, or a new
    /// prefix once [`MAX_PREFIXES`] are counted. Does nothing while off.
    pub fn record_prefix(&mut self, key: &[u8], event: PrefixEvent) {
        if !self.prefixes.on {
            return;
        }
        let Some(end) = key.iter().position(|&b| b == PREFIX_DELIMITER || b == 0) else {
            return;
        };
        let prefix = &key[..end];
        if key[end] == 0 || prefix.iter().any(|b| matches!(b, b' ' | b'\r' | b'\n')) {
            return;
        }
        let table = &mut self.prefixes.counts;
        if !table.contains_key(prefix) {
            if table.len() >= MAX_PREFIXES {
                return;
            }
            table.insert(prefix.into(), PrefixCounts::default());
        }
        let counts = table.get_mut(prefix).expect("the prefix is in the table");
        match event {
            PrefixEvent::Get { hit } => {
                counts.gets += 1;
                counts.hits += u64::from(hit);
            }
            PrefixEvent::Set => counts.sets += 1,
            PrefixEvent::Delete => counts.deletes += 1,
        }
    }

    /// Every prefix counted (`stats detail dump`), in no particular order.
    pub fn prefix_stats(&self) -> Vec<(Vec<u8>, PrefixCounts)> {
        let table = &self.prefixes.counts;
        table.iter().map(|(p, c)| (p.to_vec(), *c)).collect()
    }

    /// Tests only: from now on, record every live item evicted; see
    /// [`Shard::take_evictions`].
    #[cfg(test)]
    pub(crate) fn log_evictions(&mut self) {
        self.tables.eviction_log = Some(Vec::new());
    }

    /// Tests only: the live items evicted (key and 0-based class) since the
    /// last call, oldest eviction first.
    #[cfg(test)]
    pub(crate) fn take_evictions(&mut self) -> Vec<(Vec<u8>, usize)> {
        self.tables
            .eviction_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// `stats sizes_enable` and `stats sizes_disable`: start or stop
    /// counting items by size. Enabling when enabled keeps the counts;
    /// disabling forgets them.
    pub fn set_size_histogram(&mut self, on: bool) {
        match (on, self.tables.sizes.is_some()) {
            (true, false) => {
                self.tables.sizes = Some(SizeHistogram {
                    cas_min: self.next_cas,
                    buckets: vec![0; SizeHistogram::bucket(self.config.max_item_size) + 1],
                })
            }
            (false, true) => self.tables.sizes = None,
            _ => {}
        }
    }

    /// `stats sizes`: `None` while disabled (memcached then prints
    /// `STAT sizes_status disabled`), else the items stored since it was
    /// enabled and still live, by size: `(bytes, items)` for each
    /// non-empty bucket, smallest first, where `bytes` is the bucket's top
    /// (an item of header, key and value `n` bytes counts in the bucket
    /// `n` rounded up to a multiple of 32).
    pub fn size_histogram(&self) -> Option<Vec<(usize, u64)>> {
        let sizes = self.tables.sizes.as_ref()?;
        Some(
            sizes
                .buckets
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n > 0)
                .map(|(i, &n)| (i * SIZE_BUCKET, u64::from(n)))
                .collect(),
        )
    }

    /// Per-class statistics for `stats slabs` and `stats items`, one entry
    /// per class (classes that never held a page included), smallest first.
    pub fn slab_class_stats(&self, now: Millis) -> Vec<SlabClassStats> {
        let tables = &self.tables;
        (0..tables.slabs.class_count())
            .map(|class| {
                let m = tables.slabs.class_memory(class);
                let k = &tables.classes[class];
                let age = tables.lru.tail(class).map_or(0, |id| {
                    secs(now).saturating_sub(item::time(tables.slabs.chunk(id)))
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
                    number: tables.lru.len(class),
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
}
