//! A panic wherever client input or background work runs is contained,
//! over real TCP in both runtimes: a shard's report for an admin request,
//! a shard's tick, the page mover, a metadump or cachedump step, a TLS
//! handshake and a login. Each is made to panic once with the debug-only
//! `debug_fault <site>` (src/fault.rs); each test checks the panic reset
//! one shard (or closed one connection), was counted, and that every core
//! still takes its mail (forwarded requests both ways), runs its ticks and
//! accepts connections.

mod common;
#[path = "common/tls.rs"]
mod pki;

use common::{Raw, Scratch, TestServer, eventually, key_on_thread};
use corecache::config::RuntimeKind;
use corecache::server::Router;
use pki::{Identity, Pki, TlsClient};
use std::collections::BTreeSet;
use std::time::Duration;

/// `count` keys, stored with values naming them; returned.
fn store_keys(server: &TestServer, count: usize) -> Vec<String> {
    let mut c = connect(server);
    let keys: Vec<String> = (0..count).map(|i| format!("key:{i}")).collect();
    for key in &keys {
        c.expect(
            &format!("set {key} 0 0 {}\r\n{key}\r\n", key.len()),
            "STORED\r\n",
        );
    }
    keys
}

/// A connection, logged in if the server asks for one.
fn connect(server: &TestServer) -> Raw {
    let mut c = server.connect();
    if let Some(login) = &server.login {
        c.expect(login, "STORED\r\n");
    }
    c
}

/// A connection (logged in if need be) that thread-per-core `thread`
/// serves: the kernel picks a listener by hash, so connect until it
/// picks that one.
fn connect_on(server: &TestServer, thread: usize) -> Raw {
    let mut found = None;
    eventually(&format!("a connection on thread {thread}"), || {
        let mut c = connect(server);
        if c.thread() == thread {
            found = Some(c);
        }
        found.is_some()
    });
    found.unwrap()
}

/// The keys of `keys` a get no longer finds.
fn missing(server: &TestServer, keys: &[String]) -> Vec<String> {
    let mut c = connect(server);
    keys.iter()
        .filter(|key| {
            c.send(format!("get {key}\r\n").as_bytes());
            c.read_until(b"END\r\n") == b"END\r\n"
        })
        .cloned()
        .collect()
}

/// The shard (of the test server's four) that holds `key`.
fn shard_of(key: &str) -> usize {
    Router::new(4, 2).shard(Router::hash(key.as_bytes()))
}

/// Asserts that the keys gone are exactly one shard's: a panic reset that
/// shard and no other. Returns it.
#[track_caller]
fn exactly_one_shard_emptied(server: &TestServer, keys: &[String]) -> usize {
    let gone = missing(server, keys);
    let shards: BTreeSet<usize> = gone.iter().map(|k| shard_of(k)).collect();
    assert_eq!(shards.len(), 1, "keys gone from shards {shards:?}");
    let shard = *shards.first().unwrap();
    let held = keys.iter().filter(|k| shard_of(k) == shard).count();
    assert_eq!(gone.len(), held, "shard {shard} lost only some of its keys");
    shard
}

/// Every core still serves: a connection on each is accepted and runs a
/// set and a get of a key on each core (in thread-per-core, one of the
/// two is forwarded, so both cores take mail), and every core's tick runs.
fn every_core_goes_on(server: &TestServer, seed: usize) {
    let mut clients = match server.runtime {
        RuntimeKind::ThreadPerCore => vec![connect_on(server, 0), connect_on(server, 1)],
        RuntimeKind::WorkStealing => vec![connect(server), connect(server)],
    };
    for (i, c) in clients.iter_mut().enumerate() {
        for thread in 0..2 {
            let key = key_on_thread(thread, seed + 10 * i + thread);
            c.expect(
                &format!("set {key} 0 0 2\r\nok\r\nget {key}\r\n"),
                &format!("STORED\r\nVALUE {key} 0 2\r\nok\r\nEND\r\n"),
            );
        }
    }
    server.advance(Duration::from_secs(1));
    server.wait_for_ticks();
}

