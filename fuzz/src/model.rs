//! A reference model of one `storage::Shard`, and a [`Run`] that drives a
//! real shard and the model through the same operations and checks after
//! every one that they agree.
//!
//! The model is a map of what each key must hold (value, flag word,
//! deadline, and the CAS token once known), plus, for the order of
//! evictions, the slab class each item sits in and its place in that
//! class's LRU. After every operation:
//!
//! - every value, flag word, deadline and CAS token the shard returns is
//!   the model's current one for that key, and every reply (stored, not
//!   stored, exists, not found, too large, a counter's new value) is the
//!   one the model predicts;
//! - the shard holds exactly the keys the model holds, except keys that
//!   left through eviction: the keys gone must number the growth of the
//!   shard's `evictions` counter in that operation, so a key lost any
//!   other way is caught (keys expire and are flushed in the model too);
//! - where the run sees which keys were evicted (the shard's eviction log,
//!   a hook of corecache's test builds), each was live, in the class the
//!   model has it in, and older than every item of its class that stays:
//!   eviction takes the least recently used;
//! - CAS tokens of stores only grow;
//! - the shard takes no page past its memory limit.
//!
//! [`Run::finish`] then flushes and ticks: every item and byte must come
//! back, and the pages must come within the limit.
//!
//! Written once, used twice: the fuzz crate's `shard` target decodes the
//! operations from the fuzzer's bytes (`fuzz/src/shard.rs`), and
//! corecache's storage tests generate them with proptest
//! (`src/storage/tests/mod.rs` includes this file by its path). It uses
//! corecache's public API only, by the crate's name, which corecache's own
//! test builds give the crate too.

use corecache::storage::shard::BUMP_INTERVAL_SECS;
use corecache::storage::{
    ArithOp, ArithOutcome, Deadline, Millis, Shard, ShardConfig, Store, StoreMode, StoreOutcome,
    item, key_hash, slab_class_sizes,
};
use std::collections::HashMap;

/// How a store treats what the key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `set`.
    Set,
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `append`.
    Append,
    /// `prepend`.
    Prepend,
    /// `cas` with the token the model knows (0 if it knows none).
    CasRight,
    /// `cas` with a token one past it.
    CasWrong,
}

/// A time to live, relative to the run's clock when the operation runs.
#[derive(Clone, Copy, Debug)]
pub enum Ttl {
    /// No expiry.
    Never,
    /// Expires this many milliseconds from now.
    In(Millis),
    /// Already expired: `Deadline::at(now)`.
    Past,
}

impl Ttl {
    fn deadline(self, now: Millis) -> Deadline {
        match self {
            Ttl::Never => Deadline::NEVER,
            Ttl::In(ms) => Deadline::at(now + ms),
            Ttl::Past => Deadline::at(now),
        }
    }
}

/// One operation on the shard. Keys are numbers, named by the run.
#[derive(Clone, Debug)]
pub enum Op {
    /// A store of `value` under `key`.
    Store {
        /// How it treats the current value.
        mode: Mode,
        /// The key's number.
        key: u8,
        /// The bytes stored (or appended, prepended).
        value: Vec<u8>,
        /// The flag word.
        flags: u32,
        /// Its time to live.
        ttl: Ttl,
    },
    /// `get`.
    Get(u8),
    /// `gat`: a get that sets a new time to live.
    Gat(u8, Ttl),
    /// `touch`.
    Touch(u8, Ttl),
    /// `delete`.
    Delete(u8),
    /// What the server does to the key of a `set` too large to parse.
    Discard(u8),
    /// `incr` or `decr` by a delta.
    Arith(u8, ArithOp, u64),
    /// `flush_all` this many milliseconds from now (0: at once).
    Flush(Millis),
    /// An expiry tick at the current time.
    Tick,
    /// The clock moves on.
    Advance(Millis),
    /// A new memory limit, in pages.
    MemoryLimit(usize),
    /// `slabs reassign <src> <dst>`, in memcached's class numbers.
    Reassign(i64, i64),
}

/// What the shard reports of each eviction since the last call: the key
/// and its slab class (`Shard::take_evictions` in corecache's tests).
pub type EvictionLog = fn(&mut Shard) -> Vec<(Vec<u8>, usize)>;

