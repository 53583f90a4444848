//! Long `get` lines, taken in pieces.
//!
//! memcached bounds every command line but the get family, which may name
//! any number of keys; clients' `get_many` of ten thousand keys sends a
//! line of over 100 KB. Rather than hold such a line whole, the parser
//! takes it in pieces: [`super::parse`] returns the keys that a space has
//! completed once a get line runs past [`LINE_MAX_LEN`] without a newline,
//! with a [`LineRest`] that says how to read on ([`parse_rest`]). The
//! connection answers each piece as it comes and sends `END` after the
//! last, so a line of any length costs a bounded buffer.
//!
//! A bad key in a later piece cannot take back the values already sent for
//! earlier ones: it is answered `CLIENT_ERROR bad command line format` in
//! its turn and the rest of the line is skipped (memcached, holding the
//! whole line, answers only the error).

use super::reply::ErrorReply;
use super::request::{GetLine, LineRest, ParseError, Parsed, Request, done};
use super::tokens::{KEY_MAX_LEN, LINE_MAX_LEN, Tokens, number, valid_key};

/// A get line whose newline is within this many bytes is parsed whole, so
/// a bad key anywhere in it gets memcached's lone error; a longer one is
/// taken in pieces even when all of it has arrived, so that no request
/// hands the connection more keys at once than one piece holds (each key
/// becomes a step of its plan: a 16 KB line of one-byte keys would be
/// 8,000 of them).
pub const GET_WHOLE_MAX: usize = 4 * 1024;

/// The most bytes of keys one piece of a long get line holds.
pub const GET_PIECE_MAX: usize = LINE_MAX_LEN;
const PIECE_MAX: usize = GET_PIECE_MAX;

/// What to do with a line that has no newline in its first
/// [`LINE_MAX_LEN`] bytes.
pub(super) enum LongLine<'a> {
    /// A get line whose newline, at this offset, is within
    /// [`GET_WHOLE_MAX`]: parse it whole, as any other line.
    Whole(usize),
    /// The first piece of a longer get line (or its refusal).
    Piece(Parsed<'a>),
}

/// A line of `get`s with no newline in its first [`LINE_MAX_LEN`] bytes:
/// the whole line if its newline is in the buffer within
/// [`GET_WHOLE_MAX`], else its first piece. Any other command is fatal.
pub(super) fn long_line(buf: &[u8]) -> Result<LongLine<'_>, ParseError> {
    let mut tokens = Tokens::new(buf);
    let (cas, touch) = match tokens.next() {
        Some(b"get") => (false, false),
        Some(b"gets") => (true, false),
        Some(b"gat") => (false, true),
        Some(b"gats") => (true, true),
        _ => return Err(ParseError::LineTooLong),
    };
    let window = &buf[..buf.len().min(GET_WHOLE_MAX)];
    if let Some(newline) = memchr::memchr(b'\n', &window[LINE_MAX_LEN..]) {
        return Ok(LongLine::Whole(LINE_MAX_LEN + newline));
    }
    let mut line = GetLine {
        cas,
        touch: None,
        any_key: false,
    };
    if touch {
        // The exptime is complete: the line is long, its tokens are not.
        let exptime = tokens.next().and_then(number::<i64>);
        let Some(exptime) = exptime.filter(|_| tokens.rest().starts_with(b" ")) else {
            let error = ErrorReply::InvalidExptime;
            return Ok(LongLine::Piece(discard_line(
                Request::invalid(error),
                buf.len(),
            )));
        };
        line.touch = Some(exptime);
    }
    let start = buf.len() - tokens.rest().len();
    Ok(LongLine::Piece(get_piece(
        &buf[..buf.len().min(start + PIECE_MAX)],
        start,
        line,
    )))
}

/// Parses more of a line that [`parse`](super::parse) or an earlier call left unfinished
/// ([`Parsed::rest`]). For [`LineRest::Get`], the keys up to the newline
/// (`last`, then `END`) or, without one, every key completed so far;
/// [`ParseError::Incomplete`] while not even one more key is complete.
/// [`LineRest::Discard`] is the connection's to skip.
pub fn parse_rest(buf: &[u8], rest: LineRest) -> Result<Parsed<'_>, ParseError> {
    let LineRest::Get(line) = rest else {
        return Err(ParseError::Incomplete);
    };
    let window = &buf[..buf.len().min(PIECE_MAX)];
    let Some(newline) = memchr::memchr(b'\n', window) else {
        return match memchr::memrchr(b' ', window) {
            Some(_) => Ok(get_piece(window, 0, line)),
            // A key longer than any key can be will never complete.
            None if window.len() > KEY_MAX_LEN => Ok(discard_line(
                Request::invalid(ErrorReply::BadFormat),
                window.len(),
            )),
            None => Err(ParseError::Incomplete),
        };
    };
    let keys = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let request = match get(Tokens::new(keys), line.cas, line.touch) {
        Request::Invalid {
            error: ErrorReply::Error,
            ..
        } if line.any_key => Request::Get {
            keys: Tokens::new(&keys[keys.len()..]),
            cas: line.cas,
            touch: line.touch,
            last: true,
        },
        request => request,
    };
    Ok(done(request, newline + 1))
}

