//! A connection's side of the hop: its plan run in waves, the replies
//! collected and stitched back in request order, within its output
//! budget.
//!
//! ```text
//!  plan:  get a(B)  set x(A)  get b(B)  get y(A)  get c(C) ...
//!  wave:  a -> outbox[B]   x runs here   b -> outbox[B]   y runs here ...
//!         (the mailbox task sends each owner one batch per turn)
//!  collect: wait until B and C answered
//!  stitch:  a  x  b  y  c ...  into the output, in plan order
//! ```
//!
//! **Waves.** Local operations run at once; forwarded ones go to the
//! core's outbox. A wave ends early where memcached's order needs it:
//! a forwarded write waits for the next wave while an earlier write of
//! the same wave went to another owner (two owners' queues are not
//! ordered with each other), so a connection's writes become visible in
//! the order it sent them. With two threads no wave ever ends for this.
//!
//! **The output budget.** A wave may produce at most the budget left,
//! split evenly between the cores (`share`): the local operations stop
//! the wave once theirs is spent, and each owner gets its share as the
//! requester's allowance ([`super::Batch::execute`]) and leaves the rest
//! of the connection's operations for later once it is spent. Leaving
//! operations for later must not let a later write overtake them, so
//! each requester also carries a floor ([`Requester::defer_from`]): its
//! operations that precede, in the connection's order, a write made
//! elsewhere in the same wave must run now. A wave therefore ends before
//! a write that would put more reads below a floor than their owner's
//! share could answer, judged by the largest reply each owner publishes.
//! If replies grew on an owner after that (a race with another client's
//! set), such a read is refused as memcached refuses a get it has no
//! memory for, so the bound holds whatever happens. Operations left for
//! later, and everything after them, are planned again in the next wave;
//! the ones already run keep their replies. The connection writes once
//! its output reaches the budget and calls [`Hop::run`] again for the
//! rest, and by then every reply it holds is copied out of the shared
//! batches, so a client that does not read pins no other connection's
//! replies.
//!
//! **One wake fewer.** A plain (not TLS) connection whose plan runs to its
//! end in a wave that goes whole to one other core, with nothing of its
//! own to send before it (pipeline 1: a get and its `END`, a set, a meta
//! command), lets that owner write the replies to its socket itself
//! ([`super::batch::Direct`]): the client is answered as soon as the owner
//! has run the operations, without the owner waking this core to do it.
//! The batch still comes back, but quietly when every requester in it was
//! answered so (it is taken the next time this core runs for any reason,
//! at the latest at its next tick), and this core does not spin for it.
//! Whatever the socket did not take at once, this core writes after the
//! owner's bytes, skipping those. The connection waits for the batch before
//! it reads again, so nothing it sends can overtake the owner's write.
//!
//! **Every key here.** A connection accepted on its core's own port
//! (`--port-per-core`) owns every key it sends, whatever the key's hash
//! ([`Hop::owning_every_key`]): each op is local, so nothing is forwarded
//! and a wave never waits.
//!
//! [`Requester::defer_from`]: super::Requester::defer_from

use super::batch::{Batch, Direct, Referenced, Requester};
use super::exchange::{Exchange, LocalShards};
use super::ticket::Ticket;
use super::waiting::Waiting;
use crate::server::plan::{Ran, Step};
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::Poll;

/// Forwarded replies at least this long are written from the batch they
/// came back in (a vectored write) rather than copied into the output;
/// shorter ones cost less to copy than an iovec costs the kernel.
const REFERENCE_MIN: usize = 1024;

/// Staging buffers of a connection that grew past this are given back.
const STAGING_KEEP: usize = 256 * 1024;

/// What a value reply adds, at most, to the chunk its item fills: the
/// `VALUE` line (a key of up to 250 bytes, flags, length, CAS) or a meta
/// reply's flags.
const REPLY_OVERHEAD: usize = 512;

/// An owner not sent anything in the current wave.
const NO_SLOT: u32 = u32::MAX;

/// Where the reply to one step of the plan stands.
#[derive(Clone, Copy, Debug)]
enum Segment {
    /// Not run yet: past the last wave, or left for later by its owner.
    Pending,
    /// Its reply is in `staging`.
    Local { start: usize, end: usize },
    /// Forwarded: its reply is in the batch filed in `slots[slot]`, at
    /// `index` (once that batch is back and the op ran).
    Remote { slot: u32, index: u32 },
}

/// A batch this connection's operations rode in, once back.
struct Slot {
    batch: Option<Rc<Batch>>,
    /// The connection's entry among the batch's requesters.
    requester: usize,
}

