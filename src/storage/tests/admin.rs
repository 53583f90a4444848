//! Tests of the engine side of memcached's admin commands: the memory
//! limit at run time, `slabs reassign` and `slabs automove`, `stats
//! cachedump`, `lru_crawler metadump` and `stats sizes`.

use super::{get, set, small_pages};
use crate::storage::page::mapped_on_this_thread;
use crate::storage::shard::SHRINK_EMPTY_PAGES_PER_TICK;
use crate::storage::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// A value that names its key's number, `len` bytes long.
fn value_of(i: usize, len: usize) -> Vec<u8> {
    format!("{i}:").bytes().cycle().take(len).collect()
}

/// Stores keys `<prefix>0, <prefix>1, ...` alternating 100- and 1000-byte
/// values until the shard evicts, then `more` keys beyond; returns them in
/// write order with their values.
fn fill(s: &mut Shard, prefix: &str, more: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let evictions = s.stats().evictions;
    let mut stored = Vec::new();
    let mut extra = None;
    while extra != Some(0) {
        let i = stored.len();
        let key = format!("{prefix}{i}").into_bytes();
        let value = value_of(i, if i % 2 == 0 { 100 } else { 1000 });
        assert!(matches!(
            set(s, &key, &value, Deadline::NEVER, 0),
            StoreOutcome::Stored(_)
        ));
        stored.push((key, value));
        extra = match extra {
            None if s.stats().evictions > evictions => Some(more),
            None => None,
            Some(n) => Some(n - 1),
        };
    }
    stored
}

/// Checks that every stored key reads back its own value unless it was
/// reported evicted, and that in each class the evicted keys are all older
/// than the ones left. Returns how many are left.
fn check_survivors(
    s: &mut Shard,
    stored: &[(Vec<u8>, Vec<u8>)],
    evicted: &HashMap<Vec<u8>, usize>,
) -> usize {
    let mut newest_evicted: HashMap<usize, usize> = HashMap::new();
    for (i, (key, _)) in stored.iter().enumerate() {
        if let Some(&class) = evicted.get(key) {
            let newest = newest_evicted.entry(class).or_default();
            *newest = (*newest).max(i);
        }
    }
    let sizes = slab_class_sizes(&small_pages(1 << 20, 64 << 10));
    let mut left = 0;
    for (i, (key, value)) in stored.iter().enumerate() {
        match get(s, key, 0) {
            Some(v) => {
                assert_eq!(&v, value, "key {i} read back another value");
                let size = item::total_size(key.len(), value.len());
                let class = sizes.partition_point(|&c| c < size);
                assert!(
                    newest_evicted.get(&class).is_none_or(|&newest| newest < i),
                    "key {i} stayed while a newer key of class {class} was evicted"
                );
                left += 1;
            }
            None => assert!(evicted.contains_key(key), "key {i} lost, not evicted"),
        }
    }
    left
}

#[test]
fn a_shrunk_limit_gives_pages_back_over_ticks_and_evicts_only_the_oldest() {
    let page = 64 << 10;
    let mut s = Shard::new(&small_pages(64 * page, page));
    s.log_evictions();
    let mut stored = fill(&mut s, "k", 500);
    assert_eq!(s.pages_allocated(), 64);
    assert_eq!(mapped_on_this_thread(), 64 * page);

    s.set_memory_limit(16 * page + 100).unwrap();
    assert_eq!((s.page_limit(), s.memory_limit()), (16, 16 * page + 100));
    assert_eq!(s.stats().limit_maxbytes, (16 * page + 100) as u64);
    // Stores go on, but take no new page.
    stored.extend(fill(&mut s, "later", 200));
    assert_eq!(s.pages_allocated(), 64);

    let mut ticks = 0;
    while s.pages_allocated() > 16 {
        let before = s.pages_allocated();
        s.tick(0);
        let freed = before - s.pages_allocated();
        assert!(
            (1..=SHRINK_EMPTY_PAGES_PER_TICK + 1).contains(&freed),
            "{freed} pages in one tick"
        );
        ticks += 1;
        assert!(ticks <= 48, "one page with items per tick at least");
    }
    assert_eq!(
        mapped_on_this_thread(),
        16 * page,
        "the pages were unmapped"
    );
    let evicted: HashMap<Vec<u8>, usize> = s.take_evictions().into_iter().collect();
    let left = check_survivors(&mut s, &stored, &evicted);
    assert_eq!(s.stats().curr_items, left as u64);
    assert_eq!(s.stats().evictions, evicted.len() as u64);
    let classes = s.slab_class_stats(0);
    assert_eq!(classes.iter().map(|c| c.total_pages).sum::<u64>(), 16);

    // The flush sweep walks page numbers given back without tripping.
    s.flush(0, 0);
    s.tick(0);
    assert_eq!((s.stats().curr_items, s.stats().bytes), (0, 0));

    // Growing again lets the shard take pages at once.
    s.set_memory_limit(64 * page).unwrap();
    fill(&mut s, "grown", 1000);
    assert_eq!(s.pages_allocated(), 64);
    assert_eq!(mapped_on_this_thread(), 64 * page);
}

