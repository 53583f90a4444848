//! Listing what a shard holds, for `stats cachedump` and
//! `lru_crawler metadump`.
//!
//! A cachedump reads one class's LRU from its head, in one call. A
//! metadump may list millions of items, so it is a cursor the server
//! advances a bounded step at a time between other requests. It walks the
//! arena (page by page, slot by slot) rather than the index: an item stays
//! in its chunk whatever the index does (growth rehashes buckets, not
//! chunks), so an item present for the whole dump is met exactly once.
//! The one thing that moves items between chunks is a page move (rescue
//! into other chunks of the class); the shard tells every open cursor
//! about each such move ([`Tables::note_relocation`]), and the cursor
//! remembers an item that jumped from ahead of it to behind it (to list it
//! later) or from behind to ahead (to skip it when met again). Items stored
//! or removed during the dump may or may not be listed; an item a client
//! replaces (a store, or a counter that outgrows its chunk) is a new item.

use super::{Shard, Tables};
use crate::storage::item;
use crate::storage::lru::Lru;
use crate::storage::slab::ChunkId;
use crate::storage::{CacheDumpItem, MetaDumpBatch, MetaDumpId, MetaDumpItem, Millis};
use std::collections::HashMap;

/// memcached's cap on a `stats cachedump` reply.
pub const CACHEDUMP_MAX_BYTES: usize = 2 << 20;
/// Chunks a metadump step looks at, at most, however few items it finds.
pub const METADUMP_SCAN_BUDGET: usize = 65_536;
/// Metadumps a shard keeps open; starting one more forgets the oldest.
pub const MAX_METADUMPS: usize = 16;

/// An open metadump: where its walk is, and the moved items it must list
/// or skip.
pub(super) struct DumpCursor {
    id: u64,
    /// Classes to list (`None`: all).
    classes: Option<Vec<bool>>,
    page: usize,
    slot: usize,
    /// Items moved from ahead of the cursor to behind it, not yet listed:
    /// chunk and CAS.
    pending: HashMap<ChunkId, u64>,
    /// Items listed already that moved ahead of the cursor: chunk and CAS.
    skip: HashMap<ChunkId, u64>,
}

impl DumpCursor {
    fn lists(&self, class: usize) -> bool {
        self.classes
            .as_ref()
            .is_none_or(|c| c.get(class).copied().unwrap_or(false))
    }

    fn passed(&self, position: (usize, usize)) -> bool {
        position < (self.page, self.slot)
    }
}

impl Tables {
    /// Tells the open metadumps that the item now in chunk `to` was in
    /// chunk `from` (a page move rescued it).
    pub(super) fn note_relocation(&mut self, from: ChunkId, to: ChunkId) {
        if self.dumps.is_empty() {
            return;
        }
        let c = self.slabs.chunk(to);
        let cas = item::cas(c);
        let class = self.slabs.class_of(to);
        let (was, now) = (self.slabs.position(from), self.slabs.position(to));
        for d in self.dumps.iter_mut().filter(|d| d.lists(class)) {
            let listed = if d.pending.remove(&from) == Some(cas) {
                false
            } else if d.skip.remove(&from) == Some(cas) {
                true
            } else {
                d.passed(was)
            };
            match (listed, d.passed(now)) {
                (false, true) => {
                    d.pending.insert(to, cas);
                }
                (true, false) => {
                    d.skip.insert(to, cas);
                }
                _ => {}
            }
        }
    }

    /// The metadump line of the live item in `id`, if it has one.
    fn dump_item(&self, id: ChunkId, now: Millis) -> Option<MetaDumpItem> {
        if !self.slabs.is_live(id) {
            return None;
        }
        let c = self.slabs.chunk(id);
        if self.is_dead(c, now).is_some() {
            return None;
        }
        Some(MetaDumpItem {
            key: item::key(c).to_vec(),
            deadline: item::deadline(c),
            last_access_secs: item::time(c),
            cas: item::cas(c),
            fetched: item::fetched(c),
            class: self.slabs.class_of(id),
            size: item::item_size(c),
        })
    }
}

