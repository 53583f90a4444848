//! One intrusive doubly linked LRU list per slab class.
//!
//! This module owns the list heads and tails; the links themselves live in
//! the item headers (`lru_prev`, `lru_next`), so linking, bumping and
//! unlinking are O(1) and allocate nothing. The head is the most recently
//! used item, the tail the eviction candidate.

use super::item;
use super::slab::{ChunkId, NIL, Slabs};

#[derive(Clone, Copy, Default)]
struct List {
    head: ChunkId,
    tail: ChunkId,
    len: u64,
}

/// The LRU lists of one shard, one per slab class.
pub struct Lru {
    lists: Vec<List>,
}

impl Lru {
    /// Empty lists for `classes` slab classes.
    pub fn new(classes: usize) -> Lru {
        Lru {
            lists: vec![List::default(); classes],
        }
    }

    /// Items linked in a class.
    pub fn len(&self, class: usize) -> u64 {
        self.lists[class].len
    }

    /// The least recently used item of a class.
    pub fn tail(&self, class: usize) -> Option<ChunkId> {
        let t = self.lists[class].tail;
        (t != NIL).then_some(t)
    }

    /// The most recently used item of a class.
    pub fn head(&self, class: usize) -> Option<ChunkId> {
        let h = self.lists[class].head;
        (h != NIL).then_some(h)
    }

    /// The next more recently used item after `id`.
    pub fn newer(slabs: &Slabs, id: ChunkId) -> Option<ChunkId> {
        let p = item::lru_prev(slabs.chunk(id));
        (p != NIL).then_some(p)
    }

    /// The next less recently used item after `id`.
    pub fn older(slabs: &Slabs, id: ChunkId) -> Option<ChunkId> {
        let n = item::lru_next(slabs.chunk(id));
        (n != NIL).then_some(n)
    }

    /// Links `id` (not linked yet) at the head of `class`.
    pub fn push_front(&mut self, slabs: &mut Slabs, class: usize, id: ChunkId) {
        let list = &mut self.lists[class];
        let old_head = list.head;
        {
            let c = slabs.chunk_mut(id);
            item::set_lru_prev(c, NIL);
            item::set_lru_next(c, old_head);
        }
        if old_head != NIL {
            item::set_lru_prev(slabs.chunk_mut(old_head), id);
        } else {
            list.tail = id;
        }
        list.head = id;
        list.len += 1;
    }

    /// Unlinks `id` from `class`.
    pub fn unlink(&mut self, slabs: &mut Slabs, class: usize, id: ChunkId) {
        let (prev, next) = {
            let c = slabs.chunk(id);
            (item::lru_prev(c), item::lru_next(c))
        };
        let list = &mut self.lists[class];
        if prev != NIL {
            item::set_lru_next(slabs.chunk_mut(prev), next);
        } else {
            list.head = next;
        }
        if next != NIL {
            item::set_lru_prev(slabs.chunk_mut(next), prev);
        } else {
            list.tail = prev;
        }
        list.len -= 1;
    }

    /// Puts `new` (not linked) in `old`'s place in the list of `class`,
    /// keeping its age: an item that moved to another chunk.
    pub fn replace(&mut self, slabs: &mut Slabs, class: usize, old: ChunkId, new: ChunkId) {
        let (prev, next) = {
            let c = slabs.chunk(old);
            (item::lru_prev(c), item::lru_next(c))
        };
        {
            let c = slabs.chunk_mut(new);
            item::set_lru_prev(c, prev);
            item::set_lru_next(c, next);
        }
        let list = &mut self.lists[class];
        if prev != NIL {
            item::set_lru_next(slabs.chunk_mut(prev), new);
        } else {
            list.head = new;
        }
        if next != NIL {
            item::set_lru_prev(slabs.chunk_mut(next), new);
        } else {
            list.tail = new;
        }
    }

    /// Moves `id` to the head of `class` (a hit).
    pub fn bump(&mut self, slabs: &mut Slabs, class: usize, id: ChunkId) {
        if self.lists[class].head != id {
            self.unlink(slabs, class, id);
            self.push_front(slabs, class, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Deadline, ShardConfig};

    fn order(lru: &Lru, slabs: &Slabs, class: usize) -> Vec<ChunkId> {
        let mut out = Vec::new();
        let mut at = lru.tail(class);
        while let Some(id) = at {
            out.push(id);
            at = Lru::newer(slabs, id);
        }
        out
    }

    #[test]
    fn push_bump_unlink_keep_order() {
        let mut slabs = Slabs::new(&ShardConfig::for_tests(4 << 20));
        let class = 0;
        let mut lru = Lru::new(slabs.class_count());
        let ids: Vec<ChunkId> = (0..4)
            .map(|_| {
                let id = slabs.alloc(class).unwrap();
                item::init(slabs.chunk_mut(id), b"k", 0, 0, 1, Deadline::NEVER, 0, 0);
                lru.push_front(&mut slabs, class, id);
                id
            })
            .collect();
        assert_eq!(order(&lru, &slabs, class), ids);
        lru.bump(&mut slabs, class, ids[0]);
        assert_eq!(
            order(&lru, &slabs, class),
            vec![ids[1], ids[2], ids[3], ids[0]]
        );
        lru.bump(&mut slabs, class, ids[0]);
        assert_eq!(lru.head(class), Some(ids[0]));
        lru.unlink(&mut slabs, class, ids[2]);
        assert_eq!(order(&lru, &slabs, class), vec![ids[1], ids[3], ids[0]]);
        lru.unlink(&mut slabs, class, ids[1]);
        lru.unlink(&mut slabs, class, ids[0]);
        assert_eq!(order(&lru, &slabs, class), vec![ids[3]]);
        assert_eq!(lru.head(class), lru.tail(class));
        lru.unlink(&mut slabs, class, ids[3]);
        assert_eq!(lru.len(class), 0);
        assert_eq!(lru.tail(class), None);
    }
}
