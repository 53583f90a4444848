//! Faults, over real TCP: clients that leave while their requests are on
//! another core, a panic while handling a request, an owner core that
//! cannot keep up, and idle clients (`--idle-timeout`).
//!
//! A core that cannot keep up is made with the debug-only `debug_hold
//! <key>`, which stops the thread owning `key` dead until a
//! `debug_release` from a connection of another thread: deterministic,
//! where a CPU hog would race the scheduler.

mod common;

use common::{Raw, TestServer, key_on_thread, proc_status_bytes, shard_of, spawn_binary};
use corecache::config::RuntimeKind;
use std::io::{Read, Write};
use std::time::Duration;

/// One field of `stats threads`, read over `c` (a connection of a thread
/// that is not held: `stats threads` visits no other core).
fn thread_stat(c: &mut Raw, thread: usize, name: &str) -> u64 {
    let name = format!("thread:{thread}:{name}");
    let stats = c.stats("threads");
    let (_, value) = stats
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no {name} in {stats:?}"));
    value.parse().unwrap()
}

/// Polls `stats threads` over `c` until `thread`'s `name` equals `value`.
fn wait_thread_stat(c: &mut Raw, thread: usize, name: &str, value: u64) {
    common::eventually(&format!("thread:{thread}:{name} == {value}"), || {
        thread_stat(c, thread, name) == value
    });
}

/// A pipelined burst for the other core: `set` of `marker`, then `gets`
/// gets of the first 64 keys thread 1 owns, round and round.
fn burst(marker: &str, gets: usize) -> Vec<u8> {
    let keys: Vec<String> = (0..64).map(|i| key_on_thread(1, i)).collect();
    let mut burst = format!("set {marker} 0 0 4\r\nmark\r\n").into_bytes();
    for key in keys.iter().cycle().take(gets) {
        burst.extend_from_slice(format!("get {key}\r\n").as_bytes());
    }
    burst
}

