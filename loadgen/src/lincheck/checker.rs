//! The linearizability checker: Wing & Gong's search with Lowe's
//! memoisation, as Porcupine and Knossos do it, over one key's history at a
//! time, in windows.
//!
//! A history is linearizable when its operations can be put in one order
//! that (a) keeps every operation that returned before another began ahead
//! of it, (b) keeps one connection's requests on the key in the order it
//! sent them (a server runs a connection's requests in order), and (c)
//! gives every operation the reply the sequential [`model`](super::model)
//! gives in that order. The search tries, depth first, every operation
//! that may come next (invoked before the earliest reply still to place),
//! and never enters twice the same configuration: the set of operations
//! placed so far (a bitset) with the state they left. One reduction on
//! top: an operation that may come next and leaves the state as it is (a
//! read that matches it, a failed `add` or `cas`, a `NOT_FOUND`) is placed
//! at once, without trying the others first (see [`check`]); reads are
//! most operations, so this is most of the speed. Linearizability is
//! local (Herlihy & Wing), so each key is checked on its own.
//!
//! **Windows.** A point where no operation on a key is in flight splits its
//! history: every operation before it precedes every one after it. The
//! checker searches one window at a time and, instead of stopping at the
//! first linearization, enumerates every state a linearization of the
//! window can end in; the next window starts from each of them. (End
//! states are few: the last writes racing, and what a `gets` learnt.) The
//! cost is exponential in the number of operations in flight at once, not
//! in the length of the run. A search that visits more than its budget of
//! configurations gives up: the window counts as *inconclusive* and the
//! next one starts from [`State::UNKNOWN`], which hides nothing that comes
//! after it and invents no violation.
//!
//! **Operations without a reply** (their connection was killed) are
//! Jepsen's "maybe applied": their reply time is infinite, so they may be
//! placed anywhere after their invocation, including after everything else,
//! which is the same as never having happened. They never end a window.
//!
//! **The smallest history.** A window that cannot be linearized is shrunk
//! greedily: an operation is dropped when the window stays impossible even
//! with that operation turned into a "maybe applied" one, i.e. when no
//! effect of it, at any moment after its invocation, could explain the
//! rest. What remains is what the report prints.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::model::{Call, Outcomes, Ret, Spec, State, step, writes_nothing};

/// Reply time of an operation that never got one.
pub const NEVER: u64 = u64::MAX;

/// One operation of a key's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// The connection (one socket; a reconnect is a new one) that sent it.
    pub session: u32,
    /// Its place among that connection's requests.
    pub seq: u32,
    /// The request.
    pub call: Call,
    /// The reply ([`Ret::Unknown`] when none came).
    pub ret: Ret,
    /// Invocation: nanoseconds since the run began, read before the write
    /// that sent it.
    pub inv: u64,
    /// Response: nanoseconds, read after the read that completed its
    /// reply; [`NEVER`] without one.
    pub done: u64,
}

impl Op {
    /// Whether the operation got no reply.
    pub fn is_maybe(&self) -> bool {
        self.done == NEVER
    }
}

/// What a search of one window found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Linearizable; every state a linearization can end in (with
    /// `first_only`, the end state of the first linearization found).
    Linearizable(Vec<State>),
    /// No order fits.
    Violation,
    /// The search visited more configurations than its budget.
    GaveUp,
}

/// Sorts `ops` into the order the search expects: by invocation, a
/// connection's pipelined requests in the order they were sent.
pub fn sort(ops: &mut [Op]) {
    ops.sort_unstable_by_key(|o| (o.inv, o.session, o.seq));
}

/// A small, fast hasher (FxHash's multiply-rotate) for the memo table,
/// whose keys are machine words: SipHash costs more than the search step.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxSet<T> = HashSet<T, BuildHasherDefault<Fx>>;

const NONE: u32 = u32::MAX;

/// `Frame::cursor` of a frame not yet looked at.
const FRESH: usize = usize::MAX;

/// Configurations one trial of [`minimize`] may visit.
pub const MINIMIZE_BUDGET: u64 = 100_000;

