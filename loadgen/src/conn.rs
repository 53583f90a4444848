//! One connection slot's request loop: what it sends, where, and what it
//! counts when the replies come back.
//!
//! A slot is what `--connections` counts. It has one socket ([`Link`]),
//! or with `--shard-aware` one per server core, or with `--servers` one
//! per server, and one request generator: the same requests are drawn
//! either way, and the route only decides which socket each goes out on
//! (the key's owner, or its server; a multi-get is split by owner into
//! one `get` per socket and counts as one request, answered when its last
//! part is). The slot keeps up to `--pipeline`
//! requests in flight over its sockets. Requests are appended to each
//! socket's reused write buffer and sent with one `write` per socket per
//! batch; replies are parsed in place and matched in order per socket.
//! With `--mix` a slot also sends deletes, appends and incrs; under
//! `--verify=strict` its [`Model`] says what each reply must be.
//! Nothing on this path allocates.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Sleep;

use crate::config::{Config, VerifyMode};
use crate::link::{Link, Matching, Pending, WHOLE};
use crate::model::{Expect, Model, Want};
use crate::proto::{self, Kind};
use crate::route::Route;
use crate::run::{Phase, ThreadState};
use crate::timer::{PreciseTimer, Schedule, latency_start};
use crate::tls::Stream;
use crate::verify;
use crate::workload::{Generator, KeyDist, KeySpace, Op, OpKind};

/// A multi-get split over several sockets, until its last part answers.
#[derive(Debug, Clone, Copy)]
struct Split {
    sent: Instant,
    /// Parts still to answer.
    remaining: u32,
    /// Keys over all parts.
    n: u32,
    hits: u64,
}

/// One connection slot and its reused buffers.
pub(crate) struct Conn {
    id: usize,
    links: Vec<Link>,
    /// Which link each key goes out on.
    route: Route,
    /// Requests in flight over all links (a split multi-get is one).
    outstanding: usize,
    /// When a reply last freed a slot of a full pipeline: an open-loop
    /// send due before then was held by the server.
    slot_freed: Instant,
    splits: Vec<Split>,
    free_splits: Vec<u32>,
    kbuf: Vec<u8>,
    /// Scratch: one multi-get's keys, their owners, one owner's share.
    mkeys: Vec<u64>,
    owners: Vec<usize>,
    group: Vec<u64>,
    /// Links that read something in the last wake, with the result.
    ready: Vec<(usize, std::io::Result<usize>)>,
    multiget: usize,
    depth: usize,
    /// Closed loop: send only when at least this many slots are free.
    refill: usize,
    generator: Generator,
    prefix: Vec<u8>,
    pattern: Rc<[u8]>,
    verify: VerifyMode,
    /// Which keys are counters.
    space: KeySpace,
    /// Last version (verified values) or number (counters) written.
    version: u64,
    /// Strict verify: what each owned key holds once the requests sent
    /// so far are done.
    model: Model,
    connections: u64,
    keys: u64,
    /// Open loop: requests per second over all connections.
    rate: Option<f64>,
    alive: bool,
}

impl Conn {
    /// Slot `id` over `streams`: one, or one per socket `route` picks
    /// among (in core or server order).
    pub(crate) fn new(
        cfg: &Config,
        dist: KeyDist,
        id: usize,
        streams: Vec<Stream>,
        route: Route,
        pattern: Rc<[u8]>,
    ) -> Conn {
        let strict = cfg.verify == VerifyMode::Strict;
        let owned = cfg.keys.div_ceil(cfg.connections as u64) as usize;
        let links: Vec<Link> = streams
            .into_iter()
            .map(|s| Link::new(s, cfg.pipeline, cfg.multiget))
            .collect();
        Conn {
            id,
            route,
            outstanding: 0,
            slot_freed: Instant::now(),
            splits: Vec::with_capacity(if links.len() > 1 { cfg.pipeline } else { 0 }),
            free_splits: Vec::new(),
            kbuf: Vec::with_capacity(256),
            mkeys: Vec::with_capacity(cfg.multiget),
            owners: Vec::with_capacity(cfg.multiget),
            group: Vec::with_capacity(cfg.multiget),
            ready: Vec::with_capacity(links.len()),
            links,
            multiget: cfg.multiget,
            depth: cfg.pipeline,
            refill: cfg.effective_refill(),
            generator: Generator::new(cfg, dist, id, strict),
            prefix: cfg.key_prefix.as_bytes().to_vec(),
            pattern,
            verify: cfg.verify,
            space: KeySpace::new(cfg),
            version: (id as u64) << 40,
            model: Model::new(strict, owned, cfg.connections as u64),
            connections: cfg.connections as u64,
            keys: cfg.keys,
            rate: cfg.rate,
            alive: true,
        }
    }

