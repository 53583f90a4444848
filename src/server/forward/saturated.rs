//! The cost of a forward message between two cores that never sleep: the
//! real outbox, mailbox, batch and wait list, driven by two busy threads
//! (`benches/mailbox.rs`, docs/experiments.md "The per-message cost on busy
//! cores").
//!
//! The cost model's 6.5 µs per message was fitted on cells where cores
//! park and are woken between messages, so it holds the parks' and wakes'
//! share too. Here neither core ever parks: the origin keeps a window of
//! batches in flight to the owner, the owner polls its inbox without
//! pause, and each side's CPU time (`CLOCK_THREAD_CPUTIME_ID`) over a run
//! of messages of a given shape gives the cost of a message and of each
//! request in it, on both sides together. Nothing here is on the server's
//! path; it exists so a benchmark can reach the crate-private types.

use super::batch::Requester;
use super::exchange::{Exchange, LocalShards};
use super::mailbox::mailboxes;
use super::waiting::Waiting;
use crate::clock::Clock;
use crate::protocol::StoreKind;
use crate::server::op::{Op, OpKind, Span, Wire};
use crate::server::{Control, Router, ShardReport};
use crate::stats::ThreadStats;
use crate::storage::{Millis, Shard, ShardConfig};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The shape of the messages a run sends.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Requests (gets of 32-byte values, all hits) in each message.
    pub requests: usize,
    /// Connections they come from (each message carries `requests` split
    /// evenly over this many requesters, as a turn of that many
    /// connections would send them).
    pub requesters: usize,
    /// Messages the origin keeps in flight (at least 1).
    pub window: usize,
}

/// What a run cost.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    /// Messages sent and answered.
    pub messages: u64,
    /// Requests they carried.
    pub requests: u64,
    /// Bytes of replies that came back.
    pub reply_bytes: u64,
    /// The origin's time in calls that did work: filling a batch, a mail
    /// run that sent or took a message, filing replies. Polls of an empty
    /// inbox are left out: on a saturated core that time goes to other
    /// work, so what is left is what a message costs a busy core.
    pub origin_busy: Duration,
    /// The owner's time in mail runs that took a message.
    pub owner_busy: Duration,
    /// CPU time of the origin's thread, busy or polling.
    pub origin_cpu: Duration,
    /// CPU time of the owner's thread, busy or polling.
    pub owner_cpu: Duration,
    /// Wall time of the run.
    pub wall: Duration,
}

impl Cost {
    /// Both sides' busy time per message, in microseconds.
    pub fn busy_us_per_message(&self) -> f64 {
        (self.origin_busy + self.owner_busy).as_secs_f64() * 1e6 / self.messages as f64
    }
}

/// A core's one shard, run as the server runs it (without panic
/// containment, which costs nothing on this path).
struct BusyCore {
    router: Router,
    stats: ThreadStats,
    clock: Clock,
    shard: RefCell<Shard>,
}

impl BusyCore {
    fn new() -> BusyCore {
        BusyCore {
            router: Router::new(2, 2),
            stats: ThreadStats::default(),
            clock: Clock::new(),
            shard: RefCell::new(Shard::new(&ShardConfig::for_tests(64 << 20))),
        }
    }
}

impl LocalShards for BusyCore {
    fn router(&self) -> &Router {
        &self.router
    }
    fn now(&self) -> Millis {
        self.clock.now()
    }
    fn stats(&self) -> &ThreadStats {
        &self.stats
    }
    fn run_op(&self, op: &Op, base: &[u8], now: Millis, out: &mut Vec<u8>) -> bool {
        op.execute(base, &mut self.shard.borrow_mut(), &self.clock, now, out);
        true
    }
    fn prefetch<'o>(&self, _: impl Iterator<Item = &'o Op> + Clone) {}
    fn control(&self, _: Control) -> Vec<ShardReport> {
        Vec::new()
    }
    fn largest_reply(&self) -> usize {
        self.shard.borrow().largest_item()
    }
}

impl BusyCore {
    /// Stores a 32-byte value under every key [`owned_gets`] names.
    fn fill(&self) -> (Vec<u8>, Vec<Op>) {
        let (base, gets) = owned_gets(&self.router, KEYS);
        let mut bytes = base.clone();
        let value = bytes.len() as u32;
        bytes.extend_from_slice(&[b'v'; 32]);
        let mut out = Vec::new();
        for get in &gets {
            let set = Op {
                kind: OpKind::Store(StoreKind::Set),
                data: Span {
                    start: value,
                    len: 32,
                },
                ..*get
            };
            self.run_op(&set, &bytes, self.now(), &mut out);
        }
        (base, gets)
    }
}

/// Keys a run asks for.
const KEYS: usize = 1024;

/// Runs `count` gets on this thread against a shard holding the keys a
/// forwarded run asks for, as its owner would run them but with no
/// message around them; returns how many ran (for CPU per local get).
pub fn local_gets(count: usize) -> usize {
    let core = BusyCore::new();
    let (base, gets) = core.fill();
    let mut out = Vec::with_capacity(64 * 1024);
    for i in 0..count {
        out.clear();
        core.run_op(&gets[i % gets.len()], &base, core.now(), &mut out);
        std::hint::black_box(&out);
    }
    count
}