both_runtimes! {
    /// `stats` while a shard's report panics: the reply still comes whole,
    /// that shard is reset, the panic counted.
    fn a_panic_in_an_admin_report_resets_its_shard(server) {
        let keys = store_keys(&server, 60);
        let mut c = server.connect();
        c.expect("debug_fault report\r\n", "OK\r\n");
        let stats = c.stats("");
        assert!(stats.iter().any(|(k, _)| k == "curr_items"), "{stats:?}");
        assert_eq!(server.stat_u64("", "request_panics"), 1);
        exactly_one_shard_emptied(&server, &keys);
        every_core_goes_on(&server, 100);
        assert_eq!(server.stat_u64("", "request_panics"), 1);
    }

    /// A tick that panics resets its shard; the next ticks run, and still
    /// reclaim expired items with no read.
    fn a_panic_in_a_tick_resets_its_shard_and_ticks_go_on(server) {
        let keys = store_keys(&server, 60);
        server.connect().expect("debug_fault tick\r\n", "OK\r\n");
        server.advance(Duration::from_secs(1));
        server.wait_for_ticks();
        assert_eq!(server.stat_u64("", "tick_panics"), 1);
        let emptied = exactly_one_shard_emptied(&server, &keys);
        let survivors = keys.iter().filter(|k| shard_of(k) != emptied).count() as u64;
        assert_eq!(server.stat_u64("", "curr_items"), survivors);
        // A short-lived item on every thread, reclaimed by the ticks alone.
        let mut c = server.connect();
        for thread in 0..2 {
            let key = key_on_thread(thread, 500);
            c.expect(&format!("set {key} 0 2 1\r\nx\r\n"), "STORED\r\n");
        }
        server.advance(Duration::from_secs(3));
        server.wait_for_ticks();
        assert_eq!(server.wait_for_stat("curr_items", survivors), survivors);
        every_core_goes_on(&server, 100);
        assert_eq!(server.stat_u64("", "tick_panics"), 1);
    }

    /// `slabs reassign` whose page move panics: answered `SERVER_ERROR
    /// internal error`, the shard reset, counted; the next reassign moves
    /// a page as usual.
    fn a_panic_in_the_page_mover_is_contained(server) {
        // Values of 90 KB, ten to a page: every shard gets several pages.
        let mut c = server.connect();
        let value = "v".repeat(90_000);
        for i in 0..100 {
            c.expect(&format!("set big:{i} 0 0 90000\r\n{value}\r\n"), "STORED\r\n");
        }
        let slabs = c.stats("slabs");
        let class = slabs
            .iter()
            .find(|(k, v)| k.ends_with(":used_chunks") && v != "0")
            .map(|(k, _)| k.split(':').next().unwrap().to_string())
            .unwrap();
        c.expect("debug_fault page_move\r\n", "OK\r\n");
        c.expect(&format!("slabs reassign {class} 1\r\n"), "SERVER_ERROR internal error\r\n");
        assert_eq!(server.stat_u64("", "request_panics"), 1);
        c.expect(&format!("slabs reassign {class} 1\r\n"), "OK\r\n");
        let keys: Vec<String> = (0..100).map(|i| format!("big:{i}")).collect();
        assert!(missing(&server, &keys).len() < keys.len());
        every_core_goes_on(&server, 100);
    }

    /// A metadump whose step on one shard panics: the dump still ends with
    /// `END`, listing only stored keys; that shard is reset; the next dump
    /// lists exactly the keys left.
    fn a_panic_in_a_metadump_step_is_contained(server) {
        let keys = store_keys(&server, 60);
        let mut c = server.connect();
        c.expect("debug_fault metadump\r\n", "OK\r\n");
        let listed = metadump(&mut c);
        assert!(listed.iter().all(|k| keys.contains(k)), "{listed:?}");
        assert_eq!(server.stat_u64("", "request_panics"), 1);
        let emptied = exactly_one_shard_emptied(&server, &keys);
        let left: BTreeSet<String> = keys.iter().filter(|k| shard_of(k) != emptied).cloned().collect();
        assert_eq!(metadump(&mut c), left);
        every_core_goes_on(&server, 100);
    }

    /// `stats cachedump` whose visit of one shard panics: still answered,
    /// ending `END`; the shard reset; the next cachedump lists the rest.
    fn a_panic_in_a_cachedump_is_contained(server) {
        let keys = store_keys(&server, 60);
        let mut c = server.connect();
        c.expect("debug_fault cachedump\r\n", "OK\r\n");
        c.send(b"stats cachedump 1 0\r\n");
        let first = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
        assert_eq!(server.stat_u64("", "request_panics"), 1);
        let emptied = exactly_one_shard_emptied(&server, &keys);
        c.send(b"stats cachedump 1 0\r\n");
        let second = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
        let items = second.lines().filter(|l| l.starts_with("ITEM ")).count();
        let left = keys.iter().filter(|k| shard_of(k) != emptied).count();
        assert_eq!(items, left, "{second}");
        assert!(first.lines().filter(|l| l.starts_with("ITEM ")).count() <= keys.len());
        every_core_goes_on(&server, 100);
    }
}

