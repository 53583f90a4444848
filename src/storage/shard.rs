//! The shard engine, first cut: a hash table of owned items with lazy expiry
//! and a byte-count memory bound.
//!
//! This is the interface the slab engine keeps; only the inside changes.

use super::{
    ArithOp, ArithOutcome, Deadline, Item, Millis, ShardConfig, ShardStats, Store, StoreMode,
    StoreOutcome,
};
use hashbrown::HashTable;

/// Bytes charged per item on top of its key and value, standing in for the
/// header and index slot a real arena pays.
const ITEM_OVERHEAD: usize = 48;

struct Entry {
    hash: u64,
    key: Box<[u8]>,
    value: Vec<u8>,
    flags: u32,
    cas: u64,
    deadline: Deadline,
    stored_at: Millis,
    fetched: bool,
}

impl Entry {
    fn size(&self) -> usize {
        ITEM_OVERHEAD + self.key.len() + self.value.len()
    }

    fn view(&self) -> Item<'_> {
        Item {
            key: &self.key,
            value: &self.value,
            flags: self.flags,
            cas: self.cas,
            deadline: self.deadline,
        }
    }
}

/// Why a lookup found nothing usable.
enum Miss {
    Absent,
    Expired,
    Flushed,
}

/// One single-threaded cache engine owning a slice of the keyspace.
pub struct Shard {
    table: HashTable<Entry>,
    config: ShardConfig,
    stats: ShardStats,
    next_cas: u64,
    /// Items stored at or before this time are invalid once it has passed
    /// (`flush_all` with a delay).
    flush_at: Option<Millis>,
}

impl Shard {
    /// An empty shard with the given sizing.
    pub fn new(config: &ShardConfig) -> Shard {
        let stats = ShardStats {
            limit_maxbytes: config.memory_limit as u64,
            ..ShardStats::default()
        };
        Shard {
            table: HashTable::new(),
            next_cas: config.index as u64 + 1,
            config: config.clone(),
            stats,
            flush_at: None,
        }
    }

    /// This shard's counters.
    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// Zeroes the event counters (`stats reset`); gauges such as
    /// `curr_items` and `bytes` are kept.
    pub fn reset_stats(&mut self) {
        self.stats = ShardStats {
            curr_items: self.stats.curr_items,
            bytes: self.stats.bytes,
            limit_maxbytes: self.stats.limit_maxbytes,
            ..ShardStats::default()
        };
    }

    /// Whether an item of this key and value length could ever be stored.
    pub fn fits(&self, key_len: usize, value_len: usize) -> bool {
        ITEM_OVERHEAD + key_len + value_len <= self.config.max_item_size
    }

    fn fresh_cas(&mut self) -> u64 {
        let cas = self.next_cas;
        self.next_cas += self.config.shard_count as u64;
        cas
    }

