//! Tests of the whole shard engine: behaviour through the public interface,
//! memory reclamation, eviction and rebalancing here; the admin side in
//! `admin.rs`, what a client can compare with memcached in `parity.rs`,
//! and a randomized comparison against the shard model in `randomized.rs`.

mod admin;
// The counting allocator tests/alloc.rs uses too: per thread here, since
// other tests run beside this one.
#[path = "../../../tests/common/counting_alloc.rs"]
mod counting_alloc;
mod parity;
mod randomized;

use super::shard::TICK_EXPIRY_BUDGET;
use super::*;
use counting_alloc::thread_allocations;

fn set(
    shard: &mut Shard,
    key: &[u8],
    value: &[u8],
    deadline: Deadline,
    now: Millis,
) -> StoreOutcome {
    store(shard, StoreMode::Set, key, value, 0, deadline, now)
}

fn store(
    shard: &mut Shard,
    mode: StoreMode,
    key: &[u8],
    value: &[u8],
    flags: u32,
    deadline: Deadline,
    now: Millis,
) -> StoreOutcome {
    shard.store(
        &Store {
            mode,
            key,
            hash: key_hash(key),
            flags,
            deadline,
            value,
        },
        now,
    )
}

fn get(shard: &mut Shard, key: &[u8], now: Millis) -> Option<Vec<u8>> {
    shard.get(key, key_hash(key), now).map(|i| i.value.to_vec())
}

fn small_pages(memory: usize, page: usize) -> ShardConfig {
    ShardConfig {
        slab_page_size: page,
        max_item_size: page,
        ..ShardConfig::for_tests(memory)
    }
}

#[test]
fn key_hash_is_xxh3_the_same_in_every_build() {
    // XXH3_64bits of the empty input, from xxHash's own sanity checks: the
    // key -> shard map must not change with the process, build or crate
    // version, or a restarted server would look for keys in the wrong shard.
    assert_eq!(key_hash(b""), 0x2D06_8005_38D3_94C2);
    assert_ne!(key_hash(b"a"), key_hash(b"b"));
}

