//! The storage engine seen from outside: memory stays inside its limit under
//! a flood of mixed sizes, and expired items give their memory back with no
//! reads. (benches/storage_experiments.py runs the full-size versions.)

mod common;

use common::{KillOnDrop, Raw};
use corecache::storage::wheel::TICK_MS;
use std::fmt::Write as _;
use std::process::{Command, Stdio};

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn rss_stays_within_the_memory_limit_under_mixed_sizes() {
    // The binary in its own process, so its RSS is the server's alone.
    let limit_mib = 64;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_corecache"))
        .args([
            "--port",
            &port.to_string(),
            "--threads",
            "2",
            "--no-pin",
            "-m",
            &limit_mib.to_string(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed even if an assertion fails, so no server outlives the test.
    let child = KillOnDrop(child);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    common::eventually("the server accepts connections", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let mut c = Raw::connect(addr);
    // 256 MiB of values, 10 B to 100 KiB, log-uniform (four times the limit).
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut sent = 0usize;
    let mut peak = 0;
    let mut n = 0;
    let mut last = Vec::new();
    while sent < 256 << 20 {
        let mut request = String::new();
        last.clear();
        for _ in 0..32 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let unit = (rng >> 11) as f64 / (1u64 << 53) as f64;
            let len = (10f64 * (10_240f64).powf(unit)) as usize;
            let key = format!("m:{n}");
            n += 1;
            let byte = b'a' + (n % 26) as u8;
            write!(request, "set {key} 0 0 {len}\r\n").unwrap();
            request.extend(std::iter::repeat_n(byte as char, len));
            request.push_str("\r\n");
            last.push((key, len, b'a' + (n % 26) as u8));
            sent += len;
        }
        c.expect(&request, &"STORED\r\n".repeat(32));
        if n % 512 == 0 {
            peak = peak.max(rss_bytes(child.0.id()));
        }
    }
    peak = peak.max(rss_bytes(child.0.id()));
    let bound = (limit_mib as f64 * 1.1 + 16.0) * (1 << 20) as f64;
    assert!(
        (peak as f64) < bound,
        "peak RSS {} MiB over the bound {} MiB",
        peak >> 20,
        bound / (1 << 20) as f64
    );
    // What was written last is readable; every item not there any more
    // was evicted, and counted.
    for (key, len, byte) in &last {
        let value = String::from_utf8(vec![*byte; *len]).unwrap();
        c.expect(
            &format!("get {key}\r\n"),
            &format!("VALUE {key} 0 {len}\r\n{value}\r\nEND\r\n"),
        );
    }
    let stats = c.stats("");
    let stat = |name: &str| -> u64 {
        let (_, value) = stats.iter().find(|(k, _)| k == name).unwrap();
        value.parse().unwrap()
    };
    assert_eq!(stat("total_items"), n as u64);
    assert!(
        stat("curr_items") < n as u64,
        "256 MiB of items fit in 64 MiB"
    );
    assert_eq!(stat("curr_items") + stat("evictions"), n as u64);
}

both_runtimes! {
    fn expired_items_are_reclaimed_without_reads(server) {
        let mut c = server.connect();
        for chunk in 0..20 {
            let mut request = String::new();
            for i in 0..500 {
                write!(request, "set ttl:{chunk}:{i} 0 1 16\r\n0123456789abcdef\r\n").unwrap();
            }
            c.expect(&request, &"STORED\r\n".repeat(500));
        }
        c.expect("set keep 0 0 4\r\nkeep\r\n", "STORED\r\n");
        // The server's clock is held: however long the sets took, no TTL
        // has run yet, and none runs out a millisecond early.
        assert_eq!(server.stat_u64("", "curr_items"), 10_001);
        server.advance(std::time::Duration::from_millis(999));
        server.wait_for_ticks();
        assert_eq!(server.stat_u64("", "curr_items"), 10_001);
        // No reads: the timing wheel alone brings the count down, within
        // one of its slots of the deadline.
        server.advance(std::time::Duration::from_millis(1 + TICK_MS));
        assert_eq!(server.wait_for_stat("curr_items", 1), 1);
        assert_eq!(server.stat_u64("", "reclaimed"), 10_000);
        assert_eq!(server.stat_u64("", "expired_unfetched"), 10_000);
        // Only `keep` is left: a 40-byte item header, key and value.
        assert_eq!(server.stat_u64("", "bytes"), 48);
        c.expect("get keep\r\n", "VALUE keep 0 4\r\nkeep\r\nEND\r\n");
    }
}
