//! Unit and property tests of the binary parser and encoder.

use super::*;
use crate::protocol::{ErrorReply, Outcome, Value};
use proptest::prelude::*;

const MAX: usize = 1024 * 1024;

/// A request packet, as a client writes it.
fn packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut p = vec![REQUEST_MAGIC, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&(body as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

fn simple(opcode: Opcode) -> Vec<u8> {
    packet(opcode as u8, &[], &[], &[], 0, 0)
}

fn one(input: &[u8]) -> Parsed<'_> {
    parse(input, MAX).expect("a complete request")
}

#[test]
fn get_and_its_header() {
    let p = packet(Opcode::GetK as u8, &[], b"key", &[], 0xdead_beef, 7);
    let parsed = one(&p);
    assert_eq!(
        parsed,
        Parsed {
            header: Header {
                opcode: 0x0c,
                opaque: 0xdead_beef,
                cas: 7
            },
            request: Request::Get {
                key: b"key",
                touch: None
            },
            consumed: p.len(),
            swallow: 0,
        }
    );
    assert!(parsed.header.returns_key() && !parsed.header.quiet());
}

#[test]
fn stores_touches_arithmetic_and_the_rest() {
    let set = packet(0x11, &[0, 0, 0, 5, 0, 0, 1, 0], b"k", b"value", 1, 9);
    assert_eq!(
        one(&set).request,
        Request::Store {
            kind: StoreKind::Set,
            key: b"k",
            flags: 5,
            exptime: 256,
            value: b"value"
        }
    );
    assert!(one(&set).header.quiet());
    let append = packet(0x0e, &[], b"k", b"more", 0, 0);
    assert_eq!(
        one(&append).request,
        Request::Store {
            kind: StoreKind::Append,
            key: b"k",
            flags: 0,
            exptime: 0,
            value: b"more"
        }
    );
    let gat = packet(0x1d, &[0, 0, 0, 30], b"k", &[], 0, 0);
    assert_eq!(
        one(&gat).request,
        Request::Get {
            key: b"k",
            touch: Some(30)
        }
    );
    let mut extras = 2u64.to_be_bytes().to_vec();
    extras.extend_from_slice(&10u64.to_be_bytes());
    extras.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        one(&packet(0x16, &extras, b"n", &[], 0, 0)).request,
        Request::Arith {
            kind: ArithKind::Decr,
            key: b"n",
            delta: 2,
            initial: 10,
            exptime: u32::MAX
        }
    );
    assert_eq!(
        one(&packet(0x04, &[], b"k", &[], 0, 0)).request,
        Request::Delete { key: b"k" }
    );
    assert_eq!(
        one(&packet(0x08, &[0, 0, 0, 9], &[], &[], 0, 0)).request,
        Request::Flush { delay: 9 }
    );
    assert_eq!(
        one(&simple(Opcode::FlushQ)).request,
        Request::Flush { delay: 0 }
    );
    assert_eq!(one(&simple(Opcode::Noop)).request, Request::Noop);
    assert_eq!(one(&simple(Opcode::Version)).request, Request::Version);
    assert_eq!(one(&simple(Opcode::QuitQ)).request, Request::Quit);
    assert_eq!(
        one(&packet(0x10, &[], b"slabs", &[], 0, 0)).request,
        Request::Stat { group: b"slabs" }
    );
    assert_eq!(
        one(&simple(Opcode::Stat)).request,
        Request::Stat { group: b"" }
    );
}