/// A stored value read as a counter, the way memcached 1.6 reads one (as
/// `storage::Shard::arith` documents it): leading C whitespace, an
/// optional sign, decimal digits that fit in 64 bits, then the end, a NUL
/// or whitespace; a `-` negates modulo 2^64, and a result negative as an
/// i64 is refused if a `-` comes before the first NUL. Written here from
/// that description, not taken from the shard, so the two can disagree.
fn counter(value: &[u8]) -> Option<u64> {
    let space = |b: &u8| b" \t\n\x0b\x0c\r".contains(b);
    let text: Vec<u8> = value.iter().copied().skip_while(|b| space(b)).collect();
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, &text[..]),
    };
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    let after = text.get(digits);
    if digits == 0 || after.is_some_and(|b| *b != 0 && !space(b)) {
        return None;
    }
    let n: u64 = std::str::from_utf8(&text[..digits]).ok()?.parse().ok()?;
    let n = if negative { n.wrapping_neg() } else { n };
    let before_nul = value.split(|&b| b == 0).next().unwrap_or_default();
    if n > i64::MAX as u64 && before_nul.contains(&b'-') {
        return None;
    }
    Some(n)
}

/// What one key holds, as the model knows it.
#[derive(Clone, Debug)]
struct Item {
    value: Vec<u8>,
    flags: u32,
    /// `None` after a counter update: the new token is known from a read.
    cas: Option<u64>,
    deadline: Deadline,
    stored_at: Millis,
    /// The slab class of the chunk holding it.
    class: usize,
    /// Its place in its class's LRU: a higher number is more recent.
    lru_seq: u64,
    /// When it last moved to the head of its LRU (seconds): the shard
    /// moves it again only `BUMP_INTERVAL_SECS` later.
    moved_secs: u32,
}

struct Model {
    items: HashMap<u8, Item>,
    /// A delayed flush: everything stored at or before it dies then.
    flush_at: Option<Millis>,
    last_cas: u64,
    /// The chunk size of each slab class, smallest first.
    class_sizes: Vec<usize>,
    /// The last LRU place handed out.
    next_seq: u64,
}

impl Model {
    /// Applies a delayed flush that fell due; it stays recorded during its
    /// very millisecond, since a store then is also at or before it.
    fn catch_up(&mut self, now: Millis) {
        if let Some(at) = self.flush_at.filter(|&at| at <= now) {
            self.items.retain(|_, item| item.stored_at > at);
            if at < now {
                self.flush_at = None;
            }
        }
    }

    /// The live item under `k`; an expired one is dropped.
    fn live(&mut self, k: u8, now: Millis) -> Option<&mut Item> {
        if self
            .items
            .get(&k)
            .is_some_and(|item| item.deadline.is_expired(now))
        {
            self.items.remove(&k);
        }
        self.items.get_mut(&k)
    }

    /// The class whose chunks hold an item of this key and value length.
    fn class_for(&self, key_len: usize, value_len: usize) -> usize {
        let size = item::total_size(key_len, value_len);
        self.class_sizes.partition_point(|&c| c < size)
    }

    /// A place at the head of an LRU.
    fn head(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// A hit or an in-place rewrite: the item moves to the head only if it
    /// last moved at least the bump interval ago, as in the shard.
    fn bump(&mut self, k: u8, now: Millis) {
        let now_secs = (now / 1000) as u32;
        let due = self
            .items
            .get(&k)
            .is_some_and(|item| now_secs.saturating_sub(item.moved_secs) >= BUMP_INTERVAL_SECS);
        if due {
            let seq = self.head();
            let item = self.items.get_mut(&k).unwrap();
            item.lru_seq = seq;
            item.moved_secs = now_secs;
        }
    }
}

/// A shard and its model, driven together; see the module doc.
pub struct Run {
    /// The shard under test.
    pub shard: Shard,
    model: Model,
    /// The key of each key number.
    names: Vec<Vec<u8>>,
    now: Millis,
    evictions: Option<EvictionLog>,
}

impl Run {
    /// An empty shard of `config` whose key number `k` is `names[k]`. With
    /// `evictions`, the run reads which keys each operation evicted and
    /// checks the LRU order; the shard must be logging them.
    pub fn new(config: &ShardConfig, names: Vec<Vec<u8>>, evictions: Option<EvictionLog>) -> Run {
        assert!(names.len() <= 256, "key numbers are bytes");
        Run {
            shard: Shard::new(config),
            model: Model {
                items: HashMap::new(),
                flush_at: None,
                last_cas: 0,
                class_sizes: slab_class_sizes(config),
                next_seq: 0,
            },
            names,
            now: 0,
            evictions,
        }
    }

