//! Replies as typed values, and their text encoding.
//!
//! A keyed request's result is an [`Outcome`]: a hit, stored, not found,
//! a number, an error... It says what happened, not how it is spelled, so
//! the text protocol ([`Outcome::write_text`]) and the binary protocol
//! ([`super::binary::ReplyTo::write`]) write the same outcomes each in
//! their own way. An [`Outcome::Value`] borrows the item's bytes from the
//! shard, so either encoder copies them straight into the output buffer.
//!
//! Errors are named values ([`ErrorReply`]) that know their text line; the
//! binary encoder maps them to its status codes.

/// An error reply, named by what went wrong. Each knows the exact line
/// memcached 1.6.18 sends for it ([`ErrorReply::text`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReply {
    /// `ERROR`: an unknown command, or a form no command has.
    Error,
    /// `CLIENT_ERROR bad command line format`
    BadFormat,
    /// `CLIENT_ERROR bad data chunk`: a data block not ending in `\r\n`.
    BadDataChunk,
    /// `CLIENT_ERROR line too long`: a command line that never ends.
    LineTooLong,
    /// `CLIENT_ERROR invalid exptime argument`
    InvalidExptime,
    /// `CLIENT_ERROR invalid numeric delta argument` (`incr`/`decr`).
    InvalidDelta,
    /// `delete` with a hold time other than 0.
    DeleteUsage,
    /// `CLIENT_ERROR cannot increment or decrement non-numeric value`
    NonNumeric,
    /// `SERVER_ERROR object too large for cache`
    TooLarge,
    /// `SERVER_ERROR out of memory storing object`
    OutOfMemory,
    /// `SERVER_ERROR out of memory writing get response`: memcached's reply
    /// to a get it has no room to answer; here, a read refused because its
    /// connection's output budget was spent (see `server::forward`).
    OutOfMemoryGet,
    /// `SERVER_ERROR internal error`: the request's handling failed (it
    /// panicked); the connection closes after it.
    Internal,
    /// `CLIENT_ERROR invalid flag` (meta).
    InvalidFlag,
    /// `CLIENT_ERROR duplicate flag` (meta).
    DuplicateFlag,
    /// `CLIENT_ERROR bad token in command line format` (meta numbers).
    BadToken,
    /// `CLIENT_ERROR invalid or duplicate flag` (any flag error of `md`/`ma`).
    InvalidOrDuplicateFlag,
    /// `CLIENT_ERROR error decoding key` (meta `b` on a key that is not
    /// base64).
    KeyNotBase64,
    /// `CLIENT_ERROR opaque token too long` (meta `O`).
    OpaqueTooLong,
    /// `CLIENT_ERROR options flags are too long` (`mg` with too many tokens).
    GetFlagsTooLong,
    /// `CLIENT_ERROR options flags too long` (other meta commands).
    FlagsTooLong,
    /// `CLIENT_ERROR invalid mode for ms M token`
    SetModeInvalid,
    /// `CLIENT_ERROR invalid mode for ma M token`
    ArithModeInvalid,
    /// `CLIENT_ERROR incorrect length for M token`
    ModeLength,
    /// `CLIENT_ERROR invalid numeric initial value` (meta `J`).
    InitialInvalid,
    /// `CLIENT_ERROR invalid numeric delta value` (meta `D`).
    DeltaValueInvalid,
}

