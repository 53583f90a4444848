//! The hash index: key → chunk, with chains threaded through the items.
//!
//! This module owns the bucket arrays. A bucket is one `u32` chunk id (the
//! head of a chain); the chain continues through each item's `hash_next`
//! header field, so the index adds 4 bytes per bucket and no copy of the key:
//! lookups compare against the key inside the chunk. Buckets are picked by
//! the LOW bits of the caller's [`key_hash`] (the high bits pick the shard).
//!
//! Growth is incremental, like memcached's assoc expansion: when items
//! exceed 1.5 × buckets a table twice the size is allocated (zeroed, so the
//! allocator can hand back untouched pages) and old buckets migrate a few at
//! a time on each insert and in bulk from [`Index::migrate`] (called from
//! the shard's tick). During a migration a bucket below the cursor is looked
//! up in the new table, one at or above it in the old. Moving an item needs
//! its hash, which is recomputed from the key in the chunk with
//! [`key_hash`], the function the caller used, rather than stored per item.

use super::item;
use super::key_hash;
use super::slab::{ChunkId, NIL, Slabs};

const MIN_BUCKETS: usize = 1024;
/// Old buckets migrated on every insert while growing.
const MIGRATE_PER_INSERT: usize = 4;

/// The shard's hash index.
pub struct Index {
    table: Vec<ChunkId>,
    /// Buckets not yet migrated while growing; empty otherwise.
    old: Vec<ChunkId>,
    /// Old buckets below this have been migrated.
    cursor: usize,
    len: usize,
}

impl Default for Index {
    fn default() -> Self {
        Index::new()
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index {
            table: vec![NIL; MIN_BUCKETS],
            old: Vec::new(),
            cursor: 0,
            len: 0,
        }
    }

    /// Items indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Buckets in the current table (the new one while growing).
    pub fn buckets(&self) -> usize {
        self.table.len()
    }

    /// Whether a migration is under way.
    pub fn is_growing(&self) -> bool {
        !self.old.is_empty()
    }

    /// Bytes of bucket memory held.
    pub fn memory(&self) -> usize {
        (self.table.capacity() + self.old.capacity()) * 4
    }

    fn head_mut(&mut self, hash: u64) -> &mut ChunkId {
        if !self.old.is_empty() {
            let i = hash as usize & (self.old.len() - 1);
            if i >= self.cursor {
                return &mut self.old[i];
            }
        }
        let i = hash as usize & (self.table.len() - 1);
        &mut self.table[i]
    }

    fn head(&self, hash: u64) -> ChunkId {
        if !self.old.is_empty() {
            let i = hash as usize & (self.old.len() - 1);
            if i >= self.cursor {
                return self.old[i];
            }
        }
        self.table[hash as usize & (self.table.len() - 1)]
    }

    /// Starts loading the bucket `hash` falls in ([`super::prefetch`]).
    #[inline]
    pub fn prefetch_bucket(&self, hash: u64) {
        let table = if !self.old.is_empty() && hash as usize & (self.old.len() - 1) >= self.cursor {
            &self.old
        } else {
            &self.table
        };
        super::prefetch::prefetch(
            table
                .as_ptr()
                .wrapping_add(hash as usize & (table.len() - 1)),
        );
    }

    /// The first chunk of the chain `hash` falls in, where a lookup starts
    /// ([`NIL`] if the chain is empty).
    #[inline]
    pub fn first(&self, hash: u64) -> ChunkId {
        self.head(hash)
    }

    /// The chunk holding `key`, if indexed.
    pub fn find(&self, slabs: &Slabs, key: &[u8], hash: u64) -> Option<ChunkId> {
        let mut id = self.head(hash);
        while id != NIL {
            let c = slabs.chunk(id);
            if item::key(c) == key {
                return Some(id);
            }
            id = item::hash_next(c);
        }
        None
    }

    /// Indexes chunk `id` (whose key is not indexed yet) under `hash`,
    /// which must be [`key_hash`] of its key: a migration recomputes it.
    pub fn insert(&mut self, slabs: &mut Slabs, id: ChunkId, hash: u64) {
        debug_assert_eq!(
            hash,
            key_hash(item::key(slabs.chunk(id))),
            "not key_hash of the key"
        );
        let head = self.head_mut(hash);
        let next = *head;
        *head = id;
        item::set_hash_next(slabs.chunk_mut(id), next);
        self.len += 1;
        if self.old.is_empty() && self.len > self.table.len() / 2 * 3 {
            let bigger = vec![NIL; self.table.len() * 2];
            self.old = std::mem::replace(&mut self.table, bigger);
            self.cursor = 0;
        }
        self.migrate(slabs, MIGRATE_PER_INSERT);
    }

