//! The settings an operator changes while the server runs (memory
//! limit, automove, crawler, per-prefix stats), shared by every thread;
//! `settings.rs` holds the admin commands that change them.

use crate::config::Config;
use crate::protocol::admin::{AdminReply, ClassSet, Crawl, MEMCACHED_MAX_CLASS};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize};

/// What the admin commands change, shared by every thread. Read on
/// `stats` and by the admin commands, never on the data path.
pub struct Tunables {
    /// The item memory limit in force, in bytes.
    pub memory: AtomicU64,
    /// The automove level (`slabs automove`).
    pub automove: AtomicU8,
    /// Whether `lru_crawler` takes `crawl` and `metadump`.
    pub crawler: AtomicBool,
    /// Whether requests are counted per prefix (`stats detail`).
    pub detail: AtomicBool,
    /// Crawls and metadumps started (`lru_crawler_starts`).
    pub crawler_starts: AtomicU64,
    /// Metadumps under way.
    pub metadumps: AtomicUsize,
    /// The name of the next metadump.
    pub next_dump: AtomicU64,
    /// The slab classes each shard has.
    pub classes: usize,
    /// Held while a change is sent to the shards.
    pub changing: tokio::sync::Mutex<()>,
}

impl Tunables {
    /// The settings a server starts with.
    pub fn new(config: &Config) -> Tunables {
        Tunables {
            memory: AtomicU64::new(config.memory as u64),
            automove: AtomicU8::new(1),
            crawler: AtomicBool::new(true),
            detail: AtomicBool::new(false),
            crawler_starts: AtomicU64::new(0),
            metadumps: AtomicUsize::new(0),
            next_dump: AtomicU64::new(1),
            classes: crate::storage::slab_class_sizes(&config.shard_config(0)).len(),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// The highest class number `lru_crawler` and `stats cachedump` take:
    /// memcached's 63, or this server's highest class if it has more.
    pub fn max_class(&self) -> usize {
        self.classes.max(MEMCACHED_MAX_CLASS)
    }

    /// Checks the classes of a crawl or metadump as memcached does; the
    /// set to cover (`None` for all), or the refusal.
    pub fn crawl_classes(&self, crawl: Crawl) -> Result<Option<ClassSet>, AdminReply> {
        match crawl {
            Crawl::All | Crawl::Hash => Ok(None),
            Crawl::BadClass => Err(AdminReply::CrawlerBadClass),
            Crawl::Classes(set) if set.iter().any(|id| id > self.max_class()) => {
                Err(AdminReply::CrawlerBadClass)
            }
            Crawl::Classes(set) if set.is_empty() => Err(AdminReply::CrawlerNotStarted),
            Crawl::Classes(set) => Ok(Some(set)),
        }
    }
}
