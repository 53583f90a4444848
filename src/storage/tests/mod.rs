//! Tests of the whole shard engine: behaviour through the public interface,
//! memory reclamation, eviction, rebalancing, and a randomized comparison
//! against a plain `HashMap` model.

mod admin;
mod parity;

use super::shard::TICK_EXPIRY_BUDGET;
use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

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

/// Counts heap allocations made by the current thread, so a test can check
/// that warm stores and deletes allocate nothing. Test builds only.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_allocation() {
    // `try_with`: never panics, even while the thread is being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's own pointer and
// layout, so `System` upholds the `GlobalAlloc` contract; the only addition
// is bumping a thread-local counter, which neither allocates (const
// initialised, no destructor) nor touches the memory handed out.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged; the caller guarantees a valid layout.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: `ptr` was allocated by `System` through this wrapper with
        // `layout`, as the caller guarantees.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as for `realloc`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
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
    let before = allocations();
    cycle(&mut s, 0);
    assert_eq!(
        allocations() - before,
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

// ---- Randomized comparison against a model ----

#[derive(Clone, Debug)]
enum Op {
    Store(StoreMode, u8, Vec<u8>, u32, Ttl),
    /// A CAS store with the model's last known CAS (or a wrong one).
    CasKnown(u8, Vec<u8>, bool),
    Get(u8),
    Gat(u8, Ttl),
    Touch(u8, Ttl),
    Delete(u8),
    Arith(u8, ArithOp, u64),
    Flush(u64),
    Tick,
    Advance(u64),
}

#[derive(Clone, Copy, Debug)]
enum Ttl {
    Never,
    In(u64),
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

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        4 => Just(Ttl::Never),
        3 => (1u64..5000).prop_map(Ttl::In),
        1 => Just(Ttl::Past),
    ]
}

fn value(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..max),
        1 => (0u64..1000).prop_map(|n| n.to_string().into_bytes()),
    ]
}

fn op(keys: u8, max_value: usize) -> impl Strategy<Value = Op> {
    let mode = prop_oneof![
        Just(StoreMode::Set),
        Just(StoreMode::Add),
        Just(StoreMode::Replace),
        Just(StoreMode::Append),
        Just(StoreMode::Prepend),
        // 0 is never issued, so a random CAS store always meets a changed item.
        Just(StoreMode::Cas(0)),
    ];
    prop_oneof![
        6 => (mode, 0..keys, value(max_value), any::<u32>(), ttl())
            .prop_map(|(m, k, v, f, t)| Op::Store(m, k, v, f, t)),
        2 => (0..keys, value(max_value), any::<bool>()).prop_map(|(k, v, ok)| Op::CasKnown(k, v, ok)),
        6 => (0..keys).prop_map(Op::Get),
        1 => (0..keys, ttl()).prop_map(|(k, t)| Op::Gat(k, t)),
        1 => (0..keys, ttl()).prop_map(|(k, t)| Op::Touch(k, t)),
        2 => (0..keys).prop_map(Op::Delete),
        2 => (0..keys, prop_oneof![Just(ArithOp::Incr), Just(ArithOp::Decr)], 0u64..100)
            .prop_map(|(k, o, d)| Op::Arith(k, o, d)),
        1 => prop_oneof![Just(0u64), 1u64..3000].prop_map(Op::Flush),
        2 => Just(Op::Tick),
        3 => (0u64..1500).prop_map(Op::Advance),
    ]
}

/// Mostly stores and reads with no flush: a full cache that keeps
/// evicting, where overwrites often land in the chunk they already had.
fn churn_op(keys: u8, max_value: usize) -> impl Strategy<Value = Op> {
    let mode = prop_oneof![
        6 => Just(StoreMode::Set),
        1 => Just(StoreMode::Add),
        1 => Just(StoreMode::Append),
    ];
    prop_oneof![
        10 => (mode, 0..keys, value(max_value), any::<u32>(), Just(Ttl::Never))
            .prop_map(|(m, k, v, f, t)| Op::Store(m, k, v, f, t)),
        4 => (0..keys).prop_map(Op::Get),
        1 => (0..keys, ttl()).prop_map(|(k, t)| Op::Touch(k, t)),
        1 => (0..keys).prop_map(Op::Delete),
        1 => (0..keys, Just(ArithOp::Incr), 0u64..100).prop_map(|(k, o, d)| Op::Arith(k, o, d)),
        1 => Just(Op::Tick),
        2 => (0u64..1500).prop_map(Op::Advance),
    ]
}