/// The keys of `buf[start..]` that a space has completed, as one piece of
/// a long get line; the partial key after them is left for the next read.
fn get_piece(buf: &[u8], start: usize, mut line: GetLine) -> Parsed<'_> {
    let tail = memchr::memrchr(b' ', &buf[start..]).map_or(start, |space| start + space + 1);
    let keys = Tokens::new(&buf[start..tail]);
    if buf.len() - tail > KEY_MAX_LEN || keys.clone().any(|key| !valid_key(key)) {
        return discard_line(Request::invalid(ErrorReply::BadFormat), buf.len());
    }
    line.any_key |= keys.clone().next().is_some();
    Parsed {
        request: Request::Get {
            keys,
            cas: line.cas,
            touch: line.touch,
            last: false,
        },
        consumed: tail,
        rest: Some(LineRest::Get(line)),
    }
}

/// The request of a get line's `keys` (or of one piece's), all checked:
/// `CLIENT_ERROR bad command line format` if one is not a key.
pub(super) fn get<'a>(keys: Tokens<'a>, cas: bool, touch: Option<i64>) -> Request<'a> {
    let mut any = false;
    for key in keys {
        if !valid_key(key) {
            return Request::invalid(ErrorReply::BadFormat);
        }
        any = true;
    }
    // `gat <exptime>` with no key at all is an empty answer in memcached,
    // `get` with none an unknown form.
    if !any && touch.is_none() {
        return Request::invalid(ErrorReply::Error);
    }
    Request::Get {
        keys,
        cas,
        touch,
        last: true,
    }
}

