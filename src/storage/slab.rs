//! The slab arena: pages taken from the shard's memory budget, each carved
//! into equal chunks of one slab class, with a free list per class.
//!
//! This module owns item memory. A chunk is named by a [`ChunkId`], a `u32`
//! packing `(page << slot_bits | slot) + 1`, so 0 can mean "none" in the
//! links other structures keep inside item headers. A page's memory is
//! mapped from the system on first use ([`super::page`]: zeroed, backed
//! lazily) and can be moved from one class to another once every chunk on
//! it is free ([`Slabs::reassign_page`]), or given back to the system
//! ([`Slabs::release_page`]) when the memory limit shrinks. A page given
//! back keeps its number, so no chunk id ever changes meaning; the next
//! page taken from the budget reuses it. Free chunks sit on a per-class
//! `Vec` used as a stack, so once a class is warm no store or delete
//! allocates.
//!
//! Class sizes are memcached's: the smallest chunk holds the item header
//! plus `slab_min_chunk` bytes, each class is the previous times
//! `slab_growth_factor` rounded up to 8 bytes, and the last class is the
//! largest item (`max_item_size`, by default a whole page).

use super::ShardConfig;
use super::item;
use super::page::PageMemory;

/// Names one chunk: `(page << slot_bits | slot) + 1`; 0 is "none".
pub type ChunkId = u32;

/// The "no chunk" id used in links.
pub const NIL: ChunkId = 0;

/// Most slab classes a configuration may produce (class ids fit in a `u8`).
pub const MAX_CLASSES: usize = 255;

/// Checks the slab settings of a configuration, returning a message that
/// names the offending setting.
pub fn validate(config: &ShardConfig) -> Result<(), String> {
    let page = config.slab_page_size;
    if !(1024..=1 << 30).contains(&page) {
        return Err(format!(
            "slab page size {page} must be between 1 KiB and 1 GiB"
        ));
    }
    if config.max_item_size > page {
        return Err(format!(
            "max item size {} must not exceed the slab page size {page}",
            config.max_item_size
        ));
    }
    let factor = config.slab_growth_factor;
    if !(factor.is_finite() && factor > 1.0) {
        return Err(format!("slab growth factor {factor} must be above 1.0"));
    }
    if config.slab_min_chunk == 0 || config.slab_min_chunk > page / 2 {
        return Err(format!(
            "slab minimum chunk {} must be between 1 and half a page ({})",
            config.slab_min_chunk,
            page / 2
        ));
    }
    if config.max_item_size < item::HEADER + config.slab_min_chunk {
        return Err(format!(
            "max item size {} is below the smallest chunk ({} bytes of header plus {} of data)",
            config.max_item_size,
            item::HEADER,
            config.slab_min_chunk
        ));
    }
    let sizes = class_sizes(config);
    if sizes.len() > MAX_CLASSES {
        return Err(format!(
            "slab growth factor {factor} gives {} classes; at most {MAX_CLASSES} are supported",
            sizes.len()
        ));
    }
    let pages = page_limit(config);
    if pages > max_pages(page, sizes[0]) {
        return Err(format!(
            "memory limit {} in pages of {page} bytes is too large for one shard; use larger pages or more shards",
            config.memory_limit
        ));
    }
    Ok(())
}

/// The chunk size of every slab class, smallest first, header included
/// (what `stats slabs` reports as `chunk_size`).
pub fn class_sizes(config: &ShardConfig) -> Vec<usize> {
    let largest = config.max_item_size.min(config.slab_page_size);
    let mut sizes = Vec::new();
    let mut size = align8(item::HEADER + config.slab_min_chunk);
    while size < largest && (size as f64) <= largest as f64 / config.slab_growth_factor {
        sizes.push(size);
        if sizes.len() > MAX_CLASSES {
            break;
        }
        let grown = align8((size as f64 * config.slab_growth_factor) as usize);
        size = grown.max(size + 8);
    }
    sizes.push(largest);
    sizes
}

/// Pages the budget allows: `memory_limit / page_size`, at least one.
pub fn page_limit(config: &ShardConfig) -> usize {
    (config.memory_limit / config.slab_page_size).max(1)
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn slot_bits(page_size: usize, smallest: usize) -> u32 {
    let per_page = (page_size / smallest) as u32;
    u32::BITS - per_page.leading_zeros()
}

/// The most pages chunk ids can name with this page size and smallest
/// chunk: the last chunk id of the last page must stay below `u32::MAX`.
fn max_pages(page_size: usize, smallest: usize) -> usize {
    ((u64::from(u32::MAX) - 1) >> slot_bits(page_size, smallest)) as usize
}

struct Page {
    /// No memory when the page was given back to the system.
    data: PageMemory,
    /// The class the page is carved for (stale once given back).
    class: u8,
    /// Chunks of this page holding items.
    used: u32,
}

struct Class {
    size: usize,
    per_page: u32,
    free: Vec<ChunkId>,
    pages: Vec<u32>,
    used: u64,
    /// Pages of this class with no chunk in use.
    empty_pages: u32,
}

/// A snapshot of one class's memory, for `stats slabs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassMemory {
    /// Bytes per chunk.
    pub chunk_size: usize,
    /// Chunks carved from one page.
    pub chunks_per_page: u32,
    /// Pages the class holds.
    pub total_pages: u64,
    /// Chunks the class holds (`total_pages * chunks_per_page`).
    pub total_chunks: u64,
    /// Chunks holding items.
    pub used_chunks: u64,
    /// Chunks on the free list.
    pub free_chunks: u64,
}

