//! TLS over real sockets, in both runtimes: a TLS listener beside the
//! plaintext one, client certificates required and checked, plaintext
//! refused on the TLS port, and handshakes that fail or stall costing only
//! their own connection. The client is rustls; `interop.rs` drives
//! `openssl s_client` and pymemcache over TLS too.

mod common;
#[path = "common/tls.rs"]
mod pki;

use common::{Raw, Scratch, TestServer, key_on_thread};
use corecache::config::{Config, RuntimeKind};
use pki::{Identity, Pki, TlsClient};
use std::time::Duration;

/// A server with TLS beside plaintext (`--tls-listen 127.0.0.1:0`),
/// requiring client certificates when `verify_clients`.
fn beside(runtime: RuntimeKind, pki: &Pki, verify_clients: bool) -> TestServer {
    beside_with(runtime, pki, verify_clients, |_| {})
}

fn beside_with(
    runtime: RuntimeKind,
    pki: &Pki,
    verify_clients: bool,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    TestServer::with(runtime, |config| {
        config.tls = Some(pki.server(verify_clients, Some("127.0.0.1:0".parse().unwrap())));
        adjust(config);
    })
}

/// Asserts that a client presenting `identity` is refused: its handshake
/// fails, or (TLS 1.3, where the server judges the client's certificate
/// after the client thinks it is done) its first request gets no reply
/// before the session ends. Which of the two the server did, it counts in
/// `ssl_handshake_errors`; the callers check that.
#[track_caller]
fn assert_refused(server: &TestServer, pki: &Pki, identity: Identity) {
    let addr = server.tls_addr.unwrap();
    let Ok(mut client) = TlsClient::connect(addr, pki.client(identity)) else {
        return;
    };
    // The server may already have closed: a failed write is a refusal too.
    let _ = std::io::Write::write_all(&mut client.stream, b"version\r\n");
    let _ = std::io::Write::flush(&mut client.stream);
    let (got, _) = client.read_to_end();
    assert!(got.is_empty(), "{identity:?} got a reply: {got:?}");
}

per_runtime! {
    served_beside_plaintext => super::tls_clients_are_served_beside_plaintext_ones;
    client_certificates => super::client_certificates_are_required_and_checked;
    plaintext_on_the_tls_port => super::plaintext_sent_to_the_tls_port_is_refused_unread;
    stalled_handshake => super::a_stalled_handshake_holds_up_no_one_and_is_cut_off;
    tls_alone => super::tls_alone_takes_the_listen_address;
    full_server => super::a_full_server_closes_a_tls_connection_without_plaintext;
    auth_over_tls => super::a_tls_client_must_log_in_too;
}