both_runtimes! {
    /// Many clients each send a large pipelined burst of keys owned by
    /// the other core and close without reading a byte. Nothing panics,
    /// every connection is closed and forgotten, every forward message
    /// sent got its reply (none in flight, no connection waiting), and
    /// the server goes on answering.
    fn clients_that_leave_mid_pipeline_leave_nothing_behind(server) {
        const CLIENTS: usize = 40;
        let mut setup = server.connect();
        for i in 0..64 {
            let key = key_on_thread(1, i);
            setup.expect(&format!("set {key} 0 0 2\r\nok\r\n"), "STORED\r\n");
        }
        drop(setup);
        let bursts: Vec<Vec<u8>> = (0..CLIENTS).map(|i| burst(&format!("left:{i}"), 2000)).collect();
        std::thread::scope(|scope| {
            for bytes in &bursts {
                scope.spawn(|| {
                    let mut c = match server.runtime {
                        // Every key of the burst is then forwarded.
                        RuntimeKind::ThreadPerCore => server.connect_on(0),
                        RuntimeKind::WorkStealing => server.connect(),
                    };
                    c.send(bytes);
                    // Dropped here, unread.
                });
            }
        });
        // Only the connection asking is left.
        assert_eq!(server.wait_for_stat("curr_connections", 1), 1);
        assert_eq!(server.wait_for_stat("forward_inflight", 0), 0);
        assert_eq!(server.stat_u64("", "forward_waiting"), 0);
        assert_eq!(server.stat_u64("", "request_panics"), 0);
        let mut c = server.connect();
        let threads = c.stats("threads");
        let sum = |suffix: &str| -> u64 {
            threads
                .iter()
                .filter(|(n, _)| n.ends_with(suffix))
                .map(|(_, v)| v.parse::<u64>().unwrap())
                .sum()
        };
        assert_eq!(sum(":forward_messages"), sum(":forward_replies"));
        // The connections waited for their replies: none came back to a
        // connection that was gone.
        assert_eq!(sum(":forward_orphans"), 0);
        if server.runtime == RuntimeKind::ThreadPerCore {
            assert!(sum(":forward_messages") > 0, "nothing was forwarded");
        }
        let key = key_on_thread(1, 3);
        c.expect(&format!("get {key}\r\n"), &format!("VALUE {key} 0 2\r\nok\r\nEND\r\n"));
    }

    /// A panic on a shard of the connection's own thread (a local op in
    /// thread-per-core): the request is answered `SERVER_ERROR`, its
    /// connection closed; `stats` counts it, on the thread it happened;
    /// exactly that one shard is emptied, so `curr_items` is exactly the
    /// keys of the other shards; connections open at the time, on both
    /// threads, are unaffected; the reset shard takes writes again.
    fn a_local_panic_is_contained_and_its_shard_is_consistent(server) {
        let victim = key_on_thread(1, 0);
        let keys: Vec<String> = (0..60).map(|i| format!("key:{i}")).collect();
        let mut setup = server.connect();
        for key in &keys {
            setup.expect(&format!("set {key} 0 0 1\r\nv\r\n"), "STORED\r\n");
        }
        let survivors = keys.iter().filter(|k| shard_of(k) != shard_of(&victim)).count();
        assert!(survivors < keys.len(), "some keys share the victim's shard");
        let (mut bystanders, mut client) = match server.runtime {
            RuntimeKind::ThreadPerCore => (
                vec![server.connect_on(0), server.connect_on(1)],
                server.connect_on(1),
            ),
            RuntimeKind::WorkStealing => {
                (vec![server.connect(), server.connect()], server.connect())
            }
        };
        client.send(format!("set {victim} 0 0 1\r\nw\r\ndebug_panic {victim}\r\nget {victim}\r\n").as_bytes());
        assert_eq!(
            client.read_to_close(),
            "STORED\r\nSERVER_ERROR internal error\r\nEND\r\n",
        );
        assert_eq!(server.stat_u64("", "request_panics"), 1);
        if server.runtime == RuntimeKind::ThreadPerCore {
            assert_eq!(server.stat_u64("threads", "thread:1:request_panics"), 1);
            assert_eq!(server.stat_u64("threads", "thread:0:request_panics"), 0);
        }
        assert_eq!(server.stat_u64("", "curr_items"), survivors as u64);
        for c in &mut bystanders {
            for key in &keys {
                let expected = if shard_of(key) == shard_of(&victim) {
                    "END\r\n".to_string()
                } else {
                    format!("VALUE {key} 0 1\r\nv\r\nEND\r\n")
                };
                c.expect(&format!("get {key}\r\n"), &expected);
            }
        }
        bystanders[0].expect(
            &format!("set {victim} 0 0 1\r\nx\r\nget {victim}\r\n"),
            &format!("STORED\r\nVALUE {victim} 0 1\r\nx\r\nEND\r\n"),
        );
        assert_eq!(server.stat_u64("", "curr_items"), survivors as u64 + 1);
        // Only the panicking client's connection went away: `setup`, the
        // bystanders and the one asking are open.
        assert_eq!(server.wait_for_stat("curr_connections", 4), 4);
    }

    /// `--idle-timeout 10s`: a client that has sent nothing for 9 s of the
    /// (held) server clock is left alone; one silent for 10 s is closed and
    /// counted in `idle_kicks`, listed (as memcached lists it) only while
    /// the timeout is on. Clients that keep talking stay.
    fn an_idle_client_is_closed_and_counted(server) {
        let runtime = server.runtime;
        drop(server);
        let server = TestServer::with(runtime, |config| {
            config.idle_timeout = Duration::from_secs(10);
        });
        assert_eq!(server.stat("settings", "idle_timeout"), "10");
        let mut idle = server.connect();
        let mut talker = server.connect();
        idle.expect("version\r\n", corecache_version());
        server.advance(Duration::from_secs(9));
        server.wait_for_ticks();
        talker.expect("version\r\n", corecache_version());
        idle.expect("version\r\n", corecache_version());
        assert_eq!(server.stat_u64("", "idle_kicks"), 0);
        server.advance(Duration::from_secs(6));
        server.wait_for_ticks();
        // Six seconds since either spoke: both still open.
        talker.expect("version\r\n", corecache_version());
        server.advance(Duration::from_secs(4));
        // Ten since `idle` last spoke, four since `talker` did.
        assert!(idle.is_closed(), "the idle client is closed");
        assert_eq!(server.stat_u64("", "idle_kicks"), 1);
        talker.expect("version\r\n", corecache_version());
        assert_eq!(server.stat_u64("", "idle_kicks"), 1);
    }

    /// The default is no idle timeout: `idle_timeout 0` in `stats
    /// settings`, no `idle_kicks` in `stats`, and a client silent for a
    /// day of server time is still served.
    fn idle_clients_are_kept_by_default(server) {
        assert_eq!(server.stat("settings", "idle_timeout"), "0");
        let stats = server.connect().stats("");
        assert!(stats.iter().all(|(name, _)| name != "idle_kicks"));
        let mut c = server.connect();
        c.expect("version\r\n", corecache_version());
        server.advance(Duration::from_secs(86_400));
        server.wait_for_ticks();
        c.expect("version\r\n", corecache_version());
    }
}