/// Keys core 1 owns, and a get of each (their bytes in the returned base).
fn owned_gets(router: &Router, count: usize) -> (Vec<u8>, Vec<Op>) {
    let keys: Vec<String> = (0..)
        .map(|i| format!("key:{i:08}"))
        .filter(|k| router.owner(router.shard(Router::hash(k.as_bytes()))) == 1)
        .take(count)
        .collect();
    let base: Vec<u8> = keys.concat().into_bytes();
    let mut at = 0;
    let gets = keys
        .iter()
        .map(|k| {
            let key = &base[at..at + k.len()];
            at += k.len();
            let kind = OpKind::Get {
                cas: false,
                touch: false,
            };
            Op::new(kind, &base, key, Wire::Classic)
        })
        .collect();
    (base, gets)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is always there on Linux");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Sends `messages` messages of `shape` from core 0 to core 1 and back,
/// neither core ever parking, and measures both threads' CPU.
pub fn message_cost(shape: Shape, messages: u64) -> Cost {
    let Shape {
        requests,
        requesters,
        window,
    } = shape;
    assert!(requests >= requesters && requesters >= 1 && window >= 1);
    let (boxes, mut inboxes) = mailboxes(2, 4096);
    let owner_inbox = inboxes.pop().expect("two inboxes");
    let origin_inbox = inboxes.pop().expect("two inboxes");
    let owner_boxes = boxes.clone();
    let owner = std::thread::spawn(move || {
        let core = BusyCore::new();
        let exchange = Exchange::new(1, owner_boxes, owner_inbox);
        core.fill();
        let start = thread_cpu();
        let (mut answered, mut busy) = (0, Duration::ZERO);
        while answered < messages {
            let began = Instant::now();
            let taken = exchange.mail(&core).taken as u64;
            if taken > 0 {
                busy += began.elapsed();
                answered += taken;
            }
        }
        (busy, thread_cpu() - start)
    });
    let core = BusyCore::new();
    let exchange = Exchange::new(0, boxes, origin_inbox);
    let (base, gets) = owned_gets(&core.router, KEYS);
    let connections: Vec<(super::waiting::Ticket, Rc<Waiting>)> =
        (0..window * requesters).map(|_| exchange.join()).collect();
    let mut free: Vec<usize> = (0..window).collect();
    let mut in_flight: Vec<usize> = Vec::with_capacity(window);
    let (mut sent, mut answered, mut next_key) = (0u64, 0u64, 0usize);
    let mut reply_bytes = 0u64;
    let started = Instant::now();
    let start = thread_cpu();
    let mut busy = Duration::ZERO;
    while answered < messages {
        let began = Instant::now();
        let mut worked = false;
        if sent < messages
            && let Some(slot) = free.pop()
        {
            let mut filling = exchange.outbox().filling();
            let batch = &mut filling[1];
            for r in 0..requesters {
                let (ticket, waiting) = &connections[slot * requesters + r];
                let share = requests / requesters + usize::from(r < requests % requesters);
                for _ in 0..share {
                    batch.push(&gets[next_key % gets.len()], &base);
                    next_key += 1;
                }
                let end = batch.ops.len() as u32;
                batch.requesters.push(Requester {
                    ticket: *ticket,
                    end,
                    allowance: usize::MAX,
                    defer_from: end,
                    ..Requester::default()
                });
                waiting.outstanding.set(1);
            }
            drop(filling);
            in_flight.push(slot);
            sent += 1;
            worked = true;
        }
        // Sends what was just filled and takes what came back.
        worked |= exchange.mail(&core).taken > 0;
        in_flight.retain(|&slot| {
            let (_, first) = &connections[slot * requesters];
            if first.outstanding.get() > 0 {
                return true;
            }
            for r in 0..requesters {
                let (_, waiting) = &connections[slot * requesters + r];
                exchange.take_arrived(waiting, |_, batch, requester| {
                    reply_bytes += batch.requester_replies(requester).0 as u64;
                    exchange.recycle(batch)
                });
            }
            free.push(slot);
            answered += 1;
            false
        });
        if worked {
            busy += began.elapsed();
        }
    }
    let origin_cpu = thread_cpu() - start;
    let wall = started.elapsed();
    let (owner_busy, owner_cpu) = owner.join().expect("the owner thread finishes");
    Cost {
        messages,
        requests: messages * requests as u64,
        reply_bytes,
        origin_busy: busy,
        owner_busy,
        origin_cpu,
        owner_cpu,
        wall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message comes back with every reply, a hit of the value the
    /// owner stored, whatever its shape.
    #[test]
    fn every_request_is_answered_with_its_value() {
        // `VALUE key:NNNNNNNN 0 32\r\n` + 32 bytes + `\r\n`.
        let one = "VALUE key:00000000 0 32\r\n".len() + 32 + 2;
        for (requests, requesters, window) in [(1, 1, 1), (8, 2, 4), (16, 16, 8)] {
            let shape = Shape {
                requests,
                requesters,
                window,
            };
            let cost = message_cost(shape, 200);
            assert_eq!(cost.messages, 200);
            assert_eq!(cost.reply_bytes, 200 * (requests * one) as u64);
        }
    }
}