    /// Removes chunk `id`, indexed under `hash`. False if it was not there.
    pub fn remove(&mut self, slabs: &mut Slabs, id: ChunkId, hash: u64) -> bool {
        let next_of_id = item::hash_next(slabs.chunk(id));
        let head = self.head_mut(hash);
        if *head == id {
            *head = next_of_id;
            self.len -= 1;
            return true;
        }
        let mut prev = *head;
        while prev != NIL {
            let next = item::hash_next(slabs.chunk(prev));
            if next == id {
                item::set_hash_next(slabs.chunk_mut(prev), next_of_id);
                self.len -= 1;
                return true;
            }
            prev = next;
        }
        false
    }

    /// Migrates up to `buckets` old buckets to the new table; returns
    /// whether a migration is still under way.
    pub fn migrate(&mut self, slabs: &mut Slabs, buckets: usize) -> bool {
        if self.old.is_empty() {
            return false;
        }
        let mask = self.table.len() - 1;
        let end = (self.cursor + buckets).min(self.old.len());
        for b in self.cursor..end {
            let mut id = std::mem::replace(&mut self.old[b], NIL);
            while id != NIL {
                let c = slabs.chunk(id);
                let next = item::hash_next(c);
                let i = key_hash(item::key(c)) as usize & mask;
                item::set_hash_next(slabs.chunk_mut(id), self.table[i]);
                self.table[i] = id;
                id = next;
            }
        }
        self.cursor = end;
        if self.cursor == self.old.len() {
            self.old = Vec::new();
            self.cursor = 0;
            return false;
        }
        true
    }

    /// Forgets every item (the chunks are the caller's to free).
    pub fn clear(&mut self) {
        self.table.fill(NIL);
        self.old = Vec::new();
        self.cursor = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Deadline, ShardConfig};

    fn put(slabs: &mut Slabs, index: &mut Index, key: &[u8]) -> ChunkId {
        let class = slabs.class_for(item::total_size(key.len(), 0)).unwrap();
        let id = slabs.alloc(class).unwrap();
        item::init(slabs.chunk_mut(id), key, 0, 0, 1, Deadline::NEVER, 0, 0);
        index.insert(slabs, id, key_hash(key));
        id
    }

    #[test]
    fn grows_incrementally_and_finds_everything() {
        let mut slabs = Slabs::new(&ShardConfig::for_tests(64 << 20));
        let mut index = Index::new();
        let mut ids = Vec::new();
        let mut saw_growth = false;
        for i in 0..20_000u32 {
            let key = format!("key:{i}");
            ids.push(put(&mut slabs, &mut index, key.as_bytes()));
            saw_growth |= index.is_growing();
            // Spot-check an older key while a migration may be half done.
            let j = i / 2;
            let old = format!("key:{j}");
            assert_eq!(
                index.find(&slabs, old.as_bytes(), key_hash(old.as_bytes())),
                Some(ids[j as usize])
            );
        }
        assert!(saw_growth);
        while index.migrate(&mut slabs, 100) {}
        assert!(index.buckets() >= 20_000 / 2);
        for (i, &id) in ids.iter().enumerate() {
            let key = format!("key:{i}");
            assert_eq!(
                index.find(&slabs, key.as_bytes(), key_hash(key.as_bytes())),
                Some(id)
            );
        }
        assert_eq!(index.find(&slabs, b"nope", key_hash(b"nope")), None);
    }

    #[test]
    fn removals_during_growth_are_exact() {
        let mut slabs = Slabs::new(&ShardConfig::for_tests(64 << 20));
        let mut index = Index::new();
        let mut live = std::collections::HashMap::new();
        for i in 0..30_000u32 {
            let key = format!("key:{i}");
            live.insert(key.clone(), put(&mut slabs, &mut index, key.as_bytes()));
            if i % 3 == 0 {
                // Remove an earlier key, which may sit in either table.
                let old = format!("key:{}", i / 2);
                if let Some(id) = live.remove(&old) {
                    assert!(index.remove(&mut slabs, id, key_hash(old.as_bytes())));
                    slabs.free(id);
                }
            }
        }
        assert_eq!(index.len(), live.len());
        for (key, &id) in &live {
            assert_eq!(
                index.find(&slabs, key.as_bytes(), key_hash(key.as_bytes())),
                Some(id)
            );
        }
    }

    #[test]
    fn remove_unlinks_from_the_middle_of_a_chain() {
        let mut slabs = Slabs::new(&ShardConfig::for_tests(64 << 20));
        let mut index = Index::new();
        let keys: Vec<String> = (0..5000).map(|i| format!("k{i}")).collect();
        let ids: Vec<ChunkId> = keys
            .iter()
            .map(|k| put(&mut slabs, &mut index, k.as_bytes()))
            .collect();
        for (k, &id) in keys.iter().zip(&ids).step_by(2) {
            assert!(index.remove(&mut slabs, id, key_hash(k.as_bytes())));
        }
        assert_eq!(index.len(), 2500);
        for (i, (k, &id)) in keys.iter().zip(&ids).enumerate() {
            let found = index.find(&slabs, k.as_bytes(), key_hash(k.as_bytes()));
            assert_eq!(found, (i % 2 == 1).then_some(id));
        }
        assert!(!index.remove(&mut slabs, ids[0], key_hash(keys[0].as_bytes())));
    }
}
