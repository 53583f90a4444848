//! `--port-per-core`: thread `i` also listens on `BASE + i` and keeps every
//! key sent there, whatever its hash (docs/per-core-ports.md). Raw protocol
//! over real TCP: where keys land, what the shared port sees of them, that
//! nothing is forwarded, and that admin commands on any port act on the
//! whole process. The real clients (pymemcache's `HashClient`, nutcracker,
//! libmemcached's tools) are in `interop.rs`.

mod common;

use common::{Raw, TestServer, key_on_thread, owner};
use corecache::config::RuntimeKind;
use std::process::Command;

/// Two threads, four shards, each thread with its own port.
fn server() -> TestServer {
    TestServer::per_core_with(2, |_| {})
}

fn set(c: &mut Raw, key: &str, value: &str) {
    c.expect(
        &format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()),
        "STORED\r\n",
    );
}

fn hit(key: &str, value: &str) -> String {
    format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len())
}

#[test]
fn each_port_is_served_by_its_own_thread() {
    let server = server();
    assert_eq!(server.per_core.len(), 2);
    assert_eq!(server.per_core[1].port(), server.per_core[0].port() + 1);
    for (thread, addr) in server.per_core.iter().enumerate() {
        for _ in 0..4 {
            assert_eq!(
                Raw::connect(*addr).thread(),
                thread,
                "a connection to {addr}"
            );
        }
        let port = server.stat_u64("threads", &format!("thread:{thread}:port"));
        assert_eq!(port, u64::from(addr.port()));
    }
    let base = server.stat_u64("settings", "port_per_core");
    assert_eq!(base, u64::from(server.per_core[0].port()));
}

/// A key sent to thread 0's port is kept on thread 0 even when its hash
/// names thread 1: nothing is forwarded, thread 1's port does not see it,
/// and neither does the shared port, which routes by the hash (to thread
/// 1). A set through the shared port lands on thread 1, beside thread 0's
/// copy: two ports of two threads are two servers to a client.
#[test]
fn a_key_sent_to_a_threads_port_stays_on_that_thread() {
    let server = server();
    let key = key_on_thread(1, 0);
    let mut port0 = Raw::connect(server.per_core[0]);
    let mut port1 = Raw::connect(server.per_core[1]);
    set(&mut port0, &key, "on-zero");
    port0.expect(&format!("get {key}\r\n"), &hit(&key, "on-zero"));
    port1.expect(&format!("get {key}\r\n"), "END\r\n");
    let mut shared = server.connect_on(1);
    shared.expect(&format!("get {key}\r\n"), "END\r\n");
    set(&mut shared, &key, "hashed");
    port1.expect(&format!("get {key}\r\n"), &hit(&key, "hashed"));
    port0.expect(&format!("get {key}\r\n"), &hit(&key, "on-zero"));
    assert_eq!(server.stat_u64("", "curr_items"), 2);
    // Deleting it on one port leaves the other thread's copy.
    port0.expect(&format!("delete {key}\r\n"), "DELETED\r\n");
    port1.expect(&format!("get {key}\r\n"), &hit(&key, "hashed"));
    server.assert_forwarded_exactly(0);
}

/// A key whose hash names the thread is in one place on it, whichever
/// port it came by: its own thread's port and the shared port agree.
#[test]
fn a_key_of_the_threads_own_hash_is_one_item_by_either_port() {
    let server = server();
    for thread in 0..2 {
        let mut mine = Raw::connect(server.per_core[thread]);
        let mut shared = server.connect_on(thread);
        for seed in [0, 100, 200, 300] {
            let key = key_on_thread(thread, seed);
            set(&mut mine, &key, "by-port");
            shared.expect(&format!("get {key}\r\n"), &hit(&key, "by-port"));
            set(&mut shared, &key, "by-hash");
            mine.expect(&format!("get {key}\r\n"), &hit(&key, "by-hash"));
        }
    }
    assert_eq!(server.stat_u64("", "curr_items"), 8);
    server.assert_forwarded_exactly(0);
}

