//! Parsing a meta request line (`mg ms md ma me mn`) into a typed request.
//!
//! The flags are checked the way memcached 1.6.18 checks them (same error
//! replies, same precedence): they are first gathered letter by letter
//! ([`Flags`]), then the command's own request type is built from them.
//! Letters a command does not use are accepted and ignored, as memcached
//! does.

use super::kind::ArithKind;
use super::meta::{
    CasTokens, Meta, MetaArith, MetaCommand, MetaDebug, MetaDelete, MetaGet, MetaRequest, MetaSet,
    SetMode, base64_len,
};
use super::reply::ErrorReply;
use super::request::{ParseError, Parsed, Request};
use super::tokens::{Tokens, valid_key};

/// Longest `O` token memcached echoes, the `O` included.
pub const OPAQUE_MAX_LEN: usize = 32;

/// memcached refuses a meta line of this many tokens or more (command and
/// key included).
const MAX_TOKENS: usize = 20;

/// The flags of a meta request as parsed: which letters were present and
/// the numbers some of them carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flags {
    /// One bit per letter, see [`Flags::has`].
    present: u64,
    /// `T`: new TTL (protocol exptime).
    ttl: i32,
    /// `N`: TTL of an item vivified on a miss.
    vivify: i32,
    /// `R`: win the recache token if the remaining TTL is below this.
    recache: i32,
    /// `C`: the CAS token to compare.
    compare: u64,
    /// `E`: the CAS token to give a modified item.
    new_cas: u64,
    /// `D`: arithmetic delta (default 1).
    delta: u64,
    /// `J`: initial value of a vivified counter.
    initial: u64,
    /// `F`: client flags to store.
    client_flags: u32,
    /// `M`: the mode character (0 if absent).
    mode: u8,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
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

impl Flags {
    /// Whether the flag letter `flag` was given.
    fn has(&self, flag: u8) -> bool {
        letter_bit(flag).is_some_and(|bit| self.present & bit != 0)
    }

    fn set(&mut self, flag: u8) {
        if let Some(bit) = letter_bit(flag) {
            self.present |= bit;
        }
    }

    /// A number flag's value, if the flag was given.
    fn given<T>(&self, flag: u8, value: T) -> Option<T> {
        self.has(flag).then_some(value)
    }

    fn cas(&self) -> CasTokens {
        CasTokens::new(
            self.given(b'C', self.compare),
            self.given(b'E', self.new_cas),
        )
    }

    /// The typed request of `command` (whose mode, if any, is valid).
    fn request(&self, command: MetaCommand) -> MetaRequest {
        let (quiet, base64) = (self.has(b'q'), self.has(b'b'));
        match command {
            MetaCommand::Get => MetaRequest::Get(MetaGet {
                value: self.has(b'v'),
                touch: self.given(b'T', self.ttl),
                vivify: self.given(b'N', self.vivify),
                recache: self.given(b'R', self.recache),
                no_bump: self.has(b'u'),
                new_cas: self.given(b'E', self.new_cas),
                quiet,
                base64,
            }),
            MetaCommand::Set => MetaRequest::Set(MetaSet {
                mode: match self.mode {
                    b'E' => SetMode::Add,
                    b'A' => SetMode::Append,
                    b'P' => SetMode::Prepend,
                    b'R' => SetMode::Replace,
                    _ => SetMode::Set,
                },
                client_flags: self.client_flags,
                ttl: self.given(b'T', self.ttl),
                vivify: self.given(b'N', self.vivify),
                cas: self.cas(),
                invalidate: self.has(b'I'),
                quiet,
                base64,
            }),
            MetaCommand::Delete => MetaRequest::Delete(MetaDelete {
                cas: self.cas(),
                ttl: self.given(b'T', self.ttl),
                invalidate: self.has(b'I'),
                strip: self.has(b'x'),
                quiet,
                base64,
            }),
            MetaCommand::Arith => MetaRequest::Arith(MetaArith {
                kind: match self.mode {
                    b'D' | b'-' => ArithKind::Decr,
                    _ => ArithKind::Incr,
                },
                delta: self.delta,
                initial: self.initial,
                vivify: self.given(b'N', self.vivify),
                ttl: self.given(b'T', self.ttl),
                cas: self.cas(),
                value: self.has(b'v'),
                quiet,
                base64,
            }),
            MetaCommand::Debug => MetaRequest::Debug(MetaDebug { base64 }),
        }
    }
}

