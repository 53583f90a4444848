//! The binary protocol over real TCP, byte for byte, in both runtimes.
//! Expected packets were checked against memcached 1.6.18 side by side
//! (status, body, key and extras; CAS values are the server's own).

mod common;

use common::{Raw, key_on_thread};
use std::time::Duration;

// Opcodes.
const GET: u8 = 0x00;
const SET: u8 = 0x01;
const ADD: u8 = 0x02;
const REPLACE: u8 = 0x03;
const DELETE: u8 = 0x04;
const INCR: u8 = 0x05;
const DECR: u8 = 0x06;
const QUIT: u8 = 0x07;
const FLUSH: u8 = 0x08;
const GETQ: u8 = 0x09;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const GETK: u8 = 0x0c;
const GETKQ: u8 = 0x0d;
const APPEND: u8 = 0x0e;
const PREPEND: u8 = 0x0f;
const STAT: u8 = 0x10;
const SETQ: u8 = 0x11;
const ADDQ: u8 = 0x12;
const DELETEQ: u8 = 0x14;
const INCRQ: u8 = 0x15;
const QUITQ: u8 = 0x17;
const FLUSHQ: u8 = 0x18;
const APPENDQ: u8 = 0x19;
const VERBOSITY: u8 = 0x1b;
const TOUCH: u8 = 0x1c;
const GAT: u8 = 0x1d;
const GATQ: u8 = 0x1e;
const SASL_LIST: u8 = 0x20;
const SASL_AUTH: u8 = 0x21;
const SASL_STEP: u8 = 0x22;
const GATK: u8 = 0x23;
const GATKQ: u8 = 0x24;

// Statuses and the bodies memcached sends with them.
const NOT_FOUND: (u16, &[u8]) = (0x01, b"Not found");
const EXISTS: (u16, &[u8]) = (0x02, b"Data exists for key.");
const TOO_LARGE: (u16, &[u8]) = (0x03, b"Too large.");
const INVALID: (u16, &[u8]) = (0x04, b"Invalid arguments");
const NOT_STORED: (u16, &[u8]) = (0x05, b"Not stored.");
const NON_NUMERIC: (u16, &[u8]) = (0x06, b"Non-numeric server-side value for incr or decr");
const UNKNOWN: (u16, &[u8]) = (0x81, b"Unknown command");

