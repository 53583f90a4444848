//! The text parser (classic and meta commands), fed as a connection feeds
//! it.
//!
//! [`check`] runs an input through a model of the connection's read loop:
//! `protocol::parse` on a fresh line, `protocol::parse_rest` on the rest of
//! a long `get` line, the connection's own skipping of a refused data block
//! (`swallow`) and of a line already answered (`LineRest::Discard`), and a
//! close on `quit`, an unframed store or a line that never ends. After
//! every step it checks:
//!
//! - progress: a request consumes at least one byte, never more than the
//!   buffer holds, and every key and data block it borrows lies within
//!   what it consumed;
//! - keys: every key a request names passes `protocol::valid_key` (and a
//!   base64 meta key decodes);
//! - framing: a store's data block is exactly the length its line
//!   announced, starts right after the line and is followed by `\r\n`; a
//!   refused block is swallowed whole;
//! - bounded memory: while a long `get` line is taken in pieces, the
//!   connection holds at most one unfinished key; otherwise an incomplete
//!   request is an unfinished line shorter than `LINE_MAX_LEN` or a store
//!   waiting for a block of at most [`MAX_VALUE`] bytes;
//! - fields: a store's and a meta command's typed fields say what the
//!   tokens of its line say, read here independently of the parser.
//!
//! Each input is fed under several read schedules ([`super::split`]); when
//! no line of it is longer than `LINE_MAX_LEN`, all must give the same
//! requests. (A long `get` line is split into pieces where its reads end,
//! so its answer depends on them by design.)

use super::split;
use corecache::protocol::meta::{
    self, CasTokens, Meta, MetaArith, MetaDebug, MetaDelete, MetaGet, MetaRequest, MetaSet,
    OPAQUE_MAX_LEN, SetMode,
};
use corecache::protocol::{
    ArithKind, GET_PIECE_MAX, KEY_MAX_LEN, LINE_MAX_LEN, LineRest, ParseError, Parsed, Request,
    StoreKind, parse, parse_rest, valid_key,
};

/// The largest data block the fuzzed parser accepts: small, so that both a
/// block still arriving and a block refused as too large are common.
pub const MAX_VALUE: usize = 1024;

/// Checks `input` under every read schedule; see the module doc.
pub fn check(input: &[u8]) {
    split::check_agreement(input, feed, |a, b| {
        a.long_line || b.long_line || a.events == b.events
    });
}

/// What a connection made of its input.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A whole get line (its pieces' keys together, if it came in pieces).
    Get {
        keys: Vec<Vec<u8>>,
        cas: bool,
        touch: Option<i64>,
    },
    /// Any other request, as its `Debug` text (which shows every byte it
    /// borrows).
    Other(String),
    /// The connection closes.
    Closed(&'static str),
}

#[derive(Debug)]
struct Run {
    events: Vec<Event>,
    /// Some line ran past `LINE_MAX_LEN` without a newline.
    long_line: bool,
}

/// The connection's parsing state between reads.
#[derive(Default)]
struct Conn {
    rest: Option<LineRest>,
    /// Bytes of a refused data block still to skip.
    swallow: usize,
    /// Keys of the get line being taken in pieces.
    pending: Vec<Vec<u8>>,
    events: Vec<Event>,
    closed: bool,
    long_line: bool,
}

fn feed(input: &[u8], schedule: &[usize]) -> Run {
    let mut conn = Conn::default();
    let mut buf = Vec::new();
    let mut at = 0;
    for &read in schedule {
        if conn.closed || at >= input.len() {
            break;
        }
        let end = (at + read).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        conn.run(&mut buf);
    }
    Run {
        events: conn.events,
        long_line: conn.long_line,
    }
}

impl Conn {
    /// Parses what `buf` holds, as the connection does after a read.
    fn run(&mut self, buf: &mut Vec<u8>) {
        while !self.closed {
            if self.swallow > 0 {
                let here = self.swallow.min(buf.len());
                buf.drain(..here);
                self.swallow -= here;
                if self.swallow > 0 {
                    return;
                }
            }
            let prev = self.rest;
            let result = match prev {
                Some(LineRest::Discard) => match buf.iter().position(|&b| b == b'\n') {
                    Some(newline) => {
                        buf.drain(..=newline);
                        self.rest = None;
                        continue;
                    }
                    None => {
                        buf.clear();
                        return;
                    }
                },
                Some(more) => parse_rest(buf, more),
                None => {
                    let window = &buf[..buf.len().min(LINE_MAX_LEN)];
                    if buf.len() >= LINE_MAX_LEN && !window.contains(&b'\n') {
                        self.long_line = true;
                    }
                    parse(buf, MAX_VALUE)
                }
            };
            let parsed = match result {
                Ok(parsed) => parsed,
                Err(ParseError::Incomplete) => {
                    check_incomplete(buf, prev);
                    return;
                }
                Err(ParseError::LineTooLong) => {
                    assert!(prev.is_none(), "LineTooLong inside a get line");
                    assert!(
                        buf.len() >= LINE_MAX_LEN && !buf[..LINE_MAX_LEN].contains(&b'\n'),
                        "LineTooLong for a line that ends in time"
                    );
                    self.close("line too long");
                    return;
                }
            };
            check_parsed(buf, &parsed, prev);
            self.record(&parsed, prev);
            self.rest = parsed.rest;
            let consumed = parsed.consumed;
            buf.drain(..consumed);
        }
    }

