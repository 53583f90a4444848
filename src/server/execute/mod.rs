//! Running one keyed operation on a shard, in the protocol it came in.
//!
//! Below the plan vocabulary (`op.rs`, `plan.rs`) and above the shard:
//! [`execute`] picks the protocol's executor by the op's [`Wire`]
//! (`classic.rs`, `meta.rs`, `binary.rs`), which turn the request into
//! shard calls and the result into a reply; `translate.rs` holds the
//! mappings between the protocols' names and the shard's, once.
//! [`ServerState::run_op`] wraps it for both runtimes, containing a panic.

mod binary;
mod classic;
mod job;
mod meta;
mod translate;

pub(crate) use translate::arith_op;

use super::ServerState;
use super::op::{Op, OpKind, Wire};
use crate::clock::Clock;
use crate::protocol::Outcome;
use crate::stats::ThreadStats;
use crate::storage::{Millis, PrefixEvent, Shard};
use job::Job;

/// Runs `op` on `shard` and appends its reply to `out`. Key and data spans
/// refer to `base`.
pub(crate) fn execute(
    op: &Op,
    base: &[u8],
    shard: &mut Shard,
    clock: &Clock,
    now: Millis,
    out: &mut Vec<u8>,
) {
    let key = op.key.of(base);
    let job = Job {
        op,
        base,
        key,
        clock,
        now,
    };
    let found = match &op.wire {
        Wire::Classic => {
            let outcome = classic::outcome(job, shard);
            let found = matches!(outcome, Outcome::Value(_));
            if !op.noreply {
                let cas = matches!(op.kind, OpKind::Get { cas: true, .. });
                outcome.write_text(cas, out);
            }
            found
        }
        Wire::Meta(request) => {
            // memcached 1.6.18 does not count meta commands per prefix.
            return meta::execute(job, request, shard, out);
        }
        Wire::Binary { header, initial } => {
            let outcome = binary::execute(job, header, *initial, shard);
            let found = matches!(outcome, Outcome::Value(_) | Outcome::Touched);
            header.write(outcome, key, out);
            found
        }
    };
    if shard.prefix_stats_on()
        && let Some(event) = prefix_event(op, found)
    {
        shard.record_prefix(key, event);
    }
}

/// What `stats detail` counts of `op`, as memcached counts it: each key
/// of a get (a hit if `found`; memcached's binary touch counts as a get
/// too), every store whether it stored or not, every delete.
fn prefix_event(op: &Op, found: bool) -> Option<PrefixEvent> {
    match op.kind {
        OpKind::Get { .. } => Some(PrefixEvent::Get { hit: found }),
        OpKind::Touch if matches!(op.wire, Wire::Binary { .. }) => {
            Some(PrefixEvent::Get { hit: found })
        }
        OpKind::Store(_) | OpKind::Discard => Some(PrefixEvent::Set),
        OpKind::Delete => Some(PrefixEvent::Delete),
        _ => None,
    }
}

// The entry both runtimes call lives with the execution it contains, not
// with the shared state it reads (`state.rs` stays below execution).
impl ServerState {
    /// Runs `op` on `shard`, appending its reply to
    /// `out`. A panic is contained here: the shard, which the panic may
    /// have left half-updated, is replaced by an empty one, the request is
    /// answered `SERVER_ERROR internal error`, logged and counted, and false
    /// is returned so the connection is closed. Both runtimes run every op
    /// through this.
    pub(crate) fn run_op(
        &self,
        op: &Op,
        base: &[u8],
        shard: &mut Shard,
        now: Millis,
        out: &mut Vec<u8>,
        stats: &ThreadStats,
    ) -> bool {
        if cfg!(debug_assertions) && op.kind == OpKind::DebugHold {
            self.debug_gate.hold();
            out.extend_from_slice(crate::protocol::Reply::OK);
            return true;
        }
        let start = out.len();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            execute(op, base, shard, &self.clock, now, out);
        }));
        if ran.is_ok() {
            return true;
        }
        tracing::error!(
            "a {:?} request for key {:?} panicked; its shard is reset to empty",
            op.kind,
            String::from_utf8_lossy(op.key.of(base)),
        );
        shard.reset();
        stats.request_panics.add_shared(1);
        out.truncate(start);
        op.write_error(crate::protocol::ErrorReply::Internal, out);
        false
    }
}