/// The slab arena of one shard.
pub struct Slabs {
    page_size: usize,
    slot_bits: u32,
    /// Pages the budget allows.
    page_limit: usize,
    /// The most pages chunk ids can name.
    max_pages: usize,
    /// Every page ever numbered; given-back ones hold no memory.
    pages: Vec<Page>,
    /// Pages holding memory.
    held: usize,
    /// Numbers of pages given back, for reuse.
    released: Vec<u32>,
    classes: Vec<Class>,
    /// One past the largest class with a chunk in use (0: none is).
    top: usize,
    /// Pages with no chunk in use, all classes.
    empty_total: usize,
    /// A page being emptied to change class: its chunks stay off the free
    /// list, so nothing is allocated on it while its items are rescued.
    moving: Option<usize>,
}

impl Slabs {
    /// An arena with no pages yet. The configuration must pass
    /// [`validate`].
    pub fn new(config: &ShardConfig) -> Slabs {
        let sizes = class_sizes(config);
        let page_size = config.slab_page_size;
        let classes = sizes
            .iter()
            .map(|&size| Class {
                size,
                per_page: (page_size / size) as u32,
                free: Vec::new(),
                pages: Vec::new(),
                used: 0,
                empty_pages: 0,
            })
            .collect();
        Slabs {
            page_size,
            slot_bits: slot_bits(page_size, sizes[0]),
            page_limit: page_limit(config),
            max_pages: max_pages(page_size, sizes[0]),
            pages: Vec::new(),
            held: 0,
            released: Vec::new(),
            classes,
            top: 0,
            empty_total: 0,
            moving: None,
        }
    }

    /// How many slab classes there are.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// The smallest class whose chunks hold `size` bytes, if any does.
    pub fn class_for(&self, size: usize) -> Option<usize> {
        let i = self.classes.partition_point(|c| c.size < size);
        (i < self.classes.len()).then_some(i)
    }

    /// Chunk size of the largest class with a chunk in use; 0 if none is.
    pub fn largest_in_use(&self) -> usize {
        self.top.checked_sub(1).map_or(0, |i| self.classes[i].size)
    }

    /// Chunk size of a class.
    pub fn chunk_size(&self, class: usize) -> usize {
        self.classes[class].size
    }

    /// Pages holding memory now (all classes).
    pub fn pages_allocated(&self) -> usize {
        self.held
    }

    /// Pages are numbered `0..page_numbers()`; some of them may have been
    /// given back ([`Slabs::is_released`]).
    pub fn page_numbers(&self) -> usize {
        self.pages.len()
    }

    /// The page budget.
    pub fn page_limit(&self) -> usize {
        self.page_limit
    }

    /// Changes the page budget. Pages already held above it stay until the
    /// caller gives them back ([`Slabs::release_page`]); none is taken while
    /// the arena holds that many. Fails, changing nothing, if chunk ids
    /// could not name that many pages.
    pub fn set_page_limit(&mut self, pages: usize) -> Result<(), String> {
        if pages > self.max_pages {
            return Err(format!(
                "{pages} pages of {} bytes are more than one shard can address ({})",
                self.page_size, self.max_pages
            ));
        }
        self.page_limit = pages.max(1);
        Ok(())
    }

    /// Whether `page` was given back to the system.
    pub fn is_released(&self, page: usize) -> bool {
        self.pages[page].data.is_none()
    }

    /// Pages held by a class.
    pub fn class_pages(&self, class: usize) -> usize {
        self.classes[class].pages.len()
    }

    /// Pages of a class with no chunk in use.
    pub fn class_empty_pages(&self, class: usize) -> usize {
        self.classes[class].empty_pages as usize
    }

    /// A memory snapshot of a class.
    pub fn class_memory(&self, class: usize) -> ClassMemory {
        let c = &self.classes[class];
        ClassMemory {
            chunk_size: c.size,
            chunks_per_page: c.per_page,
            total_pages: c.pages.len() as u64,
            total_chunks: c.pages.len() as u64 * u64::from(c.per_page),
            used_chunks: c.used,
            free_chunks: c.free.len() as u64,
        }
    }

