//! Meta replies as typed values, written in memcached's meta format.
//!
//! The server says what a meta command came to ([`MetaReply`]): a return
//! code, the value, and the facts its return flags report ([`MetaFacts`]).
//! This module turns that into bytes: the code, then the flags echoed in
//! request order ([`MetaEcho`]), the `Z X W` markers, the data block; and
//! it applies quiet mode as memcached 1.6.18 does: `mg` drops `EN`, `ms`
//! and `md` drop `HD`, `ma` drops its success reply (`HD` or `VA`) unless
//! it created the counter; errors and every other code are always sent.

use super::super::reply::ErrorReply;
use super::super::tokens::{Tokens, valid_key};
use super::{MetaCommand, encode_key};

/// The return code of a meta reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCode {
    /// `HD`: done, no value.
    Hd,
    /// `VA <len>`: done, with the value after the line.
    Va,
    /// `EN`: not found (`mg`, `me`).
    En,
    /// `NF`: not found.
    Nf,
    /// `NS`: not stored.
    Ns,
    /// `EX`: the CAS token did not match.
    Ex,
}

impl MetaCode {
    fn text(self) -> &'static [u8] {
        match self {
            MetaCode::Hd => b"HD",
            MetaCode::Va => b"VA ",
            MetaCode::En => b"EN",
            MetaCode::Nf => b"NF",
            MetaCode::Ns => b"NS",
            MetaCode::Ex => b"EX",
        }
    }
}

/// The remaining TTL in seconds (`-1`: none) at each point of a request:
/// `t` reports the TTL as of its place among the flags, so `T` and `N`
/// change what a later `t` shows, as in memcached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ttls {
    /// Before the request changed anything.
    pub before: i64,
    /// After `T`, if it applied.
    pub touched: Option<i64>,
    /// After `N`, if it created the item.
    pub vivified: Option<i64>,
}

/// What a reply's return flags report. A flag whose fact is `None` is not
/// echoed (a miss reports nothing but `O` and `k`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaFacts {
    /// `c`: the CAS token.
    pub cas: Option<u64>,
    /// `s`: the value size.
    pub size: Option<u64>,
    /// `f`: the client flags.
    pub client_flags: Option<u32>,
    /// `l`: seconds since the last access.
    pub idle_secs: Option<u32>,
    /// `h`: whether the item had been read before.
    pub fetched: Option<bool>,
    /// `t`: the TTLs.
    pub ttl: Option<Ttls>,
}

/// A reply with a return code (not `me`'s dump, not an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaStatus<'a> {
    /// The code.
    pub code: MetaCode,
    /// With [`MetaCode::Va`]: the value.
    pub value: &'a [u8],
    /// What the return flags report.
    pub facts: MetaFacts,
    /// `Z`: another client already holds the win token.
    pub token_taken: bool,
    /// `X`: the item is stale.
    pub stale: bool,
    /// `W`: this request won the token.
    pub won: bool,
    /// The request created the item (`ma N`): memcached 1.6.18 answers it
    /// even in quiet mode.
    pub created: bool,
}

impl<'a> MetaStatus<'a> {
    /// A reply of `code` that reports nothing but `O` and `k`.
    pub fn plain(code: MetaCode) -> MetaStatus<'a> {
        MetaStatus {
            code,
            value: &[],
            facts: MetaFacts::default(),
            token_taken: false,
            stale: false,
            won: false,
            created: false,
        }
    }
}

/// `me`'s dump of an item: `ME <key> exp= la= cas= fetch= cls= size=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugReply {
    /// Print the key base64-encoded (memcached does for an item stored
    /// with a base64 key).
    pub key_base64: bool,
    /// Remaining TTL in seconds, `-1` for none.
    pub exp: i64,
    /// Seconds since the last access.
    pub la: u32,
    /// The CAS token.
    pub cas: u64,
    /// Whether it has been read.
    pub fetched: bool,
    /// The slab class, numbered from 1.
    pub class: usize,
    /// Header, key and value bytes.
    pub size: usize,
}

/// What a meta command came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaReply<'a> {
    /// A return code with flags.
    Status(MetaStatus<'a>),
    /// `me`: the item's metadata, or `None` for `EN`.
    Debug(Option<DebugReply>),
    /// An error line.
    Error(ErrorReply),
}

/// What a reply takes from its request: the flags to echo, in order, and
/// how to echo the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaEcho<'a> {
    /// The command answered.
    pub command: MetaCommand,
    /// Quiet mode (`q`).
    pub quiet: bool,
    /// The key (decoded, if it came base64-encoded).
    pub key: &'a [u8],
    /// Echo the key base64-encoded, followed by ` b`.
    pub base64: bool,
    /// The request's flag tokens.
    pub tokens: &'a [u8],
}