/// memcached answers these from the header and closes the connection:
/// the packet's framing cannot be trusted.
#[test]
fn malformed_packets_are_refused_and_close() {
    let refused = |p: &[u8]| match one(p).request {
        Request::Refused {
            status,
            close: true,
        } => status,
        other => panic!("not a closing refusal: {other:?}"),
    };
    // Key and extras longer than the body.
    let mut p = packet(0x00, &[], b"abc", &[], 0, 0);
    p[8..12].copy_from_slice(&1u32.to_be_bytes());
    assert_eq!(refused(&p), Status::UnknownCommand);
    // A key over 250 bytes.
    assert_eq!(
        refused(&packet(0x00, &[], &[b'k'; 251], &[], 0, 0)),
        Status::Invalid
    );
    // Lengths the opcode does not allow.
    for p in [
        packet(0x00, b"1234", b"a", &[], 0, 0),
        packet(0x00, &[], &[], &[], 0, 0),
        packet(0x00, &[], b"a", b"v", 0, 0),
        packet(0x01, &[0; 4], b"a", b"v", 0, 0),
        packet(0x01, &[0; 8], &[], b"v", 0, 0),
        packet(0x04, &[], b"a", b"v", 0, 0),
        packet(0x05, &[0; 8], b"a", &[], 0, 0),
        packet(0x0a, &[], &[], b"zz", 0, 0),
        packet(0x0b, &[], b"k", &[], 0, 0),
        packet(0x07, &[0; 4], &[], &[], 0, 0),
        packet(0x08, &[0, 0], &[], &[], 0, 0),
        packet(0x10, &[0; 4], &[], &[], 0, 0),
        packet(0x1c, &[], b"k", &[], 0, 0),
        packet(0x20, &[], b"k", &[], 0, 0),
        packet(0x21, &[], &[], b"x", 0, 0),
    ] {
        assert_eq!(refused(&p), Status::Invalid, "{p:?}");
    }
}

/// Unknown opcodes (verbosity among them: memcached 1.6 never answered
/// it) and SASL with SASL off are refused; exactly their body is skipped,
/// the part not yet read too.
#[test]
fn unknown_and_sasl_opcodes_skip_exactly_their_body() {
    for opcode in [0x1b, 0x50, 0x21, 0x22] {
        let extras: &[u8] = if opcode == 0x1b { &[0, 0, 0, 1] } else { &[] };
        let key: &[u8] = if opcode == 0x1b { b"" } else { b"PLAIN" };
        let mut input = packet(opcode, extras, key, b"secret", 3, 0);
        let whole = input.len();
        input.extend_from_slice(&simple(Opcode::Noop));
        let parsed = one(&input);
        assert_eq!(
            (parsed.request, parsed.consumed, parsed.swallow),
            (
                Request::Refused {
                    status: Status::UnknownCommand,
                    close: false
                },
                whole,
                0
            ),
            "opcode {opcode:#x}"
        );
        assert_eq!(one(&input[whole..]).request, Request::Noop);
        // With only the header read, the rest is swallowed as it comes.
        let early = one(&input[..HEADER_LEN + 2]);
        assert_eq!(
            (early.consumed, early.swallow),
            (HEADER_LEN + 2, whole - HEADER_LEN - 2)
        );
    }
    let list = simple(Opcode::SaslListMechs);
    assert!(matches!(
        one(&list).request,
        Request::Refused {
            status: Status::UnknownCommand,
            close: false
        }
    ));
}

#[test]
fn a_value_too_large_is_refused_from_its_header_and_swallowed() {
    let value = vec![b'x'; 100];
    let p = packet(0x01, &[0; 8], b"big", &value, 4, 0);
    // Only the header, extras and key are needed.
    let head = HEADER_LEN + 8 + 3;
    let parsed = parse(&p[..head], 99).unwrap();
    assert_eq!(
        (parsed.request, parsed.consumed, parsed.swallow),
        (
            Request::TooLarge {
                kind: StoreKind::Set,
                key: b"big"
            },
            head,
            100
        )
    );
    assert_eq!(parse(&p[..head - 1], 99), Err(BinaryError::Incomplete));
    // With the whole packet in, all of it is consumed.
    let parsed = parse(&p, 99).unwrap();
    assert_eq!((parsed.consumed, parsed.swallow), (p.len(), 0));
    // At the limit it is a store.
    assert!(matches!(
        parse(&p, 100).unwrap().request,
        Request::Store { .. }
    ));
}

