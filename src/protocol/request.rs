//! Parsing classic text-protocol requests out of a read buffer.

use super::reply::ErrorReply;

/// Longest key memcached accepts.
pub const KEY_MAX_LEN: usize = 250;

/// Longest command line (without its data block). A multi-key `get` is the
/// only command that gets near it: this fits over 250 maximal keys. A line
/// that reaches it without a newline is fatal: the connection cannot find
/// where the next request starts.
pub const LINE_MAX_LEN: usize = 64 * 1024;

/// Why [`parse`] returned no request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The buffer ends in the middle of a request: read more and try again.
    Incomplete,
    /// A line exceeded [`LINE_MAX_LEN`] without a newline; the connection
    /// should answer `CLIENT_ERROR line too long` and close.
    LineTooLong,
}

/// One request taken off the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The request.
    pub request: Request<'a>,
    /// Bytes of the buffer it used, including its data block.
    pub consumed: usize,
}

/// The five plain storage commands and `cas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// `set`
    Set,
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `append`
    Append,
    /// `prepend`
    Prepend,
    /// `cas`
    Cas,
}

/// `incr` or `decr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithKind {
    /// `incr`
    Incr,
    /// `decr`
    Decr,
}

/// A space-separated list of keys, iterated without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tokens<'a>(&'a [u8]);