/// One level of the depth-first search.
struct Frame {
    state: State,
    /// Next operation index to try from here ([`FRESH`] before the first).
    cursor: usize,
    /// Only the operation at `cursor` is tried (it changes nothing).
    only: bool,
    /// The first operation (by invocation) not yet placed.
    first: usize,
    /// Position in the by-reply order of the first operation not yet
    /// placed: its reply is the earliest still to place, and nothing
    /// invoked after it may come next.
    first_done: usize,
    /// The operation placed to get here (`usize::MAX` at a root).
    placed: usize,
    /// The states the operation last taken from `cursor` may leave, and
    /// how many of them have been tried: an operation whose reply does
    /// not say which of two things happened is a branch of its own.
    outs: Outcomes,
    tried: usize,
    /// That operation.
    taking: usize,
}

/// Searches the window `ops` (sorted with [`sort`]) from each of `starts`
/// against the model of `spec`. With `first_only` it stops at the first
/// linearization; otherwise it enumerates every end state. `budget`
/// bounds the configurations visited.
pub fn check(ops: &[Op], starts: &[State], budget: u64, first_only: bool, spec: Spec) -> Verdict {
    let n = ops.len();
    // Each operation's predecessor on its connection, if any. An operation
    // without a reply constrains nothing after it: it may be placed last.
    let mut prev = vec![NONE; n];
    let mut last: HashMap<u32, u32> = HashMap::new();
    for (i, o) in ops.iter().enumerate() {
        if o.is_maybe() {
            continue;
        }
        if let Some(&p) = last.get(&o.session) {
            prev[i] = p;
        }
        last.insert(o.session, i as u32);
    }
    let mut by_done: Vec<u32> = (0..n as u32).collect();
    by_done.sort_by_key(|&i| ops[i as usize].done);
    let words = n.div_ceil(64).max(1);
    let mut bits = vec![0u64; words];
    let is_set = |bits: &[u64], i: usize| bits[i / 64] >> (i % 64) & 1 == 1;
    let mut seen: FxSet<(Box<[u64]>, State)> = FxSet::default();
    let mut ends: Vec<State> = Vec::new();
    let mut visited = 0u64;
    for &start in starts {
        if !seen.insert((bits.clone().into(), start)) {
            continue;
        }
        let mut placed_count = 0;
        let mut stack = vec![Frame {
            state: start,
            cursor: FRESH,
            only: false,
            first: 0,
            first_done: 0,
            placed: usize::MAX,
            outs: Outcomes::NONE,
            tried: 0,
            taking: usize::MAX,
        }];
        while let Some(top) = stack.last_mut() {
            if placed_count == n {
                if !ends.contains(&top.state) {
                    ends.push(top.state);
                }
                if first_only {
                    return Verdict::Linearizable(ends);
                }
            }
            let limit = by_done
                .get(top.first_done)
                .map_or(NEVER, |&j| ops[j as usize].done);
            let may_go = |bits: &[u64], i: usize| {
                !is_set(bits, i) && (prev[i] == NONE || is_set(bits, prev[i] as usize))
            };
            // On first visiting a frame: an operation that may come next,
            // whose reply says it wrote nothing (a read, a failed add or
            // cas, a NOT_FOUND) and which leaves the state exactly as it
            // is, goes next, and nothing else is tried here. Any
            // linearization that places it later can place it here
            // instead: whatever may come next was invoked before every
            // reply still to place, so moving it earlier breaks no
            // real-time order, and wherever such a reply fits, the
            // operation changes nothing. Not so one without a reply: it
            // fits anywhere, and what it does depends on where. Nor a
            // write that merely looks like nothing from here: an append
            // from "anything" leaves "anything", but placed first it
            // would be lost before the write that it followed.
            if top.cursor == FRESH {
                top.cursor = top.first;
                let mut i = top.first;
                while i < n && ops[i].inv <= limit {
                    if may_go(&bits, i)
                        && writes_nothing(ops[i].call, ops[i].ret)
                        && step(top.state, ops[i].call, ops[i].ret, spec).only(top.state)
                    {
                        top.cursor = i;
                        top.only = true;
                        break;
                    }
                    i += 1;
                }
            }
            // The next (operation, state it leaves) to try from here: the
            // rest of the last operation's outcomes, then the next
            // operation that may come next.
            if top.tried == top.outs.as_slice().len() {
                let mut next = None;
                let mut i = top.cursor;
                while i < n && ops[i].inv <= limit && !(top.only && i > top.cursor) {
                    if may_go(&bits, i) {
                        next = Some(i);
                        break;
                    }
                    i += 1;
                }
                let Some(i) = next else {
                    let done = stack.pop().expect("a frame");
                    if done.placed != usize::MAX {
                        bits[done.placed / 64] &= !(1 << (done.placed % 64));
                        placed_count -= 1;
                    }
                    continue;
                };
                top.cursor = if top.only { n } else { i + 1 };
                top.outs = step(top.state, ops[i].call, ops[i].ret, spec);
                top.tried = 0;
                top.taking = i;
                continue;
            }
            let i = top.taking;
            let state = top.outs.as_slice()[top.tried];
            top.tried += 1;
            bits[i / 64] |= 1 << (i % 64);
            visited += 1;
            if visited > budget {
                return Verdict::GaveUp;
            }
            if !seen.insert((bits.clone().into(), state)) {
                bits[i / 64] &= !(1 << (i % 64));
                continue;
            }
            placed_count += 1;
            let (mut first, mut first_done) = (top.first, top.first_done);
            while first < n && is_set(&bits, first) {
                first += 1;
            }
            while first_done < n && is_set(&bits, by_done[first_done] as usize) {
                first_done += 1;
            }
            stack.push(Frame {
                state,
                cursor: FRESH,
                only: false,
                first,
                first_done,
                placed: i,
                outs: Outcomes::NONE,
                tried: 0,
                taking: usize::MAX,
            });
        }
    }
    if ends.is_empty() {
        Verdict::Violation
    } else {
        Verdict::Linearizable(ends)
    }
}

