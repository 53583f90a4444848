//! Settings an operator changes while the server runs, and the admin
//! commands that change them or act on the shards: `cache_memlimit`,
//! `slabs reassign`, `slabs automove` and `lru_crawler
//! enable|disable|crawl` (`lru_crawler metadump` streams, in `dump.rs`).
//!
//! A change reaches the shards as a [`Control`] sent to every one of them.
//! Changes are made one at a time ([`Tunables::changing`]): two clients
//! changing the memory limit at once could otherwise leave the shards of
//! one core with the first limit and those of another with the second,
//! since each core takes its mail in its own order.

use super::plan::Dispatch;
use super::tunables::Tunables;
use super::{Control, ServerState, ShardAnswer};
use crate::protocol::admin::{Admin, AdminReply, Crawl};
use crate::storage::{AutomoveMode, ReassignOutcome};
use std::sync::atomic::Ordering::Relaxed;

/// Answers an admin command other than `lru_crawler metadump`.
pub async fn run<D: Dispatch>(
    command: Admin,
    state: &ServerState,
    dispatch: &mut D,
    out: &mut Vec<u8>,
) {
    let tunables = &state.tunables;
    let (reply, noreply) = match command {
        Admin::Reply { reply, noreply } => (reply, noreply),
        Admin::MemoryLimit { mib, noreply } => (
            memory_limit(u64::from(mib) << 20, state, dispatch).await,
            noreply,
        ),
        Admin::Reassign { src, dst } => (reassign(src.into(), dst.into(), dispatch).await, false),
        Admin::Automove { level, noreply } => {
            let mode = AutomoveMode::from_level(level.into()).expect("the parser checked it");
            let _one_at_a_time = tunables.changing.lock().await;
            dispatch.control(Control::Automove(mode)).await;
            tunables.automove.store(level, Relaxed);
            (AdminReply::Ok, noreply)
        }
        // There is no crawler thread to start: enabling again fails as
        // starting memcached's running thread again does.
        Admin::CrawlerEnable => match tunables.crawler.swap(true, Relaxed) {
            true => (AdminReply::CrawlerStartFailed, false),
            false => (AdminReply::Ok, false),
        },
        Admin::CrawlerDisable => {
            tunables.crawler.store(false, Relaxed);
            (AdminReply::Ok, false)
        }
        Admin::Crawl(crawl) => (crawl_now(crawl, tunables), false),
        Admin::MetaDump(_) => unreachable!("a metadump streams: dump.rs answers it"),
    };
    if !noreply {
        out.extend_from_slice(reply.text());
    }
}

/// `cache_memlimit`: every shard takes its share of `total` bytes.
async fn memory_limit<D: Dispatch>(
    total: u64,
    state: &ServerState,
    dispatch: &mut D,
) -> AdminReply {
    let config = &state.config;
    // The engine keeps at least a page per shard, so a limit that leaves a
    // shard less than one would not be the limit in force; `--memory`
    // refuses it at start for the same reason.
    if total / config.shards as u64 > usize::MAX as u64
        || (total / config.shards as u64) < config.slab_page_size as u64
    {
        return AdminReply::MemlimitFailed;
    }
    let _one_at_a_time = state.tunables.changing.lock().await;
    let reports = dispatch.control(Control::MemoryLimit { total }).await;
    let mut failed = false;
    for report in &reports {
        if let ShardAnswer::MemoryLimit(Err(why)) = &report.answer {
            tracing::warn!("cache_memlimit {total}: shard {}: {why}", report.shard);
            failed = true;
        }
    }
    if failed {
        return AdminReply::MemlimitFailed;
    }
    state.tunables.memory.store(total, Relaxed);
    AdminReply::Ok
}

/// `slabs reassign`: one page moves, on the shard that holds most pages
/// of the source class (of any class, for `-1`) and has one to spare;
/// the next shard is tried while a shard has none.
async fn reassign<D: Dispatch>(src: i64, dst: i64, dispatch: &mut D) -> AdminReply {
    let reports = dispatch.control(Control::Slabs).await;
    let pages = |report: &super::ShardReport| -> u64 {
        let classes = &report.classes;
        match usize::try_from(src - 1) {
            Ok(class) => classes.get(class).map_or(0, |c| c.total_pages),
            Err(_) => classes.iter().map(|c| c.total_pages).sum(),
        }
    };
    let mut order: Vec<(u64, usize)> = reports.iter().map(|r| (pages(r), r.shard)).collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let (mut busy, mut last) = (false, ReassignOutcome::NoSpare);
    for (_, shard) in order {
        let control = Control::Reassign { shard, src, dst };
        let ShardAnswer::Reassign(outcome) = ask_one_shard(dispatch, control).await else {
            // The shard named panicked answering (it was reset).
            return AdminReply::Internal;
        };
        match outcome {
            ReassignOutcome::Ok | ReassignOutcome::Same => return reassign_reply(outcome),
            // A class number out of range is out of range on every shard.
            ReassignOutcome::BadClass if src != -1 => return reassign_reply(outcome),
            ReassignOutcome::Busy => busy = true,
            other => last = other,
        }
    }
    reassign_reply(if busy { ReassignOutcome::Busy } else { last })
}

/// Sends `control`, which names one shard, and returns that shard's
/// answer (the others only report their counters).
pub async fn ask_one_shard<D: Dispatch>(dispatch: &mut D, control: Control) -> ShardAnswer {
    let reports = dispatch.control(control).await;
    let mut answers = reports.into_iter().map(|report| report.answer);
    answers
        .find(|answer| !matches!(answer, ShardAnswer::None))
        .unwrap_or_default()
}

fn reassign_reply(outcome: ReassignOutcome) -> AdminReply {
    match outcome {
        ReassignOutcome::Ok => AdminReply::Ok,
        ReassignOutcome::Busy => AdminReply::ReassignBusy,
        ReassignOutcome::BadClass => AdminReply::ReassignBadClass,
        ReassignOutcome::NoSpare => AdminReply::ReassignNoSpare,
        ReassignOutcome::Same => AdminReply::ReassignSame,
    }
}

/// `lru_crawler crawl`: checked as memcached checks it. There is nothing
/// left to do: the timing wheel of every shard reclaims expired items as
/// they fall due, which is what memcached's crawl is for.
fn crawl_now(crawl: Crawl, tunables: &Tunables) -> AdminReply {
    if !tunables.crawler.load(Relaxed) {
        return AdminReply::CrawlerDisabled;
    }
    // Only a metadump walks the hash table.
    if crawl == Crawl::Hash {
        return AdminReply::CrawlerError;
    }
    match tunables.crawl_classes(crawl) {
        Ok(_) => {
            tunables.crawler_starts.fetch_add(1, Relaxed);
            AdminReply::Ok
        }
        Err(refusal) => refusal,
    }
}