/// One owner's part in the current wave.
#[derive(Clone, Copy)]
struct Share {
    /// Its place in `slots`, or [`NO_SLOT`].
    slot: u32,
    /// Operations sent to it.
    pushed: u32,
    /// Of those, ones whose reply can carry a value.
    reads: u32,
    /// Of those, how many precede a write made elsewhere in the wave.
    floor: u32,
}

const NO_SHARE: Share = Share {
    slot: NO_SLOT,
    pushed: 0,
    reads: 0,
    floor: 0,
};

/// A connection's side of the hop; see the module docs.
pub(crate) struct Hop {
    ticket: Ticket,
    waiting: Rc<Waiting>,
    /// Steps of the current run answered straight into the output before
    /// `segments[0]`.
    first: usize,
    /// One per step from `first` on that was run or is to run again.
    segments: Vec<Segment>,
    /// Segments already stitched into the output.
    head: usize,
    /// Replies that wait for earlier ones.
    staging: Vec<u8>,
    /// Returned batches, by slot.
    slots: Vec<Slot>,
    /// Each owner's part in the current wave.
    shares: Vec<Share>,
    /// Bytes of replies run and not yet stitched.
    held: usize,
    /// Large forwarded replies to be written from their batches.
    referenced: Vec<Referenced>,
    /// Their bytes.
    referenced_bytes: usize,
    /// A forwarded or local op failed in a way that closes the connection.
    failed: bool,
    /// The connection's socket, when another core may write to it
    /// directly (plaintext).
    socket: Option<RawFd>,
    /// Bytes at the head of what is stitched next that the owner already
    /// wrote to the socket.
    skip: usize,
    /// Every key this connection sends is this core's (it came in on the
    /// core's own port), not its hash's owner's.
    every_key_here: bool,
}

impl Hop {
    /// A connection's hop on the core of `exchange`; `socket` is its socket
    /// if owners may write replies to it directly.
    pub fn new(exchange: &Exchange, socket: Option<RawFd>) -> Hop {
        let (ticket, waiting) = exchange.join();
        Hop {
            ticket,
            waiting,
            first: 0,
            segments: Vec::new(),
            head: 0,
            staging: Vec::new(),
            slots: Vec::new(),
            shares: vec![NO_SHARE; exchange.threads()],
            held: 0,
            referenced: Vec::new(),
            referenced_bytes: 0,
            failed: false,
            socket,
            skip: 0,
            every_key_here: false,
        }
    }

    /// This connection's keys all belong to this core, whatever their
    /// hash: it came in on the core's own port (`--port-per-core`).
    pub fn owning_every_key(mut self) -> Hop {
        self.every_key_here = true;
        self
    }

    /// Runs `steps` (see [`crate::server::plan::Dispatch::run`]): waves
    /// until every step is answered or the output reaches `budget`.
    pub async fn run(
        &mut self,
        exchange: &Exchange,
        shards: &impl LocalShards,
        steps: &[Step],
        base: &[u8],
        out: &mut Vec<u8>,
        budget: usize,
    ) -> Ran {
        // Messages for this core are taken in its turn, not only when it
        // is about to park: a busy core may not park for a long time.
        if exchange.inbox_pending() {
            exchange.wake_mail();
        }
        self.failed = false;
        self.first = 0;
        self.stitch(out);
        while self.answered() < steps.len() {
            let written = out.len() + self.referenced_bytes;
            let used = written + self.held;
            if used >= budget && written > 0 {
                break;
            }
            let share = budget.saturating_sub(used) / exchange.threads();
            let (owners, direct) = self.wave(exchange, shards, steps, base, out, share);
            if owners > 0 {
                self.collect(exchange, shards, owners, direct).await;
            }
            self.stitch(out);
        }
        let answered = self.answered();
        if answered < steps.len() {
            shards.stats().output_budget_waits.add(1);
            self.keep_for_later(exchange);
        } else {
            self.finish(exchange);
        }
        Ran {
            answered,
            close: self.failed,
        }
    }

    /// Steps answered so far in this run.
    fn answered(&self) -> usize {
        self.first + self.head
    }