    /// The page and slot of a chunk: chunks are ordered by these, which is
    /// the order [`Slabs::page_chunks`] walks them in.
    pub fn position(&self, id: ChunkId) -> (usize, usize) {
        self.split(id)
    }

    /// The chunk in `slot` of `page`.
    pub fn chunk_at(&self, page: usize, slot: usize) -> ChunkId {
        self.make(page, slot)
    }

    /// Chunks carved from `page` (none once it is given back).
    pub fn chunks_on_page(&self, page: usize) -> usize {
        if self.is_released(page) {
            0
        } else {
            self.classes[self.pages[page].class as usize].per_page as usize
        }
    }

    fn split(&self, id: ChunkId) -> (usize, usize) {
        let raw = id - 1;
        (
            (raw >> self.slot_bits) as usize,
            (raw & ((1 << self.slot_bits) - 1)) as usize,
        )
    }

    fn make(&self, page: usize, slot: usize) -> ChunkId {
        ((page as u32) << self.slot_bits | slot as u32) + 1
    }

    /// The page a chunk lives on.
    pub fn page_of(&self, id: ChunkId) -> usize {
        self.split(id).0
    }

    /// The class of the page a chunk lives on.
    pub fn class_of(&self, id: ChunkId) -> usize {
        self.pages[self.split(id).0].class as usize
    }

    /// The class a page is carved for.
    pub fn page_class(&self, page: usize) -> usize {
        self.pages[page].class as usize
    }

    /// Whether `id` names a chunk of a page's current carving that holds an
    /// item. Ids kept elsewhere (the expiry wheel) may be older than a page
    /// move; this is how they are recognised.
    pub fn is_live(&self, id: ChunkId) -> bool {
        if id == NIL {
            return false;
        }
        let (page, slot) = self.split(id);
        match self.pages.get(page) {
            Some(p) if !p.data.is_none() => {
                let class = &self.classes[p.class as usize];
                slot < class.per_page as usize
                    && item::is_allocated(&p.data[slot * class.size..][..class.size])
            }
            _ => false,
        }
    }

    /// The bytes of a chunk.
    pub fn chunk(&self, id: ChunkId) -> &[u8] {
        let (page, slot) = self.split(id);
        let p = &self.pages[page];
        let size = self.classes[p.class as usize].size;
        &p.data[slot * size..][..size]
    }

    /// Starts loading the header of chunk `id` ([`super::prefetch`]);
    /// nothing for [`NIL`].
    #[inline]
    pub fn prefetch_chunk(&self, id: ChunkId) {
        if id == NIL {
            return;
        }
        let (page, slot) = self.split(id);
        let p = &self.pages[page];
        let size = self.classes[p.class as usize].size;
        super::prefetch::prefetch(p.data.as_ptr().wrapping_add(slot * size));
    }

    /// The bytes of a chunk, writable.
    pub fn chunk_mut(&mut self, id: ChunkId) -> &mut [u8] {
        let (page, slot) = self.split(id);
        let p = &mut self.pages[page];
        let size = self.classes[p.class as usize].size;
        &mut p.data[slot * size..][..size]
    }

    /// Takes a free chunk of `class`, carving a new page from the budget if
    /// the class has none. `None` when the class is full and the budget is
    /// spent. The chunk's header is garbage until the caller initialises it.
    pub fn alloc(&mut self, class: usize) -> Option<ChunkId> {
        if self.classes[class].free.is_empty() {
            if self.held >= self.page_limit {
                return None;
            }
            let data = PageMemory::map(self.page_size);
            let page = match self.released.pop() {
                Some(page) => {
                    self.pages[page as usize].data = data;
                    page as usize
                }
                None => {
                    self.pages.push(Page {
                        data,
                        class: class as u8,
                        used: 0,
                    });
                    self.pages.len() - 1
                }
            };
            self.held += 1;
            self.carve(page, class);
        }
        let id = self.classes[class].free.pop()?;
        let page = self.split(id).0;
        let p = &mut self.pages[page];
        p.used += 1;
        let c = &mut self.classes[class];
        c.used += 1;
        if p.used == 1 {
            c.empty_pages -= 1;
            self.empty_total -= 1;
        }
        self.top = self.top.max(class + 1);
        Some(id)
    }

    /// Starts emptying `page` for a move to another class: its free chunks
    /// leave the free list, and chunks freed on it later do not return there.
    /// One pass over the free list, so rescuing a whole page stays linear.
    pub fn begin_move(&mut self, page: usize) {
        let (lo, hi) = (self.make(page, 0), self.make(page + 1, 0));
        let class = self.pages[page].class as usize;
        self.classes[class].free.retain(|id| !(lo..hi).contains(id));
        self.moving = Some(page);
    }