    /// Looks up `key`; a hit is marked as fetched.
    pub fn get(&mut self, key: &[u8], hash: u64, now: Millis) -> Option<Item<'_>> {
        self.stats.cmd_get += 1;
        let Shard {
            table,
            stats,
            flush_at,
            ..
        } = self;
        match live(table, stats, *flush_at, key, hash, now) {
            Ok(entry) => {
                entry.fetched = true;
                stats.get_hits += 1;
                Some(entry.view())
            }
            Err(miss) => {
                count_get_miss(stats, miss);
                None
            }
        }
    }

    /// Looks up `key` and, on a hit, gives it a new deadline (`gat`).
    pub fn get_and_touch(
        &mut self,
        key: &[u8],
        hash: u64,
        deadline: Deadline,
        now: Millis,
    ) -> Option<Item<'_>> {
        self.stats.cmd_get += 1;
        self.stats.cmd_touch += 1;
        let Shard {
            table,
            stats,
            flush_at,
            ..
        } = self;
        match live(table, stats, *flush_at, key, hash, now) {
            Ok(entry) => {
                entry.fetched = true;
                entry.deadline = deadline;
                stats.get_hits += 1;
                stats.touch_hits += 1;
                Some(entry.view())
            }
            Err(miss) => {
                count_get_miss(stats, miss);
                stats.touch_misses += 1;
                None
            }
        }
    }

    /// Gives `key` a new deadline; false if there is no such item.
    pub fn touch(&mut self, key: &[u8], hash: u64, deadline: Deadline, now: Millis) -> bool {
        self.stats.cmd_touch += 1;
        match live(
            &mut self.table,
            &mut self.stats,
            self.flush_at,
            key,
            hash,
            now,
        ) {
            Ok(entry) => {
                entry.deadline = deadline;
                self.stats.touch_hits += 1;
                true
            }
            Err(_) => {
                self.stats.touch_misses += 1;
                false
            }
        }
    }

    /// Stores an item according to `store.mode`.
    pub fn store(&mut self, store: &Store<'_>, now: Millis) -> StoreOutcome {
        self.stats.cmd_set += 1;
        let Store {
            mode,
            key,
            hash,
            flags,
            deadline,
            value,
        } = *store;
        if !self.fits(key.len(), value.len()) {
            self.remove(key, hash);
            return StoreOutcome::TooLarge;
        }
        let existing = live(
            &mut self.table,
            &mut self.stats,
            self.flush_at,
            key,
            hash,
            now,
        )
        .ok()
        .map(|e| (e.cas, e.value.len()));
        let new_len = match (mode, existing) {
            (StoreMode::Add, Some(_)) => return StoreOutcome::NotStored,
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                return StoreOutcome::NotStored;
            }
            (StoreMode::Cas(_), None) => {
                self.stats.cas_misses += 1;
                return StoreOutcome::NotFound;
            }
            (StoreMode::Cas(expected), Some((cas, _))) if expected != cas => {
                self.stats.cas_badval += 1;
                return StoreOutcome::Exists;
            }
            (StoreMode::Append | StoreMode::Prepend, Some((_, old_len))) => old_len + value.len(),
            _ => value.len(),
        };
        if !self.fits(key.len(), new_len) {
            return StoreOutcome::TooLarge;
        }
        if matches!(mode, StoreMode::Cas(_)) {
            self.stats.cas_hits += 1;
        }
        let old_size = existing.map_or(0, |(_, len)| ITEM_OVERHEAD + key.len() + len);
        let new_size = ITEM_OVERHEAD + key.len() + new_len;
        if self.stats.bytes as usize - old_size + new_size > self.config.memory_limit {
            return StoreOutcome::OutOfMemory;
        }
        let cas = self.fresh_cas();
        self.stats.total_items += 1;
        self.stats.bytes = self.stats.bytes - old_size as u64 + new_size as u64;
        if let Some(entry) = self
            .table
            .find_mut(hash, |e| e.hash == hash && *e.key == *key)
        {
            match mode {
                StoreMode::Append => entry.value.extend_from_slice(value),
                StoreMode::Prepend => {
                    entry.value.splice(0..0, value.iter().copied());
                }
                _ => {
                    entry.value.clear();
                    entry.value.extend_from_slice(value);
                    entry.flags = flags;
                    entry.deadline = deadline;
                }
            }
            entry.cas = cas;
            entry.stored_at = now;
            entry.fetched = false;
        } else {
            self.stats.curr_items += 1;
            let entry = Entry {
                hash,
                key: key.into(),
                value: value.to_vec(),
                flags,
                cas,
                deadline,
                stored_at: now,
                fetched: false,
            };
            self.table.insert_unique(hash, entry, |e| e.hash);
        }
        StoreOutcome::Stored(cas)
    }

    /// Removes `key` if present, without counting it as a delete: what a
    /// refused overwrite does to the old value.
    pub fn discard(&mut self, key: &[u8], hash: u64) {
        self.remove(key, hash);
    }

    fn remove(&mut self, key: &[u8], hash: u64) -> bool {
        match self
            .table
            .find_entry(hash, |e| e.hash == hash && *e.key == *key)
        {
            Ok(occupied) => {
                let (entry, _) = occupied.remove();
                self.stats.curr_items -= 1;
                self.stats.bytes -= entry.size() as u64;
                true
            }
            Err(_) => false,
        }
    }

    /// Removes `key`; false if there was no live item.
    pub fn delete(&mut self, key: &[u8], hash: u64, now: Millis) -> bool {
        let hit = live(
            &mut self.table,
            &mut self.stats,
            self.flush_at,
            key,
            hash,
            now,
        )
        .is_ok()
            && self.remove(key, hash);
        if hit {
            self.stats.delete_hits += 1;
        } else {
            self.stats.delete_misses += 1;
        }
        hit
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
        let cas = self.next_cas;
        let mut grew: i64 = 0;
        let outcome = match live(
            &mut self.table,
            &mut self.stats,
            self.flush_at,
            key,
            hash,
            now,
        ) {
            Err(_) => ArithOutcome::NotFound,
            Ok(entry) => match parse_decimal(&entry.value) {
                None => ArithOutcome::NonNumeric,
                Some(current) => {
                    let value = match op {
                        ArithOp::Incr => current.wrapping_add(delta),
                        ArithOp::Decr => current.saturating_sub(delta),
                    };
                    let old_len = entry.value.len() as i64;
                    entry.value.clear();
                    entry.value.extend_from_slice(value.to_string().as_bytes());
                    entry.cas = cas;
                    grew = entry.value.len() as i64 - old_len;
                    ArithOutcome::Value(value)
                }
            },
        };
        if let ArithOutcome::Value(_) = outcome {
            self.stats.bytes = self.stats.bytes.wrapping_add_signed(grew);
            self.next_cas += self.config.shard_count as u64;
        }
        let hit = !matches!(outcome, ArithOutcome::NotFound);
        match (op, hit) {
            (ArithOp::Incr, true) => self.stats.incr_hits += 1,
            (ArithOp::Incr, false) => self.stats.incr_misses += 1,
            (ArithOp::Decr, true) => self.stats.decr_hits += 1,
            (ArithOp::Decr, false) => self.stats.decr_misses += 1,
        }
        outcome
    }

    /// Invalidates every item stored at or before `at`. With `at <= now`
    /// the shard is emptied at once; a later `at` takes effect lazily when
    /// that time comes (`flush_all <delay>`).
    pub fn flush(&mut self, at: Millis, now: Millis) {
        if at <= now {
            self.table.clear();
            self.stats.curr_items = 0;
            self.stats.bytes = 0;
            self.flush_at = None;
        } else {
            self.flush_at = Some(at);
        }
    }

    /// Periodic work: reclaims expired items. The first cut only empties the
    /// shard when a delayed flush falls due; expiry is lazy.
    pub fn tick(&mut self, now: Millis) {
        if let Some(at) = self.flush_at
            && at <= now
        {
            self.flush(at, now);
        }
    }
}

/// Finds a live entry, reclaiming it on the way if it has expired or been
/// flushed. A free function over the shard's parts so a caller can hold the
/// entry and still update the counters.
fn live<'t>(
    table: &'t mut HashTable<Entry>,
    stats: &mut ShardStats,
    flush_at: Option<Millis>,
    key: &[u8],
    hash: u64,
    now: Millis,
) -> Result<&'t mut Entry, Miss> {
    let occupied = table
        .find_entry(hash, |e| e.hash == hash && *e.key == *key)
        .map_err(|_| Miss::Absent)?;
    let entry = occupied.get();
    let miss = if entry.deadline.is_expired(now) {
        Miss::Expired
    } else if flush_at.is_some_and(|at| at <= now && entry.stored_at <= at) {
        Miss::Flushed
    } else {
        return Ok(occupied.into_mut());
    };
    let (entry, _) = occupied.remove();
    stats.curr_items -= 1;
    stats.bytes -= entry.size() as u64;
    if matches!(miss, Miss::Expired) {
        stats.reclaimed += 1;
        if !entry.fetched {
            stats.expired_unfetched += 1;
        }
    }
    Err(miss)
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
