//! corecache: a memcached-compatible, thread-per-core, shared-nothing cache.
#![warn(missing_docs)]

pub mod clock;
pub mod storage;