    /// Plans one wave from the first unanswered step: runs local ops, puts
    /// forwarded ones in the outbox and signs each owner's batch. Returns
    /// how many owners were sent work, and whether the one owner may write
    /// the replies to the socket itself.
    fn wave(
        &mut self,
        exchange: &Exchange,
        shards: &impl LocalShards,
        steps: &[Step],
        base: &[u8],
        out: &mut Vec<u8>,
        share: usize,
    ) -> (usize, bool) {
        let router = shards.router();
        let me = exchange.index();
        let now = shards.now();
        self.shares.fill(NO_SHARE);
        if self.head == self.segments.len() {
            // Everything run so far is in the output: start afresh.
            self.first += self.head;
            self.segments.clear();
            self.head = 0;
        }
        let from = self.answered();
        let every_key_here = self.every_key_here;
        let owner_of = |op: &crate::server::op::Op| match every_key_here {
            true => me,
            false => router.owner(router.shard(op.hash)),
        };
        let direct = self.direct_to(&steps[from..], out, |op| owner_of(op), me);
        shards.prefetch(steps[from..].iter().filter_map(|step| match step {
            Step::Op(op) if owner_of(op) == me => Some(op),
            _ => None,
        }));
        let first_slot = self.slots.len() as u32;
        let (mut forwarded, mut taken, mut local_bytes) = (0, 0, 0);
        // The owner of the wave's forwarded writes, if any.
        let mut writes_to: Option<usize> = None;
        let mut wrote_here = false;
        for (i, step) in steps.iter().enumerate().skip(from) {
            let known = i - self.first < self.segments.len();
            if known && !matches!(self.segments[i - self.first], Segment::Pending) {
                // Run in an earlier wave, its reply kept.
                continue;
            }
            let remote = match step {
                Step::Op(op) => Some((op, owner_of(op))).filter(|&(_, owner)| owner != me),
                _ => None,
            };
            if let Some((op, owner)) = remote {
                let write = op.is_write();
                if write
                    && (writes_to.is_some_and(|to| to != owner)
                        || self.risky(exchange, owner, share))
                {
                    break;
                }
                let mut filling = exchange.outbox().filling();
                let batch = &mut filling[owner];
                if taken > 0 && !batch.has_room(op) {
                    break;
                }
                if self.shares[owner].slot == NO_SLOT {
                    self.shares[owner].slot = self.slots.len() as u32;
                    self.slots.push(Slot {
                        batch: None,
                        requester: 0,
                    });
                }
                let index = batch.push(op, base);
                drop(filling);
                let part = &mut self.shares[owner];
                part.pushed += 1;
                part.reads += u32::from(op.returns_value());
                let segment = Segment::Remote {
                    slot: part.slot,
                    index,
                };
                self.place(i, segment);
                if write {
                    writes_to = Some(owner);
                    self.raise_floors(owner);
                }
                forwarded += 1;
                taken += 1;
                continue;
            }
            // Local: a keyed op of this core's shards, or a fixed reply.
            let write = matches!(step, Step::Op(op) if op.is_write());
            if taken > 0 && (local_bytes >= share || write && self.risky(exchange, me, share)) {
                break;
            }
            // Straight into the output while everything before it is there.
            let direct = self.segments.is_empty() && i == self.first;
            let target = if direct { &mut *out } else { &mut self.staging };
            let start = target.len();
            match step {
                Step::Op(op) => self.failed |= !shards.run_op(op, base, now, target),
                fixed => fixed.write_fixed(target),
            }
            let end = target.len();
            local_bytes += end - start;
            if direct {
                self.first += 1;
            } else {
                self.held += end - start;
                self.place(i, Segment::Local { start, end });
            }
            if write {
                wrote_here = true;
                self.raise_floors(me);
            }
            taken += 1;
        }
        if wrote_here {
            exchange.publish_largest_reply(shards);
        }
        let owners = self.slots.len() - first_slot as usize;
        // The wave must have taken every step for its owner to answer alone.
        let direct = direct.filter(|_| self.first + self.segments.len() == steps.len());
        if owners > 0 {
            self.sign(exchange, share, direct);
            shards.stats().forwarded_out.add(forwarded);
        }
        (owners, direct.is_some())
    }

    /// Whether the owner of `steps` may write their replies to the socket
    /// itself (see the module docs): a plain connection with nothing
    /// stitched or held, every op of `steps` owned by one other core, and
    /// at most one fixed text after them. Returns what it writes after
    /// the replies.
    fn direct_to(
        &self,
        steps: &[Step],
        out: &[u8],
        owner_of: impl Fn(&crate::server::op::Op) -> usize,
        me: usize,
    ) -> Option<Direct> {
        let socket = self.socket?;
        if !out.is_empty() || !self.referenced.is_empty() || !self.segments.is_empty() {
            return None;
        }
        let (suffix, ops) = match steps.split_last()? {
            (Step::Text(text), ops) => (*text, ops),
            _ => (&b""[..], steps),
        };
        let mut owner = None;
        for step in ops {
            let Step::Op(op) = step else {
                return None;
            };
            let this = owner_of(op);
            if this == me || owner.is_some_and(|o| o != this) {
                return None;
            }
            owner = Some(this);
        }
        owner.map(|_| Direct { socket, suffix })
    }

