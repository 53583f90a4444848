//! What travels between cores: a [`Batch`] of operations bound for one
//! owner, and on the way back, their replies.
//!
//! A batch carries the operations of every connection of its origin that
//! forwarded to the owner in one scheduler turn, each connection's run of
//! them described by a [`Requester`]. The owner runs them in order
//! ([`Batch::execute`]), keeping each requester within the share of its
//! connection's output budget it was given: once that share is spent it
//! stops and leaves the rest of the requester's operations for a later
//! batch, where the origin said that is safe.

use super::ticket::Ticket;
use crate::protocol::ErrorReply;
use crate::server::op::{Op, Span};
use std::os::fd::RawFd;
use std::rc::Rc;

/// Buffers of a batch that grew past this (a large value went through)
/// are given back when the batch is reused, so one big multi-get does not
/// pin its memory to the core. A turn's batch for 100 connections
/// pipelining 16 requests with values of a few hundred bytes holds about
/// half a MiB of replies, so this is set above that: such a batch is
/// reused, not freed and grown again every turn.
pub(super) const BATCH_KEEP: usize = 1024 * 1024;

/// Most bytes of keys and values one batch carries. Spans into a batch's
/// bytes are `u32`; a connection stops adding to a turn's batch before it
/// would pass this ([`Batch::has_room`]) and sends the rest in the next.
pub(super) const BYTES_MAX: usize = 1 << 30;

/// A connection's socket the owner may write the requester's replies to
/// itself (see `hop.rs`, "One wake fewer").
#[derive(Clone, Copy, Debug)]
pub(crate) struct Direct {
    /// The connection's socket.
    pub socket: RawFd,
    /// A fixed reply that follows the requester's replies (`END`).
    pub suffix: &'static [u8],
}

/// One connection's operations in a batch.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Requester {
    /// The connection.
    pub ticket: Ticket,
    /// The index just past its last operation (its first is the previous
    /// requester's `end`, or 0).
    pub end: u32,
    /// Bytes of replies the owner may produce for it before it stops.
    pub allowance: usize,
    /// The first of its operations the owner may leave for later: every
    /// one before it precedes, in the connection's order, a write already
    /// under way elsewhere, so it must run now.
    pub defer_from: u32,
    /// Set by the owner: the index just past the last operation it ran.
    /// Operations from here to `end` were left for a later batch.
    pub ran_to: u32,
    /// Where the owner may write the replies itself, if every operation
    /// ran: the connection then has nothing else to send before them.
    pub direct: Option<Direct>,
    /// Set by the owner: the bytes of the replies (and suffix) it wrote to
    /// the connection's socket itself.
    pub written: usize,
}

/// Keyed operations bound for one owner core from one origin, and on the
/// way back, their replies. Batches are pooled by the origin and reused,
/// so forwarding allocates nothing once warm.
#[derive(Default)]
pub(crate) struct Batch {
    /// The core that sent the batch.
    pub origin: usize,
    /// The core that runs it.
    pub owner: usize,
    /// Operations; their spans refer to `bytes`.
    pub ops: Vec<Op>,
    /// Keys and values of `ops` (at most [`BYTES_MAX`]).
    pub bytes: Vec<u8>,
    /// Replies, concatenated in op order.
    pub replies: Vec<u8>,
    /// End offset of each op's reply in `replies` (an op left for later
    /// has an empty reply).
    pub ends: Vec<usize>,
    /// The connections whose operations ride in this batch, in order.
    pub requesters: Vec<Requester>,
    /// An op of the batch panicked (its shard was reset): the connections
    /// it came from are closed after their replies.
    pub failed: bool,
    /// Set by the owner: every requester's replies were written to its
    /// socket, so no connection waits on this batch to answer its client
    /// and its return need not wake the origin.
    pub quiet: bool,
}

/// What the owner did with a batch beyond running it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Executed {
    /// Requesters whose replies the owner wrote to their sockets whole.
    pub direct: u64,
    /// Bytes it wrote so.
    pub direct_bytes: u64,
    /// Operations left for a later batch: their requester's share of its
    /// output budget was spent.
    pub deferred: u64,
    /// Reads answered `SERVER_ERROR out of memory writing get response`:
    /// their share was spent and they could not wait (see
    /// [`Requester::defer_from`]).
    pub refused: u64,
}

impl Batch {
    /// Whether `op`'s bytes still fit the batch's.
    pub fn has_room(&self, op: &Op) -> bool {
        let size = (op.key.len + op.data.len + op.tokens.len) as usize;
        self.bytes.len() + size <= BYTES_MAX
    }

    /// Copies `op` and the bytes it refers to (in `base`) into the batch;
    /// returns its index. The caller checked [`Batch::has_room`].
    pub fn push(&mut self, op: &Op, base: &[u8]) -> u32 {
        let mut copy = *op;
        copy.key = self.append(op.key.of(base));
        copy.data = self.append(op.data.of(base));
        copy.tokens = self.append(op.tokens.of(base));
        assert!(self.bytes.len() <= BYTES_MAX, "a batch outgrew BYTES_MAX");
        self.ops.push(copy);
        self.ops.len() as u32 - 1
    }

