//! `--auth-file`: memcached's text-protocol authentication, over raw bytes
//! in both runtimes. Until a connection authenticates, every request gets
//! memcached 1.6.18's reply (checked against the real server in
//! `interop.rs`) and nothing is read or written.

mod common;

use common::{Raw, Scratch, TestServer};
use corecache::config::RuntimeKind;
use std::path::PathBuf;

const UNAUTHENTICATED: &str = "CLIENT_ERROR unauthenticated\r\n";
const LOGIN: &str = "set auth 0 0 12\r\nalice secret\r\n";

/// A users file in a scratch directory, removed when dropped.
struct Users {
    _dir: Scratch,
    path: PathBuf,
}

impl Users {
    fn new(name: &str) -> Users {
        let dir = Scratch::new(&format!("users-{name}"));
        let path = dir.write("users", "alice:secret\nbob:pass:with:colons\n");
        Users { _dir: dir, path }
    }
}

/// A server requiring a login from `users`; its stats helpers log in.
fn server(runtime: RuntimeKind, users: &Users) -> TestServer {
    let mut server = TestServer::with(runtime, |config| {
        config.auth_file = Some(users.path.clone())
    });
    server.login = Some(LOGIN.to_string());
    server
}

/// A connection that has logged in as alice.
fn logged_in(server: &TestServer) -> Raw {
    let mut c = server.connect();
    c.expect(LOGIN, "STORED\r\n");
    c
}

per_runtime! {
    unauthenticated => super::every_request_before_a_login_is_refused_and_touches_nothing;
    login => super::a_login_opens_the_connection_and_what_follows_runs;
    failures => super::failed_logins_get_memcacheds_errors_and_are_counted;
    binary => super::binary_requests_are_text_that_does_not_log_in;
    limits => super::a_long_line_or_a_huge_login_closes_the_connection;
}

fn every_request_before_a_login_is_refused_and_touches_nothing(runtime: RuntimeKind) {
    let users = Users::new("refused");
    let server = server(runtime, &users);
    let mut owner = logged_in(&server);
    owner.expect("set k 0 0 5\r\nvalue\r\n", "STORED\r\n");
    let mut c = server.connect();
    for request in [
        "get k\r\n",
        "delete k\r\n",
        "incr k 1\r\n",
        "flush_all\r\n",
        "stats\r\n",
        "version\r\n",
        "mg k v\r\n",
        "quit\r\n",
        "\r\n",
        // Not a `set` with a length: not a login attempt.
        "SET k 0 0 1\r\n",
        "set k 0 0\r\n",
        "set k 0 0 -1\r\n",
        "set k 0 0 1x\r\n",
        "append k 0 0 1\r\n",
    ] {
        c.expect(request, UNAUTHENTICATED);
    }
    // Each request of a pipelined burst gets its reply (memcached answers
    // only the last of them: see docs/interop.md).
    c.expect("get k\r\ndelete k\r\n", &UNAUTHENTICATED.repeat(2));
    // A storage command's data is the login attempt: nothing is stored.
    c.expect(
        "set k 0 0 1\r\nx\r\n",
        "CLIENT_ERROR bad authentication token format\r\n",
    );
    owner.expect("get k\r\n", "VALUE k 0 5\r\nvalue\r\nEND\r\n");
    // The shards saw the owner's set and get, nothing of the other's.
    assert_eq!(server.stat_u64("", "cmd_set"), 1);
    assert_eq!(server.stat_u64("", "cmd_get"), 1);
    assert_eq!(server.stat_u64("", "cmd_flush"), 0);
    assert_eq!(server.stat_u64("", "curr_items"), 1);
    // The refused connection is still open, and may log in.
    c.expect(LOGIN, "STORED\r\n");
    c.expect("get k\r\n", "VALUE k 0 5\r\nvalue\r\nEND\r\n");
    let mut settings = logged_in(&server).stats("settings");
    settings.retain(|(k, _)| k.starts_with("auth_enabled"));
    let path = users.path.display().to_string();
    assert_eq!(
        settings,
        [
            ("auth_enabled_sasl".into(), "no".into()),
            ("auth_enabled_ascii".into(), path)
        ]
    );
}