#[test]
fn bytes_a_command_does_not_read_are_skipped() {
    // memcached reads only the key of a stat and the extras and key of a
    // touch, then takes the rest as the next packet; here it is skipped.
    for p in [
        packet(0x10, &[], b"items", b"junk", 0, 0),
        packet(0x1c, &[0, 0, 0, 1], b"k", b"junk", 0, 0),
    ] {
        let mut input = p.clone();
        input.extend_from_slice(&simple(Opcode::Noop));
        let parsed = one(&input);
        assert_eq!((parsed.consumed, parsed.swallow), (p.len(), 0));
        assert_eq!(one(&input[p.len()..]).request, Request::Noop);
    }
}

#[test]
fn bad_magic() {
    assert_eq!(parse(b"get k\r\n", MAX), Err(BinaryError::BadMagic));
    assert_eq!(parse(&[RESPONSE_MAGIC], MAX), Err(BinaryError::BadMagic));
    assert_eq!(parse(&[], MAX), Err(BinaryError::Incomplete));
    assert_eq!(parse(&[REQUEST_MAGIC], MAX), Err(BinaryError::Incomplete));
}

#[test]
fn replies_are_memcached_bytes() {
    let header = |opcode: Opcode| Header {
        opcode: opcode as u8,
        opaque: 0x0102_0304,
        cas: 0,
    };
    let hit = Outcome::Value(Value {
        key: b"a",
        flags: 7,
        cas: 113,
        data: b"hello",
    });
    let mut out = Vec::new();
    header(Opcode::GetK).write(hit, b"a", &mut out);
    let mut expected = vec![0x81, 0x0c, 0, 1, 4, 0, 0, 0, 0, 0, 0, 10, 1, 2, 3, 4];
    expected.extend_from_slice(&113u64.to_be_bytes());
    expected.extend_from_slice(&[0, 0, 0, 7, b'a']);
    expected.extend_from_slice(b"hello");
    assert_eq!(out, expected);
    // A touch hit carries the flags, not the value.
    out.clear();
    header(Opcode::Touch).write(hit, b"a", &mut out);
    assert_eq!(&out[8..12], &4u32.to_be_bytes());
    assert_eq!(out.len(), HEADER_LEN + 4);
    // Misses: a message, the key for getk, nothing for getq.
    out.clear();
    header(Opcode::Get).write(Outcome::Miss, b"zz", &mut out);
    assert_eq!(&out[6..8], &[0, 1]);
    assert_eq!(&out[HEADER_LEN..], b"Not found");
    out.clear();
    header(Opcode::GetK).write(Outcome::Miss, b"zz", &mut out);
    assert_eq!((&out[2..4], &out[HEADER_LEN..]), (&[0, 2][..], &b"zz"[..]));
    out.clear();
    header(Opcode::GetQ).write(Outcome::Miss, b"zz", &mut out);
    header(Opcode::SetQ).write(Outcome::Stored { cas: 5 }, b"k", &mut out);
    header(Opcode::IncrementQ).write(Outcome::Number { value: 1, cas: 2 }, b"n", &mut out);
    assert!(out.is_empty());
    // Errors are always sent, with memcached's status for each store.
    for (opcode, outcome, status) in [
        (Opcode::AddQ, Outcome::NotStored, Status::KeyExists),
        (Opcode::Replace, Outcome::NotStored, Status::KeyNotFound),
        (Opcode::AppendQ, Outcome::NotStored, Status::NotStored),
        (Opcode::SetQ, Outcome::Exists, Status::KeyExists),
        (Opcode::DeleteQ, Outcome::NotFound, Status::KeyNotFound),
        (
            Opcode::Set,
            Outcome::Error(ErrorReply::TooLarge),
            Status::TooLarge,
        ),
        (
            Opcode::SetQ,
            Outcome::Error(ErrorReply::OutOfMemory),
            Status::OutOfMemory,
        ),
        (
            Opcode::IncrementQ,
            Outcome::Error(ErrorReply::NonNumeric),
            Status::NonNumeric,
        ),
    ] {
        out.clear();
        header(opcode).write(outcome, b"k", &mut out);
        assert_eq!(&out[6..8], &(status as u16).to_be_bytes(), "{opcode:?}");
    }
    // An incr reply: the value as 8 bytes and the new CAS.
    out.clear();
    header(Opcode::Increment).write(
        Outcome::Number {
            value: 15,
            cas: 116,
        },
        b"n",
        &mut out,
    );
    assert_eq!(&out[16..24], &116u64.to_be_bytes());
    assert_eq!(&out[HEADER_LEN..], &15u64.to_be_bytes());
}

