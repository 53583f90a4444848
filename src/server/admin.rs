//! Requests about the whole server: `stats` in its forms, `version`.
//!
//! Output follows memcached's names and formats so existing dashboards and
//! exporters read it unchanged; corecache's own figures (runtime, shards,
//! forwarding) are added under names memcached does not use.

use super::connection::Dispatch;
use super::{Control, ServerState, ShardReport};
use crate::protocol::{ErrorReply, Reply, Tokens};
use crate::storage::{ShardStats, SlabClassStats};

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

/// Answers `stats <args>`.
pub async fn stats<D: Dispatch>(
    args: &[u8],
    state: &ServerState,
    dispatch: &mut D,
    out: &mut Vec<u8>,
) {
    let mut tokens = Tokens::new(args);
    match (tokens.next(), tokens.next()) {
        (None, _) => {
            let shards = dispatch.control(Control::Stats).await;
            general(state, &shards, out);
        }
        (Some(b"slabs"), None) => {
            let shards = dispatch.control(Control::Slabs).await;
            slabs(&shards, out);
        }
        (Some(b"items"), None) => {
            let shards = dispatch.control(Control::Slabs).await;
            items(&shards, out);
        }
        (Some(b"threads"), None) => threads(state, out),
        (Some(b"conns"), None) => conns(state, out),
        (Some(b"settings"), None) => settings(state, out),
        (Some(b"reset"), None) => {
            dispatch.control(Control::ResetStats).await;
            for thread in state.threads.iter() {
                thread.reset();
            }
            out.extend_from_slice(b"RESET\r\n");
            return;
        }
        _ => return ErrorReply::Error.write(out),
    }
    out.extend_from_slice(Reply::END);
}

