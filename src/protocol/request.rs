//! Parsing classic text-protocol requests out of a read buffer.
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
//!   is taken in pieces ([`Parsed::rest`], [`parse_rest`]) and the
//!   connection never holds more than a piece of it.

use super::get_line::{LineRest, long_line};
use super::reply::ErrorReply;

/// Longest key memcached accepts.
pub const KEY_MAX_LEN: usize = 250;

/// Longest command line (without its data block) other than a `get` line,
/// as in memcached: a line that reaches it without a newline is fatal,
/// since the connection cannot find where the next request starts. A
/// `get` line that reaches it is taken in pieces instead.
pub const LINE_MAX_LEN: usize = 2048;

/// Most tokens memcached reads from a command line (its own limit is 24,
/// the terminal token included); more is always an unknown form.
const MAX_ARGS: usize = 23;

/// Why [`parse`] returned no request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The buffer ends in the middle of a request: read more and try again.
    Incomplete,
    /// A line other than a `get` exceeded [`LINE_MAX_LEN`] without a
    /// newline; the connection should answer `CLIENT_ERROR line too long`
    /// and close.
    LineTooLong,
}

/// One request taken off the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The request.
    pub request: Request<'a>,
    /// Bytes of the buffer it used, including its data block.
    pub consumed: usize,
    /// Set when the request's line goes on past `consumed`: the rest must
    /// be read with [`parse_rest`](super::parse_rest) before anything else.
    pub rest: Option<LineRest>,
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
    /// `get`/`gets`/`gat`/`gats`, or one piece of a long one: keys, all
    /// validated.
    Get {
        /// The keys, in request order.
        keys: Tokens<'a>,
        /// Whether to return CAS tokens (`gets`, `gats`).
        cas: bool,
        /// For `gat`/`gats`: the new exptime.
        touch: Option<i64>,
        /// The line ends with these keys: answer `END` after them.
        last: bool,
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
        /// Seconds from now or an absolute unix time; 0 or less: at once.
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
    /// `shutdown [graceful]`: stop the server, if enabled.
    Shutdown {
        /// The line is a form memcached takes (no argument, or
        /// `graceful`).
        valid: bool,
    },
    /// An admin command (`cache_memlimit`, `lru_crawler`, `slabs`).
    Admin(super::admin::Admin),
    /// `debug_panic <key>`, in debug builds only: a request whose handling
    /// panics on the shard of `key`, to test that a panic is contained.
    DebugPanic {
        /// The key whose shard the panic happens on.
        key: &'a [u8],
    },
    /// `debug_hold <key>`, in debug builds only: blocks the thread that
    /// owns `key`'s shard until a `debug_release`, to test a core that
    /// cannot keep up (answered `OK` once released).
    DebugHold {
        /// The key whose owner is held.
        key: &'a [u8],
    },
    /// `debug_release`, in debug builds only: lets a `debug_hold` go.
    DebugRelease,
    /// `debug_fault <site>` (debug builds only): the next pass through
    /// `site` panics, once (see [`crate::fault`]).
    DebugFault {
        /// Where.
        site: crate::fault::Site,
    },
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
    /// A refused storage command whose data block cannot be located: the
    /// connection answers (unless `noreply`) and closes, because whatever
    /// it read next might be the client's data.
    Unframed {
        /// The reply to send.
        error: ErrorReply,
        /// The request asked for no reply.
        noreply: bool,
    },
}

impl Request<'_> {
    pub(super) fn invalid(error: ErrorReply) -> Self {
        Request::Invalid {
            error,
            swallow: 0,
            noreply: false,
        }
    }

    /// An error reply that `noreply` silences, as memcached's do once it
    /// has seen the `noreply` token.
    fn refused(error: ErrorReply, noreply: bool) -> Self {
        Request::Invalid {
            error,
            swallow: 0,
            noreply,
        }
    }
}

/// Whether a text command can name `key` as it is, and a text reply print
/// it as it is: 1 to 250 bytes, none of them a space, CR or LF. One rule
/// for classic and meta commands, so a key either stores is read and
/// deleted by both. Any other key (stored through the binary protocol or
/// with a base64 key) is named base64-encoded with the meta `b` flag, and
/// printed that way. memcached's classic commands also take a CR inside a
/// key; here it would end up in reply lines, so it is refused.
pub fn valid_key(key: &[u8]) -> bool {
    !key.is_empty()
        && key.len() <= KEY_MAX_LEN
        && key.iter().all(|&b| !matches!(b, b' ' | b'\r' | b'\n'))
}

pub(super) fn number<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    // Only ASCII digits and a leading sign get this far, so the `str`
    // conversion never fails on valid input; anything else is a bad number.
    std::str::from_utf8(token).ok()?.parse().ok()
}

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
        None => return long_line(buf, max_value),
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

pub(super) fn done(request: Request<'_>, consumed: usize) -> Parsed<'_> {
    Parsed {
        request,
        consumed,
        rest: None,
    }
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
