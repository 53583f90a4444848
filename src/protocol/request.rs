//! The text protocol's request vocabulary: what a parser hands the
//! connection ([`Parsed`], [`Request`], [`ParseError`]) and what a long get
//! line carries from one piece to the next ([`LineRest`], [`GetLine`]).
//! Types only: the parsers (`text.rs`, `get_line.rs`, `meta_line.rs`)
//! build these, and this file imports none of them.

use super::admin::Admin;
use super::kind::{ArithKind, StoreKind};
use super::meta::Meta;
use super::reply::ErrorReply;
use super::tokens::Tokens;

/// Why a parser returned no request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The buffer ends in the middle of a request: read more and try again.
    Incomplete,
    /// A line other than a `get` exceeded [`super::LINE_MAX_LEN`] without a
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
    Admin(Admin),
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
    Meta(Meta<'a>),
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
    /// A refused request, answered with `error`.
    pub(super) fn invalid(error: ErrorReply) -> Self {
        Request::Invalid {
            error,
            swallow: 0,
            noreply: false,
        }
    }

    /// An error reply that `noreply` silences, as memcached's do once it
    /// has seen the `noreply` token.
    pub(super) fn refused(error: ErrorReply, noreply: bool) -> Self {
        Request::Invalid {
            error,
            swallow: 0,
            noreply,
        }
    }
}

/// What is left of a line that was taken in pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineRest {
    /// More keys of a get line.
    Get(GetLine),
    /// The rest of a line already answered with an error: skip it, up to
    /// and including its newline.
    Discard,
}

/// What the first piece of a long get line said, carried to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetLine {
    /// Return CAS tokens.
    pub cas: bool,
    /// `gat`/`gats`: the new exptime.
    pub touch: Option<i64>,
    /// Whether any piece so far held a key (a get of no keys is `ERROR`).
    pub(super) any_key: bool,
}

/// `request`, complete after `consumed` bytes.
pub(super) fn done(request: Request<'_>, consumed: usize) -> Parsed<'_> {
    Parsed {
        request,
        consumed,
        rest: None,
    }
}
