//! Meta commands (`mg ms md ma me`) on a shard.
//!
//! The meta protocol's semantics on top of the shard's meta operations:
//! which request fields turn into which shard request, and which reply
//! each outcome gets ([`MetaReply`], written by `protocol::meta`, which
//! also applies quiet mode and echoes the flags).

use super::super::op::OpKind;
use super::job::Job;
use super::translate::{arith_op, store_mode};
use crate::clock::Clock;
use crate::protocol::meta::{
    DebugReply, MetaCode, MetaEcho, MetaFacts, MetaReply, MetaRequest, MetaStatus, Ttls,
};
use crate::protocol::{ErrorReply, Tokens};
use crate::storage::{
    ArithMeta, Deadline, DeleteMeta, DeleteOutcome, MetaArithOutcome, Shard, Store, StoreMeta,
    StoreMode, StoreOutcome,
};

/// Runs a meta op (its decoded `key` is in `base`) and appends its reply
/// to `out`.
pub(super) fn execute(job: Job<'_>, request: &MetaRequest, shard: &mut Shard, out: &mut Vec<u8>) {
    let Job {
        op,
        base,
        key,
        clock,
        now,
    } = job;
    if op.kind == OpKind::Discard {
        shard.discard(key, op.hash, now);
        return ErrorReply::TooLarge.write(out);
    }
    let mut echo = MetaEcho {
        command: request.command(),
        quiet: request.quiet(),
        key,
        base64: request.base64(),
        tokens: op.tokens.of(base),
    };
    let deadline = |exptime: Option<i32>| exptime.map(|e| clock.deadline(i64::from(e), now));
    let secs = |deadline: Deadline| Clock::remaining_secs(deadline, now);
    // Outlives the reply that borrows the counter's digits.
    let mut digits = itoa::Buffer::new();
    let reply = match *request {
        MetaRequest::Get(get) => {
            let req = crate::storage::MetaGet {
                touch: deadline(get.touch),
                vivify: deadline(get.vivify),
                recache_before: deadline(get.recache),
                no_bump: get.no_bump,
                new_cas: get.new_cas,
            };
            match shard.meta_get(key, op.hash, &req, now) {
                None => MetaReply::Status(MetaStatus::plain(MetaCode::En)),
                Some(hit) => {
                    // A hit echoes its key the way it was stored (1.6.18).
                    echo.base64 = hit.binary_key;
                    let item = hit.item;
                    MetaReply::Status(MetaStatus {
                        code: if get.value {
                            MetaCode::Va
                        } else {
                            MetaCode::Hd
                        },
                        value: item.value,
                        facts: MetaFacts {
                            cas: Some(item.cas),
                            size: Some(item.value.len() as u64),
                            client_flags: Some(item.flags),
                            idle_secs: Some(hit.idle_secs),
                            fetched: Some(hit.fetched_before),
                            ttl: Some(Ttls {
                                before: secs(hit.deadline_before),
                                touched: req.touch.map(secs),
                                vivified: req.vivify.filter(|_| hit.created).map(secs),
                            }),
                        },
                        token_taken: hit.token_taken,
                        stale: hit.stale,
                        won: hit.won,
                        created: hit.created,
                    })
                }
            }
        }
        MetaRequest::Set(set) => {
            let mut mode = store_mode(set.mode.store_kind(), 0);
            let mut compare = set.cas.compare();
            if let (Some(cas), StoreMode::Set | StoreMode::Replace) = (compare, mode) {
                mode = StoreMode::Cas(cas);
                compare = None;
            }
            let appending = matches!(mode, StoreMode::Append | StoreMode::Prepend);
            let store = Store {
                mode,
                key,
                hash: op.hash,
                flags: set.client_flags,
                deadline: deadline(set.ttl).unwrap_or(Deadline::NEVER),
                value: op.data.of(base),
            };
            let meta = StoreMeta {
                compare,
                new_cas: set.cas.new_cas(),
                invalidate: set.invalidate,
                vivify: deadline(set.vivify).filter(|_| appending),
                binary_key: set.base64,
            };
            let (code, cas) = match shard.store_meta(&store, &meta, now) {
                StoreOutcome::Stored(cas) => (MetaCode::Hd, cas),
                StoreOutcome::NotStored => (MetaCode::Ns, 0),
                StoreOutcome::Exists => (MetaCode::Ex, 0),
                StoreOutcome::NotFound => (MetaCode::Nf, 0),
                StoreOutcome::TooLarge => return ErrorReply::TooLarge.write(out),
                StoreOutcome::OutOfMemory => return ErrorReply::OutOfMemory.write(out),
            };
            // `s` after an append is the new size: only looked up if asked.
            let asks_size = Tokens::new(echo.tokens).any(|t| t[0] == b's');
            let size = (code == MetaCode::Hd && asks_size)
                .then(|| shard.value_len(key, op.hash, now).unwrap_or(0) as u64);
            MetaReply::Status(MetaStatus {
                facts: MetaFacts {
                    cas: Some(cas),
                    size,
                    ..MetaFacts::default()
                },
                ..MetaStatus::plain(code)
            })
        }
        MetaRequest::Delete(delete) => {
            let req = DeleteMeta {
                compare: delete.cas.compare(),
                invalidate: delete.invalidate,
                new_cas: delete.cas.new_cas(),
                touch: deadline(delete.ttl),
                strip: delete.strip,
            };
            MetaReply::Status(MetaStatus::plain(
                match shard.meta_delete(key, op.hash, &req, now) {
                    DeleteOutcome::Done => MetaCode::Hd,
                    DeleteOutcome::NotFound => MetaCode::Nf,
                    DeleteOutcome::Exists => MetaCode::Ex,
                },
            ))
        }
        MetaRequest::Arith(arith) => {
            let kind = arith_op(arith.kind);
            let req = ArithMeta {
                compare: arith.cas.compare(),
                new_cas: arith.cas.new_cas(),
                vivify: deadline(arith.vivify).map(|d| (d, arith.initial)),
                touch: deadline(arith.ttl),
            };
            match shard.meta_arith(key, op.hash, kind, arith.delta, &req, now) {
                MetaArithOutcome::Value {
                    value,
                    cas,
                    deadline: _,
                    deadline_before,
                    created,
                } => MetaReply::Status(MetaStatus {
                    code: if arith.value {
                        MetaCode::Va
                    } else {
                        MetaCode::Hd
                    },
                    value: digits.format(value).as_bytes(),
                    facts: MetaFacts {
                        cas: Some(cas),
                        ttl: Some(Ttls {
                            before: secs(deadline_before),
                            touched: req.touch.map(secs),
                            vivified: req.vivify.filter(|_| created).map(|(d, _)| secs(d)),
                        }),
                        ..MetaFacts::default()
                    },
                    created,
                    ..MetaStatus::plain(MetaCode::Hd)
                }),
                MetaArithOutcome::NotFound => MetaReply::Status(MetaStatus::plain(MetaCode::Nf)),
                MetaArithOutcome::NotStored => MetaReply::Status(MetaStatus::plain(MetaCode::Ns)),
                MetaArithOutcome::Exists => MetaReply::Status(MetaStatus::plain(MetaCode::Ex)),
                MetaArithOutcome::NonNumeric => MetaReply::Error(ErrorReply::NonNumeric),
            }
        }
        MetaRequest::Debug(_) => {
            MetaReply::Debug(shard.meta_debug(key, op.hash, now).map(|d| DebugReply {
                // memcached prints the key base64-encoded when the item was
                // stored with a base64 key, whatever the request's `b`; the
                // reply also encodes any key that would break its line.
                key_base64: d.binary_key,
                exp: secs(d.deadline),
                la: d.idle_secs,
                cas: d.cas,
                fetched: d.fetched,
                class: d.class + 1,
                size: d.size,
            }))
        }
    };
    reply.write(&echo, out);
}