fn general(state: &ServerState, shards: &[ShardReport], out: &mut Vec<u8>) {
    let mut total = ShardStats::default();
    for shard in shards {
        total.add(&shard.stats);
    }
    let sum = |field: fn(&crate::stats::ThreadStats) -> &crate::stats::Counter| -> u64 {
        state.threads.iter().map(|t| field(t).get()).sum()
    };
    let (user, system) = rusage();
    let s = &mut *out;
    Reply::stat(s, "pid", std::process::id());
    Reply::stat(s, "uptime", state.clock.uptime_secs());
    Reply::stat(s, "time", state.clock.unix_now());
    Reply::stat(s, "version", VERSION);
    Reply::stat(s, "pointer_size", usize::BITS);
    Reply::stat(s, "rusage_user", user);
    Reply::stat(s, "rusage_system", system);
    Reply::stat(s, "max_connections", state.config.max_connections);
    Reply::stat(s, "curr_connections", sum(|t| &t.curr_connections));
    Reply::stat(s, "total_connections", sum(|t| &t.total_connections));
    Reply::stat(s, "rejected_connections", sum(|t| &t.rejected_connections));
    // corecache never stops accepting or yields a connection mid-batch the
    // way memcached does; these read as memcached's would when idle.
    Reply::stat(s, "accepting_conns", 1);
    Reply::stat(s, "listen_disabled_num", 0);
    Reply::stat(s, "conn_yields", 0);
    Reply::stat(s, "cmd_get", total.cmd_get);
    Reply::stat(s, "cmd_set", total.cmd_set);
    Reply::stat(s, "cmd_flush", sum(|t| &t.cmd_flush));
    Reply::stat(s, "cmd_touch", total.cmd_touch);
    Reply::stat(s, "get_hits", total.get_hits);
    Reply::stat(s, "get_misses", total.get_misses);
    Reply::stat(s, "get_expired", total.get_expired);
    Reply::stat(s, "get_flushed", total.get_flushed);
    Reply::stat(s, "delete_misses", total.delete_misses);
    Reply::stat(s, "delete_hits", total.delete_hits);
    Reply::stat(s, "incr_misses", total.incr_misses);
    Reply::stat(s, "incr_hits", total.incr_hits);
    Reply::stat(s, "decr_misses", total.decr_misses);
    Reply::stat(s, "decr_hits", total.decr_hits);
    Reply::stat(s, "cas_misses", total.cas_misses);
    Reply::stat(s, "cas_hits", total.cas_hits);
    Reply::stat(s, "cas_badval", total.cas_badval);
    Reply::stat(s, "touch_hits", total.touch_hits);
    Reply::stat(s, "touch_misses", total.touch_misses);
    Reply::stat(s, "bytes_read", sum(|t| &t.bytes_read));
    Reply::stat(s, "bytes_written", sum(|t| &t.bytes_written));
    Reply::stat(s, "limit_maxbytes", state.config.memory);
    Reply::stat(
        s,
        "total_malloced",
        shards.iter().map(|s| s.page_bytes).sum::<u64>(),
    );
    Reply::stat(s, "threads", state.config.threads);
    Reply::stat(s, "bytes", total.bytes);
    Reply::stat(s, "curr_items", total.curr_items);
    Reply::stat(s, "total_items", total.total_items);
    Reply::stat(s, "expired_unfetched", total.expired_unfetched);
    Reply::stat(s, "evicted_unfetched", total.evicted_unfetched);
    Reply::stat(s, "evictions", total.evictions);
    Reply::stat(s, "reclaimed", total.reclaimed);
    Reply::stat(s, "slabs_moved", total.slabs_moved);
    Reply::stat(s, "store_too_large", total.store_too_large);
    Reply::stat(s, "store_no_memory", total.store_no_memory);
    Reply::stat(s, "runtime", state.config.runtime.name());
    Reply::stat(s, "shards", state.config.shards);
    let (forwarded, messages) = (sum(|t| &t.forwarded_out), sum(|t| &t.forward_messages));
    Reply::stat(s, "forwarded_requests", forwarded);
    Reply::stat(s, "forward_messages", messages);
    Reply::stat(
        s,
        "forward_requests_per_message",
        format!("{:.2}", forwarded as f64 / messages.max(1) as f64),
    );
    Reply::stat(s, "core_wakes", sum(|t| &t.core_wakes));
    Reply::stat(s, "core_sleeps", sum(|t| &t.core_sleeps));
    Reply::stat(s, "request_panics", sum(|t| &t.request_panics));
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

fn slabs(shards: &[ShardReport], out: &mut Vec<u8>) {
    let classes = merged_classes(shards);
    let mut active = 0;
    for c in classes.iter().filter(|c| c.total_pages > 0) {
        active += 1;
        let id = c.class + 1;
        let mut stat = |name: &str, value: u64| Reply::stat(out, &format!("{id}:{name}"), value);
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
    Reply::stat(out, "active_slabs", active);
    let malloced: u64 = shards.iter().map(|s| s.page_bytes).sum();
    Reply::stat(out, "total_malloced", malloced);
}

fn items(shards: &[ShardReport], out: &mut Vec<u8>) {
    for c in merged_classes(shards).iter().filter(|c| c.number > 0) {
        let id = c.class + 1;
        let mut stat =
            |name: &str, value: u64| Reply::stat(out, &format!("items:{id}:{name}"), value);
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

fn threads(state: &ServerState, out: &mut Vec<u8>) {
    for (i, t) in state.threads.iter().enumerate() {
        let cpu = if state.config.pin {
            state.config.cpus[i].to_string()
        } else {
            "unpinned".to_string()
        };
        Reply::stat(out, &format!("thread:{i}:cpu"), cpu);
        for (name, counter) in [
            ("curr_connections", &t.curr_connections),
            ("total_connections", &t.total_connections),
            ("cmd_total", &t.cmd_total),
            ("forwarded_out", &t.forwarded_out),
            ("forwarded_in", &t.forwarded_in),
            ("forward_messages", &t.forward_messages),
            ("forward_replies", &t.forward_replies),
            ("core_wakes", &t.core_wakes),
            ("core_sleeps", &t.core_sleeps),
            ("request_panics", &t.request_panics),
            ("expiry_ticks", &t.expiry_ticks),
        ] {
            Reply::stat(out, &format!("thread:{i}:{name}"), counter.get());
        }
    }
}

/// One block per open connection, named by file descriptor, as memcached
/// prints them (the listeners are not listed: they are per thread here).
fn conns(state: &ServerState, out: &mut Vec<u8>) {
    let now = state.clock.now();
    for info in state.open_connections() {
        let fd = info.fd;
        let addr = info
            .peer
            .map_or_else(|| "unknown".to_string(), |peer| format!("tcp:{peer}"));
        let idle = now.saturating_sub(info.last_active.load(std::sync::atomic::Ordering::Relaxed));
        Reply::stat(out, &format!("{fd}:addr"), addr);
        Reply::stat(
            out,
            &format!("{fd}:listen_addr"),
            format!("tcp:{}", state.listen),
        );
        Reply::stat(out, &format!("{fd}:state"), "conn_parse_cmd");
        Reply::stat(out, &format!("{fd}:secs_since_last_cmd"), idle / 1000);
        let thread = info.thread.load(std::sync::atomic::Ordering::Relaxed);
        Reply::stat(out, &format!("{fd}:thread"), thread);
    }
}

fn settings(state: &ServerState, out: &mut Vec<u8>) {
    let c = &state.config;
    Reply::stat(out, "maxbytes", c.memory);
    Reply::stat(out, "maxconns", c.max_connections);
    Reply::stat(out, "tcpport", state.listen.port());
    Reply::stat(out, "udpport", 0);
    Reply::stat(out, "inter", state.listen.ip());
    Reply::stat(out, "evictions", "on");
    Reply::stat(out, "growth_factor", format!("{:.2}", c.slab_growth_factor));
    Reply::stat(out, "chunk_size", c.slab_min_chunk);
    Reply::stat(out, "num_threads", c.threads);
    Reply::stat(out, "item_size_max", c.max_item_size);
    Reply::stat(out, "slab_page_size", c.slab_page_size);
    Reply::stat(out, "cas_enabled", "yes");
    Reply::stat(out, "runtime", c.runtime.name());
    Reply::stat(out, "shards", c.shards);
    Reply::stat(out, "pin_threads", if c.pin { "yes" } else { "no" });
    Reply::stat(out, "ttl_tick_ms", c.ttl_tick.as_millis());
    Reply::stat(out, "spin_us", c.spin.as_micros());
    Reply::stat(
        out,
        "shutdown_command",
        if c.enable_shutdown { "yes" } else { "no" },
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
