//! A `storage::Shard` driven by an operation sequence, against the
//! reference model of [`super::model`].
//!
//! The input picks a shard configuration (roomy, or a few small pages so
//! that eviction, page moves and out-of-memory paths run) and a key space,
//! then decodes into operations: the store family with every mode and CAS
//! right or wrong, get, gat, touch, delete, discard, incr and decr on
//! counters in the forms memcached reads, flush now or later, tick, time
//! advancing by milliseconds to hours, a memory limit changed at run time,
//! and `slabs reassign`. The model checks the shard after every operation
//! and at the end (see its module doc); this file only decodes.

use super::model::{Mode, Op, Run, Ttl};
use corecache::storage::{ArithOp, ShardConfig};

/// Checks the operations `input` decodes to; see the module doc.
pub fn check(input: &[u8]) {
    let mut input = Input(input);
    let config = config(input.byte());
    let keys = [4, 16, 64][usize::from(input.byte()) % 3];
    let mut run = Run::new(&config, (0..keys).map(key_of).collect(), None);
    // Values made so far, to make each one's bytes unique.
    let mut values = 0;
    while !input.0.is_empty() {
        run.apply(&decode(&mut input, keys, &mut values));
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

/// A time to live: mostly none, else from 50 ms to 16 hours, or past.
fn ttl(b: u8) -> Ttl {
    match b {
        0..=127 => Ttl::Never,
        128..=191 => Ttl::In(u64::from(b - 127) * 50),
        192..=223 => Ttl::In(u64::from(b - 191) * 60_000),
        224..=239 => Ttl::In(u64::from(b - 223) * 3_600_000),
        240..=255 => Ttl::Past,
    }
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

/// The next operation: a byte for its kind, one for its key, then what
/// the kind needs.
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
            let ttl = ttl(input.byte());
            Op::Store {
                mode,
                key,
                value,
                flags,
                ttl,
            }
        }
        80..=119 => Op::Get(key),
        120..=129 => Op::Gat(key, ttl(input.byte())),
        130..=139 => Op::Touch(key, ttl(input.byte())),
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
