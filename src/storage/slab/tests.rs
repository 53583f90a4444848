//! The slab allocator's unit tests: classes, chunk reuse, page moves.

use super::*;
use crate::storage::Deadline;

#[test]
fn alloc_outside_never_returns_a_chunk_of_the_page_being_moved() {
    let cfg = config(4 * 4096, 4096);
    let mut slabs = Slabs::new(&cfg);
    let first = slabs.alloc(0).unwrap();
    item::init(slabs.chunk_mut(first), b"k", 1, 0, 1, Deadline::NEVER, 0, 0);
    let page = slabs.page_of(first);
    slabs.begin_move(page);
    let other = slabs
        .alloc_outside(0, page)
        .expect("budget left for a new page");
    assert_ne!(slabs.page_of(other), page);
    // A chunk freed on the page being moved does not come back either.
    slabs.free(first);
    for _ in 0..200 {
        match slabs.alloc_outside(0, page) {
            Some(id) => assert_ne!(slabs.page_of(id), page),
            None => break,
        }
    }
}

#[test]
fn released_pages_hold_no_memory_and_their_numbers_are_reused() {
    let cfg = config(3 * 4096, 4096);
    let mut slabs = Slabs::new(&cfg);
    let (small, big) = (0, slabs.class_count() - 1);
    let ids: Vec<ChunkId> = (0..3).map(|_| slabs.alloc(big).unwrap()).collect();
    assert_eq!((slabs.pages_allocated(), slabs.page_numbers()), (3, 3));
    for &id in &ids {
        item::init(slabs.chunk_mut(id), b"k", 1, 0, 1, Deadline::NEVER, 0, 0);
    }
    assert!(slabs.set_page_limit(1).is_ok());
    // Over the new budget, nothing more is taken.
    assert_eq!(slabs.alloc(small), None);
    let page = slabs.page_of(ids[1]);
    slabs.free(ids[1]);
    slabs.release_page(page);
    assert!(slabs.is_released(page));
    assert!(
        !slabs.is_live(ids[1]),
        "an id on a page given back names nothing"
    );
    assert_eq!(slabs.page_chunks(page).count(), 0);
    assert_eq!((slabs.pages_allocated(), slabs.page_numbers()), (2, 3));
    assert_eq!(slabs.class_pages(big), 2);
    // Growing again: the next page taken reuses the number.
    assert!(slabs.set_page_limit(3).is_ok());
    let id = slabs.alloc(small).unwrap();
    assert_eq!(slabs.page_of(id), page);
    assert_eq!(slabs.class_of(id), small);
    assert!(!item::is_allocated(slabs.chunk(id)));
    assert_eq!((slabs.pages_allocated(), slabs.page_numbers()), (3, 3));
    assert!(
        slabs
            .set_page_limit(usize::MAX)
            .unwrap_err()
            .contains("address")
    );
    assert_eq!(slabs.page_limit(), 3);
}

fn config(memory: usize, page: usize) -> ShardConfig {
    ShardConfig {
        slab_page_size: page,
        max_item_size: page,
        ..ShardConfig::for_tests(memory)
    }
}

#[test]
fn class_sizes_grow_by_factor_to_a_page() {
    let sizes = class_sizes(&ShardConfig::for_tests(64 << 20));
    assert_eq!(sizes[0], 88);
    assert_eq!(sizes[1], 112);
    assert_eq!(*sizes.last().unwrap(), 1 << 20);
    assert!(sizes.windows(2).all(|w| w[1] > w[0]));
    assert!(sizes.len() < 64);
}

