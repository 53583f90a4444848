//! Unit tests of the wave rules: how a plan is split into waves so that a
//! connection's writes stay in order and its replies within its budget.

use super::*;
use crate::protocol::StoreKind;
use crate::server::forward::mailbox::{Inbox, mailboxes};
use crate::server::op::{Op, OpKind, Span, Wire};
use crate::server::{Control, Router, ShardReport};
use crate::stats::ThreadStats;
use crate::storage::Millis;
use std::cell::Cell;

/// Core 0's shards, off any runtime: every op answers ten bytes.
struct FakeShards {
    router: Router,
    stats: ThreadStats,
    ran: Cell<usize>,
}

impl LocalShards for FakeShards {
    fn router(&self) -> &Router {
        &self.router
    }
    fn now(&self) -> Millis {
        0
    }
    fn stats(&self) -> &ThreadStats {
        &self.stats
    }
    fn run_op(&self, _: &Op, _: &[u8], _: Millis, out: &mut Vec<u8>) -> bool {
        self.ran.set(self.ran.get() + 1);
        out.extend_from_slice(b"0123456789");
        true
    }
    fn prefetch<'o>(&self, _: impl Iterator<Item = &'o Op> + Clone) {}
    fn control(&self, _: Control) -> Vec<ShardReport> {
        Vec::new()
    }
    fn largest_reply(&self) -> usize {
        0
    }
}

/// Core 0 of `threads`: its exchange, its shards, and every core's inbox
/// (to publish what their reads can return).
fn core0(threads: usize) -> (Exchange, FakeShards, Vec<Inbox>) {
    let (boxes, mut inboxes) = mailboxes(threads, 8);
    let exchange = Exchange::new(0, boxes, inboxes.remove(0));
    let shards = FakeShards {
        router: Router::new(threads, threads),
        stats: ThreadStats::default(),
        ran: Cell::new(0),
    };
    (exchange, shards, inboxes)
}

/// A key that `router` places on `thread`.
fn key_on(router: &Router, thread: usize, seed: usize) -> String {
    (seed..)
        .map(|i| format!("k{i}"))
        .find(|k| router.owner(router.shard(Router::hash(k.as_bytes()))) == thread)
        .unwrap()
}

const W: bool = true;
const R: bool = false;

/// Steps for `(write?, thread)` pairs, keys in `base`.
fn plan(router: &Router, ops: &[(bool, usize)], base: &mut Vec<u8>) -> Vec<Step> {
    ops.iter()
        .enumerate()
        .map(|(i, &(write, thread))| {
            let key = key_on(router, thread, i * 100);
            let start = base.len() as u32;
            base.extend_from_slice(key.as_bytes());
            let kind = if write {
                OpKind::Store(StoreKind::Set)
            } else {
                OpKind::Get {
                    cas: false,
                    touch: false,
                }
            };
            Step::Op(Op {
                key: Span {
                    start,
                    len: key.len() as u32,
                },
                noreply: true,
                ..Op::new(kind, base, &base[start as usize..], Wire::Classic)
            })
        })
        .collect()
}

/// How many steps of `ops` the first wave takes on core 0 of `threads`
/// with `share` bytes for each core, and to how many owners it forwards.
fn first_wave(threads: usize, ops: &[(bool, usize)], share: usize) -> (usize, usize) {
    let (exchange, shards, _inboxes) = core0(threads);
    let mut base = Vec::new();
    let steps = plan(&shards.router, ops, &mut base);
    let mut hop = Hop::new(&exchange, None);
    hop.first_wave(&exchange, &shards, &steps, &base, share)
}

const AMPLE: usize = 1 << 30;