    /// The link that serves `key`: its owner's with `--shard-aware`, its
    /// server's with `--servers`.
    #[inline]
    fn link_of(&mut self, key: u64) -> usize {
        if let Route::One = self.route {
            return 0;
        }
        self.kbuf.clear();
        proto::push_key(&mut self.kbuf, &self.prefix, key);
        self.route.socket_of(&self.kbuf)
    }

    /// Appends one request to its link's write buffer and pending ring.
    #[inline]
    fn push(&mut self, mut op: Op, sent: Instant) {
        self.outstanding += 1;
        let want = self.model.plan(&mut op);
        let key = op.key;
        if op.kind == OpKind::Get {
            return self.push_gets(key, sent);
        }
        let l = self.link_of(key);
        let kind = match op.kind {
            OpKind::Get | OpKind::Set => {
                self.push_set(l, key, op.len);
                Kind::Set
            }
            OpKind::Delete => {
                proto::write_delete(&mut self.links[l].wbuf, &self.prefix, key);
                Kind::Delete
            }
            OpKind::Append => {
                let wbuf = &mut self.links[l].wbuf;
                proto::write_append_header(wbuf, &self.prefix, key, verify::SUFFIX_LEN);
                verify::push_suffix(wbuf, key);
                proto::finish_set(wbuf);
                Kind::Append
            }
            OpKind::Incr => {
                proto::write_incr(&mut self.links[l].wbuf, &self.prefix, key, op.delta);
                Kind::Incr
            }
        };
        self.links[l].inflight.push_back(Pending {
            kind,
            key,
            sent,
            n: 1,
            part: WHOLE,
            want,
        });
    }

    /// Writes a `set` of `key` on link `l`: a number if it is a counter
    /// key, else a `len`-byte value (verified, or the fixed pattern).
    fn push_set(&mut self, l: usize, key: u64, len: usize) {
        self.version += 1;
        let wbuf = &mut self.links[l].wbuf;
        if self.space.is_counter(key) {
            proto::write_set_number(wbuf, &self.prefix, key, self.version);
            self.model.stored(key, Expect::Counter(self.version));
            return;
        }
        proto::write_set_header(wbuf, &self.prefix, key, len);
        if self.verify == VerifyMode::Off {
            wbuf.extend_from_slice(&self.pattern[..len]);
        } else {
            verify::encode(wbuf, key, self.version, len);
            self.model.stored(
                key,
                Expect::Value {
                    version: self.version,
                    appends: 0,
                },
            );
        }
        proto::finish_set(wbuf);
    }

    /// Writes a get of `key` and `--multiget - 1` more keys, split by
    /// owner with `--shard-aware`.
    fn push_gets(&mut self, key: u64, sent: Instant) {
        self.mkeys.clear();
        self.mkeys.push(key);
        for _ in 1..self.multiget {
            let k = self.generator.next_key();
            self.mkeys.push(k);
        }
        self.owners.clear();
        for i in 0..self.mkeys.len() {
            let owner = self.link_of(self.mkeys[i]);
            self.owners.push(owner);
        }
        let first = self.owners[0];
        if self.owners.iter().all(|&o| o == first) {
            self.push_get(first, sent, WHOLE);
            return;
        }
        // Keys of several owners: one `get` per owner, each with its keys
        // in request order, answered as one request when all are.
        let parts = (0..self.links.len())
            .filter(|l| self.owners.contains(l))
            .count() as u32;
        let split = Split {
            sent,
            remaining: parts,
            n: self.mkeys.len() as u32,
            hits: 0,
        };
        let part = match self.free_splits.pop() {
            Some(i) => {
                self.splits[i as usize] = split;
                i
            }
            None => {
                self.splits.push(split);
                self.splits.len() as u32 - 1
            }
        };
        for l in 0..self.links.len() {
            if self.owners.contains(&l) {
                self.push_get(l, sent, part);
            }
        }
    }

    /// Writes `get` for the keys of `mkeys` owned by link `l` (all of them
    /// for a whole request) on link `l`.
    fn push_get(&mut self, l: usize, sent: Instant, part: u32) {
        self.group.clear();
        for (i, &k) in self.mkeys.iter().enumerate() {
            if part == WHOLE || self.owners[i] == l {
                self.group.push(k);
            }
        }
        for &k in &self.group {
            let expect = self.model.expect(k);
            self.links[l].gkeys.push_back((k, expect));
        }
        let link = &mut self.links[l];
        proto::write_multiget(&mut link.wbuf, &self.prefix, &self.group);
        link.inflight.push_back(Pending {
            kind: Kind::Get,
            key: self.group[0],
            sent,
            n: self.group.len() as u32,
            part,
            want: Want::Any,
        });
    }