impl MetaReply<'_> {
    /// Appends the reply to `out` (nothing, when quiet mode drops it).
    pub fn write(&self, echo: &MetaEcho<'_>, out: &mut Vec<u8>) {
        match self {
            MetaReply::Status(status) => status.write(echo, out),
            MetaReply::Debug(None) => out.extend_from_slice(b"EN\r\n"),
            MetaReply::Debug(Some(d)) => {
                out.extend_from_slice(b"ME ");
                // memcached marks a base64 key here with nothing but its
                // encoding.
                if d.key_base64 || !valid_key(echo.key) {
                    encode_key(echo.key, out);
                } else {
                    out.extend_from_slice(echo.key);
                }
                let mut n = itoa::Buffer::new();
                for (name, value) in [
                    (&b" exp="[..], n.format(d.exp).as_bytes()),
                    (b" la=", itoa::Buffer::new().format(d.la).as_bytes()),
                    (b" cas=", itoa::Buffer::new().format(d.cas).as_bytes()),
                    (b" fetch=", if d.fetched { b"yes" } else { b"no" }),
                    (b" cls=", itoa::Buffer::new().format(d.class).as_bytes()),
                    (b" size=", itoa::Buffer::new().format(d.size).as_bytes()),
                ] {
                    out.extend_from_slice(name);
                    out.extend_from_slice(value);
                }
                out.extend_from_slice(b"\r\n");
            }
            MetaReply::Error(error) => error.write(out),
        }
    }
}

