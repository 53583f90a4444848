//! The protocol's names for a store, an arithmetic and a store's result,
//! turned into the shard's and back, once for all three protocols.
//!
//! Classic, meta and binary requests name the same few storage actions in
//! their own words (`StoreKind`, the meta `SetMode`, `ArithKind`); the
//! shard has one word for each (`StoreMode`, `ArithOp`). Every planner and
//! executor goes through these functions, so a new mode is added in one
//! place.

use crate::protocol::{ArithKind, ErrorReply, Outcome, StoreKind};
use crate::storage::{ArithOp, StoreMode, StoreOutcome};

/// The shard's mode for a store of `kind`; `cas` is the token a `cas`
/// compares (unused by the other kinds).
#[inline]
pub(super) fn store_mode(kind: StoreKind, cas: u64) -> StoreMode {
    match kind {
        StoreKind::Set => StoreMode::Set,
        StoreKind::Add => StoreMode::Add,
        StoreKind::Replace => StoreMode::Replace,
        StoreKind::Append => StoreMode::Append,
        StoreKind::Prepend => StoreMode::Prepend,
        StoreKind::Cas => StoreMode::Cas(cas),
    }
}

/// The shard's name for `incr`/`decr`.
#[inline]
pub(crate) fn arith_op(kind: ArithKind) -> ArithOp {
    match kind {
        ArithKind::Incr => ArithOp::Incr,
        ArithKind::Decr => ArithOp::Decr,
    }
}

/// What a store's result is called in a classic or binary reply.
#[inline]
pub(super) fn store_outcome(stored: StoreOutcome) -> Outcome<'static> {
    match stored {
        StoreOutcome::Stored(cas) => Outcome::Stored { cas },
        StoreOutcome::NotStored => Outcome::NotStored,
        StoreOutcome::Exists => Outcome::Exists,
        StoreOutcome::NotFound => Outcome::NotFound,
        StoreOutcome::TooLarge => Outcome::Error(ErrorReply::TooLarge),
        StoreOutcome::OutOfMemory => Outcome::Error(ErrorReply::OutOfMemory),
    }
}