    fn close(&mut self, why: &'static str) {
        self.events.push(Event::Closed(why));
        self.closed = true;
    }

    fn record(&mut self, parsed: &Parsed<'_>, prev: Option<LineRest>) {
        self.swallow = match parsed.request {
            Request::Invalid { swallow, .. } | Request::TooLarge { swallow, .. } => swallow,
            Request::Meta(meta) => meta.too_large,
            _ => 0,
        };
        match parsed.request {
            Request::Get {
                keys,
                cas,
                touch,
                last,
            } => {
                self.pending.extend(keys.map(<[u8]>::to_vec));
                if last {
                    let keys = std::mem::take(&mut self.pending);
                    self.events.push(Event::Get { keys, cas, touch });
                }
            }
            request => {
                if matches!(prev, Some(LineRest::Get(_))) || parsed.rest.is_some() {
                    // An error inside a get line taken in pieces: had the
                    // line come whole, the error would be its only answer.
                    self.pending.clear();
                }
                self.events.push(Event::Other(format!("{request:?}")));
                match request {
                    Request::Quit => self.close("quit"),
                    Request::Unframed { .. } => self.close("unframed"),
                    _ => {}
                }
            }
        }
    }
}

/// The parser is waiting for more: check it holds only what it must.
fn check_incomplete(buf: &[u8], prev: Option<LineRest>) {
    if let Some(LineRest::Get(_)) = prev {
        assert!(
            buf.len() <= KEY_MAX_LEN,
            "a long get line holds {} bytes of an unfinished key",
            buf.len()
        );
        return;
    }
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        assert!(buf.len() < LINE_MAX_LEN, "an endless line is still awaited");
        return;
    };
    assert!(newline < LINE_MAX_LEN, "incomplete past a long line's end");
    let line = Line::of(buf);
    let len = line
        .data_len()
        .unwrap_or_else(|| panic!("incomplete after the whole line {:?}", line.text()));
    assert!(len <= MAX_VALUE, "waiting for a block of {len} bytes");
    assert!(buf.len() < line.end + len + 2, "the block is here");
}

/// The first line of a buffer, tokenized here independently of the parser.
struct Line<'a> {
    tokens: Vec<&'a [u8]>,
    /// Bytes of the buffer up to and including the newline.
    end: usize,
}