#[test]
fn validation_names_the_bad_setting() {
    let good = ShardConfig::for_tests(64 << 20);
    assert!(validate(&good).is_ok());
    let bad = ShardConfig {
        max_item_size: 2 << 20,
        ..good.clone()
    };
    assert!(validate(&bad).unwrap_err().contains("max item size"));
    let bad = ShardConfig {
        slab_growth_factor: 1.0,
        ..good.clone()
    };
    assert!(validate(&bad).unwrap_err().contains("growth factor"));
    let bad = ShardConfig {
        slab_min_chunk: 0,
        ..good.clone()
    };
    assert!(validate(&bad).unwrap_err().contains("minimum chunk"));
    let bad = ShardConfig {
        slab_growth_factor: 1.0001,
        ..good.clone()
    };
    assert!(validate(&bad).unwrap_err().contains("classes"));
    let bad = ShardConfig {
        memory_limit: 1 << 40,
        slab_page_size: 1024,
        max_item_size: 1024,
        ..good
    };
    assert!(validate(&bad).unwrap_err().contains("memory limit"));
}

#[test]
fn alloc_free_reuses_chunks_and_respects_budget() {
    let cfg = config(2 * 4096, 4096);
    let mut slabs = Slabs::new(&cfg);
    let class = slabs.class_for(100).unwrap();
    assert_eq!(slabs.chunk_size(class), 112);
    let per_page = 4096 / 112;
    let mut ids = Vec::new();
    while let Some(id) = slabs.alloc(class) {
        item::init(slabs.chunk_mut(id), b"k", 1, 0, 1, Deadline::NEVER, 0, 0);
        assert!(slabs.is_live(id));
        ids.push(id);
    }
    assert_eq!(ids.len(), 2 * per_page);
    assert_eq!(slabs.pages_allocated(), 2);
    // Another class cannot get a page now.
    assert_eq!(slabs.alloc(class + 1), None);
    let id = ids.pop().unwrap();
    slabs.free(id);
    assert!(!slabs.is_live(id));
    assert_eq!(slabs.alloc(class), Some(id));
    let m = slabs.class_memory(class);
    assert_eq!(m.used_chunks, m.total_chunks);
}

#[test]
fn empty_pages_move_between_classes() {
    let cfg = config(4096, 4096);
    let mut slabs = Slabs::new(&cfg);
    let small = slabs.class_for(90).unwrap();
    let big = slabs.class_count() - 1;
    let a = slabs.alloc(small).unwrap();
    item::init(slabs.chunk_mut(a), b"k", 1, 0, 1, Deadline::NEVER, 0, 0);
    assert_eq!(slabs.empty_page_of(small), None);
    slabs.free(a);
    let page = slabs.empty_page_of(small).unwrap();
    slabs.reassign_page(page, big);
    assert_eq!(slabs.class_pages(small), 0);
    assert_eq!(slabs.class_memory(small).free_chunks, 0);
    assert!(!slabs.is_live(a));
    let b = slabs.alloc(big).unwrap();
    assert_eq!(slabs.chunk(b).len(), 4096);
    assert_eq!(slabs.class_of(b), big);
}

/// What the server bounds a read's reply by: the chunk size of the
/// largest class in use, following allocations and frees both ways.
#[test]
fn the_largest_class_in_use_follows_allocations_and_frees() {
    let cfg = config(16 * 4096, 4096);
    let mut slabs = Slabs::new(&cfg);
    assert_eq!(slabs.largest_in_use(), 0);
    let top = slabs.class_count() - 1;
    let take = |slabs: &mut Slabs, class| {
        let id = slabs.alloc(class).unwrap();
        item::init(slabs.chunk_mut(id), b"k", 1, 0, 1, Deadline::NEVER, 0, 0);
        id
    };
    let small = take(&mut slabs, 0);
    let middle = take(&mut slabs, 2);
    let big = [take(&mut slabs, top), take(&mut slabs, top)];
    assert_eq!(slabs.largest_in_use(), slabs.chunk_size(top));
    slabs.free(big[0]);
    // One chunk of the class is still in use.
    assert_eq!(slabs.largest_in_use(), slabs.chunk_size(top));
    slabs.free(big[1]);
    assert_eq!(slabs.largest_in_use(), slabs.chunk_size(2));
    slabs.free(small);
    assert_eq!(slabs.largest_in_use(), slabs.chunk_size(2));
    slabs.free(middle);
    assert_eq!(slabs.largest_in_use(), 0);
}
