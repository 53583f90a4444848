//! Parsing text-protocol lines out of a read buffer: classic commands
//! here, meta commands in `meta_line.rs`, long get lines in `get_line.rs`.
//!
//! Two rules keep a connection in step with its client whatever it sends:
//! - **A storage command's data block never runs as a command.** When its
//!   line is refused but its length is known, the block is swallowed; when
//!   the block cannot be located (a wrong number of tokens, a length that
//!   does not parse, a block not followed by `\r\n`), the request is
//!   [`Request::Unframed`] and the connection answers and closes. memcached
//!   1.6 would read on and run the block; here a value of `flush_all` stays
//!   a value.
//! - **Lines are bounded, except `get`.** A line without a newline in its
//!   first [`LINE_MAX_LEN`] bytes is fatal, as in memcached, unless it is a
//!   `get`/`gets`/`gat`/`gats`: those take any number of keys, so a long one
//!   is taken in pieces ([`Parsed::rest`], [`parse_rest`](super::parse_rest)) and the
//!   connection never holds more than a piece of it.

use super::get_line::{LongLine, get, long_line};
use super::kind::{ArithKind, StoreKind};
use super::reply::ErrorReply;
use super::request::{ParseError, Parsed, Request, done};
use super::tokens::{LINE_MAX_LEN, Tokens, number, valid_key};

/// Most tokens memcached reads from a command line (its own limit is 24,
/// the terminal token included); more is always an unknown form.
const MAX_ARGS: usize = 23;

/// Takes one request off the front of `buf`.
///
/// `max_value` is the largest data block the server could ever store: a
/// storage command announcing more is refused with `SERVER_ERROR object too
/// large for cache` before its data arrives, and its data is swallowed.
pub fn parse(buf: &[u8], max_value: usize) -> Result<Parsed<'_>, ParseError> {
    let window = &buf[..buf.len().min(LINE_MAX_LEN)];
    let newline = match memchr::memchr(b'\n', window) {
        Some(newline) => newline,
        None if buf.len() < LINE_MAX_LEN => return Err(ParseError::Incomplete),
        None => match long_line(buf)? {
            LongLine::Whole(newline) => newline,
            LongLine::Piece(piece) => return Ok(piece),
        },
    };
    parse_line(buf, newline, max_value)
}

/// The whole size of the storage request at the front of `buf` (its line,
/// its data block and the block's `\r\n`) once its line is complete: what
/// a connection must hold to take it. `None` for any other request, an
/// unfinished line, or a block that will be refused (too large: it is
/// swallowed as it arrives, never held).
pub fn frame_len(buf: &[u8], max_value: usize) -> Option<usize> {
    let newline = memchr::memchr(b'\n', &buf[..buf.len().min(LINE_MAX_LEN)])?;
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let mut tokens = Tokens::new(line);
    let length = match tokens.next()? {
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => tokens.nth(3)?,
        b"ms" => tokens.nth(1)?,
        _ => return None,
    };
    let length: usize = number(length)?;
    (length <= max_value).then_some(newline + 1 + length + 2)
}

/// Parses the request whose line ends with the newline at `newline`.
pub(super) fn parse_line(
    buf: &[u8],
    newline: usize,
    max_value: usize,
) -> Result<Parsed<'_>, ParseError> {
    let line_end = newline + 1;
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let mut tokens = Tokens::new(line);
    let Some(command) = tokens.next() else {
        return Ok(done(Request::invalid(ErrorReply::Error), line_end));
    };
    if super::meta_line::is_meta(command) {
        return super::meta_line::parse(line, buf, line_end, max_value);
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
        b"shutdown" => Request::Shutdown {
            valid: super::admin::shutdown_form_is_valid(tokens),
        },
        b"cache_memlimit" => Request::Admin(super::admin::cache_memlimit(tokens)),
        b"lru_crawler" => Request::Admin(super::admin::lru_crawler(tokens)),
        b"slabs" => Request::Admin(super::admin::slabs(tokens)),
        // `watch` (memcached's log streams) is not implemented: it is an
        // unknown command, as docs/interop.md says.
        b"debug_panic" if cfg!(debug_assertions) => match tokens.next() {
            Some(key) if valid_key(key) => Request::DebugPanic { key },
            _ => Request::invalid(ErrorReply::Error),
        },
        b"debug_hold" if cfg!(debug_assertions) => match tokens.next() {
            Some(key) if valid_key(key) => Request::DebugHold { key },
            _ => Request::invalid(ErrorReply::Error),
        },
        b"debug_release" if cfg!(debug_assertions) => Request::DebugRelease,
        b"debug_fault" if cfg!(debug_assertions) => {
            match tokens.next().and_then(crate::fault::Site::from_name) {
                Some(site) => Request::DebugFault { site },
                None => Request::invalid(ErrorReply::Error),
            }
        }
        _ => Request::invalid(ErrorReply::Error),
    };
    Ok(done(request, line_end))
}

/// The tokens after a command, as memcached sees them: their count, and
/// `noreply` if the last one is that word (wherever the command would
/// expect it: memcached looks only at the last token).
struct Args<'a> {
    tokens: [&'a [u8]; MAX_ARGS],
    /// How many; `MAX_ARGS + 1` stands for "more than memcached reads".
    count: usize,
}