#[test]
fn store_modes_and_counters() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    let never = Deadline::NEVER;
    assert_eq!(
        store(&mut s, StoreMode::Replace, b"k", b"v", 0, never, 0),
        StoreOutcome::NotStored
    );
    let StoreOutcome::Stored(c1) = store(&mut s, StoreMode::Add, b"k", b"v", 3, never, 0) else {
        panic!()
    };
    assert_eq!(
        store(&mut s, StoreMode::Add, b"k", b"x", 0, never, 0),
        StoreOutcome::NotStored
    );
    assert!(
        matches!(store(&mut s, StoreMode::Append, b"k", b"22", 9, never, 0), StoreOutcome::Stored(c) if c > c1)
    );
    assert!(matches!(
        store(&mut s, StoreMode::Prepend, b"k", b"1", 9, never, 0),
        StoreOutcome::Stored(_)
    ));
    let item = s.get(b"k", key_hash(b"k"), 0).unwrap();
    assert_eq!((item.value, item.flags), (&b"1v22"[..], 3));
    let cas = item.cas;
    assert_eq!(
        store(&mut s, StoreMode::Cas(cas + 1), b"k", b"n", 0, never, 0),
        StoreOutcome::Exists
    );
    assert!(matches!(
        store(&mut s, StoreMode::Cas(cas), b"k", b"5", 0, never, 0),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(
        store(&mut s, StoreMode::Cas(1), b"zz", b"n", 0, never, 0),
        StoreOutcome::NotFound
    );
    let h = key_hash(b"k");
    assert_eq!(
        s.arith(b"k", h, ArithOp::Incr, 5, 0),
        ArithOutcome::Value(10)
    );
    assert_eq!(
        s.arith(b"k", h, ArithOp::Decr, 20, 0),
        ArithOutcome::Value(0)
    );
    assert_eq!(
        s.arith(b"k", h, ArithOp::Incr, u64::MAX, 0),
        ArithOutcome::Value(u64::MAX)
    );
    assert_eq!(
        get(&mut s, b"k", 0).unwrap(),
        u64::MAX.to_string().as_bytes()
    );
    assert_eq!(
        s.arith(b"nope", 1, ArithOp::Incr, 1, 0),
        ArithOutcome::NotFound
    );
    set(&mut s, b"t", b"text", never, 0);
    assert_eq!(
        s.arith(b"t", key_hash(b"t"), ArithOp::Incr, 1, 0),
        ArithOutcome::NonNumeric
    );
    assert!(s.delete(b"k", h, 0));
    assert!(!s.delete(b"k", h, 0));
    let st = s.stats();
    assert_eq!((st.cas_hits, st.cas_badval, st.cas_misses), (1, 1, 1));
    assert_eq!((st.incr_hits, st.decr_hits, st.incr_misses), (3, 1, 1));
    assert_eq!((st.delete_hits, st.delete_misses, st.curr_items), (1, 1, 1));
    assert_eq!(st.bytes, item::total_size(1, 4) as u64);
    let classes = s.slab_class_stats(0);
    assert_eq!(classes.iter().map(|c| c.number).sum::<u64>(), 1);
    assert_eq!(classes.iter().map(|c| c.cas_hits).sum::<u64>(), 1);
}

#[test]
fn too_large_store_removes_the_old_item() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    set(&mut s, b"k", b"v", Deadline::NEVER, 0);
    assert!(!s.fits(1, 1 << 20));
    let big = vec![0u8; 1 << 20];
    assert_eq!(
        set(&mut s, b"k", &big, Deadline::NEVER, 0),
        StoreOutcome::TooLarge
    );
    assert_eq!(get(&mut s, b"k", 0), None);
    // The largest item that fits is stored in the one-page class.
    let most = vec![7u8; (1 << 20) - item::HEADER - 1];
    assert!(matches!(
        set(&mut s, b"k", &most, Deadline::NEVER, 0),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(get(&mut s, b"k", 0).unwrap().len(), most.len());
}

#[test]
fn expired_items_are_never_readable_and_the_wheel_takes_them_back() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    for i in 0..1000u32 {
        let key = format!("k{i}");
        set(
            &mut s,
            key.as_bytes(),
            b"value",
            Deadline::at(1000 + u64::from(i)),
            0,
        );
    }
    set(&mut s, b"forever", b"v", Deadline::NEVER, 0);
    set(&mut s, b"past", b"v", Deadline::at(5), 5);
    assert_eq!(get(&mut s, b"past", 5), None);
    assert_eq!(get(&mut s, b"k999", 1998), Some(b"value".to_vec()));
    assert_eq!(get(&mut s, b"k0", 1000), None);
    assert_eq!(s.stats().get_expired, 1);
    // No reads: ticks alone bring the memory back.
    let mut now = 0;
    while now < 3000 {
        now += 100;
        s.tick(now);
    }
    let st = s.stats();
    assert_eq!(st.curr_items, 1);
    assert_eq!(st.reclaimed, 1000);
    assert_eq!(st.expired_unfetched, 999);
    assert_eq!(s.wheel_len(), 0);
    assert_eq!(get(&mut s, b"forever", now), Some(b"v".to_vec()));
}

#[test]
fn stale_wheel_entries_never_remove_the_current_item() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    let h = key_hash(b"a");
    set(&mut s, b"a", b"1", Deadline::at(500), 0);
    set(&mut s, b"a", b"2", Deadline::at(5000), 10);
    set(&mut s, b"b", b"1", Deadline::at(500), 0);
    assert!(s.touch(b"b", key_hash(b"b"), Deadline::at(6000), 10));
    set(&mut s, b"c", b"1", Deadline::at(500), 0);
    assert!(
        s.get_and_touch(b"c", key_hash(b"c"), Deadline::NEVER, 10)
            .is_some()
    );
    // d is deleted and its chunk reused by e, with a later deadline.
    set(&mut s, b"d", b"1", Deadline::at(500), 0);
    assert!(s.delete(b"d", key_hash(b"d"), 1));
    set(&mut s, b"e", b"1", Deadline::at(7000), 1);
    for now in (100..=2000).step_by(100) {
        s.tick(now);
    }
    assert_eq!(s.stats().reclaimed, 0);
    assert_eq!(s.get(b"a", h, 2000).unwrap().value, b"2");
    assert!(get(&mut s, b"b", 2000).is_some());
    assert!(get(&mut s, b"c", 2000).is_some());
    assert!(get(&mut s, b"e", 2000).is_some());
    for now in (2100..=8000).step_by(100) {
        s.tick(now);
    }
    assert_eq!(s.stats().curr_items, 1);
    assert_eq!(s.stats().reclaimed, 3);
    assert!(get(&mut s, b"c", 8000).is_some());
}

