//! The shard-aware port (`--shard-aware-port`) over real TCP: a client
//! that binds its local port before connecting is served by core
//! `port % threads`, keys sent to their owner's connection are never
//! forwarded, admission counts a handed-off connection once, and
//! `stats settings` publishes the rule a client routes by.

mod common;

use common::{Raw, TestServer, connect_to};
use corecache::config::RuntimeKind;
use corecache::server::StartError;
use loadgen::shard::{ShardMap, first_port};

fn stat<'a>(stats: &'a [(String, String)], name: &str) -> &'a str {
    stats
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
        .1
        .as_str()
}

/// Every connection lands on the core its client port names, whichever
/// core's listener the kernel gave it to, and is admitted once.
#[test]
fn each_connection_is_served_by_the_core_its_port_names() {
    for threads in [2, 3] {
        let (_server, shard_aware) =
            TestServer::shard_aware(RuntimeKind::ThreadPerCore, threads, 1024);
        let mut next = first_port();
        let mut conns = Vec::new();
        for round in 0..4 {
            for core in 0..threads {
                let mut c = connect_to(shard_aware, threads, core, &mut next);
                assert_eq!(c.thread(), core, "round {round}, {threads} threads");
                conns.push(c);
            }
        }
        // `stats conns` names the port each was accepted on.
        let listed = conns[0].stats("conns");
        let shard_port = format!("tcp:{shard_aware}");
        let on_port = listed
            .iter()
            .filter(|(k, v)| k.ends_with(":listen_addr") && *v == shard_port)
            .count();
        assert_eq!(on_port, conns.len(), "{listed:?}");
        let n = conns.len() as u64;
        let stats = conns[0].stats("");
        assert_eq!(stat(&stats, "curr_connections"), n.to_string());
        assert_eq!(stat(&stats, "total_connections"), n.to_string());
        assert_eq!(stat(&stats, "shard_aware_refused"), "0");
        let handed: u64 = stat(&stats, "shard_aware_handoffs").parse().unwrap();
        assert!(handed <= n, "{handed} handoffs of {n} connections");
        let per_thread = conns[0].stats("threads");
        for core in 0..threads {
            let name = format!("thread:{core}:curr_connections");
            assert_eq!(stat(&per_thread, &name), "4", "{per_thread:?}");
        }
        // And they serve: a key set on one reads back on another.
        conns[0].expect("set k 0 0 1\r\nv\r\n", "STORED\r\n");
        conns[1].expect("get k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n");
    }
}

/// A client that reads the rule from `stats settings` and sends each key
/// on its owner's connection causes no forwarding at all; the same keys
/// through the listen port, or through the wrong core's connection, are
/// forwarded and still answered right.
#[test]
fn keys_sent_to_their_owner_are_not_forwarded() {
    let (server, shard_aware) = TestServer::shard_aware(RuntimeKind::ThreadPerCore, 2, 1024);
    let map = ShardMap::fetch(server.addr).unwrap();
    assert_eq!(
        map,
        ShardMap {
            threads: 2,
            shards: 4,
            port: shard_aware.port()
        }
    );
    let mut next = first_port();
    let mut by_core: Vec<Raw> = (0..2)
        .map(|core| connect_to(shard_aware, 2, core, &mut next))
        .collect();
    for (core, c) in by_core.iter_mut().enumerate() {
        assert_eq!(c.thread(), core);
    }
    let mut keys: Vec<Vec<String>> = vec![Vec::new(); 2];
    for i in 0..200 {
        let key = format!("key:{i}");
        // The client's rule and the server's router agree.
        assert_eq!(map.owner(key.as_bytes()), common::owner(&key));
        keys[map.owner(key.as_bytes())].push(key);
    }
    for (core, c) in by_core.iter_mut().enumerate() {
        let keys = &keys[core];
        assert!(keys.len() > 50, "{} keys on core {core}", keys.len());
        // One pipelined burst of sets, then one multi-get of them all.
        let sets: String = keys
            .iter()
            .map(|k| format!("set {k} 0 0 {}\r\n{k}\r\n", k.len()))
            .collect();
        c.send(sets.as_bytes());
        let stored = c.read_until_count(b"STORED\r\n", keys.len());
        assert_eq!(stored, "STORED\r\n".repeat(keys.len()).as_bytes());
        let values: String = keys
            .iter()
            .map(|k| format!("VALUE {k} 0 {}\r\n{k}\r\n", k.len()))
            .collect();
        c.expect(
            &format!("get {}\r\n", keys.join(" ")),
            &(values + "END\r\n"),
        );
    }
    server.assert_forwarded_exactly(0);
    // The wrong core's connection still gets the right answer, forwarded.
    let other = &keys[1][0];
    by_core[0].expect(
        &format!("get {other}\r\n"),
        &format!("VALUE {other} 0 {0}\r\n{other}\r\nEND\r\n", other.len()),
    );
    server.assert_forwarded_exactly(1);
    // So does an ordinary connection on core 0.
    let mut plain = server.connect_on(0);
    let mine = &keys[0][0];
    plain.expect(
        &format!("get {other} {mine}\r\n"),
        &format!(
            "VALUE {other} 0 {}\r\n{other}\r\nVALUE {mine} 0 {}\r\n{mine}\r\nEND\r\n",
            other.len(),
            mine.len()
        ),
    );
    server.assert_forwarded_exactly(2);
}