/// `request`, after which the rest of its line is skipped unread.
fn discard_line(request: Request<'_>, consumed: usize) -> Parsed<'_> {
    Parsed {
        request,
        consumed,
        rest: Some(LineRest::Discard),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse;

    const MAX: usize = 1024 * 1024;

    /// What a connection makes of a line fed to it `chunk` bytes at a time.
    #[derive(Debug, Default, PartialEq)]
    struct Streamed {
        keys: Vec<Vec<u8>>,
        /// Pieces that ended the line (`END` follows).
        last: usize,
        errors: Vec<ErrorReply>,
        /// The most bytes ever held unparsed.
        held: usize,
    }

    fn stream(input: &[u8], chunk: usize) -> Streamed {
        let mut out = Streamed::default();
        let mut buf = Vec::new();
        let mut rest = None;
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            out.held = out.held.max(buf.len());
            loop {
                let parsed = match rest {
                    None => parse(&buf, MAX),
                    Some(LineRest::Discard) => match memchr::memchr(b'\n', &buf) {
                        Some(newline) => {
                            buf.drain(..=newline);
                            rest = None;
                            continue;
                        }
                        None => {
                            buf.clear();
                            break;
                        }
                    },
                    Some(more) => parse_rest(&buf, more),
                };
                let Ok(parsed) = parsed else { break };
                match parsed.request {
                    Request::Get { keys, last, .. } => {
                        out.keys.extend(keys.map(<[u8]>::to_vec));
                        out.last += usize::from(last);
                    }
                    Request::Invalid { error, .. } => out.errors.push(error),
                    other => panic!("not a get: {other:?}"),
                }
                rest = parsed.rest;
                buf.drain(..parsed.consumed);
            }
        }
        assert!(
            buf.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(&buf)
        );
        out
    }

    fn get_line(command: &str, keys: &[String]) -> Vec<u8> {
        format!("{command} {}\r\n", keys.join(" ")).into_bytes()
    }

    #[test]
    fn a_get_line_of_any_length_is_taken_in_bounded_pieces() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("key:{i:06}")).collect();
        let line = get_line("gets", &keys);
        assert!(line.len() > 100_000);
        for chunk in [16 * 1024, 4096, 1000] {
            let got = stream(&line, chunk);
            assert_eq!(got.keys.len(), keys.len(), "chunk {chunk}");
            assert!(got.keys.iter().zip(&keys).all(|(a, b)| a == b.as_bytes()));
            assert_eq!((got.last, got.errors.len()), (1, 0));
            // Never more than a read and a line's worth (and a partial key).
            assert!(
                got.held < chunk + LINE_MAX_LEN + KEY_MAX_LEN,
                "chunk {chunk} held {}",
                got.held
            );
        }
        // Pieces split at every possible byte give the same keys.
        let short: Vec<String> = (0..600).map(|i| format!("k{i}")).collect();
        let line = get_line("get", &short);
        assert!(line.len() > LINE_MAX_LEN);
        for chunk in 1..64 {
            let got = stream(&line, chunk);
            assert_eq!(got.keys.len(), short.len(), "chunk {chunk}");
            assert_eq!((got.last, got.errors.len()), (1, 0));
        }
    }

    /// A long get line that has arrived whole is still taken in pieces, so
    /// none hands over more than a piece's keys; one within
    /// `GET_WHOLE_MAX` is parsed whole.
    #[test]
    fn a_get_line_in_the_buffer_whole_is_still_taken_in_bounded_pieces() {
        let keys: Vec<String> = (0..8000).map(|i| format!("{}", i % 10)).collect();
        let line = get_line("get", &keys);
        let mut buf = &line[..];
        let (mut rest, mut pieces, mut seen) = (None, 0, 0);
        loop {
            let parsed = match rest {
                None => parse(buf, MAX).unwrap(),
                Some(more) => parse_rest(buf, more).unwrap(),
            };
            let Request::Get { keys, last, .. } = parsed.request else {
                panic!("not a get: {:?}", parsed.request)
            };
            let count = keys.count();
            assert!(count <= PIECE_MAX / 2, "a piece of {count} keys");
            seen += count;
            pieces += 1;
            buf = &buf[parsed.consumed..];
            rest = parsed.rest;
            if last {
                break;
            }
        }
        assert_eq!((seen, buf.len()), (keys.len(), 0));
        assert!(pieces >= keys.len() * 2 / PIECE_MAX);
        let short: Vec<String> = (0..1500).map(|i| format!("{}", i % 10)).collect();
        let line = get_line("get", &short);
        assert!(line.len() > LINE_MAX_LEN && line.len() < GET_WHOLE_MAX);
        let whole = parse(&line, MAX).unwrap();
        assert_eq!((whole.consumed, whole.rest), (line.len(), None));
    }

    #[test]
    fn a_long_gat_line_keeps_its_exptime_in_every_piece() {
        let keys: Vec<String> = (0..1000).map(|i| format!("key{i}")).collect();
        let line = get_line("gats 300", &keys);
        let mut buf = line[..LINE_MAX_LEN + 10].to_vec();
        let first = parse(&buf, MAX).unwrap();
        assert!(matches!(
            first.request,
            Request::Get {
                cas: true,
                touch: Some(300),
                last: false,
                ..
            }
        ));
        let Some(LineRest::Get(more)) = first.rest else {
            panic!("the line goes on")
        };
        buf.drain(..first.consumed);
        buf.extend_from_slice(&line[LINE_MAX_LEN + 10..]);
        let mut rest = LineRest::Get(more);
        loop {
            let next = parse_rest(&buf, rest).unwrap();
            let Request::Get {
                cas: true,
                touch: Some(300),
                last,
                ..
            } = next.request
            else {
                panic!("a piece lost its command: {:?}", next.request);
            };
            let (consumed, more) = (next.consumed, next.rest);
            buf.drain(..consumed);
            if last {
                assert_eq!((buf.len(), more), (0, None));
                break;
            }
            rest = more.expect("the line goes on");
        }
    }

    #[test]
    fn a_bad_key_in_a_long_get_line_answers_an_error_and_skips_the_rest() {
        let mut keys: Vec<String> = (0..1000).map(|i| format!("key{i}")).collect();
        keys[700] = "x".repeat(KEY_MAX_LEN + 1);
        let mut input = get_line("get", &keys);
        input.extend_from_slice(b"get after\r\n");
        let got = stream(&input, 1024);
        // The keys of the pieces before the bad one were answered; after
        // the error, the line is skipped and the next request runs.
        assert_eq!(got.errors, [ErrorReply::BadFormat]);
        assert!(got.keys.len() < 700);
        assert_eq!(got.keys.last().unwrap(), b"after");
        assert_eq!(got.last, 1);
        // A line of spaces holds no key: memcached's ERROR, not END.
        let mut spaces = b"get".to_vec();
        spaces.resize(3 * LINE_MAX_LEN, b' ');
        spaces.extend_from_slice(b"\r\n");
        let got = stream(&spaces, 1000);
        assert_eq!((got.keys.len(), got.last), (0, 0));
        assert_eq!(got.errors, [ErrorReply::Error]);
    }
}
