//! `cache_memlimit` on the real binary: a full 64 MiB server shrunk to
//! 32 MiB gives the memory back (to `stats` and to the kernel) and never
//! serves a wrong value while it does.

mod common;

use common::{Raw, eventually, proc_status_bytes, spawn_binary};
use std::fmt::Write as _;

const MIB: u64 = 1 << 20;
const VALUE_LEN: usize = 1000;

/// The value stored under key `i`: every value is different, so a value
/// read under the wrong key, or a torn one, is caught.
fn value(i: usize) -> String {
    let stamp = format!("<{i:08}>");
    stamp.repeat(VALUE_LEN / stamp.len())
}

fn stat(c: &mut Raw, args: &str, name: &str) -> u64 {
    let stats = c.stats(args);
    let (_, value) = stats
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in stats {args}"));
    value.parse().unwrap()
}

/// Reads keys `0..count` in batches of multi-gets; every one must be
/// absent or hold its own value. Returns how many were present.
fn check_all(c: &mut Raw, count: usize) -> usize {
    let mut present = 0;
    for start in (0..count).step_by(100) {
        let keys: Vec<String> = (start..(start + 100).min(count))
            .map(|i| format!("k:{i}"))
            .collect();
        c.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
        let reply = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
        let mut lines = reply.split("\r\n");
        while let Some(line) = lines.next() {
            if line == "END" {
                break;
            }
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.len(), 4, "{line:?}");
            let i: usize = fields[1].strip_prefix("k:").unwrap().parse().unwrap();
            assert!(
                (start..start + 100).contains(&i),
                "a key not asked for: {line}"
            );
            let data = lines.next().unwrap();
            assert_eq!(data, value(i), "wrong value for k:{i}");
            present += 1;
        }
    }
    present
}

#[test]
fn cache_memlimit_shrinks_a_full_server_and_serves_no_wrong_value() {
    let (child, addr) = spawn_binary(&["--threads", "2", "--no-pin", "--memory", "64"]);
    let pid = child.0.id();
    let mut c = Raw::connect(addr);
    assert_eq!(stat(&mut c, "", "limit_maxbytes"), 64 * MIB);
    // Twice the limit in values: the cache fills and evicts.
    let count = (128 * MIB) as usize / VALUE_LEN;
    for start in (0..count).step_by(500) {
        let mut batch = String::new();
        for i in start..(start + 500).min(count) {
            write!(
                batch,
                "set k:{i} 0 0 {VALUE_LEN} noreply\r\n{}\r\n",
                value(i)
            )
            .unwrap();
        }
        batch.push_str("mn\r\n");
        c.send(batch.as_bytes());
        assert_eq!(c.read_until(b"MN\r\n"), b"MN\r\n");
    }
    assert_eq!(stat(&mut c, "", "total_malloced"), 64 * MIB);
    assert!(stat(&mut c, "", "evictions") > 0);
    let full = check_all(&mut c, count);
    let rss_full = proc_status_bytes(pid, "VmRSS");

    c.expect("cache_memlimit 32\r\n", "OK\r\n");
    assert_eq!(stat(&mut c, "", "limit_maxbytes"), 32 * MIB);
    assert_eq!(stat(&mut c, "settings", "maxbytes"), 32 * MIB);
    // The shards give pages back on their ticks while this client reads
    // every key, again and again: never a wrong value.
    let mut rounds = 0;
    eventually("total_malloced within 32 MiB", || {
        check_all(&mut c, count);
        rounds += 1;
        stat(&mut c, "", "total_malloced") <= 32 * MIB
    });
    let left = check_all(&mut c, count);
    assert!(left > 0 && left < full, "{left} of {full} items left");
    // The memory went back to the kernel: RSS fell by nearly the 32 MiB
    // given back (the index and the connection buffers stay).
    let rss_after = proc_status_bytes(pid, "VmRSS");
    assert!(
        rss_after + 28 * MIB <= rss_full,
        "RSS {} MiB full, {} MiB after the shrink",
        rss_full / MIB,
        rss_after / MIB
    );
    // The new limit holds for new items too.
    for i in count..count + 40_000 {
        let v = value(i);
        c.send(format!("set k:{i} 0 0 {VALUE_LEN} noreply\r\n{v}\r\n").as_bytes());
    }
    c.expect("mn\r\n", "MN\r\n");
    assert!(stat(&mut c, "", "total_malloced") <= 32 * MIB);
    check_all(&mut c, count + 40_000);
    println!(
        "{rounds} read rounds during the shrink; {full} items before, {left} after; RSS {} KiB full, {} KiB after",
        rss_full >> 10,
        rss_after >> 10
    );
}