#[test]
fn stale_wheel_entries_do_not_pile_up() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    let day = 86_400_000;
    let mut now = 0;
    for i in 0..200_000u64 {
        let key = format!("k{}", i % 100);
        set(
            &mut s,
            key.as_bytes(),
            b"v",
            Deadline::at(now + 30 * day),
            now,
        );
        if i % 1000 == 0 {
            now += 100;
            s.tick(now);
        }
    }
    assert!(
        s.wheel_len() <= 2 * 100 + 4096 + 1000 + TICK_EXPIRY_BUDGET,
        "{}",
        s.wheel_len()
    );
    // The current entries survived compaction: everything still expires.
    s.tick(now + 31 * day);
    assert_eq!(s.stats().curr_items, 0);
    assert_eq!(s.stats().reclaimed, 100);
}

#[test]
fn warm_stores_and_deletes_do_not_allocate() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    let keys: Vec<(Vec<u8>, u64)> = (0..2000)
        .map(|i| {
            let k = format!("key:{i}").into_bytes();
            let h = key_hash(&k);
            (k, h)
        })
        .collect();
    let small = [b's'; 100];
    let big = [b'b'; 300];
    let cycle = |s: &mut Shard, now: Millis| {
        for (i, (key, hash)) in keys.iter().enumerate() {
            let value: &[u8] = if i % 2 == 0 { &small } else { &big };
            let st = Store {
                mode: StoreMode::Set,
                key,
                hash: *hash,
                flags: 0,
                deadline: Deadline::NEVER,
                value,
            };
            s.store(&st, now);
            s.store(&Store { value: &big, ..st }, now);
            s.store(
                &Store {
                    mode: StoreMode::Append,
                    value: b"x",
                    ..st
                },
                now,
            );
            assert!(s.get(key, *hash, now).is_some());
            assert!(s.delete(key, *hash, now));
            s.store(&st, now);
        }
    };
    // Warm-up: pages carved, free lists and the index at their size.
    cycle(&mut s, 0);
    cycle(&mut s, 0);
    let before = thread_allocations();
    cycle(&mut s, 0);
    assert_eq!(
        thread_allocations() - before,
        0,
        "allocations in warm stores/deletes"
    );
}

#[test]
fn tick_work_is_bounded_and_carries_over() {
    let mut s = Shard::new(&ShardConfig::for_tests(64 << 20));
    let n = TICK_EXPIRY_BUDGET as u32 * 2 + 10;
    for i in 0..n {
        set(
            &mut s,
            format!("k{i}").as_bytes(),
            b"v",
            Deadline::at(100),
            0,
        );
    }
    s.tick(200);
    assert_eq!(s.stats().reclaimed, TICK_EXPIRY_BUDGET as u64);
    s.tick(300);
    s.tick(400);
    assert_eq!(s.stats().reclaimed, u64::from(n));
    assert_eq!(s.stats().curr_items, 0);
}

#[test]
fn flush_now_and_later() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    set(&mut s, b"a", b"1", Deadline::NEVER, 0);
    s.flush(0, 10);
    assert_eq!(get(&mut s, b"a", 10), None);
    assert_eq!(s.stats().get_flushed, 1);
    set(&mut s, b"b", b"1", Deadline::NEVER, 10);
    assert_eq!(get(&mut s, b"b", 10), Some(b"1".to_vec()));
    // Delayed: everything stored at or before 100 goes at 100.
    s.flush(100, 20);
    set(&mut s, b"c", b"1", Deadline::NEVER, 50);
    assert!(get(&mut s, b"c", 99).is_some());
    assert_eq!(get(&mut s, b"b", 100), None);
    set(&mut s, b"d", b"1", Deadline::NEVER, 100);
    set(&mut s, b"e", b"1", Deadline::NEVER, 101);
    assert_eq!(get(&mut s, b"c", 101), None);
    assert_eq!(get(&mut s, b"d", 101), None);
    assert!(get(&mut s, b"e", 101).is_some());
    // The sweep takes flushed memory back without reads.
    for i in 0..5000u32 {
        set(
            &mut s,
            format!("x{i}").as_bytes(),
            b"v",
            Deadline::NEVER,
            200,
        );
    }
    s.flush(300, 300);
    s.tick(300);
    assert_eq!(s.stats().curr_items, 0);
    assert_eq!(s.stats().bytes, 0);
}