    /// Runs `op` on the shard and the model and checks that they agree.
    pub fn apply(&mut self, op: &Op) {
        let now = self.now;
        self.model.catch_up(now);
        let evictions = self.shard.stats().evictions;
        let pages = self.shard.pages_allocated();
        match *op {
            Op::Store {
                mode,
                key,
                ref value,
                flags,
                ttl,
            } => self.store(mode, key, value, flags, ttl.deadline(now)),
            Op::Get(k) => self.get(op, k, None),
            Op::Gat(k, ttl) => self.get(op, k, Some(ttl.deadline(now))),
            Op::Touch(k, ttl) => {
                let key = &self.names[usize::from(k)];
                let deadline = ttl.deadline(now);
                let hit = self.shard.touch(key, key_hash(key), deadline, now);
                let item = self.model.live(k, now);
                assert_eq!(hit, item.is_some(), "{op:?}");
                if let Some(item) = item {
                    item.deadline = deadline;
                    self.model.bump(k, now);
                }
            }
            Op::Delete(k) => {
                let key = &self.names[usize::from(k)];
                let hit = self.shard.delete(key, key_hash(key), now);
                assert_eq!(hit, self.model.live(k, now).is_some(), "{op:?}");
                self.model.items.remove(&k);
            }
            Op::Discard(k) => {
                let key = &self.names[usize::from(k)];
                self.shard.discard(key, key_hash(key), now);
                self.model.items.remove(&k);
            }
            Op::Arith(k, arith, delta) => self.arith(op, k, arith, delta),
            Op::Flush(delay) => {
                self.shard.flush(now + delay, now);
                if delay == 0 {
                    self.model.items.clear();
                    self.model.flush_at = None;
                } else {
                    self.model.flush_at = Some(now + delay);
                }
            }
            Op::Tick => self.shard.tick(now),
            Op::Advance(ms) => self.now += ms,
            Op::MemoryLimit(pages) => {
                let bytes = pages * self.shard.page_size();
                self.shard
                    .set_memory_limit(bytes)
                    .expect("a few pages are addressable");
            }
            Op::Reassign(src, dst) => {
                self.shard.slabs_reassign(src, dst, now);
            }
        }
        self.reconcile(op, evictions, pages);
    }

    /// `get`, or with `touch` a `gat`: the shard's item is the model's.
    fn get(&mut self, op: &Op, k: u8, touch: Option<Deadline>) {
        let now = self.now;
        let key = &self.names[usize::from(k)];
        let hash = key_hash(key);
        let got = match touch {
            None => self.shard.get(key, hash, now),
            Some(deadline) => self.shard.get_and_touch(key, hash, deadline, now),
        };
        let got = got.map(|i| (i.key.to_vec(), i.value.to_vec(), i.flags, i.cas, i.deadline));
        match (got, self.model.live(k, now)) {
            (None, None) => {}
            (Some((got_key, value, flags, cas, deadline)), Some(item)) => {
                assert_eq!(&got_key, key);
                assert_eq!(value, item.value, "{op:?}: the value of key {k}");
                assert_eq!(flags, item.flags, "{op:?}: the flags of key {k}");
                if let Some(expected) = item.cas {
                    assert_eq!(cas, expected, "{op:?}: the CAS of key {k}");
                }
                item.cas = Some(cas);
                item.deadline = touch.unwrap_or(item.deadline);
                assert_eq!(deadline, item.deadline, "{op:?}: the deadline of key {k}");
                self.model.bump(k, now);
            }
            (got, want) => panic!("{op:?}: shard {got:?}, model {want:?}"),
        }
    }

