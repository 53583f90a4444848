//! Forwarding between cores seen from outside: coalesced messages, writes
//! visible in order, contained panics, bounded mailboxes and buffers that
//! shrink back. Thread-per-core unless a test says otherwise (the
//! work-stealing runtime forwards nothing).

mod common;

use common::{Raw, TestServer, key_on_thread, proc_status_bytes, spawn_binary};
use corecache::config::RuntimeKind;
use std::fmt::Write as _;
use std::io::{Read, Write};

/// The thread (of the server's) that accepted `client`'s connection, read
/// from `stats conns` by the client's own address.
fn thread_of(server: &TestServer, client: &mut Raw) -> usize {
    // One round trip first: by then the connection is admitted and listed.
    client.expect("mn\r\n", "MN\r\n");
    let local = format!("tcp:{}", client.stream.local_addr().unwrap());
    let conns = server.connect().stats("conns");
    let fd = conns
        .iter()
        .find(|(name, value)| name.ends_with(":addr") && *value == local)
        .map(|(name, _)| name.trim_end_matches(":addr").to_string())
        .expect("the connection is listed");
    conns
        .iter()
        .find(|(name, _)| *name == format!("{fd}:thread"))
        .unwrap()
        .1
        .parse()
        .unwrap()
}

/// A connection to `server` accepted by `thread`.
fn connect_to_thread(server: &TestServer, thread: usize) -> Raw {
    loop {
        let mut client = server.connect();
        if thread_of(server, &mut client) == thread {
            return client;
        }
    }
}

/// A request that panics on another core's shard: it is answered
/// `SERVER_ERROR`, its connection closed, that one shard reset, and the
/// core, its mailbox included, goes on serving every other connection.
#[test]
fn a_panic_in_a_forwarded_request_is_contained() {
    for runtime in [RuntimeKind::ThreadPerCore, RuntimeKind::WorkStealing] {
        let server = TestServer::start(runtime);
        let on_thread_0 = || match runtime {
            RuntimeKind::ThreadPerCore => connect_to_thread(&server, 0),
            RuntimeKind::WorkStealing => server.connect(),
        };
        let mut client = on_thread_0();
        // Keys on both threads; the panicking one's shard is on thread 1.
        let router = corecache::server::Router::new(4, 2);
        let shard_of = |key: &str| router.shard(corecache::server::Router::hash(key.as_bytes()));
        let victim = key_on_thread(1, 0);
        let keys: Vec<String> = (0..40).map(|i| format!("key:{i}")).collect();
        for key in &keys {
            client.expect(&format!("set {key} 0 0 1\r\nv\r\n"), "STORED\r\n");
        }
        client.expect(&format!("set {victim} 0 0 1\r\nv\r\n"), "STORED\r\n");
        client.send(
            format!(
                "get {}\r\ndebug_panic {victim}\r\nget {}\r\n",
                keys[0], keys[1]
            )
            .as_bytes(),
        );
        // The batch it came in is answered whole, then the connection closes.
        assert_eq!(
            client.read_to_close(),
            format!(
                "VALUE {} 0 1\r\nv\r\nEND\r\nSERVER_ERROR internal error\r\nVALUE {} 0 1\r\nv\r\nEND\r\n",
                keys[0], keys[1]
            ),
            "{runtime:?}"
        );
        // Every key of another shard is still there; the reset shard is
        // empty; forwarded requests to thread 1 are still answered.
        let mut other = on_thread_0();
        for key in &keys {
            let expected = if shard_of(key) == shard_of(&victim) {
                "END\r\n".to_string()
            } else {
                format!("VALUE {key} 0 1\r\nv\r\nEND\r\n")
            };
            other.expect(&format!("get {key}\r\n"), &expected);
        }
        other.expect(
            &format!("set {victim} 0 0 1\r\nw\r\nget {victim}\r\n"),
            &format!("STORED\r\nVALUE {victim} 0 1\r\nw\r\nEND\r\n"),
        );
        assert_eq!(server.stat_u64("", "request_panics"), 1, "{runtime:?}");
    }
}

/// Mailboxes are bounded above everything that can be in flight to a core,
/// so sending never waits: three cores, every connection the server allows
/// sending multi-gets that span all of them and `stats` (which visits every
/// core) at once, over and over. An overflow would panic a mailbox and
/// leave these connections without replies.
#[test]
fn mailboxes_hold_every_fan_out_the_connection_limit_allows() {
    let server = TestServer::with(RuntimeKind::ThreadPerCore, |config| {
        config.threads = 3;
        config.shards = 6;
        config.max_connections = 12;
    });
    let keys: Vec<String> = (0..30).map(|i| format!("fan:{i}")).collect();
    let mut setup = server.connect();
    for key in &keys {
        setup.expect(&format!("set {key} 0 0 2\r\nok\r\n"), "STORED\r\n");
    }
    drop(setup);
    let mut request = String::new();
    for _ in 0..20 {
        writeln!(request, "get {}\r", keys.join(" ")).unwrap();
        request.push_str("stats\r\n");
    }
    let values: String = keys
        .iter()
        .map(|k| format!("VALUE {k} 0 2\r\nok\r\n"))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..12 {
            scope.spawn(|| {
                let mut c = server.connect();
                for _ in 0..20 {
                    c.send(request.as_bytes());
                    // 20 gets and 20 stats listings, each ending in END.
                    let reply = c.read_until_count(b"END\r\n", 40);
                    let reply = String::from_utf8(reply).unwrap();
                    assert_eq!(reply.matches(&values).count(), 20);
                    assert_eq!(reply.matches("STAT curr_items 30\r\n").count(), 20);
                }
            });
        }
    });
    server.assert_forwarded();
}

