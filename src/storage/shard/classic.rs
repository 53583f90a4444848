//! memcached's classic commands: get, gat, touch, the store family
//! (set/add/replace/append/prepend/cas, and the store path `ms` shares),
//! delete and incr/decr.
//!
//! Counters follow memcached 1.6.18 as it answers `stats`, not as the
//! command names suggest: a `gat` counts as a touch (`cmd_touch`,
//! `touch_hits`/`touch_misses`), never as a get.

use super::{Gone, Shard, secs, view};
use crate::storage::item;
use crate::storage::slab::ChunkId;
use crate::storage::{
    ArithOp, ArithOutcome, Deadline, Item, Millis, Store, StoreMeta, StoreMode, StoreOutcome,
};

impl Shard {
    /// Looks up `key`; a hit is marked as fetched.
    pub fn get(&mut self, key: &[u8], hash: u64, now: Millis) -> Option<Item<'_>> {
        self.read(key, hash, None, now)
    }

    /// Looks up `key` and, on a hit, gives it a new deadline (`gat`).
    /// Counted as a touch, as memcached counts it.
    pub fn get_and_touch(
        &mut self,
        key: &[u8],
        hash: u64,
        deadline: Deadline,
        now: Millis,
    ) -> Option<Item<'_>> {
        self.read(key, hash, Some(deadline), now)
    }

    /// `get`, or with `touch` `gat`: a hit is marked fetched and bumped,
    /// and re-timed for `gat`. Inlined so `get` keeps a path of its own.
    #[inline(always)]
    fn read(
        &mut self,
        key: &[u8],
        hash: u64,
        touch: Option<Deadline>,
        now: Millis,
    ) -> Option<Item<'_>> {
        self.catch_up(now);
        let found = self.tables.find_live(key, hash, now);
        let stats = &mut self.tables.stats;
        match (found, touch) {
            (Some(id), None) => {
                stats.cmd_get += 1;
                stats.get_hits += 1;
                let class = self.tables.slabs.class_of(id);
                self.tables.classes[class].get_hits += 1;
                self.hit(id, now);
            }
            (Some(id), Some(deadline)) => {
                stats.cmd_touch += 1;
                stats.touch_hits += 1;
                let class = self.tables.slabs.class_of(id);
                self.tables.classes[class].touch_hits += 1;
                self.hit(id, now);
                self.retime(id, deadline);
            }
            (None, None) => {
                stats.cmd_get += 1;
                stats.get_misses += 1;
            }
            (None, Some(_)) => {
                stats.cmd_touch += 1;
                stats.touch_misses += 1;
            }
        }
        found.map(|id| view(self.tables.slabs.chunk(id)))
    }

    /// Gives `key` a new deadline; false if there is no such item.
    pub fn touch(&mut self, key: &[u8], hash: u64, deadline: Deadline, now: Millis) -> bool {
        self.catch_up(now);
        self.tables.stats.cmd_touch += 1;
        match self.tables.find_live(key, hash, now) {
            Some(id) => {
                let class = self.tables.slabs.class_of(id);
                self.bump(id, now);
                self.retime(id, deadline);
                self.tables.stats.touch_hits += 1;
                self.tables.classes[class].touch_hits += 1;
                true
            }
            None => {
                self.tables.stats.touch_misses += 1;
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
        self.store_counted(store, meta, now, true)
    }

    /// A store and its counters; `as_set` false for the items `mg N` and
    /// `ma N` create, which memcached does not count as sets (in `cmd_set`
    /// or the class's).
    pub(super) fn store_counted(
        &mut self,
        store: &Store<'_>,
        meta: &StoreMeta,
        now: Millis,
        as_set: bool,
    ) -> StoreOutcome {
        self.tables.stats.cmd_set += u64::from(as_set);
        let outcome = self.store_item(store, meta, now, as_set);
        match outcome {
            StoreOutcome::TooLarge => self.tables.stats.store_too_large += 1,
            StoreOutcome::OutOfMemory => self.tables.stats.store_no_memory += 1,
            _ => {}
        }
        outcome
    }

    /// The conditions of a store (mode, CAS, sizes), then the write.
    fn store_item(
        &mut self,
        store: &Store<'_>,
        meta: &StoreMeta,
        now: Millis,
        as_set: bool,
    ) -> StoreOutcome {
        self.catch_up(now);
        let Store {
            mut mode,
            key,
            hash,
            flags,
            mut deadline,
            value,
        } = *store;
        if !self.fits(key.len(), value.len()) {
            // memcached drops the old value of a refused `set` only, so a
            // failed overwrite never leaves stale data readable; a refused
            // add, replace, append, prepend or cas leaves the item alone.
            if mode == StoreMode::Set
                && let Some(id) = self.tables.find_live(key, hash, now)
            {
                self.tables.unlink(id, hash, Gone::Removed);
            }
            return StoreOutcome::TooLarge;
        }
        let existing = self.tables.find_live(key, hash, now);
        let old = existing.map(|id| {
            let c = self.tables.slabs.chunk(id);
            (id, item::cas(c), item::value_len(c))
        });
        // A lower token with `invalidate` stores a stale item that keeps
        // the old deadline and win token.
        let mut stale_bits = None;
        if meta.compare.is_some() && old.is_none() {
            self.tables.stats.cas_misses += 1;
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
                self.tables.stats.cas_misses += 1;
                return StoreOutcome::NotFound;
            }
            (StoreMode::Cas(expected), Some((id, cas, _))) if expected != cas => {
                if meta.invalidate && expected < cas {
                    let c = self.tables.slabs.chunk(id);
                    deadline = item::deadline(c);
                    stale_bits = Some(item::token_sent(c));
                    value.len()
                } else {
                    self.tables.stats.cas_badval += 1;
                    let class = self.tables.slabs.class_of(id);
                    self.tables.classes[class].cas_badval += 1;
                    return StoreOutcome::Exists;
                }
            }
            (StoreMode::Append | StoreMode::Prepend, Some((id, cas, old_len))) => {
                if meta.compare.is_some_and(|expected| expected != cas) {
                    self.tables.stats.cas_badval += 1;
                    let class = self.tables.slabs.class_of(id);
                    self.tables.classes[class].cas_badval += 1;
                    return StoreOutcome::Exists;
                }
                // Too large together: memcached answers NOT_STORED and
                // keeps the item.
                if !self.fits(key.len(), old_len + value.len()) {
                    return StoreOutcome::NotStored;
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
            as_set,
        );
        if (stale_bits.is_some() || meta.binary_key)
            && matches!(outcome, StoreOutcome::Stored(_))
            && let Some(id) = self.tables.index.find(&self.tables.slabs, key, hash)
        {
            let c = self.tables.slabs.chunk_mut(id);
            item::set_key_binary(c, meta.binary_key);
            if let Some(token) = stale_bits {
                item::set_stale(c, true);
                item::set_token_sent(c, token);
            }
        }
        outcome
    }

    /// The writing half of a store whose conditions (the size included)
    /// have been checked.
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
        as_set: bool,
    ) -> StoreOutcome {
        let (key, hash, value) = (store.key, store.hash, store.value);
        let cas_mode = matches!(mode, StoreMode::Cas(_));
        if cas_mode {
            self.tables.stats.cas_hits += 1;
        }
        let size = item::total_size(key.len(), new_len);
        if let Some(id) = existing
            && self.tables.slabs.class_for(size) == Some(self.tables.slabs.class_of(id))
            && !self.flushed_on_arrival(now)
        {
            let (flags, deadline) = match mode {
                StoreMode::Append | StoreMode::Prepend => {
                    let c = self.tables.slabs.chunk(id);
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
                let c = self.tables.slabs.chunk(id);
                self.scratch.clear();
                self.scratch.extend_from_slice(item::value(c));
                (item::flags(c), item::deadline(c))
            }
            _ => (flags, deadline),
        };
        if let Some(id) = existing {
            self.tables.unlink(id, hash, Gone::Removed);
        }
        let cas = new_cas.unwrap_or_else(|| self.fresh_cas());
        if deadline.is_expired(now) || self.flushed_on_arrival(now) {
            // Never readable: storing it would only waste a chunk.
            return StoreOutcome::Stored(cas);
        }
        let Some(class) = self.tables.slabs.class_for(size) else {
            return StoreOutcome::TooLarge;
        };
        let allocated = self.tables.alloc(class, now);
        self.renew_relocated();
        let Some(id) = allocated else {
            return StoreOutcome::OutOfMemory;
        };
        let epoch = self.tables.epoch;
        let c = self.tables.slabs.chunk_mut(id);
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
        let counters = &mut self.tables.classes[class];
        counters.cmd_set += u64::from(as_set);
        if cas_mode {
            counters.cas_hits += 1;
        }
        self.tables.stats.total_items += 1;
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
        let tables = &mut self.tables;
        let class = tables.slabs.class_of(id);
        let c = tables.slabs.chunk_mut(id);
        let old = (item::item_size(c), item::cas(c));
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
        tables.timed =
            tables.timed + usize::from(deadline != Deadline::NEVER) - usize::from(was_timed);
        tables.rewritten(class, old, (size, cas));
        tables.stats.total_items += 1;
        let counters = &mut tables.classes[class];
        counters.cmd_set += 1;
        if matches!(mode, StoreMode::Cas(_)) {
            counters.cas_hits += 1;
        }
        self.bump(id, now);
        self.schedule(id, cas, deadline);
        StoreOutcome::Stored(cas)
    }

    /// Indexes and links a freshly written item.
    pub(super) fn link(&mut self, id: ChunkId, hash: u64, class: usize, size: usize) {
        let tables = &mut self.tables;
        tables.index.insert(&mut tables.slabs, id, hash);
        tables.lru.push_front(&mut tables.slabs, class, id);
        tables.stats.curr_items += 1;
        tables.stats.bytes += size as u64;
        if item::deadline(tables.slabs.chunk(id)) != Deadline::NEVER {
            tables.timed += 1;
        }
        tables.classes[class].mem_requested += size as u64;
        if let Some(sizes) = &mut tables.sizes {
            sizes.add(size, item::cas(tables.slabs.chunk(id)));
        }
    }

    /// Removes `key` if present, without counting it as a delete: what a
    /// refused oversized `set` does to the old value.
    pub fn discard(&mut self, key: &[u8], hash: u64, now: Millis) {
        self.catch_up(now);
        self.tables.stats.store_too_large += 1;
        if let Some(id) = self.tables.find_live(key, hash, now) {
            self.tables.unlink(id, hash, Gone::Removed);
        }
    }

    /// Removes `key`; false if there was no live item.
    pub fn delete(&mut self, key: &[u8], hash: u64, now: Millis) -> bool {
        self.catch_up(now);
        match self.tables.find_live(key, hash, now) {
            Some(id) => {
                let class = self.tables.slabs.class_of(id);
                self.tables.classes[class].delete_hits += 1;
                self.tables.unlink(id, hash, Gone::Removed);
                self.tables.stats.delete_hits += 1;
                true
            }
            None => {
                self.tables.stats.delete_misses += 1;
                false
            }
        }
    }

    /// Adds `delta` to, or subtracts it from, a decimal value, read as
    /// memcached reads it (leading whitespace, an optional sign, digits,
    /// then whitespace or the end: `" 5\r\n"` is 5).
    pub fn arith(
        &mut self,
        key: &[u8],
        hash: u64,
        op: ArithOp,
        delta: u64,
        now: Millis,
    ) -> ArithOutcome {
        self.catch_up(now);
        let outcome = match self.tables.find_live(key, hash, now) {
            None => ArithOutcome::NotFound,
            Some(id) => match parse_counter(item::value(self.tables.slabs.chunk(id))) {
                None => ArithOutcome::NonNumeric,
                Some(current) => {
                    let value = match op {
                        ArithOp::Incr => current.wrapping_add(delta),
                        ArithOp::Decr => current.saturating_sub(delta),
                    };
                    let class = self.tables.slabs.class_of(id);
                    match op {
                        ArithOp::Incr => self.tables.classes[class].incr_hits += 1,
                        ArithOp::Decr => self.tables.classes[class].decr_hits += 1,
                    }
                    let cas = self.fresh_cas();
                    self.set_counter(id, hash, value, cas, now);
                    ArithOutcome::Value(value)
                }
            },
        };
        let hit = !matches!(outcome, ArithOutcome::NotFound);
        let stats = &mut self.tables.stats;
        match (op, hit) {
            (ArithOp::Incr, true) => stats.incr_hits += 1,
            (ArithOp::Incr, false) => stats.incr_misses += 1,
            (ArithOp::Decr, true) => stats.decr_hits += 1,
            (ArithOp::Decr, false) => stats.decr_misses += 1,
        }
        outcome
    }

    /// Writes a new counter value with the given CAS, as memcached does: a
    /// number no longer than the old value is written over it and padded
    /// with spaces to the old length; a longer one makes the value exactly
    /// its digits (in place when the chunk has room, else in a new chunk,
    /// flags and deadline kept). Returns the chunk now holding it, if any.
    pub(super) fn set_counter(
        &mut self,
        id: ChunkId,
        hash: u64,
        value: u64,
        cas: u64,
        now: Millis,
    ) -> Option<ChunkId> {
        let mut buf = [0u8; 20];
        let digits = format_decimal(value, &mut buf);
        let class = self.tables.slabs.class_of(id);
        let chunk_size = self.tables.slabs.chunk_size(class);
        let c = self.tables.slabs.chunk(id);
        let (key_len, old_size) = (item::key_len(c), item::item_size(c));
        let new_len = digits.len().max(item::value_len(c));
        let new_size = item::total_size(key_len, new_len);
        let deadline = item::deadline(c);
        if new_size <= chunk_size {
            let c = self.tables.slabs.chunk_mut(id);
            let old_cas = item::cas(c);
            item::set_value_len(c, new_len);
            let v = item::value_mut(c);
            v[..digits.len()].copy_from_slice(digits);
            v[digits.len()..].fill(b' ');
            item::set_cas(c, cas);
            self.tables
                .rewritten(class, (old_size, old_cas), (new_size, cas));
            self.schedule(id, cas, deadline);
            return Some(id);
        }
        let flags = item::flags(c);
        self.scratch.clear();
        self.scratch.extend_from_slice(item::key(c));
        self.tables.unlink(id, hash, Gone::Removed);
        let class = self.tables.slabs.class_for(new_size)?;
        let allocated = self.tables.alloc(class, now);
        self.renew_relocated();
        let new = allocated?;
        let epoch = self.tables.epoch;
        let c = self.tables.slabs.chunk_mut(new);
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
}

/// Writes `value` in decimal into `buf`, returning the digits.
pub(super) fn format_decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
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

/// Reads a stored value as a counter the way memcached 1.6.18 does
/// (`safe_strtoull` over the value and the `"\r\n"` it keeps after it):
/// leading C whitespace, an optional `+` or `-`, decimal digits that fit in
/// 64 bits, then the end of the value, a NUL or whitespace (whatever
/// follows is ignored: `"5 5"` is 5, `"12\r\n"` is 12). A `-` negates
/// modulo 2^64, as `strtoull` does, and the result is refused if it reads
/// as negative in 64-bit two's complement while a `-` appears anywhere
/// before the first NUL; so `"-0"` is 0, `"-5"` is refused, and
/// `"-18446744073709551615"` is 1. `None` if it is not a counter.
pub(crate) fn parse_counter(value: &[u8]) -> Option<u64> {
    // C's isspace() in the "C" locale.
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = value.iter().position(|&b| !space(b))?;
    let (negative, at) = match value[start] {
        b'-' => (true, start + 1),
        b'+' => (false, start + 1),
        _ => (false, start),
    };
    let digits = value[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    let number = value[at..at + digits].iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })?;
    if value.get(at + digits).is_some_and(|&b| b != 0 && !space(b)) {
        return None;
    }
    let n = if negative {
        number.wrapping_neg()
    } else {
        number
    };
    let up_to_nul = value.split(|&b| b == 0).next().unwrap_or_default();
    if (n as i64) < 0 && up_to_nul.contains(&b'-') {
        return None;
    }
    Some(n)
}