/// Many keys of both hashes on each port, written and read back in one
/// pipelined batch and in multi-gets, over every kind of keyed command:
/// all run on the port's thread, none is forwarded, every value is right.
#[test]
fn every_keyed_command_runs_on_the_ports_thread() {
    let server = server();
    let keys: Vec<String> = (0..200).map(|i| format!("pc:{i}")).collect();
    assert!(keys.iter().any(|k| owner(k) == 0) && keys.iter().any(|k| owner(k) == 1));
    for (thread, addr) in server.per_core.iter().enumerate() {
        let mut c = Raw::connect(*addr);
        let mut batch = String::new();
        let mut expected = String::new();
        for key in &keys {
            let v = format!("{key}@{thread}");
            batch += &format!("set {key} 0 0 {}\r\n{v}\r\n", v.len());
            expected += "STORED\r\n";
        }
        c.send(batch.as_bytes());
        assert_eq!(
            String::from_utf8(c.read_exact(expected.len())).unwrap(),
            expected
        );
        // A multi-get of keys of both hashes, with misses.
        let asked: Vec<&str> = keys
            .iter()
            .take(40)
            .flat_map(|k| [k.as_str(), "pc:absent"])
            .collect();
        c.send(format!("get {}\r\n", asked.join(" ")).as_bytes());
        let mut want = String::new();
        for key in keys.iter().take(40) {
            let v = format!("{key}@{thread}");
            want += &format!("VALUE {key} 0 {}\r\n{v}\r\n", v.len());
        }
        want += "END\r\n";
        assert_eq!(String::from_utf8(c.read_until(b"END\r\n")).unwrap(), want);
        // Arithmetic, append, touch, meta and CAS.
        c.expect("set pc:n 0 0 1\r\n5\r\n", "STORED\r\n");
        c.expect("incr pc:n 10\r\n", "15\r\n");
        c.expect("append pc:0 0 0 1\r\n!\r\n", "STORED\r\n");
        c.expect("touch pc:1 100\r\n", "TOUCHED\r\n");
        let appended = format!("pc:0@{thread}!");
        c.expect(
            "mg pc:0 v\r\n",
            &format!("VA {}\r\n{appended}\r\n", appended.len()),
        );
        c.expect("ms pc:m 2 T0\r\nhi\r\n", "HD\r\n");
        c.expect("mg pc:m v\r\n", "VA 2\r\nhi\r\n");
        c.expect("md pc:m\r\n", "HD\r\n");
        c.expect("mg pc:m v\r\n", "EN\r\n");
    }
    // Each thread holds its own copy of every key: 2 x (200 + pc:n).
    assert_eq!(server.stat_u64("", "curr_items"), 2 * 201);
    server.assert_forwarded_exactly(0);
    for thread in 0..2 {
        let cmds = server.stat_u64("threads", &format!("thread:{thread}:cmd_total"));
        assert!(cmds >= 200, "thread {thread} ran {cmds} commands");
    }
}

/// `stats` on a per-core port reports the whole process, and `flush_all`
/// on one flushes every thread.
#[test]
fn admin_commands_on_a_port_act_on_the_whole_process() {
    let server = server();
    let mut port0 = Raw::connect(server.per_core[0]);
    let mut port1 = Raw::connect(server.per_core[1]);
    for i in 0..10 {
        set(&mut port0, &format!("a:{i}"), "x");
        set(&mut port1, &format!("b:{i}"), "y");
    }
    for c in [&mut port0, &mut port1] {
        let stats = c.stats("");
        let items = stats.iter().find(|(k, _)| k == "curr_items").unwrap();
        assert_eq!(items.1, "20");
    }
    port1.expect("flush_all\r\n", "OK\r\n");
    port0.expect("get a:0 a:9\r\n", "END\r\n");
    port1.expect("get b:0 b:9\r\n", "END\r\n");
    // Flushed items leave the count as each shard sweeps them.
    assert_eq!(server.wait_for_stat("curr_items", 0), 0);
}

/// `stats conns` names the per-core port a connection came in on.
#[test]
fn stats_conns_names_the_per_core_port() {
    let server = server();
    let mut c = Raw::connect(server.per_core[1]);
    let mine = format!("tcp:{}", c.stream.local_addr().unwrap());
    let conns = c.stats("conns");
    let (key, _) = conns
        .iter()
        .find(|(k, v)| k.ends_with(":addr") && *v == mine)
        .unwrap();
    let listen = key.replace(":addr", ":listen_addr");
    let (_, addr) = conns.iter().find(|(k, _)| *k == listen).unwrap();
    assert_eq!(*addr, format!("tcp:{}", server.per_core[1]));
}

/// The binary refuses the flag under work-stealing, naming it, before it
/// takes any port.
#[test]
fn work_stealing_refuses_per_core_ports() {
    let out = Command::new(env!("CARGO_BIN_EXE_corecache"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--runtime",
            "work-stealing",
            "--port-per-core",
            "7100",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--port-per-core: needs --runtime thread-per-core"),
        "{stderr}"
    );
    // A configuration built in code that sets it anyway gets no ports.
    let server = TestServer::with(RuntimeKind::WorkStealing, |config| {
        config.port_per_core = 7100;
    });
    assert!(server.per_core.is_empty());
    assert_eq!(server.stat_u64("settings", "port_per_core"), 0);
}

/// A taken port stops start-up, naming the port and its thread.
#[test]
fn a_taken_port_stops_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let started = TestServer::try_with(RuntimeKind::ThreadPerCore, |config| {
        config.port_per_core = port;
    });
    let err = started
        .err()
        .expect("the server must not start")
        .to_string();
    assert_eq!(
        err,
        format!("--port-per-core: port {port} (thread 0): Address already in use (os error 98)")
    );
}