/// Shrinks a window that cannot be linearized from `starts` (see the
/// module docs); returns the operations kept, sorted, and the start states
/// they fail from. When the window fails from [`State::UNKNOWN`] too, the
/// contradiction is among its own operations and the shrinking starts from
/// there, so it keeps no operation whose only part is to set the stage.
pub fn minimize(ops: &[Op], starts: &[State], budget: u64, spec: Spec) -> (Vec<Op>, Vec<State>) {
    // Each trial must search a failing window to its end: a trial over
    // this budget keeps its operation, so the result is only less small.
    let budget = budget.min(MINIMIZE_BUDGET);
    let mut keep = ops.to_vec();
    sort(&mut keep);
    let starts = if check(&keep, &[State::UNKNOWN], budget, true, spec) == Verdict::Violation {
        vec![State::UNKNOWN]
    } else {
        starts.to_vec()
    };
    loop {
        let before = keep.len();
        let mut i = keep.len();
        while i > 0 {
            i -= 1;
            let mut trial = keep.clone();
            trial[i].ret = Ret::Unknown;
            trial[i].done = NEVER;
            if check(&trial, &starts, budget, true, spec) == Verdict::Violation {
                keep.remove(i);
            }
        }
        if keep.len() == before {
            return (keep, starts);
        }
    }
}

/// Splits `ops` (sorted) at the points where nothing is in flight: every
/// operation of a part returned before the next part's first began. An
/// operation without a reply keeps everything after it in its part.
pub fn split_quiet(ops: &[Op]) -> Vec<std::ops::Range<usize>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut reach = 0;
    for (i, o) in ops.iter().enumerate() {
        if i > start && reach < o.inv {
            parts.push(start..i);
            start = i;
        }
        reach = reach.max(o.done);
    }
    if start < ops.len() {
        parts.push(start..ops.len());
    }
    parts
}

/// Every distinct call kind in `ops`, for reports.
pub fn kinds(ops: &[Op]) -> Vec<&'static str> {
    let mut k: Vec<&'static str> = ops.iter().map(|o| o.call.name()).collect();
    k.sort_unstable();
    k.dedup();
    k
}

#[cfg(test)]
mod tests {
    use super::super::model::{Data, Seen, digest};
    use super::*;

    fn op(session: u32, inv: u64, done: u64, call: Call, ret: Ret) -> Op {
        Op {
            session,
            seq: inv as u32,
            call,
            ret,
            inv,
            done,
        }
    }