#[derive(Clone, Debug)]
struct ModelItem {
    value: Vec<u8>,
    flags: u32,
    /// `None` after an incr/decr: the new CAS is only known from a read.
    cas: Option<u64>,
    deadline: Deadline,
    stored_at: Millis,
    /// The slab class of the chunk holding it.
    class: usize,
    /// Its place in its class's LRU: a higher number is more recent.
    lru_seq: u64,
    /// When it last moved to the head of its LRU (seconds): the shard moves
    /// it again only [`shard::BUMP_INTERVAL_SECS`] later.
    moved_secs: u32,
}

struct Model {
    items: HashMap<u8, ModelItem>,
    flush_at: Option<Millis>,
    last_cas: u64,
    /// Chunk size of each slab class, smallest first.
    class_sizes: Vec<usize>,
    /// The next LRU position handed out.
    next_seq: u64,
}

impl Model {
    fn catch_up(&mut self, now: Millis) {
        if let Some(at) = self.flush_at
            && at <= now
        {
            self.items.retain(|_, it| it.stored_at > at);
            if at < now {
                self.flush_at = None;
            }
        }
    }

    /// The live item, dropping expired ones.
    fn live(&mut self, k: u8, now: Millis) -> Option<&mut ModelItem> {
        if self
            .items
            .get(&k)
            .is_some_and(|it| it.deadline.is_expired(now))
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
            .is_some_and(|it| now_secs.saturating_sub(it.moved_secs) >= shard::BUMP_INTERVAL_SECS);
        if due {
            let seq = self.head();
            let it = self.items.get_mut(&k).unwrap();
            it.lru_seq = seq;
            it.moved_secs = now_secs;
        }
    }
}