/// The keys `lru_crawler metadump all` lists over `c`.
fn metadump(c: &mut Raw) -> BTreeSet<String> {
    c.send(b"lru_crawler metadump all\r\n");
    let dump = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
    dump.lines()
        .filter_map(|line| line.strip_prefix("key="))
        .map(|rest| rest.split(' ').next().unwrap().replace("%3A", ":"))
        .collect()
}

per_runtime! {
    tls_handshake => super::a_panic_in_a_tls_handshake_closes_only_that_connection;
    login => super::a_panic_in_a_login_closes_only_that_connection;
}

/// A TLS handshake that panics: that client gets nothing and is closed,
/// the panic is counted, the next TLS client is served.
fn a_panic_in_a_tls_handshake_closes_only_that_connection(runtime: RuntimeKind) {
    let pki = Pki::new("contained");
    let server = TestServer::with(runtime, |config| {
        config.tls = Some(pki.server(false, Some("127.0.0.1:0".parse().unwrap())));
    });
    let tls = server.tls_addr.unwrap();
    server
        .connect()
        .expect("debug_fault tls_handshake\r\n", "OK\r\n");
    if let Ok(mut client) = TlsClient::connect(tls, pki.client(Identity::Anonymous)) {
        let _ = std::io::Write::write_all(&mut client.stream, b"version\r\n");
        let (got, _) = client.read_to_end();
        assert!(got.is_empty(), "the panicked handshake answered {got:?}");
    }
    eventually("the panic is counted", || {
        server.stat_u64("", "request_panics") == 1
    });
    let mut client = TlsClient::connect(tls, pki.client(Identity::Anonymous)).unwrap();
    client.expect(
        "set k 0 0 1\r\nv\r\nget k\r\n",
        "STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n",
    );
    every_core_goes_on(&server, 100);
}

/// A login that panics: that client is closed, the panic counted; other
/// clients log in and are served.
fn a_panic_in_a_login_closes_only_that_connection(runtime: RuntimeKind) {
    const LOGIN: &str = "set auth 0 0 12\r\nalice secret\r\n";
    let dir = Scratch::new("contained-users");
    let users = dir.write("users", "alice:secret\n");
    let mut server = TestServer::with(runtime, |config| config.auth_file = Some(users));
    server.login = Some(LOGIN.to_string());
    connect(&server).expect("debug_fault auth\r\n", "OK\r\n");
    let mut victim = server.connect();
    victim.send(LOGIN.as_bytes());
    assert_eq!(victim.read_to_close(), "");
    // The unwinding closes the socket before the panic is caught and
    // counted: on another worker the client can read the close first.
    eventually("the panic is counted", || {
        server.stat_u64("", "request_panics") == 1
    });
    connect(&server).expect(
        "version\r\n",
        &format!("VERSION 1.6.18-corecache-{}\r\n", env!("CARGO_PKG_VERSION")),
    );
    every_core_goes_on(&server, 100);
}