#[test]
fn a_new_delayed_flush_applies_the_one_falling_due_first() {
    // Found by the model test: replacing a delayed flush in the very
    // millisecond it falls due must not cancel it.
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    s.flush(1143, 0);
    set(&mut s, b"k", b"v", Deadline::NEVER, 75);
    s.flush(1583, 1143);
    assert!(!s.touch(b"k", key_hash(b"k"), Deadline::NEVER, 1143));
}

#[test]
fn many_flushes_never_resurrect_old_items() {
    let mut s = Shard::new(&small_pages(64 << 10, 4096));
    set(&mut s, b"old", b"v", Deadline::NEVER, 0);
    for i in 0..200u64 {
        s.flush(i, i);
        set(&mut s, format!("k{i}").as_bytes(), b"v", Deadline::NEVER, i);
        assert_eq!(get(&mut s, b"old", i), None);
    }
    assert!(get(&mut s, b"k199", 200).is_some());
    assert_eq!(get(&mut s, b"k198", 200), None);
}

#[test]
fn eviction_takes_the_least_recently_used_and_prefers_expired() {
    // One 4 KiB page: 36 chunks of 112 bytes.
    let mut s = Shard::new(&small_pages(4096, 4096));
    let value = [1u8; 60];
    for i in 0..36u32 {
        let deadline = if i == 20 {
            Deadline::at(50)
        } else {
            Deadline::NEVER
        };
        set(&mut s, format!("k{i:02}").as_bytes(), &value, deadline, 0);
    }
    assert_eq!(s.stats().evictions, 0);
    // Read k00 (a minute later, so the hit moves it), so k01 is now the
    // oldest.
    let t = 61_000;
    assert!(get(&mut s, b"k00", t).is_some());
    set(&mut s, b"new1", &value, Deadline::NEVER, t);
    assert!(get(&mut s, b"k01", t).is_none());
    assert!(get(&mut s, b"k00", t).is_some());
    assert_eq!(s.stats().evictions, 1);
    assert_eq!(s.stats().evicted_unfetched, 1);
    // Bump k02..k17: the tail is now k18, k19, k20, and k20 has expired,
    // so it is reclaimed instead of evicting k18.
    for i in 2..18u32 {
        assert!(get(&mut s, format!("k{i:02}").as_bytes(), t).is_some());
    }
    set(&mut s, b"new2", &value, Deadline::NEVER, t + 100);
    assert_eq!(s.stats().evictions, 1);
    assert_eq!(s.stats().reclaimed, 1);
    assert!(get(&mut s, b"k18", t + 100).is_some());
    set(&mut s, b"new3", &value, Deadline::NEVER, t + 100);
    assert_eq!(s.stats().evictions, 2);
    assert!(get(&mut s, b"k19", t + 100).is_none());
    let classes = s.slab_class_stats(100);
    assert_eq!(classes.iter().map(|c| c.evicted).sum::<u64>(), 2);
}

#[test]
fn hits_within_a_minute_do_not_move_items() {
    let mut s = Shard::new(&small_pages(4096, 4096));
    let value = [1u8; 60];
    for i in 0..36u32 {
        set(
            &mut s,
            format!("k{i:02}").as_bytes(),
            &value,
            Deadline::NEVER,
            0,
        );
    }
    assert!(get(&mut s, b"k00", 59_000).is_some());
    set(&mut s, b"new", &value, Deadline::NEVER, 59_000);
    assert!(get(&mut s, b"k00", 59_000).is_none(), "k00 stayed the tail");
}

