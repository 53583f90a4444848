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
