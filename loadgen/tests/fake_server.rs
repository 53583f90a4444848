//! End-to-end tests of loadgen against a tiny in-test memcached: the JSON
//! schema, exit codes, `--verify` catching a corrupting server, strict
//! verification catching lost writes, deletes, appends and wrong incrs,
//! the `--rate` schedule, and `--check` catching a stale read, two `cas`
//! that both win and two pipelined writes made visible out of order.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the fake server misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Flips a bit in the middle of every value it returns.
    CorruptValues,
    /// Answers `STORED` but forgets every write after the first per key.
    DropOverwrites,
    /// Answers every `set` with `SERVER_ERROR`.
    ServerErrorOnSet,
    /// Answers multi-gets with the values in reverse order.
    ReverseMultiget,
    /// Reads requests but stops answering after its first 50 reads.
    GoesSilent,
    /// Answers each request with a send of its own, as memcached does.
    Trickle,
    /// Answers `DELETED` (when the key is there) but keeps the key.
    LoseDeletes,
    /// Answers `STORED` to an append but does not append.
    LoseAppends,
    /// Increments correctly but replies one more than the new value.
    WrongIncr,
    /// A connection reading a key whose current value it wrote itself
    /// gets the value from before that write.
    StaleRead,
    /// A `cas` whose token an earlier `cas` on the key already won with
    /// wins too (once per token), whatever was written in between: two
    /// `cas` with one token both answer `STORED`. The client makes that
    /// condition whenever two connections read one version with `gets`
    /// and both use its unique, the first before any other write.
    TwoCasWin,
    /// Of two consecutive writes to different keys in one read, the first
    /// is held back until its key is next read or written: a pipelined
    /// `set a`, `set b` becomes visible as `b` first.
    ReorderPipelinedWrites,
}

/// One stored item.
struct Item {
    data: Vec<u8>,
    cas: u64,
    /// The value this one replaced, and which connection replaced it.
    prev: Option<Vec<u8>>,
    writer: u64,
}

/// The fake's whole state, behind one lock, so it is linearizable unless a
/// fault says otherwise.
#[derive(Default)]
struct Store {
    items: HashMap<Vec<u8>, Item>,
    next_cas: u64,
    /// `ReorderPipelinedWrites`: writes held back, by key.
    held: HashMap<Vec<u8>, (Vec<u8>, u64)>,
    /// `TwoCasWin`: the tokens winning `cas` used, by key, until a second
    /// `cas` wins with one.
    spent: HashMap<Vec<u8>, HashSet<u64>>,
}

impl Store {
    /// Stores `data` for `key` as connection `conn`'s write.
    fn put(&mut self, key: &[u8], data: Vec<u8>, conn: u64) {
        self.next_cas += 1;
        let prev = self.items.remove(key).map(|i| i.data);
        self.items.insert(
            key.to_vec(),
            Item {
                data,
                cas: self.next_cas,
                prev,
                writer: conn,
            },
        );
    }

    /// Makes a held-back write to `key` visible.
    fn release(&mut self, key: &[u8]) {
        if let Some((data, conn)) = self.held.remove(key) {
            self.put(key, data, conn);
        }
    }
}

type Map = Arc<Mutex<Store>>;
/// Requests found in each read the server made, over all connections.
type ReadLog = Arc<Mutex<Vec<usize>>>;

/// Starts the fake server on an ephemeral loopback port.
fn start_fake(fault: Fault) -> SocketAddr {
    start_fake_logged(fault).0
}

