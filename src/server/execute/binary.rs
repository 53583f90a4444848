//! Binary-protocol requests on a shard: the classic operation, except
//! where the binary protocol asks more.

use super::super::op::OpKind;
use super::classic;
use super::job::Job;
use super::translate::{store_mode, store_outcome};
use crate::protocol::binary::Header;
use crate::protocol::{ErrorReply, Outcome, StoreKind};
use crate::storage::{
    ArithMeta, Deadline, DeleteMeta, DeleteOutcome, MetaArithOutcome, Shard, Store, StoreMeta,
};

/// Runs a binary op on `shard`: the classic operation, except where the
/// binary protocol asks more (a CAS token on delete and append, incr with
/// an initial value and an exptime, a CAS in every incr reply).
pub(super) fn execute<'s>(
    job: Job<'s>,
    header: &Header,
    initial: u64,
    shard: &'s mut Shard,
) -> Outcome<'s> {
    let Job {
        op,
        base,
        key,
        clock,
        now,
    } = job;
    let compare = (header.cas != 0).then_some(header.cas);
    match op.kind {
        OpKind::Delete if compare.is_some() => {
            let req = DeleteMeta {
                compare,
                ..DeleteMeta::default()
            };
            match shard.meta_delete(key, op.hash, &req, now) {
                DeleteOutcome::Done => Outcome::Deleted,
                DeleteOutcome::NotFound => Outcome::NotFound,
                DeleteOutcome::Exists => Outcome::Exists,
            }
        }
        OpKind::Arith(kind) => {
            // An exptime of 0xffffffff means: do not create a missing counter.
            let vivify = (op.exptime != i64::from(u32::MAX))
                .then(|| (clock.deadline(op.exptime, now), initial));
            let req = ArithMeta {
                compare,
                new_cas: None,
                vivify,
                touch: None,
            };
            match shard.meta_arith(key, op.hash, kind, op.number, &req, now) {
                MetaArithOutcome::Value { value, cas, .. } => Outcome::Number { value, cas },
                MetaArithOutcome::NotFound => Outcome::NotFound,
                MetaArithOutcome::NotStored => Outcome::NotStored,
                MetaArithOutcome::Exists => Outcome::Exists,
                MetaArithOutcome::NonNumeric => Outcome::Error(ErrorReply::NonNumeric),
            }
        }
        OpKind::Store(kind @ (StoreKind::Append | StoreKind::Prepend)) => {
            let store = Store {
                mode: store_mode(kind, 0),
                key,
                hash: op.hash,
                flags: 0,
                deadline: Deadline::NEVER,
                value: op.data.of(base),
            };
            let meta = StoreMeta {
                compare,
                ..StoreMeta::default()
            };
            // The shard answers as memcached does: too large for a value
            // that could never be stored, not stored for an item that
            // would grow too large.
            store_outcome(shard.store_meta(&store, &meta, now))
        }
        _ => classic::outcome(job, shard),
    }
}
