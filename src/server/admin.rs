//! Requests about the whole server: `stats` in its forms, `version`.
//!
//! Output follows memcached's names and formats so existing dashboards and
//! exporters read it unchanged; corecache's own figures (runtime, shards,
//! forwarding) are added under names memcached does not use. Each listing
//! is written as text lines or, for a binary `stat` request, as one packet
//! per statistic ([`StatsOut`]).

use super::plan::Dispatch;
use super::state::ConnState;
use super::{Control, Router, ServerState, ShardAnswer, ShardReport};
use crate::config::RuntimeKind;
use crate::protocol::admin::{StatsGroup, write_prefix_line};
use crate::protocol::binary::{self, Opcode, Status};
use crate::protocol::{ErrorReply, Reply};
use crate::storage::{PrefixCounts, ShardStats, SlabClassStats};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

/// The server's version as `version` and `stats` report it: the memcached
/// release whose protocol corecache follows, then its own version. It must
/// start with MAJOR.MINOR.MICRO: libmemcached (and every client built on
/// it) parses the version reply as numbers and refuses the server if not.
pub const VERSION: &str = concat!("1.6.18-corecache-", env!("CARGO_PKG_VERSION"));

/// The whole reply to `version`.
pub const VERSION_LINE: &[u8] = concat!(
    "VERSION 1.6.18-corecache-",
    env!("CARGO_PKG_VERSION"),
    "\r\n"
)
.as_bytes();

/// Where a stats listing goes: text lines, or binary `stat` packets
/// answering the request with this opaque.
enum StatsOut<'o> {
    Text(&'o mut Vec<u8>),
    Binary(&'o mut Vec<u8>, u32),
}

impl StatsOut<'_> {
    /// One statistic.
    fn stat(&mut self, name: &str, value: impl std::fmt::Display) {
        match self {
            StatsOut::Text(out) => Reply::stat(out, name, value),
            StatsOut::Binary(out, opaque) => binary::write_stat(out, *opaque, name, value),
        }
    }

    /// The end of a listing: `END`, or the empty packet.
    fn end(&mut self) {
        match self {
            StatsOut::Text(out) => out.extend_from_slice(Reply::END),
            StatsOut::Binary(out, opaque) => binary::write_stats_end(out, *opaque),
        }
    }

    /// `stats reset` done: `RESET`, or just the empty packet.
    fn reset(&mut self) {
        match self {
            StatsOut::Text(out) => out.extend_from_slice(b"RESET\r\n"),
            StatsOut::Binary(out, opaque) => binary::write_stats_end(out, *opaque),
        }
    }

    /// `stats detail on|off` done: `OK`, or just the empty packet.
    fn ok(&mut self) {
        match self {
            StatsOut::Text(out) => out.extend_from_slice(Reply::OK),
            StatsOut::Binary(out, opaque) => binary::write_stats_end(out, *opaque),
        }
    }

    /// A fixed text line (a usage error); text listings only.
    fn text(&mut self, line: &[u8]) {
        if let StatsOut::Text(out) = self {
            out.extend_from_slice(line);
        }
    }

    /// A group nobody has: `ERROR`, or `Not found`.
    fn unknown(&mut self) {
        match self {
            StatsOut::Text(out) => ErrorReply::Error.write(out),
            StatsOut::Binary(out, opaque) => {
                let header = binary::Header {
                    opcode: Opcode::Stat as u8,
                    opaque: *opaque,
                    cas: 0,
                };
                header.error(Status::KeyNotFound, out);
            }
        }
    }
}

/// Answers `stats <args>`.
pub async fn stats<D: Dispatch>(
    args: &[u8],
    state: &ServerState,
    dispatch: &mut D,
    out: &mut Vec<u8>,
) {
    listing(args, state, dispatch, &mut StatsOut::Text(out)).await;
}

/// Answers a binary `stat` request for `group` (empty for the general
/// stats), memcached's way: one packet per statistic, then an empty one.
pub async fn binary_stats<D: Dispatch>(
    group: &[u8],
    opaque: u32,
    state: &ServerState,
    dispatch: &mut D,
    out: &mut Vec<u8>,
) {
    listing(group, state, dispatch, &mut StatsOut::Binary(out, opaque)).await;
}

