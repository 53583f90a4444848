//! One keyed operation: the unit the connection routes, forwards and runs.
//!
//! An [`Op`] is plain data: the key and value are byte ranges into a buffer
//! held next to it (the connection's read buffer when it runs locally, a
//! forward batch's byte buffer when it crosses threads). That keeps it `Copy`,
//! lifetime-free and cheap to batch, and the same [`Op::execute`] serves
//! both runtimes.

use crate::clock::Clock;
use crate::protocol::meta::{MetaCommand, MetaFlags};
use crate::protocol::{ErrorReply, KEY_MAX_LEN, Reply};
use crate::storage::{ArithOp, ArithOutcome, Millis, Shard, Store, StoreMode, StoreOutcome};

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
    /// A meta command; its flags are in [`Op::meta`] and [`Op::tokens`].
    Meta(MetaCommand),
    /// `debug_panic` (debug builds only): panics while it holds the shard.
    DebugPanic,
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
    /// The key.
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
    /// Meta commands: the parsed flags (default for classic commands).
    pub meta: MetaFlags,
    /// Meta commands: the flag tokens as sent, echoed in order in the reply.
    pub tokens: Span,
}

impl Op {
    /// Whether running the operation can change what other clients see:
    /// stores, deletes, arithmetic, touches (`gat` too), and meta commands
    /// that do any of these. A connection's writes become visible in the
    /// order it sent them.
    pub fn is_write(&self) -> bool {
        match self.kind {
            OpKind::Get { touch, .. } => touch,
            OpKind::Meta(MetaCommand::Get) => {
                self.meta.has(b'T') || self.meta.has(b'N') || self.meta.has(b'R')
            }
            OpKind::Meta(MetaCommand::Debug) => false,
            _ => true,
        }
    }

    /// Runs the operation on `shard` and appends its reply to `out`. Key and
    /// data spans refer to `base`.
    pub fn execute(
        &self,
        base: &[u8],
        shard: &mut Shard,
        clock: &Clock,
        now: Millis,
        out: &mut Vec<u8>,
    ) {
        let mut buf = [0u8; KEY_MAX_LEN];
        let key = super::meta::key(self, base, &mut buf);
        let reply: &[u8] = match self.kind {
            OpKind::Meta(command) => {
                return super::meta::execute(self, command, base, shard, clock, now, out);
            }
            OpKind::Get { cas, touch } => {
                let item = if touch {
                    shard.get_and_touch(key, self.hash, clock.deadline(self.exptime, now), now)
                } else {
                    shard.get(key, self.hash, now)
                };
                if let Some(item) = item {
                    Reply::value(out, key, item.flags, item.value, cas.then_some(item.cas));
                }
                return;
            }
            OpKind::Store(kind) => {
                use crate::protocol::StoreKind::*;
                let mode = match kind {
                    Set => StoreMode::Set,
                    Add => StoreMode::Add,
                    Replace => StoreMode::Replace,
                    Append => StoreMode::Append,
                    Prepend => StoreMode::Prepend,
                    Cas => StoreMode::Cas(self.number),
                };
                let store = Store {
                    mode,
                    key,
                    hash: self.hash,
                    flags: self.flags,
                    deadline: clock.deadline(self.exptime, now),
                    value: self.data.of(base),
                };
                match shard.store(&store, now) {
                    StoreOutcome::Stored(_) => Reply::STORED,
                    StoreOutcome::NotStored => Reply::NOT_STORED,
                    StoreOutcome::Exists => Reply::EXISTS,
                    StoreOutcome::NotFound => Reply::NOT_FOUND,
                    StoreOutcome::TooLarge => {
                        return self.error(out, ErrorReply::Server("object too large for cache"));
                    }
                    StoreOutcome::OutOfMemory => {
                        return self.error(out, ErrorReply::Server("out of memory storing object"));
                    }
                }
            }
            OpKind::Delete => {
                if shard.delete(key, self.hash, now) {
                    Reply::DELETED
                } else {
                    Reply::NOT_FOUND
                }
            }
            OpKind::Touch => {
                if shard.touch(key, self.hash, clock.deadline(self.exptime, now), now) {
                    Reply::TOUCHED
                } else {
                    Reply::NOT_FOUND
                }
            }
            OpKind::DebugPanic => panic!("debug_panic asked for a panic"),
            OpKind::Discard => {
                shard.discard(key, self.hash, now);
                return self.error(out, ErrorReply::Server("object too large for cache"));
            }
            OpKind::Arith(op) => match shard.arith(key, self.hash, op, self.number, now) {
                ArithOutcome::Value(value) => {
                    if !self.noreply {
                        Reply::number(out, value);
                    }
                    return;
                }
                ArithOutcome::NotFound => Reply::NOT_FOUND,
                ArithOutcome::NonNumeric => {
                    return self.error(
                        out,
                        ErrorReply::Client("cannot increment or decrement non-numeric value"),
                    );
                }
            },
        };
        if !self.noreply {
            out.extend_from_slice(reply);
        }
    }

    fn error(&self, out: &mut Vec<u8>, error: ErrorReply) {
        if !self.noreply {
            error.write(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_stays_small() {
        // Ops are copied into plans and forward batches by the thousand;
        // the meta flags made them grow, keep an eye on it.
        let size = std::mem::size_of::<Op>();
        println!("Op is {size} bytes");
        assert!(size <= 128, "Op grew to {size} bytes");
    }
}