    fn hit(uid: u64) -> Ret {
        Ret::Hit(
            Seen::Blob {
                base: uid,
                appends: 0,
                digest: digest(0, uid),
            },
            None,
        )
    }

    fn set(uid: u64) -> Call {
        Call::Set(Data::Blob(uid))
    }

    fn verdict(mut ops: Vec<Op>) -> Verdict {
        sort(&mut ops);
        check(&ops, &[State::ABSENT], 1_000_000, false, Spec::Strict)
    }

    #[test]
    fn a_read_after_a_write_returned_sees_it() {
        // set 1 [0, 10], set 2 [20, 30], get [40, 50] -> 1: stale.
        let stale = vec![
            op(1, 0, 10, set(1), Ret::Stored),
            op(2, 20, 30, set(2), Ret::Stored),
            op(3, 40, 50, Call::Get, hit(1)),
        ];
        assert_eq!(verdict(stale.clone()), Verdict::Violation);
        // The same read, begun before set 2 returned, may see either.
        let mut racing = stale.clone();
        racing[2].inv = 25;
        let Verdict::Linearizable(ends) = verdict(racing) else {
            panic!()
        };
        assert_eq!(ends.len(), 1, "{ends:?}");
        // Two racing sets and nothing after: either may be last.
        let Verdict::Linearizable(ends) = verdict(vec![
            op(1, 0, 10, set(1), Ret::Stored),
            op(2, 5, 15, set(2), Ret::Stored),
        ]) else {
            panic!()
        };
        assert_eq!(ends.len(), 2, "{ends:?}");
        // The smallest history of the stale read is all three operations.
        let mut sorted = stale.clone();
        sort(&mut sorted);
        let (small, starts) = minimize(&sorted, &[State::ABSENT], 1_000_000, Spec::Strict);
        assert_eq!((small, starts), (sorted, vec![State::UNKNOWN]));
        // A read that only contradicts the state the window starts in is
        // shrunk from that state.
        let only = vec![op(3, 40, 50, Call::Get, hit(1))];
        assert_eq!(verdict(only.clone()), Verdict::Violation);
        assert_eq!(
            minimize(&only, &[State::ABSENT], 1000, Spec::Strict),
            (only, vec![State::ABSENT])
        );
    }

    #[test]
    fn a_connections_pipelined_requests_keep_their_order() {
        // One connection pipelines set 1 then get, both in flight at once:
        // the get must see set 1 (or a later write), never the miss before.
        let mut ops = vec![
            op(1, 0, 10, set(1), Ret::Stored),
            op(1, 0, 10, Call::Get, Ret::Miss),
        ];
        ops[1].seq = 1;
        assert_eq!(verdict(ops.clone()), Verdict::Violation);
        // From two connections the same times allow the miss.
        ops[1].session = 2;
        assert!(matches!(verdict(ops), Verdict::Linearizable(_)));
    }

    #[test]
    fn a_maybe_applied_write_may_or_may_not_have_happened() {
        let base = vec![
            op(1, 0, 10, set(1), Ret::Stored),
            op(2, 20, NEVER, set(2), Ret::Unknown),
        ];
        for seen in [1, 2] {
            let mut ops = base.clone();
            ops.push(op(3, 30, 40, Call::Get, hit(seen)));
            ops.push(op(3, 50, 60, Call::Get, hit(seen)));
            assert!(matches!(verdict(ops), Verdict::Linearizable(_)), "{seen}");
        }
        // But once seen, it cannot be unseen.
        let mut ops = base.clone();
        ops.push(op(3, 30, 40, Call::Get, hit(2)));
        ops.push(op(3, 50, 60, Call::Get, hit(1)));
        assert_eq!(verdict(ops), Verdict::Violation);
        // A write begun before the maybe-applied one may not follow it.
        let ops = vec![
            op(2, 0, NEVER, set(2), Ret::Unknown),
            op(1, 20, 30, set(1), Ret::Stored),
            op(3, 40, 50, Call::Get, hit(2)),
        ];
        assert!(matches!(verdict(ops), Verdict::Linearizable(_)));
    }