    /// Records `segment` for step `i`: a new one, or one run again.
    fn place(&mut self, i: usize, segment: Segment) {
        let at = i - self.first;
        if at == self.segments.len() {
            self.segments.push(segment);
        } else {
            self.segments[at] = segment;
        }
    }

    /// A write is about to be made at `dest`: every operation already sent
    /// to another owner in this wave precedes it, and must now run.
    fn raise_floors(&mut self, dest: usize) {
        for (owner, part) in self.shares.iter_mut().enumerate() {
            if owner != dest && part.slot != NO_SLOT {
                part.floor = part.pushed;
            }
        }
    }

    /// Whether a write at `dest` now could leave another owner more reads
    /// that must run than its share can answer, judged by the largest
    /// reply it publishes: then the write waits for the next wave.
    fn risky(&self, exchange: &Exchange, dest: usize, share: usize) -> bool {
        self.shares.iter().enumerate().any(|(owner, part)| {
            owner != dest
                && part.reads > 0
                && part.reads as usize * (exchange.largest_reply(owner) + REPLY_OVERHEAD) > share
        })
    }

    /// Signs each batch this wave used with the connection's ticket, the
    /// end of its operations, its share and floor. Its operations are
    /// contiguous in each batch, since nothing else runs on this core
    /// while a wave is planned.
    fn sign(&mut self, exchange: &Exchange, share: usize, direct: Option<Direct>) {
        let mut filling = exchange.outbox().filling();
        for (owner, part) in self.shares.iter().enumerate() {
            if part.slot == NO_SLOT {
                continue;
            }
            let batch = &mut filling[owner];
            let end = batch.ops.len() as u32;
            batch.requesters.push(Requester {
                ticket: self.ticket,
                end,
                allowance: share,
                defer_from: end - part.pushed + part.floor,
                ran_to: 0,
                direct,
                written: 0,
            });
        }
    }