#[test]
fn a_limit_beyond_what_a_shard_addresses_is_refused() {
    let mut s = Shard::new(&small_pages(1 << 20, 1024));
    let err = s.set_memory_limit(1 << 40).unwrap_err();
    assert!(err.contains("address"), "{err}");
    assert_eq!(s.memory_limit(), 1 << 20);
    assert_eq!(s.stats().limit_maxbytes, 1 << 20);
}

/// A shard of eight 64 KiB pages: one page of ~2 KiB items (the "big"
/// class), the other seven full of 100-byte items (the "small" class) and
/// evicting. Returns the shard (logging evictions), the two classes and
/// how many small keys were written (`small:0..`).
fn two_classes() -> (Shard, usize, usize, usize) {
    let page = 64 << 10;
    let mut s = Shard::new(&small_pages(8 * page, page));
    s.log_evictions();
    let sizes = s.class_sizes();
    let class_of =
        |key: &str, len| sizes.partition_point(|&c| c < item::total_size(key.len(), len));
    let big = class_of("big:0", 2000);
    // Fewer than a page holds: the class keeps a single page.
    for i in 0..20 {
        set(
            &mut s,
            format!("big:{i}").as_bytes(),
            &[b'b'; 2000],
            Deadline::NEVER,
            0,
        );
    }
    let small = class_of("small:0", 100);
    let mut i = 0;
    while s.stats().evictions == 0 {
        set(
            &mut s,
            format!("small:{i}").as_bytes(),
            &[b's'; 100],
            Deadline::NEVER,
            0,
        );
        i += 1;
    }
    let classes = s.slab_class_stats(0);
    assert_eq!(
        (classes[big].total_pages, classes[small].total_pages),
        (1, 7)
    );
    (s, small, big, i)
}

/// Runs six automove windows of big-item churn (the big class evicts in
/// every one, the small class in none) and returns the pages moved.
fn churn_windows(s: &mut Shard) -> u64 {
    s.tick(0);
    let mut n = 0;
    for window in 1..=6u64 {
        for _ in 0..100 {
            let key = format!("churn:{n}");
            set(
                s,
                key.as_bytes(),
                &[b'c'; 2000],
                Deadline::NEVER,
                window * 100,
            );
            n += 1;
        }
        s.tick(window * automove::WINDOW_MS);
    }
    s.stats().slabs_moved
}

#[test]
fn automove_moves_pages_each_window_from_the_quiet_class_to_the_evicting_one() {
    for (mode, moves) in [
        (AutomoveMode::Off, 0),
        // The first tick starts a window; six end after it.
        (AutomoveMode::Standard, 6 - automove::HOT_WINDOWS as u64 + 1),
        (AutomoveMode::Aggressive, 6),
    ] {
        let (mut s, small, big, _) = two_classes();
        s.set_automove(mode);
        assert_eq!(s.automove_mode(), mode);
        assert_eq!(churn_windows(&mut s), moves, "{mode:?}");
        let classes = s.slab_class_stats(0);
        assert_eq!(classes[big].pages_in, moves, "{mode:?}");
        assert_eq!(classes[big].total_pages, 1 + moves, "{mode:?}");
        assert_eq!(classes[small].pages_out, moves, "{mode:?}");
        // The policy watches memory pressure only: the small class's
        // evictions by the moves are not counted against it.
        assert_eq!(classes[small].evicted_by_move > 0, moves > 0, "{mode:?}");
    }
}