/// [`start_fake`], also returning the server's log of requests per read.
fn start_fake_logged(fault: Fault) -> (SocketAddr, ReadLog) {
    let reads = ReadLog::default();
    let log = reads.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let map: Map = Arc::default();
    let conns = Arc::new(std::sync::atomic::AtomicU64::new(0));
    common::serve(listener, move |sock, _| {
        let conn = conns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        serve(sock, map.clone(), fault, log.clone(), conn)
    });
    (addr, reads)
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

async fn serve(mut sock: tokio::net::TcpStream, map: Map, fault: Fault, log: ReadLog, conn: u64) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 16384];
    let mut answered = 0;
    loop {
        let n = match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut off = 0;
        let mut requests = 0;
        // The key of the previous request of this read, if it was a write.
        let mut last_write: Option<Vec<u8>> = None;
        while let Some(e) = find_crlf(&buf[off..]) {
            if fault == Fault::Trickle && !out.is_empty() {
                if sock.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            requests += 1;
            let line = buf[off..off + e].to_vec();
            let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            let mut store = map.lock().unwrap();
            let wrote = match words[0] {
                b"get" | b"gets" => {
                    off += e + 2;
                    let mut keys: Vec<&[u8]> = words[1..].to_vec();
                    if fault == Fault::ReverseMultiget {
                        keys.reverse();
                    }
                    for key in keys {
                        if let Some(item) = store.items.get(key) {
                            let mut v = match (&item.prev, fault) {
                                (Some(prev), Fault::StaleRead) if item.writer == conn => {
                                    prev.clone()
                                }
                                _ => item.data.clone(),
                            };
                            if fault == Fault::CorruptValues {
                                let mid = v.len() / 2;
                                v[mid] ^= 1;
                            }
                            out.extend_from_slice(b"VALUE ");
                            out.extend_from_slice(key);
                            out.extend_from_slice(format!(" 0 {}", v.len()).as_bytes());
                            if words[0] == b"gets" {
                                out.extend_from_slice(format!(" {}", item.cas).as_bytes());
                            }
                            out.extend_from_slice(b"\r\n");
                            out.extend_from_slice(&v);
                            out.extend_from_slice(b"\r\n");
                        }
                        // A held-back write shows after the read that missed it.
                        store.release(key);
                    }
                    out.extend_from_slice(b"END\r\n");
                    None
                }
                b"set" | b"add" | b"cas" | b"append" => {
                    let len: usize = std::str::from_utf8(words[4]).unwrap().parse().unwrap();
                    let start = off + e + 2;
                    if buf.len() < start + len + 2 {
                        break;
                    }
                    let data = buf[start..start + len].to_vec();
                    off = start + len + 2;
                    let key = words[1];
                    store.release(key);
                    let found = store.items.contains_key(key);
                    match words[0] {
                        b"append" => match store.items.get(key) {
                            None => out.extend_from_slice(b"NOT_STORED\r\n"),
                            Some(item) => {
                                let mut v = item.data.clone();
                                if fault != Fault::LoseAppends {
                                    v.extend_from_slice(&data);
                                }
                                store.put(key, v, conn);
                                out.extend_from_slice(b"STORED\r\n");
                            }
                        },
                        b"add" if found => out.extend_from_slice(b"NOT_STORED\r\n"),
                        b"cas" => {
                            let token: u64 =
                                std::str::from_utf8(words[5]).unwrap().parse().unwrap();
                            let current = store.items.get(key).map(|item| item.cas);
                            match current {
                                None => out.extend_from_slice(b"NOT_FOUND\r\n"),
                                Some(cas) if cas == token => {
                                    if fault == Fault::TwoCasWin {
                                        store.spent.entry(key.to_vec()).or_default().insert(token);
                                    }
                                    store.put(key, data, conn);
                                    out.extend_from_slice(b"STORED\r\n");
                                }
                                // The fault: a second winner with a spent
                                // token (which then is spent for good).
                                Some(_)
                                    if fault == Fault::TwoCasWin
                                        && store
                                            .spent
                                            .get_mut(key)
                                            .is_some_and(|spent| spent.remove(&token)) =>
                                {
                                    store.put(key, data, conn);
                                    out.extend_from_slice(b"STORED\r\n");
                                }
                                Some(_) => out.extend_from_slice(b"EXISTS\r\n"),
                            }
                        }
                        _ if fault == Fault::ServerErrorOnSet => {
                            out.extend_from_slice(b"SERVER_ERROR out of memory storing object\r\n");
                        }
                        _ => {
                            if fault != Fault::DropOverwrites || !found {
                                store.put(key, data, conn);
                            }
                            out.extend_from_slice(b"STORED\r\n");
                        }
                    }
                    Some(key.to_vec())
                }
                b"delete" => {
                    off += e + 2;
                    let key = words[1];
                    store.release(key);
                    let found = if fault == Fault::LoseDeletes {
                        store.items.contains_key(key)
                    } else {
                        store.items.remove(key).is_some()
                    };
                    out.extend_from_slice(if found {
                        &b"DELETED\r\n"[..]
                    } else {
                        b"NOT_FOUND\r\n"
                    });
                    Some(key.to_vec())
                }
                b"incr" => {
                    off += e + 2;
                    let key = words[1];
                    store.release(key);
                    let delta: u64 = std::str::from_utf8(words[2]).unwrap().parse().unwrap();
                    let Some(item) = store.items.get(key) else {
                        out.extend_from_slice(b"NOT_FOUND\r\n");
                        continue;
                    };
                    let Some(n) = std::str::from_utf8(&item.data)
                        .ok()
                        .and_then(|t| t.parse::<u64>().ok())
                    else {
                        out.extend_from_slice(
                            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                        );
                        continue;
                    };
                    let n = n.wrapping_add(delta);
                    store.put(key, n.to_string().into_bytes(), conn);
                    let reply = if fault == Fault::WrongIncr {
                        n.wrapping_add(1)
                    } else {
                        n
                    };
                    out.extend_from_slice(format!("{reply}\r\n").as_bytes());
                    Some(key.to_vec())
                }
                _ => {
                    off += e + 2;
                    out.extend_from_slice(b"ERROR\r\n");
                    None
                }
            };
            // The fault: this write to another key made visible before the
            // previous one, which is taken back and held.
            if fault == Fault::ReorderPipelinedWrites
                && let (Some(first), Some(second)) = (&last_write, &wrote)
                && first != second
                && let Some(item) = store.items.remove(first.as_slice())
            {
                if let Some(prev) = item.prev {
                    store.items.insert(
                        first.clone(),
                        Item {
                            data: prev,
                            cas: item.cas,
                            prev: None,
                            writer: u64::MAX,
                        },
                    );
                }
                store.held.insert(first.clone(), (item.data, conn));
            }
            last_write = wrote;
        }
        buf.drain(..off);
        log.lock().unwrap().push(requests);
        answered += 1;
        if fault == Fault::GoesSilent && answered > 50 {
            out.clear();
        }
        if !out.is_empty() {
            if sock.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

/// Runs the loadgen binary; returns its exit code and the parsed JSON.
fn loadgen(addr: SocketAddr, extra: &[&str]) -> (i32, serde_json::Value) {
    let (code, json, output) = common::run_loadgen(addr, extra);
    assert!(!json.is_null(), "no JSON written; {output}");
    (code, json)
}

const SHORT: &[&str] = &[
    "--duration",
    "400ms",
    "--warmup",
    "100ms",
    "--connections",
    "4",
    "--threads",
    "2",
    "--pipeline",
    "8",
    "--keys",
    "500",
];

#[test]
fn json_schema_and_clean_exit() {
    let addr = start_fake(Fault::None);
    let (code, j) = loadgen(
        addr,
        &[SHORT, &["--prefill", "--get-ratio", "0.8"]].concat(),
    );
    assert_eq!(code, 0, "{j:#}");
    for field in [
        "ops_per_sec",
        "hit_ratio",
        "requests",
        "gets",
        "sets",
        "hits",
        "misses",
        "elapsed_s",
    ] {
        assert!(j[field].is_number(), "missing {field}: {j:#}");
    }
    // Some requests, so the checks below are about something; how many
    // depends on the machine, so no floor.
    let n = |field: &str| j[field].as_u64().unwrap();
    assert!(n("requests") > 0, "{j:#}");
    assert_eq!(n("requests"), n("gets") + n("sets"));
    assert_eq!(n("hits") + n("misses"), n("get_keys"));
    assert_eq!(n("get_keys"), n("gets"), "one key per get");
    assert_eq!(
        j["hit_ratio"].as_f64().unwrap(),
        1.0,
        "prefilled keys must hit"
    );
    assert_eq!(j["errors"]["total"], 0);
    for p in ["min", "mean", "p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(
            j["latency_us"][p].as_f64().unwrap() > 0.0,
            "latency_us.{p}: {j:#}"
        );
    }
    let l = &j["latency_us"];
    assert!(l["p50"].as_f64() <= l["p99"].as_f64() && l["p99"].as_f64() <= l["max"].as_f64());
    let c = &j["config"];
    assert_eq!(c["pipeline"], 8);
    assert_eq!(c["connections"], 4);
    assert_eq!(c["keys"], 500);
    assert_eq!(c["distribution"]["kind"], "uniform");
    assert_eq!(c["verify"], "off");
    assert!(c["rate"].is_null());
    assert!(j["cpu"]["us_per_request"].is_number());
}

#[test]
fn verify_catches_corrupted_values() {
    let addr = start_fake(Fault::CorruptValues);
    let (code, j) = loadgen(
        addr,
        &[SHORT, &["--prefill", "--verify", "--get-ratio", "0.9"]].concat(),
    );
    assert_eq!(code, 1, "a corrupting server must fail the run: {j:#}");
    assert!(j["errors"]["verify_failed"].as_u64().unwrap() > 0, "{j:#}");
}

#[test]
fn verify_passes_on_a_correct_server() {
    let addr = start_fake(Fault::None);
    let (code, j) = loadgen(
        addr,
        &[
            SHORT,
            &[
                "--prefill",
                "--verify=strict",
                "--get-ratio",
                "0.5",
                "--value-size",
                "24-300",
                "--distribution",
                "zipf:0.99",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["errors"]["total"], 0);
    assert_eq!(j["config"]["verify"], "strict");
    assert_eq!(j["config"]["distribution"]["s"], 0.99);
}

#[test]
fn strict_verify_catches_lost_writes() {
    let addr = start_fake(Fault::DropOverwrites);
    // Plain --verify accepts stale-but-intact values...
    let (code, j) = loadgen(
        addr,
        &[SHORT, &["--prefill", "--verify", "--get-ratio", "0.5"]].concat(),
    );
    assert_eq!(code, 0, "{j:#}");
    // ...strict mode knows which version was acknowledged last.
    let (code, j) = loadgen(
        addr,
        &[
            SHORT,
            &["--prefill", "--verify=strict", "--get-ratio", "0.5"],
        ]
        .concat(),
    );
    assert_eq!(code, 1, "{j:#}");
    assert!(j["errors"]["strict_miss"].as_u64().unwrap() > 0, "{j:#}");
}

#[test]
fn server_errors_fail_the_run() {
    let addr = start_fake(Fault::ServerErrorOnSet);
    let (code, j) = loadgen(addr, &[SHORT, &["--get-ratio", "0.5"]].concat());
    assert_eq!(code, 1, "{j:#}");
    assert!(j["errors"]["server_error"].as_u64().unwrap() > 0, "{j:#}");
}

/// How many requests a rate gives over a time is a property of the
/// schedule (timer::Schedule's tests count it exactly); a run can only
/// fall short of it, never exceed it.
#[test]
fn a_rate_caps_the_requests_at_its_schedule() {
    let addr = start_fake(Fault::None);
    let (code, j) = loadgen(
        addr,
        &[
            "--rate",
            "2000",
            "--duration",
            "1500ms",
            "--warmup",
            "200ms",
            "--connections",
            "5",
            "--pipeline",
            "4",
        ],
    );
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["config"]["rate"], 2000.0);
    // 2000/s from the start of the warmup to the end: 3400 sends, and
    // only replies to those can be counted.
    let n = j["requests"].as_u64().unwrap();
    assert!(n > 0 && n <= 3400, "{n} requests: {j:#}");
    assert_eq!(j["errors"]["total"], 0);
    // The measured 1.5 s had 3000 sends due; the report counts those made.
    let o = &j["open_loop"];
    let sends = o["sends"].as_u64().unwrap();
    assert!(sends > 0 && sends <= 3000, "{j:#}");
    assert!(o["held"].as_u64().unwrap() <= sends, "{j:#}");
    for q in ["p50", "p99", "max"] {
        assert!(o["lateness_us"][q].is_number(), "{j:#}");
    }
}

#[test]
fn library_api_runs_in_process() {
    let addr = start_fake(Fault::None);
    let cfg = loadgen::Config {
        server: addr,
        connections: 3,
        pipeline: 2,
        keys: 100,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(50),
        prefill: true,
        verify: loadgen::VerifyMode::Strict,
        ..loadgen::Config::default()
    };
    let r = loadgen::run(&cfg).unwrap();
    assert!(!r.failed(), "{r}");
    assert!(r.requests > 0, "{r}");
    assert_eq!(r.requests, r.gets + r.sets);
    assert_eq!(r.hit_ratio, 1.0);
    let text = r.to_string();
    assert!(text.contains("ops/s") && text.contains("p99.9"), "{text}");
}

#[test]
fn connect_failure_is_an_error() {
    // A port nobody listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--duration",
            "100ms",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connecting"));
}

#[test]
fn a_silent_server_fails_the_run_instead_of_hanging() {
    let addr = start_fake(Fault::GoesSilent);
    let cfg = loadgen::Config {
        server: addr,
        connections: 2,
        pipeline: 4,
        duration: Duration::from_millis(300),
        warmup: Duration::ZERO,
        drain_timeout: Duration::from_millis(300),
        ..loadgen::Config::default()
    };
    let r = loadgen::run(&cfg).unwrap();
    assert!(r.failed(), "{r}");
    assert_eq!(r.errors.io, 2, "{r}");
}

#[test]
fn multiget_with_strict_verify() {
    let addr = start_fake(Fault::None);
    let (code, j) = loadgen(
        addr,
        &[
            SHORT,
            &[
                "--prefill",
                "--verify=strict",
                "--get-ratio",
                "0.7",
                "--multiget",
                "5",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{j:#}");
    let gets = j["gets"].as_u64().unwrap();
    assert!(gets > 0, "{j:#}");
    assert_eq!(j["get_keys"].as_u64().unwrap(), gets * 5, "{j:#}");
    assert_eq!(j["hit_ratio"].as_f64().unwrap(), 1.0, "{j:#}");
    assert_eq!(j["config"]["multiget"], 5);
}

#[test]
fn multiget_catches_out_of_order_values() {
    let addr = start_fake(Fault::ReverseMultiget);
    let (code, j) = loadgen(
        addr,
        &[SHORT, &["--prefill", "--get-ratio", "1", "--multiget", "4"]].concat(),
    );
    assert_eq!(code, 1, "{j:#}");
    assert!(j["errors"]["mismatch"].as_u64().unwrap() > 0, "{j:#}");
}

/// Against a server that answers every request with its own send, a
/// connection still sends in batches of at least `--refill` requests (half
/// the pipeline by default) instead of one per reply.
#[test]
fn requests_leave_in_batches_against_a_trickling_server() {
    let (addr, reads) = start_fake_logged(Fault::Trickle);
    let (code, j) = loadgen(
        addr,
        &[
            "--duration",
            "400ms",
            "--warmup",
            "0s",
            "--connections",
            "4",
            "--pipeline",
            "16",
            "--get-ratio",
            "1",
        ],
    );
    assert_eq!(code, 0, "{j:#}");
    let reads = reads.lock().unwrap();
    let requests: usize = reads.iter().sum();
    assert!(requests as u64 >= j["requests"].as_u64().unwrap(), "{j:#}");
    // Every read holds whole batches: the first 16, then at least 8.
    assert!(reads.iter().all(|&n| n >= 8), "{reads:?}");
}

/// Every operation of the mix, weighted so each is common.
const MIX: &[&str] = &["--mix", "set=20,get=40,delete=10,append=15,incr=15"];

/// Runs a strict mixed workload against a fake server with `fault`.
fn strict_mix(fault: Fault) -> (i32, serde_json::Value) {
    let addr = start_fake(fault);
    loadgen(
        addr,
        &[
            SHORT,
            MIX,
            &["--prefill", "--verify=strict", "--multiget", "2"],
        ]
        .concat(),
    )
}

#[test]
fn a_strict_mix_passes_on_a_correct_server() {
    let (code, j) = strict_mix(Fault::None);
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["errors"]["total"], 0, "{j:#}");
    let n = |field: &str| {
        j[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field}: {j:#}"))
    };
    assert_eq!(
        n("requests"),
        n("gets") + n("sets") + n("deletes") + n("appends") + n("incrs"),
        "{j:#}"
    );
    // Every kind was sent and (except after a delete) found its key.
    for (sent, found) in [
        ("deletes", "deleted"),
        ("appends", "appended"),
        ("incrs", "incremented"),
    ] {
        assert!(n(found) > 0 && n(found) <= n(sent), "{sent}/{found}: {j:#}");
    }
    assert!(n("gets") > 0 && n("sets") > 0, "{j:#}");
    assert_eq!(j["config"]["mix"]["append"], 15);
    assert_eq!(j["config"]["get_ratio"], 0.4);
    assert_eq!(j["errors"]["wrong_reply"], 0);
}

#[test]
fn a_strict_mix_catches_a_lost_delete() {
    let (code, j) = strict_mix(Fault::LoseDeletes);
    assert_eq!(code, 1, "{j:#}");
    // The delete's reply was right; the get after it found the key.
    assert!(j["errors"]["strict_miss"].as_u64().unwrap() > 0, "{j:#}");
}

#[test]
fn a_strict_mix_catches_a_lost_append() {
    let (code, j) = strict_mix(Fault::LoseAppends);
    assert_eq!(code, 1, "{j:#}");
    // Gets after an acknowledged append found too few suffixes.
    assert!(j["errors"]["strict_miss"].as_u64().unwrap() > 0, "{j:#}");
    assert_eq!(j["errors"]["verify_failed"], 0, "{j:#}");
}

#[test]
fn a_strict_mix_catches_a_wrong_incr() {
    let (code, j) = strict_mix(Fault::WrongIncr);
    assert_eq!(code, 1, "{j:#}");
    // Every incr that found its counter answered one too many.
    let e = &j["errors"];
    assert!(e["wrong_reply"].as_u64().unwrap() > 0, "{j:#}");
    assert_eq!(e["strict_miss"], 0, "the stored counters are right: {j:#}");
}

/// Without strict mode the mix only counts: a lost delete is invisible
/// to `--verify`, which checks values' integrity, not their history.
#[test]
fn a_mix_without_strict_counts_replies_only() {
    let addr = start_fake(Fault::LoseDeletes);
    let (code, j) = loadgen(addr, &[SHORT, MIX, &["--prefill", "--verify"]].concat());
    assert_eq!(code, 0, "{j:#}");
    assert!(j["deletes"].as_u64().unwrap() > 0, "{j:#}");
    assert_eq!(j["errors"]["total"], 0, "{j:#}");
}

/// A server that answers nothing until `hold` after a connection's first
/// request, then that request's reply alone, then (`gap` later) every
/// other reply owed, and from then on answers as it reads. Gets miss and
/// sets store; it keeps no data.
async fn serve_late(mut sock: tokio::net::TcpStream, hold: Duration, gap: Duration) {
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 16384]);
    // Each owed reply, in request order.
    let mut owed: std::collections::VecDeque<&'static [u8]> = Default::default();
    let mut release = None;
    let mut released = false;
    loop {
        let wait = release.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            read = sock.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut off = 0;
                while let Some(e) = find_crlf(&buf[off..]) {
                    let line = &buf[off..off + e];
                    if line.starts_with(b"set ") {
                        let len = line.rsplit(|&b| b == b' ').next().unwrap();
                        let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
                        if buf.len() < off + e + 2 + len + 2 {
                            break;
                        }
                        off += e + 2 + len + 2;
                        owed.push_back(b"STORED\r\n");
                    } else {
                        off += e + 2;
                        owed.push_back(b"END\r\n");
                    }
                }
                buf.drain(..off);
                if release.is_none() && !owed.is_empty() {
                    release = Some(tokio::time::Instant::now() + hold);
                }
            }
            () = tokio::time::sleep_until(wait), if release.is_some() && !released => {
                released = true;
                let first = owed.pop_front().unwrap();
                if sock.write_all(first).await.is_err() {
                    return;
                }
                tokio::time::sleep(gap).await;
            }
        }
        if released {
            let all: Vec<u8> = owed.drain(..).flatten().copied().collect();
            if sock.write_all(&all).await.is_err() {
                return;
            }
        }
    }
}

/// A server that answers each request `hold` after it read it, one at a
/// time, in order. Gets only (it answers `END`, a miss).
async fn serve_slow(mut sock: tokio::net::TcpStream, hold: Duration) {
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 16384]);
    loop {
        let n = match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(e) = find_crlf(&buf) {
            buf.drain(..e + 2);
            tokio::time::sleep(hold).await;
            if sock.write_all(b"END\r\n").await.is_err() {
                return;
            }
        }
    }
}

/// Where an open-loop latency starts. A send that a full pipeline held
/// past its due time waited for the server: it counts from that time
/// (coordinated omission corrected). A send the pipeline had room for
/// counts from when it left, so the client's own timer lateness is not
/// charged to the server. Here one connection with a pipeline of 1 is
/// due every millisecond and the server holds each reply 20 ms, so the
/// first send finds the pipeline empty and every later one finds it full
/// until after its due time: all but the first are held, whatever the
/// machine's speed (a sleep only ever lasts longer).
#[test]
fn an_open_loop_charges_the_server_only_for_sends_it_held() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    common::serve(listener, |sock, _| {
        serve_slow(sock, Duration::from_millis(20))
    });
    let cfg = loadgen::Config {
        server: addr,
        connections: 1,
        threads: 1,
        pipeline: 1,
        rate: Some(1000.0),
        get_ratio: 1.0,
        duration: Duration::from_millis(400),
        warmup: Duration::ZERO,
        ..loadgen::Config::default()
    };
    let report = loadgen::run(&cfg).unwrap();
    assert!(!report.failed(), "{report}");
    let o = report
        .open_loop
        .as_ref()
        .expect("an open loop reports its sends");
    assert!(o.sends >= 2, "{report}");
    assert_eq!(o.held, o.sends - 1, "{report}");
    // Every send but perhaps the last was answered inside the window.
    assert!(
        report.requests <= o.sends && report.requests + 1 >= o.sends,
        "{report}"
    );

    // A closed loop has no schedule to report.
    let closed = loadgen::run(&loadgen::Config {
        rate: None,
        duration: Duration::from_millis(100),
        ..cfg
    })
    .unwrap();
    assert!(closed.open_loop.is_none(), "{closed}");
}