/// Whether `command` is a meta command this module parses.
pub(crate) fn is_meta(command: &[u8]) -> bool {
    matches!(command, b"mg" | b"ms" | b"md" | b"ma" | b"me" | b"mn")
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
) -> Result<Parsed<'a>, ParseError> {
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
            MetaCommand::Debug => done(invalid(ErrorReply::BadFormat), line_end),
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
            None => return unframed(ErrorReply::BadFormat),
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
    // One key rule with the classic commands (`valid_key`).
    if !valid_key(key) {
        return refuse(ErrorReply::BadFormat);
    }
    if Tokens::new(line).count() >= MAX_TOKENS {
        return refuse(if command == MetaCommand::Get {
            ErrorReply::GetFlagsTooLong
        } else {
            ErrorReply::FlagsTooLong
        });
    }
    let flags = match command {
        MetaCommand::Debug => {
            // `me <key> [b]`: anything else is ignored.
            let mut flags = Flags::default();
            if tokens.any(|t| t == b"b") {
                flags.set(b'b');
            }
            flags
        }
        _ => match parse_flags(key, tokens) {
            Ok(flags) => flags,
            Err(error) => {
                let error = match command {
                    MetaCommand::Delete | MetaCommand::Arith => ErrorReply::InvalidOrDuplicateFlag,
                    _ => error,
                };
                return refuse(error);
            }
        },
    };
    if command == MetaCommand::Debug && flags.has(b'b') && base64_len(key).is_none() {
        // memcached's `me` says only this when the key does not decode.
        return done(invalid(ErrorReply::BadFormat), line_end);
    }
    if Tokens::new(flag_tokens).any(|t| t[0] == b'O' && t.len() > OPAQUE_MAX_LEN) {
        return refuse(ErrorReply::OpaqueTooLong);
    }
    match (command, flags.mode) {
        (_, 0) => {}
        (MetaCommand::Set, b'E' | b'A' | b'P' | b'R' | b'S') => {}
        (MetaCommand::Set, _) => {
            return refuse(ErrorReply::SetModeInvalid);
        }
        (MetaCommand::Arith, b'I' | b'+' | b'D' | b'-') => {}
        (MetaCommand::Arith, _) => {
            return refuse(ErrorReply::ArithModeInvalid);
        }
        _ => {}
    }
    let mut meta = Meta {
        request: flags.request(command),
        key,
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
        return Err(ParseError::Incomplete);
    }
    if &buf[data_end..data_end + 2] != b"\r\n" {
        let request = Request::Unframed {
            error: ErrorReply::BadDataChunk,
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
fn parse_flags(key: &[u8], tokens: Tokens<'_>) -> Result<Flags, ErrorReply> {
    let mut flags = Flags::default();
    let mut error = None;
    const BAD_TOKEN: ErrorReply = ErrorReply::BadToken;
    for token in tokens {
        let flag = token[0];
        let arg = &token[1..];
        if flag >= 127 || flags.has(flag) {
            return Err(ErrorReply::DuplicateFlag);
        }
        match flag {
            b'b' => {
                if base64_len(key).is_none() {
                    error = Some(ErrorReply::KeyNotBase64);
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
                None => error = Some(ErrorReply::BadFormat),
            },
            b'M' => match arg {
                // memcached's line ends at a NUL, so to it `M<NUL>` is a
                // token of one byte; here a mode of 0 would mean none.
                [mode] if *mode != 0 => flags.mode = *mode,
                _ => error = Some(ErrorReply::ModeLength),
            },
            b'J' => match number::<u64>(arg) {
                Some(value) => flags.initial = value,
                None => error = Some(ErrorReply::InitialInvalid),
            },
            b'D' => match number::<u64>(arg) {
                Some(value) => flags.delta = value,
                None => error = Some(ErrorReply::DeltaValueInvalid),
            },
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'v' | b'h' | b'l' | b'u'
            | b'q' | b'I' | b'x' => {}
            _ => return Err(ErrorReply::InvalidFlag),
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
    use super::super::parse;
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
        let m = meta(b"mg key v c T30 N-1 R5 Oabc k u\r\n");
        assert_eq!(m.key, b"key");
        assert_eq!(
            m.request,
            MetaRequest::Get(MetaGet {
                value: true,
                touch: Some(30),
                vivify: Some(-1),
                recache: Some(5),
                no_bump: true,
                new_cas: None,
                quiet: false,
                base64: false,
            })
        );
        assert_eq!(m.tokens, b" v c T30 N-1 R5 Oabc k u");
        let m = meta(b"mg a2V5 q b E9\r\n");
        assert!(m.request.quiet() && m.request.base64());
        assert!(matches!(m.request, MetaRequest::Get(g) if g.new_cas == Some(9) && !g.value));
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
            m.request,
            MetaRequest::Set(MetaSet {
                mode: SetMode::Append,
                client_flags: 7,
                ttl: Some(10),
                vivify: None,
                cas: CasTokens::new(Some(9), Some(11)),
                invalidate: true,
                quiet: false,
                base64: false,
            })
        );
    }

    #[test]
    fn delete_and_arith_flags() {
        assert_eq!(
            meta(b"md k C1 I T3 x q\r\n").request,
            MetaRequest::Delete(MetaDelete {
                cas: CasTokens::new(Some(1), None),
                ttl: Some(3),
                invalidate: true,
                strip: true,
                quiet: true,
                base64: false,
            })
        );
        assert_eq!(
            meta(b"ma k N1 J2 D3 T4 MD E6 v\r\n").request,
            MetaRequest::Arith(MetaArith {
                kind: ArithKind::Decr,
                delta: 3,
                initial: 2,
                vivify: Some(1),
                ttl: Some(4),
                cas: CasTokens::new(None, Some(6)),
                value: true,
                quiet: false,
                base64: false,
            })
        );
        let MetaRequest::Arith(plain) = meta(b"ma k\r\n").request else {
            panic!("not ma")
        };
        assert_eq!((plain.kind, plain.delta), (ArithKind::Incr, 1));
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
        assert_eq!(m.request, MetaRequest::Debug(MetaDebug { base64: true }));
        assert_eq!(error(b"me\r\n").0, ErrorReply::BadFormat);
        assert_eq!(error(b"mg\r\n").0, ErrorReply::Error);
    }

    #[test]
    fn errors_match_memcached() {
        assert_eq!(error(b"mg k zz\r\n").0, ErrorReply::InvalidFlag);
        assert_eq!(error(b"mg k v v\r\n").0, ErrorReply::DuplicateFlag);
        assert_eq!(error(b"mg k Tx\r\n").0, ErrorReply::BadToken);
        assert_eq!(error(b"md k Tx\r\n").0, ErrorReply::InvalidOrDuplicateFlag);
        assert_eq!(error(b"ma k DX\r\n").0, ErrorReply::InvalidOrDuplicateFlag);
        assert_eq!(error(b"mg !!! b\r\n").0, ErrorReply::KeyNotBase64);
        // A bad number after `b` wins over a key that does not decode, and
        // the other way round: the last error seen is the one reported.
        assert_eq!(error(b"mg !!! b Tx\r\n").0, ErrorReply::BadToken);
        assert_eq!(error(b"mg !!! Tx b\r\n").0, ErrorReply::KeyNotBase64);
        assert_eq!(
            error(b"mg k O123456789012345678901234567890123\r\n").0,
            ErrorReply::OpaqueTooLong
        );
        // ms errors after a readable length swallow the data block.
        assert_eq!(error(b"ms k 2 Z\r\n"), (ErrorReply::InvalidFlag, 4));
        assert_eq!(error(b"ms k 2 Fx\r\n"), (ErrorReply::BadFormat, 4));
        assert_eq!(error(b"ms k 2 MX\r\n"), (ErrorReply::SetModeInvalid, 4));
        assert_eq!(error(b"ms k 2 MEX\r\n"), (ErrorReply::ModeLength, 4));
        assert_eq!(error(b"ma k MX\r\n").0, ErrorReply::ArithModeInvalid);
        assert_eq!(error(b"ma k Jx\r\n").0, ErrorReply::InvalidOrDuplicateFlag);
        let many = format!("mg k{}\r\n", " O1 t".repeat(9));
        assert_eq!(error(many.as_bytes()).0, ErrorReply::GetFlagsTooLong);
        let many = format!("md k{}\r\n", " O1 q".repeat(9));
        assert_eq!(error(many.as_bytes()).0, ErrorReply::FlagsTooLong);
        // A key too long is refused after the length is read, so the data
        // block is swallowed.
        let long = format!("ms {} 2\r\n", "k".repeat(251));
        assert_eq!(error(long.as_bytes()), (ErrorReply::BadFormat, 4));
    }

    /// An `ms` whose data block cannot be located closes the connection
    /// rather than read the block as commands.
    #[test]
    fn unlocatable_set_data_is_unframed() {
        for (input, reply) in [
            (&b"ms\r\n"[..], ErrorReply::Error),
            (b"ms k x\r\n", ErrorReply::BadFormat),
            (b"ms k\r\n", ErrorReply::BadFormat),
            (b"ms k -1\r\n", ErrorReply::BadFormat),
            (b"ms k 2\r\nhiya\r\n", ErrorReply::BadDataChunk),
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

    /// Found by fuzzing (fuzz/regressions/meta/): memcached 1.6.18 reads
    /// `-0` as a data length of 0 (`strtol`), and stops reading a line at a
    /// NUL, so `M<NUL>` is an `M` token of the wrong length to it, not
    /// "no mode". Its replies: `HD`, then the length error, the block
    /// swallowed.
    #[test]
    fn minus_zero_is_a_length_and_a_nul_mode_is_refused() {
        let m = meta(b"ms k -0\r\n\r\n");
        assert_eq!((m.data, m.too_large), (&b""[..], 0));
        assert_eq!(error(b"ms k 1 M\0\r\nx\r\n"), (ErrorReply::ModeLength, 3));
        assert_eq!(error(b"ma k M\0\r\n").0, ErrorReply::InvalidOrDuplicateFlag);
    }
}
