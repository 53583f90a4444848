//! Listing what the cache holds across every shard of every thread:
//! `stats cachedump` and `lru_crawler metadump`.
//!
//! Both are built from the shards' own listings (`Shard::cachedump`, the
//! resumable `Shard::metadump_next`), reached with [`Control`] requests, so
//! they work the same in both runtimes and never touch a shard from a
//! thread that does not own it.
//!
//! - **cachedump** asks one shard at a time for the class's items, most
//!   recently used first, and merges each answer into what it holds by
//!   last access, keeping only what fits memcached's reply (the limit, and
//!   2 MiB): at most two shards' worth of lines in memory at once.
//! - **metadump** opens a cursor on every shard, then takes a bounded step
//!   on all of them per request ([`STEP_ITEMS`] items in all), and the
//!   connection writes each step to the client before asking for the next,
//!   so a dump of millions of items holds one step in memory and a client
//!   that reads slowly slows it down. A client that goes away ends it:
//!   every shard closes its cursor.

use super::plan::Dispatch;
use super::{Control, DumpStep, ServerState, ShardAnswer};
use crate::protocol::Reply;
use crate::protocol::admin::{
    AdminReply, ClassSet, Crawl, write_cachedump_line, write_metadump_line,
};
use crate::storage::shard::{CACHEDUMP_MAX_BYTES, MAX_METADUMPS};
use crate::storage::{CacheDumpItem, Deadline};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Items one metadump step takes from all the shards together (each gets
/// an even share, at least [`MIN_SHARD_STEP`]).
pub const STEP_ITEMS: usize = 4096;
/// The smallest share of a step one shard takes.
const MIN_SHARD_STEP: usize = 64;

/// Answers `stats cachedump <class> <limit>` (memcached's class number).
pub async fn cachedump<D: Dispatch>(
    class: u32,
    limit: u32,
    state: &ServerState,
    dispatch: &mut D,
    out: &mut Vec<u8>,
) {
    let tunables = &state.tunables;
    let (class, limit) = (class as usize, limit as usize);
    if class > tunables.max_class() {
        out.extend_from_slice(AdminReply::IllegalSlabId.text());
        return;
    }
    let mut merged: Vec<CacheDumpItem> = Vec::new();
    if (1..=tunables.classes).contains(&class) {
        for shard in 0..state.config.shards {
            let control = Control::CacheDump {
                shard,
                class: class - 1,
                limit,
            };
            let items = match super::settings::ask_one_shard(dispatch, control).await {
                ShardAnswer::CacheDump(items) => items,
                _ => Vec::new(),
            };
            merged = merge_recent_first(merged, items);
            if limit > 0 {
                merged.truncate(limit);
            }
            let fit = fitting_lines(&merged, state);
            merged.truncate(fit);
        }
    }
    for item in &merged {
        write_cachedump_line(
            out,
            &item.key,
            item.value_len,
            unix_exptime(item.deadline, state),
        );
    }
    out.extend_from_slice(Reply::END);
}

/// Two lists each most recently used first, merged the same way (on a tie,
/// `a` first).
fn merge_recent_first(a: Vec<CacheDumpItem>, b: Vec<CacheDumpItem>) -> Vec<CacheDumpItem> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.last_access_secs >= y.last_access_secs,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return merged,
        };
        merged.extend(if take_a { a.next() } else { b.next() });
    }
}

/// How many of `items` memcached would list: it adds a line while the
/// line and `END\r\n\0` still fit in [`CACHEDUMP_MAX_BYTES`].
fn fitting_lines(items: &[CacheDumpItem], state: &ServerState) -> usize {
    let mut bytes = 0;
    let mut line = Vec::new();
    for (i, item) in items.iter().enumerate() {
        line.clear();
        let exptime = unix_exptime(item.deadline, state);
        let len = write_cachedump_line(&mut line, &item.key, item.value_len, exptime);
        if bytes + len + 6 > CACHEDUMP_MAX_BYTES {
            return i;
        }
        bytes += len;
    }
    items.len()
}

