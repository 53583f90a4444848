//! Engine behaviour a client can compare with memcached 1.6.18: counters
//! read as numbers, what incr/decr write back, appends that would be too
//! large, how each command is counted in `stats`, and the memory an item
//! takes. The expected values are what a memcached 1.6.18 answered to the
//! same requests over the text and meta protocols, or (memory) what its
//! source says it allocates.

use super::{get, set, store};
use crate::storage::shard::parse_counter;
use crate::storage::*;

#[test]
fn counters_are_read_as_memcached_s_safe_strtoull_reads_them() {
    let max = u64::MAX;
    let cases: [(&[u8], Option<u64>); 21] = [
        (b"  5", Some(5)),
        (b"+5", Some(5)),
        (b"5\r\n", Some(5)),
        (b"5\n", Some(5)),
        (b"\t7 ", Some(7)),
        (b"\x0b3", Some(3)),
        (b"\x0c3", Some(3)),
        (b"007", Some(7)),
        (b"5 5", Some(5)),
        (b"1\x002", Some(1)),
        (b"-0", Some(0)),
        (b"18446744073709551615", Some(max)),
        (b"-18446744073709551615", Some(1)),
        (b" +5", Some(5)),
        (b"12abc", None),
        (b"-5", None),
        (b"0x10", None),
        (b"   ", None),
        (b"+", None),
        (b"18446744073709551616", None),
        (b"", None),
    ];
    for (value, want) in cases {
        assert_eq!(
            parse_counter(value),
            want,
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn incr_and_decr_write_back_what_memcached_writes_back() {
    // (stored, incr 1 gives, then decr 200 gives), as memcached answered.
    let cases: [(&[u8], &[u8], &[u8]); 8] = [
        (b"  5", b"6  ", b"0  "),
        (b"+5", b"6 ", b"0 "),
        (b"5\r\n", b"6  ", b"0  "),
        (b"\t7 ", b"8  ", b"0  "),
        (b"99", b"100", b"0  "),
        (b"100", b"101", b"0  "),
        (
            b"18446744073709551615",
            b"0                   ",
            b"0                   ",
        ),
        (
            b"-18446744073709551615",
            b"2                    ",
            b"0                    ",
        ),
    ];
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    for (i, (stored, after_incr, after_decr)) in cases.into_iter().enumerate() {
        let key = format!("n{i}").into_bytes();
        let hash = key_hash(&key);
        set(&mut s, &key, stored, Deadline::NEVER, 0);
        let value = parse_counter(after_incr).unwrap();
        assert_eq!(
            s.arith(&key, hash, ArithOp::Incr, 1, 0),
            ArithOutcome::Value(value)
        );
        assert_eq!(
            get(&mut s, &key, 0).as_deref(),
            Some(after_incr),
            "case {i}"
        );
        assert_eq!(
            s.arith(&key, hash, ArithOp::Decr, 200, 0),
            ArithOutcome::Value(0)
        );
        assert_eq!(
            get(&mut s, &key, 0).as_deref(),
            Some(after_decr),
            "case {i}"
        );
    }
    set(&mut s, b"text", b"12abc", Deadline::NEVER, 0);
    let hash = key_hash(b"text");
    assert_eq!(
        s.arith(b"text", hash, ArithOp::Incr, 1, 0),
        ArithOutcome::NonNumeric
    );
    assert_eq!(get(&mut s, b"text", 0).as_deref(), Some(&b"12abc"[..]));
}

#[test]
fn an_append_or_prepend_too_large_together_is_not_stored_and_keeps_the_item() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    let never = Deadline::NEVER;
    // The largest value that fits with a one-byte key, less 200 bytes.
    let big = vec![b'x'; (1 << 20) - item::HEADER - 1 - 200];
    assert!(matches!(
        set(&mut s, b"k", &big, never, 0),
        StoreOutcome::Stored(_)
    ));
    for mode in [StoreMode::Append, StoreMode::Prepend] {
        let outcome = store(&mut s, mode, b"k", &[b'y'; 300], 0, never, 0);
        assert_eq!(outcome, StoreOutcome::NotStored, "{mode:?}");
    }
    assert_eq!(get(&mut s, b"k", 0), Some(big.clone()));
    assert_eq!(
        s.stats().store_too_large,
        0,
        "memcached does not count these"
    );
    let outcome = store(&mut s, StoreMode::Append, b"k", &[b'y'; 10], 0, never, 0);
    assert!(matches!(outcome, StoreOutcome::Stored(_)));
    assert_eq!(get(&mut s, b"k", 0).unwrap().len(), big.len() + 10);
}

#[test]
fn only_a_set_too_large_by_itself_drops_the_old_item() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    let never = Deadline::NEVER;
    let huge = vec![b'z'; 1 << 20];
    set(&mut s, b"k", b"old", never, 0);
    for mode in [
        StoreMode::Add,
        StoreMode::Replace,
        StoreMode::Append,
        StoreMode::Prepend,
        StoreMode::Cas(1),
    ] {
        let outcome = store(&mut s, mode, b"k", &huge, 0, never, 0);
        assert_eq!(outcome, StoreOutcome::TooLarge, "{mode:?}");
        assert_eq!(
            get(&mut s, b"k", 0).as_deref(),
            Some(&b"old"[..]),
            "{mode:?}"
        );
    }
    assert_eq!(set(&mut s, b"k", &huge, never, 0), StoreOutcome::TooLarge);
    assert_eq!(get(&mut s, b"k", 0), None);
    assert_eq!(s.stats().store_too_large, 6);
}

/// The counters a command moved, by memcached's names, shard-wide and
/// summed over the classes (`slabs:` prefix).
fn moved(before: &(ShardStats, Vec<SlabClassStats>), s: &Shard) -> Vec<(&'static str, u64)> {
    let after = (s.stats().clone(), s.slab_class_stats(0));
    let fields = |(st, classes): &(ShardStats, Vec<SlabClassStats>)| {
        let sum = |f: fn(&SlabClassStats) -> u64| classes.iter().map(f).sum::<u64>();
        [
            ("cmd_get", st.cmd_get),
            ("get_hits", st.get_hits),
            ("get_misses", st.get_misses),
            ("get_expired", st.get_expired),
            ("get_flushed", st.get_flushed),
            ("cmd_touch", st.cmd_touch),
            ("touch_hits", st.touch_hits),
            ("touch_misses", st.touch_misses),
            ("cmd_set", st.cmd_set),
            ("total_items", st.total_items),
            ("delete_misses", st.delete_misses),
            ("incr_hits", st.incr_hits),
            ("incr_misses", st.incr_misses),
            ("slabs:get_hits", sum(|c| c.get_hits)),
            ("slabs:touch_hits", sum(|c| c.touch_hits)),
            ("slabs:cmd_set", sum(|c| c.cmd_set)),
            ("slabs:incr_hits", sum(|c| c.incr_hits)),
        ]
    };
    fields(before)
        .into_iter()
        .zip(fields(&after))
        .filter(|((_, b), (_, a))| a != b)
        .map(|((name, b), (_, a))| (name, a - b))
        .collect()
}

fn snapshot(s: &Shard) -> (ShardStats, Vec<SlabClassStats>) {
    (s.stats().clone(), s.slab_class_stats(0))
}

#[test]
fn commands_are_counted_as_memcached_counts_them() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    let h = key_hash;
    let never = Deadline::NEVER;
    // An item that has expired by the time it is looked up at t = 2000.
    let expired = |s: &mut Shard, key: &[u8]| {
        set(s, key, b"1", Deadline::at(1000), 0);
    };
    let t = 2000;
    set(&mut s, b"g", b"x", never, 0);
    let check = |s: &mut Shard, op: &dyn Fn(&mut Shard), want: &[(&str, u64)]| {
        let before = snapshot(s);
        op(s);
        assert_eq!(moved(&before, s), want);
    };

    // gat: a touch, never a get.
    check(
        &mut s,
        &|s| assert!(s.get_and_touch(b"g", h(b"g"), never, t).is_some()),
        &[("cmd_touch", 1), ("touch_hits", 1), ("slabs:touch_hits", 1)],
    );
    check(
        &mut s,
        &|s| assert!(s.get_and_touch(b"no", h(b"no"), never, t).is_none()),
        &[("cmd_touch", 1), ("touch_misses", 1)],
    );
    expired(&mut s, b"e1");
    check(
        &mut s,
        &|s| assert!(s.get_and_touch(b"e1", h(b"e1"), never, t).is_none()),
        &[("get_expired", 1), ("cmd_touch", 1), ("touch_misses", 1)],
    );
    // Every lookup that meets an expired item counts it.
    expired(&mut s, b"e2");
    check(
        &mut s,
        &|s| assert!(!s.touch(b"e2", h(b"e2"), never, t)),
        &[("get_expired", 1), ("cmd_touch", 1), ("touch_misses", 1)],
    );
    expired(&mut s, b"e3");
    check(
        &mut s,
        &|s| {
            assert!(matches!(
                set(s, b"e3", b"y", never, t),
                StoreOutcome::Stored(_)
            ))
        },
        &[
            ("get_expired", 1),
            ("cmd_set", 1),
            ("total_items", 1),
            ("slabs:cmd_set", 1),
        ],
    );
    expired(&mut s, b"e4");
    check(
        &mut s,
        &|s| assert!(!s.delete(b"e4", h(b"e4"), t)),
        &[("get_expired", 1), ("delete_misses", 1)],
    );
    expired(&mut s, b"e5");
    check(
        &mut s,
        &|s| {
            assert_eq!(
                s.arith(b"e5", h(b"e5"), ArithOp::Incr, 1, t),
                ArithOutcome::NotFound
            )
        },
        &[("get_expired", 1), ("incr_misses", 1)],
    );

    // mg: a get, or with T a touch; what N creates is a hit, not a set.
    let mg = |s: &mut Shard, key: &[u8], req: MetaGet| s.meta_get(key, h(key), &req, t).is_some();
    let vivify = MetaGet {
        vivify: Some(Deadline::at(t + 30_000)),
        ..MetaGet::default()
    };
    let touch = MetaGet {
        touch: Some(Deadline::at(t + 60_000)),
        ..MetaGet::default()
    };
    check(
        &mut s,
        &|s| assert!(!mg(s, b"zz", MetaGet::default())),
        &[("cmd_get", 1), ("get_misses", 1)],
    );
    check(
        &mut s,
        &|s| assert!(mg(s, b"v1", vivify)),
        &[
            ("cmd_get", 1),
            ("get_hits", 1),
            ("total_items", 1),
            ("slabs:get_hits", 1),
        ],
    );
    check(
        &mut s,
        &|s| assert!(mg(s, b"v1", vivify)),
        &[("cmd_get", 1), ("get_hits", 1), ("slabs:get_hits", 1)],
    );
    check(
        &mut s,
        &|s| assert!(mg(s, b"v1", touch)),
        &[("cmd_touch", 1), ("touch_hits", 1), ("slabs:touch_hits", 1)],
    );
    check(
        &mut s,
        &|s| assert!(!mg(s, b"nope", touch)),
        &[("cmd_get", 1), ("get_misses", 1)],
    );
    let both = MetaGet {
        touch: touch.touch,
        ..vivify
    };
    check(
        &mut s,
        &|s| assert!(mg(s, b"v2", both)),
        &[
            ("cmd_touch", 1),
            ("touch_hits", 1),
            ("total_items", 1),
            ("slabs:touch_hits", 1),
        ],
    );
    expired(&mut s, b"e6");
    check(
        &mut s,
        &|s| assert!(!mg(s, b"e6", MetaGet::default())),
        &[("cmd_get", 1), ("get_misses", 1), ("get_expired", 1)],
    );

    // ma: what N creates is neither a set nor a miss.
    let ma = |s: &mut Shard, key: &[u8], req: ArithMeta| {
        s.meta_arith(key, h(key), ArithOp::Incr, 1, &req, t)
    };
    let create = ArithMeta {
        vivify: Some((never, 5)),
        ..ArithMeta::default()
    };
    check(
        &mut s,
        &|s| {
            assert!(matches!(
                ma(s, b"c1", create),
                MetaArithOutcome::Value { created: true, .. }
            ))
        },
        &[("total_items", 1)],
    );
    check(
        &mut s,
        &|s| {
            assert_eq!(
                ma(s, b"c2", ArithMeta::default()),
                MetaArithOutcome::NotFound
            )
        },
        &[("incr_misses", 1)],
    );
    check(
        &mut s,
        &|s| {
            assert!(matches!(
                ma(s, b"c1", ArithMeta::default()),
                MetaArithOutcome::Value { value: 6, .. }
            ))
        },
        &[("incr_hits", 1), ("slabs:incr_hits", 1)],
    );
    let wrong = ArithMeta {
        compare: Some(1),
        ..ArithMeta::default()
    };
    check(
        &mut s,
        &|s| assert_eq!(ma(s, b"c1", wrong), MetaArithOutcome::Exists),
        &[],
    );

    // A flushed item met by a get.
    set(&mut s, b"fl", b"x", never, t);
    s.flush(t, t);
    check(
        &mut s,
        &|s| assert!(get(s, b"fl", t).is_none()),
        &[("cmd_get", 1), ("get_misses", 1), ("get_flushed", 1)],
    );
}

