//! Classic text commands on a shard: gets, stores, deletes, arithmetic,
//! touches. The binary protocol's plain forms run here too.

use super::super::op::OpKind;
use super::job::Job;
use super::translate::{store_mode, store_outcome};
use crate::protocol::{ErrorReply, Outcome, Value};
use crate::storage::{ArithOutcome, Shard, Store};

/// Runs a classic operation on `shard`. A hit borrows the item from
/// the shard, so the reply is written from it with no copy.
#[inline]
pub(super) fn outcome<'s>(job: Job<'s>, shard: &'s mut Shard) -> Outcome<'s> {
    let Job {
        op,
        base,
        key,
        clock,
        now,
    } = job;
    match op.kind {
        OpKind::Get { touch, .. } => {
            let item = if touch {
                shard.get_and_touch(key, op.hash, clock.deadline(op.exptime, now), now)
            } else {
                shard.get(key, op.hash, now)
            };
            match item {
                Some(item) => Outcome::Value(Value {
                    key,
                    flags: item.flags,
                    cas: item.cas,
                    data: item.value,
                }),
                None => Outcome::Miss,
            }
        }
        OpKind::Store(kind) => {
            let mode = store_mode(kind, op.number);
            let store = Store {
                mode,
                key,
                hash: op.hash,
                flags: op.flags,
                deadline: clock.deadline(op.exptime, now),
                value: op.data.of(base),
            };
            store_outcome(shard.store(&store, now))
        }
        OpKind::Delete => {
            if shard.delete(key, op.hash, now) {
                Outcome::Deleted
            } else {
                Outcome::NotFound
            }
        }
        OpKind::Touch => {
            if shard.touch(key, op.hash, clock.deadline(op.exptime, now), now) {
                Outcome::Touched
            } else {
                Outcome::NotFound
            }
        }
        OpKind::DebugPanic => panic!("debug_panic asked for a panic"),
        OpKind::DebugHold => unreachable!("run by ServerState::run_op"),
        OpKind::Discard => {
            shard.discard(key, op.hash, now);
            Outcome::Error(ErrorReply::TooLarge)
        }
        OpKind::Arith(arith) => match shard.arith(key, op.hash, arith, op.number, now) {
            // The classic reply carries no CAS token.
            ArithOutcome::Value(value) => Outcome::Number { value, cas: 0 },
            ArithOutcome::NotFound => Outcome::NotFound,
            ArithOutcome::NonNumeric => Outcome::Error(ErrorReply::NonNumeric),
        },
        OpKind::Meta => unreachable!("meta operations run in meta::execute"),
    }
}
