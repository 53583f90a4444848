//! Parsing memcached's meta commands (`mg ms md ma me mn`).
//!
//! This module owns the meta request line: the command, the key as sent,
//! and the single-letter flags with their tokens, checked the way memcached
//! 1.6.18 checks them (same error replies, same precedence). The result is a
//! [`Meta`] borrowing from the read buffer; its [`MetaFlags`] is plain
//! `Copy` data so a server can carry it inside an operation across threads.
//! The flag tokens themselves are kept as one slice ([`Meta::tokens`]):
//! replies echo flags in request order (`O` opaques, `k`, `c`, ...), so the
//! executor walks them again with [`Tokens`].
//!
//! Base64 keys (`b`) are only validated here; the executor decodes them
//! (into a stack buffer) when it needs the binary key.

use super::reply::ErrorReply;
use super::request::{KEY_MAX_LEN, Parsed, Request, Tokens};
use base64::Engine as _;

/// Longest `O` token memcached echoes, the `O` included.
pub const OPAQUE_MAX_LEN: usize = 32;

/// memcached refuses a meta line of this many tokens or more (command and
/// key included).
const MAX_TOKENS: usize = 20;

/// Which meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCommand {
    /// `mg`: get.
    Get,
    /// `ms`: set, in any mode.
    Set,
    /// `md`: delete or invalidate.
    Delete,
    /// `ma`: increment or decrement.
    Arith,
    /// `me`: debug dump of an item's metadata.
    Debug,
}

/// The flags of a meta request: which letters were present and the numbers
/// some of them carry. Plain `Copy` data, small enough to ride in an
/// operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaFlags {
    /// One bit per letter, see [`MetaFlags::has`].
    present: u64,
    /// `T`: new TTL (protocol exptime).
    pub ttl: i32,
    /// `N`: TTL of an item vivified on a miss.
    pub vivify: i32,
    /// `R`: win the recache token if the remaining TTL is below this.
    pub recache: i32,
    /// `C`: the CAS token to compare.
    pub compare: u64,
    /// `E`: the CAS token to give a modified item.
    pub new_cas: u64,
    /// `D`: arithmetic delta (default 1).
    pub delta: u64,
    /// `J`: initial value of a vivified counter.
    pub initial: u64,
    /// `F`: client flags to store.
    pub client_flags: u32,
    /// `M`: the mode character (0 if absent).
    pub mode: u8,
}

impl Default for MetaFlags {
    fn default() -> Self {
        MetaFlags {
            present: 0,
            ttl: 0,
            vivify: 0,
            recache: 0,
            compare: 0,
            new_cas: 0,
            delta: 1,
            initial: 0,
            client_flags: 0,
            mode: 0,
        }
    }
}

fn letter_bit(flag: u8) -> Option<u64> {
    match flag {
        b'A'..=b'Z' => Some(1 << (flag - b'A')),
        b'a'..=b'z' => Some(1 << (26 + flag - b'a')),
        _ => None,
    }
}

impl MetaFlags {
    /// Whether the flag letter `flag` was given.
    pub fn has(&self, flag: u8) -> bool {
        letter_bit(flag).is_some_and(|bit| self.present & bit != 0)
    }

    fn set(&mut self, flag: u8) {
        if let Some(bit) = letter_bit(flag) {
            self.present |= bit;
        }
    }
}

/// One parsed meta request (not `mn`, which is [`Request::MetaNoop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta<'a> {
    /// The command.
    pub command: MetaCommand,
    /// The key as sent: base64 text if [`MetaFlags::has`]`(b'b')`.
    pub key: &'a [u8],
    /// The parsed flags.
    pub flags: MetaFlags,
    /// The flag tokens as sent, for echoing in order.
    pub tokens: &'a [u8],
    /// `ms` only: the data block, without its `\r\n`.
    pub data: &'a [u8],
    /// `ms` only: nonzero if the data block is larger than any item can be;
    /// the bytes of it (and its `\r\n`) still to skip after the line. The
    /// request is then answered `SERVER_ERROR object too large for cache`
    /// and any item under the key is removed.
    pub too_large: usize,
}

const BAD_FORMAT: ErrorReply = ErrorReply::Client("bad command line format");

/// Whether `command` is a meta command this module parses.
pub(crate) fn is_meta(command: &[u8]) -> bool {
    matches!(command, b"mg" | b"ms" | b"md" | b"ma" | b"me" | b"mn")
}

/// Decodes a base64 key into `out`; `None` if it is not valid base64 or
/// decodes to nothing.
pub fn decode_key<'o>(key: &[u8], out: &'o mut [u8; KEY_MAX_LEN]) -> Option<&'o [u8]> {
    let len = base64::engine::general_purpose::STANDARD
        .decode_slice(key, out)
        .ok()?;
    (len > 0).then_some(&out[..len])
}