/// At pipeline 1 with many connections, forwarded requests share messages:
/// the counters `stats` publishes say how many ride in each.
#[test]
fn stats_show_requests_per_forward_message() {
    let server = TestServer::start(RuntimeKind::ThreadPerCore);
    let mut clients: Vec<Raw> = (0..32).map(|_| server.connect()).collect();
    let key = key_on_thread(1, 0);
    clients[0].expect(&format!("set {key} 0 0 1\r\nv\r\n"), "STORED\r\n");
    for _ in 0..50 {
        for c in &mut clients {
            c.send(format!("get {key}\r\n").as_bytes());
        }
        for c in &mut clients {
            assert_eq!(
                c.read_exact(25),
                format!("VALUE {key} 0 1\r\nv\r\nEND\r\n").as_bytes()
            );
        }
    }
    let stats = server.connect().stats("");
    let get = |name: &str| -> f64 {
        stats
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    let (forwarded, messages) = (get("forwarded_requests"), get("forward_messages"));
    assert!(forwarded > 0.0 && messages > 0.0);
    let per_message = get("forward_requests_per_message");
    assert!(
        (per_message - forwarded / messages).abs() < 0.01,
        "{per_message} vs {forwarded}/{messages}"
    );
}

/// A multi-get of 100 values of 1 MB owned by the other core goes through
/// forward batches and the connection's output buffer; afterwards the
/// server gives that memory back rather than keep 100 MB per connection.
#[test]
fn a_remote_100_mb_multi_get_gives_its_memory_back() {
    let (child, addr) = spawn_binary(&["--threads", "2", "--shards", "2", "--no-pin", "-m", "256"]);
    let pid = child.0.id();
    let mut c = Raw::connect(addr);
    let keys: Vec<String> = (0..100).map(|i| format!("big:{i}")).collect();
    let value = vec![b'v'; 1_000_000];
    for key in &keys {
        c.send(format!("set {key} 0 0 {}\r\n", value.len()).as_bytes());
        c.send(&value);
        c.expect("\r\n", "STORED\r\n");
    }
    let before = proc_status_bytes(pid, "VmRSS");
    let mut reply = Vec::new();
    c.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
    while !reply.ends_with(b"END\r\n") {
        let mut buf = vec![0; 1 << 20];
        let n = c.stream.read(&mut buf).unwrap();
        assert!(n > 0);
        reply.extend_from_slice(&buf[..n]);
    }
    assert!(reply.len() > 100_000_000);
    drop(reply);
    // One more small request through the same path lets every buffer that
    // grew be given back.
    c.stream
        .write_all(format!("get {}\r\n", keys[0]).as_bytes())
        .unwrap();
    c.read_until(b"END\r\n");
    let after = proc_status_bytes(pid, "VmRSS");
    assert!(
        after < before + (32 << 20),
        "RSS went from {} MiB to {} MiB",
        before >> 20,
        after >> 20
    );
}

/// Forwarded replies of every size, short ones copied into the output and
/// long ones written from their batch (a vectored write), arrive whole and
/// in request order, in single gets, a pipelined burst and one multi-get,
/// even when the client reads slowly and writes are partial.
#[test]
fn forwarded_replies_of_every_size_arrive_whole_and_in_order() {
    let server = TestServer::start(RuntimeKind::ThreadPerCore);
    let mut c = Raw::connect_small_window(server.addr);
    // Eight values of 1 MB on each thread: more than a socket's send
    // buffer takes in one write, so the writes are partial.
    let mut sizes = vec![0, 1, 500, 1023, 1024, 1025, 4096, 100_000];
    sizes.extend([1_000_000; 8]);
    let mut expected = Vec::new();
    let mut keys = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        for thread in 0..2 {
            let key = key_on_thread(thread, i * 100);
            let value: Vec<u8> = (0..size)
                .map(|b| b"abcdefghij"[(b + i + thread) % 10])
                .collect();
            c.send(format!("set {key} {i} 0 {size}\r\n").as_bytes());
            c.send(&value);
            c.expect("\r\n", "STORED\r\n");
            expected.push((key.clone(), i, value));
            keys.push(key);
        }
    }
    let block = |(key, flags, value): &(String, usize, Vec<u8>)| {
        let mut block = format!("VALUE {key} {flags} {}\r\n", value.len()).into_bytes();
        block.extend_from_slice(value);
        block.extend_from_slice(b"\r\n");
        block
    };
    // One multi-get of everything, then every key on its own, pipelined.
    let mut request = format!("get {}\r\n", keys.join(" "));
    let mut reply: Vec<u8> = expected.iter().flat_map(block).collect();
    reply.extend_from_slice(b"END\r\n");
    for item in &expected {
        request.push_str(&format!("get {}\r\n", item.0));
        reply.extend(block(item));
        reply.extend_from_slice(b"END\r\n");
    }
    c.send(request.as_bytes());
    // The small receive window makes the server's writes partial.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < reply.len() {
        let n = c.stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got.len(), reply.len());
    assert!(got == reply, "the replies differ from the values stored");
    server.assert_forwarded();
}