impl MetaStatus<'_> {
    /// Whether quiet mode drops this reply.
    fn silenced(&self, echo: &MetaEcho<'_>) -> bool {
        echo.quiet
            && match (echo.command, self.code) {
                (MetaCommand::Get, MetaCode::En) => true,
                (MetaCommand::Set | MetaCommand::Delete, MetaCode::Hd) => true,
                (MetaCommand::Arith, MetaCode::Hd | MetaCode::Va) => !self.created,
                _ => false,
            }
    }

    fn write(&self, echo: &MetaEcho<'_>, out: &mut Vec<u8>) {
        if self.silenced(echo) {
            return;
        }
        out.extend_from_slice(self.code.text());
        if self.code == MetaCode::Va {
            number(out, self.value.len() as u64);
        }
        let facts = &self.facts;
        let mut shown = facts.ttl.map(|t| t.before);
        for token in Tokens::new(echo.tokens) {
            match token[0] {
                b'O' => {
                    out.push(b' ');
                    out.extend_from_slice(token);
                }
                b'k' => {
                    out.extend_from_slice(b" k");
                    // A key a text command could not name (one with a
                    // space, CR or LF, stored through the binary protocol)
                    // goes out encoded too, so it never breaks the line:
                    // memcached 1.6.18 prints it raw.
                    if echo.base64 || !valid_key(echo.key) {
                        encode_key(echo.key, out);
                        out.extend_from_slice(b" b");
                    } else {
                        out.extend_from_slice(echo.key);
                    }
                }
                b'c' => flag(out, b'c', facts.cas),
                b's' => flag(out, b's', facts.size),
                b'f' => flag(out, b'f', facts.client_flags.map(u64::from)),
                b'l' => flag(out, b'l', facts.idle_secs.map(u64::from)),
                b'h' => flag(out, b'h', facts.fetched.map(u64::from)),
                b't' => {
                    if let Some(secs) = shown {
                        out.extend_from_slice(b" t");
                        out.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
                    }
                }
                b'T' => shown = facts.ttl.and_then(|t| t.touched).or(shown),
                b'N' => shown = facts.ttl.and_then(|t| t.vivified).or(shown),
                _ => {}
            }
        }
        for (marker, set) in [
            (b" Z", self.token_taken),
            (b" X", self.stale),
            (b" W", self.won),
        ] {
            if set {
                out.extend_from_slice(marker);
            }
        }
        out.extend_from_slice(b"\r\n");
        if self.code == MetaCode::Va {
            out.extend_from_slice(self.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn number(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn flag(out: &mut Vec<u8>, flag: u8, value: Option<u64>) {
    if let Some(value) = value {
        out.push(b' ');
        out.push(flag);
        number(out, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo<'a>(command: MetaCommand, tokens: &'a [u8]) -> MetaEcho<'a> {
        MetaEcho {
            command,
            quiet: false,
            key: b"k",
            base64: false,
            tokens,
        }
    }

    fn written(reply: MetaReply<'_>, echo: &MetaEcho<'_>) -> String {
        let mut out = Vec::new();
        reply.write(echo, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn flags_come_back_in_request_order_with_ttls_as_of_their_place() {
        let hit = MetaStatus {
            code: MetaCode::Va,
            value: b"hi",
            facts: MetaFacts {
                cas: Some(7),
                size: Some(2),
                client_flags: Some(5),
                idle_secs: Some(3),
                fetched: Some(true),
                ttl: Some(Ttls {
                    before: -1,
                    touched: Some(30),
                    vivified: None,
                }),
            },
            token_taken: true,
            stale: true,
            won: false,
            created: false,
        };
        let tokens = b" t T30 t c f s O9 k h l v";
        assert_eq!(
            written(MetaReply::Status(hit), &echo(MetaCommand::Get, tokens)),
            "VA 2 t-1 t30 c7 f5 s2 O9 kk h1 l3 Z X\r\nhi\r\n"
        );
        // A miss reports only O and k; with b the key goes out encoded.
        let miss = MetaStatus::plain(MetaCode::En);
        let mut b64 = echo(MetaCommand::Get, b" v k s O1");
        b64.base64 = true;
        assert_eq!(written(MetaReply::Status(miss), &b64), "EN kaw== b O1\r\n");
    }

    #[test]
    fn quiet_mode_drops_what_memcached_drops() {
        let quiet = |command| MetaEcho {
            quiet: true,
            ..echo(command, b"")
        };
        let status = MetaReply::Status;
        for (command, code, created, sent) in [
            (MetaCommand::Get, MetaCode::En, false, ""),
            (MetaCommand::Get, MetaCode::Hd, false, "HD\r\n"),
            (MetaCommand::Set, MetaCode::Hd, false, ""),
            (MetaCommand::Set, MetaCode::Ns, false, "NS\r\n"),
            (MetaCommand::Delete, MetaCode::Hd, false, ""),
            (MetaCommand::Delete, MetaCode::Nf, false, "NF\r\n"),
            (MetaCommand::Arith, MetaCode::Hd, false, ""),
            (MetaCommand::Arith, MetaCode::Hd, true, "HD\r\n"),
            (MetaCommand::Arith, MetaCode::Ex, false, "EX\r\n"),
        ] {
            let reply = MetaStatus {
                created,
                ..MetaStatus::plain(code)
            };
            assert_eq!(
                written(status(reply), &quiet(command)),
                sent,
                "{command:?} {code:?}"
            );
        }
        assert_eq!(
            written(
                MetaReply::Error(ErrorReply::NonNumeric),
                &quiet(MetaCommand::Arith)
            ),
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        );
    }

    #[test]
    fn debug_dump() {
        let dump = DebugReply {
            key_base64: false,
            exp: -1,
            la: 2,
            cas: 9,
            fetched: false,
            class: 1,
            size: 46,
        };
        let e = echo(MetaCommand::Debug, b"");
        assert_eq!(
            written(MetaReply::Debug(Some(dump)), &e),
            "ME k exp=-1 la=2 cas=9 fetch=no cls=1 size=46\r\n"
        );
        assert_eq!(written(MetaReply::Debug(None), &e), "EN\r\n");
        let stored_base64 = DebugReply {
            key_base64: true,
            ..dump
        };
        assert_eq!(
            written(MetaReply::Debug(Some(stored_base64)), &e),
            "ME aw== exp=-1 la=2 cas=9 fetch=no cls=1 size=46\r\n"
        );
    }

    /// A key with a space, CR or LF (possible through the binary protocol
    /// or a base64 key) is printed base64-encoded, never raw.
    #[test]
    fn keys_that_would_break_the_line_go_out_encoded() {
        let key = b"a b\r\nc";
        let e = MetaEcho {
            key,
            ..echo(MetaCommand::Get, b" k")
        };
        assert_eq!(
            written(MetaReply::Status(MetaStatus::plain(MetaCode::Hd)), &e),
            "HD kYSBiDQpj b\r\n"
        );
        let dump = DebugReply {
            key_base64: false,
            exp: 5,
            la: 0,
            cas: 1,
            fetched: true,
            class: 2,
            size: 50,
        };
        let e = MetaEcho {
            command: MetaCommand::Debug,
            ..e
        };
        assert_eq!(
            written(MetaReply::Debug(Some(dump)), &e),
            "ME YSBiDQpj exp=5 la=0 cas=1 fetch=yes cls=2 size=50\r\n"
        );
    }
}