#[test]
fn same_class_overwrites_keep_their_chunk() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    set(&mut s, b"k", b"aaaa", Deadline::at(10_000), 0);
    store(
        &mut s,
        StoreMode::Append,
        b"k",
        b"bb",
        5,
        Deadline::NEVER,
        1,
    );
    store(
        &mut s,
        StoreMode::Prepend,
        b"k",
        b"cc",
        5,
        Deadline::NEVER,
        2,
    );
    let item = s.get(b"k", key_hash(b"k"), 3).unwrap();
    assert_eq!(
        (item.value, item.flags, item.deadline),
        (&b"ccaaaabb"[..], 0, Deadline::at(10_000))
    );
    set(&mut s, b"k", b"x", Deadline::NEVER, 4);
    assert_eq!(s.pages_allocated(), 1);
    assert_eq!(s.stats().curr_items, 1);
    assert_eq!(s.stats().bytes, item::total_size(1, 1) as u64);
    assert_eq!(s.stats().total_items, 4);
    // The first deadline's wheel entry is stale and removes nothing.
    s.tick(20_000);
    assert_eq!(get(&mut s, b"k", 20_000), Some(b"x".to_vec()));
    assert_eq!(s.stats().reclaimed, 0);
}

#[test]
fn expired_tail_is_reclaimed_before_a_live_eviction() {
    let mut s = Shard::new(&small_pages(4096, 4096));
    let value = [1u8; 60];
    for i in 0..36u32 {
        let deadline = if i < 3 {
            Deadline::at(50)
        } else {
            Deadline::NEVER
        };
        set(&mut s, format!("k{i:02}").as_bytes(), &value, deadline, 0);
    }
    set(&mut s, b"new", &value, Deadline::NEVER, 100);
    assert_eq!(s.stats().evictions, 0);
    assert_eq!(s.stats().reclaimed, 1);
    assert_eq!(s.stats().curr_items, 36);
}

#[test]
fn pages_move_to_a_class_whose_values_grew() {
    // 8 MiB in 64 KiB pages; fill it with 100-byte values, then switch to
    // a working set of 10 KiB values sized to half the memory.
    let memory = 8 << 20;
    let mut s = Shard::new(&small_pages(memory, 64 << 10));
    let small = [b's'; 100];
    let mut now = 0;
    for i in 0..120_000u32 {
        set(
            &mut s,
            format!("small:{i}").as_bytes(),
            &small,
            Deadline::NEVER,
            now,
        );
        if i % 1000 == 0 {
            now += 100;
            s.tick(now);
        }
    }
    assert!(s.stats().evictions > 0, "the memory is full");
    let big = vec![b'b'; 10 << 10];
    let keys: Vec<String> = (0..(memory / 2 / big.len()))
        .map(|i| format!("big:{i}"))
        .collect();
    let mut ops = 0u64;
    let mut last_hits = 0;
    for _round in 0..40 {
        let mut hits = 0;
        for key in &keys {
            if get(&mut s, key.as_bytes(), now).is_some() {
                hits += 1;
            } else {
                assert!(matches!(
                    set(&mut s, key.as_bytes(), &big, Deadline::NEVER, now),
                    StoreOutcome::Stored(_)
                ));
            }
            ops += 1;
            if ops.is_multiple_of(50) {
                now += 100;
                s.tick(now);
            }
        }
        last_hits = hits;
    }
    // Memory was full of small items, so every page the big class holds
    // was moved to it, and it got at least enough for the working set.
    let classes = s.slab_class_stats(now);
    let big_class = classes
        .iter()
        .position(|c| c.chunk_size as usize >= item::total_size(b"big:0".len(), big.len()))
        .unwrap();
    let longest = item::total_size(keys.last().unwrap().len(), big.len());
    assert!(
        classes[big_class].chunk_size as usize >= longest,
        "one class"
    );
    let received = &classes[big_class];
    assert_eq!(received.pages_in, received.total_pages);
    assert!(
        received.total_pages >= (keys.len() as u64).div_ceil(received.chunks_per_page),
        "{} pages of {} chunks for {} keys",
        received.total_pages,
        received.chunks_per_page,
        keys.len()
    );
    let moved = s.stats().slabs_moved;
    assert_eq!(classes.iter().map(|c| c.pages_in).sum::<u64>(), moved);
    assert_eq!(classes.iter().map(|c| c.pages_out).sum::<u64>(), moved);
    // Half the memory holds the whole working set: once the pages have
    // moved, a round of reads hits every key.
    assert_eq!(last_hits, keys.len());
}