impl ErrorReply {
    /// The whole reply line, `\r\n` included.
    pub const fn text(self) -> &'static [u8] {
        match self {
            ErrorReply::Error => b"ERROR\r\n",
            ErrorReply::BadFormat => b"CLIENT_ERROR bad command line format\r\n",
            ErrorReply::BadDataChunk => b"CLIENT_ERROR bad data chunk\r\n",
            ErrorReply::LineTooLong => b"CLIENT_ERROR line too long\r\n",
            ErrorReply::InvalidExptime => b"CLIENT_ERROR invalid exptime argument\r\n",
            ErrorReply::InvalidDelta => b"CLIENT_ERROR invalid numeric delta argument\r\n",
            ErrorReply::DeleteUsage => {
                b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
            }
            ErrorReply::NonNumeric => {
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
            }
            ErrorReply::TooLarge => b"SERVER_ERROR object too large for cache\r\n",
            ErrorReply::OutOfMemory => b"SERVER_ERROR out of memory storing object\r\n",
            ErrorReply::OutOfMemoryGet => b"SERVER_ERROR out of memory writing get response\r\n",
            ErrorReply::Internal => b"SERVER_ERROR internal error\r\n",
            ErrorReply::InvalidFlag => b"CLIENT_ERROR invalid flag\r\n",
            ErrorReply::DuplicateFlag => b"CLIENT_ERROR duplicate flag\r\n",
            ErrorReply::BadToken => b"CLIENT_ERROR bad token in command line format\r\n",
            ErrorReply::InvalidOrDuplicateFlag => b"CLIENT_ERROR invalid or duplicate flag\r\n",
            ErrorReply::KeyNotBase64 => b"CLIENT_ERROR error decoding key\r\n",
            ErrorReply::OpaqueTooLong => b"CLIENT_ERROR opaque token too long\r\n",
            ErrorReply::GetFlagsTooLong => b"CLIENT_ERROR options flags are too long\r\n",
            ErrorReply::FlagsTooLong => b"CLIENT_ERROR options flags too long\r\n",
            ErrorReply::SetModeInvalid => b"CLIENT_ERROR invalid mode for ms M token\r\n",
            ErrorReply::ArithModeInvalid => b"CLIENT_ERROR invalid mode for ma M token\r\n",
            ErrorReply::ModeLength => b"CLIENT_ERROR incorrect length for M token\r\n",
            ErrorReply::InitialInvalid => b"CLIENT_ERROR invalid numeric initial value\r\n",
            ErrorReply::DeltaValueInvalid => b"CLIENT_ERROR invalid numeric delta value\r\n",
        }
    }

    /// Appends the reply line to `out`.
    pub fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.text());
    }
}

/// One item a get found, borrowed from the shard until the reply is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value<'a> {
    /// The key, as the request named it.
    pub key: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// The item's CAS token.
    pub cas: u64,
    /// The value.
    pub data: &'a [u8],
}

/// What a keyed classic (or binary) request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// A get found an item.
    Value(Value<'a>),
    /// A get found nothing.
    Miss,
    /// A store succeeded; the item's new CAS token.
    Stored {
        /// The stored item's CAS token.
        cas: u64,
    },
    /// `add` found the key, or `replace`/`append`/`prepend` did not.
    NotStored,
    /// A CAS comparison failed.
    Exists,
    /// No such item (`cas`, `delete`, `incr`, `touch`).
    NotFound,
    /// `delete` removed the item.
    Deleted,
    /// `touch` found the item.
    Touched,
    /// `incr`/`decr`: the new value.
    Number {
        /// The counter's new value.
        value: u64,
        /// The counter's new CAS token.
        cas: u64,
    },
    /// The request failed.
    Error(ErrorReply),
}

impl Outcome<'_> {
    /// Appends the text reply: a `VALUE` block (with the CAS token if
    /// `cas`) for a hit, nothing for a miss (the get's `END` comes later),
    /// one line otherwise.
    #[inline]
    pub fn write_text(self, cas: bool, out: &mut Vec<u8>) {
        let line: &[u8] = match self {
            Outcome::Value(v) => {
                return Reply::value(out, v.key, v.flags, v.data, cas.then_some(v.cas));
            }
            Outcome::Miss => return,
            Outcome::Stored { .. } => Reply::STORED,
            Outcome::NotStored => Reply::NOT_STORED,
            Outcome::Exists => Reply::EXISTS,
            Outcome::NotFound => Reply::NOT_FOUND,
            Outcome::Deleted => Reply::DELETED,
            Outcome::Touched => Reply::TOUCHED,
            Outcome::Number { value, .. } => return Reply::number(out, value),
            Outcome::Error(error) => error.text(),
        };
        out.extend_from_slice(line);
    }
}

