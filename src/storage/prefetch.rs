//! Software prefetch: ask the CPU to start loading a cache line now, so
//! that the lookups of a batch miss in parallel instead of one after
//! another.
//!
//! A lookup in a large shard costs two dependent misses to memory, the
//! index bucket and then the item header it points to (about 200 ns each
//! in a VM, and 16% of a server's CPU at pipeline 16). Running a batch as
//! "fetch every bucket; fetch every item header (the buckets have arrived);
//! run every op" overlaps them: see [`super::Shard::prefetch`].

/// Starts loading the cache line holding `ptr`. Only a hint: any address
/// is allowed, nothing is read that the program can see, and on targets
/// without the instruction it does nothing.
#[inline(always)]
pub fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE, the target feature the intrinsic requires, is part of
    // the x86_64 baseline. A prefetch never faults and has no effect the
    // program can observe, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