    fn append(&mut self, part: &[u8]) -> Span {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(part);
        Span {
            start,
            len: part.len() as u32,
        }
    }

    /// Runs every operation in order with `run` (which appends its reply
    /// and returns false if it panicked), keeping each requester within
    /// its allowance. Before each of a requester's operations but its
    /// first, if its replies so far reach its allowance: from
    /// `defer_from` on, the rest are left for later; before it, a read is
    /// refused as memcached refuses a get it has no memory to answer, and
    /// anything else runs (its reply is a line).
    pub fn execute(&mut self, mut run: impl FnMut(&Op, &[u8], &mut Vec<u8>) -> bool) -> Executed {
        let Batch {
            ops,
            bytes,
            replies,
            ends,
            requesters,
            failed,
            ..
        } = self;
        let mut done = Executed::default();
        let mut start = 0;
        let mut quiet = true;
        for requester in requesters.iter_mut() {
            let end = requester.end as usize;
            let from = replies.len();
            requester.ran_to = requester.end;
            requester.written = 0;
            let refused = done.refused;
            for (i, op) in ops.iter().enumerate().take(end).skip(start) {
                if i > start && replies.len() - from >= requester.allowance {
                    if i >= requester.defer_from as usize {
                        requester.ran_to = i as u32;
                        done.deferred += (end - i) as u64;
                        ends.resize(end, replies.len());
                        break;
                    }
                    if op.returns_value() {
                        op.write_error(ErrorReply::OutOfMemoryGet, replies);
                        ends.push(replies.len());
                        done.refused += 1;
                        continue;
                    }
                }
                if !run(op, bytes, replies) {
                    *failed = true;
                }
                ends.push(replies.len());
            }
            start = end;
            let whole = requester.ran_to == requester.end && done.refused == refused && !*failed;
            match requester.direct.filter(|_| whole) {
                Some(direct) => {
                    let parts = [&replies[from..], direct.suffix];
                    requester.written = super::direct::send(direct.socket, &parts);
                    let total = replies.len() - from + direct.suffix.len();
                    done.direct_bytes += requester.written as u64;
                    if requester.written == total {
                        done.direct += 1;
                    } else {
                        quiet = false;
                    }
                }
                None => quiet = false,
            }
        }
        self.quiet = quiet;
        done
    }

    /// The bytes of replies the requester at `requester` got, and whether
    /// every one of its operations ran.
    pub fn requester_replies(&self, requester: usize) -> (usize, bool) {
        let entry = &self.requesters[requester];
        let start = requester
            .checked_sub(1)
            .map_or(0, |before| self.requesters[before].end as usize);
        let end = entry.end as usize;
        let from = start.checked_sub(1).map_or(0, |i| self.ends[i]);
        let to = end.checked_sub(1).map_or(0, |i| self.ends[i]);
        (to - from, entry.ran_to == entry.end)
    }

    /// Whether the op at `index`, of the requester at `requester`, ran.
    pub fn ran(&self, requester: usize, index: u32) -> bool {
        index < self.requesters[requester].ran_to
    }

    /// The reply to the op at `index`.
    pub fn reply(&self, index: u32) -> &[u8] {
        let (start, end) = self.reply_range(index);
        &self.replies[start..end]
    }

    /// Where the reply to the op at `index` lies in `replies`.
    pub fn reply_range(&self, index: u32) -> (usize, usize) {
        let index = index as usize;
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        (start, self.ends[index])
    }

    /// Bytes of buffer capacity the batch holds.
    pub fn capacity_bytes(&self) -> usize {
        fn bytes<T>(buffer: &Vec<T>) -> usize {
            buffer.capacity() * std::mem::size_of::<T>()
        }
        bytes(&self.ops)
            + bytes(&self.bytes)
            + bytes(&self.replies)
            + bytes(&self.ends)
            + bytes(&self.requesters)
    }

    /// Empties the batch for reuse, giving back buffers a large batch grew.
    pub fn reset(&mut self) {
        fn reuse<T>(buffer: &mut Vec<T>) {
            buffer.clear();
            if buffer.capacity() * std::mem::size_of::<T>() > BATCH_KEEP {
                *buffer = Vec::new();
            }
        }
        reuse(&mut self.ops);
        reuse(&mut self.bytes);
        reuse(&mut self.replies);
        reuse(&mut self.ends);
        reuse(&mut self.requesters);
        self.failed = false;
        self.quiet = false;
    }
}

/// A forwarded reply written from the batch it came back in, not copied
/// into the connection's output: it goes out just before byte `at` of the
/// output, in a vectored write.
pub(crate) struct Referenced {
    /// Where in the output it belongs.
    pub at: usize,
    /// The batch holding it.
    pub batch: Rc<Batch>,
    /// Its range in the batch's replies.
    pub start: usize,
    /// The end of that range.
    pub end: usize,
}

impl crate::server::plan::OutputPart for Referenced {
    fn at(&self) -> usize {
        self.at
    }

    fn bytes(&self) -> &[u8] {
        &self.batch.replies[self.start..self.end]
    }
}

#[cfg(test)]
#[path = "tests/batch.rs"]
mod tests;
