//! Unit tests of the classic request parser.

use super::*;

const MAX: usize = 1024 * 1024;

/// Asserts that `line` parses to `expected`, naming the line if not.
#[track_caller]
fn parses_to(line: &[u8], expected: Request<'_>) {
    assert_eq!(
        one(line).request,
        expected,
        "{:?}",
        String::from_utf8_lossy(line)
    );
}

fn one(input: &[u8]) -> Parsed<'_> {
    parse(input, MAX).expect("a complete request")
}

fn keys(request: Request<'_>) -> Vec<&[u8]> {
    match request {
        Request::Get { keys, .. } => keys.collect(),
        other => panic!("not a get: {other:?}"),
    }
}

#[test]
fn get_with_many_keys_and_extra_spaces() {
    let parsed = one(b"get  a bb   ccc \r\nrest");
    assert_eq!(parsed.consumed, 18);
    assert_eq!(keys(parsed.request), [&b"a"[..], b"bb", b"ccc"]);
}

#[test]
fn bare_newline_ends_a_line_too() {
    let parsed = one(b"gets k\n");
    assert_eq!(parsed.consumed, 7);
    assert!(matches!(parsed.request, Request::Get { cas: true, .. }));
}

#[test]
fn set_takes_its_data_block() {
    let input = b"set k 5 100 3 noreply\r\nabc\r\nget k\r\n";
    let parsed = one(input);
    assert_eq!(&input[parsed.consumed..], b"get k\r\n");
    assert_eq!(
        parsed.request,
        Request::Store {
            kind: StoreKind::Set,
            key: b"k",
            flags: 5,
            exptime: 100,
            data: b"abc",
            cas_unique: 0,
            noreply: true,
        }
    );
}

#[test]
fn data_may_contain_newlines() {
    let parsed = one(b"set k 0 0 4\r\na\r\nb\r\n");
    assert!(matches!(
        parsed.request,
        Request::Store {
            data: b"a\r\nb",
            ..
        }
    ));
}

#[test]
fn every_prefix_of_a_request_is_incomplete() {
    let input = b"cas key 1 -1 5 42\r\nhello\r\n";
    for end in 0..input.len() {
        assert_eq!(
            parse(&input[..end], MAX),
            Err(ParseError::Incomplete),
            "{end}"
        );
    }
    let parsed = one(input);
    assert_eq!(parsed.consumed, input.len());
    assert!(matches!(
        parsed.request,
        Request::Store {
            kind: StoreKind::Cas,
            exptime: -1,
            cas_unique: 42,
            ..
        }
    ));
}

#[test]
fn bad_data_chunk_is_unframed() {
    // The block is longer than announced: the rest of it must not be
    // read as a command, so the connection will close.
    for noreply in [false, true] {
        let input = format!(
            "set k 0 0 2{}\r\nabcd\r\n",
            if noreply { " noreply" } else { "" }
        );
        assert_eq!(
            one(input.as_bytes()).request,
            Request::Unframed {
                error: ErrorReply::BadDataChunk,
                noreply,
            }
        );
    }
}

#[test]
fn a_data_length_of_minus_zero_is_zero() {
    // memcached 1.6.18 reads the length with `strtol` and stores an empty
    // value for `-0` (found while checking the meta fuzz target's `ms k -0`).
    let input = b"set k 0 0 -0\r\n\r\nget k\r\n";
    let parsed = one(input);
    assert_eq!(&input[parsed.consumed..], b"get k\r\n");
    assert!(matches!(parsed.request, Request::Store { data: b"", .. }));
    let negative = one(b"set k 0 0 -1\r\n").request;
    assert!(matches!(negative, Request::Unframed { .. }));
}

#[test]
fn too_large_swallows_data_not_yet_read() {
    let parsed = parse(b"set k 0 0 2000000\r\n", MAX).unwrap();
    assert_eq!(parsed.consumed, 19);
    assert_eq!(
        parsed.request,
        Request::TooLarge {
            kind: StoreKind::Set,
            key: b"k",
            swallow: 2_000_002,
            noreply: false,
        }
    );
}