async fn listing<D: Dispatch>(
    args: &[u8],
    state: &ServerState,
    dispatch: &mut D,
    out: &mut StatsOut<'_>,
) {
    let binary = matches!(out, StatsOut::Binary(..));
    match StatsGroup::parse(args) {
        StatsGroup::General => {
            let shards = dispatch.control(Control::Stats).await;
            general(state, &shards, out);
        }
        StatsGroup::Slabs => {
            let shards = dispatch.control(Control::Slabs).await;
            slabs(&shards, out);
        }
        StatsGroup::Items => {
            let shards = dispatch.control(Control::Slabs).await;
            items(&shards, out);
        }
        StatsGroup::Threads => threads(state, out),
        StatsGroup::Conns => conns(state, out),
        StatsGroup::Settings => settings(state, out),
        StatsGroup::Reset => {
            dispatch.control(Control::ResetStats).await;
            for thread in state.threads.iter() {
                thread.reset();
            }
            return out.reset();
        }
        StatsGroup::Sizes => {
            let shards = dispatch.control(Control::Sizes(None)).await;
            sizes(&shards, out);
        }
        // memcached answers these with one line and no `END` (nor an end
        // packet): a client that works with memcached reads just the line.
        group @ (StatsGroup::SizesEnable | StatsGroup::SizesDisable) => {
            let on = group == StatsGroup::SizesEnable;
            let _one_at_a_time = state.tunables.changing.lock().await;
            dispatch.control(Control::Sizes(Some(on))).await;
            let status = if on { "enabled" } else { "disabled" };
            return out.stat("sizes_status", status);
        }
        group @ (StatsGroup::DetailOn | StatsGroup::DetailOff) => {
            let on = group == StatsGroup::DetailOn;
            let _one_at_a_time = state.tunables.changing.lock().await;
            dispatch.control(Control::Detail(on)).await;
            state.tunables.detail.store(on, Relaxed);
            return out.ok();
        }
        StatsGroup::DetailDump => {
            let shards = dispatch.control(Control::DetailDump).await;
            return detail_dump(&shards, out);
        }
        // memcached's binary `stat` knows no cachedump.
        StatsGroup::CacheDump { class, limit } if !binary => {
            let StatsOut::Text(out) = out else {
                unreachable!("a text listing")
            };
            return super::dump::cachedump(class, limit, state, dispatch, out).await;
        }
        StatsGroup::Reply(reply) if !binary => return out.text(reply.text()),
        StatsGroup::CacheDump { .. } | StatsGroup::Reply(_) | StatsGroup::Unknown => {
            return out.unknown();
        }
    }
    out.end();
}

/// `stats sizes`: the shards' item counts per 32-byte size, summed; or
/// memcached's line for a histogram that is off.
fn sizes(shards: &[ShardReport], out: &mut StatsOut<'_>) {
    let mut total: BTreeMap<usize, u64> = BTreeMap::new();
    for shard in shards {
        match &shard.answer {
            ShardAnswer::Sizes(Some(buckets)) => {
                for &(size, items) in buckets {
                    *total.entry(size).or_default() += items;
                }
            }
            // Switched on and off for every shard at once; a shard that a
            // contained panic reset is off until switched on again.
            _ => return out.stat("sizes_status", "disabled"),
        }
    }
    for (size, items) in total {
        out.stat(&size.to_string(), items);
    }
}

/// `stats detail dump`: the shards' per-prefix counts, summed, one
/// `PREFIX` line each (by prefix; memcached's order is its hash table's),
/// then `END`. A binary `stat` gets it all as the value of one statistic,
/// `detailed`, as memcached sends it.
fn detail_dump(shards: &[ShardReport], out: &mut StatsOut<'_>) {
    let mut total: BTreeMap<&[u8], PrefixCounts> = BTreeMap::new();
    for shard in shards {
        if let ShardAnswer::Prefixes(prefixes) = &shard.answer {
            for (prefix, counts) in prefixes {
                total.entry(prefix).or_default().add(counts);
            }
        }
    }
    let mut text = Vec::new();
    for (prefix, c) in total {
        write_prefix_line(&mut text, prefix, c.gets, c.hits, c.sets, c.deletes);
    }
    text.extend_from_slice(Reply::END);
    match out {
        StatsOut::Text(out) => out.extend_from_slice(&text),
        StatsOut::Binary(out, opaque) => {
            binary::write_stat_bytes(out, *opaque, "detailed", &text);
            binary::write_stats_end(out, *opaque);
        }
    }
}

