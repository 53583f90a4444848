//! Unit tests of a batch run by its owner: each requester kept within its
//! allowance, what is left for later and what is refused.

use super::*;
use crate::protocol::StoreKind;
use crate::server::op::{OpKind, Wire};

fn op(kind: OpKind) -> Op {
    Op::new(kind, b"k", b"k", Wire::Classic)
}

fn get() -> Op {
    op(OpKind::Get {
        cas: false,
        touch: false,
    })
}

fn set() -> Op {
    op(OpKind::Store(StoreKind::Set))
}

/// A batch of `ops` for requesters given as (ops, allowance, defer_from
/// relative to the requester's first op).
fn batch(ops: &[Op], requesters: &[(u32, usize, u32)]) -> Batch {
    let mut batch = Batch::default();
    for op in ops {
        batch.push(op, b"k");
    }
    let mut end = 0;
    for &(count, allowance, floor) in requesters {
        batch.requesters.push(Requester {
            end: end + count,
            allowance,
            defer_from: end + floor,
            ..Requester::default()
        });
        end += count;
    }
    batch
}

/// Runs `batch` with every op answering ten bytes; returns the replies.
fn run(batch: &mut Batch) -> (Executed, Vec<String>) {
    let done = batch.execute(|_, _, out| {
        out.extend_from_slice(b"0123456789");
        true
    });
    let replies = (0..batch.ops.len() as u32)
        .map(|i| String::from_utf8_lossy(batch.reply(i)).into_owned())
        .collect();
    (done, replies)
}

#[test]
fn a_requester_within_its_allowance_runs_whole() {
    let mut batch = batch(&[get(), get(), get()], &[(3, 30, 0)]);
    let (done, replies) = run(&mut batch);
    assert_eq!(done, Executed::default());
    assert!(replies.iter().all(|r| r == "0123456789"));
    assert!((0..3).all(|i| batch.ran(0, i)));
}

#[test]
fn past_its_allowance_the_rest_is_left_for_later_and_answered_nothing() {
    // 25 bytes allowed: the third op starts at 20 < 25 and runs, the
    // fourth starts at 30 and everything from there waits.
    let ops = [get(), set(), get(), get(), set()];
    let mut batch = batch(&ops, &[(5, 25, 0)]);
    let (done, replies) = run(&mut batch);
    assert_eq!(
        done,
        Executed {
            deferred: 2,
            ..Executed::default()
        }
    );
    assert_eq!(batch.requesters[0].ran_to, 3);
    assert_eq!(&replies[3..], ["", ""]);
    assert!(batch.ran(0, 2) && !batch.ran(0, 3));
}

#[test]
fn the_first_op_always_runs_whatever_the_allowance() {
    let mut batch = batch(&[get(), get()], &[(2, 0, 0)]);
    let (done, replies) = run(&mut batch);
    assert_eq!(done.deferred, 1);
    assert_eq!(replies, ["0123456789", ""]);
}

#[test]
fn below_the_floor_reads_are_refused_and_writes_run() {
    // Nothing may wait before the fourth op: the spent allowance refuses
    // the reads there and runs the write; from the floor on, ops wait.
    let ops = [get(), get(), set(), get(), get()];
    let mut batch = batch(&ops, &[(5, 5, 4)]);
    let (done, replies) = run(&mut batch);
    assert_eq!(
        done,
        Executed {
            deferred: 1,
            refused: 2,
            ..Executed::default()
        }
    );
    let oom = "SERVER_ERROR out of memory writing get response\r\n";
    assert_eq!(replies, ["0123456789", oom, "0123456789", oom, ""]);
    assert_eq!(batch.requesters[0].ran_to, 4);
}

#[test]
fn each_requester_has_its_own_allowance() {
    let ops = [get(), get(), get(), get()];
    let mut batch = batch(&ops, &[(2, 5, 0), (2, 100, 0)]);
    let (done, replies) = run(&mut batch);
    assert_eq!(done.deferred, 1);
    assert_eq!(replies[1], "");
    assert_eq!(
        (batch.requesters[0].ran_to, batch.requesters[1].ran_to),
        (1, 4)
    );
    assert_eq!(replies[2..], ["0123456789", "0123456789"]);
}
