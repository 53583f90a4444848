//! A global allocator that counts allocations, for tests that check code
//! allocates nothing once warm: the whole process's count, for a server
//! whose threads are not the test's ([`allocations`]), and the calling
//! thread's own, for a unit test among others running in parallel
//! ([`thread_allocations`]).
//!
//! Declaring this module installs it as the global allocator of the test
//! binary that declares it, so it is included by path, never from
//! `common/mod.rs`: tests/alloc.rs is a binary of its own, and the storage
//! unit tests (src/storage/tests/mod.rs) declare it in the library's test
//! build.
#![allow(dead_code)] // each includer reads one of the two counts

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct CountingAlloc;

static PROCESS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Const-initialised and without a destructor: touching it never
    // allocates, which an allocator must not.
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    PROCESS.fetch_add(1, Ordering::Relaxed);
    // `try_with`: never panics, even while the thread is being torn down.
    let _ = THREAD.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method passes the caller's pointer and layout unchanged to
// `System`, which upholds the `GlobalAlloc` contract; the only addition is
// counting, which touches an atomic and a thread-local cell, neither of
// which allocates or touches the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `alloc`'s contract, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from `System` through this wrapper with
        // `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Allocations (and reallocations) by every thread of the process so far.
pub fn allocations() -> u64 {
    PROCESS.load(Ordering::Relaxed)
}

/// Allocations (and reallocations) by the calling thread so far.
pub fn thread_allocations() -> u64 {
    THREAD.with(Cell::get)
}