    fn fail_io(&mut self, st: &RefCell<ThreadState>, what: &str, e: impl std::fmt::Display) {
        let mut s = st.borrow_mut();
        s.stats.errors.io += 1;
        s.stats.errors.total += 1;
        let id = self.id;
        s.stats.sample(|| format!("connection {id}: {what}: {e}"));
        self.alive = false;
    }

    /// Sends each link's write buffer in one call.
    async fn flush(&mut self, st: &RefCell<ThreadState>) {
        for l in 0..self.links.len() {
            let link = &mut self.links[l];
            if link.wbuf.is_empty() {
                continue;
            }
            // The flush is free on a socket; TLS may hold the tail until it.
            let r = async {
                link.stream.write_all(&link.wbuf).await?;
                link.stream.flush().await
            }
            .await;
            link.wbuf.clear();
            if let Err(e) = r {
                return self.fail_io(st, "write", e);
            }
        }
    }

    /// Waits until a link that awaits replies has bytes, and reads every
    /// such link that has, once each: all a wake brought, in one go.
    /// tokio clears a socket's readiness after a short read, so a drained
    /// socket costs no second `read` before the next wake. Cancel-safe.
    async fn read_any(&mut self) {
        for link in &mut self.links {
            if link.rbuf.capacity() - link.rbuf.len() < 16 * 1024 {
                link.rbuf.reserve(64 * 1024);
            }
        }
        let (links, ready) = (&mut self.links, &mut self.ready);
        ready.clear();
        std::future::poll_fn(|cx| {
            for (i, link) in links.iter_mut().enumerate() {
                if link.inflight.is_empty() {
                    continue;
                }
                let read = std::pin::pin!(link.stream.read_buf(&mut link.rbuf));
                if let Poll::Ready(r) = read.poll(cx) {
                    ready.push((i, r));
                }
            }
            if ready.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Reads (bounded by `deadline`) and handles every complete reply.
    /// `window` = the measured interval; requests answered inside it are
    /// recorded.
    ///
    /// The deadline, if any, is one long-lived `Sleep` per connection:
    /// registering a fresh timer per read showed up in profiles. The
    /// measured run passes none and relies on a per-thread watchdog, which
    /// keeps timers off the hot path entirely.
    async fn read_replies(
        &mut self,
        st: &RefCell<ThreadState>,
        window: Option<(Instant, Instant)>,
        deadline: Option<Pin<&mut Sleep>>,
    ) {
        match deadline {
            Some(deadline) => tokio::select! {
                biased;
                () = self.read_any() => {}
                _ = deadline => return self.fail_io(st, "read", "no reply before the deadline"),
            },
            None => self.read_any().await,
        }
        for k in 0..self.ready.len() {
            let l = self.ready[k].0;
            match &self.ready[k].1 {
                Err(e) => {
                    let e = e.to_string();
                    return self.fail_io(st, "read", e);
                }
                Ok(0) => return self.fail_io(st, "read", "server closed the connection"),
                Ok(_) => self.process(l, st, window),
            }
        }
    }

    /// Handles every complete reply in link `l`'s read buffer.
    fn process(&mut self, l: usize, st: &RefCell<ThreadState>, window: Option<(Instant, Instant)>) {
        let now = Instant::now();
        let record = window.is_some_and(|(a, b)| now >= a && now < b);
        let was_full = self.outstanding >= self.depth;
        let mut guard = st.borrow_mut();
        let m = Matching {
            id: self.id,
            verify: self.verify,
            space: self.space,
            prefix: &self.prefix,
            kbuf: &mut self.kbuf,
        };
        let (splits, free, outstanding) = (
            &mut self.splits,
            &mut self.free_splits,
            &mut self.outstanding,
        );
        let alive = self.links[l].process(&mut guard, m, |ts, p, hits| {
            let (sent, n, hits) = if p.part == WHOLE {
                (p.sent, p.n, hits)
            } else {
                let s = &mut splits[p.part as usize];
                s.remaining -= 1;
                s.hits += hits;
                if s.remaining > 0 {
                    return;
                }
                free.push(p.part);
                (s.sent, s.n, s.hits)
            };
            *outstanding -= 1;
            let lat = now.saturating_duration_since(sent).as_nanos() as u64;
            if record {
                let s = &mut ts.stats;
                s.hist.saturating_record(lat.max(1));
                match p.kind {
                    Kind::Get => {
                        s.gets += 1;
                        s.get_keys += n as u64;
                        s.hits += hits;
                    }
                    Kind::Set => s.sets += 1,
                    Kind::Delete => {
                        s.ops.deletes += 1;
                        s.ops.deleted += hits;
                    }
                    Kind::Append => {
                        s.ops.appends += 1;
                        s.ops.appended += hits;
                    }
                    Kind::Incr => {
                        s.ops.incrs += 1;
                        s.ops.incremented += hits;
                    }
                }
            }
            if let Some(h) = ts.prog_hist.as_mut() {
                h.saturating_record(lat.max(1));
                ts.prog_count += 1;
            }
        });
        self.alive &= alive;
        if was_full && self.outstanding < self.depth {
            self.slot_freed = now;
        }
    }

    /// Stores every key `k` with `k % connections == id` once.
    pub(crate) async fn prefill(&mut self, st: &RefCell<ThreadState>) {
        let depth = self.depth.max(32);
        let mut key = self.id as u64;
        let deadline = tokio::time::sleep(Duration::from_secs(600));
        tokio::pin!(deadline);
        while self.alive && (key < self.keys || self.outstanding > 0) {
            let now = Instant::now();
            while key < self.keys && self.outstanding < depth {
                let len = self.generator.next_len();
                let op = Op {
                    kind: OpKind::Set,
                    key,
                    len,
                    delta: 0,
                };
                self.push(op, now);
                key += self.connections;
            }
            self.flush(st).await;
            if self.alive {
                self.read_replies(st, None, Some(deadline.as_mut())).await;
            }
        }
    }

    /// The measured run: warmup, measurement, drain.
    pub(crate) async fn drive(&mut self, p: Phase, st: &RefCell<ThreadState>) {
        let window = Some((p.measure, p.end));
        let mut schedule = self
            .rate
            .map(|rate| Schedule::new(rate, self.connections as usize, self.id, p.start, p.end));
        let timer = match schedule {
            None => None,
            Some(_) => match PreciseTimer::new() {
                Ok(t) => Some(t),
                Err(e) => return self.fail_io(st, "timerfd", e),
            },
        };
        while self.alive {
            let now = Instant::now();
            // The send after the ones made now, armed before they are
            // written: once a request is out nothing is left to do but
            // wait, so a reply that is back in microseconds is not
            // queued behind timer bookkeeping. Nothing is sent after the
            // end, and a full pipeline waits for replies, not the timer.
            let room = if now < p.end {
                self.depth - self.outstanding
            } else {
                0
            };
            let next_due = schedule
                .as_ref()
                .and_then(|s| s.next_after(now, room))
                .filter(|_| now < p.end);
            if room > 0
                && let (Some(t), Some(due)) = (&timer, next_due)
                && let Err(e) = t.arm(due)
            {
                return self.fail_io(st, "timerfd", e);
            }
            if now < p.end {
                match &mut schedule {
                    // Against a server that answers each request with
                    // its own send, refilling per reply would send one or
                    // two requests per write, and the server would answer
                    // those in as many sends: waiting for `refill` free
                    // slots bounds this slot's writes per request by
                    // 1/refill whatever the server does.
                    None if self.depth - self.outstanding >= self.refill => {
                        while self.outstanding < self.depth {
                            let op = self.generator.next_op();
                            self.push(op, now);
                        }
                    }
                    None => {}
                    Some(schedule) => {
                        while self.outstanding < self.depth
                            && let Some(due) = schedule.take_due(now)
                        {
                            let sent = Instant::now();
                            let (start, held) = latency_start(due, sent, self.slot_freed);
                            if due >= p.measure {
                                let s = &mut st.borrow_mut().stats;
                                s.sends += 1;
                                s.held += u64::from(held);
                                let late = sent.saturating_duration_since(due).as_nanos() as u64;
                                s.lateness.saturating_record(late);
                            }
                            let op = self.generator.next_op();
                            self.push(op, start);
                        }
                    }
                }
            }
            self.flush(st).await;
            if !self.alive {
                break;
            }
            let timer = timer.as_ref().filter(|_| next_due.is_some());
            if self.outstanding == 0 {
                let Some(t) = timer else {
                    break;
                };
                if let Err(e) = t.fired().await {
                    return self.fail_io(st, "timerfd", e);
                }
                continue;
            }
            match timer {
                Some(t) if self.outstanding < self.depth => {
                    tokio::select! {
                        biased;
                        _ = self.read_replies(st, window, None) => {}
                        r = t.fired() => if let Err(e) = r {
                            return self.fail_io(st, "timerfd", e);
                        },
                    }
                }
                _ => self.read_replies(st, window, None).await,
            }
        }
    }
}