impl<'a> Tokens<'a> {
    /// The tokens of `line`.
    pub fn new(line: &'a [u8]) -> Tokens<'a> {
        Tokens(line)
    }

    /// What is left to iterate, as one slice of the original line.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.0.iter().position(|&b| b != b' ')?;
        let rest = &self.0[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.0 = &rest[end..];
        Some(&rest[..end])
    }
}

/// One parsed request, borrowing keys and data from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get`/`gets`/`gat`/`gats`: one or more keys, all validated.
    Get {
        /// The keys, in request order.
        keys: Tokens<'a>,
        /// Whether to return CAS tokens (`gets`, `gats`).
        cas: bool,
        /// For `gat`/`gats`: the new exptime.
        touch: Option<i64>,
    },
    /// A storage command with its data block.
    Store {
        /// Which command.
        kind: StoreKind,
        /// The key.
        key: &'a [u8],
        /// Client flags.
        flags: u32,
        /// Raw protocol exptime.
        exptime: i64,
        /// The data block, without its `\r\n`.
        data: &'a [u8],
        /// The CAS token to compare against (`cas` only).
        cas_unique: u64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `delete <key>`.
    Delete {
        /// The key.
        key: &'a [u8],
        /// Suppress the reply.
        noreply: bool,
    },
    /// `incr`/`decr`.
    Arith {
        /// Which one.
        kind: ArithKind,
        /// The key.
        key: &'a [u8],
        /// The amount.
        delta: u64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `touch <key> <exptime>`.
    Touch {
        /// The key.
        key: &'a [u8],
        /// Raw protocol exptime.
        exptime: i64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `flush_all [delay]`.
    FlushAll {
        /// Seconds from now (0: at once), or an absolute unix time.
        delay: i64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `stats [group]`.
    Stats {
        /// What follows `stats`, e.g. `threads` or `slabs`.
        args: Tokens<'a>,
    },
    /// `version`.
    Version,
    /// `verbosity <level>`.
    Verbosity {
        /// Suppress the reply.
        noreply: bool,
    },
    /// `quit`: close the connection.
    Quit,
    /// `shutdown`: stop the server, if enabled.
    Shutdown,
    /// A storage command whose data block is larger than any item can be:
    /// answered `SERVER_ERROR object too large for cache`, its data
    /// swallowed, and, for `set`, any existing item under the key removed
    /// so a failed overwrite never leaves the old value readable.
    TooLarge {
        /// Which command.
        kind: StoreKind,
        /// The key.
        key: &'a [u8],
        /// Bytes of data block to skip after `consumed`.
        swallow: usize,
        /// Suppress the reply.
        noreply: bool,
    },
    /// A meta command (`mg ms md ma me`).
    Meta(super::meta::Meta<'a>),
    /// `mn`: the meta no-op, answered `MN` in its turn.
    MetaNoop,
    /// Input that gets an error reply in its turn.
    Invalid {
        /// The reply to send.
        error: ErrorReply,
        /// Bytes of a data block still to skip after `consumed`: the block
        /// of a storage command that was refused, perhaps not yet read.
        swallow: usize,
        /// The request asked for no reply.
        noreply: bool,
    },
}

impl Request<'_> {
    fn invalid(error: ErrorReply) -> Self {
        Request::Invalid {
            error,
            swallow: 0,
            noreply: false,
        }
    }
}

/// Whether `key` is a legal key: 1 to 250 bytes, no spaces or control
/// characters.
pub fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= KEY_MAX_LEN && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

fn number<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    // Only ASCII digits and a leading minus get this far, so the `str`
    // conversion never fails on valid input; anything else is a bad number.
    std::str::from_utf8(token).ok()?.parse().ok()
}

const BAD_FORMAT: ErrorReply = ErrorReply::Client("bad command line format");

/// Takes one request off the front of `buf`.
///
/// `max_value` is the largest data block the server could ever store: a
/// storage command announcing more is refused with `SERVER_ERROR object too
/// large for cache` before its data arrives, and its data is swallowed.
pub fn parse(buf: &[u8], max_value: usize) -> Result<Parsed<'_>, ParseError> {
    let window = &buf[..buf.len().min(LINE_MAX_LEN)];
    let Some(newline) = memchr::memchr(b'\n', window) else {
        return Err(if buf.len() >= LINE_MAX_LEN {
            ParseError::LineTooLong
        } else {
            ParseError::Incomplete
        });
    };
    if newline >= LINE_MAX_LEN {
        return Err(ParseError::LineTooLong);
    }
    let line_end = newline + 1;
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let mut tokens = Tokens::new(line);
    let Some(command) = tokens.next() else {
        return Ok(done(Request::invalid(ErrorReply::Error), line_end));
    };
    if super::meta::is_meta(command) {
        return super::meta::parse(line, buf, line_end, max_value);
    }
    let request = match command {
        b"get" => get(tokens, false, None),
        b"gets" => get(tokens, true, None),
        b"gat" | b"gats" => gat(tokens, command == b"gats"),
        b"set" => return store(StoreKind::Set, tokens, buf, line_end, max_value),
        b"add" => return store(StoreKind::Add, tokens, buf, line_end, max_value),
        b"replace" => return store(StoreKind::Replace, tokens, buf, line_end, max_value),
        b"append" => return store(StoreKind::Append, tokens, buf, line_end, max_value),
        b"prepend" => return store(StoreKind::Prepend, tokens, buf, line_end, max_value),
        b"cas" => return store(StoreKind::Cas, tokens, buf, line_end, max_value),
        b"delete" => delete(tokens),
        b"incr" => arith(ArithKind::Incr, tokens),
        b"decr" => arith(ArithKind::Decr, tokens),
        b"touch" => touch(tokens),
        b"flush_all" => flush_all(tokens),
        b"stats" => Request::Stats { args: tokens },
        b"version" => Request::Version,
        b"verbosity" => verbosity(tokens),
        b"quit" => Request::Quit,
        b"shutdown" => Request::Shutdown,
        _ => Request::invalid(ErrorReply::Error),
    };
    Ok(done(request, line_end))
}

fn done(request: Request<'_>, consumed: usize) -> Parsed<'_> {
    Parsed { request, consumed }
}

/// Splits a trailing `noreply` off a token list of at most `N` tokens.
/// `None` if there are more than `N` tokens.
fn fixed<const N: usize>(tokens: Tokens<'_>) -> Option<([&[u8]; N], usize, bool)> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut count = 0;
    for token in tokens {
        if count == N {
            return None;
        }
        out[count] = token;
        count += 1;
    }
    let noreply = count > 0 && out[count - 1] == b"noreply";
    if noreply {
        count -= 1;
    }
    Some((out, count, noreply))
}

fn get<'a>(keys: Tokens<'a>, cas: bool, touch: Option<i64>) -> Request<'a> {
    let mut any = false;
    for key in keys {
        if !valid_key(key) {
            return Request::invalid(BAD_FORMAT);
        }
        any = true;
    }
    if !any {
        return Request::invalid(ErrorReply::Error);
    }
    Request::Get { keys, cas, touch }
}

fn gat(mut tokens: Tokens<'_>, cas: bool) -> Request<'_> {
    let Some(exptime) = tokens.next() else {
        return Request::invalid(ErrorReply::Error);
    };
    match number::<i64>(exptime) {
        Some(exptime) => get(tokens, cas, Some(exptime)),
        None => Request::invalid(ErrorReply::Client("invalid exptime argument")),
    }
}

fn store<'a>(
    kind: StoreKind,
    tokens: Tokens<'a>,
    buf: &'a [u8],
    line_end: usize,
    max_value: usize,
) -> Result<Parsed<'a>, ParseError> {
    let wanted = if kind == StoreKind::Cas { 5 } else { 4 };
    let Some((t, count, noreply)) = fixed::<6>(tokens) else {
        return Ok(done(Request::invalid(BAD_FORMAT), line_end));
    };
    if count != wanted {
        return Ok(done(Request::invalid(ErrorReply::Error), line_end));
    }
    // Without a readable length there is no telling where the data block
    // ends, so nothing is swallowed (memcached does the same).
    let Some(len) = number::<u32>(t[3]).filter(|&len| len < i32::MAX as u32) else {
        return Ok(done(Request::invalid(BAD_FORMAT), line_end));
    };
    let len = len as usize;
    let refuse = |error| {
        Ok(done(
            Request::Invalid {
                error,
                swallow: len + 2,
                noreply,
            },
            line_end,
        ))
    };
    let (key, flags, exptime) = (t[0], number::<u32>(t[1]), number::<i64>(t[2]));
    let cas_unique = if kind == StoreKind::Cas {
        number::<u64>(t[4])
    } else {
        Some(0)
    };
    let (Some(flags), Some(exptime), Some(cas_unique)) = (flags, exptime, cas_unique) else {
        return refuse(BAD_FORMAT);
    };
    if !valid_key(key) {
        return refuse(BAD_FORMAT);
    }
    if len > max_value {
        let request = Request::TooLarge {
            kind,
            key,
            swallow: len + 2,
            noreply,
        };
        return Ok(done(request, line_end));
    }
    let data_end = line_end + len;
    if buf.len() < data_end + 2 {
        return Err(ParseError::Incomplete);
    }
    if &buf[data_end..data_end + 2] != b"\r\n" {
        return Ok(done(
            Request::Invalid {
                error: ErrorReply::Client("bad data chunk"),
                swallow: 0,
                noreply,
            },
            data_end + 2,
        ));
    }
    let request = Request::Store {
        kind,
        key,
        flags,
        exptime,
        data: &buf[line_end..data_end],
        cas_unique,
        noreply,
    };
    Ok(done(request, data_end + 2))
}

