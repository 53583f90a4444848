//! A `storage::Shard` driven by an operation sequence, against a model.
//!
//! The input picks a shard configuration (roomy, or a few small pages so
//! that eviction, page moves and out-of-memory paths run) and a key space,
//! then decodes into operations: the store family with every mode and CAS
//! right or wrong, get, gat, touch, delete, discard, incr and decr on
//! counters in the forms memcached reads, flush now or later, tick, time
//! advancing by milliseconds to hours, a memory limit changed at run time,
//! and `slabs reassign`. The model is a `HashMap` of what each key must
//! hold. After every operation:
//!
//! - every value, flag word, deadline and CAS token the shard returns is
//!   the model's current one for that key, and every reply (stored, not
//!   stored, exists, not found, too large, a counter's new value) is the
//!   one the model predicts;
//! - the shard holds exactly the keys the model holds, except keys that
//!   left through eviction: the number of keys gone must equal the growth
//!   of the shard's `evictions` counter in that operation, so a key lost
//!   any other way is caught (keys expire and are flushed in the model too);
//! - CAS tokens of stores only grow;
//! - the shard takes no page past its memory limit.
//!
//! At the end, a flush and a few ticks must take every item and byte back
//! and bring the pages within the limit.

use corecache::storage::{
    ArithOp, ArithOutcome, Deadline, Millis, Shard, ShardConfig, Store, StoreMode, StoreOutcome,
    key_hash,
};
use std::collections::HashMap;

/// Checks the operations `input` decodes to; see the module doc.
pub fn check(input: &[u8]) {
    let mut input = Input(input);
    let config = config(input.byte());
    let keys = [4, 16, 64][usize::from(input.byte()) % 3];
    let mut run = Run::new(&config, keys);
    while !input.0.is_empty() {
        let op = Op::decode(&mut input, keys, &mut run.values);
        run.apply(&op);
    }
    run.finish();
}

/// One of a few shard sizes: roomy (nothing is ever evicted), or a handful
/// of small pages (evictions, page moves, items too large for a page).
fn config(choice: u8) -> ShardConfig {
    let growth = [1.25, 2.0, 1.07][usize::from(choice >> 4) % 3];
    let (memory, page) = match choice % 4 {
        // 128 pages of 64 KiB: room for every key in a class of its own
        // (small pages keep each run cheap: a new page is carved whole).
        0 => (8 << 20, 64 << 10),
        1 => (2 * 4096, 4096),
        2 => (5 * 4096, 4096),
        _ => (3 * 1024, 1024),
    };
    ShardConfig {
        slab_page_size: page,
        max_item_size: page,
        slab_growth_factor: growth,
        ..ShardConfig::for_tests(memory)
    }
}

/// The fuzzer's bytes, read one at a time; zeros once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// `cas` with the token the model knows (0 if it knows none).
    CasRight,
    /// `cas` with a token one past it.
    CasWrong,
}

#[derive(Clone, Copy, Debug)]
enum Ttl {
    Never,
    In(Millis),
    /// Already expired: `Deadline::at(now)`.
    Past,
}

impl Ttl {
    fn decode(b: u8) -> Ttl {
        match b {
            0..=127 => Ttl::Never,
            128..=191 => Ttl::In(u64::from(b - 127) * 50),
            192..=223 => Ttl::In(u64::from(b - 191) * 60_000),
            224..=239 => Ttl::In(u64::from(b - 223) * 3_600_000),
            240..=255 => Ttl::Past,
        }
    }

    fn deadline(self, now: Millis) -> Deadline {
        match self {
            Ttl::Never => Deadline::NEVER,
            Ttl::In(ms) => Deadline::at(now + ms),
            Ttl::Past => Deadline::at(now),
        }
    }
}

#[derive(Debug)]
enum Op {
    Store {
        mode: Mode,
        key: u8,
        value: Vec<u8>,
        flags: u32,
        ttl: Ttl,
    },
    Get(u8),
    Gat(u8, Ttl),
    Touch(u8, Ttl),
    Delete(u8),
    /// What the server does to the key of a `set` too large to parse.
    Discard(u8),
    Arith(u8, ArithOp, u64),
    /// `flush_all` this many milliseconds from now (0: at once).
    Flush(Millis),
    Tick,
    Advance(Millis),
    /// A new memory limit, in pages.
    MemoryLimit(usize),
    /// `slabs reassign <src> <dst>`, in memcached's class numbers.
    Reassign(i64, i64),
}

/// Numbers worth trying as deltas and counters besides the small ones.
const SPECIAL: [u64; 8] = [
    u64::MAX,
    u64::MAX - 1,
    i64::MAX as u64,
    1 << 63,
    9_999_999_999,
    99_999,
    1_000_000_000_000_000_000,
    10_000_000_000_000_000_000,
];