fn corecache_version() -> &'static str {
    concat!(
        "VERSION 1.6.18-corecache-",
        env!("CARGO_PKG_VERSION"),
        "\r\n"
    )
}

/// Clients whose requests wait on a core that has stopped (held), and
/// who close without reading: their connections still wait for the
/// replies and take them (no reply is orphaned), the owner runs their
/// work once it can (the first write of each burst is stored), and then
/// nothing is in flight, nothing waits and the connections are gone.
#[test]
fn clients_that_leave_while_their_requests_wait_on_a_held_core_leave_nothing_behind() {
    const CLIENTS: usize = 20;
    let server = TestServer::start(RuntimeKind::ThreadPerCore);
    let mut control = server.connect_on(0);
    let mut holder = server.connect_on(0);
    let mut clients: Vec<Raw> = (0..CLIENTS).map(|_| server.connect_on(0)).collect();
    holder.send(format!("debug_hold {}\r\n", key_on_thread(1, 0)).as_bytes());
    wait_thread_stat(&mut control, 0, "forward_waiting", 1);
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&burst(&key_on_thread(1, 1000 + i * 100), 3000));
    }
    drop(clients);
    // Every client's first read is out to the held core, waiting.
    wait_thread_stat(&mut control, 0, "forward_waiting", CLIENTS as u64 + 1);
    assert!(thread_stat(&mut control, 0, "forward_inflight") >= 1);
    control.expect("debug_release\r\n", "OK\r\n");
    assert_eq!(holder.read_exact(4), b"OK\r\n");
    wait_thread_stat(&mut control, 0, "forward_waiting", 0);
    wait_thread_stat(&mut control, 0, "forward_inflight", 0);
    assert_eq!(thread_stat(&mut control, 0, "forward_orphans"), 0);
    assert_eq!(server.wait_for_stat("curr_connections", 3), 3);
    assert_eq!(server.stat_u64("", "request_panics"), 0);
    for i in 0..CLIENTS {
        let marker = key_on_thread(1, 1000 + i * 100);
        control.expect(
            &format!("get {marker}\r\n"),
            &format!("VALUE {marker} 0 4\r\nmark\r\nEND\r\n"),
        );
    }
}

/// A thread whose connection waits on a held core spins for the reply
/// (`--spin`, 50 µs), catches nothing, counts the miss and sleeps; with
/// `--spin 0` it sleeps without spinning. No message can reach it while
/// the owner is held, so no spin is counted as a hit. The reply comes once
/// the owner runs. (A `version` goes first in the same read, so the
/// connection has a reply of its own to send and the owner does not
/// answer the client itself: its thread really waits for the reply.)
#[test]
fn a_spin_for_a_held_core_runs_out_and_is_counted_and_spin_0_never_spins() {
    for spin in [Duration::from_micros(50), Duration::ZERO] {
        let server = TestServer::with(RuntimeKind::ThreadPerCore, |c| c.spin = spin);
        let mut control = server.connect_on(0);
        let mut holder = server.connect_on(0);
        holder.send(format!("version\r\ndebug_hold {}\r\n", key_on_thread(1, 0)).as_bytes());
        wait_thread_stat(&mut control, 0, "forward_waiting", 1);
        if spin.is_zero() {
            // Each stats request wakes thread 0; each time it sleeps again.
            let slept = thread_stat(&mut control, 0, "core_sleeps");
            common::eventually("thread 0 sleeps twice more", || {
                thread_stat(&mut control, 0, "core_sleeps") >= slept + 2
            });
            assert_eq!(thread_stat(&mut control, 0, "spin_misses"), 0);
        } else {
            common::eventually("thread 0's spin runs out", || {
                thread_stat(&mut control, 0, "spin_misses") >= 1
            });
        }
        assert_eq!(thread_stat(&mut control, 0, "spin_hits"), 0);
        control.expect("debug_release\r\n", "OK\r\n");
        let version = format!("VERSION 1.6.18-corecache-{}\r\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(
            holder.read_exact(version.len() + 4),
            format!("{version}OK\r\n").as_bytes()
        );
        // `stats` adds up the threads' counts.
        let per_thread: u64 = (0..2)
            .map(|t| thread_stat(&mut control, t, "spin_misses"))
            .sum();
        assert_eq!(server.stat_u64("", "spin_misses"), per_thread);
    }
}