    #[test]
    fn two_cas_with_one_token_cannot_both_win_and_the_history_shrinks_to_them() {
        let gets = |uid, cas| {
            Ret::Hit(
                Seen::Blob {
                    base: uid,
                    appends: 0,
                    digest: digest(0, uid),
                },
                Some(cas),
            )
        };
        let mut ops = vec![
            op(1, 0, 10, set(1), Ret::Stored),
            op(2, 20, 30, Call::Gets, gets(1, 7)),
            op(3, 21, 31, Call::Gets, gets(1, 7)),
            op(4, 22, 29, Call::Get, hit(1)),
            op(2, 40, 50, Call::Cas(Data::Blob(2), 7), Ret::Stored),
            op(3, 41, 51, Call::Cas(Data::Blob(3), 7), Ret::Stored),
        ];
        assert_eq!(verdict(ops.clone()), Verdict::Violation);
        sort(&mut ops);
        let (small, _) = minimize(&ops, &[State::ABSENT], 1_000_000, Spec::Strict);
        let calls: Vec<String> = small
            .iter()
            .map(|o| format!("{} {}", o.call, o.ret))
            .collect();
        // What is left is the contradiction itself.
        assert_eq!(
            calls,
            ["cas c0#2 token 7 STORED", "cas c0#3 token 7 STORED"],
            "{small:#?}"
        );
        // One winner and one loser is fine.
        ops[5].ret = Ret::Exists;
        assert!(matches!(verdict(ops), Verdict::Linearizable(_)));
    }

    /// The class of a false violation seen in CI: from "anything" (the
    /// window after an inconclusive one) an `append` that the model cannot
    /// follow leaves "anything", as a no-op would; the no-branching rule
    /// must not take it for one. Here both appends were placed first, the
    /// `gets` then bound its unique for good, and the `cas` that lost to
    /// the second append could not lose.
    #[test]
    fn an_append_from_anything_is_a_write_not_a_no_op() {
        let gets = |cas| {
            Ret::Hit(
                Seen::Blob {
                    base: 5,
                    appends: 1,
                    digest: digest(digest(0, 5), 6),
                },
                Some(cas),
            )
        };
        // append 6, gets -> 5.6 cas 9, append 7, cas token 9 -> EXISTS:
        // linearizable as written.
        let ops = vec![
            op(1, 0, 5, Call::Append(6), Ret::Stored),
            op(2, 10, 50, Call::Gets, gets(9)),
            op(3, 20, 200, Call::Append(7), Ret::Stored),
            op(2, 60, 150, Call::Cas(Data::Blob(8), 9), Ret::Exists),
        ];
        let mut sorted = ops.clone();
        sort(&mut sorted);
        let v = check(&sorted, &[State::UNKNOWN], 1000, false, Spec::Strict);
        assert!(matches!(v, Verdict::Linearizable(_)), "{v:?}");
        // Without the second append nothing can have beaten the cas.
        let alone: Vec<Op> = sorted.iter().copied().filter(|o| o.session != 3).collect();
        assert_eq!(
            check(&alone, &[State::UNKNOWN], 1000, false, Spec::Strict),
            Verdict::Violation
        );
    }

    /// memcached's incr racing a gets (see `Spec::Memcached`): the gets
    /// reports the old value with the unique of the incr's new version, and
    /// a cas with it wins over the incremented value, undoing the incr.
    /// Not linearizable, so strict rejects it; the memcached model
    /// accepts exactly this, and not a cas that wins after a set instead.
    #[test]
    fn memcached_incr_racing_a_gets_passes_only_its_own_model() {
        let mut ops = vec![
            op(1, 0, 10, Call::Set(Data::Num(100)), Ret::Stored),
            op(2, 20, 60, Call::Gets, Ret::Hit(Seen::Num(100), Some(7))),
            op(3, 30, 50, Call::Incr(1), Ret::Number(101)),
            op(2, 70, 80, Call::Cas(Data::Num(5), 7), Ret::Stored),
            op(4, 90, 100, Call::Get, Ret::Hit(Seen::Num(5), None)),
        ];
        sort(&mut ops);
        let run = |ops: &[Op], spec| check(ops, &[State::ABSENT], 1000, false, spec);
        assert_eq!(run(&ops, Spec::Strict), Verdict::Violation);
        assert!(matches!(
            run(&ops, Spec::Memcached),
            Verdict::Linearizable(_)
        ));
        // A set in the incr's place writes nothing into the old item.
        let mut set = ops.clone();
        set[2].call = Call::Set(Data::Num(200));
        set[2].ret = Ret::Stored;
        assert_eq!(run(&set, Spec::Memcached), Verdict::Violation);
    }