fn general(state: &ServerState, shards: &[ShardReport], out: &mut StatsOut<'_>) {
    let mut total = ShardStats::default();
    for shard in shards {
        total.add(&shard.stats);
    }
    let sum = |field: fn(&crate::stats::ThreadStats) -> &crate::stats::Counter| -> u64 {
        state.threads.iter().map(|t| field(t).get()).sum()
    };
    let (user, system) = rusage();
    let s = out;
    s.stat("pid", std::process::id());
    s.stat("uptime", state.clock.uptime_secs());
    s.stat("time", state.clock.unix_now());
    s.stat("version", VERSION);
    s.stat("pointer_size", usize::BITS);
    s.stat("rusage_user", user);
    s.stat("rusage_system", system);
    s.stat("max_connections", state.config.max_connections);
    s.stat("curr_connections", sum(|t| &t.curr_connections));
    s.stat("total_connections", sum(|t| &t.total_connections));
    s.stat("rejected_connections", sum(|t| &t.rejected_connections));
    s.stat("shard_aware_handoffs", sum(|t| &t.handed_off));
    s.stat("shard_aware_refused", sum(|t| &t.handoffs_refused));
    s.stat("cmd_get", total.cmd_get);
    s.stat("cmd_set", total.cmd_set);
    s.stat("cmd_flush", sum(|t| &t.cmd_flush));
    s.stat("cmd_touch", total.cmd_touch);
    s.stat("cmd_meta", total.cmd_meta);
    s.stat("get_hits", total.get_hits);
    s.stat("get_misses", total.get_misses);
    s.stat("get_expired", total.get_expired);
    s.stat("get_flushed", total.get_flushed);
    s.stat("delete_misses", total.delete_misses);
    s.stat("delete_hits", total.delete_hits);
    s.stat("incr_misses", total.incr_misses);
    s.stat("incr_hits", total.incr_hits);
    s.stat("decr_misses", total.decr_misses);
    s.stat("decr_hits", total.decr_hits);
    s.stat("cas_misses", total.cas_misses);
    s.stat("cas_hits", total.cas_hits);
    s.stat("cas_badval", total.cas_badval);
    s.stat("touch_hits", total.touch_hits);
    s.stat("touch_misses", total.touch_misses);
    s.stat("store_too_large", total.store_too_large);
    s.stat("store_no_memory", total.store_no_memory);
    s.stat("auth_cmds", sum(|t| &t.auth_cmds));
    s.stat("auth_errors", sum(|t| &t.auth_errors));
    // Listed only while the timeout is on, as memcached does.
    if !state.config.idle_timeout.is_zero() {
        s.stat("idle_kicks", sum(|t| &t.idle_kicks));
    }
    s.stat("bytes_read", sum(|t| &t.bytes_read));
    s.stat("bytes_written", sum(|t| &t.bytes_written));
    // The shards' limits, which `cache_memlimit` changes.
    s.stat("limit_maxbytes", total.limit_maxbytes);
    // corecache never stops accepting (memcached does when it runs out of
    // file descriptors) and never cuts a connection's batch short to let
    // another run (memcached does after `-R` requests): these are true.
    s.stat("accepting_conns", 1);
    s.stat("listen_disabled_num", 0);
    s.stat("threads", state.config.threads);
    s.stat("conn_yields", 0);
    // Every shard has its own index: their memory summed, and whether any
    // is growing. (memcached's `hash_power_level` sizes its one table; no
    // single number says that here, so it is left out.)
    s.stat(
        "hash_bytes",
        shards.iter().map(|s| s.index_bytes).sum::<u64>(),
    );
    s.stat(
        "hash_is_expanding",
        u8::from(shards.iter().any(|s| s.index_growing)),
    );
    s.stat("slab_reassign_rescues", total.slab_reassign_rescues);
    s.stat(
        "slab_reassign_evictions_nomem",
        total.slab_reassign_evictions_nomem,
    );
    s.stat("slabs_moved", total.slabs_moved);
    let tunables = &state.tunables;
    if tunables.crawler.load(Relaxed) {
        // Listed only while the crawler is enabled, as memcached does.
        s.stat(
            "lru_crawler_running",
            u8::from(tunables.metadumps.load(Relaxed) > 0),
        );
        s.stat("lru_crawler_starts", tunables.crawler_starts.load(Relaxed));
    }
    s.stat("bytes", total.bytes);
    s.stat("curr_items", total.curr_items);
    s.stat("total_items", total.total_items);
    s.stat("expired_unfetched", total.expired_unfetched);
    s.stat("evicted_unfetched", total.evicted_unfetched);
    s.stat("evictions", total.evictions);
    s.stat("reclaimed", total.reclaimed);
    s.stat(
        "total_malloced",
        shards.iter().map(|s| s.page_bytes).sum::<u64>(),
    );
    s.stat("runtime", state.config.runtime.name());
    s.stat("shards", state.config.shards);
    let (forwarded, messages) = (sum(|t| &t.forwarded_out), sum(|t| &t.forward_messages));
    s.stat("forwarded_requests", forwarded);
    s.stat("forward_messages", messages);
    s.stat(
        "forward_requests_per_message",
        format!("{:.2}", forwarded as f64 / messages.max(1) as f64),
    );
    s.stat("core_wakes", sum(|t| &t.core_wakes));
    s.stat("core_sleeps", sum(|t| &t.core_sleeps));
    s.stat("spin_hits", sum(|t| &t.spin_hits));
    s.stat("spin_misses", sum(|t| &t.spin_misses));
    s.stat("request_panics", sum(|t| &t.request_panics));
    s.stat("tick_panics", sum(|t| &t.tick_panics));
    s.stat("output_budget_waits", sum(|t| &t.output_budget_waits));
    s.stat("forward_deferred", sum(|t| &t.forward_deferred));
    s.stat("forward_direct_replies", sum(|t| &t.forward_direct_replies));
    s.stat("get_budget_refused", sum(|t| &t.get_budget_refused));
    s.stat("forward_inflight", sum(|t| &t.forward_inflight));
    s.stat("forward_waiting", sum(|t| &t.forward_waiting));
    s.stat("forward_orphans", sum(|t| &t.forward_orphans));
    let deepest = state.threads.iter().map(|t| t.mailbox_max_depth.get());
    s.stat("mailbox_max_depth", deepest.max().unwrap_or(0));
    if state.tls.is_some() {
        s.stat("ssl_handshake_errors", sum(|t| &t.tls_handshake_errors));
        // Certificates are read once, at start.
        s.stat("time_since_server_cert_refresh", state.clock.uptime_secs());
    }
}