/// A forwarded write waits only for an earlier forwarded write of the
/// batch to another owner; local writes, reads and writes to the same
/// owner never wait.
#[test]
fn only_forwarded_writes_to_two_owners_split_a_wave() {
    // Two threads: there is one other owner, nothing ever waits.
    let ops = [(W, 1), (W, 0), (W, 1), (R, 1), (W, 0)];
    assert_eq!(first_wave(2, &ops, AMPLE), (5, 1));
    // Three threads.
    assert_eq!(first_wave(3, &[(W, 1), (W, 2)], AMPLE), (1, 1));
    let ops = [(W, 1), (W, 1), (W, 0), (R, 2), (W, 1)];
    assert_eq!(first_wave(3, &ops, AMPLE), (5, 2));
    let ops = [(R, 2), (W, 1), (R, 2), (W, 0), (W, 2)];
    assert_eq!(first_wave(3, &ops, AMPLE), (4, 2));
    let ops = [(W, 0), (W, 2), (W, 0), (W, 1), (W, 2)];
    assert_eq!(first_wave(3, &ops, AMPLE), (3, 1));
}

/// What core 0 signed into its batch for `owner` after one wave.
fn signed(threads: usize, ops: &[(bool, usize)], share: usize, owner: usize) -> Requester {
    let (exchange, shards, _inboxes) = core0(threads);
    let mut base = Vec::new();
    let steps = plan(&shards.router, ops, &mut base);
    let mut hop = Hop::new(&exchange, None);
    hop.first_wave(&exchange, &shards, &steps, &base, share);
    let filling = exchange.outbox().filling();
    filling[owner].requesters[0]
}

/// The owner may leave for later only what follows, in the connection's
/// order, every write made elsewhere in the wave.
#[test]
fn a_write_elsewhere_makes_what_was_sent_before_it_run_now() {
    // Two reads sent to core 1, a local write, one more read.
    let ops = [(R, 1), (R, 1), (W, 0), (R, 1)];
    let requester = signed(2, &ops, AMPLE, 1);
    assert_eq!((requester.end, requester.defer_from), (3, 2));
    assert_eq!(requester.allowance, AMPLE);
    // No write elsewhere: all of it may wait.
    let requester = signed(2, &[(R, 1), (W, 1), (R, 1)], AMPLE, 1);
    assert_eq!(requester.defer_from, 0);
    // Three threads: a write sent to core 2 fixes core 1's reads before it.
    let requester = signed(3, &[(R, 1), (W, 2), (R, 1), (R, 1)], AMPLE, 1);
    assert_eq!((requester.end, requester.defer_from), (3, 1));
}

/// A write ends the wave when the reads it would fix on another core
/// could outgrow that core's share, judged by what the core publishes
/// its reads can return.
#[test]
fn a_write_that_could_strand_large_reads_waits_for_the_next_wave() {
    let share = 256 * 1024;
    let (exchange, shards, inboxes) = core0(2);
    let mut base = Vec::new();
    let ops = [(R, 1), (R, 1), (W, 0), (R, 1)];
    let steps = plan(&shards.router, &ops, &mut base);
    let wave = |exchange: &Exchange| {
        let mut hop = Hop::new(exchange, None);
        let taken = hop.first_wave(exchange, &shards, &steps, &base, share);
        exchange.outbox().filling()[1] = Default::default();
        taken
    };
    // Small items on core 1: two reads fit many times over.
    inboxes[0].publish_largest_reply(1000);
    assert_eq!(wave(&exchange), (4, 1));
    // One 1 MB item there: two reads could not be answered in 256 KB, so
    // the local write waits for them.
    inboxes[0].publish_largest_reply(1 << 20);
    assert_eq!(wave(&exchange), (2, 1));
    // A write to the core that holds the reads never strands them.
    let mut base = Vec::new();
    let steps = plan(&shards.router, &[(R, 1), (R, 1), (W, 1)], &mut base);
    let mut hop = Hop::new(&exchange, None);
    let taken = hop.first_wave(&exchange, &shards, &steps, &base, share);
    assert_eq!(taken, (3, 1));
}

/// Local replies stop the wave once they reach the share.
#[test]
fn local_replies_end_the_wave_at_their_share() {
    // Each local reply is 10 bytes: the third starts at 20, past 15.
    let ops = [(R, 0), (R, 1), (R, 0), (R, 0), (R, 0)];
    assert_eq!(first_wave(2, &ops, 15), (3, 1));
    // The first step runs whatever the share.
    assert_eq!(first_wave(2, &[(R, 0), (R, 0)], 0), (1, 0));
}
