//! memcached's binary protocol: requests out of a read buffer, replies back
//! into bytes.
//!
//! Every packet is a 24-byte header (magic, opcode, key length, extras
//! length, body length, opaque, CAS), then extras, key and value. The
//! parser ([`parse`]) is pure and incremental like the text parser: it
//! takes one request off the front of a buffer, borrowing its key and
//! value, or says the buffer holds only part of one
//! ([`BinaryError::Incomplete`]), so a request split over any number of
//! reads parses the same and a pipelined buffer is taken apart in place.
//!
//! It is bounded: a store whose value is larger than any item can be
//! ([`Request::TooLarge`]), and a request refused for its opcode
//! ([`Request::Refused`]), are answered as soon as their header (and key)
//! is in, and the rest of their body is swallowed
//! ([`Parsed::swallow`]) without being held. A packet whose first byte is
//! not the request magic ends the connection ([`BinaryError::BadMagic`]),
//! as in memcached; so do the malformed packets memcached closes on.
//!
//! Shapes, statuses and messages follow memcached 1.6.18 (`proto_bin.c`);
//! where it loses track of a packet's length (it swallows an unknown
//! opcode's body after having read its key and extras, and leaves the
//! extra body of a `stat` or `touch` unread), this parser skips exactly
//! the body the header announced. The header and its codes are in
//! `header.rs`; replies are written by `reply.rs`.

mod header;
mod reply;
#[cfg(test)]
mod tests;

pub use header::{HEADER_LEN, Header, Opcode, REQUEST_MAGIC, RESPONSE_MAGIC, Status};
pub use reply::{Fixed, write_stat, write_stat_bytes, write_stats_end};

use super::kind::{ArithKind, StoreKind};
use super::tokens::KEY_MAX_LEN;

/// One binary request, borrowing its key and value from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get getq getk getkq`, and with `touch` the new exptime:
    /// `touch gat gatq gatk gatkq`.
    Get {
        /// The key.
        key: &'a [u8],
        /// The new exptime, for the touching forms.
        touch: Option<u32>,
    },
    /// `set add replace append prepend` and their quiet forms.
    Store {
        /// Which one (never [`StoreKind::Cas`]: a CAS is in the header).
        kind: StoreKind,
        /// The key.
        key: &'a [u8],
        /// Client flags (0 for append/prepend, which have no extras).
        flags: u32,
        /// Protocol exptime.
        exptime: u32,
        /// The value.
        value: &'a [u8],
    },
    /// `delete`, `deleteq`.
    Delete {
        /// The key.
        key: &'a [u8],
    },
    /// `increment decrement` and their quiet forms.
    Arith {
        /// Which one.
        kind: ArithKind,
        /// The key.
        key: &'a [u8],
        /// The amount.
        delta: u64,
        /// The value a missing counter is created with...
        initial: u64,
        /// ...and its exptime; `0xffffffff`: do not create it.
        exptime: u32,
    },
    /// `flush`, `flushq`.
    Flush {
        /// 0: now; else seconds from now or an absolute unix time.
        delay: u32,
    },
    /// `noop`: answered in its turn.
    Noop,
    /// `version`.
    Version,
    /// `quit`, `quitq`: close after answering (`quit` only).
    Quit,
    /// `stat`, with the group asked for (empty: the general stats).
    Stat {
        /// The key: `""`, `settings`, `slabs`, `items`, ...
        group: &'a [u8],
    },
    /// A store whose value is larger than any item can be: answered
    /// `Too large.`, the value swallowed; a `set` also drops the old item.
    TooLarge {
        /// Which store.
        kind: StoreKind,
        /// The key.
        key: &'a [u8],
    },
    /// A request answered with an error status and no work: an unknown
    /// opcode, SASL (off), or a malformed packet.
    Refused {
        /// The status.
        status: Status,
        /// Close the connection after the reply (memcached does for
        /// malformed packets, whose framing it no longer trusts).
        close: bool,
    },
}

/// One request taken off the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The header fields a reply needs.
    pub header: Header,
    /// The request.
    pub request: Request<'a>,
    /// Bytes of the buffer it used.
    pub consumed: usize,
    /// Bytes of its body still to come after the buffer, to be discarded
    /// unread (a refused body not yet received).
    pub swallow: usize,
}

/// Why [`parse`] returned no request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryError {
    /// The buffer ends inside a request: read more and try again.
    Incomplete,
    /// The buffer does not start with the request magic: close the
    /// connection, without a reply, as memcached does.
    BadMagic,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// The whole size of the packet at the front of `buf`, once its header is
/// in: what a connection must hold to take it. `None` before that, or for
/// a body longer than any request the server keeps (a value too large is
/// refused and skipped as it arrives, never held).
pub fn frame_len(buf: &[u8], max_value: usize) -> Option<usize> {
    if buf.len() < HEADER_LEN || buf[0] != REQUEST_MAGIC {
        return None;
    }
    let body_len = be32(&buf[8..12]) as usize;
    (body_len <= max_value + KEY_MAX_LEN + usize::from(u8::MAX)).then_some(HEADER_LEN + body_len)
}