/// Every shard has the same classes; memcached numbers them from 1 and
/// lists only classes that hold memory (`slabs`) or items (`items`).
fn merged_classes(shards: &[ShardReport]) -> Vec<SlabClassStats> {
    let mut merged: Vec<SlabClassStats> = Vec::new();
    for shard in shards {
        for class in &shard.classes {
            match merged.iter_mut().find(|m| m.class == class.class) {
                None => merged.push(class.clone()),
                Some(m) => {
                    macro_rules! sum {
                        ($($field:ident),*) => { $( m.$field += class.$field; )* };
                    }
                    sum!(
                        total_pages,
                        total_chunks,
                        used_chunks,
                        free_chunks,
                        mem_requested,
                        get_hits,
                        cmd_set,
                        delete_hits,
                        incr_hits,
                        decr_hits,
                        cas_hits,
                        cas_badval,
                        touch_hits,
                        number,
                        evicted,
                        evicted_by_move,
                        evicted_nonzero,
                        evicted_unfetched,
                        expired_unfetched,
                        outofmemory,
                        reclaimed,
                        pages_in,
                        pages_out
                    );
                    m.age_secs = m.age_secs.max(class.age_secs);
                }
            }
        }
    }
    merged.sort_by_key(|m| m.class);
    merged
}

