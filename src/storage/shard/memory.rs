//! Item memory: finding a chunk for a store (free list, new page, empty
//! page, expired tail, LRU eviction, a page from another class), moving
//! pages between classes with their live items rescued, running the
//! automove policy from `tick`, and changing the memory limit at run time
//! (a shrink gives pages back to the system over the following ticks).

use super::{Gone, SHRINK_EMPTY_PAGES_PER_TICK, Shard, TAIL_SEARCH, Tables};
use crate::storage::automove::ClassView;
use crate::storage::item;
use crate::storage::lru::Lru;
use crate::storage::slab::ChunkId;
use crate::storage::{AutomoveMode, Millis, ReassignOutcome, key_hash};

impl Tables {
    /// Empties a page and gives it to class `to`. Expired and flushed
    /// items are reclaimed; live ones are rescued into other chunks of their
    /// class, and where the class has no room, its least recently used items
    /// are evicted instead. So a page move costs the donor class its oldest
    /// items, never the ones just written that happened to sit on the page.
    pub(super) fn move_page(&mut self, page: usize, to: usize, now: Millis) {
        crate::fault::check(crate::fault::Site::PageMove);
        let from = self.empty_page(page, now);
        self.slabs.reassign_page(page, to);
        self.stats.slabs_moved += 1;
        self.classes[from].pages_out += 1;
        self.classes[to].pages_in += 1;
    }

    /// Empties a page as [`Tables::move_page`] does and gives its memory
    /// back to the system.
    pub(super) fn release_page(&mut self, page: usize, now: Millis) {
        let from = self.empty_page(page, now);
        self.slabs.release_page(page);
        self.classes[from].pages_out += 1;
    }

    /// Takes every item off `page` (reclaimed if dead, else rescued) and
    /// returns the page's class.
    fn empty_page(&mut self, page: usize, now: Millis) -> usize {
        let from = self.slabs.page_class(page);
        self.slabs.begin_move(page);
        let ids: Vec<ChunkId> = self.slabs.page_chunks(page).collect();
        for id in ids {
            let c = self.slabs.chunk(id);
            // Checked per chunk: rescuing an earlier one may have evicted it.
            if !item::is_allocated(c) {
                continue;
            }
            match self.is_dead(c, now) {
                Some(why) => self.unlink_unhashed(id, why),
                None => self.rescue(id, page, from, now),
            }
        }
        from
    }

    /// Moves live item `id` off `page` to another chunk of `class`, evicting
    /// the class's oldest items until one is free (or `id` is the oldest).
    fn rescue(&mut self, id: ChunkId, page: usize, class: usize, now: Millis) {
        loop {
            if let Some(to) = self.slabs.alloc_outside(class, page) {
                let hash = key_hash(item::key(self.slabs.chunk(id)));
                let found = self.index.remove(&mut self.slabs, id, hash);
                debug_assert!(found, "rescuing an item the index does not hold");
                self.slabs.copy_chunk(id, to);
                self.note_relocation(id, to);
                self.lru.replace(&mut self.slabs, class, id, to);
                self.index.insert(&mut self.slabs, to, hash);
                self.slabs.free(id);
                self.relocated.push(to);
                self.stats.slab_reassign_rescues += 1;
                return;
            }
            let tail = self
                .lru
                .tail(class)
                .expect("the item being rescued is linked");
            let why = self
                .is_dead(self.slabs.chunk(tail), now)
                .unwrap_or(Gone::Moved);
            self.unlink_unhashed(tail, why);
            if tail == id {
                return;
            }
        }
    }

    /// The page of `class` to give away: an empty one, else the one holding
    /// the class's LRU tail (its coldest item).
    fn donor_page(&self, class: usize) -> Option<usize> {
        self.slabs
            .empty_page_of(class)
            .or_else(|| self.lru.tail(class).map(|id| self.slabs.page_of(id)))
    }

    /// A chunk for an item of `class`; see the module doc for the order of
    /// resorts. `None` only if nothing can be freed.
    pub(super) fn alloc(&mut self, class: usize, now: Millis) -> Option<ChunkId> {
        loop {
            if let Some(id) = self.slabs.alloc(class) {
                return Some(id);
            }
            if self.slabs.empty_pages() > 0 {
                let page = (0..self.slabs.class_count())
                    .find_map(|c| self.slabs.empty_page_of(c))
                    .expect("an empty page is counted");
                self.move_page(page, class, now);
                continue;
            }
            if let Some(tail) = self.lru.tail(class) {
                let mut at = Some(tail);
                let mut victim = (tail, Gone::Evicted);
                // Each look is a header read (a cache miss in a big cache):
                // only look past the tail if something can be dead there.
                let search = if self.timed > 0 || self.flush_pending {
                    TAIL_SEARCH
                } else {
                    1
                };
                for _ in 0..search {
                    let Some(id) = at else { break };
                    if let Some(why) = self.is_dead(self.slabs.chunk(id), now) {
                        victim = (id, why);
                        break;
                    }
                    at = Lru::newer(&self.slabs, id);
                }
                self.unlink_unhashed(victim.0, victim.1);
                continue;
            }
            // Nothing of its own to evict: take the coldest page of the class
            // with the most pages.
            let donor = (0..self.slabs.class_count())
                .filter(|&c| c != class && self.slabs.class_pages(c) > 0)
                .max_by_key(|&c| self.slabs.class_pages(c));
            match donor.and_then(|d| self.donor_page(d)) {
                Some(page) => self.move_page(page, class, now),
                None => {
                    self.classes[class].outofmemory += 1;
                    return None;
                }
            }
        }
    }
}