fn tls_clients_are_served_beside_plaintext_ones(runtime: RuntimeKind) {
    let pki = Pki::new("beside");
    let server = beside(runtime, &pki, false);
    let tls_addr = server.tls_addr.expect("TLS is on");
    assert_ne!(tls_addr, server.addr);
    let mut tls = TlsClient::connect(tls_addr, pki.client(Identity::Anonymous)).unwrap();
    // Keys of both threads, so thread-per-core forwards some of them: the
    // TLS connection's requests cross cores like any other's.
    let (here, there) = (key_on_thread(0, 0), key_on_thread(1, 0));
    tls.expect(
        &format!("set {here} 1 0 2\r\nhi\r\nset {there} 2 0 5\r\nthere\r\n"),
        "STORED\r\nSTORED\r\n",
    );
    tls.expect(
        &format!("get {here} {there}\r\n"),
        &format!("VALUE {here} 1 2\r\nhi\r\nVALUE {there} 2 5\r\nthere\r\nEND\r\n"),
    );
    server.assert_forwarded();
    // A pipelined burst of 200 requests in one write, replies in order.
    let mut burst = String::new();
    let mut want = String::new();
    for i in 0..100 {
        let key = key_on_thread(i % 2, i * 10);
        burst += &format!(
            "set {key} 0 0 {}\r\n{i}\r\nget {key}\r\n",
            i.to_string().len()
        );
        want += &format!(
            "STORED\r\nVALUE {key} 0 {}\r\n{i}\r\nEND\r\n",
            i.to_string().len()
        );
    }
    tls.expect(&burst, &want);
    // A value larger than many TLS records, both ways.
    let big: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    tls.expect(
        &format!("set big 0 0 {}\r\n{big}\r\n", big.len()),
        "STORED\r\n",
    );
    tls.expect(
        "get big\r\n",
        &format!("VALUE big 0 {}\r\n{big}\r\nEND\r\n", big.len()),
    );
    // Replies far larger than the socket's buffers, asked for before any
    // is read: the server's writes block, and the last of them must still
    // reach the client once it reads.
    tls.send("get big\r\n".repeat(20).as_bytes());
    let one = format!("VALUE big 0 {}\r\n{big}\r\nEND\r\n", big.len());
    let mut got = vec![0; one.len() * 20];
    std::io::Read::read_exact(&mut tls.stream, &mut got).expect("every reply arrives");
    assert!(
        got == one.repeat(20).into_bytes(),
        "20 replies, whole and in order"
    );
    // Plaintext clients share the same cache.
    let mut plain = server.connect();
    plain.expect(
        &format!("get {there}\r\n"),
        &format!("VALUE {there} 2 5\r\nthere\r\nEND\r\n"),
    );
    assert_eq!(server.stat("settings", "ssl_enabled"), "yes");
    assert_eq!(server.stat("settings", "ssl_verify_mode"), "0");
    assert_eq!(server.stat("settings", "tls_listen"), tls_addr.to_string());
    assert_eq!(server.stat_u64("", "ssl_handshake_errors"), 0);
    // `stats conns` names the listener each connection came in on.
    let conns = plain.stats("conns");
    let listeners: Vec<&str> = conns
        .iter()
        .filter(|(k, _)| k.ends_with(":listen_addr"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        listeners.contains(&format!("tcp:{tls_addr}").as_str()),
        "{conns:?}"
    );
    assert!(
        listeners.contains(&format!("tcp:{}", server.addr).as_str()),
        "{conns:?}"
    );
    tls.expect("quit\r\n", "");
    let (rest, failed) = tls.read_to_end();
    assert!(rest.is_empty() && failed.is_none(), "{rest:?} {failed:?}");
}

fn client_certificates_are_required_and_checked(runtime: RuntimeKind) {
    let pki = Pki::new("verify");
    let server = beside(runtime, &pki, true);
    assert_refused(&server, &pki, Identity::Anonymous);
    assert_refused(&server, &pki, Identity::Rogue);
    let mut trusted = TlsClient::connect(server.tls_addr.unwrap(), pki.client(Identity::Trusted))
        .expect("a certificate the CA signed is accepted");
    trusted.expect(
        "set k 0 0 2\r\nok\r\nget k\r\n",
        "STORED\r\nVALUE k 0 2\r\nok\r\nEND\r\n",
    );
    // The server counts a refusal just after it sends it.
    assert_eq!(server.wait_for_stat("ssl_handshake_errors", 2), 2);
    assert_eq!(server.stat("settings", "ssl_verify_mode"), "2");
    assert_eq!(
        server.stat("settings", "ssl_ca_cert"),
        pki.ca.display().to_string()
    );
}

fn plaintext_sent_to_the_tls_port_is_refused_unread(runtime: RuntimeKind) {
    let pki = Pki::new("plaintext");
    let server = beside(runtime, &pki, false);
    let mut raw = Raw::connect(server.tls_addr.unwrap());
    raw.send(b"set stolen 0 0 1\r\nx\r\nget stolen\r\n");
    let got = raw.read_to_close().into_bytes();
    // At most a TLS alert record (content type 21): never a memcached reply.
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
    assert_eq!(server.wait_for_stat("ssl_handshake_errors", 1), 1);
    server.connect().expect("get stolen\r\n", "END\r\n");
}

fn a_stalled_handshake_holds_up_no_one_and_is_cut_off(runtime: RuntimeKind) {
    let pki = Pki::new("stall");
    let stalling = |timeout: Duration| {
        // One thread: the stalled handshakes and the good client share it.
        let server = beside_with(runtime, &pki, false, |config| {
            config.threads = 1;
            config.cpus = vec![0];
            config.tls_handshake_timeout = timeout;
        });
        let addr = server.tls_addr.unwrap();
        // Connected, sends nothing: its handshake never starts.
        let silent = Raw::connect(addr);
        // Sends half a ClientHello record header and stops.
        let mut halfway = Raw::connect(addr);
        halfway.send(&[22, 3, 1]);
        (server, silent, halfway)
    };
    // With a minute to go, the stalled ones are certainly still waiting
    // while other clients come and go.
    let (server, _silent, _halfway) = stalling(Duration::from_secs(60));
    for _ in 0..3 {
        let mut client =
            TlsClient::connect(server.tls_addr.unwrap(), pki.client(Identity::Anonymous)).unwrap();
        client.expect("version\r\n", &format!("VERSION {}\r\n", version()));
    }
    assert_eq!(server.stat_u64("", "ssl_handshake_errors"), 0);
    drop(server);
    // With a short time, the server closes them itself.
    let (server, mut silent, mut halfway) = stalling(Duration::from_millis(200));
    assert!(silent.is_closed(), "the silent connection is closed");
    let rest = halfway.read_to_close().into_bytes();
    assert!(rest.is_empty() || rest[0] == 21, "{rest:?}");
    assert_eq!(server.wait_for_stat("ssl_handshake_errors", 2), 2);
    // Neither holds a connection slot any more (the one counted is the
    // connection that reads the stat).
    assert_eq!(server.wait_for_stat("curr_connections", 1), 1);
}

fn tls_alone_takes_the_listen_address(runtime: RuntimeKind) {
    let pki = Pki::new("alone");
    let server = TestServer::with(runtime, |config| {
        config.tls = Some(pki.server(false, None));
    });
    assert_eq!(server.tls_addr, Some(server.addr));
    let mut raw = server.connect();
    raw.send(b"version\r\n");
    let got = raw.read_to_close().into_bytes();
    assert!(
        got.is_empty() || got[0] == 21,
        "plaintext answered: {got:?}"
    );
    let mut client = TlsClient::connect(server.addr, pki.client(Identity::Anonymous)).unwrap();
    client.expect("version\r\n", &format!("VERSION {}\r\n", version()));
}

fn a_full_server_closes_a_tls_connection_without_plaintext(runtime: RuntimeKind) {
    let pki = Pki::new("full");
    let server = beside_with(runtime, &pki, false, |config| config.max_connections = 1);
    let addr = server.tls_addr.unwrap();
    let mut first = TlsClient::connect(addr, pki.client(Identity::Anonymous)).unwrap();
    first.expect("version\r\n", &format!("VERSION {}\r\n", version()));
    // The second gets no "ERROR Too many open connections" in plaintext,
    // which its TLS stack could only take for garbage: just a close.
    let mut second = Raw::connect(addr);
    assert_eq!(second.read_to_close(), "");
    // A plaintext one still gets memcached's error.
    let mut third = server.connect();
    assert_eq!(third.read_to_close(), "ERROR Too many open connections\r\n");
    first.expect("version\r\n", &format!("VERSION {}\r\n", version()));
}

/// The version string the server reports.
fn version() -> String {
    format!("1.6.18-corecache-{}", env!("CARGO_PKG_VERSION"))
}

fn a_tls_client_must_log_in_too(runtime: RuntimeKind) {
    let pki = Pki::new("auth");
    let dir = Scratch::new("tls-users");
    let users = dir.write("users", "alice:secret\n");
    let server = beside_with(runtime, &pki, true, |config| {
        config.auth_file = Some(users.clone())
    });
    let addr = server.tls_addr.unwrap();
    let mut client = TlsClient::connect(addr, pki.client(Identity::Trusted)).unwrap();
    client.expect("get k\r\n", "CLIENT_ERROR unauthenticated\r\n");
    client.expect(
        "set auth 0 0 12\r\nalice secret\r\nget k\r\n",
        "STORED\r\nEND\r\n",
    );
}

/// TLS and the shard-aware port on one thread-per-core server: a TLS
/// client is served on the TLS port (its handshake done, its requests
/// forwarded like anyone's), and plaintext clients on the shard-aware port
/// are served by the core their port names, with no handshake asked of
/// them, whichever core's listener the kernel gave them to. `stats conns`
/// names the port each came in on, and each is admitted once.
#[test]
fn tls_and_the_shard_aware_port_serve_side_by_side() {
    let pki = Pki::new("shard-aware");
    let (server, shard_aware) = TestServer::shard_aware_with(RuntimeKind::ThreadPerCore, 2, |c| {
        c.tls = Some(pki.server(false, Some("127.0.0.1:0".parse().unwrap())));
    });
    let tls_addr = server.tls_addr.expect("TLS is on");
    let mut tls = TlsClient::connect(tls_addr, pki.client(Identity::Anonymous)).unwrap();
    let (zero, one) = (key_on_thread(0, 0), key_on_thread(1, 0));
    tls.expect(
        &format!("set {zero} 1 0 4\r\nzero\r\nset {one} 2 0 3\r\none\r\n"),
        "STORED\r\nSTORED\r\n",
    );
    // Two rounds per core, so some connections were handed over.
    let mut next = loadgen::shard::first_port();
    let mut conns = Vec::new();
    for round in 0..2 {
        for core in 0..2 {
            let mut c = common::connect_to(shard_aware, 2, core, &mut next);
            assert_eq!(c.thread(), core, "round {round}");
            // Each reads the key its core owns, set over TLS.
            let (key, flags, value) = [(&zero, 1, "zero"), (&one, 2, "one")][core];
            c.expect(
                &format!("get {key}\r\n"),
                &format!("VALUE {key} {flags} {}\r\n{value}\r\nEND\r\n", value.len()),
            );
            conns.push(c);
        }
    }
    tls.expect(
        &format!("get {zero} {one}\r\n"),
        &format!("VALUE {zero} 1 4\r\nzero\r\nVALUE {one} 2 3\r\none\r\nEND\r\n"),
    );
    let listed = conns[0].stats("conns");
    let on = |addr: std::net::SocketAddr| {
        let addr = format!("tcp:{addr}");
        listed
            .iter()
            .filter(|(k, v)| k.ends_with(":listen_addr") && *v == addr)
            .count()
    };
    assert_eq!((on(tls_addr), on(shard_aware)), (1, 4), "{listed:?}");
    let stats = conns[0].stats("");
    let stat = |name: &str| &stats.iter().find(|(k, _)| k == name).unwrap().1;
    assert_eq!(stat("total_connections"), "5");
    assert_eq!(stat("curr_connections"), "5");
    assert_eq!(stat("ssl_handshake_errors"), "0");
    assert_eq!(stat("shard_aware_refused"), "0");
}

/// With TLS on `--listen`, the per-core ports speak TLS too: plaintext
/// gets nothing there, and a TLS client on thread 1's port has a key of
/// thread 0's hash kept on thread 1, with nothing forwarded.
#[test]
fn per_core_ports_speak_tls_when_listen_does() {
    let pki = Pki::new("per-core");
    let server = TestServer::per_core_with(2, |config| {
        config.tls = Some(pki.server(false, None));
    });
    let port1 = server.per_core[1];
    let mut raw = Raw::connect(port1);
    raw.send(b"version\r\n");
    let got = raw.read_to_close().into_bytes();
    assert!(
        got.is_empty() || got[0] == 21,
        "plaintext answered: {got:?}"
    );
    let key = key_on_thread(0, 0);
    let mut on1 = TlsClient::connect(port1, pki.client(Identity::Anonymous)).unwrap();
    on1.expect(&format!("set {key} 0 0 2\r\nhi\r\n"), "STORED\r\n");
    on1.expect(
        &format!("get {key}\r\n"),
        &format!("VALUE {key} 0 2\r\nhi\r\nEND\r\n"),
    );
    let mut on0 = TlsClient::connect(server.per_core[0], pki.client(Identity::Anonymous)).unwrap();
    on0.expect(&format!("get {key}\r\n"), "END\r\n");
    // `stats` over TLS: nothing crossed threads.
    on0.send(b"stats\r\n");
    let mut stats = Vec::new();
    let mut buf = [0u8; 4096];
    while !stats.ends_with(b"END\r\n") {
        let n = std::io::Read::read(&mut on0.stream, &mut buf).unwrap();
        assert!(n > 0, "closed during stats");
        stats.extend_from_slice(&buf[..n]);
    }
    let stats = String::from_utf8(stats).unwrap();
    assert!(stats.contains("STAT forwarded_requests 0\r\n"), "{stats}");
}