/// The fixed text replies and the writers for the ones that carry values.
pub struct Reply;

impl Reply {
    /// `STORED`
    pub const STORED: &'static [u8] = b"STORED\r\n";
    /// `NOT_STORED`
    pub const NOT_STORED: &'static [u8] = b"NOT_STORED\r\n";
    /// `EXISTS`
    pub const EXISTS: &'static [u8] = b"EXISTS\r\n";
    /// `NOT_FOUND`
    pub const NOT_FOUND: &'static [u8] = b"NOT_FOUND\r\n";
    /// `DELETED`
    pub const DELETED: &'static [u8] = b"DELETED\r\n";
    /// `TOUCHED`
    pub const TOUCHED: &'static [u8] = b"TOUCHED\r\n";
    /// `END`, closing a get or a stats listing.
    pub const END: &'static [u8] = b"END\r\n";
    /// `OK`
    pub const OK: &'static [u8] = b"OK\r\n";

    /// Appends one `VALUE <key> <flags> <bytes> [<cas>]` block with its data.
    pub fn value(out: &mut Vec<u8>, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
        let mut numbers = itoa::Buffer::new();
        out.reserve(key.len() + data.len() + 48);
        out.extend_from_slice(b"VALUE ");
        out.extend_from_slice(key);
        out.push(b' ');
        out.extend_from_slice(numbers.format(flags).as_bytes());
        out.push(b' ');
        out.extend_from_slice(numbers.format(data.len()).as_bytes());
        if let Some(cas) = cas {
            out.push(b' ');
            out.extend_from_slice(numbers.format(cas).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }

    /// Appends a number on its own line (the reply to `incr`/`decr`).
    pub fn number(out: &mut Vec<u8>, value: u64) {
        out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// Appends one `STAT <name> <value>` line.
    pub fn stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "STAT {name} {value}\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_block() {
        let mut out = Vec::new();
        Reply::value(&mut out, b"k", 7, b"data", None);
        Reply::value(&mut out, b"k", 0, b"", Some(99));
        assert_eq!(out, b"VALUE k 7 4\r\ndata\r\nVALUE k 0 0 99\r\n\r\n");
    }

    #[test]
    fn errors_are_whole_lines() {
        let mut out = Vec::new();
        ErrorReply::Error.write(&mut out);
        ErrorReply::BadDataChunk.write(&mut out);
        ErrorReply::OutOfMemory.write(&mut out);
        assert_eq!(
            out,
            b"ERROR\r\nCLIENT_ERROR bad data chunk\r\nSERVER_ERROR out of memory storing object\r\n"
        );
    }

    #[test]
    fn outcomes_in_text() {
        let value = Value {
            key: b"k",
            flags: 3,
            cas: 42,
            data: b"hi",
        };
        let cases: [(Outcome<'_>, bool, &[u8]); 11] = [
            (Outcome::Value(value), false, b"VALUE k 3 2\r\nhi\r\n"),
            (Outcome::Value(value), true, b"VALUE k 3 2 42\r\nhi\r\n"),
            (Outcome::Miss, true, b""),
            (Outcome::Stored { cas: 9 }, false, b"STORED\r\n"),
            (Outcome::NotStored, false, b"NOT_STORED\r\n"),
            (Outcome::Exists, false, b"EXISTS\r\n"),
            (Outcome::NotFound, false, b"NOT_FOUND\r\n"),
            (Outcome::Deleted, false, b"DELETED\r\n"),
            (Outcome::Touched, false, b"TOUCHED\r\n"),
            (Outcome::Number { value: 12, cas: 1 }, false, b"12\r\n"),
            (
                Outcome::Error(ErrorReply::TooLarge),
                false,
                b"SERVER_ERROR object too large for cache\r\n",
            ),
        ];
        for (outcome, cas, expected) in cases {
            let mut out = Vec::new();
            outcome.write_text(cas, &mut out);
            assert_eq!(out, expected, "{outcome:?}");
        }
    }
}