/// A request packet.
fn request(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// A response packet, as the server must write it.
fn response(
    opcode: u8,
    status: u16,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
    opaque: u32,
    cas: u64,
) -> Vec<u8> {
    let mut p = request(opcode, extras, key, value, opaque, cas);
    p[0] = 0x81;
    p[6..8].copy_from_slice(&status.to_be_bytes());
    p
}

fn ok(opcode: u8, opaque: u32, cas: u64) -> Vec<u8> {
    response(opcode, 0, &[], &[], &[], opaque, cas)
}

fn error(opcode: u8, (status, message): (u16, &[u8]), opaque: u32) -> Vec<u8> {
    response(opcode, status, &[], &[], message, opaque, 0)
}

fn set(opcode: u8, key: &[u8], value: &[u8], flags: u32, opaque: u32, cas: u64) -> Vec<u8> {
    let extras = [flags.to_be_bytes(), 0u32.to_be_bytes()].concat();
    request(opcode, &extras, key, value, opaque, cas)
}

fn get(opcode: u8, key: &[u8], opaque: u32) -> Vec<u8> {
    request(opcode, &[], key, &[], opaque, 0)
}

fn hit(opcode: u8, key: &[u8], value: &[u8], flags: u32, opaque: u32, cas: u64) -> Vec<u8> {
    response(opcode, 0, &flags.to_be_bytes(), key, value, opaque, cas)
}

fn arith(opcode: u8, key: &[u8], delta: u64, initial: u64, exptime: u32, opaque: u32) -> Vec<u8> {
    let extras = [
        &delta.to_be_bytes()[..],
        &initial.to_be_bytes(),
        &exptime.to_be_bytes(),
    ];
    request(opcode, &extras.concat(), key, &[], opaque, 0)
}

fn number(opcode: u8, value: u64, opaque: u32, cas: u64) -> Vec<u8> {
    response(opcode, 0, &[], &[], &value.to_be_bytes(), opaque, cas)
}

/// One response read off the wire.
#[derive(Debug)]
struct Packet {
    bytes: Vec<u8>,
}

impl Packet {
    fn cas(&self) -> u64 {
        u64::from_be_bytes(self.bytes[16..24].try_into().unwrap())
    }
    fn status(&self) -> u16 {
        u16::from_be_bytes([self.bytes[6], self.bytes[7]])
    }
    fn key(&self) -> &[u8] {
        let key_len = u16::from_be_bytes([self.bytes[2], self.bytes[3]]) as usize;
        let extras = self.bytes[4] as usize;
        &self.bytes[24 + extras..24 + extras + key_len]
    }
    fn value(&self) -> &[u8] {
        let key_len = u16::from_be_bytes([self.bytes[2], self.bytes[3]]) as usize;
        &self.bytes[24 + self.bytes[4] as usize + key_len..]
    }
}

trait Binary {
    fn packet(&mut self) -> Packet;
    fn call(&mut self, request: &[u8]) -> Packet;
    fn exchange(&mut self, requests: &[Vec<u8>], expected: &[Vec<u8>]);
}

impl Binary for Raw {
    fn packet(&mut self) -> Packet {
        let mut bytes = self.read_exact(24);
        assert_eq!(bytes[0], 0x81, "not a response: {bytes:?}");
        let body = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        bytes.extend(self.read_exact(body));
        Packet { bytes }
    }

    fn call(&mut self, request: &[u8]) -> Packet {
        self.send(request);
        self.packet()
    }

    /// Sends every request at once and expects exactly these packets.
    #[track_caller]
    fn exchange(&mut self, requests: &[Vec<u8>], expected: &[Vec<u8>]) {
        self.send(&requests.concat());
        for (i, want) in expected.iter().enumerate() {
            let got = self.packet();
            assert_eq!(got.bytes, *want, "reply {i}");
        }
    }
}

both_runtimes! {
    fn get_forms_on_a_hit_and_a_miss(server) {
        let mut c = server.connect();
        let cas = c.call(&set(SET, b"a", b"hello", 7, 1, 0)).cas();
        assert_ne!(cas, 0);
        c.exchange(
            &[
                get(GET, b"a", 2),
                get(GETK, b"a", 3),
                get(GETQ, b"a", 4),
                get(GETKQ, b"a", 5),
                get(GETK, b"zz", 6),
                get(GET, b"zz", 7),
                get(GETQ, b"zz", 8),
                get(GETKQ, b"zz", 9),
                get(NOOP, b"", 10),
            ],
            &[
                hit(GET, b"", b"hello", 7, 2, cas),
                hit(GETK, b"a", b"hello", 7, 3, cas),
                hit(GETQ, b"", b"hello", 7, 4, cas),
                hit(GETKQ, b"a", b"hello", 7, 5, cas),
                // A getk miss carries the key instead of a message.
                response(GETK, 0x01, &[], b"zz", b"", 6, 0),
                error(GET, NOT_FOUND, 7),
                // getq and getkq say nothing on a miss.
                ok(NOOP, 10, 0),
            ],
        );
    }

    fn stores_and_their_quiet_forms(server) {
        let mut c = server.connect();
        let first = c.call(&set(SET, b"k", b"one", 1, 1, 0));
        assert_eq!(first.bytes, ok(SET, 1, first.cas()));
        let added = c.call(&set(ADD, b"fresh", b"x", 0, 2, 0));
        assert_eq!(added.bytes, ok(ADD, 2, added.cas()));
        // Every store makes a fresh CAS token.
        assert_ne!(first.cas(), added.cas());
        c.exchange(
            &[
                set(ADD, b"k", b"x", 0, 3, 0),
                set(REPLACE, b"missing", b"x", 0, 4, 0),
                request(APPEND, &[], b"missing", b"x", 5, 0),
                set(SETQ, b"k", b"two", 2, 6, 0),
                set(ADDQ, b"k", b"x", 0, 7, 0),
                request(APPENDQ, &[], b"k", b">>", 8, 0),
                request(APPENDQ, &[], b"nope", b">>", 9, 0),
                get(NOOP, b"", 10),
            ],
            &[
                // add of a present key, replace of a missing one: the
                // statuses memcached gives them.
                error(ADD, EXISTS, 3),
                error(REPLACE, NOT_FOUND, 4),
                error(APPEND, NOT_STORED, 5),
                // Quiet stores say nothing on success, but always report
                // an error.
                error(ADDQ, EXISTS, 7),
                error(APPENDQ, NOT_STORED, 9),
                ok(NOOP, 10, 0),
            ],
        );
        let prepended = c.call(&request(PREPEND, &[], b"k", b"<<", 11, 0));
        assert_eq!(prepended.bytes, ok(PREPEND, 11, prepended.cas()));
        // append/prepend keep the flags.
        c.exchange(&[get(GET, b"k", 12)], &[hit(GET, b"", b"<<two>>", 2, 12, prepended.cas())]);
        // Text and binary see the same items.
        let mut text = server.connect();
        text.expect("get k\r\n", "VALUE k 2 7\r\n<<two>>\r\nEND\r\n");
    }

    fn cas_on_every_store(server) {
        let mut c = server.connect();
        let cas = c.call(&set(SET, b"c", b"1", 0, 1, 0)).cas();
        c.exchange(
            &[
                set(SET, b"c", b"2", 0, 2, cas + 1000),
                set(REPLACE, b"c", b"2", 0, 3, cas + 1000),
                // With a CAS token add compares too, as in memcached.
                set(ADD, b"c", b"2", 0, 4, cas + 1000),
                set(SET, b"missing", b"2", 0, 5, 99),
                request(APPEND, &[], b"c", b"x", 6, cas + 1000),
                request(DELETE, &[], b"c", &[], 7, cas + 1000),
                arith_with_cas(b"c", cas + 1000, 8),
            ],
            &[
                error(SET, EXISTS, 2),
                error(REPLACE, EXISTS, 3),
                error(ADD, EXISTS, 4),
                error(SET, NOT_FOUND, 5),
                error(APPEND, EXISTS, 6),
                error(DELETE, EXISTS, 7),
                error(INCR, EXISTS, 8),
            ],
        );
        let swapped = c.call(&set(SET, b"c", b"5", 0, 9, cas));
        assert_eq!(swapped.bytes, ok(SET, 9, swapped.cas()));
        let appended = c.call(&request(APPEND, &[], b"c", b"0", 10, swapped.cas()));
        assert_eq!(appended.bytes, ok(APPEND, 10, appended.cas()));
        let incr = c.call(&arith_with_cas(b"c", appended.cas(), 11));
        assert_eq!(incr.bytes, number(INCR, 51, 11, incr.cas()));
        c.exchange(&[request(DELETE, &[], b"c", &[], 12, incr.cas())], &[ok(DELETE, 12, 0)]);
        c.exchange(&[get(GET, b"c", 13)], &[error(GET, NOT_FOUND, 13)]);
    }

    fn incr_and_decr_with_initial_values(server) {
        let mut c = server.connect();
        // 0xffffffff: a missing counter is not created.
        c.exchange(&[arith(INCR, b"n", 1, 5, u32::MAX, 1)], &[error(INCR, NOT_FOUND, 1)]);
        let created = c.call(&arith(INCR, b"n", 1, 5, 0, 2));
        // A created counter holds the initial value; the delta is not applied.
        assert_eq!(created.bytes, number(INCR, 5, 2, created.cas()));
        let up = c.call(&arith(INCR, b"n", 10, 0, 0, 3));
        assert_eq!(up.bytes, number(INCR, 15, 3, up.cas()));
        assert_ne!(up.cas(), created.cas());
        let down = c.call(&arith(DECR, b"n", 100, 0, 0, 4));
        assert_eq!(down.bytes, number(DECR, 0, 4, down.cas()));
        let wrapped = c.call(&arith(DECR, b"w", 1, u64::MAX, 0, 5));
        assert_eq!(wrapped.bytes, number(DECR, u64::MAX, 5, wrapped.cas()));
        let wrapped = c.call(&arith(INCR, b"w", 1, 0, 0, 6));
        assert_eq!(wrapped.bytes, number(INCR, 0, 6, wrapped.cas()));
        c.call(&set(SET, b"s", b"abc", 0, 7, 0));
        c.exchange(
            &[
                arith(INCR, b"s", 1, 0, 0, 8),
                arith(INCRQ, b"n", 2, 0, 0, 9),
                arith(INCRQ, b"s", 2, 0, 0, 10),
                get(GET, b"n", 11),
            ],
            &[error(INCR, NON_NUMERIC, 8), error(INCRQ, NON_NUMERIC, 10)],
        );
        // A number that shrinks keeps its length, padded with spaces, as
        // in memcached: "15", then "0 ", then "2 ".
        let n = c.packet();
        assert_eq!(n.bytes, hit(GET, b"", b"2 ", 0, 11, n.cas()));
        // A counter created with an exptime gets it; the text protocol
        // reads the same counter.
        c.call(&arith(INCR, b"t", 1, 42, 1000, 12));
        server.connect().expect("get t\r\n", "VALUE t 0 2\r\n42\r\nEND\r\n");
        assert_eq!(ttl_of(&server, "t"), 1000);
        server.advance(Duration::from_secs(1001));
        server.connect().expect("get t\r\n", "END\r\n");
    }

    fn delete_touch_and_gat(server) {
        let mut c = server.connect();
        let cas = c.call(&set(SET, b"a", b"hello", 7, 1, 0)).cas();
        let expiry = 100u32.to_be_bytes();
        c.exchange(
            &[
                request(TOUCH, &expiry, b"a", &[], 2, 0),
                request(GAT, &expiry, b"a", &[], 3, 0),
                request(GATK, &expiry, b"a", &[], 4, 0),
                request(TOUCH, &expiry, b"zz", &[], 5, 0),
                request(GATQ, &expiry, b"zz", &[], 6, 0),
                request(GATQ, &expiry, b"a", &[], 7, 0),
                request(GATKQ, &expiry, b"zz", &[], 8, 0),
                request(GATKQ, &expiry, b"a", &[], 9, 0),
                get(NOOP, b"", 10),
            ],
            &[
                // touch answers with the flags and CAS, without the value.
                hit(TOUCH, b"", b"", 7, 2, cas),
                hit(GAT, b"", b"hello", 7, 3, cas),
                hit(GATK, b"a", b"hello", 7, 4, cas),
                error(TOUCH, NOT_FOUND, 5),
                hit(GATQ, b"", b"hello", 7, 7, cas),
                hit(GATKQ, b"a", b"hello", 7, 9, cas),
                ok(NOOP, 10, 0),
            ],
        );
        assert_eq!(ttl_of(&server, "a"), 100);
        c.exchange(
            &[
                request(DELETEQ, &[], b"a", &[], 11, 0),
                request(DELETE, &[], b"a", &[], 12, 0),
                request(DELETEQ, &[], b"a", &[], 13, 0),
            ],
            &[error(DELETE, NOT_FOUND, 12), error(DELETEQ, NOT_FOUND, 13)],
        );
    }

    fn noop_version_flush_and_quit(server) {
        let mut c = server.connect();
        let version = c.call(&get(VERSION, b"", 1));
        let text = String::from_utf8(version.value().to_vec()).unwrap();
        assert!(text.starts_with("1.6.18-corecache-"), "{text}");
        assert_eq!(version.bytes, response(VERSION, 0, &[], &[], text.as_bytes(), 1, 0));
        c.call(&set(SET, b"f", b"x", 0, 2, 0));
        c.exchange(
            &[request(FLUSHQ, &[], &[], &[], 3, 0), get(GET, b"f", 4)],
            &[error(GET, NOT_FOUND, 4)],
        );
        c.call(&set(SET, b"f", b"x", 0, 5, 0));
        c.exchange(
            &[request(FLUSH, &[], &[], &[], 6, 0), get(GETK, b"f", 7)],
            &[ok(FLUSH, 6, 0), response(GETK, 1, &[], b"f", b"", 7, 0)],
        );
        // A delayed flush takes effect later.
        c.call(&set(SET, b"f", b"x", 0, 8, 0));
        let later = 1000u32.to_be_bytes();
        c.exchange(&[request(FLUSH, &later, &[], &[], 9, 0)], &[ok(FLUSH, 9, 0)]);
        assert_eq!(c.call(&get(GET, b"f", 10)).status(), 0);
        server.advance(Duration::from_secs(1001));
        c.exchange(&[get(GET, b"f", 10)], &[error(GET, NOT_FOUND, 10)]);
        // quit answers, then closes; quitq only closes.
        c.exchange(&[get(QUIT, b"", 11), get(NOOP, b"", 12)], &[ok(QUIT, 11, 0)]);
        assert!(c.is_closed());
        let mut q = server.connect();
        q.send(&[get(NOOP, b"", 1), get(QUITQ, b"", 2), get(NOOP, b"", 3)].concat());
        assert_eq!(q.packet().bytes, ok(NOOP, 1, 0));
        assert!(q.is_closed());
    }

    fn stat_groups(server) {
        let mut c = server.connect();
        c.call(&set(SET, b"a", b"hello", 0, 1, 0));
        let listing = |c: &mut Raw, group: &[u8]| -> Vec<(String, String)> {
            c.send(&request(STAT, &[], group, &[], 77, 0));
            let mut stats = Vec::new();
            loop {
                let p = c.packet();
                assert_eq!((p.bytes[1], p.status(), p.cas()), (STAT, 0, 0));
                assert_eq!(&p.bytes[12..16], &77u32.to_be_bytes());
                if p.key().is_empty() {
                    // The listing ends with an empty packet.
                    assert_eq!(p.bytes, ok(STAT, 77, 0));
                    return stats;
                }
                let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                stats.push((text(p.key()), text(p.value())));
            }
        };
        let general = listing(&mut c, b"");
        let value = |stats: &[(String, String)], name: &str| {
            stats.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        };
        assert_eq!(general[0].0, "pid");
        assert_eq!(value(&general, "curr_items").as_deref(), Some("1"));
        assert!(value(&general, "version").unwrap().starts_with("1.6.18-corecache-"));
        // The same names, in the same order, as the text listing.
        let text_names: Vec<String> = server.connect().stats("").into_iter().map(|(k, _)| k).collect();
        let names: Vec<String> = general.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(names, text_names);
        let settings = listing(&mut c, b"settings");
        assert_eq!(value(&settings, "item_size_max").as_deref(), Some("1048576"));
        let slabs = listing(&mut c, b"slabs");
        assert_eq!(value(&slabs, "active_slabs").as_deref(), Some("1"));
        let items = listing(&mut c, b"items");
        assert!(items.iter().any(|(k, v)| k.ends_with(":number") && v == "1"), "{items:?}");
        // reset answers with the empty packet alone; an unknown group is not found.
        assert!(listing(&mut c, b"reset").is_empty());
        c.exchange(&[request(STAT, &[], b"bogus", &[], 5, 0)], &[error(STAT, NOT_FOUND, 5)]);
    }

    // What memcached's binary `stat` adds for the admin groups: `detail`
    // (the dump as one statistic, `detailed`), `sizes_enable` (one packet,
    // no end packet, as memcached sends it), and no `cachedump`.
    fn stat_detail_and_sizes(server) {
        let mut c = server.connect();
        let stat = |group: &[u8], opaque| request(STAT, &[], group, &[], opaque, 0);
        let packet = |key: &[u8], value: &[u8], opaque| response(STAT, 0, &[], key, value, opaque, 0);
        c.exchange(&[stat(b"detail on", 1)], &[ok(STAT, 1, 0)]);
        // Binary gets, touches, stores and deletes count as memcached counts
        // them: a touch is a get.
        c.call(&set(SET, b"b:1", b"v", 0, 2, 0));
        c.call(&get(GET, b"b:1", 3));
        c.call(&get(GET, b"b:2", 4));
        c.call(&request(TOUCH, &10u32.to_be_bytes(), b"b:1", &[], 5, 0));
        c.call(&get(DELETE, b"b:1", 6));
        let dump = b"PREFIX b get 3 hit 2 set 1 del 1\r\nEND\r\n";
        c.exchange(&[stat(b"detail dump", 7)], &[packet(b"detailed", dump, 7), ok(STAT, 7, 0)]);
        c.exchange(&[stat(b"detail off", 8)], &[ok(STAT, 8, 0)]);
        c.exchange(&[stat(b"detail x", 9)], &[error(STAT, NOT_FOUND, 9)]);
        c.exchange(
            &[stat(b"sizes", 10)],
            &[packet(b"sizes_status", b"disabled", 10), ok(STAT, 10, 0)],
        );
        c.exchange(
            &[stat(b"sizes_enable", 11), get(NOOP, b"", 12)],
            &[packet(b"sizes_status", b"enabled", 11), ok(NOOP, 12, 0)],
        );
        c.call(&set(SET, b"sized", b"v", 0, 13, 0));
        // 40 header bytes + 5 + 1: the 64-byte step.
        c.exchange(&[stat(b"sizes", 14)], &[packet(b"64", b"1", 14), ok(STAT, 14, 0)]);
        c.exchange(&[stat(b"cachedump 1 0", 15)], &[error(STAT, NOT_FOUND, 15)]);
    }

    fn refused_opcodes_keep_the_connection_in_step(server) {
        let mut c = server.connect();
        c.exchange(
            &[
                // memcached has never answered verbosity in binary.
                request(VERBOSITY, &1u32.to_be_bytes(), &[], &[], 1, 0),
                request(0x50, &[], b"key", b"body", 2, 0),
                request(SASL_LIST, &[], &[], &[], 3, 0),
                request(SASL_AUTH, &[], b"PLAIN", b"\0user\0pass", 4, 0),
                request(SASL_STEP, &[], b"PLAIN", b"more", 5, 0),
                get(NOOP, b"", 6),
            ],
            &[
                error(VERBOSITY, UNKNOWN, 1),
                error(0x50, UNKNOWN, 2),
                error(SASL_LIST, UNKNOWN, 3),
                error(SASL_AUTH, UNKNOWN, 4),
                error(SASL_STEP, UNKNOWN, 5),
                ok(NOOP, 6, 0),
            ],
        );
    }

    fn too_large_values_are_refused_and_swallowed(server) {
        let mut c = server.connect();
        c.call(&set(SET, b"big", b"old", 0, 1, 0));
        c.call(&set(SET, b"other", b"kept", 0, 1, 0));
        let huge = vec![b'x'; 2 * 1024 * 1024];
        c.exchange(
            &[
                set(SET, b"big", &huge, 0, 2, 0),
                set(SETQ, b"q", &huge, 0, 3, 0),
                set(ADD, b"other", &huge, 0, 4, 0),
                request(APPEND, &[], b"other", &huge, 5, 0),
                get(GET, b"big", 6),
                get(GET, b"other", 7),
            ],
            &[
                error(SET, TOO_LARGE, 2),
                error(SETQ, TOO_LARGE, 3),
                error(ADD, TOO_LARGE, 4),
                error(APPEND, TOO_LARGE, 5),
                // A refused set drops the old value; other stores do not.
                error(GET, NOT_FOUND, 6),
            ],
        );
        let other = c.packet();
        assert_eq!(other.bytes, hit(GET, b"", b"kept", 0, 7, other.cas()));
        // An append that would grow the item past the limit is not stored.
        let almost = vec![b'y'; 1024 * 1024 - 200];
        c.call(&set(SET, b"grow", &almost, 0, 8, 0));
        c.exchange(&[request(APPEND, &[], b"grow", &almost, 9, 0)], &[error(APPEND, NOT_STORED, 9)]);
    }

    fn a_bad_magic_byte_closes_the_connection(server) {
        let mut c = server.connect();
        let mut bad = get(NOOP, b"", 2);
        bad[0] = 0x81;
        c.send(&[get(NOOP, b"", 1), bad, get(NOOP, b"", 3)].concat());
        assert_eq!(c.packet().bytes, ok(NOOP, 1, 0));
        assert!(c.is_closed());
        // Text after binary is a bad magic byte too: a connection keeps the
        // protocol of its first byte.
        let mut c = server.connect();
        c.send(&[get(NOOP, b"", 1), b"version\r\n".to_vec()].concat());
        assert_eq!(c.packet().bytes, ok(NOOP, 1, 0));
        assert!(c.is_closed());
        // A text connection stays text.
        server.connect().expect("version\r\n", "VERSION ");
    }

    fn malformed_packets_are_answered_then_closed(server) {
        for (bad, reply) in [
            (request(GET, &[0; 4], b"a", &[], 1, 0), error(GET, INVALID, 1)),
            (request(GET, &[], &[b'k'; 251], &[], 2, 0), error(GET, INVALID, 2)),
            (request(NOOP, &[], &[], b"zz", 3, 0), error(NOOP, INVALID, 3)),
            (request(FLUSH, &[0, 0], &[], &[], 4, 0), error(FLUSH, INVALID, 4)),
        ] {
            let mut c = server.connect();
            c.exchange(&[bad, get(NOOP, b"", 9)], &[reply]);
            assert!(c.is_closed());
        }
        // Key and extras longer than the body: memcached's unknown command.
        let mut c = server.connect();
        let mut p = get(GET, b"abc", 5);
        p[8..12].copy_from_slice(&1u32.to_be_bytes());
        c.exchange(&[p], &[error(GET, UNKNOWN, 5)]);
        assert!(c.is_closed());
    }

    fn a_request_split_into_single_bytes(server) {
        let mut c = server.connect();
        let requests = [set(SET, b"split", b"value", 3, 1, 0), get(GETK, b"split", 2)].concat();
        for byte in &requests {
            c.send(&[*byte]);
        }
        let stored = c.packet();
        assert_eq!(stored.bytes, ok(SET, 1, stored.cas()));
        assert_eq!(c.packet().bytes, hit(GETK, b"split", b"value", 3, 2, stored.cas()));
    }

    fn a_pipelined_burst_across_threads_is_answered_in_order(server) {
        let mut c = server.connect();
        let keys: Vec<String> = (0..40).map(|i| key_on_thread(i % 2, i * 10)).collect();
        let mut requests = Vec::new();
        let mut expected_opaques = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let key = key.as_bytes();
            let base = i as u32 * 10;
            requests.push(set(SETQ, key, key, i as u32, base, 0));
            requests.push(get(GETK, key, base + 1));
            let counter = format!("n:{}", keys[i]);
            requests.push(arith(INCR, counter.as_bytes(), 1, i as u64, 0, base + 2));
            requests.push(get(GETKQ, b"missing", base + 3));
            requests.push(request(DELETEQ, &[], key, &[], base + 4, 0));
            requests.push(request(DELETE, &[], key, &[], base + 5, 0));
            expected_opaques.extend([base + 1, base + 2, base + 5]);
        }
        requests.push(get(NOOP, b"", 9999));
        expected_opaques.push(9999);
        c.send(&requests.concat());
        for (i, opaque) in expected_opaques.iter().enumerate() {
            let p = c.packet();
            assert_eq!(&p.bytes[12..16], &opaque.to_be_bytes(), "reply {i}: {p:?}");
            let n = (opaque / 10) as usize;
            match opaque % 10 {
                1 => assert_eq!(p.bytes, hit(GETK, keys[n].as_bytes(), keys[n].as_bytes(), n as u32, *opaque, p.cas())),
                2 => assert_eq!(p.bytes, number(INCR, n as u64, *opaque, p.cas())),
                5 => assert_eq!(p.bytes, error(DELETE, NOT_FOUND, *opaque)),
                _ => assert_eq!(p.bytes, ok(NOOP, 9999, 0)),
            }
        }
        server.assert_forwarded();
    }
}

/// The remaining TTL of `key` in seconds, read with `mg <key> t`.
fn ttl_of(server: &common::TestServer, key: &str) -> i64 {
    let mut c = server.connect();
    c.send(format!("mg {key} t\r\n").as_bytes());
    let line = String::from_utf8(c.read_until(b"\r\n")).unwrap();
    line.trim_end()
        .strip_prefix("HD t")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no ttl in {line:?}"))
}

fn arith_with_cas(key: &[u8], cas: u64, opaque: u32) -> Vec<u8> {
    let mut p = arith(INCR, key, 1, 0, 0, opaque);
    p[16..24].copy_from_slice(&cas.to_be_bytes());
    p
}