    #[test]
    fn windows_split_where_nothing_is_in_flight() {
        let ops = vec![
            op(1, 0, 10, set(1), Ret::Stored),
            op(2, 5, 20, Call::Get, Ret::Miss),
            op(1, 21, 30, set(2), Ret::Stored),
            op(2, 31, NEVER, set(3), Ret::Unknown),
            op(1, 40, 50, Call::Get, hit(3)),
        ];
        assert_eq!(split_quiet(&ops), vec![0..2, 2..3, 3..5]);
    }

    #[test]
    fn a_search_past_its_budget_gives_up() {
        // Many racing sets: more configurations than a budget of 100.
        let ops: Vec<Op> = (0..12)
            .map(|i| op(i, i as u64, 1000, set(i as u64 + 1), Ret::Stored))
            .collect();
        let mut sorted = ops.clone();
        sort(&mut sorted);
        assert_eq!(
            check(&sorted, &[State::ABSENT], 100, false, Spec::Strict),
            Verdict::GaveUp
        );
        let Verdict::Linearizable(ends) =
            check(&sorted, &[State::ABSENT], 1 << 20, false, Spec::Strict)
        else {
            panic!()
        };
        assert_eq!(ends.len(), 12);
    }
}

#[cfg(test)]
mod by_construction {
    use super::super::model::{Data, Seen, Val, digest};
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// What a read of `s` returns.
    fn read(s: State, gets: bool) -> Ret {
        let cas = match s.cas {
            super::super::model::Cas::Known(c) => Some(c),
            _ => None,
        };
        match s.val {
            Val::Absent => Ret::Miss,
            Val::Blob {
                base,
                appends,
                digest,
            } => Ret::Hit(
                Seen::Blob {
                    base,
                    appends,
                    digest,
                },
                cas.filter(|_| gets),
            ),
            Val::Num(n) => Ret::Hit(Seen::Num(n), cas.filter(|_| gets)),
            Val::Unknown => unreachable!(),
        }
    }

    /// Histories made by running operations one at a time, each inside an
    /// interval around the moment it ran, must pass.
    #[test]
    fn histories_linearizable_by_construction_pass() {
        let _ = digest;
        let mut total = 0;
        for seed in 0..30_000u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let sessions = rng.gen_range(1..5u32);
            let mut free_at = vec![0u64; sessions as usize];
            let mut seq = vec![0u32; sessions as usize];
            let mut s = State::ABSENT;
            let mut next_cas = 100;
            let mut seen: Vec<u64> = Vec::new();
            let mut uid = 1;
            let mut ops = Vec::new();
            let mut t: u64 = 0;
            for _ in 0..rng.gen_range(1..24) {
                let session = rng.gen_range(0..sessions);
                if free_at[session as usize] == u64::MAX {
                    continue;
                }
                // The moment it runs: after every earlier one, and after
                // its session's previous operation returned.
                t = (t + rng.gen_range(1..8)).max(free_at[session as usize]);
                let inv = free_at[session as usize].max(t.saturating_sub(rng.gen_range(0..40)));
                uid += 1;
                let call = match rng.gen_range(0..7) {
                    0 => Call::Get,
                    1 => Call::Gets,
                    2 => Call::Set(Data::Blob(uid)),
                    3 => Call::Add(Data::Blob(uid)),
                    4 => Call::Append(uid),
                    5 => Call::Delete,
                    // A token is one a gets was answered with (or none).
                    _ => Call::Cas(
                        Data::Blob(uid),
                        seen.get(rng.gen_range(0..seen.len() + 1))
                            .copied()
                            .unwrap_or(99),
                    ),
                };
                let maybe = rng.gen_range(0..20) == 0;
                // Run it: the reply the model gives, binding any unique.
                let ret = match call {
                    Call::Get => read(s, false),
                    Call::Gets => {
                        // The server has a unique either way; only an
                        // answered gets lets a client hold it.
                        if s.val != Val::Absent && s.cas == super::super::model::Cas::Fresh {
                            next_cas += 1;
                            s.cas = super::super::model::Cas::Known(next_cas);
                        }
                        if let (false, super::super::model::Cas::Known(c)) = (maybe, s.cas) {
                            seen.push(c);
                        }
                        read(s, true)
                    }
                    _ => {
                        let mut found = None;
                        for ret in [
                            Ret::Stored,
                            Ret::NotStored,
                            Ret::Exists,
                            Ret::NotFound,
                            Ret::Deleted,
                        ] {
                            if let Some(&next) = step(s, call, ret, Spec::Strict).as_slice().first()
                            {
                                found = Some((ret, next));
                                break;
                            }
                        }
                        let (ret, next) = found.expect("some reply fits");
                        s = next;
                        ret
                    }
                };
                let done = t + rng.gen_range(0..40);
                free_at[session as usize] = done + 1;
                seq[session as usize] += 1;
                ops.push(Op {
                    session,
                    seq: seq[session as usize],
                    call,
                    ret: if maybe { Ret::Unknown } else { ret },
                    inv,
                    done: if maybe { NEVER } else { done },
                });
                if maybe {
                    // Its session is gone.
                    free_at[session as usize] = u64::MAX;
                }
            }
            sort(&mut ops);
            // From where it began, and from "anything" (the window after
            // an inconclusive one), which allows at least as much.
            for start in [State::ABSENT, State::UNKNOWN] {
                let v = check(&ops, &[start], 1 << 22, false, Spec::Strict);
                assert!(
                    matches!(v, Verdict::Linearizable(_)),
                    "seed {seed} from {start}: {v:?}\n{ops:#?}"
                );
            }
            total += ops.len();
        }
        assert!(total > 200_000, "{total} operations");
    }
}

