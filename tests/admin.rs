//! The admin commands over real TCP, byte for byte, in both runtimes:
//! `cache_memlimit`, `stats sizes`, `stats detail`, `stats cachedump`,
//! `lru_crawler`, `slabs reassign|automove`, `shutdown` and `watch`, and
//! the general stats they feed. Every expected reply was checked against
//! memcached 1.6.18 side by side (where corecache's numbers differ, such
//! as item sizes and slab classes, the test says so).

mod common;

use common::{Raw, TestServer, owner, proc_status_bytes, spawn_binary};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// A key with `prefix` that the server places on `thread`.
fn key_on(prefix: &str, thread: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|key| owner(key) == thread)
        .unwrap()
}

/// The slab class `me` reports for `key`.
fn class_of(c: &mut Raw, key: &str) -> u64 {
    c.send(format!("me {key}\r\n").as_bytes());
    let line = String::from_utf8(c.read_until(b"\r\n")).unwrap();
    let cls = line.split(' ').find_map(|f| f.strip_prefix("cls="));
    cls.unwrap_or_else(|| panic!("{line}")).parse().unwrap()
}

/// A numeric stat, or `None` if the listing does not have it.
fn stat(c: &mut Raw, args: &str, name: &str) -> Option<u64> {
    let stats = c.stats(args);
    let (_, value) = stats.iter().find(|(k, _)| k == name)?;
    Some(value.parse().unwrap())
}

/// Stores `count` keys `<prefix><i>` with `value_len`-byte values,
/// pipelined with `noreply`.
fn fill(c: &mut Raw, prefix: &str, count: usize, value_len: usize) {
    let value = "v".repeat(value_len);
    for start in (0..count).step_by(1000) {
        let mut batch = String::new();
        for i in start..(start + 1000).min(count) {
            write!(
                batch,
                "set {prefix}{i} 0 0 {value_len} noreply\r\n{value}\r\n"
            )
            .unwrap();
        }
        batch.push_str("mn\r\n");
        c.send(batch.as_bytes());
        assert_eq!(c.read_until(b"MN\r\n"), b"MN\r\n");
    }
}

/// Sends a metadump request and reads the whole reply: its lines, and
/// checks it ends with `END`.
fn metadump(c: &mut Raw, classes: &str) -> Vec<String> {
    c.send(format!("lru_crawler metadump {classes}\r\n").as_bytes());
    let reply = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
    let body = reply.strip_suffix("END\r\n").unwrap();
    // memcached ends each item line with a bare `\n`.
    assert!(!body.contains('\r'), "{body:?}");
    body.lines().map(str::to_string).collect()
}