fn number(b: u8) -> u64 {
    match b {
        0..=199 => u64::from(b),
        _ => SPECIAL[usize::from(b) % SPECIAL.len()],
    }
}

impl Op {
    fn decode(input: &mut Input<'_>, keys: u8, values: &mut u64) -> Op {
        let kind = input.byte();
        let key = input.byte() % keys;
        match kind {
            0..=79 => {
                let mode = match input.byte() % 7 {
                    0 => Mode::Set,
                    1 => Mode::Add,
                    2 => Mode::Replace,
                    3 => Mode::Append,
                    4 => Mode::Prepend,
                    5 => Mode::CasRight,
                    _ => Mode::CasWrong,
                };
                let value = value(input, values);
                let flags = u32::from(input.byte()).wrapping_mul(16_777_619);
                let ttl = Ttl::decode(input.byte());
                Op::Store {
                    mode,
                    key,
                    value,
                    flags,
                    ttl,
                }
            }
            80..=119 => Op::Get(key),
            120..=129 => Op::Gat(key, Ttl::decode(input.byte())),
            130..=139 => Op::Touch(key, Ttl::decode(input.byte())),
            140..=159 => Op::Delete(key),
            160..=184 => {
                let op = if input.byte() & 1 == 0 {
                    ArithOp::Incr
                } else {
                    ArithOp::Decr
                };
                Op::Arith(key, op, number(input.byte()))
            }
            185..=189 => match input.byte() {
                b if b % 2 == 0 => Op::Flush(0),
                b => Op::Flush(u64::from(b / 2) * 100),
            },
            190..=209 => Op::Tick,
            210..=234 => Op::Advance(match input.byte() {
                b @ 0..=99 => u64::from(b),
                b @ 100..=179 => u64::from(b - 99) * 100,
                b @ 180..=239 => u64::from(b - 179) * 10_000,
                b => u64::from(b - 239) * 3_600_000,
            }),
            235..=241 => Op::MemoryLimit(usize::from(input.byte() % 10)),
            242..=249 => {
                let (src, dst) = (input.byte(), input.byte());
                Op::Reassign(i64::from(src % 24) - 1, i64::from(dst % 24) - 1)
            }
            250..=255 => Op::Discard(key),
        }
    }
}

/// A value: bytes no other value has (so a wrong one cannot pass for
/// right), of a length from empty to beyond a small page, or a counter in
/// one of the forms memcached reads or refuses.
fn value(input: &mut Input<'_>, values: &mut u64) -> Vec<u8> {
    let shape = input.byte();
    let size = input.byte();
    if shape % 8 == 7 {
        const PREFIX: [&[u8]; 8] = [b"", b"", b"", b" ", b"\t ", b"-", b"+", b"00"];
        const SUFFIX: [&[u8]; 8] = [b"", b"", b"", b" ", b"\r\n", b"x", b"\0-", b" 7"];
        let form = usize::from(input.byte());
        let mut v = PREFIX[form % 8].to_vec();
        v.extend_from_slice(number(size).to_string().as_bytes());
        v.extend_from_slice(SUFFIX[form / 8 % 8]);
        return v;
    }
    let size = usize::from(size);
    let len = match shape % 8 {
        0 => 0,
        1..=3 => size,
        4 | 5 => size * 8,
        _ => 1000 + size * 16,
    };
    *values += 1;
    let stamp = format!("<{values}>");
    stamp.bytes().cycle().take(len).collect()
}

/// A key of 1 to 55 bytes, so keys land in different slab classes.
fn key_of(k: u8) -> Vec<u8> {
    format!("{k:0width$}", width = 1 + usize::from(k % 7) * 9).into_bytes()
}

/// A stored value read as a counter, the way memcached 1.6 reads one (as
/// `storage::Shard::arith` documents it): leading C whitespace, an
/// optional sign, decimal digits that fit in 64 bits, then the end, a NUL
/// or whitespace; a `-` negates modulo 2^64, and a result negative as an
/// i64 is refused if a `-` comes before the first NUL.
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

#[derive(Clone, Debug)]
struct Item {
    value: Vec<u8>,
    flags: u32,
    /// `None` after a counter update: the new token is known from a read.
    cas: Option<u64>,
    deadline: Deadline,
    stored_at: Millis,
}

#[derive(Default)]
struct Model {
    items: HashMap<u8, Item>,
    /// A delayed flush: everything stored at or before it dies then.
    flush_at: Option<Millis>,
    last_cas: u64,
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
}

struct Run {
    shard: Shard,
    model: Model,
    /// The key of each key number ([`key_of`]), made once.
    names: Vec<Vec<u8>>,
    now: Millis,
    /// Values made so far, to make each one's bytes unique.
    values: u64,
}

