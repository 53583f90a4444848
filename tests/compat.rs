//! Where clients see memcached 1.6.18's behaviour, byte for byte, in both
//! runtimes, and the few places where corecache is deliberately stricter
//! (docs/interop.md lists them).

mod common;

use common::{Raw, proc_status_bytes, spawn_binary};
use std::fmt::Write as _;

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format\r\n";

both_runtimes! {
    fn a_value_of_flush_all_never_runs_as_a_command(server) {
        let mut c = server.connect();
        c.expect("set keep 0 0 4\r\nkept\r\n", "STORED\r\n");
        // One token past the form is ignored, as memcached ignores it: the
        // data block is the value.
        c.expect(
            "set k 0 0 9 extra\r\nflush_all\r\nget keep k\r\n",
            "STORED\r\nVALUE keep 0 4\r\nkept\r\nVALUE k 0 9\r\nflush_all\r\nEND\r\n",
        );
        c.expect("cas k 0 0 9 1 extra\r\nflush_all\r\n", "EXISTS\r\n");
        assert_eq!(server.stat_u64("", "cmd_flush"), 0);
    }

    fn refused_storage_lines_never_run_their_data(server) {
        let mut keeper = server.connect();
        keeper.expect("set keep 0 0 4\r\nkept\r\n", "STORED\r\n");
        // Refused, with the block located: it is swallowed and the
        // connection goes on.
        let mut c = server.connect();
        let long_key = format!("set {} 0 0 9", "k".repeat(251));
        let long_ms = format!("ms {} 9", "k".repeat(251));
        for (line, reply) in [
            ("set k x 0 9", BAD_FORMAT),
            ("set k 0 x 9", BAD_FORMAT),
            ("cas k 0 0 9 x", BAD_FORMAT),
            (long_key.as_str(), BAD_FORMAT),
            ("ms k 9 Z", "CLIENT_ERROR invalid flag\r\n"),
            (long_ms.as_str(), BAD_FORMAT),
            ("set k x 0 9 noreply", ""),
        ] {
            c.expect(&format!("{line}\r\nflush_all\r\nmn\r\n"), &format!("{reply}MN\r\n"));
        }
        // The block cannot be located: answered, then closed, so nothing
        // after the line runs.
        for (input, reply) in [
            ("set k 0 0 9 a b\r\nflush_all\r\n", "ERROR\r\n"),
            ("set k 0 0 9 noreply extra\r\nflush_all\r\n", "ERROR\r\n"),
            ("set k 0 0\r\nflush_all\r\n", "ERROR\r\n"),
            ("cas k 0 0 9\r\nflush_all\r\n", "ERROR\r\n"),
            ("set k 0 0 -9\r\nflush_all\r\n", BAD_FORMAT),
            ("set k 0 0 nine\r\nflush_all\r\n", BAD_FORMAT),
            ("set k 0 0 nine noreply\r\nflush_all\r\n", ""),
            ("set k 0 0 2\r\nflush_all\r\n", "CLIENT_ERROR bad data chunk\r\n"),
            ("set k 0 0 2 noreply\r\nflush_all\r\n", ""),
            ("ms\r\nflush_all\r\n", "ERROR\r\n"),
            ("ms k\r\nflush_all\r\n", BAD_FORMAT),
            ("ms k -1\r\nflush_all\r\n", BAD_FORMAT),
            ("ms k x\r\nflush_all\r\n", BAD_FORMAT),
            ("ms k 2\r\nflush_all\r\n", "CLIENT_ERROR bad data chunk\r\n"),
        ] {
            let mut c = server.connect();
            c.send(input.as_bytes());
            assert_eq!(c.read_to_close(), reply, "{input:?}");
        }
        keeper.expect("get keep\r\n", "VALUE keep 0 4\r\nkept\r\nEND\r\n");
        assert_eq!(server.stat_u64("", "cmd_flush"), 0);
    }

    fn an_extra_token_is_ignored_as_memcached_ignores_it(server) {
        let mut c = server.connect();
        c.expect("set n 0 0 1\r\n5\r\n", "STORED\r\n");
        c.expect("touch n 0 2\r\n", "TOUCHED\r\n");
        c.expect("incr n 1 2\r\n", "6\r\n");
        c.expect("decr n 2 2\r\n", "4\r\n");
        c.expect("verbosity 1 2\r\n", "OK\r\n");
        c.expect("flush_all 0 2\r\n", "OK\r\n");
        c.expect("get n\r\n", "END\r\n");
        // memcached's `flush_all -1` flushes at once.
        c.expect("set n 0 0 1\r\n5\r\nflush_all -1\r\nget n\r\n", "STORED\r\nOK\r\nEND\r\n");
    }

    fn errors_to_noreply_requests_are_silent(server) {
        let mut c = server.connect();
        c.expect("set k 0 0 1\r\nv\r\n", "STORED\r\n");
        c.expect(
            "verbosity 1 noreply\r\n\
             verbosity noreply\r\n\
             verbosity x noreply\r\n\
             incr k x noreply\r\n\
             decr k x noreply\r\n\
             incr k 1 noreply\r\n\
             touch k abc noreply\r\n\
             flush_all abc noreply\r\n\
             delete k 10 noreply\r\n\
             delete k 0 noreply\r\n\
             mn\r\n",
            "MN\r\n",
        );
        // The effects of the requests that were valid did happen.
        c.expect("get k\r\n", "END\r\n");
        // A wrong token count is an unknown form: memcached answers `ERROR`
        // before it looks for `noreply`.
        c.expect("incr k 1 2 noreply\r\ndelete k 0 0 noreply\r\n", "ERROR\r\nERROR\r\n");
    }

    fn a_get_of_10000_keys_is_answered_in_full(server) {
        let mut c = server.connect();
        let keys: Vec<String> = (0..10_000).map(|i| format!("key:{i:05}")).collect();
        // Every other key is stored, so hits and misses interleave.
        let mut sets = String::new();
        for key in keys.iter().step_by(2) {
            write!(sets, "set {key} 7 0 {}\r\n{key}\r\n", key.len()).unwrap();
        }
        c.send(sets.as_bytes());
        assert_eq!(c.read_exact(5_000 * 8), "STORED\r\n".repeat(5_000).as_bytes());
        for command in ["get", "gets"] {
            // Over 100 KB on one line: memcached has no limit for gets.
            let line = format!("{command} {}\r\n", keys.join(" "));
            assert!(line.len() > 100_000);
            c.send(line.as_bytes());
            let reply = c.read_until(b"END\r\n");
            let reply = String::from_utf8(reply).unwrap();
            let mut lines = reply.split("\r\n");
            for key in keys.iter().step_by(2) {
                let header = lines.next().unwrap();
                let fields: Vec<&str> = header.split(' ').collect();
                assert_eq!(fields[..4], ["VALUE", key.as_str(), "7", "9"], "{header}");
                assert_eq!(fields.len(), if command == "gets" { 5 } else { 4 });
                assert_eq!(lines.next(), Some(key.as_str()));
            }
            assert_eq!(lines.next(), Some("END"));
        }
        server.assert_forwarded();
    }

    fn a_long_line_of_another_command_closes_the_connection(server) {
        let mut c = server.connect();
        let mut line = b"set k 0 0 1 ".to_vec();
        line.resize(4096, b'x');
        c.send(&line);
        assert_eq!(c.read_to_close(), "CLIENT_ERROR line too long\r\n");
    }
}