/// The open loop must keep reading after its measured window. Here the
/// pipeline is full at the end (the server holds every reply until
/// after it), so sends the schedule had due are never made; the replies
/// then come in two parts. loadgen once took those due sends as a timer
/// that had already fired and went round its loop without ever yielding
/// to the runtime, so the second part was never read and the run hung
/// (its watchdog starved with it): the test waits a bounded time for the
/// run to finish, and all replies must be counted as answered.
#[test]
fn an_open_loop_reads_replies_that_come_after_its_end() {
    let duration = Duration::from_millis(200);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Held for the run's whole duration after its first request (sent at
    // or after the start): the replies come after the end, whatever the
    // machine's speed.
    let hold = duration + Duration::from_millis(100);
    common::serve(listener, move |sock, _| {
        serve_late(sock, hold, Duration::from_millis(100))
    });
    let cfg = loadgen::Config {
        server: addr,
        connections: 1,
        threads: 1,
        pipeline: 4,
        rate: Some(1000.0),
        duration,
        warmup: Duration::ZERO,
        ..loadgen::Config::default()
    };
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(loadgen::run(&cfg));
    });
    // Minutes, not the run's length: only a hang takes this long.
    let report = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("loadgen hung after the end of its open loop")
        .unwrap();
    // Every reply came, after the window: none is an error, none counted.
    assert!(!report.failed(), "{report}");
    assert_eq!(report.errors.total, 0, "{report}");
    assert_eq!(report.requests, 0, "{report}");
}