    /// A store, and what the model says it must answer.
    fn store(&mut self, mode: Mode, k: u8, value: &[u8], flags: u32, deadline: Deadline) {
        let now = self.now;
        let (shard, model) = (&mut self.shard, &mut self.model);
        let key = &self.names[usize::from(k)];
        let known = model.live(k, now).and_then(|item| item.cas).unwrap_or(0);
        let store_mode = match mode {
            Mode::Set => StoreMode::Set,
            Mode::Add => StoreMode::Add,
            Mode::Replace => StoreMode::Replace,
            Mode::Append => StoreMode::Append,
            Mode::Prepend => StoreMode::Prepend,
            // 0 and 1 are never the token of an item whose token the model
            // does not know (that is a counter's, handed out later).
            Mode::CasRight => StoreMode::Cas(known),
            Mode::CasWrong => StoreMode::Cas(known + 1),
        };
        let request = Store {
            mode: store_mode,
            key,
            hash: key_hash(key),
            flags,
            deadline,
            value,
        };
        let got = shard.store(&request, now);
        let what = format!("{mode:?} of {} bytes to key {k}", value.len());
        if !shard.fits(key.len(), value.len()) {
            assert_eq!(got, StoreOutcome::TooLarge, "{what}");
            if mode == Mode::Set {
                // A refused set drops the old value, as memcached does.
                model.items.remove(&k);
            }
            return;
        }
        let current = model.live(k, now).cloned();
        let refused = match (store_mode, &current) {
            (StoreMode::Add, Some(_)) => Some(StoreOutcome::NotStored),
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                Some(StoreOutcome::NotStored)
            }
            (StoreMode::Cas(_), None) => Some(StoreOutcome::NotFound),
            (StoreMode::Cas(cas), Some(item)) if item.cas != Some(cas) => {
                Some(StoreOutcome::Exists)
            }
            (StoreMode::Append | StoreMode::Prepend, Some(item))
                if !shard.fits(key.len(), item.value.len() + value.len()) =>
            {
                Some(StoreOutcome::NotStored)
            }
            _ => None,
        };
        if let Some(want) = refused {
            assert_eq!(got, want, "{what}");
            return;
        }
        let cas = match got {
            StoreOutcome::Stored(cas) => cas,
            StoreOutcome::OutOfMemory => {
                // The old item was unlinked before the allocation failed.
                model.items.remove(&k);
                return;
            }
            other => panic!("{what}: {other:?}, the model says it stores"),
        };
        assert!(cas > model.last_cas, "{what}: CAS {cas} not fresh");
        model.last_cas = cas;
        let new = match (mode, current.clone()) {
            (Mode::Append, Some(mut item)) => {
                item.value.extend_from_slice(value);
                item
            }
            (Mode::Prepend, Some(mut item)) => {
                item.value.splice(..0, value.iter().copied());
                item
            }
            _ => Item {
                value: value.to_vec(),
                flags,
                cas: None,
                deadline,
                stored_at: now,
                class: 0,
                lru_seq: 0,
                moved_secs: 0,
            },
        };
        // Rewritten in its chunk when the class is the same (its LRU place
        // kept unless a bump is due), else stored in a new chunk at the
        // head of its class.
        let class = model.class_for(key.len(), new.value.len());
        let in_place = current.as_ref().is_some_and(|item| item.class == class)
            && model.flush_at != Some(now)
            && !new.deadline.is_expired(now);
        let (lru_seq, moved_secs) = match &current {
            Some(item) if in_place => (item.lru_seq, item.moved_secs),
            _ => (model.head(), (now / 1000) as u32),
        };
        let item = Item {
            cas: Some(cas),
            stored_at: now,
            class,
            lru_seq,
            moved_secs,
            ..new
        };
        model.items.insert(k, item);
        if in_place {
            model.bump(k, now);
        }
    }