#[test]
fn slabs_reassign_answers_as_memcached_and_moves_one_page() {
    let (mut s, small, big, written) = two_classes();
    let n = s.class_sizes().len() as i64;
    let (small_id, big_id) = (small as i64 + 1, big as i64 + 1);
    // Same is checked before the range, as memcached does.
    assert_eq!(s.slabs_reassign(n + 5, n + 5, 0), ReassignOutcome::Same);
    assert_eq!(s.slabs_reassign(n + 1, 1, 0), ReassignOutcome::BadClass);
    assert_eq!(s.slabs_reassign(1, -2, 0), ReassignOutcome::BadClass);
    assert_eq!(s.slabs_reassign(-2, 1, 0), ReassignOutcome::BadClass);
    // The big class has one page; the pool none.
    assert_eq!(
        s.slabs_reassign(big_id, small_id, 0),
        ReassignOutcome::NoSpare
    );
    assert_eq!(s.slabs_reassign(0, small_id, 0), ReassignOutcome::NoSpare);
    assert_eq!(s.stats().slabs_moved, 0);

    let evicted_before = s.take_evictions().len();
    let before = s.stats().curr_items;
    assert_eq!(s.slabs_reassign(small_id, big_id, 0), ReassignOutcome::Ok);
    let classes = s.slab_class_stats(0);
    assert_eq!(
        (classes[small].total_pages, classes[big].total_pages),
        (6, 2)
    );
    assert_eq!(s.stats().slabs_moved, 1);
    // A page's worth of the small class's oldest items made room, each
    // counted; every small key left is newer than every one evicted.
    let evicted = s.take_evictions();
    assert_eq!(before - s.stats().curr_items, evicted.len() as u64);
    assert_eq!(classes[small].evicted_by_move, evicted.len() as u64);
    assert!(evicted.iter().all(|&(_, class)| class == small));
    let present: Vec<bool> = (0..written)
        .map(|i| get(&mut s, format!("small:{i}").as_bytes(), 0).is_some())
        .collect();
    let first = present.iter().position(|&p| p).unwrap();
    assert!(present[first..].iter().all(|&p| p), "the newest stayed");
    assert_eq!(first, evicted_before + evicted.len());

    // -1 takes from the next class with a spare page: only the small one.
    assert_eq!(s.slabs_reassign(-1, big_id, 0), ReassignOutcome::Ok);
    assert_eq!(s.slab_class_stats(0)[small].total_pages, 5);
    // To the pool: the page goes back to the system.
    assert_eq!(s.pages_allocated(), 8);
    assert_eq!(s.slabs_reassign(small_id, 0, 0), ReassignOutcome::Ok);
    assert_eq!(s.pages_allocated(), 7);
    assert_eq!(mapped_on_this_thread(), 7 * (64 << 10));
    assert_eq!(s.stats().slabs_moved, 3);

    // While a shrink gives pages back, reassign is busy.
    s.set_memory_limit(2 * (64 << 10)).unwrap();
    assert_eq!(s.slabs_reassign(small_id, big_id, 0), ReassignOutcome::Busy);
    while s.pages_allocated() > 2 {
        s.tick(0);
    }
    assert_eq!(
        s.slabs_reassign(small_id, big_id, 0),
        ReassignOutcome::NoSpare
    );
}

#[test]
fn a_page_move_rescues_live_items_where_its_class_has_room() {
    let page = 64 << 10;
    // Two pages: the whole budget, so the move cannot take a new one.
    let mut s = Shard::new(&small_pages(2 * page, page));
    let class = class_of(&s, 5, 100);
    // The first page, then one item on the second: its other chunks are
    // free for the first page's items.
    let mut i = 0;
    let mut write = |s: &mut Shard| {
        set(
            s,
            format!("r:{i:03}").as_bytes(),
            &[b'v'; 100],
            Deadline::NEVER,
            0,
        );
        i += 1;
    };
    write(&mut s);
    let per_page = s.slab_class_stats(0)[class].chunks_per_page as usize;
    for _ in 1..per_page + 1 {
        write(&mut s);
    }
    assert_eq!(s.slab_class_stats(0)[class].total_pages, 2);
    // The move takes the page holding the LRU tail: the first. Its items
    // fill the free chunks of the second, and for the last one the oldest
    // item of the class (a rescued one) is evicted.
    let dst = class_of(&s, 5, 2000) as i64 + 1;
    assert_eq!(
        s.slabs_reassign(class as i64 + 1, dst, 0),
        ReassignOutcome::Ok
    );
    let stats = s.stats();
    assert_eq!(
        (
            stats.slab_reassign_rescues,
            stats.slab_reassign_evictions_nomem
        ),
        (per_page as u64, 1)
    );
    assert_eq!(get(&mut s, b"r:000", 0), None);
    assert_eq!(get(&mut s, b"r:001", 0), Some(vec![b'v'; 100]));
}

#[test]
fn a_page_move_after_a_delayed_flush_fell_due_evicts_nothing() {
    // Found by the shard fuzz target (fuzz/regressions/shard/): the flush
    // had not been applied when `slabs reassign` came first after its
    // time, so the move rescued the flushed items as live ones, evicting
    // (and counting) the class's tail to make room for them.
    let (mut s, small, big, _) = two_classes();
    s.take_evictions();
    let evictions = s.stats().evictions;
    s.flush(1_000, 0);
    let outcome = s.slabs_reassign(small as i64 + 1, big as i64 + 1, 2_000);
    assert_eq!(outcome, ReassignOutcome::Ok);
    assert_eq!(
        s.stats().evictions,
        evictions,
        "flushed items are not evicted"
    );
    assert!(s.take_evictions().is_empty());
    assert_eq!(s.slab_class_stats(2_000)[small].evicted_by_move, 0);
}

/// The 0-based class of an item of this key and value length.
fn class_of(s: &Shard, key_len: usize, value_len: usize) -> usize {
    let size = item::total_size(key_len, value_len);
    s.class_sizes().partition_point(|&c| c < size)
}