both_runtimes! {
    fn shutdown_and_watch_answer_as_memcached(server) {
        let mut c = server.connect();
        // Without --enable-shutdown, whatever the form (tests/cli.rs runs
        // the enabled one).
        c.expect("shutdown\r\n", "ERROR: shutdown not enabled\r\n");
        c.expect("shutdown graceful\r\n", "ERROR: shutdown not enabled\r\n");
        c.expect("shutdown x y\r\n", "ERROR: shutdown not enabled\r\n");
        // `watch` is not implemented: an unknown command (memcached
        // answers `OK` and streams its logs).
        c.expect("watch\r\nwatch fetchers\r\nmn\r\n", "ERROR\r\nERROR\r\nMN\r\n");
    }

    fn cache_memlimit_answers_and_changes_the_limit(server) {
        let mut c = server.connect();
        c.expect("cache_memlimit 32\r\n", "OK\r\n");
        assert_eq!(stat(&mut c, "", "limit_maxbytes"), Some(32 * MIB));
        assert_eq!(stat(&mut c, "settings", "maxbytes"), Some(32 * MIB));
        c.expect("cache_memlimit 48 noreply\r\nmn\r\n", "MN\r\n");
        assert_eq!(stat(&mut c, "", "limit_maxbytes"), Some(48 * MIB));
        // Eight MiB is memcached's floor; four shards still get a page each.
        c.expect("cache_memlimit 8\r\n", "OK\r\n");
        assert_eq!(stat(&mut c, "", "limit_maxbytes"), Some(8 * MIB));
        for (request, reply) in [
            ("cache_memlimit 7\r\n", "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"),
            ("cache_memlimit 1000000001\r\n", "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"),
            ("cache_memlimit\r\n", "ERROR\r\n"),
            ("cache_memlimit x\r\n", "ERROR\r\n"),
            ("cache_memlimit 64 a b\r\n", "ERROR\r\n"),
            ("cache_memlimit 7 noreply\r\ncache_memlimit x noreply\r\nmn\r\n", "MN\r\n"),
            // memcached keeps the low 32 bits of the number: 64 MiB.
            ("cache_memlimit 4294967360\r\n", "OK\r\n"),
        ] {
            c.expect(request, reply);
        }
        assert_eq!(stat(&mut c, "", "limit_maxbytes"), Some(64 * MIB));
    }

    fn stats_sizes_counts_items_stored_since_enabled(server) {
        let mut c = server.connect();
        c.expect("stats sizes\r\n", "STAT sizes_status disabled\r\nEND\r\n");
        c.expect("set before 0 0 1\r\nx\r\n", "STORED\r\n");
        // memcached ends these two with no `END`.
        c.expect("stats sizes_enable\r\nmn\r\n", "STAT sizes_status enabled\r\nMN\r\n");
        c.expect("stats sizes\r\n", "END\r\n");
        // Items of 40 header bytes + key + value (memcached's items are
        // bigger, so its sizes differ): two of 100 bytes, one per thread,
        // and one of 200, counted in 32-byte steps.
        let (k0, k1) = (key_on("s:", 0), key_on("s:", 1));
        for key in [&k0, &k1] {
            let value = "v".repeat(60 - key.len());
            c.expect(&format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()), "STORED\r\n");
        }
        c.expect(&format!("set big 0 0 157\r\n{}\r\n", "v".repeat(157)), "STORED\r\n");
        c.expect("stats sizes\r\n", "STAT 128 2\r\nSTAT 224 1\r\nEND\r\n");
        c.expect(&format!("delete {k1}\r\n"), "DELETED\r\n");
        c.expect("stats sizes x\r\n", "STAT 128 1\r\nSTAT 224 1\r\nEND\r\n");
        c.expect("stats sizes_disable\r\nmn\r\n", "STAT sizes_status disabled\r\nMN\r\n");
        c.expect("stats sizes\r\n", "STAT sizes_status disabled\r\nEND\r\n");
    }

    fn stats_detail_counts_per_prefix_across_threads(server) {
        let mut c = server.connect();
        c.expect("stats detail dump\r\n", "END\r\n");
        c.expect("stats detail\r\n", "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
        c.expect("stats detail x\r\n", "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
        c.expect("stats detail on\r\n", "OK\r\n");
        assert_eq!(c.stats("settings").iter().find(|(k, _)| k == "detail_enabled").unwrap().1, "yes");
        let (a0, a1) = (key_on("a:", 0), key_on("a:", 1));
        c.expect(
            &format!("set {a0} 0 0 1\r\n1\r\nset {a1} 0 0 1\r\n1\r\nget {a0} {a1} a:none\r\n"),
            &format!("STORED\r\nSTORED\r\nVALUE {a0} 0 1\r\n1\r\nVALUE {a1} 0 1\r\n1\r\nEND\r\n"),
        );
        // A store counts whether or not it stores; a delete whether or not
        // it finds the key; meta commands, incr and touch not at all, as in
        // memcached 1.6.18; a key with no `:` has no prefix.
        c.expect(
            &format!(
                "add {a0} 0 0 1\r\n2\r\ndelete a:none\r\ngets b:1\r\nincr {a0} 1\r\n\
                 touch {a0} 10\r\nmg {a0} v\r\nms c:1 1\r\n1\r\nget plain\r\n"
            ),
            "NOT_STORED\r\nNOT_FOUND\r\nEND\r\n2\r\nTOUCHED\r\nVA 1\r\n2\r\nHD\r\nEND\r\n",
        );
        let dump = "PREFIX a get 3 hit 2 set 3 del 1\r\nPREFIX b get 1 hit 0 set 0 del 0\r\nEND\r\n";
        c.expect("stats detail dump\r\n", dump);
        // Off stops counting and keeps the counts.
        c.expect("stats detail off\r\n", "OK\r\n");
        c.expect(&format!("get {a0}\r\n"), &format!("VALUE {a0} 0 1\r\n2\r\nEND\r\n"));
        c.expect("stats detail dump\r\n", dump);
        // `stats reset` forgets them.
        c.expect("stats reset\r\n", "RESET\r\n");
        c.expect("stats detail dump\r\n", "END\r\n");
    }

    fn stats_cachedump_lists_a_class_most_recent_first(server) {
        let mut c = server.connect();
        let time = stat(&mut c, "", "time").unwrap();
        // Three small items on both threads, a second apart or more, so the
        // order by last access is known; one that expires before the dump.
        c.expect("set c:old 0 0 3\r\nold\r\nset c:gone 0 1 3\r\nbye\r\n", "STORED\r\nSTORED\r\n");
        server.advance(Duration::from_secs(2));
        let mid = key_on("c:", 1 - owner("c:old"));
        c.expect(&format!("set {mid} 0 0 3\r\nmid\r\n"), "STORED\r\n");
        server.advance(Duration::from_secs(2));
        c.expect("set c:new 0 100 3\r\nnew\r\n", "STORED\r\n");
        for key in ["c:old", &mid, "c:new"] {
            assert_eq!(class_of(&mut c, key), 1, "{key}");
        }
        let new = format!("ITEM c:new [3 b; {} s]\r\n", time + 4 + 100);
        let rest = format!("ITEM {mid} [3 b; 0 s]\r\nITEM c:old [3 b; 0 s]\r\n");
        c.expect("stats cachedump 1 0\r\n", &format!("{new}{rest}END\r\n"));
        c.expect("stats cachedump 1 1\r\n", &format!("{new}END\r\n"));
        c.expect("stats cachedump 1 0 extra\r\n", &format!("{new}{rest}END\r\n"));
        for (request, reply) in [
            ("stats cachedump 0 0\r\n", "END\r\n"),
            ("stats cachedump 2 0\r\n", "END\r\n"),
            ("stats cachedump 63 0\r\n", "END\r\n"),
            ("stats cachedump 64 0\r\n", "CLIENT_ERROR Illegal slab id\r\n"),
            ("stats cachedump 1\r\n", "CLIENT_ERROR bad command line\r\n"),
            ("stats cachedump x 0\r\n", "CLIENT_ERROR bad command line format\r\n"),
            ("stats cachedump -1 0\r\n", "CLIENT_ERROR bad command line format\r\n"),
        ] {
            c.expect(request, reply);
        }
    }

    fn metadump_lists_every_item_in_memcached_s_format(server) {
        let mut c = server.connect();
        let time = stat(&mut c, "", "time").unwrap();
        c.expect("ms m:a 3 E11\r\nabc\r\nms m:b 3 E12 T100\r\nxyz\r\n", "HD\r\nHD\r\n");
        c.expect(&format!("ms m:big 2000 E13\r\n{}\r\n", "b".repeat(2000)), "HD\r\n");
        c.expect("get m:a\r\n", "VALUE m:a 0 3\r\nabc\r\nEND\r\n");
        let big = class_of(&mut c, "m:big");
        assert_eq!(class_of(&mut c, "m:a"), 1);
        // 40 header bytes + key + value; memcached's sizes and classes
        // differ for its own item layout.
        let a = format!("key=m%3Aa exp=-1 la={time} cas=11 fetch=yes cls=1 size=46");
        let b = format!("key=m%3Ab exp={} la={time} cas=12 fetch=no cls=1 size=46", time + 100);
        let big_line = format!("key=m%3Abig exp=-1 la={time} cas=13 fetch=no cls={big} size=2045");
        let sorted = |mut lines: Vec<String>| {
            lines.sort();
            lines
        };
        let all = sorted(vec![a.clone(), b.clone(), big_line.clone()]);
        assert_eq!(sorted(metadump(&mut c, "all")), all);
        assert_eq!(sorted(metadump(&mut c, "hash")), all);
        assert_eq!(sorted(metadump(&mut c, "1")), [a.clone(), b.clone()]);
        assert_eq!(metadump(&mut c, &big.to_string()), std::slice::from_ref(&big_line));
        assert_eq!(sorted(metadump(&mut c, &format!("1,{big}"))), all);
        // Answered in turn with what comes before and after it (memcached
        // refuses a metadump behind other replies, and drops what follows).
        c.send(b"mn\r\nlru_crawler metadump 1\r\nmn\r\n");
        let reply = String::from_utf8(c.read_until(b"END\r\nMN\r\n")).unwrap();
        assert!(reply.starts_with("MN\r\nkey="), "{reply}");
        // Expired items are left out.
        server.advance(Duration::from_secs(101));
        assert_eq!(metadump(&mut c, "1"), [a]);
    }

    fn lru_crawler_answers_as_memcached(server) {
        let mut c = server.connect();
        for (request, reply) in [
            ("lru_crawler metadump 0\r\n", "BADCLASS invalid class id\r\n"),
            ("lru_crawler metadump 64\r\n", "BADCLASS invalid class id\r\n"),
            ("lru_crawler metadump 1,x\r\n", "BADCLASS invalid class id\r\n"),
            ("lru_crawler metadump ,\r\n", "NOTSTARTED no items to crawl\r\n"),
            ("lru_crawler metadump\r\n", "ERROR\r\n"),
            ("lru_crawler metadump all noreply\r\n", "ERROR\r\n"),
            ("lru_crawler crawl all\r\n", "OK\r\n"),
            ("lru_crawler crawl 1,2\r\n", "OK\r\n"),
            ("lru_crawler crawl 0\r\n", "BADCLASS invalid class id\r\n"),
            ("lru_crawler crawl hash\r\n", "ERROR an unknown error happened\r\n"),
            ("lru_crawler sleep 100\r\n", "OK\r\n"),
            ("lru_crawler sleep 2000000\r\n", "CLIENT_ERROR sleep must be one second or less\r\n"),
            ("lru_crawler sleep x\r\n", "CLIENT_ERROR bad command line format\r\n"),
            ("lru_crawler tocrawl 5\r\n", "OK\r\n"),
            ("lru_crawler tocrawl -1\r\n", "CLIENT_ERROR bad command line format\r\n"),
            ("lru_crawler\r\n", "ERROR\r\n"),
            ("lru_crawler foo bar\r\n", "ERROR\r\n"),
            ("lru_crawler enable\r\n", "ERROR failed to start lru crawler thread\r\n"),
        ] {
            c.expect(request, reply);
        }
        c.expect("lru_crawler metadump all\r\n", "END\r\n");
        // The two crawls and the one metadump that started.
        assert_eq!(stat(&mut c, "", "lru_crawler_starts"), Some(3));
        assert_eq!(stat(&mut c, "", "lru_crawler_running"), Some(0));
        c.expect("lru_crawler disable\r\n", "OK\r\n");
        c.expect("lru_crawler disable\r\n", "OK\r\n");
        c.expect("lru_crawler metadump all\r\n", "CLIENT_ERROR lru crawler disabled\r\n");
        c.expect("lru_crawler crawl 1\r\n", "CLIENT_ERROR lru crawler disabled\r\n");
        // memcached lists the crawler's stats only while it is enabled.
        assert_eq!(stat(&mut c, "", "lru_crawler_starts"), None);
        c.expect("lru_crawler enable\r\n", "OK\r\n");
        assert_eq!(stat(&mut c, "", "lru_crawler_starts"), Some(3));
    }

    fn metadump_of_100k_items_lists_each_key_once(server) {
        let mut c = server.connect();
        fill(&mut c, "k:", 100_000, 10);
        let lines = metadump(&mut c, "all");
        assert_eq!(lines.len(), 100_000);
        let keys: HashSet<&str> = lines
            .iter()
            .map(|line| line.split(' ').next().unwrap().strip_prefix("key=k%3A").unwrap())
            .collect();
        assert_eq!(keys.len(), 100_000, "a key listed twice");
        assert!((0..100_000).all(|i| keys.contains(i.to_string().as_str())));
    }

    fn metadumps_run_at_once_up_to_a_bound_and_end_when_their_client_leaves(server) {
        // Long keys: each dump is far more than the socket buffers hold,
        // so a client that does not read holds its dump open.
        let prefix = "p".repeat(200);
        let mut c = server.connect();
        fill(&mut c, &prefix, 100_000, 1);
        let stalled: Vec<Raw> = (0..16)
            .map(|_| {
                let mut d = server.connect();
                d.send(b"lru_crawler metadump all\r\n");
                d
            })
            .collect();
        common::eventually("16 metadumps running", || {
            stat(&mut c, "", "lru_crawler_starts") == Some(16)
        });
        assert_eq!(stat(&mut c, "", "lru_crawler_running"), Some(1));
        c.expect("lru_crawler metadump all\r\n", "BUSY currently processing crawler request\r\n");
        // The server goes on serving meanwhile.
        c.expect("set other 0 0 1\r\nx\r\nget other\r\n", "STORED\r\nVALUE other 0 1\r\nx\r\nEND\r\n");
        drop(stalled);
        common::eventually("the stalled dumps ended", || {
            stat(&mut c, "", "lru_crawler_running") == Some(0)
        });
        assert_eq!(metadump(&mut c, "all").len(), 100_001);
    }

    fn general_stats_fill_memcached_s_names_truthfully(server) {
        let mut c = server.connect();
        c.expect("set k 0 0 1\r\nx\r\nme k\r\nme nothing\r\nmg k v\r\n", "STORED\r\n");
        c.read_until(b"VA 1\r\nx\r\n");
        // memcached 1.6.18 counts `me` alone in cmd_meta.
        assert_eq!(stat(&mut c, "", "cmd_meta"), Some(2));
        assert!(stat(&mut c, "", "hash_bytes").unwrap() > 0);
        assert_eq!(stat(&mut c, "", "hash_is_expanding"), Some(0));
        assert_eq!(stat(&mut c, "", "slab_reassign_rescues"), Some(0));
        let stats = c.stats("");
        for absent in ["hash_power_level", "read_buf_count", "malloc_fails", "slab_reassign_busy_items"] {
            assert!(stats.iter().all(|(k, _)| k != absent), "{absent} is printed");
        }
    }
}

per_runtime! {
    slabs_reassign_moves_one_page_as_memcached_does =>
        super::slabs_reassign_moves_one_page_as_memcached_does;
    cache_memlimit_refuses_less_than_a_page_per_shard =>
        super::cache_memlimit_refuses_less_than_a_page_per_shard;
}

/// A full cache (8 MiB: two pages on each of the four shards), so a page
/// move costs its class items, as in memcached.
fn slabs_reassign_moves_one_page_as_memcached_does(runtime: corecache::config::RuntimeKind) {
    let server = TestServer::with(runtime, |config| config.memory = 8 * MIB as usize);
    let mut c = server.connect();
    fill(&mut c, "r:", 12_000, 1000);
    let (src, dst) = (class_of(&mut c, "r:11999"), 3);
    let pages = |c: &mut Raw, class: u64| stat(c, "slabs", &format!("{class}:total_pages"));
    assert_eq!((pages(&mut c, src), pages(&mut c, dst)), (Some(8), None));
    let evictions = stat(&mut c, "", "evictions").unwrap();
    let items = stat(&mut c, "", "curr_items").unwrap();
    c.expect(&format!("slabs reassign {src} {dst}\r\n"), "OK\r\n");
    assert_eq!((pages(&mut c, src), pages(&mut c, dst)), (Some(7), Some(1)));
    assert_eq!(stat(&mut c, "", "slabs_moved"), Some(1));
    assert_eq!(
        stat(&mut c, "slabs", &format!("{src}:pages_moved_out")),
        Some(1)
    );
    assert_eq!(
        stat(&mut c, "slabs", &format!("{dst}:pages_moved_in")),
        Some(1)
    );
    // To the pool: the page's memory goes back to the system.
    c.expect(&format!("slabs reassign {src} 0\r\n"), "OK\r\n");
    assert_eq!(stat(&mut c, "", "total_malloced"), Some(7 * MIB));
    // -1: from any class with a page to spare.
    c.expect(&format!("slabs reassign -1 {dst}\r\n"), "OK\r\n");
    assert_eq!((pages(&mut c, src), pages(&mut c, dst)), (Some(5), Some(2)));
    // The moves cost the source class items (the cache was full), each
    // counted as an eviction.
    let moved_out = stat(&mut c, "", "slab_reassign_evictions_nomem").unwrap();
    assert!(moved_out > 0);
    assert_eq!(stat(&mut c, "", "evictions"), Some(evictions + moved_out));
    assert_eq!(stat(&mut c, "", "curr_items"), Some(items - moved_out));
    for (request, reply) in [
        (
            format!("slabs reassign {dst} {src}\r\n"),
            "NOSPARE source class has no spare pages\r\n",
        ),
        (
            "slabs reassign 0 2\r\n".into(),
            "NOSPARE source class has no spare pages\r\n",
        ),
        (
            "slabs reassign 1 1\r\n".into(),
            "SAME src and dst class are identical\r\n",
        ),
        (
            "slabs reassign 1 100\r\n".into(),
            "BADCLASS invalid src or dst class id\r\n",
        ),
        (
            "slabs reassign -2 1\r\n".into(),
            "BADCLASS invalid src or dst class id\r\n",
        ),
        (
            "slabs reassign x 1\r\n".into(),
            "CLIENT_ERROR bad command line format\r\n",
        ),
        ("slabs reassign 1 2 noreply\r\n".into(), "ERROR\r\n"),
        ("slabs\r\n".into(), "ERROR\r\n"),
        ("slabs automove 0\r\n".into(), "OK\r\n"),
        ("slabs automove 3\r\n".into(), "ERROR\r\n"),
        (
            "slabs automove x\r\n".into(),
            "CLIENT_ERROR bad command line format\r\n",
        ),
        ("slabs automove\r\n".into(), "ERROR\r\n"),
        ("slabs automove ratio 0.5\r\n".into(), "OK\r\n"),
        (
            "slabs automove 2 noreply\r\nslabs automove 3 noreply\r\nmn\r\n".into(),
            "MN\r\n",
        ),
    ] {
        c.expect(&request, reply);
    }
    assert_eq!(stat(&mut c, "settings", "slab_automove"), Some(2));
    assert_eq!(stat(&mut c, "", "slabs_moved"), Some(3));
}

/// Sixteen shards of one 1 MiB page each: 8 MiB would leave each half a
/// page, which the engine cannot hold to, so the limit is refused.
fn cache_memlimit_refuses_less_than_a_page_per_shard(runtime: corecache::config::RuntimeKind) {
    let server = TestServer::with(runtime, |config| config.shards = 16);
    let mut c = server.connect();
    c.expect(
        "cache_memlimit 8\r\n",
        "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n",
    );
    assert_eq!(stat(&mut c, "", "limit_maxbytes"), Some(64 * MIB));
    c.expect("cache_memlimit 16\r\n", "OK\r\n");
    assert_eq!(stat(&mut c, "", "limit_maxbytes"), Some(16 * MIB));
}

/// A metadump far larger than any buffer the server keeps goes out a step
/// at a time: the server's peak RSS hardly moves while it is written.
#[test]
fn a_metadump_is_streamed_in_bounded_memory() {
    let (child, addr) = spawn_binary(&["--threads", "2", "--no-pin", "--memory", "128"]);
    let pid = child.0.id();
    let mut c = Raw::connect(addr);
    // 200,000 keys of 205 bytes: about 55 MB of metadump lines.
    let prefix = "m".repeat(200);
    fill(&mut c, &prefix, 200_000, 1);
    let before = proc_status_bytes(pid, "VmHWM");
    let lines = metadump(&mut c, "all");
    assert_eq!(lines.len(), 200_000);
    let size: usize = lines.iter().map(|line| line.len() + 1).sum();
    assert!(size > 50 << 20, "only {size} bytes of lines");
    let grew = proc_status_bytes(pid, "VmHWM").saturating_sub(before);
    assert!(
        grew < 8 * MIB,
        "peak RSS grew by {} KiB for a {} MiB dump",
        grew >> 10,
        size >> 20
    );
}