impl<'a> Line<'a> {
    fn of(buf: &'a [u8]) -> Line<'a> {
        let newline = buf
            .iter()
            .position(|&b| b == b'\n')
            .expect("a request that needs its whole line has it");
        let text = &buf[..newline];
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        Line {
            tokens: text
                .split(|&b| b == b' ')
                .filter(|t| !t.is_empty())
                .collect(),
            end: newline + 1,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.tokens.join(&b' ')).into_owned()
    }

    /// The data block length a storage command announces: read as a
    /// signed number, as memcached's `strtol` reads it (so `-0` is 0), and
    /// not negative.
    fn data_len(&self) -> Option<usize> {
        let at = match *self.tokens.first()? {
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => 4,
            b"ms" => 2,
            _ => return None,
        };
        usize::try_from(number::<i32>(self.tokens.get(at)?)?).ok()
    }
}

fn number<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// A number token the parser accepted.
fn accepted<T: std::str::FromStr>(token: &[u8]) -> T {
    number(token).unwrap_or_else(|| {
        panic!(
            "accepted the number {:?}",
            String::from_utf8_lossy(token).into_owned()
        )
    })
}

/// Whether `part` lies within `whole` (by address).
fn within(whole: &[u8], part: &[u8]) -> bool {
    let range = whole.as_ptr_range();
    let part = part.as_ptr_range();
    range.start <= part.start && part.end <= range.end
}

fn check_parsed(buf: &[u8], parsed: &Parsed<'_>, prev: Option<LineRest>) {
    let Parsed {
        request,
        consumed,
        rest,
    } = *parsed;
    assert!(consumed > 0, "no progress: {request:?}");
    assert!(consumed <= buf.len(), "consumed past the end: {request:?}");
    let used = &buf[..consumed];
    let key_ok = |key: &[u8]| {
        assert!(valid_key(key), "invalid key {key:?} in {request:?}");
        assert!(within(used, key), "key outside the request: {request:?}");
    };
    match (rest, request) {
        // A piece takes every key its window completed: what it leaves
        // is a partial key, or the rest of a line past a full window.
        (Some(LineRest::Get(_)), Request::Get { last: false, .. }) => assert!(
            buf.len() - consumed <= KEY_MAX_LEN || consumed + KEY_MAX_LEN >= GET_PIECE_MAX,
            "a piece of a get line of {consumed} bytes leaves {} bytes held",
            buf.len() - consumed
        ),
        (Some(LineRest::Discard), Request::Invalid { swallow: 0, .. }) => {}
        (None, Request::Get { last: false, .. }) => panic!("a piece with no rest"),
        (None, _) => {}
        (rest, request) => panic!("{request:?} with the rest {rest:?}"),
    }
    let from_line = prev.is_none() && rest.is_none();
    match request {
        Request::Get { keys, .. } => keys.for_each(key_ok),
        Request::Store {
            kind,
            key,
            flags,
            exptime,
            data,
            cas_unique,
            noreply,
        } => {
            key_ok(key);
            let line = Line::of(buf);
            let t = &line.tokens;
            let wanted = if kind == StoreKind::Cas { 6 } else { 5 };
            assert!(
                t.len() == wanted || t.len() == wanted + 1,
                "{}",
                line.text()
            );
            assert_eq!(Some(kind), store_kind(t[0]));
            assert_eq!(t[1], key);
            assert_eq!(flags, accepted::<u32>(t[2]));
            assert_eq!(exptime, accepted::<i64>(t[3]));
            let expected_cas = if kind == StoreKind::Cas {
                accepted::<u64>(t[5])
            } else {
                0
            };
            assert_eq!(cas_unique, expected_cas);
            assert_eq!(noreply, t.len() == wanted + 1 && t[wanted] == b"noreply");
            check_block(buf, consumed, &line, data);
        }
        Request::Delete { key, .. }
        | Request::Arith { key, .. }
        | Request::Touch { key, .. }
        | Request::DebugPanic { key }
        | Request::DebugHold { key } => key_ok(key),
        Request::TooLarge {
            kind, key, swallow, ..
        } => {
            key_ok(key);
            let line = Line::of(buf);
            assert_eq!(Some(kind), store_kind(line.tokens[0]));
            let len = line
                .data_len()
                .expect("a too large store announces its length");
            assert!(len > MAX_VALUE, "{len} bytes refused as too large");
            assert_eq!((swallow, consumed), (len + 2, line.end));
        }
        Request::Invalid { swallow, .. } if swallow > 0 => {
            assert!(from_line, "a piece of a get line swallows a block");
            let line = Line::of(buf);
            let len = line
                .data_len()
                .expect("a refused store announces its length");
            assert_eq!((swallow, consumed), (len + 2, line.end), "{}", line.text());
        }
        Request::Meta(meta) => check_meta(buf, consumed, &meta),
        _ => {}
    }
}

fn store_kind(command: &[u8]) -> Option<StoreKind> {
    Some(match command {
        b"set" => StoreKind::Set,
        b"add" => StoreKind::Add,
        b"replace" => StoreKind::Replace,
        b"append" => StoreKind::Append,
        b"prepend" => StoreKind::Prepend,
        b"cas" => StoreKind::Cas,
        _ => return None,
    })
}

/// A store's data block: exactly the announced length, right after its
/// line, followed by `\r\n`, and the end of the request.
fn check_block(buf: &[u8], consumed: usize, line: &Line<'_>, data: &[u8]) {
    let len = line.data_len().expect("a store announces its length");
    assert_eq!(data.len(), len, "data block of another length");
    assert_eq!(
        data.as_ptr(),
        buf[line.end..].as_ptr(),
        "data block misplaced"
    );
    assert_eq!(&buf[line.end + len..line.end + len + 2], b"\r\n");
    assert_eq!(consumed, line.end + len + 2);
}

fn check_meta(buf: &[u8], consumed: usize, m: &Meta<'_>) {
    let line = Line::of(buf);
    let t = &line.tokens;
    let (command, flags_at) = match m.request {
        MetaRequest::Get(_) => ("mg", 2),
        MetaRequest::Set(_) => ("ms", 3),
        MetaRequest::Delete(_) => ("md", 2),
        MetaRequest::Arith(_) => ("ma", 2),
        MetaRequest::Debug(_) => ("me", 2),
    };
    assert_eq!(t[0], command.as_bytes());
    assert_eq!(t[1], m.key);
    assert!(valid_key(m.key), "invalid meta key {:?}", m.key);
    assert!(t.len() < 20, "{} tokens accepted", t.len());
    let flags = &t[flags_at..];
    let echoed: Vec<&[u8]> = m
        .tokens
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(echoed, flags, "flag tokens to echo");
    if m.request.base64() {
        assert!(
            meta::base64_len(m.key).is_some(),
            "a base64 key that does not decode"
        );
    }
    for flag in flags {
        assert!(
            flag[0] != b'O' || flag.len() <= OPAQUE_MAX_LEN,
            "opaque too long"
        );
    }
    if let MetaRequest::Set(_) = m.request {
        let len = line.data_len().expect("ms has a length");
        if m.too_large > 0 {
            assert!(len > MAX_VALUE);
            assert_eq!((m.too_large, consumed), (len + 2, line.end));
            assert!(m.data.is_empty());
        } else {
            check_block(buf, consumed, &line, m.data);
        }
    } else {
        assert_eq!((m.too_large, m.data.len(), consumed), (0, 0, line.end));
    }
    check_meta_flags(m.request, flags);
}

/// The typed request says what its flag tokens say.
fn check_meta_flags(request: MetaRequest, flags: &[&[u8]]) {
    if let MetaRequest::Debug(debug) = request {
        // `me` reads only `b` and ignores everything else.
        let base64 = flags.iter().any(|&t| t == b"b");
        assert_eq!(debug, MetaDebug { base64 });
        return;
    }
    let mut seen = 0u128;
    for flag in flags {
        assert!(
            b"bNTRCEFMJDOPLkstcfvhluqIx".contains(&flag[0]),
            "unknown flag {flag:?} accepted"
        );
        assert!(seen & 1 << flag[0] == 0, "flag {flag:?} twice");
        seen |= 1 << flag[0];
    }
    let arg = |letter: u8| flags.iter().find(|t| t[0] == letter).map(|t| &t[1..]);
    let has = |letter: u8| arg(letter).is_some();
    let num_i32 = |letter: u8| arg(letter).map(accepted::<i32>);
    let num_u64 = |letter: u8| arg(letter).map(accepted::<u64>);
    let cas = CasTokens::new(num_u64(b'C'), num_u64(b'E'));
    let (quiet, base64) = (has(b'q'), has(b'b'));
    match request {
        MetaRequest::Get(get) => assert_eq!(
            get,
            MetaGet {
                value: has(b'v'),
                touch: num_i32(b'T'),
                vivify: num_i32(b'N'),
                recache: num_i32(b'R'),
                no_bump: has(b'u'),
                new_cas: num_u64(b'E'),
                quiet,
                base64,
            }
        ),
        MetaRequest::Set(set) => {
            let mode = match arg(b'M') {
                None | Some(b"S") => SetMode::Set,
                Some(b"E") => SetMode::Add,
                Some(b"A") => SetMode::Append,
                Some(b"P") => SetMode::Prepend,
                Some(b"R") => SetMode::Replace,
                Some(other) => panic!("ms mode {other:?} accepted"),
            };
            let expected = MetaSet {
                mode,
                client_flags: arg(b'F').map_or(0, accepted::<u32>),
                ttl: num_i32(b'T'),
                vivify: num_i32(b'N'),
                cas,
                invalidate: has(b'I'),
                quiet,
                base64,
            };
            assert_eq!(set, expected);
        }
        MetaRequest::Delete(delete) => assert_eq!(
            delete,
            MetaDelete {
                cas,
                ttl: num_i32(b'T'),
                invalidate: has(b'I'),
                strip: has(b'x'),
                quiet,
                base64,
            }
        ),
        MetaRequest::Arith(arith) => {
            let kind = match arg(b'M') {
                None | Some(b"I" | b"+") => ArithKind::Incr,
                Some(b"D" | b"-") => ArithKind::Decr,
                Some(other) => panic!("ma mode {other:?} accepted"),
            };
            let expected = MetaArith {
                kind,
                delta: num_u64(b'D').unwrap_or(1),
                initial: num_u64(b'J').unwrap_or(0),
                vivify: num_i32(b'N'),
                ttl: num_i32(b'T'),
                cas,
                value: has(b'v'),
                quiet,
                base64,
            };
            assert_eq!(arith, expected);
        }
        MetaRequest::Debug(_) => unreachable!("handled above"),
    }
}