#[test]
fn cachedump_lists_a_class_from_its_lru_head_as_memcached_does() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    let class = class_of(&s, 2, 10);
    for i in 0..10 {
        let deadline = if i == 4 {
            Deadline::at(500_000)
        } else {
            Deadline::NEVER
        };
        set(&mut s, format!("k{i}").as_bytes(), &[b'v'; 10], deadline, 0);
    }
    set(&mut s, b"k9", b"short", Deadline::NEVER, 0);
    set(&mut s, b"gone", &[b'v'; 8], Deadline::at(1000), 0);
    let binary = Store {
        mode: StoreMode::Set,
        key: b"b64",
        hash: key_hash(b"b64"),
        flags: 0,
        deadline: Deadline::NEVER,
        value: &[b'v'; 9],
    };
    let meta = StoreMeta {
        binary_key: true,
        ..StoreMeta::default()
    };
    assert!(matches!(
        s.store_meta(&binary, &meta, 0),
        StoreOutcome::Stored(_)
    ));
    // A key of the binary protocol that a reply line could not hold.
    set(&mut s, b"a b", b"v", Deadline::NEVER, 0);
    // A read a minute later moves k3 to the head.
    assert!(get(&mut s, b"k3", 61_000).is_some());
    let dump = s.cachedump(class, 0, 61_000);
    let keys: Vec<&[u8]> = dump.iter().map(|d| d.key.as_slice()).collect();
    let want: Vec<&[u8]> = vec![
        b"k3", b"k9", b"k8", b"k7", b"k6", b"k5", b"k4", b"k2", b"k1", b"k0",
    ];
    assert_eq!(
        keys, want,
        "expired, base64-keyed and unprintable items are left out"
    );
    assert_eq!(
        (dump[1].value_len, dump[1].deadline, dump[6].deadline),
        (5, Deadline::NEVER, Deadline::at(500_000))
    );
    assert_eq!(
        (dump[0].last_access_secs, dump[2].last_access_secs),
        (61, 0)
    );
    assert_eq!(s.cachedump(class, 3, 61_000).len(), 3);
    assert_eq!(s.cachedump(class, 3, 61_000)[..], dump[..3]);
    assert!(s.cachedump(s.class_sizes().len(), 0, 0).is_empty());
    // A flush falling due empties it before any tick applies the flush.
    s.flush(70_000, 61_000);
    assert!(s.cachedump(class, 0, 70_000).is_empty());
}

#[test]
fn cachedump_stops_where_memcached_s_2_mib_reply_would() {
    let mut s = Shard::new(&ShardConfig::for_tests(16 << 20));
    for i in 0..10_000 {
        let key = format!("{i:0>250}");
        set(&mut s, key.as_bytes(), b"v", Deadline::NEVER, 0);
    }
    // "ITEM <250 bytes> [1 b; 0 s]\r\n" is 268 bytes; memcached adds a line
    // while it and "END\r\n\0" still fit in 2 MiB.
    let lines = (2 * 1024 * 1024 - 6) / 268;
    assert_eq!(s.cachedump(class_of(&s, 250, 1), 0, 0).len(), lines);
}

/// Runs a metadump at `now` to the end in steps of `step` items, calling
/// `between` after every step; returns every item listed.
fn run_dump(
    s: &mut Shard,
    classes: Option<&[usize]>,
    step: usize,
    now: Millis,
    mut between: impl FnMut(&mut Shard, usize),
) -> Vec<MetaDumpItem> {
    let id = MetaDumpId(1);
    s.metadump_start(id, classes);
    let mut listed = Vec::new();
    for round in 0.. {
        let batch = s.metadump_next(id, step, now).expect("the dump is open");
        assert!(batch.items.len() <= step);
        listed.extend(batch.items);
        if batch.done {
            assert_eq!(s.metadump_next(id, step, now), None, "a done dump closes");
            return listed;
        }
        between(s, round);
    }
    unreachable!()
}

/// How many times each key was listed.
fn counts(listed: &[MetaDumpItem]) -> HashMap<Vec<u8>, usize> {
    let mut counts = HashMap::new();
    for item in listed {
        *counts.entry(item.key.clone()).or_default() += 1;
    }
    counts
}

#[test]
fn metadump_lists_every_live_item_once_with_memcached_s_fields() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    for i in 0..1000 {
        let len = if i % 4 == 0 { 2000 } else { 10 };
        set(
            &mut s,
            format!("k{i}").as_bytes(),
            &vec![b'v'; len],
            Deadline::NEVER,
            0,
        );
    }
    set(&mut s, b"timed", b"v", Deadline::at(90_000), 0);
    set(&mut s, b"expired", b"v", Deadline::at(1), 0);
    assert!(get(&mut s, b"k1", 5000).is_some());
    let listed = run_dump(&mut s, None, 7, 5000, |_, _| {});
    assert_eq!(listed.len(), 1001);
    assert!(counts(&listed).values().all(|&n| n == 1));
    let k1 = listed.iter().find(|d| d.key == b"k1").unwrap();
    let c = s.meta_debug(b"k1", key_hash(b"k1"), 5000).unwrap();
    assert_eq!(
        (k1.deadline, k1.cas, k1.fetched, k1.class, k1.size),
        (Deadline::NEVER, c.cas, true, c.class, c.size)
    );
    assert_eq!(
        k1.last_access_secs, 0,
        "a read within a minute does not move it"
    );
    let timed = listed.iter().find(|d| d.key == b"timed").unwrap();
    assert_eq!(
        (timed.deadline, timed.fetched),
        (Deadline::at(90_000), false)
    );
    // Restricted to the class of the 2000-byte values.
    let big = class_of(&s, 4, 2000);
    let listed = run_dump(&mut s, Some(&[big]), 50, 5000, |_, _| {});
    assert_eq!(listed.len(), 250);
    assert!(listed.iter().all(|d| d.class == big && d.size > 2000));
}