fn delete(tokens: Tokens<'_>) -> Request<'_> {
    // `delete <key> 0` is an old form memcached still accepts.
    match fixed::<3>(tokens) {
        Some((t, 1, noreply)) if valid_key(t[0]) => Request::Delete { key: t[0], noreply },
        Some((t, 2, noreply)) if valid_key(t[0]) && t[1] == b"0" => {
            Request::Delete { key: t[0], noreply }
        }
        Some((_, 0, _)) => Request::invalid(ErrorReply::Error),
        _ => Request::invalid(ErrorReply::Client(
            "bad command line format.  Usage: delete <key> [noreply]",
        )),
    }
}

fn arith(kind: ArithKind, tokens: Tokens<'_>) -> Request<'_> {
    match fixed::<3>(tokens) {
        Some((t, 2, noreply)) => {
            if !valid_key(t[0]) {
                return Request::invalid(BAD_FORMAT);
            }
            match number::<u64>(t[1]) {
                Some(delta) => Request::Arith {
                    kind,
                    key: t[0],
                    delta,
                    noreply,
                },
                None => Request::invalid(ErrorReply::Client("invalid numeric delta argument")),
            }
        }
        _ => Request::invalid(ErrorReply::Error),
    }
}

fn touch(tokens: Tokens<'_>) -> Request<'_> {
    match fixed::<3>(tokens) {
        Some((t, 2, noreply)) => {
            if !valid_key(t[0]) {
                return Request::invalid(BAD_FORMAT);
            }
            match number::<i64>(t[1]) {
                Some(exptime) => Request::Touch {
                    key: t[0],
                    exptime,
                    noreply,
                },
                None => Request::invalid(ErrorReply::Client("invalid exptime argument")),
            }
        }
        _ => Request::invalid(ErrorReply::Error),
    }
}

fn flush_all(tokens: Tokens<'_>) -> Request<'_> {
    match fixed::<2>(tokens) {
        Some((_, 0, noreply)) => Request::FlushAll { delay: 0, noreply },
        Some((t, 1, noreply)) => match number::<i64>(t[0]) {
            Some(delay) if delay >= 0 => Request::FlushAll { delay, noreply },
            _ => Request::invalid(ErrorReply::Client("invalid exptime argument")),
        },
        _ => Request::invalid(ErrorReply::Error),
    }
}

fn verbosity(tokens: Tokens<'_>) -> Request<'_> {
    match fixed::<2>(tokens) {
        Some((t, 1, noreply)) if number::<u32>(t[0]).is_some() => Request::Verbosity { noreply },
        _ => Request::invalid(ErrorReply::Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024 * 1024;

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
    fn bad_data_chunk_consumes_the_block() {
        let parsed = one(b"set k 0 0 2\r\nabcd\r\n");
        assert_eq!(parsed.consumed, 17);
        assert!(matches!(
            parsed.request,
            Request::Invalid {
                error: ErrorReply::Client("bad data chunk"),
                ..
            }
        ));
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
                matches!(parsed.request, Request::Invalid { error, swallow: 3, .. } if error == BAD_FORMAT),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // No readable length: nothing to swallow.
        let parsed = one(b"set k 0 0 -1\r\n");
        assert!(matches!(
            parsed.request,
            Request::Invalid { swallow: 0, .. }
        ));
        // Wrong token count is an unknown form.
        let parsed = one(b"set k 0 0\r\n");
        assert!(matches!(
            parsed.request,
            Request::Invalid {
                error: ErrorReply::Error,
                ..
            }
        ));
    }

    #[test]
    fn keys_are_checked() {
        let long = format!("get {}\r\n", "x".repeat(251));
        assert!(matches!(
            one(long.as_bytes()).request,
            Request::Invalid { error, .. } if error == BAD_FORMAT
        ));
        let ok = format!("get {}\r\n", "x".repeat(250));
        assert_eq!(keys(one(ok.as_bytes()).request).len(), 1);
        assert!(matches!(
            one(b"get a\x01b\r\n").request,
            Request::Invalid { .. }
        ));
        assert!(!valid_key(b"a\x7f"));
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
                error: ErrorReply::Client("invalid numeric delta argument"),
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
        let mut rest = &input[..];
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let parsed = one(rest);
            seen.push(std::mem::discriminant(&parsed.request));
            rest = &rest[parsed.consumed..];
        }
        assert_eq!(seen.len(), 4);
    }
}