fn slabs(shards: &[ShardReport], out: &mut StatsOut<'_>) {
    let classes = merged_classes(shards);
    let mut active = 0;
    for c in classes.iter().filter(|c| c.total_pages > 0) {
        active += 1;
        let id = c.class + 1;
        let mut stat = |name: &str, value: u64| out.stat(&format!("{id}:{name}"), value);
        stat("chunk_size", c.chunk_size);
        stat("chunks_per_page", c.chunks_per_page);
        stat("total_pages", c.total_pages);
        stat("total_chunks", c.total_chunks);
        stat("used_chunks", c.used_chunks);
        stat("free_chunks", c.free_chunks);
        stat("free_chunks_end", 0);
        stat("mem_requested", c.mem_requested);
        stat("get_hits", c.get_hits);
        stat("cmd_set", c.cmd_set);
        stat("delete_hits", c.delete_hits);
        stat("incr_hits", c.incr_hits);
        stat("decr_hits", c.decr_hits);
        stat("cas_hits", c.cas_hits);
        stat("cas_badval", c.cas_badval);
        stat("touch_hits", c.touch_hits);
        stat("pages_moved_in", c.pages_in);
        stat("pages_moved_out", c.pages_out);
    }
    out.stat("active_slabs", active);
    let malloced: u64 = shards.iter().map(|s| s.page_bytes).sum();
    out.stat("total_malloced", malloced);
}

fn items(shards: &[ShardReport], out: &mut StatsOut<'_>) {
    for c in merged_classes(shards).iter().filter(|c| c.number > 0) {
        let id = c.class + 1;
        let mut stat = |name: &str, value: u64| out.stat(&format!("items:{id}:{name}"), value);
        stat("number", c.number);
        stat("age", c.age_secs);
        stat("evicted", c.evicted + c.evicted_by_move);
        stat("evicted_nonzero", c.evicted_nonzero);
        stat("evicted_unfetched", c.evicted_unfetched);
        stat("expired_unfetched", c.expired_unfetched);
        stat("outofmemory", c.outofmemory);
        stat("reclaimed", c.reclaimed);
    }
}

fn threads(state: &ServerState, out: &mut StatsOut<'_>) {
    for (i, t) in state.threads.iter().enumerate() {
        let cpu = if state.config.pin {
            state.config.cpus[i].to_string()
        } else {
            "unpinned".to_string()
        };
        out.stat(&format!("thread:{i}:cpu"), cpu);
        // The port whose keys are all this thread's (0: none): these
        // lines are that port's view of the server.
        let port = state.per_core.get(i).map_or(0, |addr| addr.port());
        out.stat(&format!("thread:{i}:port"), port);
        for (name, counter) in [
            ("curr_connections", &t.curr_connections),
            ("total_connections", &t.total_connections),
            ("handed_off", &t.handed_off),
            ("handoffs_refused", &t.handoffs_refused),
            ("cmd_total", &t.cmd_total),
            ("bytes_read", &t.bytes_read),
            ("bytes_written", &t.bytes_written),
            ("forwarded_out", &t.forwarded_out),
            ("forwarded_in", &t.forwarded_in),
            ("forward_messages", &t.forward_messages),
            ("forward_replies", &t.forward_replies),
            ("forward_inflight", &t.forward_inflight),
            ("forward_waiting", &t.forward_waiting),
            ("forward_orphans", &t.forward_orphans),
            ("mailbox_max_depth", &t.mailbox_max_depth),
            ("core_wakes", &t.core_wakes),
            ("core_sleeps", &t.core_sleeps),
            ("spin_hits", &t.spin_hits),
            ("spin_misses", &t.spin_misses),
            ("request_panics", &t.request_panics),
            ("tick_panics", &t.tick_panics),
            ("output_budget_waits", &t.output_budget_waits),
            ("forward_deferred", &t.forward_deferred),
            ("forward_direct_replies", &t.forward_direct_replies),
            ("get_budget_refused", &t.get_budget_refused),
            ("expiry_ticks", &t.expiry_ticks),
        ] {
            out.stat(&format!("thread:{i}:{name}"), counter.get());
        }
    }
}

/// One block per open connection, named by file descriptor, as memcached
/// prints them (the listeners are not listed: they are per thread here).
fn conns(state: &ServerState, out: &mut StatsOut<'_>) {
    let now = state.clock.now();
    for info in state.open_connections() {
        let fd = info.fd;
        let addr = info
            .peer
            .map_or_else(|| "unknown".to_string(), |peer| format!("tcp:{peer}"));
        let idle = now.saturating_sub(info.last_active.load(std::sync::atomic::Ordering::Relaxed));
        out.stat(&format!("{fd}:addr"), addr);
        out.stat(&format!("{fd}:listen_addr"), format!("tcp:{}", info.listen));
        let conn_state = info.state.load(std::sync::atomic::Ordering::Relaxed);
        out.stat(&format!("{fd}:state"), ConnState::name(conn_state));
        out.stat(&format!("{fd}:secs_since_last_cmd"), idle / 1000);
        let thread = info.thread.load(std::sync::atomic::Ordering::Relaxed);
        out.stat(&format!("{fd}:thread"), thread);
    }
}