#[test]
fn metadump_steps_are_bounded_and_dumps_can_be_ended() {
    let mut s = Shard::new(&ShardConfig::for_tests(64 << 20));
    // Empty chunks still cost a look: a step stops after the scan budget.
    for i in 0..100_000 {
        set(&mut s, format!("k{i}").as_bytes(), b"v", Deadline::NEVER, 0);
    }
    for i in 0..100_000 {
        let key = format!("k{i}");
        assert!(s.delete(key.as_bytes(), key_hash(key.as_bytes()), 0));
    }
    set(&mut s, b"last", b"v", Deadline::NEVER, 0);
    let id = MetaDumpId(1);
    s.metadump_start(id, None);
    let mut steps = 0;
    let mut listed = 0;
    loop {
        let batch = s.metadump_next(id, usize::MAX, 0).unwrap();
        listed += batch.items.len();
        steps += 1;
        if batch.done {
            break;
        }
    }
    assert_eq!(listed, 1);
    let chunks: usize = s
        .slab_class_stats(0)
        .iter()
        .map(|c| c.total_chunks as usize)
        .sum();
    assert_eq!(steps, chunks.div_ceil(shard::METADUMP_SCAN_BUDGET));
    // Ended, or forgotten for newer dumps: the id answers nothing.
    let ended = MetaDumpId(2);
    s.metadump_start(ended, None);
    s.metadump_end(ended);
    assert_eq!(s.metadump_next(ended, 10, 0), None);
    let oldest = MetaDumpId(3);
    s.metadump_start(oldest, None);
    for newer in 0..shard::MAX_METADUMPS as u64 {
        s.metadump_start(MetaDumpId(4 + newer), None);
    }
    assert_eq!(s.metadump_next(oldest, 10, 0), None);
}

#[test]
fn metadump_lists_items_present_throughout_once_despite_churn_and_index_growth() {
    let mut s = Shard::new(&ShardConfig::for_tests(64 << 20));
    for i in 0..500 {
        set(&mut s, format!("a{i}").as_bytes(), b"v", Deadline::NEVER, 0);
    }
    let buckets_before = s.index_memory();
    let mut changed = Vec::new();
    let listed = run_dump(&mut s, None, 40, 0, |s, round| {
        // Between the first twenty steps: thousands of new keys (the index
        // grows and migrates), and one of the first keys deleted or
        // replaced each time.
        if round >= 20 {
            return;
        }
        for j in 0..2000 {
            set(
                s,
                format!("new{round}:{j}").as_bytes(),
                b"v",
                Deadline::NEVER,
                0,
            );
        }
        s.tick(0);
        let key = format!("a{}", round * 7 % 500);
        if round % 2 == 0 {
            s.delete(key.as_bytes(), key_hash(key.as_bytes()), 0);
        } else {
            set(s, key.as_bytes(), b"new value", Deadline::NEVER, 0);
        }
        changed.push(key.into_bytes());
    });
    assert!(s.index_memory() > 8 * buckets_before, "the index grew");
    let counts = counts(&listed);
    for i in 0..500 {
        let key = format!("a{i}").into_bytes();
        let n = counts.get(&key).copied().unwrap_or(0);
        if changed.contains(&key) {
            assert!(n <= 2, "a{i} listed {n} times");
        } else {
            assert_eq!(n, 1, "a{i}, present throughout, listed {n} times");
        }
    }
    let mut versions = HashMap::new();
    for item in &listed {
        assert!(
            versions.insert((&item.key, item.cas), ()).is_none(),
            "an item listed twice"
        );
    }
}

/// 4 KiB pages; keys `k000..k143` with 60-byte values fill pages 0..3 of
/// one class (36 chunks a page), in key order. Then every key `i` with
/// `drop(i)` is deleted, leaving free chunks where they were.
fn four_pages(drop: impl Fn(usize) -> bool) -> (Shard, usize) {
    let mut s = Shard::new(&small_pages(16 * 4096, 4096));
    s.log_evictions();
    for i in 0..144 {
        set(
            &mut s,
            format!("k{i:03}").as_bytes(),
            &[b'v'; 60],
            Deadline::NEVER,
            0,
        );
    }
    for i in (0..144).filter(|&i| drop(i)) {
        let key = format!("k{i:03}");
        assert!(s.delete(key.as_bytes(), key_hash(key.as_bytes()), 0));
    }
    let class = class_of(&s, 4, 60);
    assert_eq!(s.slab_class_stats(0)[class].total_pages, 4);
    (s, class)
}