impl Shard {
    /// `stats cachedump <class> <limit>`: up to `limit` items of `class`
    /// (0-based; memcached numbers it one higher) from the head of its LRU,
    /// most recently used first. `limit` 0 lists all, but like memcached
    /// stops where the reply would pass [`CACHEDUMP_MAX_BYTES`] (counting
    /// an absolute exptime as 10 digits). Expired and flushed items are
    /// left out (memcached lists what its LRU still holds), and so are
    /// items stored with a base64 key, as memcached does, and keys holding
    /// a space, CR or LF (stored through the binary protocol), which would
    /// break the reply's lines. No side effect.
    pub fn cachedump(&self, class: usize, limit: usize, now: Millis) -> Vec<CacheDumpItem> {
        crate::fault::check(crate::fault::Site::CacheDump);
        let flush_due = self.flush_due(now);
        let tables = &self.tables;
        let mut out = Vec::new();
        if class >= tables.slabs.class_count() || flush_due {
            return out;
        }
        let mut bytes = 0;
        let mut at = tables.lru.head(class);
        while let Some(id) = at {
            at = Lru::older(&tables.slabs, id);
            let c = tables.slabs.chunk(id);
            let unprintable = item::key(c)
                .iter()
                .any(|b| matches!(b, b' ' | b'\r' | b'\n'));
            if item::key_binary(c) || unprintable || tables.is_dead(c, now).is_some() {
                continue;
            }
            let deadline = item::deadline(c);
            // "ITEM <key> [<bytes> b; <exptime> s]\r\n", and "END\r\n\0".
            let exptime_digits = if deadline.millis().is_some() { 10 } else { 1 };
            let line = 16 + item::key_len(c) + digits(item::value_len(c)) + exptime_digits;
            if bytes + line + 6 > CACHEDUMP_MAX_BYTES {
                break;
            }
            bytes += line;
            out.push(CacheDumpItem {
                key: item::key(c).to_vec(),
                value_len: item::value_len(c),
                deadline,
                last_access_secs: item::time(c),
            });
            if out.len() == limit {
                break;
            }
        }
        out
    }

    /// Opens metadump `id` (`lru_crawler metadump all|<classes>`) over
    /// the live items of `classes` (0-based), or of every class. See
    /// [`Shard::metadump_next`]. The caller names it: `id` must differ
    /// from every dump open on the shard. A shard keeps at most
    /// [`MAX_METADUMPS`] open (the oldest is forgotten for a newer one);
    /// the server closes each with [`Shard::metadump_end`] if it stops
    /// early (a dump that finishes closes itself).
    pub fn metadump_start(&mut self, id: MetaDumpId, classes: Option<&[usize]>) {
        let count = self.tables.slabs.class_count();
        let classes = classes.map(|list| {
            let mut wanted = vec![false; count];
            for &c in list.iter().filter(|&&c| c < count) {
                wanted[c] = true;
            }
            wanted
        });
        let dumps = &mut self.tables.dumps;
        if dumps.len() == MAX_METADUMPS {
            dumps.remove(0);
        }
        dumps.push(DumpCursor {
            id: id.0,
            classes,
            page: 0,
            slot: 0,
            pending: HashMap::new(),
            skip: HashMap::new(),
        });
    }

    /// The next step of a metadump: at most `max_items` items, having
    /// looked at no more than [`METADUMP_SCAN_BUDGET`] chunks, so a step
    /// costs the same however big the shard. A step may list nothing and
    /// still not be done; the server calls again until `done`. Expired and
    /// flushed items are left out, as memcached does. `None` if the dump is
    /// not open (finished, ended, or forgotten for a newer one).
    pub fn metadump_next(
        &mut self,
        id: MetaDumpId,
        max_items: usize,
        now: Millis,
    ) -> Option<MetaDumpBatch> {
        crate::fault::check(crate::fault::Site::MetaDump);
        self.catch_up(now);
        let tables = &mut self.tables;
        let at = tables.dumps.iter().position(|d| d.id == id.0)?;
        let mut d = tables.dumps.swap_remove(at);
        let mut items = Vec::new();
        let pending: Vec<(ChunkId, u64)> = d
            .pending
            .iter()
            .take(max_items)
            .map(|(&chunk, &cas)| (chunk, cas))
            .collect();
        for (chunk, cas) in pending {
            d.pending.remove(&chunk);
            // Gone or replaced since it moved: not the item it was.
            if let Some(found) = tables.dump_item(chunk, now)
                && found.cas == cas
            {
                items.push(found);
            }
        }
        let mut scanned = 0;
        while items.len() < max_items && scanned < METADUMP_SCAN_BUDGET {
            if d.page >= tables.slabs.page_numbers() {
                break;
            }
            let on_page = tables.slabs.chunks_on_page(d.page);
            if d.slot >= on_page || !d.lists(tables.slabs.page_class(d.page)) {
                d.page += 1;
                d.slot = 0;
                scanned += 1;
                continue;
            }
            let chunk = tables.slabs.chunk_at(d.page, d.slot);
            d.slot += 1;
            scanned += 1;
            if let Some(found) = tables.dump_item(chunk, now) {
                if d.skip.remove(&chunk) == Some(found.cas) {
                    continue;
                }
                items.push(found);
            }
        }
        let done = d.page >= tables.slabs.page_numbers() && d.pending.is_empty();
        if !done {
            tables.dumps.push(d);
        }
        Some(MetaDumpBatch { items, done })
    }

    /// Closes a metadump the server stops early (its client went away).
    pub fn metadump_end(&mut self, id: MetaDumpId) {
        self.tables.dumps.retain(|d| d.id != id.0);
    }
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}