    /// `incr` or `decr`: the model's counter, written back as memcached
    /// writes it.
    fn arith(&mut self, op: &Op, k: u8, arith: ArithOp, delta: u64) {
        let now = self.now;
        let key = &self.names[usize::from(k)];
        let got = self.shard.arith(key, key_hash(key), arith, delta, now);
        let want = match self.model.live(k, now) {
            None => ArithOutcome::NotFound,
            Some(item) => match counter(&item.value) {
                None => ArithOutcome::NonNumeric,
                Some(n) => {
                    let n = match arith {
                        ArithOp::Incr => n.wrapping_add(delta),
                        ArithOp::Decr => n.saturating_sub(delta),
                    };
                    // memcached writes a shorter number over the old one,
                    // padded with spaces.
                    let mut value = n.to_string().into_bytes();
                    if value.len() < item.value.len() {
                        value.resize(item.value.len(), b' ');
                    }
                    (item.value, item.cas) = (value, None);
                    ArithOutcome::Value(n)
                }
            },
        };
        assert_eq!(got, want, "{op:?}");
        if let ArithOutcome::Value(_) = want {
            // A counter that outgrows its chunk moves to a new one, at the
            // head of its new class.
            let item = &self.model.items[&k];
            let value_len = item.value.len();
            if item::total_size(key.len(), value_len) > self.model.class_sizes[item.class] {
                let class = self.model.class_for(key.len(), value_len);
                let seq = self.model.head();
                let item = self.model.items.get_mut(&k).unwrap();
                (item.class, item.lru_seq) = (class, seq);
                item.moved_secs = (now / 1000) as u32;
            }
        }
    }

    /// The shard holds exactly the model's keys but for those it evicted,
    /// which leave the model; and it took no page past its limit.
    fn reconcile(&mut self, op: &Op, evictions_before: u64, pages_before: usize) {
        let now = self.now;
        let evicted = self.shard.stats().evictions - evictions_before;
        let logged = self.evictions.map(|take| take(&mut self.shard));
        if let Some(victims) = &logged {
            assert_eq!(
                victims.len() as u64,
                evicted,
                "after {op:?}: every eviction is logged"
            );
            self.check_lru_order(op, victims);
        }
        self.model.catch_up(now);
        let mut gone = Vec::new();
        for (k, key) in (0..).zip(&self.names) {
            let held = self.shard.peek(key, key_hash(key), now);
            match (held, self.model.live(k, now).is_some()) {
                (true, false) => panic!("after {op:?}: the shard holds key {k}, the model not"),
                (false, true) => gone.push(k),
                _ => {}
            }
        }
        // Logged victims have left the model already: nothing else may go.
        let unexplained = if logged.is_some() { 0 } else { evicted };
        assert_eq!(
            gone.len() as u64,
            unexplained,
            "after {op:?}: keys {gone:?} are gone, {evicted} evictions reported"
        );
        for k in gone {
            self.model.items.remove(&k);
        }
        let pages = self.shard.pages_allocated();
        assert!(
            pages <= self.shard.page_limit() || pages <= pages_before,
            "after {op:?}: {pages} pages, the limit {}, {pages_before} before",
            self.shard.page_limit()
        );
    }

    /// Each victim was live in the class the model has it in, and no item
    /// of that class that stays is older than the newest victim.
    fn check_lru_order(&mut self, op: &Op, victims: &[(Vec<u8>, usize)]) {
        let now = self.now;
        let mut newest_victim: HashMap<usize, u64> = HashMap::new();
        for (key, class) in victims {
            let k = self
                .names
                .iter()
                .position(|name| name == key)
                .unwrap_or_else(|| panic!("after {op:?}: evicted {key:?}, no key of the run"));
            let k = k as u8;
            let item = self
                .model
                .live(k, now)
                .unwrap_or_else(|| panic!("after {op:?}: evicted key {k}, not live"));
            assert_eq!(
                item.class, *class,
                "after {op:?}: key {k} evicted from another class"
            );
            let seq = item.lru_seq;
            self.model.items.remove(&k);
            let newest = newest_victim.entry(*class).or_default();
            *newest = (*newest).max(seq);
        }
        for (k, item) in &self.model.items {
            if let Some(&victim) = newest_victim.get(&item.class) {
                assert!(
                    item.deadline.is_expired(now) || item.lru_seq > victim,
                    "after {op:?}: class {}: evicted an item newer than key {k}, which stayed",
                    item.class
                );
            }
        }
    }

    /// A flush and a few ticks take everything back.
    pub fn finish(&mut self) {
        let now = self.now;
        self.shard.flush(now, now);
        for _ in 0..100 {
            let stats = self.shard.stats();
            if stats.curr_items == 0 && self.shard.pages_allocated() <= self.shard.page_limit() {
                break;
            }
            self.shard.tick(now);
        }
        let stats = self.shard.stats();
        assert_eq!(
            (stats.curr_items, stats.bytes),
            (0, 0),
            "left after a flush"
        );
        assert!(self.shard.pages_allocated() <= self.shard.page_limit());
    }
}