#[test]
fn metadump_lists_an_item_moved_from_ahead_of_it_to_behind_it() {
    // Every third key deleted; keys on pages 0..2 read a minute later, so
    // the LRU tail, and the page a move empties, is page 3.
    let (mut s, class) = four_pages(|i| i % 3 == 0);
    for i in (0..108).filter(|i| i % 3 != 0) {
        assert!(get(&mut s, format!("k{i:03}").as_bytes(), 61_000).is_some());
    }
    let id = MetaDumpId(1);
    s.metadump_start(id, None);
    // Pages 0 and 1 hold 48 items: the cursor is at the end of page 1.
    let mut listed = s.metadump_next(id, 48, 0).unwrap().items;
    assert_eq!(listed.len(), 48);
    // Page 3's items move into the free chunks of page 2 (ahead) and,
    // once those are taken, of page 1 (behind the cursor).
    let other = class as i64 + 2;
    assert_eq!(
        s.slabs_reassign(class as i64 + 1, other, 0),
        ReassignOutcome::Ok
    );
    assert!(s.take_evictions().is_empty(), "every item found a chunk");
    listed.extend(finish(&mut s, id));
    let counts = counts(&listed);
    assert_eq!(listed.len(), 96);
    for i in (0..144).filter(|i| i % 3 != 0) {
        assert_eq!(
            counts.get(format!("k{i:03}").as_bytes()),
            Some(&1),
            "k{i:03}"
        );
    }
}

#[test]
fn metadump_does_not_list_again_an_item_moved_from_behind_it_to_ahead() {
    // Free chunks on pages 2 and 3 only; no reads, so the LRU tail, and
    // the page a move empties, is page 0.
    let (mut s, class) = four_pages(|i| i >= 72 && i % 3 == 0);
    let id = MetaDumpId(1);
    s.metadump_start(id, None);
    let mut listed = s.metadump_next(id, 36, 0).unwrap().items;
    assert_eq!(listed.len(), 36, "page 0");
    // Page 0's items move ahead: into the free chunks of pages 2 and 3,
    // then into a new page from the budget.
    let other = class as i64 + 2;
    assert_eq!(
        s.slabs_reassign(class as i64 + 1, other, 0),
        ReassignOutcome::Ok
    );
    assert!(s.take_evictions().is_empty(), "every item found a chunk");
    assert_eq!(s.pages_allocated(), 5);
    listed.extend(finish(&mut s, id));
    let counts = counts(&listed);
    assert_eq!(listed.len(), 120);
    for i in (0..144).filter(|&i| i < 72 || i % 3 != 0) {
        assert_eq!(
            counts.get(format!("k{i:03}").as_bytes()),
            Some(&1),
            "k{i:03}"
        );
    }
}

/// The rest of an open metadump.
fn finish(s: &mut Shard, id: MetaDumpId) -> Vec<MetaDumpItem> {
    let mut listed = Vec::new();
    loop {
        let batch = s.metadump_next(id, 10, 0).expect("open");
        listed.extend(batch.items);
        if batch.done {
            return listed;
        }
    }
}

#[derive(Clone, Debug)]
enum DumpOp {
    /// List up to this many items.
    Step(usize),
    Set(u8, usize),
    Delete(u8),
    /// `slabs reassign` between two of the first classes (memcached ids).
    Reassign(i64, i64),
    /// Change the memory limit to this many pages and tick.
    Limit(usize),
}