/// An owner core that cannot keep up (held dead) while 16 clients on the
/// other core pipeline 2 MiB each of gets it owns: bounded queues push
/// back. Every client ends up waiting with one read's worth out (the
/// server stops reading them, the kernel's socket buffers hold the rest);
/// the server's RSS grows by less than 512 KiB per client (one read of at
/// most 32 KiB, and the plan, batch and replies made from it) although
/// each pushed 2 MiB; the owner's mailbox never held more messages than
/// there were waiting connections (one forward or control per waiting
/// connection, `forward::capacity`); and once the core runs again every
/// reply is correct, in order.
#[test]
fn a_held_owner_core_pushes_back_and_queues_and_memory_stay_bounded() {
    const CLIENTS: usize = 16;
    const PUSHED: usize = 2 << 20;
    let (child, addr) = spawn_binary(&[
        "--threads",
        "2",
        "--shards",
        "2",
        "--no-pin",
        "--spin",
        "0",
        "-c",
        "64",
    ]);
    let pid = child.0.id();
    // The binary's router: 2 threads, 2 shards.
    let router = corecache::server::Router::new(2, 2);
    let on_thread = |thread: usize, seed: usize| -> String {
        (seed..)
            .map(|i| format!("{}:{i}", "k".repeat(200)))
            .find(|k| {
                router.owner(router.shard(corecache::server::Router::hash(k.as_bytes()))) == thread
            })
            .unwrap()
    };
    let connect_on_0 = || loop {
        let mut c = Raw::connect(addr);
        if c.thread() == 0 {
            return c;
        }
    };
    let mut control = connect_on_0();
    let keys: Vec<String> = (0..50).map(|i| on_thread(1, i * 1000)).collect();
    let mut request = Vec::new();
    let mut reply = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        control.expect(&format!("set {key} {i} 0 3\r\nv{i:02}\r\n"), "STORED\r\n");
    }
    while request.len() < PUSHED {
        for (i, key) in keys.iter().enumerate() {
            request.extend_from_slice(format!("get {key}\r\n").as_bytes());
            reply.extend_from_slice(format!("VALUE {key} {i} 3\r\nv{i:02}\r\nEND\r\n").as_bytes());
        }
    }
    let mut clients: Vec<Raw> = (0..CLIENTS).map(|_| connect_on_0()).collect();
    let mut holder = connect_on_0();
    holder.send(format!("debug_hold {}\r\n", keys[0]).as_bytes());
    wait_thread_stat(&mut control, 0, "forward_waiting", 1);
    let rss_before = proc_status_bytes(pid, "VmRSS");
    std::thread::scope(|scope| {
        let mut readers = Vec::new();
        for c in &mut clients {
            let mut writer = c.stream.try_clone().unwrap();
            let request = &request;
            scope.spawn(move || writer.write_all(request).unwrap());
            let mut reader = c.stream.try_clone().unwrap();
            reader
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let reply = &reply;
            readers.push(scope.spawn(move || {
                let mut got = 0;
                let mut buf = vec![0; 1 << 16];
                while got < reply.len() {
                    let n = reader.read(&mut buf).unwrap();
                    assert!(n > 0, "closed after {got} bytes");
                    assert!(
                        buf[..n] == reply[got..got + n],
                        "a wrong reply at byte {got}"
                    );
                    got += n;
                }
            }));
        }
        wait_thread_stat(&mut control, 0, "forward_waiting", CLIENTS as u64 + 1);
        let rss_held = proc_status_bytes(pid, "VmRSS");
        let bound = CLIENTS as u64 * (512 << 10);
        println!(
            "RSS {} KiB before, {} KiB with {CLIENTS} clients held",
            rss_before >> 10,
            rss_held >> 10
        );
        assert!(
            rss_held < rss_before + bound,
            "RSS grew by {} KiB with the core held; the bound is {} KiB ({} KiB pushed)",
            (rss_held - rss_before) >> 10,
            bound >> 10,
            (CLIENTS * PUSHED) >> 10,
        );
        control.expect("debug_release\r\n", "OK\r\n");
        for reader in readers {
            reader.join().unwrap();
        }
    });
    assert_eq!(holder.read_exact(4), b"OK\r\n");
    let depth = thread_stat(&mut control, 1, "mailbox_max_depth");
    println!("thread 1's mailbox held at most {depth} messages");
    assert!(
        (1..=CLIENTS as u64 + 1).contains(&depth),
        "thread 1's mailbox held {depth} messages for {} waiting connections",
        CLIENTS + 1
    );
    wait_thread_stat(&mut control, 0, "forward_inflight", 0);
    wait_thread_stat(&mut control, 0, "forward_waiting", 0);
}