    /// Waits until every owner sent work in this wave has answered, files
    /// their batches by slot, and marks the operations an owner left for
    /// later to run again.
    async fn collect(
        &mut self,
        exchange: &Exchange,
        shards: &impl LocalShards,
        owners: usize,
        direct: bool,
    ) {
        let stats = shards.stats();
        self.waiting.outstanding.set(owners);
        stats.forward_waiting.add(1);
        exchange.count_direct_wait(direct, 1);
        exchange.wake_mail();
        let waiting = &self.waiting;
        poll_fn(|cx| {
            if waiting.outstanding.get() == 0 {
                Poll::Ready(())
            } else {
                *waiting.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        stats.forward_waiting.sub(1);
        exchange.count_direct_wait(direct, -1);
        let first_slot = (self.slots.len() - owners) as u32;
        let (shares, slots) = (&self.shares, &mut self.slots);
        let (mut held, mut failed, mut deferred, mut written) = (0, false, false, 0);
        exchange.take_arrived(&self.waiting, |owner, batch, requester| {
            failed |= batch.failed;
            let (bytes, all_ran) = batch.requester_replies(requester);
            held += bytes;
            deferred |= !all_ran;
            written += batch.requesters[requester].written;
            slots[shares[owner].slot as usize] = Slot {
                batch: Some(batch),
                requester,
            };
        });
        self.held += held;
        self.failed |= failed;
        // What the owner wrote is the head of what this wave stitches.
        self.skip = written;
        if !deferred {
            return;
        }
        // Some owner left operations for later: they run again.
        for segment in &mut self.segments[self.head..] {
            let Segment::Remote { slot, index } = *segment else {
                continue;
            };
            if slot < first_slot {
                continue;
            }
            let Slot { batch, requester } = &self.slots[slot as usize];
            let batch = batch.as_ref().expect("every owner answered");
            if !batch.ran(*requester, index) {
                *segment = Segment::Pending;
            }
        }
    }

    /// Moves the replies at the head of the plan into the output, in
    /// order, up to the first step still to run.
    fn stitch(&mut self, out: &mut Vec<u8>) {
        while let Some(&segment) = self.segments.get(self.head) {
            match segment {
                Segment::Pending => break,
                Segment::Local { start, end } => {
                    let written = self.skip.min(end - start);
                    self.skip -= written;
                    out.extend_from_slice(&self.staging[start + written..end]);
                    self.held -= end - start;
                }
                Segment::Remote { slot, index } => {
                    let batch = self.slots[slot as usize].batch.as_ref();
                    let batch = batch.expect("a stitched reply came back");
                    let (start, end) = batch.reply_range(index);
                    self.held -= end - start;
                    // The owner wrote some (or all) of it already.
                    let written = self.skip.min(end - start);
                    self.skip -= written;
                    let start = start + written;
                    if end - start < REFERENCE_MIN {
                        out.extend_from_slice(&batch.replies[start..end]);
                    } else {
                        // A large reply is written from the batch it came
                        // back in: copying it would cost more than an iovec.
                        self.referenced_bytes += end - start;
                        match self.referenced.last_mut() {
                            Some(last)
                                if last.at == out.len()
                                    && last.end == start
                                    && Rc::ptr_eq(&last.batch, batch) =>
                            {
                                last.end = end;
                            }
                            _ => self.referenced.push(Referenced {
                                at: out.len(),
                                batch: batch.clone(),
                                start,
                                end,
                            }),
                        }
                    }
                }
            }
            self.head += 1;
        }
    }

    /// The run stops with steps unanswered: keep the replies already run
    /// for later steps, copied out of their batches so that no batch (with
    /// other connections' replies in it) is held while this connection
    /// waits on its socket, and drop the answered steps' segments so the
    /// next run's steps line up.
    fn keep_for_later(&mut self, exchange: &Exchange) {
        let mut kept = Vec::with_capacity(self.held);
        for segment in &mut self.segments[self.head..] {
            let reply = match *segment {
                Segment::Pending => continue,
                Segment::Local { start, end } => &self.staging[start..end],
                Segment::Remote { slot, index } => {
                    let batch = self.slots[slot as usize].batch.as_ref();
                    batch.expect("a run reply came back").reply(index)
                }
            };
            let start = kept.len();
            kept.extend_from_slice(reply);
            *segment = Segment::Local {
                start,
                end: kept.len(),
            };
        }
        self.staging = kept;
        for slot in self.slots.drain(..) {
            if let Some(batch) = slot.batch {
                exchange.recycle(batch);
            }
        }
        self.segments.drain(..self.head);
        self.head = 0;
        self.first = 0;
    }

    /// Every step is answered: let the batches go, empty the buffers.
    fn finish(&mut self, exchange: &Exchange) {
        debug_assert_eq!(self.held, 0, "every reply run was stitched");
        for slot in self.slots.drain(..) {
            if let Some(batch) = slot.batch {
                exchange.recycle(batch);
            }
        }
        self.segments.clear();
        self.head = 0;
        self.staging.clear();
        // A large plan (a multi-get of big values) must not pin its
        // memory to the connection.
        if self.staging.capacity() > STAGING_KEEP {
            self.staging = Vec::new();
        }
        if self.segments.capacity() * std::mem::size_of::<Segment>() > STAGING_KEEP {
            self.segments = Vec::new();
        }
    }

    /// The large forwarded replies of the output, in output order.
    pub fn referenced(&self) -> &[Referenced] {
        &self.referenced
    }

    /// The output has been written: let the referenced batches go.
    pub fn written(&mut self, exchange: &Exchange) {
        for reply in self.referenced.drain(..) {
            exchange.recycle(reply.batch);
        }
        self.referenced_bytes = 0;
    }

    /// The connection is gone: its slot is freed, replies still on their
    /// way to it are dropped.
    pub fn leave(&mut self, exchange: &Exchange) {
        self.written(exchange);
        for slot in self.slots.drain(..) {
            if let Some(batch) = slot.batch {
                exchange.recycle(batch);
            }
        }
        exchange.leave(self.ticket);
    }
}

#[cfg(test)]
impl Hop {
    /// How many steps of `steps` the first wave takes on `exchange`'s
    /// core, and to how many owners it forwards (unit tests of the wave
    /// rules).
    pub(crate) fn first_wave(
        &mut self,
        exchange: &Exchange,
        shards: &impl LocalShards,
        steps: &[Step],
        base: &[u8],
        share: usize,
    ) -> (usize, usize) {
        let (owners, _) = self.wave(exchange, shards, steps, base, &mut Vec::new(), share);
        let taken = self.first + self.segments.len();
        (taken, owners)
    }
}

#[cfg(test)]
#[path = "tests/hop.rs"]
mod tests;