impl Shard {
    /// Changes this shard's memory limit (`cache_memlimit`, divided over
    /// the shards). Growing lets the shard take more pages at once.
    /// Shrinking stops it taking new pages; [`Shard::tick`] then gives pages
    /// back to the system until it holds no more than the new limit, at
    /// most [`SHRINK_EMPTY_PAGES_PER_TICK`] empty pages and one page with
    /// items per tick. A page with items is emptied as a page move is:
    /// live items go to other chunks of their class, and where the class
    /// has no room its oldest items are evicted (and counted), so a shrink
    /// costs the least recently used items, never a wrong value. The limit
    /// is kept in whole pages, at least one. Fails, changing nothing, if
    /// the limit is more than one shard can address.
    pub fn set_memory_limit(&mut self, bytes: usize) -> Result<(), String> {
        let pages = bytes / self.config.slab_page_size;
        self.tables.slabs.set_page_limit(pages)?;
        self.config.memory_limit = bytes;
        self.tables.stats.limit_maxbytes = bytes as u64;
        Ok(())
    }

    /// This shard's memory limit in bytes.
    pub fn memory_limit(&self) -> usize {
        self.config.memory_limit
    }

    /// Pages the memory limit allows ([`Shard::pages_allocated`] stays
    /// above it while a shrink is under way).
    pub fn page_limit(&self) -> usize {
        self.tables.slabs.page_limit()
    }

    /// One tick's share of a shrink; see [`Shard::set_memory_limit`].
    pub(super) fn shrink(&mut self, now: Millis) {
        let mut released = 0;
        while self.tables.slabs.pages_allocated() > self.tables.slabs.page_limit()
            && released < SHRINK_EMPTY_PAGES_PER_TICK
        {
            let slabs = &self.tables.slabs;
            if let Some(page) = (0..slabs.class_count()).find_map(|c| slabs.empty_page_of(c)) {
                self.tables.release_page(page, now);
                released += 1;
                continue;
            }
            // No empty page: the coldest page of the class holding most.
            let class = (0..slabs.class_count())
                .max_by_key(|&c| slabs.class_pages(c))
                .expect("a page is held, so a class holds it");
            let page = self
                .tables
                .donor_page(class)
                .expect("a class with pages has a donor page");
            self.tables.release_page(page, now);
            self.renew_relocated();
            break;
        }
    }

    /// `slabs reassign <src> <dst>`: moves one page from class `src` to
    /// class `dst` at once, as a page move (live items rescued, the source
    /// class's oldest evicted where it has no room). Classes are numbered as
    /// memcached numbers them: `1..=N` for the slab classes (a class's
    /// 0-based index plus one), `0` for the pool of free pages, and `src`
    /// `-1` for "any class with a spare page" (round robin, as memcached
    /// picks). A page sent to the pool is given back to the system and its
    /// memory returns to the budget, where any class can take it; the pool
    /// itself holds no pages, so it has none to give. The checks come in
    /// memcached's order: busy, same, bad class, no spare.
    pub fn slabs_reassign(&mut self, src: i64, dst: i64, now: Millis) -> ReassignOutcome {
        // A delayed flush that fell due must apply first: else the page
        // move sees its items as live and evicts them (and counts them).
        self.catch_up(now);
        if self.tables.slabs.pages_allocated() > self.tables.slabs.page_limit() {
            return ReassignOutcome::Busy;
        }
        if src == dst {
            return ReassignOutcome::Same;
        }
        let classes = self.tables.slabs.class_count() as i64;
        let src = if src == -1 { self.pick_spare(dst) } else { src };
        if !(0..=classes).contains(&src) || !(0..=classes).contains(&dst) {
            return ReassignOutcome::BadClass;
        }
        if src == 0 || self.tables.slabs.class_pages(src as usize - 1) < 2 {
            return ReassignOutcome::NoSpare;
        }
        let from = src as usize - 1;
        let page = self
            .tables
            .donor_page(from)
            .expect("a class with pages has a donor page");
        if dst == 0 {
            self.tables.release_page(page, now);
            self.tables.stats.slabs_moved += 1;
        } else {
            self.tables.move_page(page, dst as usize - 1, now);
        }
        self.renew_relocated();
        ReassignOutcome::Ok
    }

    /// The next class (memcached's number) after the last one picked that
    /// holds two pages or more, skipping `dst`; -1 if none does.
    fn pick_spare(&mut self, dst: i64) -> i64 {
        let classes = self.tables.slabs.class_count();
        for _ in 0..classes {
            self.spare_cursor = self.spare_cursor % classes + 1;
            let class = self.spare_cursor;
            if class as i64 != dst && self.tables.slabs.class_pages(class - 1) >= 2 {
                return class as i64;
            }
        }
        -1
    }

    /// `slabs automove <0|1|2>`: how eagerly `tick` moves pages between
    /// classes (see [`crate::storage::automove`]).
    pub fn set_automove(&mut self, mode: AutomoveMode) {
        self.automove.set_mode(mode);
    }

    /// The automove mode in force.
    pub fn automove_mode(&self) -> AutomoveMode {
        self.automove.mode()
    }

    pub(super) fn automove(&mut self, now: Millis) {
        let tables = &self.tables;
        let mut views = std::mem::take(&mut self.automove_views);
        views.clear();
        views.extend((0..tables.slabs.class_count()).map(|class| {
            ClassView {
                evictions: tables.classes[class].evicted,
                pages: tables.slabs.class_pages(class),
                empty_pages: tables.slabs.class_empty_pages(class),
                tail_time: tables
                    .lru
                    .tail(class)
                    .map(|id| item::time(tables.slabs.chunk(id))),
            }
        }));
        let decision = self.automove.evaluate(now, &views);
        self.automove_views = views;
        if let Some(m) = decision
            && let Some(page) = self.tables.donor_page(m.from)
        {
            self.tables.move_page(page, m.to, now);
            self.renew_relocated();
        }
    }
}