#[cfg(test)]
mod found_windows {
    //! Windows reported as violations by real runs that were not.
    use super::super::model::{Data, Seen, digest};
    use super::*;

    fn uid(text: &str) -> u64 {
        let (c, n) = text.trim_start_matches('c').split_once('#').unwrap();
        (c.parse::<u64>().unwrap() << 32) | n.parse::<u64>().unwrap()
    }

    /// A window as the report prints it, one operation a line
    /// (`session S  INV .. DONE us  CALL -> REPLY`), except that a blob
    /// read names its appends (`base.append.append`), which the report
    /// only counts.
    fn parse(text: &str) -> Vec<Op> {
        let mut seqs: HashMap<u32, u32> = HashMap::new();
        let mut ops = Vec::new();
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let w: Vec<&str> = l.split_whitespace().collect();
            let session: u32 = w[1].parse().unwrap();
            let ns = |s: &str| (s.parse::<f64>().unwrap() * 1000.0).round() as u64;
            let (call, ret) = l.split_once(" us  ").unwrap().1.split_once(" -> ").unwrap();
            let c: Vec<&str> = call.split(' ').collect();
            let call = match c[0] {
                "get" => Call::Get,
                "gets" => Call::Gets,
                "set" => Call::Set(Data::Blob(uid(c[1]))),
                "add" => Call::Add(Data::Blob(uid(c[1]))),
                "cas" => Call::Cas(Data::Blob(uid(c[1])), c[3].parse().unwrap()),
                "append" => Call::Append(uid(c[1])),
                "delete" => Call::Delete,
                other => panic!("{other}"),
            };
            let ret = match ret {
                "miss" => Ret::Miss,
                "STORED" => Ret::Stored,
                "NOT_STORED" => Ret::NotStored,
                "EXISTS" => Ret::Exists,
                "NOT_FOUND" => Ret::NotFound,
                "DELETED" => Ret::Deleted,
                hit => {
                    let (val, cas) = match hit.split_once(" cas ") {
                        Some((v, c)) => (v, Some(c.parse().unwrap())),
                        None => (hit, None),
                    };
                    let uids: Vec<u64> = val.split('.').map(uid).collect();
                    let d = uids[1..]
                        .iter()
                        .fold(digest(0, uids[0]), |d, &u| digest(d, u));
                    let seen = Seen::Blob {
                        base: uids[0],
                        appends: uids.len() as u32 - 1,
                        digest: d,
                    };
                    Ret::Hit(seen, cas)
                }
            };
            let seq = seqs.entry(session).or_default();
            *seq += 1;
            ops.push(Op {
                session,
                seq: *seq,
                call,
                ret,
                inv: ns(w[2]),
                done: ns(w[4]),
            });
        }
        sort(&mut ops);
        ops
    }

    /// Work-stealing, 3 unpinned threads, 64 connections, 8 keys: the
    /// window after an inconclusive one (so from "anything") was reported
    /// as `get -> miss` then `gets -> c33#1495 + 1 appends`. It is
    /// linearizable (add c33#1495, append c25#1496, the gets, ...): the
    /// no-branching rule had placed `append c25#1496` first, where from
    /// "anything" it seemed to change nothing, and lost it.
    #[test]
    fn a_window_from_anything_with_appends() {
        let ops = parse(
            "
    session     0         0.0 ..      316.1 us  get -> miss
    session    47        48.2 ..      399.5 us  append c62#1476 -> NOT_STORED
    session    52        82.5 ..      543.1 us  get -> miss
    session     8        91.7 ..      652.1 us  add c33#1495 -> STORED
    session    56       108.0 ..      955.3 us  gets -> c33#1495.c25#1496 cas 56580
    session     9       125.3 ..      514.6 us  gets -> miss
    session    60       155.2 ..      739.1 us  append c25#1496 -> STORED
    session    24       177.4 ..      800.7 us  gets -> c33#1495.c25#1496 cas 56580
    session    59       351.0 ..     1475.6 us  append c24#1430 -> STORED
    session    22       367.1 ..     1696.5 us  gets -> c21#1402.c24#1430 cas 56598
    session    23       383.1 ..     1835.0 us  get -> c21#1402.c24#1430
    session    58       467.0 ..     1874.2 us  gets -> miss
    session    17       500.7 ..     1051.4 us  gets -> c33#1495.c25#1496 cas 56580
    session    57       618.1 ..     1482.5 us  get -> c21#1402
    session    24       802.0 ..     1358.7 us  cas c8#1468 token 56580 -> EXISTS
    session     4       905.9 ..      993.7 us  get -> c33#1495.c25#1496
    session    56       956.7 ..     1210.4 us  cas c21#1402 token 56580 -> STORED
    session    27      1003.6 ..     2190.9 us  append c11#1451 -> NOT_STORED
    session    17      1052.4 ..     2434.2 us  cas c42#1484 token 56580 -> EXISTS
    session    15      1079.2 ..     2518.2 us  gets -> c12#1413 cas 56607
    session    28      1218.6 ..     2218.6 us  add c12#1413 -> STORED
    session    12      1351.3 ..     1871.9 us  delete -> DELETED
    session    23      1836.2 ..     2956.3 us  add c7#1484 -> NOT_STORED
    session    19      1882.0 ..     2996.3 us  get -> c12#1413
    session     9      1941.7 ..     3378.6 us  get -> c42#1485
    session    10      2390.0 ..     3751.7 us  delete -> NOT_FOUND
    session    43      2391.5 ..     2875.3 us  gets -> c12#1413 cas 56607
    session    20      2415.7 ..     3031.7 us  append c45#1410 -> STORED
    session    17      2434.8 ..     3173.5 us  set c42#1485 -> STORED
    session    50      2598.1 ..     3309.2 us  append c15#1465 -> STORED
    session    22      2739.5 ..     3412.1 us  delete -> DELETED
    session    35      2781.8 ..     3626.6 us  append c50#1430 -> NOT_STORED
    session    53      2963.6 ..     3807.7 us  append c18#1438 -> NOT_STORED
    session    19      2996.9 ..     3850.9 us  gets -> miss
    session    18      3204.3 ..     3686.1 us  get -> miss
    session    51      3264.9 ..     3711.7 us  get -> miss
",
        );
        assert_eq!(ops.len(), 36);
        for start in [State::ABSENT, State::UNKNOWN] {
            let v = check(&ops, &[start], 1 << 22, false, Spec::Strict);
            assert!(matches!(v, Verdict::Linearizable(_)), "from {start}: {v:?}");
        }
    }
}