/// Appends `key` base64-encoded to `out`.
pub fn encode_key(key: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + key.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(key, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

fn number<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// Parses one meta request whose command line is `line` (without its line
/// ending, `line_end` bytes of `buf` including it). `ms` takes its data
/// block from `buf` after the line.
pub(crate) fn parse<'a>(
    line: &'a [u8],
    buf: &'a [u8],
    line_end: usize,
    max_value: usize,
) -> Result<Parsed<'a>, super::ParseError> {
    let done = |request, consumed| {
        Ok(Parsed {
            request,
            consumed,
            rest: None,
        })
    };
    let invalid = |error| Request::Invalid {
        error,
        swallow: 0,
        noreply: false,
    };
    let mut tokens = Tokens::new(line);
    let command = tokens.next().unwrap_or_default();
    let command = match command {
        b"mn" => return done(Request::MetaNoop, line_end),
        b"mg" => MetaCommand::Get,
        b"ms" => MetaCommand::Set,
        b"md" => MetaCommand::Delete,
        b"ma" => MetaCommand::Arith,
        _ => MetaCommand::Debug,
    };
    let unframed = |error| {
        // Nothing tells where the data block ends: answer and close.
        let request = Request::Unframed {
            error,
            noreply: false,
        };
        done(request, line_end)
    };
    let Some(key) = tokens.next() else {
        return match command {
            MetaCommand::Set => unframed(ErrorReply::Error),
            MetaCommand::Debug => done(invalid(BAD_FORMAT), line_end),
            _ => done(invalid(ErrorReply::Error), line_end),
        };
    };
    // `ms <key> <datalen>`: the length is read first, so that every
    // refusal below swallows the data block and none lets it run as
    // commands.
    let mut data_len = None;
    if command == MetaCommand::Set {
        let len = tokens
            .next()
            .and_then(number::<i32>)
            .filter(|len| (0..=i32::MAX - 2).contains(len));
        match len {
            Some(len) => data_len = Some(len as usize),
            None => return unframed(BAD_FORMAT),
        }
    }
    let flag_tokens = tokens.rest();
    let swallow = data_len.map_or(0, |len| len + 2);
    let refuse = |error| {
        done(
            Request::Invalid {
                error,
                swallow,
                noreply: false,
            },
            line_end,
        )
    };
    if key.len() > KEY_MAX_LEN {
        return refuse(BAD_FORMAT);
    }
    if Tokens::new(line).count() >= MAX_TOKENS {
        let why = if command == MetaCommand::Get {
            "options flags are too long"
        } else {
            "options flags too long"
        };
        return refuse(ErrorReply::Client(why));
    }
    let flags = match command {
        MetaCommand::Debug => {
            // `me <key> [b]`: anything else is ignored.
            let mut flags = MetaFlags::default();
            if tokens.any(|t| t == b"b") {
                flags.set(b'b');
            }
            flags
        }
        _ => match parse_flags(key, tokens) {
            Ok(flags) => flags,
            Err(error) => {
                let error = match command {
                    MetaCommand::Delete | MetaCommand::Arith => {
                        ErrorReply::Client("invalid or duplicate flag")
                    }
                    _ => error,
                };
                return refuse(error);
            }
        },
    };
    if command == MetaCommand::Debug
        && flags.has(b'b')
        && decode_key(key, &mut [0; KEY_MAX_LEN]).is_none()
    {
        // memcached's `me` says only this when the key does not decode.
        return done(invalid(BAD_FORMAT), line_end);
    }
    if Tokens::new(flag_tokens).any(|t| t[0] == b'O' && t.len() > OPAQUE_MAX_LEN) {
        return refuse(ErrorReply::Client("opaque token too long"));
    }
    match (command, flags.mode) {
        (_, 0) => {}
        (MetaCommand::Set, b'E' | b'A' | b'P' | b'R' | b'S') => {}
        (MetaCommand::Set, _) => {
            return refuse(ErrorReply::Client("invalid mode for ms M token"));
        }
        (MetaCommand::Arith, b'I' | b'+' | b'D' | b'-') => {}
        (MetaCommand::Arith, _) => {
            return refuse(ErrorReply::Client("invalid mode for ma M token"));
        }
        _ => {}
    }
    let mut meta = Meta {
        command,
        key,
        flags,
        tokens: flag_tokens,
        // Empty, but inside the buffer like every other slice of a request.
        data: &line[line.len()..],
        too_large: 0,
    };
    let Some(len) = data_len else {
        return done(Request::Meta(meta), line_end);
    };
    if len > max_value {
        meta.too_large = len + 2;
        return done(Request::Meta(meta), line_end);
    }
    let data_end = line_end + len;
    if buf.len() < data_end + 2 {
        return Err(super::ParseError::Incomplete);
    }
    if &buf[data_end..data_end + 2] != b"\r\n" {
        let request = Request::Unframed {
            error: ErrorReply::Client("bad data chunk"),
            noreply: false,
        };
        return done(request, data_end + 2);
    }
    meta.data = &buf[line_end..data_end];
    done(Request::Meta(meta), data_end + 2)
}

