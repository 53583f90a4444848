//! The text protocol over real TCP, byte for byte, in both runtimes.

mod common;

use common::{Raw, key_on_thread};
use corecache::config::RuntimeKind;
use corecache::storage::wheel::TICK_MS;
use std::fmt::Write as _;
use std::time::Duration;

both_runtimes! {
    fn storage_commands(server) {
        let mut c = server.connect();
        c.expect("set k 5 0 3\r\nabc\r\n", "STORED\r\n");
        c.expect("get k\r\n", "VALUE k 5 3\r\nabc\r\nEND\r\n");
        c.expect("add k 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
        c.expect("add fresh 1 0 1\r\nx\r\n", "STORED\r\n");
        c.expect("replace missing 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
        c.expect("replace k 9 0 2\r\nxy\r\n", "STORED\r\n");
        c.expect("append k 0 0 2\r\n>>\r\n", "STORED\r\n");
        c.expect("prepend k 0 0 2\r\n<<\r\n", "STORED\r\n");
        // append/prepend keep the flags of the item.
        c.expect("get k\r\n", "VALUE k 9 6\r\n<<xy>>\r\nEND\r\n");
        c.expect("append missing 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
        c.expect("prepend missing 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
        c.expect("set empty 4294967295 0 0\r\n\r\n", "STORED\r\n");
        c.expect("get empty\r\n", "VALUE empty 4294967295 0\r\n\r\nEND\r\n");
        c.expect("delete k\r\n", "DELETED\r\n");
        c.expect("delete k\r\n", "NOT_FOUND\r\n");
        c.expect("delete fresh 0\r\n", "DELETED\r\n");
        c.expect("get k fresh\r\n", "END\r\n");
        // Values may hold any bytes, \r\n included.
        c.expect("set bin 0 0 6\r\n\r\n\0\x01\r\n\r\n", "STORED\r\n");
        c.expect("get bin\r\n", "VALUE bin 0 6\r\n\r\n\0\x01\r\n\r\nEND\r\n");
    }

    fn cas_conflicts_between_two_connections(server) {
        let mut a = server.connect();
        let mut b = server.connect();
        a.expect("set c 0 0 1\r\n1\r\n", "STORED\r\n");
        let cas = gets_cas(&mut a, "c");
        assert_eq!(gets_cas(&mut b, "c"), cas);
        b.expect(&format!("cas c 0 0 1 {cas}\r\n2\r\n"), "STORED\r\n");
        // a's token is stale now.
        a.expect(&format!("cas c 0 0 1 {cas}\r\n3\r\n"), "EXISTS\r\n");
        let fresh = gets_cas(&mut a, "c");
        assert_ne!(fresh, cas);
        a.expect(&format!("cas c 0 0 1 {fresh}\r\n3\r\n"), "STORED\r\n");
        a.expect("get c\r\n", "VALUE c 0 1\r\n3\r\nEND\r\n");
        b.expect("cas nothing 0 0 1 1\r\nx\r\n", "NOT_FOUND\r\n");
        // Every store makes a fresh token.
        let before = gets_cas(&mut a, "c");
        a.expect("set c 0 0 1\r\n3\r\n", "STORED\r\n");
        assert_ne!(gets_cas(&mut a, "c"), before);
        assert_eq!(server.stat_u64("", "cas_hits"), 2);
        assert_eq!(server.stat_u64("", "cas_badval"), 1);
        assert_eq!(server.stat_u64("", "cas_misses"), 1);
    }

    fn get_of_100_keys_spanning_threads_keeps_key_order(server) {
        let mut c = server.connect();
        let remote = remote_to(&mut c);
        let keys: Vec<String> = (0..100).map(|i| format!("multi:{i}")).collect();
        // Every third key is missing; the rest hold their own name.
        let mut expected = String::new();
        let mut forwarded = 0;
        for (i, key) in keys.iter().enumerate() {
            forwarded += remote(key);
            if i % 3 == 0 {
                continue;
            }
            c.expect(&format!("set {key} {i} 0 {}\r\n{key}\r\n", key.len()), "STORED\r\n");
            write!(expected, "VALUE {key} {i} {}\r\n{key}\r\n", key.len()).unwrap();
            forwarded += remote(key);
        }
        expected.push_str("END\r\n");
        c.expect(&format!("get {}\r\n", keys.join(" ")), &expected);
        server.assert_forwarded_exactly(forwarded);
    }

    fn a_pipelined_burst_of_1000_mixed_requests_is_answered_in_order(server) {
        let mut c = server.connect();
        let remote = remote_to(&mut c);
        let mut request = String::new();
        let mut expected = String::new();
        let mut forwarded = 0;
        for i in 0..250 {
            let key = format!("burst:{i}");
            // Four requests on `key`, and the get's second key.
            forwarded += 4 * remote(&key) + remote("burst:none");
            let value = format!("v{i}");
            write!(request, "set {key} {i} 0 {}\r\n{value}\r\n", value.len()).unwrap();
            expected.push_str("STORED\r\n");
            write!(request, "get {key} burst:none\r\n").unwrap();
            write!(expected, "VALUE {key} {i} {}\r\n{value}\r\nEND\r\n", value.len()).unwrap();
            if i % 2 == 0 {
                write!(request, "delete {key}\r\n").unwrap();
                expected.push_str("DELETED\r\n");
            } else {
                write!(request, "incr {key} 1\r\n").unwrap();
                expected.push_str("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
            }
            write!(request, "touch {key} 100\r\n").unwrap();
            expected.push_str(if i % 2 == 0 { "NOT_FOUND\r\n" } else { "TOUCHED\r\n" });
        }
        c.expect(&request, &expected);
        // Keys of both threads were in the burst: every op on the other
        // thread's keys crossed over, and only those.
        assert!(forwarded > 0);
        server.assert_forwarded_exactly(forwarded);
    }

    fn a_long_get_line_arriving_in_small_pieces(server) {
        let mut c = server.connect();
        c.expect("set piece 0 0 2\r\nok\r\n", "STORED\r\n");
        // About 50 KB of keys on one line, in 97-byte writes.
        let keys: Vec<String> = (0..200).map(|i| format!("{i:0>250}")).collect();
        let line = format!("get {} piece\r\n", keys.join(" "));
        server.send_in_separate_reads(&mut c, line.as_bytes().chunks(97));
        let expected = "VALUE piece 0 2\r\nok\r\nEND\r\n";
        assert_eq!(String::from_utf8(c.read_exact(expected.len())).unwrap(), expected);
    }

    fn a_request_written_one_byte_at_a_time(server) {
        let mut c = server.connect();
        let request = b"set slow 3 0 5\r\nhello\r\nget slow\r\n";
        server.send_in_separate_reads(&mut c, request.chunks(1));
        let expected = "STORED\r\nVALUE slow 3 5\r\nhello\r\nEND\r\n";
        assert_eq!(String::from_utf8(c.read_exact(expected.len())).unwrap(), expected);
    }

    fn noreply_suppresses_replies_but_not_effects(server) {
        let mut c = server.connect();
        c.send(b"set n 0 0 1 noreply\r\n5\r\nincr n 2 noreply\r\nadd n 0 0 1 noreply\r\nx\r\n");
        c.send(b"append n 0 0 1 noreply\r\n0\r\nprepend n 0 0 1 noreply\r\n1\r\ntouch n 100 noreply\r\n");
        c.send(b"set m 0 0 1 noreply\r\nm\r\ndelete gone noreply\r\nverbosity 1 noreply\r\n");
        // Too large: refused, and its data swallowed, without a word.
        c.send(b"set k 0 0 2000000 noreply\r\n");
        c.send(&vec![b'z'; 2_000_000]);
        c.send(b"\r\n");
        // Nothing came back for any of those: the next reply is the get's,
        // and it shows every effect (the add refused, as n existed).
        c.expect("get n m k\r\n", "VALUE n 0 3\r\n170\r\nVALUE m 0 1\r\nm\r\nEND\r\n");
        c.expect("mg n t\r\n", "HD t100\r\n");
        c.expect("decr n 70 noreply\r\nget n\r\n", "VALUE n 0 3\r\n100\r\nEND\r\n");
        c.expect("delete m noreply\r\nget m\r\n", "END\r\n");
        c.expect("flush_all 0 noreply\r\nget n\r\n", "END\r\n");
        assert_eq!(server.stat_u64("", "store_too_large"), 1);
    }

    fn incr_and_decr(server) {
        let mut c = server.connect();
        c.expect("set n 0 0 2\r\n10\r\n", "STORED\r\n");
        c.expect("incr n 5\r\n", "15\r\n");
        c.expect("decr n 20\r\n", "0\r\n");
        c.expect("set n 0 0 20\r\n18446744073709551615\r\n", "STORED\r\n");
        c.expect("incr n 2\r\n", "1\r\n");
        // As memcached does: a result shorter than the value it replaces is
        // written in place, padded with spaces to the old length.
        c.expect("get n\r\n", &format!("VALUE n 0 20\r\n1{}\r\nEND\r\n", " ".repeat(19)));
        c.expect("incr missing 1\r\n", "NOT_FOUND\r\n");
        c.expect("decr missing 1\r\n", "NOT_FOUND\r\n");
        c.expect("incr n abc\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n");
        c.expect("set s 0 0 2\r\nab\r\n", "STORED\r\n");
        c.expect("incr s 1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
        assert_eq!(server.stat_u64("", "incr_hits"), 3);
        assert_eq!(server.stat_u64("", "incr_misses"), 1);
        assert_eq!(server.stat_u64("", "decr_hits"), 1);
        assert_eq!(server.stat_u64("", "decr_misses"), 1);
    }

    fn touch_gat_and_gats(server) {
        let mut c = server.connect();
        c.expect("set t 1 1 1\r\nx\r\n", "STORED\r\n");
        c.expect("touch t 0\r\n", "TOUCHED\r\n");
        c.expect("touch missing 10\r\n", "NOT_FOUND\r\n");
        c.expect("gat 0 t missing\r\n", "VALUE t 1 1\r\nx\r\nEND\r\n");
        let cas = gets_cas(&mut c, "t");
        c.expect("gats 100 t\r\n", &format!("VALUE t 1 1 {cas}\r\nx\r\nEND\r\n"));
        // The touches replaced its 1 s TTL: it outlives it, with 99 s left.
        server.advance(Duration::from_secs(1));
        c.expect("get t\r\n", "VALUE t 1 1\r\nx\r\nEND\r\n");
        c.expect("mg t t\r\n", "HD t99\r\n");
        // And gat can give it a past deadline.
        c.expect("gat -1 t\r\n", "VALUE t 1 1\r\nx\r\nEND\r\n");
        c.expect("get t\r\n", "END\r\n");
        // As memcached counts them: every touch and every key of a
        // gat/gats is a touch command, a hit or a miss.
        assert_eq!(server.stat_u64("", "cmd_touch"), 6);
        assert_eq!(server.stat_u64("", "touch_hits"), 4);
        assert_eq!(server.stat_u64("", "touch_misses"), 2);
    }

    fn expiry(server) {
        let mut c = server.connect();
        c.expect("set short 0 1 1\r\nx\r\n", "STORED\r\n");
        c.expect("set unread 0 1 1\r\nx\r\n", "STORED\r\n");
        c.expect("set forever 0 0 1\r\nx\r\n", "STORED\r\n");
        c.expect("set gone 0 -1 1\r\nx\r\n", "STORED\r\n");
        c.expect("get gone\r\n", "END\r\n");
        // An absolute unix time in the past is expired at once; one in the
        // future expires when the server's `time` reaches it.
        c.expect("set past 0 1000000000 1\r\nx\r\n", "STORED\r\n");
        c.expect("get past\r\n", "END\r\n");
        let later = server.stat_u64("", "time") + 2;
        c.expect(&format!("set later 0 {later} 1\r\nx\r\n"), "STORED\r\n");
        // A 1 s TTL lasts exactly 1000 ms of server time.
        server.advance(Duration::from_millis(999));
        c.expect("get short later\r\n", "VALUE short 0 1\r\nx\r\nVALUE later 0 1\r\nx\r\nEND\r\n");
        server.advance(Duration::from_millis(1));
        c.expect("get short forever\r\n", "VALUE forever 0 1\r\nx\r\nEND\r\n");
        c.expect("touch short 10\r\n", "NOT_FOUND\r\n");
        // With no read, the wheel reclaims `unread` within one of its
        // slots, and nothing else.
        server.advance(Duration::from_millis(TICK_MS));
        server.wait_for_ticks();
        assert_eq!(server.stat_u64("", "curr_items"), 2);
        // `short` went at the read, `unread` (never fetched) to the wheel.
        assert_eq!(server.stat_u64("", "reclaimed"), 2);
        assert_eq!(server.stat_u64("", "expired_unfetched"), 1);
        assert_eq!(server.stat_u64("", "time"), later - 1);
        c.expect("get later\r\n", "VALUE later 0 1\r\nx\r\nEND\r\n");
        server.advance(Duration::from_secs(1));
        assert_eq!(server.stat_u64("", "time"), later);
        c.expect("get forever later unread\r\n", "VALUE forever 0 1\r\nx\r\nEND\r\n");
    }

    fn flush_all_now_and_later(server) {
        let mut c = server.connect();
        for i in 0..20 {
            c.expect(&format!("set f{i} 0 0 1\r\nx\r\n"), "STORED\r\n");
        }
        // Pipelined: the set before flush_all is flushed, the one after is not.
        c.expect(
            "set before 0 0 1\r\nb\r\nflush_all\r\nset after 0 0 1\r\na\r\nget before after f1\r\n",
            "STORED\r\nOK\r\nSTORED\r\nVALUE after 0 1\r\na\r\nEND\r\n",
        );
        // The flushed items' memory comes back in the background.
        assert_eq!(server.wait_for_stat("curr_items", 1), 1);
        c.expect("flush_all 1\r\n", "OK\r\n");
        server.advance(Duration::from_millis(999));
        c.expect("get after\r\n", "VALUE after 0 1\r\na\r\nEND\r\n");
        server.advance(Duration::from_millis(1));
        c.expect("get after\r\n", "END\r\n");
        // A store in the very millisecond the flush falls due goes with
        // it; one a millisecond later stays.
        c.expect("set during 0 0 1\r\nd\r\nget during\r\n", "STORED\r\nEND\r\n");
        server.advance(Duration::from_millis(1));
        c.expect("set new 0 0 1\r\nn\r\n", "STORED\r\n");
        c.expect("get new\r\n", "VALUE new 0 1\r\nn\r\nEND\r\n");
        c.expect("flush_all soon\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
        assert_eq!(server.stat_u64("", "cmd_flush"), 2);
    }

    fn errors_keep_the_connection_in_sync(server) {
        let mut c = server.connect();
        c.expect("bogus\r\n", "ERROR\r\n");
        c.expect("\r\n", "ERROR\r\n");
        c.expect("get\r\n", "ERROR\r\n");
        c.expect("set k abc 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\n");
        let long = "k".repeat(251);
        c.expect(&format!("get {long}\r\n"), "CLIENT_ERROR bad command line format\r\n");
        c.expect(&format!("set {long} 0 0 1\r\nx\r\n"), "CLIENT_ERROR bad command line format\r\n");
        // (Storage lines whose data block cannot be located close the
        // connection: tests/compat.rs.)
        c.expect("delete k 10\r\n", "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
        c.expect("touch k x\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
        c.expect("shutdown\r\n", "ERROR: shutdown not enabled\r\n");
        // A value over the item limit is refused and its data swallowed,
        // even when it arrives in pieces after the reply.
        c.expect("set big 0 0 2000000\r\n", "SERVER_ERROR object too large for cache\r\n");
        let chunk = vec![b'z'; 100_000];
        for _ in 0..20 {
            c.send(&chunk);
        }
        c.expect("\r\nget big\r\n", "END\r\n");
        assert_eq!(server.stat_u64("", "store_too_large"), 1);
        // An existing item is removed by a refused overwrite (memcached does).
        c.expect("set big 0 0 1\r\nx\r\n", "STORED\r\n");
        c.send(b"set big 0 0 1048577\r\n");
        c.send(&vec![b'z'; 1_048_577]);
        c.expect("\r\nget big\r\n", "SERVER_ERROR object too large for cache\r\nEND\r\n");
        // Large values that fit go through.
        let value = "v".repeat(1_000_000);
        c.expect(&format!("set big 0 0 {}\r\n{value}\r\n", value.len()), "STORED\r\n");
        c.expect("get big\r\n", &format!("VALUE big 0 {}\r\n{value}\r\nEND\r\n", value.len()));
        c.expect("version\r\n", &format!("VERSION 1.6.18-corecache-{}\r\n", env!("CARGO_PKG_VERSION")));
        c.expect("verbosity 1\r\n", "OK\r\n");
        c.expect("stats nonsense\r\n", "ERROR\r\n");
    }

    fn an_endless_line_closes_only_its_connection(server) {
        let mut bad = server.connect();
        let mut good = server.connect();
        good.expect("set k 0 0 1\r\nx\r\n", "STORED\r\n");
        bad.send(&vec![b'a'; 70_000]);
        bad.expect("", "CLIENT_ERROR line too long\r\n");
        assert!(bad.is_closed());
        good.expect("get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    }

    fn garbage_from_one_client_does_not_disturb_another(server) {
        let mut good = server.connect();
        good.expect("set g 0 0 1\r\nx\r\n", "STORED\r\n");
        let mut rng = Xorshift(42);
        for _ in 0..20 {
            let mut bad = server.connect();
            let mut junk: Vec<u8> = (0..50_000).map(|_| rng.next() as u8).collect();
            // Sprinkle in line ends and command words so parsing goes deep.
            for word in [&b"\r\nset k 0 0 "[..], b"\r\nmg k v ", b"\r\nget ", b"\n"].iter().cycle().take(200) {
                let at = (rng.next() as usize) % (junk.len() - 20);
                junk[at..at + word.len()].copy_from_slice(word);
            }
            bad.send(&junk);
            // Whatever the garbage got back, the other client is served.
            good.expect("get g\r\n", "VALUE g 0 1\r\nx\r\nEND\r\n");
        }
    }

    fn quit_answers_what_came_before_and_closes(server) {
        let mut c = server.connect();
        c.send(b"set q 0 0 1\r\nx\r\nget q\r\nquit\r\nget q\r\n");
        let expected = "STORED\r\nVALUE q 0 1\r\nx\r\nEND\r\n";
        assert_eq!(String::from_utf8(c.read_exact(expected.len())).unwrap(), expected);
        assert!(c.is_closed());
    }

    fn stats_report_what_happened(server) {
        let mut c = server.connect();
        c.expect("set a 0 0 1\r\n1\r\nget a b\r\ndelete b\r\n", "STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\nNOT_FOUND\r\n");
        let stats = c.stats("");
        let get = |name: &str| {
            stats
                .iter()
                .find(|(k, _)| k == name)
                .unwrap_or_else(|| panic!("missing {name}"))
                .1
                .clone()
        };
        for name in [
            "pid", "uptime", "time", "version", "curr_connections", "total_connections",
            "cmd_get", "cmd_set", "cmd_flush", "cmd_touch", "get_hits", "get_misses",
            "get_expired", "delete_hits", "delete_misses", "incr_hits", "incr_misses",
            "decr_hits", "decr_misses", "cas_hits", "cas_misses", "cas_badval", "touch_hits",
            "touch_misses", "curr_items", "bytes", "limit_maxbytes", "threads", "evictions",
            "runtime", "shards", "forwarded_requests", "forward_messages",
        ] {
            get(name);
        }
        assert_eq!(get("pid"), std::process::id().to_string());
        assert_eq!(get("cmd_get"), "2");
        assert_eq!(get("get_hits"), "1");
        assert_eq!(get("get_misses"), "1");
        assert_eq!(get("cmd_set"), "1");
        assert_eq!(get("delete_misses"), "1");
        assert_eq!(get("curr_items"), "1");
        assert_eq!(get("threads"), "2");
        assert_eq!(get("shards"), "4");
        assert_eq!(get("limit_maxbytes"), (64 << 20).to_string());
        // `a`: a 40-byte item header, a 1-byte key and a 1-byte value.
        assert_eq!(get("bytes"), "42");
        assert_eq!(get("curr_connections"), "1");
        assert_eq!(get("total_connections"), "1");

        let threads = c.stats("threads");
        let total = |field: &str| -> u64 {
            (0..2)
                .map(|thread| {
                    let name = format!("thread:{thread}:{field}");
                    let (_, v) = threads.iter().find(|(k, _)| *k == name).unwrap_or_else(|| panic!("missing {name}"));
                    v.parse::<u64>().unwrap()
                })
                .sum()
        };
        assert_eq!(total("curr_connections"), 1);
        assert_eq!(total("total_connections"), 1);
        // set, get, delete, stats, and this stats threads.
        assert_eq!(total("cmd_total"), 5);
        let forwarded: u64 = get("forwarded_requests").parse().unwrap();
        assert_eq!(total("forwarded_out"), forwarded);
        assert_eq!(total("forwarded_in"), forwarded);
        assert_eq!(total("forward_messages").to_string(), get("forward_messages"));
        let settings = c.stats("settings");
        assert!(settings.iter().any(|(k, v)| k == "num_threads" && v == "2"));
        assert!(settings.iter().any(|(k, v)| k == "tcpport" && *v == server.addr.port().to_string()));

        // stats conns lists every open connection, this one included.
        let mut other = server.connect();
        other.expect("version\r\n", &format!("VERSION 1.6.18-corecache-{}\r\n", env!("CARGO_PKG_VERSION")));
        let conns = c.stats("conns");
        let mine = format!("tcp:{}", c.stream.local_addr().unwrap());
        let theirs = format!("tcp:{}", other.stream.local_addr().unwrap());
        assert!(conns.iter().any(|(k, v)| k.ends_with(":addr") && *v == mine), "{conns:?}");
        assert!(conns.iter().any(|(k, v)| k.ends_with(":addr") && *v == theirs), "{conns:?}");
        // Idle seconds, uptime and time follow the server's clock.
        server.advance(Duration::from_secs(3));
        let conns = c.stats("conns");
        let idle = |addr: &str| {
            let (key, _) = conns.iter().find(|(k, v)| k.ends_with(":addr") && v == addr).unwrap();
            let name = key.replace(":addr", ":secs_since_last_cmd");
            conns.iter().find(|(k, _)| *k == name).unwrap().1.clone()
        };
        assert_eq!((idle(&mine).as_str(), idle(&theirs).as_str()), ("0", "3"), "{conns:?}");
        let later = c.stats("");
        let stat = |name: &str| -> u64 {
            later.iter().find(|(k, _)| k == name).unwrap().1.parse().unwrap()
        };
        assert_eq!(get("uptime"), "0");
        assert_eq!(stat("uptime"), 3);
        assert_eq!(stat("time"), get("time").parse::<u64>().unwrap() + 3);
        drop(other);

        c.expect("stats reset\r\n", "RESET\r\n");
        assert_eq!(server.stat_u64("", "cmd_get"), 0);
        assert_eq!(server.stat_u64("", "curr_items"), 1);
    }

    fn stats_slabs_and_items_account_for_every_item(server) {
        let mut c = server.connect();
        // 30 small and 10 larger items land in two different slab classes.
        for i in 0..40 {
            let len = if i < 30 { 10 } else { 5000 };
            c.expect(&format!("set s{i} 0 0 {len}\r\n{}\r\n", "x".repeat(len)), "STORED\r\n");
        }
        let slabs = c.stats("slabs");
        let sum = |stats: &[(String, String)], suffix: &str| -> u64 {
            stats
                .iter()
                .filter(|(k, _)| k.ends_with(suffix))
                .map(|(_, v)| v.parse::<u64>().unwrap())
                .sum()
        };
        assert_eq!(sum(&slabs, ":used_chunks"), 40, "{slabs:?}");
        assert_eq!(sum(&slabs, ":cmd_set"), 40);
        let active: u64 = slabs.iter().find(|(k, _)| k == "active_slabs").unwrap().1.parse().unwrap();
        assert_eq!(active, 2, "{slabs:?}");
        // Memory is taken in whole 1 MiB slab pages.
        assert_eq!(sum(&slabs, "total_malloced"), sum(&slabs, ":total_pages") << 20);
        let items = c.stats("items");
        assert_eq!(sum(&items, ":number"), 40, "{items:?}");
        assert_eq!(items.iter().filter(|(k, _)| k.ends_with(":number")).count(), 2);
    }

    fn keys_owned_by_each_thread_work_from_any_connection(server) {
        let local = key_on_thread(0, 0);
        let remote = key_on_thread(1, 0);
        for thread in 0..2 {
            // Thread-per-core: from a connection each thread serves.
            let mut c = match server.runtime {
                RuntimeKind::ThreadPerCore => server.connect_on(thread),
                RuntimeKind::WorkStealing => server.connect(),
            };
            c.expect(&format!("set {local} 0 0 1\r\nL\r\nset {remote} 0 0 1\r\nR\r\n"), "STORED\r\nSTORED\r\n");
            c.expect(
                &format!("get {remote} {local}\r\n"),
                &format!("VALUE {remote} 0 1\r\nR\r\nVALUE {local} 0 1\r\nL\r\nEND\r\n"),
            );
        }
    }

    fn four_connections_set_and_get_10000_random_keys_each(server) {
        let handles: Vec<_> = (0..4)
            .map(|worker| {
                let addr = server.addr;
                std::thread::spawn(move || {
                    let mut c = Raw::connect(addr);
                    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15 ^ (worker + 1));
                    let keys: Vec<String> =
                        (0..10_000).map(|_| format!("w{worker}:{:016x}", rng.next())).collect();
                    // In pipelined chunks of 100, like a real client would.
                    for chunk in keys.chunks(100) {
                        let mut request = String::new();
                        for key in chunk {
                            write!(request, "set {key} {worker} 0 {}\r\n{key}\r\n", key.len()).unwrap();
                        }
                        c.expect(&request, &"STORED\r\n".repeat(chunk.len()));
                    }
                    for chunk in keys.chunks(100) {
                        let mut expected = String::new();
                        for key in chunk {
                            write!(expected, "VALUE {key} {worker} {}\r\n{key}\r\n", key.len()).unwrap();
                        }
                        expected.push_str("END\r\n");
                        c.expect(&format!("get {}\r\n", chunk.join(" ")), &expected);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("worker");
        }
        assert_eq!(server.stat_u64("", "curr_items"), 40_000);
        assert_eq!(server.stat_u64("", "get_hits"), 40_000);
        assert_eq!(server.stat_u64("", "get_misses"), 0);
    }

}

/// For a connection: 1 for a key another thread owns (its ops are
/// forwarded), 0 for one the connection's own thread owns.
fn remote_to(c: &mut Raw) -> impl Fn(&str) -> u64 + use<> {
    let here = c.thread();
    move |key| u64::from(common::owner(key) != here)
}

/// The CAS token of `key`, read with `gets`.
fn gets_cas(c: &mut Raw, key: &str) -> u64 {
    c.send(format!("gets {key}\r\n").as_bytes());
    let reply = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
    let header = reply.lines().next().unwrap();
    header
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{reply:?}"))
}

/// A tiny deterministic generator for test keys.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn too_many_connections_are_refused() {
    for runtime in [RuntimeKind::ThreadPerCore, RuntimeKind::WorkStealing] {
        let server = common::TestServer::with(runtime, |config| config.max_connections = 2);
        let version = format!("VERSION 1.6.18-corecache-{}\r\n", env!("CARGO_PKG_VERSION"));
        let mut first = server.connect();
        let mut second = server.connect();
        first.expect("version\r\n", &version);
        second.expect("version\r\n", &version);
        let mut third = server.connect();
        third.expect("", "ERROR Too many open connections\r\n");
        assert!(third.is_closed());
        let stats = first.stats("");
        assert!(stats.contains(&("rejected_connections".to_string(), "1".to_string())));
        drop(first);
        // The slot comes back once the first connection is gone (the server
        // notices the close asynchronously, so poll for it).
        let mut refused = 0;
        common::eventually("the closed connection's slot is free again", || {
            let mut again = server.connect();
            again.send(b"version\r\n");
            let reply = again.read_until(b"\r\n");
            if reply != version.as_bytes() {
                assert_eq!(reply, b"ERROR Too many open connections\r\n");
                refused += 1;
            }
            reply == version.as_bytes()
        });
        let stats = second.stats("");
        let rejected = (
            String::from("rejected_connections"),
            (1 + refused).to_string(),
        );
        assert!(stats.contains(&rejected), "{stats:?}");
    }
}

#[test]
fn so_reuseport_spreads_connections_over_both_threads() {
    let server = common::TestServer::start(corecache::config::RuntimeKind::ThreadPerCore);
    // The kernel picks a listener by hashing the connection's addresses:
    // with 32 connections, both threads get some (all on one thread has a
    // chance of 2^-31).
    let mut conns: Vec<Raw> = (0..32).map(|_| server.connect()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.expect(&format!("set spread:{i} 0 0 1\r\nx\r\n"), "STORED\r\n");
    }
    let threads = conns[0].stats("threads");
    for thread in 0..2 {
        let get = |field: &str| -> u64 {
            let name = format!("thread:{thread}:{field}");
            threads
                .iter()
                .find(|(k, _)| *k == name)
                .unwrap()
                .1
                .parse()
                .unwrap()
        };
        assert!(
            get("total_connections") > 0,
            "thread {thread} got no connection: {threads:?}"
        );
        assert!(
            get("cmd_total") > 0,
            "thread {thread} served nothing: {threads:?}"
        );
    }
    let total = |field: &str| -> u64 {
        threads
            .iter()
            .filter(|(k, _)| k.ends_with(&format!(":{field}")))
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(total("total_connections"), 32);
    assert_eq!(total("curr_connections"), 32);
    // A set on each, and the stats threads that asked.
    assert_eq!(total("cmd_total"), 33);
}

/// Per-thread values of `field` in a `stats threads` reply.
fn per_thread(stats: &[(String, String)], field: &str) -> Vec<u64> {
    (0..2)
        .map(|thread| {
            let name = format!("thread:{thread}:{field}");
            let (_, value) = stats.iter().find(|(k, _)| *k == name).unwrap();
            value.parse().unwrap()
        })
        .collect()
}

#[test]
fn work_stealing_counts_each_connection_on_the_worker_serving_it() {
    let server = common::TestServer::start(RuntimeKind::WorkStealing);
    let clients = 8;
    let mut conns: Vec<Raw> = (0..clients).map(|_| server.connect()).collect();
    let mut burst = String::new();
    let mut replies = String::new();
    for i in 0..100 {
        write!(burst, "set ws:{i} 0 0 1\r\nx\r\nget ws:{i}\r\n").unwrap();
        write!(replies, "STORED\r\nVALUE ws:{i} 0 1\r\nx\r\nEND\r\n").unwrap();
    }
    // Every client busy at once, until both workers have run (and count)
    // some of the connections.
    let mut rounds = 0;
    common::eventually("connections counted on both workers", || {
        std::thread::scope(|scope| {
            for c in &mut conns {
                scope.spawn(|| c.expect(&burst, &replies));
            }
        });
        rounds += 1;
        let open = per_thread(&conns[0].stats("threads"), "curr_connections");
        assert_eq!(open.iter().sum::<u64>(), clients as u64, "{open:?}");
        open.iter().all(|&n| n > 0)
    });
    // Idle now: `stats conns` and `stats threads` in one batch agree on
    // which worker holds each connection, and every count adds up.
    conns[0].send(b"stats conns\r\nstats threads\r\n");
    let mut reply = Vec::new();
    while reply.windows(5).filter(|w| w == b"END\r\n").count() < 2 {
        reply.extend(conns[0].read_until(b"END\r\n"));
    }
    let stats: Vec<(String, String)> = String::from_utf8(reply)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut parts = line.strip_prefix("STAT ")?.splitn(2, ' ');
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    let listed = |thread: u64| {
        let value = thread.to_string();
        stats
            .iter()
            .filter(|(k, v)| k.ends_with(":thread") && *v == value)
            .count() as u64
    };
    assert_eq!(
        per_thread(&stats, "curr_connections"),
        [listed(0), listed(1)],
        "{stats:?}"
    );
    assert_eq!(
        per_thread(&stats, "total_connections").iter().sum::<u64>(),
        clients as u64
    );
    // 200 requests per client per round, a stats threads per round, and
    // the two stats just sent.
    let requests = 200 * clients as u64 * rounds + rounds + 2;
    assert_eq!(
        per_thread(&stats, "cmd_total").iter().sum::<u64>(),
        requests
    );
}

#[test]
fn shutdown_completes_while_a_client_does_not_read() {
    for runtime in [RuntimeKind::ThreadPerCore, RuntimeKind::WorkStealing] {
        let server = common::TestServer::start(runtime);
        let mut c = server.connect();
        let value = "x".repeat(500_000);
        c.expect(
            &format!("set big 0 0 {}\r\n{value}\r\n", value.len()),
            "STORED\r\n",
        );
        // About 100 MB of replies that are never read: once the server has
        // read the requests, its writes block when the socket buffers fill.
        server.send_and_wait_read(&mut c, "get big\r\n".repeat(200).as_bytes());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(server);
            let _ = done_tx.send(());
        });
        // Generous: the server gives a non-reading client one second.
        let finished = done_rx.recv_timeout(Duration::from_secs(30)).is_ok();
        drop(c);
        assert!(
            finished,
            "{runtime:?}: shutdown waits forever on a client that does not read"
        );
    }
}
