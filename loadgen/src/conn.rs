//! One connection slot's request loop: what it sends, where, and what it
//! counts when the replies come back.
//!
//! A slot is what `--connections` counts. It has one socket ([`Link`]),
//! or with `--shard-aware` one per server core, and one request generator:
//! the same requests are drawn either way, and `--shard-aware` only
//! decides which socket each goes out on (the key's owner; a multi-get is
//! split by owner into one `get` per core and counts as one request,
//! answered when its last part is). The slot keeps up to `--pipeline`
//! requests in flight over its sockets. Requests are appended to each
//! socket's reused write buffer and sent with one `write` per socket per
//! batch; replies are parsed in place and matched in order per socket.
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
use crate::proto::{self, Kind};
use crate::run::{Phase, ThreadState};
use crate::shard::ShardMap;
use crate::timer::{PreciseTimer, Schedule};
use crate::tls::Stream;
use crate::verify;
use crate::workload::{Generator, KeyDist};

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
    /// `--shard-aware`: the server's rule; link `i` is served by core `i`.
    map: Option<ShardMap>,
    /// Requests in flight over all links (a split multi-get is one).
    outstanding: usize,
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
    version: u64,
    /// Strict verify: latest version sent per owned key (index key / conns).
    sent_versions: Vec<u64>,
    connections: u64,
    keys: u64,
    /// Open loop: requests per second over all connections.
    rate: Option<f64>,
    alive: bool,
}

impl Conn {
    /// Slot `id` over `streams`: one, or one per core of `map` in core order.
    pub(crate) fn new(
        cfg: &Config,
        dist: KeyDist,
        id: usize,
        streams: Vec<Stream>,
        map: Option<ShardMap>,
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
            map,
            outstanding: 0,
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
            version: (id as u64) << 40,
            sent_versions: if strict { vec![0; owned] } else { Vec::new() },
            connections: cfg.connections as u64,
            keys: cfg.keys,
            rate: cfg.rate,
            alive: true,
        }
    }

    /// The link that serves `key`: its owner's with `--shard-aware`.
    #[inline]
    fn link_of(&mut self, key: u64) -> usize {
        match &self.map {
            None => 0,
            Some(map) => {
                self.kbuf.clear();
                proto::push_key(&mut self.kbuf, &self.prefix, key);
                map.owner(&self.kbuf)
            }
        }
    }

    /// Strict verify: the version a get of `k` must return (0 = any).
    fn expected(&self, k: u64) -> u64 {
        let slot = (k / self.connections) as usize;
        self.sent_versions.get(slot).copied().unwrap_or(0)
    }

    /// Appends one request to its link's write buffer and pending ring.
    #[inline]
    fn push(&mut self, get: bool, key: u64, len: usize, sent: Instant) {
        self.outstanding += 1;
        if !get {
            let l = self.link_of(key);
            let link = &mut self.links[l];
            proto::write_set_header(&mut link.wbuf, &self.prefix, key, len);
            if self.verify == VerifyMode::Off {
                link.wbuf.extend_from_slice(&self.pattern[..len]);
            } else {
                self.version += 1;
                verify::encode(&mut link.wbuf, key, self.version, len);
                let slot = (key / self.connections) as usize;
                if let Some(v) = self.sent_versions.get_mut(slot) {
                    *v = self.version;
                }
            }
            proto::finish_set(&mut link.wbuf);
            link.inflight.push_back(Pending {
                kind: Kind::Set,
                key,
                sent,
                n: 1,
                part: WHOLE,
            });
            return;
        }
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
            let expect = self.expected(k);
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
        let mut guard = st.borrow_mut();
        let m = Matching {
            id: self.id,
            verify: self.verify,
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
                }
            }
            if let Some(h) = ts.prog_hist.as_mut() {
                h.saturating_record(lat.max(1));
                ts.prog_count += 1;
            }
        });
        self.alive &= alive;
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
                self.push(false, key, len, now);
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
                            self.push(op.get, op.key, op.len, now);
                        }
                    }
                    None => {}
                    Some(schedule) => {
                        while self.outstanding < self.depth
                            && let Some(due) = schedule.take_due(now)
                        {
                            let op = self.generator.next_op();
                            self.push(op.get, op.key, op.len, due);
                        }
                    }
                }
            }
            self.flush(st).await;
            if !self.alive {
                break;
            }
            let next_due = schedule.as_ref().and_then(Schedule::next);
            if self.outstanding == 0 {
                let Some(due) = next_due.filter(|_| now < p.end) else {
                    break;
                };
                if let Some(t) = &timer
                    && let Err(e) = t.sleep_until(due).await
                {
                    return self.fail_io(st, "timerfd", e);
                }
                continue;
            }
            match (&timer, next_due) {
                (Some(t), Some(due)) if self.outstanding < self.depth => {
                    tokio::select! {
                        biased;
                        _ = self.read_replies(st, window, None) => {}
                        _ = t.sleep_until(due) => {}
                    }
                }
                _ => self.read_replies(st, window, None).await,
            }
        }
    }
}