/// Checks the flag tokens as memcached does: a repeated or unknown flag
/// stops at once; a bad number (or key encoding) is remembered, the last
/// one winning, and reported after all tokens are seen.
fn parse_flags(key: &[u8], tokens: Tokens<'_>) -> Result<MetaFlags, ErrorReply> {
    let mut flags = MetaFlags::default();
    let mut error = None;
    const BAD_TOKEN: ErrorReply = ErrorReply::Client("bad token in command line format");
    for token in tokens {
        let flag = token[0];
        let arg = &token[1..];
        if flag >= 127 || flags.has(flag) {
            return Err(ErrorReply::Client("duplicate flag"));
        }
        match flag {
            b'b' => {
                if decode_key(key, &mut [0; KEY_MAX_LEN]).is_none() {
                    error = Some(ErrorReply::Client("error decoding key"));
                }
            }
            b'N' | b'T' | b'R' => match number::<i32>(arg) {
                Some(value) => match flag {
                    b'N' => flags.vivify = value,
                    b'T' => flags.ttl = value,
                    _ => flags.recache = value,
                },
                None => error = Some(BAD_TOKEN),
            },
            b'C' | b'E' => match number::<u64>(arg) {
                Some(value) if flag == b'C' => flags.compare = value,
                Some(value) => flags.new_cas = value,
                None => error = Some(BAD_TOKEN),
            },
            b'F' => match number::<u32>(arg) {
                Some(value) => flags.client_flags = value,
                None => error = Some(BAD_FORMAT),
            },
            b'M' => match arg {
                [mode] => flags.mode = *mode,
                _ => error = Some(ErrorReply::Client("incorrect length for M token")),
            },
            b'J' => match number::<u64>(arg) {
                Some(value) => flags.initial = value,
                None => error = Some(ErrorReply::Client("invalid numeric initial value")),
            },
            b'D' => match number::<u64>(arg) {
                Some(value) => flags.delta = value,
                None => error = Some(ErrorReply::Client("invalid numeric delta value")),
            },
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'v' | b'h' | b'l' | b'u'
            | b'q' | b'I' | b'x' => {}
            _ => return Err(ErrorReply::Client("invalid flag")),
        }
        flags.set(flag);
    }
    match error {
        Some(error) => Err(error),
        None => Ok(flags),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ParseError, parse};
    use super::*;

    const MAX: usize = 1024 * 1024;

    fn meta(input: &[u8]) -> Meta<'_> {
        match parse(input, MAX).expect("complete").request {
            Request::Meta(meta) => meta,
            other => panic!("not meta: {other:?}"),
        }
    }

    fn error(input: &[u8]) -> (ErrorReply, usize) {
        match parse(input, MAX).expect("complete").request {
            Request::Invalid { error, swallow, .. } => (error, swallow),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn get_flags_and_numbers() {
        let m = meta(b"mg key v c T30 N-1 R5 Oabc k\r\n");
        assert_eq!(m.command, MetaCommand::Get);
        assert_eq!(m.key, b"key");
        assert!(m.flags.has(b'v') && m.flags.has(b'c') && m.flags.has(b'k'));
        assert!(!m.flags.has(b'q') && !m.flags.has(b'V'));
        assert_eq!((m.flags.ttl, m.flags.vivify, m.flags.recache), (30, -1, 5));
        assert_eq!(m.tokens, b" v c T30 N-1 R5 Oabc k");
        assert_eq!(m.flags.delta, 1);
    }

    #[test]
    fn set_takes_its_data_and_every_prefix_is_incomplete() {
        let input = b"ms k 5 T10 F7 C9 E11 MA I\r\nhello\r\n";
        for end in 0..input.len() {
            assert_eq!(
                parse(&input[..end], MAX),
                Err(ParseError::Incomplete),
                "{end}"
            );
        }
        let parsed = parse(input, MAX).unwrap();
        assert_eq!(parsed.consumed, input.len());
        let Request::Meta(m) = parsed.request else {
            panic!()
        };
        assert_eq!(m.data, b"hello");
        assert_eq!(
            (
                m.flags.ttl,
                m.flags.client_flags,
                m.flags.compare,
                m.flags.new_cas
            ),
            (10, 7, 9, 11)
        );
        assert_eq!(m.flags.mode, b'A');
        assert!(m.flags.has(b'I'));
    }

    #[test]
    fn every_prefix_of_every_meta_request_is_incomplete() {
        let requests: [&[u8]; 8] = [
            b"mg a2V5 b v k O1 T30 N5 R2 E9 q u s t c f h l\r\n",
            b"ms a2V5 3 MP C1 E2 F3 I T4 N5 b k O1 c s q\r\nabc\r\n",
            b"md k C1 E2 I T3 x q k O1\r\n",
            b"ma k N1 J2 D3 T4 MD C5 E6 O1 q t c v k\r\n",
            b"me k b\r\n",
            b"mn\r\n",
            b"ms k 2 zz\r\n",
            b"mg k v v\n",
        ];
        for input in requests {
            for end in 0..input.len() {
                assert_eq!(
                    parse(&input[..end], MAX),
                    Err(ParseError::Incomplete),
                    "{:?} cut at {end}",
                    String::from_utf8_lossy(input)
                );
            }
            let mut pipelined = input.to_vec();
            pipelined.extend_from_slice(b"mn\r\n");
            let parsed = parse(&pipelined, MAX).unwrap();
            assert_eq!(&pipelined[parsed.consumed..], b"mn\r\n");
        }
    }

    #[test]
    fn noop_and_debug() {
        assert_eq!(parse(b"mn\r\n", MAX).unwrap().request, Request::MetaNoop);
        assert_eq!(parse(b"mn x\r\n", MAX).unwrap().request, Request::MetaNoop);
        let m = meta(b"me a2V5 b\r\n");
        assert_eq!(m.command, MetaCommand::Debug);
        assert!(m.flags.has(b'b'));
        assert_eq!(error(b"me\r\n").0, BAD_FORMAT);
        assert_eq!(error(b"mg\r\n").0, ErrorReply::Error);
    }

    #[test]
    fn errors_match_memcached() {
        let client = ErrorReply::Client;
        assert_eq!(error(b"mg k zz\r\n").0, client("invalid flag"));
        assert_eq!(error(b"mg k v v\r\n").0, client("duplicate flag"));
        assert_eq!(
            error(b"mg k Tx\r\n").0,
            client("bad token in command line format")
        );
        assert_eq!(error(b"md k Tx\r\n").0, client("invalid or duplicate flag"));
        assert_eq!(error(b"ma k DX\r\n").0, client("invalid or duplicate flag"));
        assert_eq!(error(b"mg !!! b\r\n").0, client("error decoding key"));
        assert_eq!(
            error(b"mg k O123456789012345678901234567890123\r\n").0,
            client("opaque token too long")
        );
        // ms errors after a readable length swallow the data block.
        assert_eq!(error(b"ms k 2 Z\r\n"), (client("invalid flag"), 4));
        assert_eq!(error(b"ms k 2 Fx\r\n"), (BAD_FORMAT, 4));
        assert_eq!(
            error(b"ms k 2 MX\r\n"),
            (client("invalid mode for ms M token"), 4)
        );
        assert_eq!(
            error(b"ms k 2 MEX\r\n"),
            (client("incorrect length for M token"), 4)
        );
        assert_eq!(
            error(b"ma k MX\r\n").0,
            client("invalid mode for ma M token")
        );
        // A key too long is refused after the length is read, so the data
        // block is swallowed.
        let long = format!("ms {} 2\r\n", "k".repeat(251));
        assert_eq!(error(long.as_bytes()), (BAD_FORMAT, 4));
    }

    /// An `ms` whose data block cannot be located closes the connection
    /// rather than read the block as commands.
    #[test]
    fn unlocatable_set_data_is_unframed() {
        let client = ErrorReply::Client;
        for (input, reply) in [
            (&b"ms\r\n"[..], ErrorReply::Error),
            (b"ms k x\r\n", BAD_FORMAT),
            (b"ms k\r\n", BAD_FORMAT),
            (b"ms k -1\r\n", BAD_FORMAT),
            (b"ms k 2\r\nhiya\r\n", client("bad data chunk")),
        ] {
            let request = parse(input, MAX).unwrap().request;
            assert_eq!(
                request,
                Request::Unframed {
                    error: reply,
                    noreply: false
                },
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn too_large_set_swallows() {
        let m = meta(b"ms k 2000000 T0\r\n");
        assert_eq!(m.too_large, 2_000_002);
        assert!(m.data.is_empty());
    }

    #[test]
    fn base64_keys_round_trip() {
        let mut buf = [0; KEY_MAX_LEN];
        assert_eq!(decode_key(b"a2V5", &mut buf), Some(&b"key"[..]));
        assert_eq!(decode_key(b"", &mut buf), None);
        let mut out = b"k".to_vec();
        encode_key(b"\x00\xffkey", &mut out);
        assert_eq!(out, b"kAP9rZXk=");
    }
}
