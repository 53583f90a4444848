//! The memory of one slab page, mapped straight from the OS.
//!
//! This module owns the engine's `unsafe` memory management (the other
//! `unsafe` is a prefetch hint, [`super::prefetch`]): one anonymous
//! private mapping per page, unmapped when the page is dropped. Pages are
//! not taken from the allocator because a page given back (a shrinking
//! memory limit, `slabs reassign` to the pool) must leave the process's
//! resident memory at once: glibc serves the first 1 MiB blocks with mmap,
//! but after the first such block is freed it raises its mmap threshold
//! and serves the next ones from its heaps, which it returns to the system
//! only from the top. A mapping of our own is returned by `munmap`, every
//! time. A fresh mapping reads as zeros and is backed lazily, page fault
//! by page fault, as the allocator's zeroed memory was.

use std::ptr::NonNull;

#[cfg(test)]
thread_local! {
    /// Tests only: bytes this thread has mapped and not yet unmapped.
    static MAPPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Tests only: bytes of page memory the current thread holds mapped, so a
/// test can check that pages given back really were unmapped.
#[cfg(test)]
pub(crate) fn mapped_on_this_thread() -> usize {
    MAPPED.with(|m| m.get())
}

/// The bytes of one slab page; an empty `PageMemory` holds none (a page
/// given back to the system).
pub struct PageMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `PageMemory` owns its mapping exclusively, like a `Box<[u8]>`:
// nothing else holds the pointer, so moving it to another thread or reading
// it from several (through `&self`) is as safe as for a box of bytes.
unsafe impl Send for PageMemory {}
// SAFETY: as above; shared access only hands out `&[u8]`.
unsafe impl Sync for PageMemory {}

impl PageMemory {
    /// Maps `len` zeroed bytes.
    ///
    /// # Panics
    ///
    /// Aborts through [`std::alloc::handle_alloc_error`] if the system has
    /// no memory for it, as a `Box` allocation would.
    pub fn map(len: usize) -> PageMemory {
        assert!(len > 0, "an empty page is PageMemory::none()");
        // SAFETY: an anonymous private mapping at an address of the
        // kernel's choosing touches no existing memory; the result is
        // checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let layout = std::alloc::Layout::from_size_align(len, 1).expect("page size fits");
            std::alloc::handle_alloc_error(layout);
        }
        #[cfg(test)]
        MAPPED.with(|m| m.set(m.get() + len));
        PageMemory {
            ptr: NonNull::new(ptr.cast()).expect("mmap never returns null on success"),
            len,
        }
    }

    /// No memory at all: what a page given back holds.
    pub fn none() -> PageMemory {
        PageMemory {
            ptr: NonNull::dangling(),
            len: 0,
        }
    }

    /// Whether this holds no memory.
    pub fn is_none(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for PageMemory {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is either a live mapping of `len` readable bytes
        // owned by `self`, or dangling with `len` 0, which a slice allows.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PageMemory {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageMemory {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `ptr`/`len` are exactly the mapping `map` made, owned
            // by `self` and no longer borrowed; it is unmapped once.
            let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
            debug_assert_eq!(rc, 0, "munmap of our own mapping failed");
            #[cfg(test)]
            let _ = MAPPED.try_with(|m| m.set(m.get() - self.len));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OS_PAGE: usize = 4096;

    /// Resident bytes of `len` bytes at `ptr` (mincore, page by page), or
    /// `None` if the range is not mapped.
    fn resident(ptr: *const u8, len: usize) -> Option<usize> {
        let mut vec = vec![0u8; len.div_ceil(OS_PAGE)];
        // SAFETY: mincore only reads the page tables of the range, mapped
        // or not, and writes one byte per page into `vec`, which has them.
        let rc = unsafe { libc::mincore(ptr as *mut _, len, vec.as_mut_ptr()) };
        (rc == 0).then(|| vec.iter().filter(|&&b| b & 1 == 1).count() * OS_PAGE)
    }

    #[test]
    fn a_page_is_backed_as_it_is_written_and_unmapped_when_dropped() {
        let mut mem = PageMemory::map(1 << 20);
        let (ptr, len) = (mem.as_ptr(), mem.len());
        assert_eq!(len, 1 << 20);
        assert_eq!(resident(ptr, len), Some(0), "nothing backed before use");
        mem[..64 << 10].fill(7);
        // Exactly 64 KiB with 4 KiB pages; a kernel with transparent huge
        // pages always on may back more of the range at once.
        let backed = resident(ptr, len).unwrap();
        assert!((64 << 10..=len).contains(&backed), "{backed} bytes backed");
        assert_eq!((mem[0], mem[(64 << 10) - 1], mem[len - 1]), (7, 7, 0));
        drop(mem);
        // Unmapped: the memory is the system's again.
        assert_eq!(resident(ptr, len), None);
        let none = PageMemory::none();
        assert!(none.is_none() && none.is_empty());
    }
}