/// `--check` against the fake: 16 connections on 4 hot keys, pipelined
/// two deep, for long enough that every kind of operation races.
fn check(fault: Fault, mode: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    check_with(fault, mode, "4", "2", extra)
}

/// [`check`] on `hot_keys` keys, `pipeline` requests a batch.
fn check_with(
    fault: Fault,
    mode: &str,
    hot_keys: &str,
    pipeline: &str,
    extra: &[&str],
) -> (i32, serde_json::Value, String) {
    let addr = start_fake(fault);
    let args = [
        &[
            "--check",
            mode,
            "--connections",
            "16",
            "--hot-keys",
            hot_keys,
            "--pipeline",
            pipeline,
            "--duration",
            "1s",
        ],
        extra,
    ]
    .concat();
    let (code, json, output) = common::run_loadgen(addr, &args);
    assert!(!json.is_null(), "no JSON written; {output}");
    (code, json, output)
}

/// The calls and replies of every violation's smallest history.
fn violation_ops(j: &serde_json::Value) -> Vec<String> {
    j["violations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["ops"].as_array().unwrap().iter())
        .map(|op| op.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_linearizability_check_passes_on_a_correct_server() {
    let (code, j, out) = check(Fault::None, "linearizable", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(j["violations"].as_array().unwrap().len(), 0, "{out}");
    assert_eq!(j["errors"], 0, "{out}");
    let n = |field: &str| j[field].as_u64().unwrap();
    assert!(n("ops") > 0 && n("windows") > 0 && n("epochs") > 0, "{out}");
    assert_eq!(n("keys"), 4, "no key retired without kills: {out}");
    assert_eq!(n("maybe_ops"), 0, "{out}");
    assert!(n("inconclusive_windows") * 100 <= n("windows"), "{out}");
    // Every command of the mix was checked.
    for kind in [
        "get", "gets", "set", "add", "cas", "append", "incr", "delete",
    ] {
        assert!(j["ops_by_kind"][kind].as_u64() > Some(0), "{kind}: {out}");
    }
    assert!(out.contains("passed"), "{out}");
}

/// Connections killed mid-operation leave operations without replies,
/// which may or may not have happened: a correct server still passes,
/// and the killed connections' keys are retired for new ones.
#[test]
fn killed_connections_leave_maybe_applied_operations_and_a_correct_server_passes() {
    let (code, j, out) = check(Fault::None, "linearizable", &["--kill-every", "50ms"]);
    assert_eq!(code, 0, "{out}");
    let n = |field: &str| j[field].as_u64().unwrap();
    assert!(n("kills") > 0, "{out}");
    assert!(n("maybe_ops") > 0, "{out}");
    assert!(n("keys") > 4, "retired keys were replaced: {out}");
    assert_eq!(j["errors"], 0, "{out}");
}

#[test]
fn the_linearizability_check_catches_a_stale_read() {
    let (code, j, out) = check(Fault::StaleRead, "linearizable", &[]);
    assert_eq!(code, 1, "{out}");
    let ops = violation_ops(&j);
    assert!(!ops.is_empty(), "{out}");
    // Some smallest history is a read that saw the stale value, and what
    // it contradicts. (Not every one has a read: a stale read that a
    // window could still explain leaves a later window starting from a
    // state the server no longer has, and its writes contradict that.)
    let with_read = j["violations"].as_array().unwrap().iter().any(|v| {
        v["ops"]
            .as_array()
            .unwrap()
            .iter()
            .any(|op| op.as_str().unwrap().contains("  get"))
    });
    assert!(with_read, "{out}");
    assert!(out.contains("VIOLATION on key key:"), "{out}");
}

#[test]
fn the_linearizability_check_catches_two_cas_that_both_win() {
    // The fault fires whenever two connections used one token and the
    // first won, however far apart; 4 hot keys, pipelined two deep, as
    // the other checks (one hot key with windows of 16 made it rarer: a
    // 1 s run of 154 epochs had none).
    let (code, j, out) = check(Fault::TwoCasWin, "linearizable", &[]);
    assert_eq!(code, 1, "{out}");
    // Some window reported as a violation holds two cas of one token,
    // both stored: the fault itself (on a correct server a unique names
    // one version, so a second cas with it fails). Its smallest history
    // is some contradiction in that window, not always those two.
    let found = j["violations"].as_array().unwrap().iter().any(|v| {
        let mut won: Vec<String> = v["window"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|op| {
                let op = op.as_str().unwrap();
                let token = op.split(" token ").nth(1)?.split(' ').next()?;
                op.ends_with("STORED").then(|| token.to_string())
            })
            .collect();
        won.sort();
        won.windows(2).any(|w| w[0] == w[1])
    });
    assert!(found, "{out}");
}

#[test]
fn the_write_order_check_passes_on_a_correct_server() {
    let (code, j, out) = check(Fault::None, "write-order", &[]);
    assert_eq!(code, 0, "{out}");
    let o = &j["order"];
    assert!(o["checked"].as_u64() > Some(0), "{out}");
    assert!(o["rounds"].as_u64() > Some(0), "{out}");
    assert_eq!(o["pairs"], 2, "{out}");
    assert_eq!(j["violations"].as_array().unwrap().len(), 0, "{out}");
}

#[test]
fn the_write_order_check_catches_reordered_pipelined_writes() {
    let (code, j, out) = check(Fault::ReorderPipelinedWrites, "write-order", &[]);
    assert_eq!(code, 1, "{out}");
    let ops = violation_ops(&j);
    assert!(ops.iter().any(|op| op.contains("get b -> round")), "{out}");
    assert!(out.contains("VIOLATION"), "{out}");
}