impl<'a> Args<'a> {
    fn of(tokens: Tokens<'a>) -> Args<'a> {
        let mut args = Args {
            tokens: [&[]; MAX_ARGS],
            count: 0,
        };
        for token in tokens {
            if args.count == MAX_ARGS {
                args.count += 1;
                break;
            }
            args.tokens[args.count] = token;
            args.count += 1;
        }
        args
    }

    fn noreply(&self) -> bool {
        (1..=MAX_ARGS).contains(&self.count) && self.tokens[self.count - 1] == b"noreply"
    }
}

fn gat(mut tokens: Tokens<'_>, cas: bool) -> Request<'_> {
    let Some(exptime) = tokens.next() else {
        return Request::invalid(ErrorReply::Error);
    };
    match number::<i64>(exptime) {
        Some(exptime) => get(tokens, cas, Some(exptime)),
        None => Request::invalid(ErrorReply::InvalidExptime),
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
    let args = Args::of(tokens);
    let t = &args.tokens;
    // One token more than the form needs is `noreply`, or ignored as
    // memcached ignores it; any other count is an unknown form.
    if args.count != wanted && args.count != wanted + 1 {
        let error = ErrorReply::Error;
        return Ok(done(
            Request::Unframed {
                error,
                noreply: false,
            },
            line_end,
        ));
    }
    let noreply = args.noreply();
    // Read as memcached reads it (`strtol`), so `-0` is 0.
    let len = number::<i32>(t[3]).and_then(|len| u32::try_from(len).ok());
    let Some(len) = len.filter(|&len| len < i32::MAX as u32) else {
        let error = ErrorReply::BadFormat;
        return Ok(done(Request::Unframed { error, noreply }, line_end));
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
        return refuse(ErrorReply::BadFormat);
    };
    if !valid_key(key) {
        return refuse(ErrorReply::BadFormat);
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
        // The block is not the length the line announced: what follows
        // may be more of it.
        let error = ErrorReply::BadDataChunk;
        return Ok(done(Request::Unframed { error, noreply }, data_end + 2));
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
    let args = Args::of(tokens);
    let noreply = args.noreply();
    let key = args.tokens[0];
    // `delete <key> 0` is an old form memcached still accepts.
    let hold_is_zero = args.tokens[1] == b"0";
    let valid = match args.count {
        0 => return Request::invalid(ErrorReply::Error),
        1 => true,
        2 => hold_is_zero || noreply,
        3 => hold_is_zero && noreply,
        _ => return Request::invalid(ErrorReply::Error),
    };
    if !valid {
        return Request::refused(ErrorReply::DeleteUsage, noreply);
    }
    if !valid_key(key) {
        return Request::refused(ErrorReply::BadFormat, noreply);
    }
    Request::Delete { key, noreply }
}

/// An error reply, and whether `noreply` silences it.
type Refusal = (ErrorReply, bool);

/// The `<key> <number> [noreply]` forms (`incr`, `decr`, `touch`): the key,
/// the number's token and `noreply`; or the error for a line of another
/// shape, and whether it is silenced.
fn key_and_number(tokens: Tokens<'_>) -> Result<(&[u8], &[u8], bool), Refusal> {
    let args = Args::of(tokens);
    if args.count != 2 && args.count != 3 {
        return Err((ErrorReply::Error, false));
    }
    let noreply = args.noreply();
    if !valid_key(args.tokens[0]) {
        return Err((ErrorReply::BadFormat, noreply));
    }
    Ok((args.tokens[0], args.tokens[1], noreply))
}

fn arith(kind: ArithKind, tokens: Tokens<'_>) -> Request<'_> {
    let (key, delta, noreply) = match key_and_number(tokens) {
        Ok(parts) => parts,
        Err((error, noreply)) => return Request::refused(error, noreply),
    };
    match number::<u64>(delta) {
        Some(delta) => Request::Arith {
            kind,
            key,
            delta,
            noreply,
        },
        None => Request::refused(ErrorReply::InvalidDelta, noreply),
    }
}

fn touch(tokens: Tokens<'_>) -> Request<'_> {
    let (key, exptime, noreply) = match key_and_number(tokens) {
        Ok(parts) => parts,
        Err((error, noreply)) => return Request::refused(error, noreply),
    };
    match number::<i64>(exptime) {
        Some(exptime) => Request::Touch {
            key,
            exptime,
            noreply,
        },
        None => Request::refused(ErrorReply::InvalidExptime, noreply),
    }
}

fn flush_all(tokens: Tokens<'_>) -> Request<'_> {
    let args = Args::of(tokens);
    if args.count > 2 {
        return Request::invalid(ErrorReply::Error);
    }
    let noreply = args.noreply();
    // Any token that is not the trailing `noreply` must be the delay.
    if args.count == usize::from(noreply) {
        return Request::FlushAll { delay: 0, noreply };
    }
    match number::<i64>(args.tokens[0]) {
        Some(delay) => Request::FlushAll { delay, noreply },
        None => Request::refused(ErrorReply::InvalidExptime, noreply),
    }
}

fn verbosity(tokens: Tokens<'_>) -> Request<'_> {
    let args = Args::of(tokens);
    if args.count != 1 && args.count != 2 {
        return Request::invalid(ErrorReply::Error);
    }
    let noreply = args.noreply();
    match number::<u32>(args.tokens[0]) {
        Some(_) => Request::Verbosity { noreply },
        None => Request::refused(ErrorReply::BadFormat, noreply),
    }
}

#[cfg(test)]
mod tests;