fn a_login_opens_the_connection_and_what_follows_runs(runtime: RuntimeKind) {
    let users = Users::new("login");
    let server = server(runtime, &users);
    // The login and the requests after it in one write.
    let mut c = server.connect();
    c.expect(
        &format!("{LOGIN}set k 0 0 1\r\nx\r\nget k auth\r\n"),
        "STORED\r\nSTORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n",
    );
    // Any key, flags and exptime; the length counts; extra spaces and
    // tokens in the data are ignored; `noreply` is not honoured, as in
    // memcached, so the client always learns whether it is in.
    for login in [
        "set whatever 123 456 +12\r\nalice secret\r\n",
        "set a 0 0 14\r\nalice  secret \r\n",
        "set a 0 0 18\r\nalice secret extra\r\n",
        "set a 0 0 12 noreply\r\nalice secret\r\n",
        "set a 0 0 12\nalice secret\r\n",
        "set a 0 0 20\r\nbob pass:with:colons\r\n",
    ] {
        let mut c = server.connect();
        c.expect(login, "STORED\r\n");
        c.expect("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    }
    // The login itself stored nothing.
    c.expect("get auth whatever a\r\n", "END\r\n");
    // The login arriving a byte at a time.
    let mut slow = server.connect();
    let pieces: Vec<&[u8]> = LOGIN.as_bytes().chunks(1).collect();
    server.send_in_separate_reads(&mut slow, pieces);
    slow.expect("get k\r\n", "STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
}

fn failed_logins_get_memcacheds_errors_and_are_counted(runtime: RuntimeKind) {
    let users = Users::new("failures");
    let server = server(runtime, &users);
    let mut c = server.connect();
    for (attempt, reply) in [
        (
            "set a 0 0 12\r\nalice secreX\r\n",
            "CLIENT_ERROR authentication failure\r\n",
        ),
        (
            "set a 0 0 10\r\nbob secret\r\n",
            "CLIENT_ERROR authentication failure\r\n",
        ),
        (
            "set a 0 0 11\r\nalic secret\r\n",
            "CLIENT_ERROR authentication failure\r\n",
        ),
        (
            "set a 0 0 13\r\nalice secret\r\r\n",
            "CLIENT_ERROR authentication failure\r\n",
        ),
        (
            "set a 0 0 5\r\nalice\r\n",
            "CLIENT_ERROR bad authentication token format\r\n",
        ),
        (
            "set a 0 0 0\r\n\r\n",
            "CLIENT_ERROR bad authentication token format\r\n",
        ),
        (
            "set a 0 0 12\r\nalice secretXX",
            "CLIENT_ERROR bad command line termination\r\n",
        ),
        (
            "set a 0 0 12\r\nalice secret\n\n",
            "CLIENT_ERROR bad command line termination\r\n",
        ),
    ] {
        c.expect(attempt, reply);
        // Still locked.
        c.expect("get k\r\n", UNAUTHENTICATED);
    }
    // Four checks of a user and password, all wrong (the malformed
    // attempts never got that far), and the stat reader's own login.
    assert_eq!(server.stat_u64("", "auth_cmds"), 4 + 1);
    assert_eq!(server.stat_u64("", "auth_errors"), 4);
}

/// A binary `get` request for `key` (no byte of it is a newline).
fn binary_get(key: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, 0x00];
    packet.extend_from_slice(&(key.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[0; 4]);
    packet.extend_from_slice(&(key.len() as u32).to_be_bytes());
    packet.extend_from_slice(&[0; 12]);
    packet.extend_from_slice(key);
    packet
}

fn binary_requests_are_text_that_does_not_log_in(runtime: RuntimeKind) {
    let users = Users::new("binary");
    let server = server(runtime, &users);
    let mut owner = logged_in(&server);
    owner.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
    // No newline in it: the gate waits for the end of the line.
    let mut c = server.connect();
    server.send_and_wait_read(&mut c, &binary_get(b"k"));
    c.expect("\n", UNAUTHENTICATED);
    // Logged in, the connection still speaks text, as memcached's does
    // with -Y: a binary request is a line of no known command.
    c.expect(LOGIN, "STORED\r\n");
    let mut request = binary_get(b"k");
    request.extend_from_slice(b"\r\n");
    c.send(&request);
    assert_eq!(c.read_until(b"\r\n"), b"ERROR\r\n");
    c.expect("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
}

fn a_long_line_or_a_huge_login_closes_the_connection(runtime: RuntimeKind) {
    let users = Users::new("limits");
    let server = server(runtime, &users);
    let mut c = server.connect();
    c.send(&[b'x'; 2049]);
    assert_eq!(c.read_to_close(), "");
    // A login whose data would not fit memcached's 16 KiB read buffer.
    let mut c = server.connect();
    c.send(b"set a 0 0 16385\r\n");
    assert_eq!(c.read_to_close(), "");
    // Just under both limits, it goes on.
    let mut c = server.connect();
    let data = format!("alice secret{}", " ".repeat(16384 - 12));
    c.expect(&format!("set a 0 0 16384\r\n{data}\r\n"), "STORED\r\n");
    let mut c = server.connect();
    server.send_and_wait_read(&mut c, &[b'x'; 2048]);
    c.expect("\r\n", UNAUTHENTICATED);
}

/// The shard-aware port asks for the login too, whether the connection
/// was accepted by the core that serves it or handed over to it: a
/// request before the login is refused, and after it the connection is
/// served on the core its port names.
#[test]
fn a_shard_aware_connection_must_log_in_too() {
    let users = Users::new("shard-aware");
    let (server, shard_aware) =
        TestServer::shard_aware_with(RuntimeKind::ThreadPerCore, 2, |config| {
            config.auth_file = Some(users.path.clone());
        });
    let mut next = loadgen::shard::first_port();
    // Two rounds per core, so some connections were handed over.
    for round in 0..2 {
        for core in 0..2 {
            let mut c = common::connect_to(shard_aware, 2, core, &mut next);
            c.expect("get k\r\n", UNAUTHENTICATED);
            c.expect(LOGIN, "STORED\r\n");
            assert_eq!(c.thread(), core, "round {round}");
            c.expect("set k 0 0 1\r\nv\r\n", "STORED\r\n");
        }
    }
    let mut c = logged_in(&server);
    let stats = c.stats("");
    let stat = |name: &str| &stats.iter().find(|(k, _)| k == name).unwrap().1;
    assert_eq!(stat("auth_cmds"), "5");
    assert_eq!(stat("auth_errors"), "0");
}
