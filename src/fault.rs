//! Faults a debug build can be told to inject, so that tests prove a panic
//! in each place where client input or background work runs is contained:
//! it resets a shard or ends a connection, is counted and logged, and never
//! stops a core's mail, ticks or accepts.
//!
//! `debug_fault <site>` (a text command that only debug builds know) arms
//! one site; the next time the server passes it, it panics, once. In a
//! release build [`check`] is empty and the sites cost nothing.
//!
//! The armed site is one per process: tests that arm faults run each in a
//! process of its own (cargo-nextest's way), or against a server binary.

use std::sync::atomic::{AtomicU8, Ordering};

/// A place that can be made to panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Site {
    /// A shard's report for an admin request (`stats`, `flush_all`,
    /// `slabs`, ...), on whichever core owns the shard.
    Report = 1,
    /// A shard's expiry tick.
    Tick = 2,
    /// Moving a slab page to another class (`slabs reassign`, automove).
    PageMove = 3,
    /// One step of `lru_crawler metadump` on a shard.
    MetaDump = 4,
    /// `stats cachedump` on a shard.
    CacheDump = 5,
    /// A TLS handshake.
    TlsHandshake = 6,
    /// An `--auth-file` login.
    Auth = 7,
}

impl Site {
    const ALL: [Site; 7] = [
        Site::Report,
        Site::Tick,
        Site::PageMove,
        Site::MetaDump,
        Site::CacheDump,
        Site::TlsHandshake,
        Site::Auth,
    ];

    /// The site's name in `debug_fault <site>`.
    pub fn name(self) -> &'static str {
        match self {
            Site::Report => "report",
            Site::Tick => "tick",
            Site::PageMove => "page_move",
            Site::MetaDump => "metadump",
            Site::CacheDump => "cachedump",
            Site::TlsHandshake => "tls_handshake",
            Site::Auth => "auth",
        }
    }

    /// The site named `name`, if any.
    pub fn from_name(name: &[u8]) -> Option<Site> {
        Site::ALL
            .into_iter()
            .find(|site| site.name().as_bytes() == name)
    }
}

/// No site armed.
const NONE: u8 = 0;

static ARMED: AtomicU8 = AtomicU8::new(NONE);

/// Arms `site`: the next [`check`] of it panics.
pub fn arm(site: Site) {
    ARMED.store(site as u8, Ordering::SeqCst);
}

/// Panics if `site` is armed (and disarms it): debug builds only.
#[inline]
pub fn check(site: Site) {
    if cfg!(debug_assertions)
        && ARMED.load(Ordering::Relaxed) == site as u8
        && ARMED
            .compare_exchange(site as u8, NONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        panic!("fault injected at {}", site.name());
    }
}
