//! Tests of the engine side of memcached's admin commands: the memory
//! limit at run time, `slabs reassign` and `slabs automove`, `stats
//! cachedump`, `lru_crawler metadump` and `stats sizes`.

use super::{get, set, small_pages};
use crate::storage::page::mapped_on_this_thread;
use crate::storage::shard::SHRINK_EMPTY_PAGES_PER_TICK;
use crate::storage::*;
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
