//! One keyed operation: the unit the connection routes, forwards and runs.
//!
//! An [`Op`] is plain data: the key and value are byte ranges into a buffer
//! held next to it (the connection's read buffer when it runs locally, a
//! forward batch's byte buffer when it crosses threads). That keeps it `Copy`,
//! lifetime-free and cheap to batch, and the same execution (`execute/`)
//! serves both runtimes.

use crate::protocol::binary;
use crate::protocol::meta::MetaRequest;
use crate::protocol::{ErrorReply, Outcome};
use crate::storage::ArithOp;

/// What an [`Op`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// One key of a `get`/`gets`/`gat`/`gats`; the reply is its `VALUE`
    /// block or nothing (the connection adds `END`).
    Get {
        /// Include the CAS token.
        cas: bool,
        /// Also set a new exptime (`gat`).
        touch: bool,
    },
    /// A storage command.
    Store(crate::protocol::StoreKind),
    /// `delete`
    Delete,
    /// `incr`/`decr`
    Arith(ArithOp),
    /// `touch`
    Touch,
    /// A `set` or `ms` refused as too large: drop the old item, answer the
    /// error.
    Discard,
    /// A meta command; what it does is its [`Wire::Meta`] request.
    Meta,
    /// `debug_panic` (debug builds only): panics while it holds the shard.
    DebugPanic,
    /// `debug_hold` (debug builds only): blocks the owning thread until a
    /// `debug_release`; run by [`super::ServerState::run_op`].
    DebugHold,
}

/// The protocol a request came in, with what its execution and reply need
/// beyond the common fields of an [`Op`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// A classic text command: the reply is written as text.
    Classic,
    /// A meta command, typed; its flag tokens are in [`Op::tokens`].
    Meta(MetaRequest),
    /// A binary-protocol request: the reply is a packet answering this
    /// header (opcode, opaque; quiet and key-returning forms follow from
    /// the opcode), and the header's CAS token is compared where the
    /// command allows one.
    Binary {
        /// The request's header.
        header: binary::Header,
        /// `incr`/`decr`: the value a missing counter is created with.
        initial: u64,
    },
}

/// A byte range into the buffer an [`Op`] travels with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Span {
    /// The span of `part`, which must lie inside `base`.
    pub fn within(base: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        debug_assert!(start + part.len() <= base.len());
        Span {
            start: start as u32,
            len: part.len() as u32,
        }
    }

    /// The bytes of this span in `base`.
    #[inline]
    pub fn of(self, base: &[u8]) -> &[u8] {
        &base[self.start as usize..(self.start + self.len) as usize]
    }
}

/// One keyed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// What to do.
    pub kind: OpKind,
    /// The key's hash (picks the shard, then the slot inside it).
    pub hash: u64,
    /// The key (decoded, for a meta command's base64 key).
    pub key: Span,
    /// The value for stores; empty otherwise.
    pub data: Span,
    /// Client flags (stores).
    pub flags: u32,
    /// Raw protocol exptime (stores, touch, gat).
    pub exptime: i64,
    /// The CAS token for `cas`, the delta for `incr`/`decr`.
    pub number: u64,
    /// Suppress the reply.
    pub noreply: bool,
    /// The protocol, and what it adds to the request.
    pub wire: Wire,
    /// Meta commands: the flag tokens as sent, echoed in order in the reply.
    pub tokens: Span,
}

impl Op {
    /// An operation of `kind` on `key` (a slice of `base`), hashed, with
    /// every other field empty.
    pub fn new(kind: OpKind, base: &[u8], key: &[u8], wire: Wire) -> Op {
        Op {
            kind,
            hash: super::Router::hash(key),
            key: Span::within(base, key),
            data: Span::default(),
            flags: 0,
            exptime: 0,
            number: 0,
            noreply: false,
            wire,
            tokens: Span::default(),
        }
    }

    /// Whether running the operation can change what other clients see:
    /// stores, deletes, arithmetic, touches (`gat` too), and meta commands
    /// that do any of these. A connection's writes become visible in the
    /// order it sent them.
    pub fn is_write(&self) -> bool {
        match (self.kind, &self.wire) {
            (OpKind::Get { touch, .. }, _) => touch,
            (OpKind::Meta, Wire::Meta(MetaRequest::Get(get))) => {
                get.touch.is_some() || get.vivify.is_some() || get.recache.is_some()
            }
            (OpKind::Meta, Wire::Meta(MetaRequest::Debug(_))) => false,
            _ => true,
        }
    }

    /// Whether the reply can carry a value, and so be as large as an item:
    /// a get of any protocol (`mg` with `v`). The output budget is spent
    /// by these; every other reply is a line or a header.
    pub fn returns_value(&self) -> bool {
        match (self.kind, &self.wire) {
            (OpKind::Get { .. }, _) => true,
            (OpKind::Meta, Wire::Meta(MetaRequest::Get(get))) => get.value,
            _ => false,
        }
    }

    /// Appends `error` as this operation's reply, in the protocol it came
    /// in (a text line, or a binary packet).
    pub fn write_error(&self, error: ErrorReply, out: &mut Vec<u8>) {
        match &self.wire {
            Wire::Binary { header, .. } => header.write(Outcome::Error(error), &[], out),
            Wire::Classic | Wire::Meta(_) => error.write(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed request is answered in its own protocol.
    #[test]
    fn errors_are_written_in_the_protocol_of_the_request() {
        let base = b"key";
        let header = binary::Header {
            opcode: binary::Opcode::Set as u8,
            opaque: 7,
            cas: 0,
        };
        let wire = Wire::Binary { header, initial: 0 };
        let mut out = Vec::new();
        Op::new(OpKind::Delete, base, base, wire).write_error(ErrorReply::Internal, &mut out);
        assert_eq!((out[0], out[1], &out[6..8]), (0x81, 0x01, &[0, 0x84][..]));
        assert_eq!(&out[12..16], &7u32.to_be_bytes());
        assert_eq!(&out[24..], b"Internal error");
        out.clear();
        Op::new(OpKind::Delete, base, base, Wire::Classic)
            .write_error(ErrorReply::Internal, &mut out);
        assert_eq!(out, b"SERVER_ERROR internal error\r\n");
    }

    #[test]
    fn op_stays_small() {
        // Ops are copied into plans and forward batches by the thousand;
        // the meta flags made them grow, keep an eye on it.
        let size = std::mem::size_of::<Op>();
        println!("Op is {size} bytes");
        assert!(size <= 128, "Op grew to {size} bytes");
    }
}
