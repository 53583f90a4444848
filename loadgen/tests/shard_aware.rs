//! `--shard-aware` against a stand-in for corecache's shard-aware port: a
//! small server that publishes the routing rule in `stats settings`, hands
//! each connection on its shard-aware port to core `peer_port % threads`,
//! and counts every key that arrives on a core that does not own it (what
//! corecache would forward). The stand-in computes owners from the
//! published rule itself, with `xxh3_64`, not with loadgen's code.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xxhash_rust::xxh3::xxh3_64;

/// What the stand-in saw.
#[derive(Default)]
struct Seen {
    /// Keys that reached a core other than their owner.
    forwarded: AtomicU64,
    /// Keys of gets and sets.
    keys: AtomicU64,
    /// The core of every connection accepted on the shard-aware port.
    cores: Mutex<Vec<usize>>,
}

struct StandIn {
    addr: SocketAddr,
    shard_port: u16,
    seen: Arc<Seen>,
}

const THREADS: u64 = 3;
const SHARDS: u64 = 16;

/// The owner core of `key` by the published rule.
fn owner(key: &[u8]) -> usize {
    let shard = ((xxh3_64(key) >> 32) * SHARDS) >> 32;
    (shard % THREADS) as usize
}

/// Starts the stand-in; `offer_port` false publishes `shard_aware_port 0`.
fn start(offer_port: bool) -> StandIn {
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let shard = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (addr, shard_port) = (
        plain.local_addr().unwrap(),
        shard.local_addr().unwrap().port(),
    );
    let published = if offer_port { shard_port } else { 0 };
    let seen = Arc::new(Seen::default());
    let map: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    for (listener, on_shard_port) in [(plain, false), (shard, true)] {
        let (seen, map) = (seen.clone(), map.clone());
        common::serve(listener, move |sock, peer| {
            // Both ports model a core per connection the same way, so a
            // plain run shows what routing saves.
            let core = peer.port() as usize % THREADS as usize;
            if on_shard_port {
                seen.cores.lock().unwrap().push(core);
            }
            serve(sock, core, published, seen.clone(), map.clone())
        });
    }
    StandIn {
        addr,
        shard_port,
        seen,
    }
}

async fn serve(
    mut sock: tokio::net::TcpStream,
    core: usize,
    published: u16,
    seen: Arc<Seen>,
    map: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
) {
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let mut chunk = vec![0u8; 16384];
    loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut off = 0;
        while let Some(e) = buf[off..].windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[off..off + e]).into_owned();
            let words: Vec<&str> = line.split(' ').collect();
            let data_start = off + e + 2;
            let keys = match words[0] {
                "set" => &words[1..2],
                "get" => &words[1..],
                _ => &words[..0],
            };
            for key in keys {
                seen.keys.fetch_add(1, Relaxed);
                if owner(key.as_bytes()) != core {
                    seen.forwarded.fetch_add(1, Relaxed);
                }
            }
            match words[0] {
                "stats" if words.get(1) == Some(&"settings") => {
                    for (k, v) in [
                        ("num_threads", THREADS.to_string()),
                        ("shard_aware_port", published.to_string()),
                        ("shard_hash", "xxh3_64".into()),
                        ("shard_count", SHARDS.to_string()),
                        ("shard_select", "hi32_mul".into()),
                        ("shard_owner", "modulo".into()),
                    ] {
                        out.extend_from_slice(format!("STAT {k} {v}\r\n").as_bytes());
                    }
                    out.extend_from_slice(b"END\r\n");
                    off = data_start;
                }
                "get" => {
                    let m = map.lock().unwrap();
                    for key in keys {
                        if let Some(v) = m.get(key.as_bytes()) {
                            out.extend_from_slice(
                                format!("VALUE {key} 0 {}\r\n", v.len()).as_bytes(),
                            );
                            out.extend_from_slice(v);
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    out.extend_from_slice(b"END\r\n");
                    off = data_start;
                }
                "set" => {
                    let len: usize = words[4].parse().unwrap();
                    if buf.len() < data_start + len + 2 {
                        break;
                    }
                    let value = buf[data_start..data_start + len].to_vec();
                    map.lock()
                        .unwrap()
                        .insert(words[1].as_bytes().to_vec(), value);
                    out.extend_from_slice(b"STORED\r\n");
                    off = data_start + len + 2;
                }
                _ => {
                    out.extend_from_slice(b"ERROR\r\n");
                    off = data_start;
                }
            }
        }
        buf.drain(..off);
        if !out.is_empty() && sock.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

/// Runs loadgen against `server`: a short strict-verified run with
/// multi-gets of 5 keys, plus `extra` flags.
fn loadgen(server: SocketAddr, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let args = [
        "--connections",
        "4",
        "--threads",
        "2",
        "--pipeline",
        "8",
        "--keys",
        "600",
        "--duration",
        "400ms",
        "--warmup",
        "0s",
        "--prefill",
        "--verify=strict",
        "--get-ratio",
        "0.7",
        "--multiget",
        "5",
        "--value-size",
        "24-100",
    ];
    common::run_loadgen(server, &[&args[..], extra].concat())
}

#[test]
fn shard_aware_sends_every_key_to_its_owner() {
    let s = start(true);
    let (code, j, stderr) = loadgen(s.addr, &["--shard-aware"]);
    assert_eq!(code, 0, "{stderr}\n{j:#}");
    // Nothing reached a core that does not own it, and there was traffic
    // to route: prefill, sets, and multi-gets split by owner.
    assert_eq!(s.seen.forwarded.load(Relaxed), 0);
    assert!(s.seen.keys.load(Relaxed) > 600, "{j:#}");
    // One connection per core for each of the 4 slots, on the cores the
    // local ports chose.
    let mut cores = s.seen.cores.lock().unwrap().clone();
    cores.sort_unstable();
    assert_eq!(cores, vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    // The same workload as without routing: strict verification of every
    // value, and a split multi-get still counts one request of 5 keys.
    assert_eq!(j["errors"]["total"], 0, "{j:#}");
    assert_eq!(j["hit_ratio"], 1.0, "{j:#}");
    let gets = j["gets"].as_u64().unwrap();
    assert!(gets > 0, "{j:#}");
    assert_eq!(j["get_keys"].as_u64().unwrap(), 5 * gets, "{j:#}");
    assert_eq!(j["config"]["shard_aware"], true);
    assert_eq!(
        j["shard_map"],
        serde_json::json!({"threads": 3, "shards": 16, "port": s.shard_port})
    );
}

#[test]
fn without_shard_aware_keys_land_on_other_cores() {
    // The control: the stand-in's count would catch misrouted keys.
    let s = start(true);
    let (code, j, stderr) = loadgen(s.addr, &[]);
    assert_eq!(code, 0, "{stderr}\n{j:#}");
    assert!(s.seen.forwarded.load(Relaxed) > 0);
    assert!(s.seen.cores.lock().unwrap().is_empty(), "shard port unused");
    assert!(j["shard_map"].is_null(), "{j:#}");
}

#[test]
fn shard_aware_needs_the_servers_port() {
    let s = start(false);
    let (code, _, stderr) = loadgen(s.addr, &["--shard-aware"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--shard-aware-port"), "{stderr}");
}

#[test]
fn shard_aware_refuses_tls() {
    let s = start(true);
    let (code, _, stderr) = loadgen(s.addr, &["--shard-aware", "--tls-ca", "/nonexistent"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--shard-aware does not work with --tls-ca"),
        "{stderr}"
    );
}