fn dump_op() -> impl Strategy<Value = DumpOp> {
    prop_oneof![
        4 => (1usize..30).prop_map(DumpOp::Step),
        3 => (any::<u8>(), prop_oneof![Just(10usize), Just(100), Just(400)])
            .prop_map(|(k, len)| DumpOp::Set(k, len)),
        1 => any::<u8>().prop_map(DumpOp::Delete),
        2 => (-1i64..12, 0i64..12).prop_map(|(a, b)| DumpOp::Reassign(a, b)),
        1 => (2usize..12).prop_map(DumpOp::Limit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever moves between steps (page moves, shrinks, stores, deletes),
    /// an item present for the whole dump is listed exactly once, and no
    /// item is listed twice.
    #[test]
    fn metadump_lists_each_item_present_throughout_exactly_once(
        ops in proptest::collection::vec(dump_op(), 1..200)
    ) {
        let mut s = Shard::new(&small_pages(12 * 4096, 4096));
        s.log_evictions();
        for k in 0..=255u8 {
            let len = [10, 100, 400][k as usize % 3];
            set(&mut s, format!("k{k}").as_bytes(), &vec![b'v'; len], Deadline::NEVER, 0);
        }
        s.take_evictions();
        let present: Vec<u8> = (0..=255u8)
            .filter(|k| s.peek(format!("k{k}").as_bytes(), key_hash(format!("k{k}").as_bytes()), 0))
            .collect();
        let mut touched = std::collections::HashSet::new();
        let id = MetaDumpId(1);
        s.metadump_start(id, None);
        let mut listed = Vec::new();
        let mut done = false;
        let mut now = 0;
        for op in ops.iter().chain(std::iter::repeat(&DumpOp::Step(1000))) {
            match op {
                DumpOp::Step(n) => {
                    let batch = s.metadump_next(id, *n, now).unwrap();
                    listed.extend(batch.items);
                    done = batch.done;
                }
                DumpOp::Set(k, len) => {
                    set(&mut s, format!("k{k}").as_bytes(), &vec![b'w'; *len], Deadline::NEVER, now);
                    touched.insert(format!("k{k}").into_bytes());
                }
                DumpOp::Delete(k) => {
                    let key = format!("k{k}");
                    s.delete(key.as_bytes(), key_hash(key.as_bytes()), now);
                    touched.insert(key.into_bytes());
                }
                DumpOp::Reassign(src, dst) => {
                    s.slabs_reassign(*src, *dst, now);
                }
                DumpOp::Limit(pages) => {
                    s.set_memory_limit(pages * 4096).unwrap();
                    now += 1000;
                    s.tick(now);
                }
            }
            touched.extend(s.take_evictions().into_iter().map(|(key, _)| key));
            if done {
                break;
            }
        }
        let counts = counts(&listed);
        for k in present {
            let key = format!("k{k}").into_bytes();
            if !touched.contains(&key) {
                prop_assert_eq!(counts.get(&key).copied(), Some(1), "k{} listed wrong", k);
            }
        }
        let mut versions = std::collections::HashSet::new();
        for item in &listed {
            prop_assert!(versions.insert((item.key.clone(), item.cas)), "listed twice");
        }
    }
}

/// The `stats sizes` a shard should show: its live items with a CAS above
/// `cas_before`, by size rounded up to 32 bytes (from a metadump).
fn sizes_from_dump(s: &mut Shard, cas_before: u64, now: Millis) -> Vec<(usize, u64)> {
    let mut counts = std::collections::BTreeMap::new();
    for item in run_dump(s, None, 1000, now, |_, _| {}) {
        if item.cas > cas_before {
            *counts.entry(item.size.div_ceil(32) * 32).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

#[test]
fn stats_sizes_counts_items_stored_since_enabled_by_32_byte_steps() {
    let mut s = Shard::new(&ShardConfig::for_tests(8 << 20));
    assert_eq!(s.size_histogram(), None);
    let StoreOutcome::Stored(before) = set(&mut s, b"a", b"hello", Deadline::NEVER, 0) else {
        panic!()
    };
    s.set_size_histogram(true);
    assert_eq!(s.size_histogram(), Some(vec![]));
    set(&mut s, b"b", b"hello", Deadline::NEVER, 0); // 46 bytes
    set(&mut s, b"c", &[b'x'; 100], Deadline::NEVER, 0); // 141
    set(&mut s, b"d", &[b'x'; 23], Deadline::NEVER, 0); // exactly 64
    assert_eq!(s.size_histogram(), Some(vec![(64, 2), (160, 1)]));
    // Deleting an item stored before changes nothing; one stored since
    // leaves its bucket.
    assert!(s.delete(b"a", key_hash(b"a"), 0));
    assert!(s.delete(b"b", key_hash(b"b"), 0));
    assert_eq!(s.size_histogram(), Some(vec![(64, 1), (160, 1)]));
    // Rewritten in their chunks: the new size counts.
    set(&mut s, b"d", &[b'x'; 24], Deadline::NEVER, 0); // 65
    let append = Store {
        mode: StoreMode::Append,
        key: b"c",
        hash: key_hash(b"c"),
        flags: 0,
        deadline: Deadline::NEVER,
        value: &[b'y'; 30],
    };
    assert!(matches!(s.store(&append, 0), StoreOutcome::Stored(_)));
    assert_eq!(s.size_histogram(), Some(vec![(96, 1), (192, 1)]));
    assert_eq!(s.size_histogram(), Some(sizes_from_dump(&mut s, before, 0)));
    // Enabling again keeps the counts; disabling forgets them.
    s.set_size_histogram(true);
    assert_eq!(s.size_histogram(), Some(vec![(96, 1), (192, 1)]));
    s.set_size_histogram(false);
    assert_eq!(s.size_histogram(), None);
    s.set_size_histogram(true);
    assert_eq!(s.size_histogram(), Some(vec![]));
}

#[derive(Clone, Debug)]
enum SizeOp {
    Set(u8, usize, Option<u64>),
    Append(u8, usize),
    Incr(u8, u64),
    Delete(u8),
    Strip(u8),
    Invalidate(u8),
    Advance(u64),
    Flush,
}

fn size_op() -> impl Strategy<Value = SizeOp> {
    prop_oneof![
        6 => (any::<u8>(), 0usize..600, proptest::option::of(1u64..5000))
            .prop_map(|(k, len, ttl)| SizeOp::Set(k, len, ttl)),
        2 => (any::<u8>(), 0usize..100).prop_map(|(k, len)| SizeOp::Append(k, len)),
        2 => (any::<u8>(), any::<u64>()).prop_map(|(k, d)| SizeOp::Incr(k, d)),
        2 => any::<u8>().prop_map(SizeOp::Delete),
        1 => any::<u8>().prop_map(SizeOp::Strip),
        1 => any::<u8>().prop_map(SizeOp::Invalidate),
        2 => (0u64..3000).prop_map(SizeOp::Advance),
        1 => Just(SizeOp::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever stores, rewrites, counters, meta deletes, expiry,
    /// evictions and flushes do, the histogram is what the live items say.
    #[test]
    fn stats_sizes_agrees_with_the_live_items(
        ops in proptest::collection::vec(size_op(), 1..300)
    ) {
        // Small enough to evict now and then.
        let mut s = Shard::new(&small_pages(8 * 4096, 4096));
        let StoreOutcome::Stored(before) = set(&mut s, b"first", b"1", Deadline::NEVER, 0) else {
            panic!()
        };
        s.set_size_histogram(true);
        let mut now = 0;
        for op in &ops {
            let key = |k: &u8| format!("k{}", k % 64).into_bytes();
            match op {
                SizeOp::Set(k, len, ttl) => {
                    let deadline = ttl.map_or(Deadline::NEVER, |t| Deadline::at(now + t));
                    set(&mut s, &key(k), &vec![b'1'; *len], deadline, now);
                }
                SizeOp::Append(k, len) => {
                    let st = Store {
                        mode: StoreMode::Append,
                        key: &key(k),
                        hash: key_hash(&key(k)),
                        flags: 0,
                        deadline: Deadline::NEVER,
                        value: &vec![b'2'; *len],
                    };
                    s.store(&st, now);
                }
                SizeOp::Incr(k, d) => {
                    s.arith(&key(k), key_hash(&key(k)), ArithOp::Incr, *d, now);
                }
                SizeOp::Delete(k) => {
                    s.delete(&key(k), key_hash(&key(k)), now);
                }
                SizeOp::Strip(k) | SizeOp::Invalidate(k) => {
                    let req = DeleteMeta {
                        strip: matches!(op, SizeOp::Strip(_)),
                        invalidate: matches!(op, SizeOp::Invalidate(_)),
                        ..DeleteMeta::default()
                    };
                    s.meta_delete(&key(k), key_hash(&key(k)), &req, now);
                }
                SizeOp::Advance(ms) => {
                    now += ms;
                    s.tick(now);
                }
                SizeOp::Flush => s.flush(now, now),
            }
        }
        // Let expiry and the flush sweep take back what is dead.
        now += 10_000;
        for _ in 0..3 {
            s.tick(now);
        }
        prop_assert_eq!(s.size_histogram(), Some(sizes_from_dump(&mut s, before, now)));
    }
}

#[test]
fn prefix_counts_follow_memcached_s_rules() {
    let mut s = Shard::new(&ShardConfig::for_tests(1 << 20));
    s.record_prefix(b"a:1", PrefixEvent::Set);
    assert!(s.prefix_stats().is_empty(), "nothing is counted while off");
    s.set_prefix_stats(true);
    for (key, event) in [
        (&b"a:1"[..], PrefixEvent::Get { hit: true }),
        (b"a:2", PrefixEvent::Get { hit: false }),
        (b"a:1:x", PrefixEvent::Set),
        (b"a:", PrefixEvent::Delete),
        (b":empty", PrefixEvent::Set),
        (b"b", PrefixEvent::Set),
        (b"n\0:x", PrefixEvent::Set),
        (b"sp ace:x", PrefixEvent::Set),
    ] {
        s.record_prefix(key, event);
    }
    let mut counts = s.prefix_stats();
    counts.sort_by(|a, b| a.0.cmp(&b.0));
    let a = PrefixCounts {
        gets: 2,
        hits: 1,
        sets: 1,
        deletes: 1,
    };
    let empty = PrefixCounts {
        sets: 1,
        ..PrefixCounts::default()
    };
    assert_eq!(counts, vec![(b"".to_vec(), empty), (b"a".to_vec(), a)]);
    // Off keeps the counts; a reset forgets them.
    s.set_prefix_stats(false);
    s.record_prefix(b"a:1", PrefixEvent::Set);
    assert_eq!(s.prefix_stats().len(), 2);
    s.reset_stats();
    assert!(s.prefix_stats().is_empty());
    // A bounded table: new prefixes past the bound are not counted, known
    // ones still are.
    s.set_prefix_stats(true);
    for i in 0..shard::MAX_PREFIXES + 10 {
        s.record_prefix(format!("p{i}:k").as_bytes(), PrefixEvent::Set);
    }
    s.record_prefix(b"p0:k", PrefixEvent::Set);
    let counts = s.prefix_stats();
    assert_eq!(counts.len(), shard::MAX_PREFIXES);
    let p0 = counts.iter().find(|(p, _)| p == b"p0").unwrap();
    assert_eq!(p0.1.sets, 2);
}

#[test]
fn a_reset_shard_keeps_the_limit_and_automove_mode_admin_commands_set() {
    let page = 64 << 10;
    let mut s = Shard::new(&small_pages(8 * page, page));
    set(&mut s, b"k", b"v", Deadline::NEVER, 0);
    s.set_memory_limit(4 * page).unwrap();
    s.set_automove(AutomoveMode::Aggressive);
    s.reset();
    assert_eq!(get(&mut s, b"k", 0), None, "a reset shard is empty");
    assert_eq!(s.memory_limit(), 4 * page);
    assert_eq!(s.page_limit(), 4);
    assert_eq!(s.stats().limit_maxbytes, 4 * page as u64);
    assert_eq!(s.automove_mode(), AutomoveMode::Aggressive);
}
