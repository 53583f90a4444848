//! What every executor is handed besides the shard: one [`Job`].

use super::super::op::Op;
use crate::clock::Clock;
use crate::storage::Millis;

/// One operation being run: the op, the buffer its spans refer to, its
/// key in that buffer (decoded, for a meta command's base64 key), and the
/// time. Plain references, copied into each executor: nothing is
/// allocated or boxed per request. The shard travels beside it, since a
/// reply may borrow the item from it.
#[derive(Clone, Copy)]
pub(super) struct Job<'a> {
    /// The operation.
    pub op: &'a Op,
    /// The buffer the op's spans refer to.
    pub base: &'a [u8],
    /// The op's key, a slice of `base`.
    pub key: &'a [u8],
    /// The server clock, for exptimes.
    pub clock: &'a Clock,
    /// The time the op runs at.
    pub now: Millis,
}