#[test]
fn class_with_no_pages_takes_one_when_memory_is_full() {
    let mut s = Shard::new(&small_pages(2 * 4096, 4096));
    for i in 0..200u32 {
        set(
            &mut s,
            format!("k{i}").as_bytes(),
            &[0u8; 60],
            Deadline::NEVER,
            0,
        );
    }
    let big = vec![1u8; 3000];
    assert!(matches!(
        set(&mut s, b"big", &big, Deadline::NEVER, 0),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(get(&mut s, b"big", 0), Some(big));
    assert_eq!(s.stats().slabs_moved, 1);
}

#[test]
fn a_page_move_evicts_the_oldest_items_not_the_ones_on_the_page() {
    // Three small pages, all taken by one class, then an item of another
    // class that has no page: one page must change class.
    let mut s = Shard::new(&small_pages(3 * 4096, 4096));
    let keys: Vec<String> = (0..400).map(|i| format!("k{i}")).collect();
    for key in &keys {
        set(
            &mut s,
            key.as_bytes(),
            &[0u8; 60],
            Deadline::at(1_000_000),
            0,
        );
    }
    // Whatever page the move picks, it holds some of the newest keys
    // (chunks freed by evicting old items were reused in every page).
    let present = |s: &mut Shard| -> Vec<bool> {
        keys.iter()
            .map(|k| get(s, k.as_bytes(), 0).is_some())
            .collect()
    };
    let before = present(&mut s);
    let survivors = before.iter().filter(|&&p| p).count();
    assert!(survivors < 400 && survivors > 50);
    let big = vec![1u8; 3000];
    assert!(matches!(
        set(&mut s, b"big", &big, Deadline::NEVER, 0),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(s.stats().slabs_moved, 1);
    let after = present(&mut s);
    let kept = after.iter().filter(|&&p| p).count();
    // A third of the memory went to `big`: about a third of the items go,
    // and exactly the oldest ones: what is left is the newest run of keys.
    assert!(
        kept < survivors && kept > survivors / 2,
        "{kept} of {survivors}"
    );
    let first = after.iter().position(|&p| p).unwrap();
    assert!(
        after[first..].iter().all(|&p| p),
        "survivors are not the newest keys"
    );
    assert!(after[399], "the newest key survived");
    // Rescued items kept their wheel entries: they still expire actively.
    s.tick(1_000_001);
    s.tick(1_000_200);
    assert_eq!(s.stats().curr_items, 1, "only `big` (no deadline) is left");
}

#[test]
fn meta_stale_and_win_tokens_survive_the_wheel_and_clear_on_store() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    let (key, hash) = (&b"k"[..], key_hash(b"k"));
    let req = MetaGet::default();
    // Vivify: the first caller wins, the next sees the token taken.
    let viv = MetaGet {
        vivify: Some(Deadline::at(10_000)),
        ..req
    };
    let hit = s.meta_get(key, hash, &viv, 0).unwrap();
    assert!(hit.won && !hit.token_taken && hit.item.value.is_empty());
    let hit = s.meta_get(key, hash, &viv, 0).unwrap();
    assert!(!hit.won && hit.token_taken);
    // A store makes it fresh; invalidating makes it stale under a new CAS.
    assert!(matches!(
        set(&mut s, key, b"v", Deadline::at(5_000), 0),
        StoreOutcome::Stored(_)
    ));
    let inval = DeleteMeta {
        invalidate: true,
        new_cas: Some(42),
        ..DeleteMeta::default()
    };
    assert_eq!(s.meta_delete(key, hash, &inval, 1), DeleteOutcome::Done);
    let hit = s.meta_get(key, hash, &req, 1).unwrap();
    assert!(hit.stale && hit.won && hit.item.cas == 42);
    assert_eq!(hit.item.deadline, Deadline::at(5_000));
    // The expiry wheel still finds the item after its CAS changed.
    s.tick(6_000);
    assert_eq!(s.stats().curr_items, 0);
    // Recache: only below the threshold, only once.
    set(&mut s, key, b"v", Deadline::at(20_000), 10_000);
    let recache = MetaGet {
        recache_before: Some(Deadline::at(15_000)),
        ..req
    };
    assert!(!s.meta_get(key, hash, &recache, 10_000).unwrap().won);
    let late = MetaGet {
        recache_before: Some(Deadline::at(25_000)),
        ..req
    };
    assert!(s.meta_get(key, hash, &late, 10_000).unwrap().won);
    assert!(!s.meta_get(key, hash, &late, 10_000).unwrap().won);
}