#[test]
fn stat_packets() {
    let mut out = Vec::new();
    write_stat(&mut out, 9, "pid", 4762);
    write_stats_end(&mut out, 9);
    let mut expected = vec![0x81, 0x10, 0, 3, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 9];
    expected.extend_from_slice(&[0; 8]);
    expected.extend_from_slice(b"pid4762");
    expected.extend_from_slice(&[0x81, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    expected.extend_from_slice(&[0; 8]);
    assert_eq!(out, expected);
}

/// A valid request of any opcode, generated for the property tests.
#[derive(Clone, Debug)]
struct Case {
    opcode: Opcode,
    key: Vec<u8>,
    value: Vec<u8>,
    numbers: (u32, u32, u64, u64),
    opaque: u32,
    cas: u64,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        let (a, b, c, d) = self.numbers;
        use Opcode::*;
        let (extras, key, value): (Vec<u8>, &[u8], &[u8]) = match self.opcode {
            Get | GetQ | GetK | GetKQ | Delete | DeleteQ => (vec![], &self.key, &[]),
            Set | SetQ | Add | AddQ | Replace | ReplaceQ => (
                [a.to_be_bytes(), b.to_be_bytes()].concat(),
                &self.key,
                &self.value,
            ),
            Append | AppendQ | Prepend | PrependQ => (vec![], &self.key, &self.value),
            Touch | Gat | GatQ | GatK | GatKQ => (a.to_be_bytes().to_vec(), &self.key, &[]),
            Increment | IncrementQ | Decrement | DecrementQ => {
                let extras = [&c.to_be_bytes()[..], &d.to_be_bytes(), &b.to_be_bytes()];
                (extras.concat(), &self.key, &[])
            }
            Flush | FlushQ if a % 2 == 0 => (b.to_be_bytes().to_vec(), &[], &[]),
            Stat => (vec![], &self.key, &[]),
            _ => (vec![], &[], &[]),
        };
        packet(
            self.opcode as u8,
            &extras,
            key,
            value,
            self.opaque,
            self.cas,
        )
    }

    fn request(&self) -> Request<'_> {
        let (a, b, c, d) = self.numbers;
        let key = &self.key[..];
        use Opcode::*;
        let store = |kind, with_extras: bool| Request::Store {
            kind,
            key,
            flags: if with_extras { a } else { 0 },
            exptime: if with_extras { b } else { 0 },
            value: &self.value,
        };
        match self.opcode {
            Get | GetQ | GetK | GetKQ => Request::Get { key, touch: None },
            Touch | Gat | GatQ | GatK | GatKQ => Request::Get {
                key,
                touch: Some(a),
            },
            Set | SetQ => store(StoreKind::Set, true),
            Add | AddQ => store(StoreKind::Add, true),
            Replace | ReplaceQ => store(StoreKind::Replace, true),
            Append | AppendQ => store(StoreKind::Append, false),
            Prepend | PrependQ => store(StoreKind::Prepend, false),
            Delete | DeleteQ => Request::Delete { key },
            Increment | IncrementQ | Decrement | DecrementQ => Request::Arith {
                kind: if matches!(self.opcode, Increment | IncrementQ) {
                    ArithKind::Incr
                } else {
                    ArithKind::Decr
                },
                key,
                delta: c,
                initial: d,
                exptime: b,
            },
            Flush | FlushQ => Request::Flush {
                delay: if a % 2 == 0 { b } else { 0 },
            },
            Stat => Request::Stat { group: key },
            Noop => Request::Noop,
            Version => Request::Version,
            Quit | QuitQ => Request::Quit,
            SaslListMechs | SaslAuth | SaslStep => unreachable!("not generated"),
        }
    }
}