/// The bytes memcached 1.6.18 takes for `n` items of this key and value
/// length with its default settings (`-n 48 -f 1.25`, 1 MiB pages, CAS
/// on, flags 0): the slab pages holding them plus its hash table, worked
/// out from its source as it stands in that release.
fn memcached_bytes(n: u64, key_len: usize, value_len: usize) -> u64 {
    // memcached.h: `sizeof(item)` on a 64-bit build (three pointers, two
    // times, nbytes, refcount, it_flags, slabs_clsid, nkey, padded to 8).
    const ITEM: usize = 48;
    const PAGE: u64 = 1 << 20;
    // items.c `item_make_header` + `do_item_alloc`: header, 8 bytes of
    // CAS, the key and its NUL, the value and its "\r\n".
    let total = ITEM + 8 + key_len + 1 + value_len + 2;
    // slabs.c `slabs_init`: the first class is `sizeof(item)` plus the
    // 48-byte minimum, each class rounded up to 8 and then grown by 1.25.
    let mut size = ITEM + 48;
    let chunk = loop {
        let aligned = size.div_ceil(8) * 8;
        if aligned >= total {
            break aligned as u64;
        }
        size = (aligned as f64 * 1.25) as usize;
    };
    let pages = n.div_ceil(PAGE / chunk);
    // assoc.c: 2^16 buckets of one pointer, doubled while the items
    // exceed 1.5 times the buckets.
    let mut buckets: u64 = 1 << 16;
    while n > buckets * 3 / 2 {
        buckets *= 2;
    }
    pages * PAGE + buckets * 8
}

#[test]
fn memory_per_item_is_below_memcached() {
    // 1M items of 12-byte keys and 100-byte values: slab pages plus index.
    let n = 1_000_000u64;
    let mut s = Shard::new(&ShardConfig::for_tests(1 << 30));
    let value = [b'v'; 100];
    for i in 0..n {
        let key = format!("key:{i:08}");
        assert_eq!(key.len(), 12);
        set(&mut s, key.as_bytes(), &value, Deadline::NEVER, 0);
    }
    s.tick(100);
    assert_eq!(s.stats().curr_items, n);
    let ours = s.pages_allocated() as u64 * (1 << 20) + s.index_memory() as u64;
    let theirs = memcached_bytes(n, 12, 100);
    eprintln!(
        "{:.1} bytes per item, memcached {:.1}",
        ours as f64 / n as f64,
        theirs as f64 / n as f64
    );
    assert!(ours < theirs, "{ours} bytes, memcached {theirs}");
}