impl Run {
    fn new(config: &ShardConfig, keys: u8) -> Run {
        Run {
            shard: Shard::new(config),
            model: Model::default(),
            names: (0..keys).map(key_of).collect(),
            now: 0,
            values: 0,
        }
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now;
        self.model.catch_up(now);
        let evictions = self.shard.stats().evictions;
        let pages = self.shard.pages_allocated();
        let (shard, model, names) = (&mut self.shard, &mut self.model, &self.names);
        let name = |k: u8| &names[usize::from(k)];
        match *op {
            Op::Store {
                mode,
                key,
                ref value,
                flags,
                ttl,
            } => {
                let deadline = ttl.deadline(now);
                store(
                    shard,
                    model,
                    mode,
                    key,
                    name(key),
                    value,
                    flags,
                    deadline,
                    now,
                );
            }
            Op::Get(k) | Op::Gat(k, _) => {
                let key = name(k);
                let touch = match *op {
                    Op::Gat(_, ttl) => Some(ttl.deadline(now)),
                    _ => None,
                };
                let hash = key_hash(key);
                let got = match touch {
                    None => shard.get(key, hash, now),
                    Some(deadline) => shard.get_and_touch(key, hash, deadline, now),
                };
                let got =
                    got.map(|i| (i.key.to_vec(), i.value.to_vec(), i.flags, i.cas, i.deadline));
                match (got, model.live(k, now)) {
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
                    }
                    (got, want) => panic!("{op:?}: shard {got:?}, model {want:?}"),
                }
            }
            Op::Touch(k, ttl) => {
                let key = name(k);
                let deadline = ttl.deadline(now);
                let hit = shard.touch(key, key_hash(key), deadline, now);
                let item = model.live(k, now);
                assert_eq!(hit, item.is_some(), "{op:?}");
                if let Some(item) = item {
                    item.deadline = deadline;
                }
            }
            Op::Delete(k) => {
                let key = name(k);
                let hit = shard.delete(key, key_hash(key), now);
                assert_eq!(hit, model.live(k, now).is_some(), "{op:?}");
                model.items.remove(&k);
            }
            Op::Discard(k) => {
                let key = name(k);
                shard.discard(key, key_hash(key), now);
                model.items.remove(&k);
            }
            Op::Arith(k, arith, delta) => {
                let key = name(k);
                let got = shard.arith(key, key_hash(key), arith, delta, now);
                let want = match model.live(k, now) {
                    None => ArithOutcome::NotFound,
                    Some(item) => match counter(&item.value) {
                        None => ArithOutcome::NonNumeric,
                        Some(n) => {
                            let n = match arith {
                                ArithOp::Incr => n.wrapping_add(delta),
                                ArithOp::Decr => n.saturating_sub(delta),
                            };
                            // memcached writes a shorter number over the
                            // old one, padded with spaces.
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
            }
            Op::Flush(delay) => {
                shard.flush(now + delay, now);
                if delay == 0 {
                    model.items.clear();
                    model.flush_at = None;
                } else {
                    model.flush_at = Some(now + delay);
                }
            }
            Op::Tick => shard.tick(now),
            Op::Advance(ms) => self.now += ms,
            Op::MemoryLimit(pages) => {
                let bytes = pages * shard.page_size();
                shard
                    .set_memory_limit(bytes)
                    .expect("a few pages are addressable");
            }
            Op::Reassign(src, dst) => {
                shard.slabs_reassign(src, dst, now);
            }
        }
        self.reconcile(op, evictions, pages);
    }

    /// The shard holds exactly the model's keys but for those it reports
    /// evicted, which leave the model; and it took no page past its limit.
    fn reconcile(&mut self, op: &Op, evictions_before: u64, pages_before: usize) {
        let now = self.now;
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
        let evicted = self.shard.stats().evictions - evictions_before;
        assert_eq!(
            gone.len() as u64,
            evicted,
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

    /// A flush and a few ticks take everything back.
    fn finish(&mut self) {
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

/// A store, and what the model says it must answer.
#[allow(clippy::too_many_arguments)]
fn store(
    shard: &mut Shard,
    model: &mut Model,
    mode: Mode,
    k: u8,
    key: &[u8],
    value: &[u8],
    flags: u32,
    deadline: Deadline,
    now: Millis,
) {
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
        (StoreMode::Cas(cas), Some(item)) if item.cas != Some(cas) => Some(StoreOutcome::Exists),
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
    let item = match (mode, current) {
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
        },
    };
    let item = Item {
        cas: Some(cas),
        stored_at: now,
        ..item
    };
    model.items.insert(k, item);
}