    /// Takes a free chunk of `class` for an item rescued off the page being
    /// moved (see [`Slabs::begin_move`]); never one on that page. `None` if
    /// the class has no free chunk and the budget no room for a page.
    pub fn alloc_outside(&mut self, class: usize, page: usize) -> Option<ChunkId> {
        debug_assert_eq!(self.moving, Some(page));
        let id = self.alloc(class)?;
        debug_assert_ne!(self.split(id).0, page);
        Some(id)
    }

    /// Copies chunk `from` over chunk `to`, which must be of the same class
    /// and on another page.
    pub fn copy_chunk(&mut self, from: ChunkId, to: ChunkId) {
        let ((pf, sf), (pt, st)) = (self.split(from), self.split(to));
        assert_ne!(pf, pt, "copy between chunks of one page");
        let size = self.classes[self.pages[pf].class as usize].size;
        debug_assert_eq!(self.pages[pf].class, self.pages[pt].class);
        let (src, dst) = if pf < pt {
            let (low, high) = self.pages.split_at_mut(pt);
            (&low[pf], &mut high[0])
        } else {
            let (low, high) = self.pages.split_at_mut(pf);
            (&high[0], &mut low[pt])
        };
        dst.data[st * size..][..size].copy_from_slice(&src.data[sf * size..][..size]);
    }

    /// Returns a chunk to its class's free list.
    pub fn free(&mut self, id: ChunkId) {
        debug_assert!(self.is_live(id));
        item::clear(self.chunk_mut(id));
        let page = self.split(id).0;
        let class = self.pages[page].class as usize;
        let p = &mut self.pages[page];
        p.used -= 1;
        let c = &mut self.classes[class];
        c.used -= 1;
        if p.used == 0 {
            c.empty_pages += 1;
            self.empty_total += 1;
        }
        let emptied = c.used == 0;
        if self.moving != Some(page) {
            c.free.push(id);
        }
        if emptied && class + 1 == self.top {
            let below = self.classes[..class].iter().rposition(|c| c.used > 0);
            self.top = below.map_or(0, |i| i + 1);
        }
    }

    fn carve(&mut self, page: usize, class: usize) {
        self.pages[page].class = class as u8;
        let per_page = self.classes[class].per_page as usize;
        let ids: Vec<ChunkId> = (0..per_page).rev().map(|s| self.make(page, s)).collect();
        let size = self.classes[class].size;
        let data = &mut self.pages[page].data;
        for s in 0..per_page {
            item::clear(&mut data[s * size..][..size]);
        }
        let c = &mut self.classes[class];
        c.free.extend(ids);
        c.pages.push(page as u32);
        c.empty_pages += 1;
        self.empty_total += 1;
    }

    /// The chunks of a page in its current carving (none for a page given
    /// back).
    pub fn page_chunks(&self, page: usize) -> impl Iterator<Item = ChunkId> + use<'_> {
        let per_page = self.chunks_on_page(page);
        (0..per_page).map(move |s| self.make(page, s))
    }

    /// Whether no chunk of `page` holds an item.
    pub fn page_is_empty(&self, page: usize) -> bool {
        self.pages[page].used == 0
    }

    /// Pages with no chunk in use, over all classes.
    pub fn empty_pages(&self) -> usize {
        self.empty_total
    }

    /// An empty page of `class`, if it has one.
    pub fn empty_page_of(&self, class: usize) -> Option<usize> {
        let c = &self.classes[class];
        if c.empty_pages == 0 {
            return None;
        }
        c.pages
            .iter()
            .map(|&p| p as usize)
            .find(|&p| self.pages[p].used == 0)
    }

    /// Moves an empty page to `to`, recarving it. Every chunk on the page
    /// must already be free.
    pub fn reassign_page(&mut self, page: usize, to: usize) {
        self.detach(page);
        self.carve(page, to);
    }

    /// Gives an empty page's memory back to the system; its number is
    /// reused by the next page taken. Every chunk on the page must already
    /// be free.
    pub fn release_page(&mut self, page: usize) {
        self.detach(page);
        self.pages[page].data = PageMemory::none();
        self.held -= 1;
        self.released.push(page as u32);
    }

    /// Takes an empty page out of its class.
    fn detach(&mut self, page: usize) {
        assert!(
            !self.is_released(page) && self.page_is_empty(page),
            "page {page} still holds items"
        );
        self.moving = None;
        let from = self.pages[page].class as usize;
        let (lo, hi) = (self.make(page, 0), self.make(page + 1, 0));
        let c = &mut self.classes[from];
        c.free.retain(|&id| !(lo..hi).contains(&id));
        let pos = c.pages.iter().position(|&p| p as usize == page);
        if let Some(pos) = pos {
            c.pages.swap_remove(pos);
        }
        c.empty_pages -= 1;
        self.empty_total -= 1;
    }
}

#[cfg(test)]
mod tests;