/// A get line far longer than any buffer the server keeps is answered
/// while the server's peak RSS hardly moves: the keys are taken in pieces,
/// never held whole.
#[test]
fn a_20_mb_get_line_is_streamed_in_bounded_memory() {
    let (child, addr) = spawn_binary(&["--threads", "2", "--no-pin"]);
    let pid = child.0.id();
    let mut c = Raw::connect(addr);
    c.expect("set present 0 0 1\r\nx\r\n", "STORED\r\n");
    let before = proc_status_bytes(pid, "VmHWM");
    // 100,000 missing keys of 200 bytes, then one that is there.
    c.send(b"get");
    let mut chunk = Vec::new();
    for i in 0..100_000 {
        write!(&mut chunk as &mut dyn std::io::Write, " {i:0>200}").ok();
        if chunk.len() > 1 << 20 {
            c.send(&chunk);
            chunk.clear();
        }
    }
    chunk.extend_from_slice(b" present\r\n");
    c.send(&chunk);
    let reply = c.read_until(b"END\r\n");
    assert_eq!(reply, b"VALUE present 0 1\r\nx\r\nEND\r\n");
    let grew = proc_status_bytes(pid, "VmHWM").saturating_sub(before);
    assert!(
        grew < 8 << 20,
        "peak RSS grew by {} KiB for a 20 MB line",
        grew >> 10
    );
}