#[test]
fn malformed_storage_headers() {
    for line in [
        &b"set k x 0 1\r\n"[..],
        b"set k 0 x 1\r\n",
        b"set k -1 0 1\r\n",
        b"cas k 0 0 1 x\r\n",
    ] {
        let parsed = one(line);
        assert!(
            matches!(parsed.request, Request::Invalid { error, swallow: 3, .. } if error == ErrorReply::BadFormat),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    // No readable length: the data block cannot be found.
    for (line, noreply) in [
        (&b"set k 0 0 -1\r\n"[..], false),
        (b"set k 0 0 x noreply\r\n", true),
        (b"set k 0 0 noreply\r\n", true),
        (b"cas k 0 0 99999999999 1\r\n", false),
    ] {
        parses_to(
            line,
            Request::Unframed {
                error: ErrorReply::BadFormat,
                noreply,
            },
        );
    }
    // A token count no form has: an unknown form, and where its data
    // block ends is anyone's guess.
    for line in [
        &b"set k 0 0\r\n"[..],
        b"set k 0 0 9 a b\r\n",
        b"set k 0 0 9 noreply extra\r\n",
        b"cas k 0 0 9\r\n",
        b"cas k 0 0 9 1 a b\r\n",
    ] {
        parses_to(
            line,
            Request::Unframed {
                error: ErrorReply::Error,
                noreply: false,
            },
        );
    }
}

/// memcached ignores one token past a storage command's last argument
/// when it is not `noreply`; the data block is then the value, never a
/// command.
#[test]
fn one_extra_token_on_a_storage_line_is_ignored() {
    let parsed = one(b"set k 0 0 9 extra\r\nflush_all\r\n");
    assert_eq!(parsed.consumed, 30);
    assert!(matches!(
        parsed.request,
        Request::Store {
            kind: StoreKind::Set,
            data: b"flush_all",
            noreply: false,
            ..
        }
    ));
    let parsed = one(b"cas k 1 2 3 77 extra\r\nabc\r\n");
    assert!(matches!(
        parsed.request,
        Request::Store {
            kind: StoreKind::Cas,
            flags: 1,
            exptime: 2,
            data: b"abc",
            cas_unique: 77,
            noreply: false,
            ..
        }
    ));
}

/// Where memcached reads a token past the form it ignores it (`touch k
/// 1 2` runs), and errors to a request ending in `noreply` are silent.
#[test]
fn extra_tokens_and_silent_errors_follow_memcached() {
    let cases: [(&[u8], Request<'_>); 13] = [
        (
            b"touch k 1 2\r\n",
            Request::Touch {
                key: b"k",
                exptime: 1,
                noreply: false,
            },
        ),
        (
            b"incr k 1 2\r\n",
            Request::Arith {
                kind: ArithKind::Incr,
                key: b"k",
                delta: 1,
                noreply: false,
            },
        ),
        (
            b"flush_all 1 2\r\n",
            Request::FlushAll {
                delay: 1,
                noreply: false,
            },
        ),
        (
            b"flush_all -1\r\n",
            Request::FlushAll {
                delay: -1,
                noreply: false,
            },
        ),
        (b"verbosity 1 2\r\n", Request::Verbosity { noreply: false }),
        (
            b"verbosity 1 noreply\r\n",
            Request::Verbosity { noreply: true },
        ),
        (
            b"incr k x noreply\r\n",
            Request::refused(ErrorReply::InvalidDelta, true),
        ),
        (
            b"touch k abc noreply\r\n",
            Request::refused(ErrorReply::InvalidExptime, true),
        ),
        (
            b"flush_all abc noreply\r\n",
            Request::refused(ErrorReply::InvalidExptime, true),
        ),
        (
            b"delete k 10 noreply\r\n",
            Request::refused(ErrorReply::DeleteUsage, true),
        ),
        (
            b"verbosity noreply\r\n",
            Request::refused(ErrorReply::BadFormat, true),
        ),
        (
            b"verbosity a\r\n",
            Request::refused(ErrorReply::BadFormat, false),
        ),
        (
            b"delete k 0 0\r\n",
            Request::refused(ErrorReply::DeleteUsage, false),
        ),
    ];
    for (line, expected) in cases {
        parses_to(line, expected);
    }
    for line in [
        &b"delete k a b c\r\n"[..],
        b"flush_all 0 0 0\r\n",
        b"verbosity\r\n",
        b"verbosity 1 2 3\r\n",
        b"incr k 1 2 noreply\r\n",
    ] {
        parses_to(line, Request::invalid(ErrorReply::Error));
    }
}

#[test]
fn keys_are_checked() {
    let long = format!("get {}\r\n", "x".repeat(251));
    assert!(matches!(
        one(long.as_bytes()).request,
        Request::Invalid { error, .. } if error == ErrorReply::BadFormat
    ));
    let ok = format!("get {}\r\n", "x".repeat(250));
    assert_eq!(keys(one(ok.as_bytes()).request).len(), 1);
    // Any byte but a space, CR or LF, as memcached takes them (it also
    // takes a CR inside a key).
    assert_eq!(
        keys(one(b"get a\x01b\tc\x7f\xff\0\r\n").request),
        [b"a\x01b\tc\x7f\xff\0"]
    );
    assert!(matches!(
        one(b"get a\rb\r\n").request,
        Request::Invalid { error, .. } if error == ErrorReply::BadFormat
    ));
    assert!(!valid_key(b"a b") && !valid_key(b"a\nb") && !valid_key(b""));
}

#[test]
fn unknown_and_empty_commands_are_errors() {
    for line in [&b"\r\n"[..], b"bogus\r\n", b"get\r\n", b"incr k\r\n"] {
        assert!(matches!(
            one(line).request,
            Request::Invalid {
                error: ErrorReply::Error,
                ..
            }
        ));
    }
}

#[test]
fn arith_touch_delete_flush() {
    assert_eq!(
        one(b"incr n 18446744073709551615\r\n").request,
        Request::Arith {
            kind: ArithKind::Incr,
            key: b"n",
            delta: u64::MAX,
            noreply: false,
        }
    );
    assert!(matches!(
        one(b"decr n -1\r\n").request,
        Request::Invalid {
            error: ErrorReply::InvalidDelta,
            ..
        }
    ));
    assert_eq!(
        one(b"touch k 10 noreply\r\n").request,
        Request::Touch {
            key: b"k",
            exptime: 10,
            noreply: true,
        }
    );
    assert_eq!(
        one(b"delete k 0 noreply\r\n").request,
        Request::Delete {
            key: b"k",
            noreply: true,
        }
    );
    assert!(matches!(
        one(b"delete k 5\r\n").request,
        Request::Invalid { .. }
    ));
    assert_eq!(
        one(b"flush_all 10\r\n").request,
        Request::FlushAll {
            delay: 10,
            noreply: false,
        }
    );
    assert_eq!(
        one(b"flush_all noreply\r\n").request,
        Request::FlushAll {
            delay: 0,
            noreply: true,
        }
    );
    assert!(matches!(
        one(b"flush_all soon\r\n").request,
        Request::Invalid { .. }
    ));
    assert!(matches!(
        one(b"gat abc k\r\n").request,
        Request::Invalid { .. }
    ));
    assert!(matches!(
        one(b"gats 100 a b\r\n").request,
        Request::Get {
            cas: true,
            touch: Some(100),
            ..
        }
    ));
}

#[test]
fn endless_line_is_fatal() {
    let line = vec![b'a'; LINE_MAX_LEN];
    assert_eq!(parse(&line, MAX), Err(ParseError::LineTooLong));
    assert_eq!(parse(&line[..100], MAX), Err(ParseError::Incomplete));
    // Only get lines may be longer, and only once it is clear they are.
    let mut set = b"set ".to_vec();
    set.resize(LINE_MAX_LEN, b'k');
    assert_eq!(parse(&set, MAX), Err(ParseError::LineTooLong));
}

proptest::proptest! {
    /// Any bytes at all: no panic, progress on every request, never
    /// past the end, and keys that come out are legal keys.
    #[test]
    fn arbitrary_input_never_panics(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let mut rest = &input[..];
        while let Ok(parsed) = parse(rest, 1024) {
            proptest::prop_assert!(parsed.consumed > 0 && parsed.consumed <= rest.len());
            if let Request::Get { keys, .. } = parsed.request {
                for key in keys {
                    proptest::prop_assert!(valid_key(key));
                }
            }
            rest = &rest[parsed.consumed..];
        }
    }

    /// Command-shaped input (real verbs, numbers, noise) survives the
    /// same checks; this reaches the storage and meta paths far more
    /// often than random bytes do.
    #[test]
    fn command_shaped_input_never_panics(
        words in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("set".to_string()),
                proptest::strategy::Just("cas".to_string()),
                proptest::strategy::Just("get".to_string()),
                proptest::strategy::Just("gat".to_string()),
                proptest::strategy::Just("incr".to_string()),
                proptest::strategy::Just("delete".to_string()),
                proptest::strategy::Just("ms".to_string()),
                proptest::strategy::Just("mg".to_string()),
                proptest::strategy::Just("ma".to_string()),
                proptest::strategy::Just("md".to_string()),
                proptest::strategy::Just("noreply".to_string()),
                "-?[0-9]{1,21}",
                "[a-zA-Z]{1,4}[0-9]{0,3}",
                proptest::strategy::Just("\r\n".to_string()),
                proptest::strategy::Just(" ".to_string()),
            ],
            0..40,
        )
    ) {
        let input = words.join(" ");
        let mut rest = input.as_bytes();
        while let Ok(parsed) = parse(rest, 1024) {
            proptest::prop_assert!(parsed.consumed > 0 && parsed.consumed <= rest.len());
            rest = &rest[parsed.consumed..];
        }
    }
}

#[test]
fn pipelined_requests_parse_one_after_another() {
    let input = b"set a 0 0 1\r\n1\r\nget a b\r\ndelete a\r\nversion\r\n";
    let set = one(input);
    assert_eq!(set.consumed, 16);
    assert_eq!(
        set.request,
        Request::Store {
            kind: StoreKind::Set,
            key: b"a",
            flags: 0,
            exptime: 0,
            data: b"1",
            cas_unique: 0,
            noreply: false,
        }
    );
    let rest = &input[set.consumed..];
    let get = one(rest);
    assert_eq!(get.consumed, 9);
    assert!(matches!(
        get.request,
        Request::Get {
            cas: false,
            touch: None,
            ..
        }
    ));
    assert_eq!(keys(get.request), [&b"a"[..], b"b"]);
    let rest = &rest[get.consumed..];
    let delete = one(rest);
    assert_eq!(
        (delete.consumed, delete.request),
        (
            10,
            Request::Delete {
                key: b"a",
                noreply: false
            }
        )
    );
    let rest = &rest[delete.consumed..];
    assert_eq!(one(rest).request, Request::Version);
    assert_eq!(one(rest).consumed, rest.len());
}