fn cases() -> impl Strategy<Value = Case> {
    let opcodes: Vec<Opcode> = (0..=0x24u8)
        .filter_map(Opcode::from_byte)
        .filter(|op| {
            !matches!(
                op,
                Opcode::SaslListMechs | Opcode::SaslAuth | Opcode::SaslStep
            )
        })
        .collect();
    (
        proptest::sample::select(opcodes),
        proptest::collection::vec(any::<u8>(), 1..=250),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<(u32, u32, u64, u64)>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(opcode, key, value, numbers, opaque, cas)| Case {
            opcode,
            key,
            value,
            numbers,
            opaque,
            cas,
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_always_make_progress(
        input in proptest::collection::vec(any::<u8>(), 0..400),
        max in 0usize..200,
    ) {
        // As sent, and behind a request magic so that a header gets read.
        let with_magic = [&[REQUEST_MAGIC][..], &input].concat();
        for buf in [&input[..], &with_magic[..]] {
            let mut rest = buf;
            loop {
                let parsed = match parse(rest, max) {
                    Ok(parsed) => parsed,
                    Err(BinaryError::BadMagic) => {
                        prop_assert!(rest[0] != REQUEST_MAGIC);
                        break;
                    }
                    Err(BinaryError::Incomplete) => {
                        // Only ever waits for bytes the header announced.
                        prop_assert!(
                            rest.len() < HEADER_LEN
                                || rest.len() < HEADER_LEN + be32(&rest[8..12]) as usize
                        );
                        break;
                    }
                };
                prop_assert!(parsed.consumed >= HEADER_LEN && parsed.consumed <= rest.len());
                if parsed.swallow > 0 {
                    prop_assert_eq!(parsed.consumed, rest.len());
                }
                match parsed.request {
                    Request::Store { key, value, .. } => {
                        prop_assert!(!key.is_empty() && key.len() <= KEY_MAX_LEN);
                        prop_assert!(value.len() <= max);
                    }
                    Request::Get { key, .. }
                    | Request::Delete { key }
                    | Request::Arith { key, .. }
                    | Request::TooLarge { key, .. } => {
                        prop_assert!(!key.is_empty() && key.len() <= KEY_MAX_LEN);
                    }
                    _ => {}
                }
                rest = &rest[parsed.consumed..];
            }
        }
    }

    #[test]
    fn generated_requests_round_trip_and_every_prefix_is_incomplete(
        case in cases(),
        next in cases(),
    ) {
        let bytes = case.bytes();
        let parsed = parse(&bytes, MAX).unwrap();
        prop_assert_eq!(parsed.request, case.request());
        prop_assert_eq!(
            parsed.header,
            Header { opcode: case.opcode as u8, opaque: case.opaque, cas: case.cas }
        );
        prop_assert_eq!((parsed.consumed, parsed.swallow), (bytes.len(), 0));
        for end in 0..bytes.len() {
            prop_assert_eq!(parse(&bytes[..end], MAX), Err(BinaryError::Incomplete));
        }
        // Pipelined, the next request starts exactly where this one ends.
        let mut both = bytes.clone();
        both.extend_from_slice(&next.bytes());
        let first = parse(&both, MAX).unwrap();
        prop_assert_eq!(first.consumed, bytes.len());
        prop_assert_eq!(parse(&both[first.consumed..], MAX).unwrap().request, next.request());
    }
}