fn settings(state: &ServerState, out: &mut StatsOut<'_>) {
    let c = &state.config;
    let tunables = &state.tunables;
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    out.stat("maxbytes", tunables.memory.load(Relaxed));
    out.stat("maxconns", c.max_connections);
    out.stat("tcpport", state.listen.port());
    out.stat("udpport", 0);
    out.stat("inter", state.listen.ip());
    out.stat("evictions", "on");
    out.stat("shutdown_command", yes_no(c.enable_shutdown));
    out.stat("growth_factor", format!("{:.2}", c.slab_growth_factor));
    out.stat("chunk_size", c.slab_min_chunk);
    out.stat("num_threads", c.threads);
    out.stat("stat_key_prefix", ":");
    out.stat("detail_enabled", yes_no(tunables.detail.load(Relaxed)));
    out.stat("cas_enabled", "yes");
    out.stat("auth_enabled_sasl", "no");
    let auth = c.auth_file.as_ref().map(|path| path.display().to_string());
    out.stat("auth_enabled_ascii", auth.as_deref().unwrap_or("no"));
    out.stat("item_size_max", c.max_item_size);
    out.stat("slab_reassign", "yes");
    out.stat("slab_automove", tunables.automove.load(Relaxed));
    out.stat("dump_enabled", "yes");
    out.stat("slab_page_size", c.slab_page_size);
    out.stat("runtime", c.runtime.name());
    out.stat("shards", c.shards);
    out.stat("pin_threads", yes_no(c.pin));
    out.stat("ttl_tick_ms", c.ttl_tick.as_millis());
    out.stat("spin_us", c.spin.as_micros());
    out.stat("idle_timeout", c.idle_timeout.as_secs());
    // What a client needs to send each key to its owner's connection on
    // the shard-aware port (docs/shard-aware.md).
    let router = &state.router;
    out.stat("shard_aware_port", c.shard_aware_port);
    // Thread i's own port is this plus i (docs/per-core-ports.md).
    out.stat(
        "port_per_core",
        c.per_core_ports().first().copied().unwrap_or(0),
    );
    out.stat("shard_hash", Router::HASH_NAME);
    out.stat("shard_count", router.shards());
    out.stat("shard_select", Router::SELECT_NAME);
    out.stat(
        "shard_owner",
        match c.runtime {
            RuntimeKind::ThreadPerCore => Router::OWNER_NAME,
            // No thread owns a shard: every worker serves every key.
            RuntimeKind::WorkStealing => "any",
        },
    );
    tls_settings(state, out);
}

/// The TLS settings under memcached's names and in its formats (an unset
/// file is `(null)` or `NULL` there too), then corecache's own.
fn tls_settings(state: &ServerState, out: &mut StatsOut<'_>) {
    let tls = state.config.tls.as_ref();
    let path = |path: Option<&std::path::PathBuf>, unset: &str| {
        path.map_or_else(|| unset.to_string(), |p| p.display().to_string())
    };
    out.stat("ssl_enabled", if tls.is_some() { "yes" } else { "no" });
    out.stat("ssl_chain_cert", path(tls.map(|t| &t.cert), "(null)"));
    out.stat("ssl_key", path(tls.map(|t| &t.key), "(null)"));
    // 2 is memcached's "require": a client certificate is demanded.
    let verify = tls.is_some_and(|t| t.ca.is_some());
    out.stat("ssl_verify_mode", if verify { 2 } else { 0 });
    out.stat("ssl_ca_cert", path(tls.and_then(|t| t.ca.as_ref()), "NULL"));
    out.stat("ssl_min_version", "tlsv1.2");
    if let Some(addr) = state.tls_listen {
        out.stat("tls_listen", addr);
    }
    out.stat(
        "tls_handshake_timeout_ms",
        state.config.tls_handshake_timeout.as_millis(),
    );
}

/// User and system CPU time of the process, as memcached prints them.
fn rusage() -> (String, String) {
    // SAFETY: getrusage only writes the struct we pass, which is plain data
    // and zero-initialised.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let fmt = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
    (fmt(usage.ru_utime), fmt(usage.ru_stime))
}
