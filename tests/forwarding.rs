//! Forwarding between cores seen from outside: coalesced messages, writes
//! visible in order, contained panics, bounded mailboxes and buffers that
//! shrink back. Thread-per-core unless a test says otherwise (the
//! work-stealing runtime forwards nothing).

mod common;

use common::{Raw, TestServer, key_on_thread, proc_status_bytes, shard_of, spawn_binary};
use corecache::config::RuntimeKind;
use std::fmt::Write as _;
use std::io::{Read, Write};

/// A request that panics on another core's shard: it is answered
/// `SERVER_ERROR`, its connection closed, that one shard reset, and the
/// core, its mailbox included, goes on serving every other connection.
#[test]
fn a_panic_in_a_forwarded_request_is_contained() {
    for runtime in [RuntimeKind::ThreadPerCore, RuntimeKind::WorkStealing] {
        let server = TestServer::start(runtime);
        let on_thread_0 = || match runtime {
            RuntimeKind::ThreadPerCore => server.connect_on(0),
            RuntimeKind::WorkStealing => server.connect(),
        };
        let mut client = on_thread_0();
        // Keys on both threads; the panicking one's shard is on thread 1.
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
    let mut request = String::new();
    for _ in 0..20 {
        writeln!(request, "get {}\r", keys.join(" ")).unwrap();
        request.push_str("stats\r\n");
    }
    let values: String = keys
        .iter()
        .map(|k| format!("VALUE {k} 0 2\r\nok\r\n"))
        .collect();
    let run = |mut c: Raw| {
        for _ in 0..20 {
            c.send(request.as_bytes());
            // 20 gets and 20 stats listings, each ending in END.
            let reply = c.read_until_count(b"END\r\n", 40);
            let reply = String::from_utf8(reply).unwrap();
            assert_eq!(reply.matches(&values).count(), 20);
            assert_eq!(reply.matches("STAT curr_items 30\r\n").count(), 20);
        }
    };
    // The setup connection is the twelfth: a closed one might not be
    // counted out yet when the others connect, and the limit is exact.
    std::thread::scope(|scope| {
        for _ in 0..11 {
            scope.spawn(|| run(server.connect()));
        }
        scope.spawn(|| run(setup));
    });
    server.assert_forwarded();
}

/// Requests of many connections that meet in one turn of their core ride
/// to the owner in one message, and `stats` says how many ride in each.
/// Thirty-two connections on thread 0 send one get each (no pipelining, so
/// only sharing between connections can put two requests in a message)
/// for a key of thread 1, while thread 0 is held by `debug_hold`: when it
/// runs again, all of them are ready in the same turn. That the hold has
/// begun is not needed: until thread 0 takes the hold from its mailbox it
/// can serve at most the first few of them on their own.
#[test]
fn requests_of_connections_in_one_turn_share_a_forward_message() {
    const CLIENTS: u64 = 32;
    let server = TestServer::start(RuntimeKind::ThreadPerCore);
    let mut control = server.connect_on(1);
    let mut holder = server.connect_on(1);
    let mut clients: Vec<Raw> = (0..CLIENTS).map(|_| server.connect_on(0)).collect();
    let key = key_on_thread(1, 0);
    control.expect(&format!("set {key} 0 0 1\r\nv\r\n"), "STORED\r\n");
    let thread_0 = |c: &mut Raw| {
        let stats = c.stats("threads");
        let stat = |name: &str| -> u64 {
            let name = format!("thread:0:{name}");
            let (_, value) = stats.iter().find(|(n, _)| *n == name).unwrap();
            value.parse().unwrap()
        };
        (stat("forwarded_out"), stat("forward_messages"))
    };
    let (out_before, messages_before) = thread_0(&mut control);
    holder.send(format!("debug_hold {}\r\n", key_on_thread(0, 0)).as_bytes());
    common::eventually("the hold is out to thread 0", || {
        control
            .stats("threads")
            .contains(&("thread:1:forward_waiting".to_string(), "1".to_string()))
    });
    for c in &mut clients {
        c.send(format!("get {key}\r\n").as_bytes());
    }
    control.expect("debug_release\r\n", "OK\r\n");
    assert_eq!(holder.read_exact(4), b"OK\r\n");
    for c in &mut clients {
        assert_eq!(
            c.read_exact(25),
            format!("VALUE {key} 0 1\r\nv\r\nEND\r\n").as_bytes()
        );
    }
    let (out_after, messages_after) = thread_0(&mut control);
    let (requests, messages) = (out_after - out_before, messages_after - messages_before);
    assert_eq!(requests, CLIENTS);
    assert!(
        messages < requests,
        "{requests} requests of {CLIENTS} connections went in {messages} messages"
    );
    // The published ratio is the server's forwarded requests over its
    // messages, here this burst and the one hold request from thread 1.
    let stats = control.stats("");
    let get = |name: &str| -> f64 {
        let (_, value) = stats.iter().find(|(n, _)| n == name).unwrap();
        value.parse().unwrap()
    };
    let (forwarded, sent) = (get("forwarded_requests"), get("forward_messages"));
    let per_message = get("forward_requests_per_message");
    assert!(
        (per_message - forwarded / sent).abs() < 0.01,
        "{per_message} vs {forwarded}/{sent}"
    );
    assert!(per_message > 1.0, "{per_message} requests per message");
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