fn key_of(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

fn model_key(key: &[u8]) -> Option<u8> {
    std::str::from_utf8(key)
        .ok()?
        .strip_prefix("key-")?
        .parse()
        .ok()
}

/// Checks what one operation evicted against the model: every eviction is
/// counted, names a live item of the class the model has it in, and takes
/// the least recently used items of that class (each victim is older than
/// every item of its class that stays). The victims leave the model, so a
/// key lost any other way shows up as a difference later.
fn check_evictions(
    shard: &mut Shard,
    model: &mut Model,
    evictions_before: u64,
    now: Millis,
) -> Result<(), TestCaseError> {
    let evicted = shard.take_evictions();
    prop_assert_eq!(
        evicted.len() as u64,
        shard.stats().evictions - evictions_before,
        "every eviction is reported"
    );
    let mut newest_victim: HashMap<usize, u64> = HashMap::new();
    for (key, class) in evicted {
        let k = model_key(&key).ok_or_else(|| TestCaseError::fail("evicted an unknown key"))?;
        let it = model
            .live(k, now)
            .ok_or_else(|| TestCaseError::fail(format!("evicted key {k}, not live")))?;
        prop_assert_eq!(it.class, class, "key {} evicted from another class", k);
        let seq = it.lru_seq;
        model.items.remove(&k);
        let newest = newest_victim.entry(class).or_default();
        *newest = (*newest).max(seq);
    }
    for (k, it) in &model.items {
        if let Some(&victim) = newest_victim.get(&it.class) {
            prop_assert!(
                it.deadline.is_expired(now) || it.lru_seq > victim,
                "class {}: evicted an item newer than key {}, which stayed",
                it.class,
                k
            );
        }
    }
    Ok(())
}

/// Runs `ops` against a shard and the model. With `may_evict` false,
/// nothing may be evicted; either way, after every operation the shard
/// holds exactly the keys the model holds.
fn run_model(config: &ShardConfig, ops: &[Op], may_evict: bool) -> Result<(), TestCaseError> {
    let mut shard = Shard::new(config);
    shard.log_evictions();
    let mut model = Model {
        items: HashMap::new(),
        flush_at: None,
        last_cas: 0,
        class_sizes: slab_class_sizes(config),
        next_seq: 0,
    };
    let keys = ops
        .iter()
        .filter_map(|op| match op {
            Op::Store(_, k, ..)
            | Op::CasKnown(k, ..)
            | Op::Get(k)
            | Op::Gat(k, _)
            | Op::Touch(k, _)
            | Op::Delete(k)
            | Op::Arith(k, ..) => Some(*k),
            _ => None,
        })
        .max()
        .map_or(0, |k| k + 1);
    let mut now: Millis = 0;
    for op in ops {
        model.catch_up(now);
        let evictions_before = shard.stats().evictions;
        match op {
            Op::Advance(ms) => now += ms,
            Op::Tick => shard.tick(now),
            Op::Flush(delay) => {
                shard.flush(now + delay, now);
                if *delay == 0 {
                    model.items.clear();
                    model.flush_at = None;
                } else {
                    model.flush_at = Some(now + delay);
                }
            }
            Op::Get(k) => {
                let key = key_of(*k);
                let got = shard
                    .get(&key, key_hash(&key), now)
                    .map(|i| (i.value.to_vec(), i.flags, i.cas, i.deadline));
                let want = model.live(*k, now).cloned();
                match (got, want) {
                    (None, None) => {}
                    (Some((v, f, cas, d)), Some(w)) => {
                        prop_assert_eq!(&v, &w.value);
                        prop_assert_eq!(f, w.flags);
                        prop_assert_eq!(d, w.deadline);
                        if let Some(c) = w.cas {
                            prop_assert_eq!(cas, c);
                        }
                        model.items.get_mut(k).unwrap().cas = Some(cas);
                        model.bump(*k, now);
                    }
                    (got, want) => prop_assert!(false, "get {k}: shard {got:?} model {want:?}"),
                }
            }
            Op::Gat(k, t) | Op::Touch(k, t) => {
                let key = key_of(*k);
                let deadline = t.deadline(now);
                let hit = if matches!(op, Op::Gat(..)) {
                    shard
                        .get_and_touch(&key, key_hash(&key), deadline, now)
                        .map(|i| i.value.to_vec())
                } else {
                    shard
                        .touch(&key, key_hash(&key), deadline, now)
                        .then(Vec::new)
                };
                match model.live(*k, now) {
                    Some(it) => {
                        let v = hit.ok_or_else(|| TestCaseError::fail("touch missed"))?;
                        if matches!(op, Op::Gat(..)) {
                            prop_assert_eq!(&v, &it.value);
                        }
                        it.deadline = deadline;
                        model.bump(*k, now);
                    }
                    None => prop_assert!(hit.is_none()),
                }
            }
            Op::Delete(k) => {
                let key = key_of(*k);
                let hit = shard.delete(&key, key_hash(&key), now);
                prop_assert_eq!(hit, model.live(*k, now).is_some());
                model.items.remove(k);
            }
            Op::Arith(k, aop, delta) => {
                let key = key_of(*k);
                let got = shard.arith(&key, key_hash(&key), *aop, *delta, now);
                let class_sizes = model.class_sizes.clone();
                let want = match model.live(*k, now) {
                    None => ArithOutcome::NotFound,
                    Some(it) => match shard::parse_counter(&it.value) {
                        None => ArithOutcome::NonNumeric,
                        Some(n) => {
                            let v = match aop {
                                ArithOp::Incr => n.wrapping_add(*delta),
                                ArithOp::Decr => n.saturating_sub(*delta),
                            };
                            // memcached's write-back: padded with spaces
                            // to the old length when no longer than it.
                            let old_len = it.value.len();
                            it.value = v.to_string().into_bytes();
                            if it.value.len() < old_len {
                                it.value.resize(old_len, b' ');
                            }
                            it.cas = None;
                            // A counter that outgrows its chunk moves to a
                            // new one, at the head of its new class.
                            let size = item::total_size(key.len(), it.value.len());
                            if size > class_sizes[it.class] {
                                let class = model.class_for(key.len(), size - key.len());
                                let seq = model.head();
                                let it = model.items.get_mut(k).unwrap();
                                (it.class, it.lru_seq) = (class, seq);
                                it.moved_secs = (now / 1000) as u32;
                            }
                            ArithOutcome::Value(v)
                        }
                    },
                };
                prop_assert_eq!(got, want);
            }
            Op::Store(..) | Op::CasKnown(..) => {
                let (mode, k, value, flags, deadline) = match op {
                    Op::Store(mode, k, v, f, t) => (*mode, *k, v, *f, t.deadline(now)),
                    Op::CasKnown(k, v, ok) => {
                        let known = model.live(*k, now).and_then(|it| it.cas).unwrap_or(0);
                        let cas = if *ok { known } else { known + 1 };
                        (StoreMode::Cas(cas), *k, v, 1, Deadline::NEVER)
                    }
                    _ => unreachable!(),
                };
                let key = key_of(k);
                let got = store(&mut shard, mode, &key, value, flags, deadline, now);
                let current = model.live(k, now).cloned();
                let want = match (mode, &current) {
                    (StoreMode::Add, Some(_)) => StoreOutcome::NotStored,
                    (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                        StoreOutcome::NotStored
                    }
                    (StoreMode::Cas(_), None) => StoreOutcome::NotFound,
                    (StoreMode::Cas(c), Some(it)) if it.cas != Some(c) => StoreOutcome::Exists,
                    (StoreMode::Append | StoreMode::Prepend, Some(it))
                        if !shard.fits(key.len(), it.value.len() + value.len()) =>
                    {
                        StoreOutcome::NotStored
                    }
                    _ => {
                        let StoreOutcome::Stored(cas) = got else {
                            return Err(TestCaseError::fail(format!("store {k}: {got:?}")));
                        };
                        prop_assert!(cas > model.last_cas, "CAS not fresh");
                        model.last_cas = cas;
                        let new = match (mode, current.clone()) {
                            (StoreMode::Append, Some(mut it)) => {
                                it.value.extend_from_slice(value);
                                it
                            }
                            (StoreMode::Prepend, Some(mut it)) => {
                                let mut v = value.clone();
                                v.extend_from_slice(&it.value);
                                it.value = v;
                                it
                            }
                            _ => ModelItem {
                                value: value.clone(),
                                flags,
                                cas: None,
                                deadline,
                                stored_at: now,
                                class: 0,
                                lru_seq: 0,
                                moved_secs: 0,
                            },
                        };
                        // Rewritten in its chunk when the class is the same
                        // (its LRU place kept unless a bump is due), else
                        // stored in a new chunk at the head of its class.
                        let class = model.class_for(key.len(), new.value.len());
                        let in_place = current.as_ref().is_some_and(|it| it.class == class)
                            && model.flush_at != Some(now)
                            && !new.deadline.is_expired(now);
                        let (lru_seq, moved_secs) = match &current {
                            Some(it) if in_place => (it.lru_seq, it.moved_secs),
                            _ => (model.head(), (now / 1000) as u32),
                        };
                        model.items.insert(
                            k,
                            ModelItem {
                                cas: Some(cas),
                                stored_at: now,
                                class,
                                lru_seq,
                                moved_secs,
                                ..new
                            },
                        );
                        if in_place {
                            model.bump(k, now);
                        }
                        got
                    }
                };
                prop_assert_eq!(got, want);
            }
        }
        if !may_evict {
            prop_assert_eq!(shard.stats().evictions, 0);
        }
        check_evictions(&mut shard, &mut model, evictions_before, now)?;
        model.catch_up(now);
        for k in 0..keys {
            let key = key_of(k);
            prop_assert_eq!(
                shard.peek(&key, key_hash(&key), now),
                model.live(k, now).is_some(),
                "key {} after {:?}",
                k,
                op
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn model_with_room_never_loses_keys(ops in proptest::collection::vec(op(24, 600), 1..400)) {
        run_model(&ShardConfig::for_tests(64 << 20), &ops, false)?;
    }

    #[test]
    fn model_under_memory_pressure(ops in proptest::collection::vec(op(64, 2000), 1..400)) {
        // Two 4 KiB pages for 64 keys of up to 2 KB: evictions and page
        // moves happen in most runs.
        run_model(&small_pages(2 * 4096, 4096), &ops, true)?;
    }

    #[test]
    fn model_evicts_in_lru_order_in_one_full_class(ops in proptest::collection::vec(churn_op(128, 40), 1..600)) {
        // Two 4 KiB pages of the smallest class (92 chunks) for 128 keys:
        // every item fits that class, so it is always full and evicting
        // while overwrites rewrite items in their chunks.
        run_model(&small_pages(2 * 4096, 4096), &ops, true)?;
    }
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