/// `stats settings` publishes exactly the rule docs/shard-aware.md
/// describes, and port 0 when the port is off.
#[test]
fn stats_settings_publish_the_routing_rule() {
    let (server, shard_aware) = TestServer::shard_aware(RuntimeKind::ThreadPerCore, 2, 1024);
    let settings = server.connect().stats("settings");
    for (name, value) in [
        ("num_threads", "2"),
        ("shard_aware_port", &shard_aware.port().to_string()),
        ("shard_hash", "xxh3_64"),
        ("shard_count", "4"),
        ("shard_select", "hi32_mul"),
        ("shard_owner", "modulo"),
    ] {
        assert_eq!(stat(&settings, name), value, "{name}");
    }
    let off = TestServer::start(RuntimeKind::ThreadPerCore);
    let settings = off.connect().stats("settings");
    assert_eq!(stat(&settings, "shard_aware_port"), "0");
    let e = ShardMap::fetch(off.addr).unwrap_err().to_string();
    assert!(e.contains("--shard-aware-port"), "{e}");
}

/// Work-stealing: any worker serves any key, so the port accepts like
/// the listen port, hands nothing over, and says no core owns a shard.
#[test]
fn work_stealing_serves_the_port_like_the_listen_port() {
    let (server, shard_aware) = TestServer::shard_aware(RuntimeKind::WorkStealing, 2, 1024);
    let mut next = first_port();
    let mut a = connect_to(shard_aware, 2, 0, &mut next);
    let mut b = connect_to(shard_aware, 2, 1, &mut next);
    a.expect("set k 0 0 1\r\nv\r\n", "STORED\r\n");
    b.expect("get k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n");
    let stats = a.stats("");
    assert_eq!(stat(&stats, "total_connections"), "2");
    assert_eq!(stat(&stats, "shard_aware_handoffs"), "0");
    assert_eq!(stat(&stats, "forwarded_requests"), "0");
    let settings = a.stats("settings");
    assert_eq!(stat(&settings, "shard_owner"), "any");
    let e = ShardMap::fetch(server.addr).unwrap_err().to_string();
    assert!(e.contains("shard_owner"), "{e}");
}

/// `--max-connections` counts a connection once, by the core that serves
/// it: the limit refuses the next one with memcached's error, on the
/// shard-aware port too.
#[test]
fn admission_counts_a_handed_off_connection_once() {
    let (_server, shard_aware) = TestServer::shard_aware(RuntimeKind::ThreadPerCore, 2, 3);
    let mut next = first_port();
    let mut open: Vec<Raw> = (0..3)
        .map(|_| connect_to(shard_aware, 2, 1, &mut next))
        .collect();
    for c in &mut open {
        assert_eq!(c.thread(), 1);
    }
    let mut refused = connect_to(shard_aware, 2, 0, &mut next);
    assert_eq!(
        refused.read_to_close(),
        "ERROR Too many open connections\r\n"
    );
    let stats = open[0].stats("");
    assert_eq!(stat(&stats, "curr_connections"), "3");
    assert_eq!(stat(&stats, "total_connections"), "3");
    assert_eq!(stat(&stats, "rejected_connections"), "1");
}

/// A shard-aware port that is taken stops start-up with an error that
/// names the flag.
#[test]
fn a_taken_shard_aware_port_stops_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let started = TestServer::try_with(RuntimeKind::ThreadPerCore, |config| {
        config.shard_aware_port = port;
    });
    let Err(e) = started else {
        panic!("started on a taken shard-aware port");
    };
    assert!(matches!(e, StartError::ShardAwareBind { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("--shard-aware-port {port}: ")),
        "{e}"
    );
}