/// An item's exptime as memcached prints it: the unix time, 0 for never.
fn unix_exptime(deadline: Deadline, state: &ServerState) -> u64 {
    deadline.millis().map_or(0, |at| state.clock.unix_at(at))
}

/// An `lru_crawler metadump` under way on every shard.
pub struct MetaDump {
    id: u64,
    /// Items each shard lists per step.
    per_shard: usize,
    state: Arc<ServerState>,
    /// Whether the shards' cursors are closed.
    finished: bool,
}

impl MetaDump {
    /// Checks the request as memcached does and opens a cursor on every
    /// shard; or writes the refusal and returns `None`.
    pub async fn start<D: Dispatch>(
        crawl: Crawl,
        state: &Arc<ServerState>,
        dispatch: &mut D,
        out: &mut Vec<u8>,
    ) -> Option<MetaDump> {
        let tunables = &state.tunables;
        let refuse = |reply: AdminReply, out: &mut Vec<u8>| {
            out.extend_from_slice(reply.text());
            None
        };
        if !tunables.crawler.load(Relaxed) {
            return refuse(AdminReply::CrawlerDisabled, out);
        }
        let classes: Option<ClassSet> = match tunables.crawl_classes(crawl) {
            Ok(classes) => classes,
            Err(refusal) => return refuse(refusal, out),
        };
        // Each shard keeps this many cursors: one more would forget one.
        let reserved = tunables
            .metadumps
            .fetch_update(Relaxed, Relaxed, |n| (n < MAX_METADUMPS).then_some(n + 1));
        if reserved.is_err() {
            return refuse(AdminReply::CrawlerBusy, out);
        }
        tunables.crawler_starts.fetch_add(1, Relaxed);
        let dump = MetaDump {
            id: tunables.next_dump.fetch_add(1, Relaxed),
            per_shard: (STEP_ITEMS / state.config.shards).max(MIN_SHARD_STEP),
            state: state.clone(),
            finished: false,
        };
        let step = DumpStep::Start(classes);
        dispatch
            .control(Control::MetaDump { id: dump.id, step })
            .await;
        Some(dump)
    }

    /// Appends the next step's lines to `out`, and `END` after the last;
    /// false once `END` is written.
    pub async fn next<D: Dispatch>(&mut self, dispatch: &mut D, out: &mut Vec<u8>) -> bool {
        if self.finished {
            return false;
        }
        let step = DumpStep::Next(self.per_shard);
        let reports = dispatch
            .control(Control::MetaDump { id: self.id, step })
            .await;
        let clock = &self.state.clock;
        let mut open = false;
        for report in reports {
            let ShardAnswer::MetaDump(Some(batch)) = report.answer else {
                continue;
            };
            open |= !batch.done;
            for item in batch.items {
                let exp = item
                    .deadline
                    .millis()
                    .map_or(-1, |at| clock.unix_at(at) as i64);
                let la = clock.unix_after(item.last_access_secs);
                let (cas, fetched, class, size) =
                    (item.cas, item.fetched, item.class + 1, item.size);
                write_metadump_line(out, &item.key, exp, la, cas, fetched, class, size);
            }
        }
        if !open {
            // Every shard's cursor closed itself when it finished.
            self.finished = true;
            out.extend_from_slice(Reply::END);
        }
        true
    }

    /// Stops the dump early (its client went away): every shard closes
    /// its cursor.
    pub async fn end<D: Dispatch>(mut self, dispatch: &mut D) {
        if !self.finished {
            let step = DumpStep::End;
            dispatch
                .control(Control::MetaDump { id: self.id, step })
                .await;
            self.finished = true;
        }
    }
}

impl Drop for MetaDump {
    fn drop(&mut self) {
        // Dropped unfinished only when its connection's task is dropped
        // mid-dump (the server stopping): the shards' cursors stay until
        // newer dumps push them out, at most MAX_METADUMPS per shard.
        self.state.tunables.metadumps.fetch_sub(1, Relaxed);
    }
}