/// Takes one request off the front of `buf`.
///
/// `max_value` is the largest value the server could ever store: a store
/// announcing more is refused before its value arrives.
pub fn parse(buf: &[u8], max_value: usize) -> Result<Parsed<'_>, BinaryError> {
    match buf.first() {
        None => return Err(BinaryError::Incomplete),
        Some(&REQUEST_MAGIC) => {}
        Some(_) => return Err(BinaryError::BadMagic),
    }
    if buf.len() < HEADER_LEN {
        return Err(BinaryError::Incomplete);
    }
    let header = Header {
        opcode: buf[1],
        opaque: be32(&buf[12..16]),
        cas: be64(&buf[16..24]),
    };
    let key_len = usize::from(be16(&buf[2..4]));
    let extras_len = usize::from(buf[4]);
    let body_len = be32(&buf[8..12]) as usize;
    let body = &buf[HEADER_LEN..];
    // A request answered from its header alone: its whole body is skipped,
    // what is here now and the rest as it arrives.
    let skip_body = |request| {
        let here = body_len.min(body.len());
        Ok(Parsed {
            header,
            request,
            consumed: HEADER_LEN + here,
            swallow: body_len - here,
        })
    };
    let refuse = |status, close| skip_body(Request::Refused { status, close });
    if key_len + extras_len > body_len {
        // The lengths contradict each other: no way to find the next packet.
        return refuse(Status::UnknownCommand, true);
    }
    if key_len > KEY_MAX_LEN {
        return refuse(Status::Invalid, true);
    }
    let Some(opcode) = header.command() else {
        return refuse(Status::UnknownCommand, false);
    };
    let shape = Shape {
        key: key_len,
        extras: extras_len,
        body: body_len,
    };
    if !shape.fits(opcode) {
        return refuse(Status::Invalid, true);
    }
    use Opcode::*;
    let value_len = body_len - key_len - extras_len;
    let is_store = matches!(
        opcode,
        Set | SetQ | Add | AddQ | Replace | ReplaceQ | Append | AppendQ | Prepend | PrependQ
    );
    // What must be in the buffer before the request can be answered: the
    // whole body, except for a value that will be refused, for SASL (off,
    // so refused), and for bytes past what the command reads (which
    // memcached leaves unread). The rest of the body is skipped.
    let used = match opcode {
        _ if is_store && value_len > max_value => extras_len + key_len,
        SaslListMechs | SaslAuth | SaslStep => 0,
        Stat | Touch | Gat | GatQ | GatK | GatKQ => extras_len + key_len,
        _ => body_len,
    };
    if body.len() < used {
        return Err(BinaryError::Incomplete);
    }
    let extras = &body[..extras_len.min(used)];
    let key = &body[extras.len()..(extras_len + key_len).min(used)];
    let store = |kind| {
        if value_len > max_value {
            return Request::TooLarge { kind, key };
        }
        let (flags, exptime) = match extras_len {
            8 => (be32(&extras[..4]), be32(&extras[4..8])),
            _ => (0, 0),
        };
        Request::Store {
            kind,
            key,
            flags,
            exptime,
            value: &body[extras_len + key_len..body_len],
        }
    };
    let request = match opcode {
        Set | SetQ => store(StoreKind::Set),
        Add | AddQ => store(StoreKind::Add),
        Replace | ReplaceQ => store(StoreKind::Replace),
        Append | AppendQ => store(StoreKind::Append),
        Prepend | PrependQ => store(StoreKind::Prepend),
        Get | GetQ | GetK | GetKQ => Request::Get { key, touch: None },
        Touch | Gat | GatQ | GatK | GatKQ => Request::Get {
            key,
            touch: Some(be32(extras)),
        },
        Delete | DeleteQ => Request::Delete { key },
        Increment | IncrementQ | Decrement | DecrementQ => Request::Arith {
            kind: if matches!(opcode, Increment | IncrementQ) {
                ArithKind::Incr
            } else {
                ArithKind::Decr
            },
            key,
            delta: be64(&extras[..8]),
            initial: be64(&extras[8..16]),
            exptime: be32(&extras[16..20]),
        },
        Flush | FlushQ => Request::Flush {
            delay: if extras_len == 4 { be32(extras) } else { 0 },
        },
        Stat => Request::Stat { group: key },
        Noop => Request::Noop,
        Version => Request::Version,
        Quit | QuitQ => Request::Quit,
        // SASL is off: memcached answers every SASL opcode this way.
        SaslListMechs | SaslAuth | SaslStep => Request::Refused {
            status: Status::UnknownCommand,
            close: false,
        },
    };
    skip_body(request)
}

/// A packet's lengths, checked against what its opcode allows.
struct Shape {
    key: usize,
    extras: usize,
    body: usize,
}

impl Shape {
    /// Whether memcached 1.6.18 accepts these lengths for `opcode` (it
    /// answers `Invalid arguments` and closes otherwise).
    fn fits(&self, opcode: Opcode) -> bool {
        let Shape { key, extras, body } = *self;
        use Opcode::*;
        match opcode {
            Get | GetQ | GetK | GetKQ => extras == 0 && key > 0 && body == key,
            Set | SetQ | Add | AddQ | Replace | ReplaceQ => extras == 8 && key > 0,
            Append | AppendQ | Prepend | PrependQ => extras == 0 && key > 0,
            Delete | DeleteQ => extras == 0 && key > 0 && body == key,
            Increment | IncrementQ | Decrement | DecrementQ => {
                extras == 20 && key > 0 && body == key + extras
            }
            Touch | Gat | GatQ | GatK | GatKQ => extras == 4 && key > 0,
            Quit | QuitQ | Noop | Version | SaslListMechs => body == 0,
            Flush | FlushQ => key == 0 && body == extras && (extras == 0 || extras == 4),
            Stat => extras == 0,
            SaslAuth | SaslStep => extras == 0 && key > 0,
        }
    }
}
