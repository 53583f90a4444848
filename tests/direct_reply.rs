//! The owner core answering a client itself at pipeline 1 (thread-per-core,
//! `src/server/forward/hop.rs`, "One wake fewer"), over real TCP: when a
//! plain connection's whole read goes to one other core, that core writes
//! the replies to the socket, counted in `forward_direct_replies`; what
//! the socket does not take at once the connection's own core writes
//! after it, in order. Anything else (local work in the same read, two
//! owners, TLS) is answered by the connection's core as before.

mod common;
#[path = "common/tls.rs"]
mod pki;

use common::{Raw, TestServer, key_on_thread};
use corecache::config::RuntimeKind;

fn tpc() -> TestServer {
    TestServer::start(RuntimeKind::ThreadPerCore)
}

fn direct(server: &TestServer) -> u64 {
    server.stat_u64("", "forward_direct_replies")
}

/// A get, a set, a meta get and a multi-get, each alone in its read and
/// all for keys of the other thread: answered whole and in order, each by
/// the owner (the `END` of a get rides with its values).
#[test]
fn pipeline_1_requests_for_the_other_core_are_answered_by_it() {
    let server = tpc();
    let mut c = server.connect_on(0);
    let (a, b) = (key_on_thread(1, 0), key_on_thread(1, 100));
    c.expect(&format!("set {a} 1 0 3\r\nabc\r\n"), "STORED\r\n");
    c.expect(&format!("set {b} 2 0 3\r\nxyz\r\n"), "STORED\r\n");
    c.expect(
        &format!("get {a}\r\n"),
        &format!("VALUE {a} 1 3\r\nabc\r\nEND\r\n"),
    );
    c.expect(&format!("mg {b} v f\r\n"), "VA 3 f2\r\nxyz\r\n");
    c.expect(
        &format!("get {a} {b}\r\n"),
        &format!("VALUE {a} 1 3\r\nabc\r\nVALUE {b} 2 3\r\nxyz\r\nEND\r\n"),
    );
    c.expect(&format!("get {}\r\n", key_on_thread(1, 200)), "END\r\n");
    assert_eq!(direct(&server), 6);
    server.assert_forwarded_exactly(7);
}

/// Reads that hold a local op, or keys of both threads, or a reply of the
/// connection's own before the forwarded one, are answered by the
/// connection's core: never out of order.
#[test]
fn mixed_reads_are_answered_by_the_connections_core() {
    let server = tpc();
    let mut c = server.connect_on(0);
    let (local, remote) = (key_on_thread(0, 0), key_on_thread(1, 0));
    c.expect(
        &format!("set {local} 0 0 1\r\nl\r\nset {remote} 0 0 1\r\nr\r\n"),
        "STORED\r\nSTORED\r\n",
    );
    c.expect(
        &format!("get {local} {remote}\r\n"),
        &format!("VALUE {local} 0 1\r\nl\r\nVALUE {remote} 0 1\r\nr\r\nEND\r\n"),
    );
    c.expect(
        &format!("version\r\nget {remote}\r\n"),
        &format!(
            "VERSION 1.6.18-corecache-{}\r\nVALUE {remote} 0 1\r\nr\r\nEND\r\n",
            env!("CARGO_PKG_VERSION")
        ),
    );
    assert_eq!(direct(&server), 0);
}

/// A 1 MB value forwarded to a client with a 4 KiB receive window, three
/// times, each followed by a local request: every reply comes back whole
/// and in order. (Whether the owner's non-blocking send takes the whole
/// value or leaves a tail for the connection's core is the kernel's
/// choice on loopback, whose send buffer autotunes past a megabyte; this
/// test holds the order either way and does not claim which path ran.)
#[test]
fn a_large_forwarded_value_to_a_slow_reader_comes_back_whole_and_in_order() {
    let server = tpc();
    let remote = key_on_thread(1, 0);
    let value: String = (0..1_000_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut setter = server.connect_on(0);
    setter.expect(
        &format!("set {remote} 0 0 {}\r\n{value}\r\n", value.len()),
        "STORED\r\n",
    );
    let mut c = loop {
        let mut c = Raw::connect_small_window(server.addr);
        if c.thread() == 0 {
            break c;
        }
    };
    let expected = format!("VALUE {remote} 0 {}\r\n{value}\r\nEND\r\n", value.len());
    for _ in 0..3 {
        c.send(format!("get {remote}\r\n").as_bytes());
        let got = c.read_exact(expected.len());
        assert!(
            got == expected.as_bytes(),
            "the reply came back out of order or cut"
        );
        c.expect("mn\r\n", "MN\r\n");
    }
}

/// Over TLS the connection's core writes every reply: only it holds the
/// session.
#[test]
fn tls_connections_are_always_answered_by_their_own_core() {
    let pki = pki::Pki::new("direct");
    let server = TestServer::with(RuntimeKind::ThreadPerCore, |config| {
        config.tls = Some(pki.server(false, Some("127.0.0.1:0".parse().unwrap())));
    });
    let tls = server.tls_addr.unwrap();
    for seed in 0..20 {
        let key = key_on_thread(seed % 2, seed);
        let mut c = pki::TlsClient::connect(tls, pki.client(pki::Identity::Anonymous)).unwrap();
        c.expect(&format!("set {key} 0 0 1\r\nv\r\n"), "STORED\r\n");
        c.expect(
            &format!("get {key}\r\n"),
            &format!("VALUE {key} 0 1\r\nv\r\nEND\r\n"),
        );
    }
    assert_eq!(direct(&server), 0);
}
