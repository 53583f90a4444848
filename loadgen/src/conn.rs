//! One connection's request loop: what it sends, how it matches replies
//! to requests, and what it counts.
//!
//! Each connection keeps up to `--pipeline` requests in flight. Requests are
//! appended to one reused write buffer and sent with one `write` per batch;
//! replies are parsed in place from a `BytesMut` and matched in order with a
//! ring of pending requests. Nothing on this path allocates.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::config::{Config, VerifyMode};
use crate::proto::{self, Kind, Parsed, Reply};
use crate::report::{ErrorCounts, Stats};
use crate::run::{Phase, ThreadState};
use crate::timer::{PreciseTimer, Schedule};
use crate::verify;
use crate::workload::{Generator, KeyDist};

/// A request awaiting its reply.
#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: Kind,
    key: u64,
    /// Send time (closed loop) or intended send time (open loop).
    sent: Instant,
    /// Gets: number of keys (their entries lead `Conn::gkeys`).
    n: u32,
}

/// One connection and its reused buffers.
pub(crate) struct Conn {
    id: usize,
    stream: TcpStream,
    wbuf: Vec<u8>,
    rbuf: BytesMut,
    kbuf: Vec<u8>,
    inflight: VecDeque<Pending>,
    /// Keys of in-flight gets with the version each must return in strict
    /// mode (0 = any), in send order.
    gkeys: VecDeque<(u64, u64)>,
    /// Scratch list of one multi-get's keys.
    mkeys: Vec<u64>,
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
    pub(crate) fn new(
        cfg: &Config,
        dist: KeyDist,
        id: usize,
        stream: TcpStream,
        pattern: Rc<[u8]>,
    ) -> Conn {
        let strict = cfg.verify == VerifyMode::Strict;
        let owned = cfg.keys.div_ceil(cfg.connections as u64) as usize;
        Conn {
            id,
            stream,
            wbuf: Vec::with_capacity(64 * 1024),
            rbuf: BytesMut::with_capacity(64 * 1024),
            kbuf: Vec::with_capacity(256),
            inflight: VecDeque::with_capacity(cfg.pipeline.max(32)),
            gkeys: VecDeque::with_capacity(cfg.pipeline.max(32) * cfg.multiget),
            mkeys: Vec::with_capacity(cfg.multiget),
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

    /// Appends one request to the write buffer and the pending ring.
    #[inline]
    fn push(&mut self, get: bool, key: u64, len: usize, sent: Instant) {
        let slot = (key / self.connections) as usize;
        if get {
            self.mkeys.clear();
            self.mkeys.push(key);
            for _ in 1..self.multiget {
                let k = self.generator.next_key();
                self.mkeys.push(k);
            }
            proto::write_multiget(&mut self.wbuf, &self.prefix, &self.mkeys);
            for &k in &self.mkeys {
                let slot = (k / self.connections) as usize;
                let expect = self.sent_versions.get(slot).copied().unwrap_or(0);
                self.gkeys.push_back((k, expect));
            }
            self.inflight.push_back(Pending {
                kind: Kind::Get,
                key,
                sent,
                n: self.mkeys.len() as u32,
            });
        } else {
            proto::write_set_header(&mut self.wbuf, &self.prefix, key, len);
            if self.verify == VerifyMode::Off {
                self.wbuf.extend_from_slice(&self.pattern[..len]);
            } else {
                self.version += 1;
                verify::encode(&mut self.wbuf, key, self.version, len);
                if let Some(v) = self.sent_versions.get_mut(slot) {
                    *v = self.version;
                }
            }
            proto::finish_set(&mut self.wbuf);
            self.inflight.push_back(Pending {
                kind: Kind::Set,
                key,
                sent,
                n: 1,
            });
        }
    }

    fn fail_io(&mut self, st: &RefCell<ThreadState>, what: &str, e: impl std::fmt::Display) {
        let mut s = st.borrow_mut();
        s.stats.errors.io += 1;
        s.stats.errors.total += 1;
        let id = self.id;
        s.stats.sample(|| format!("connection {id}: {what}: {e}"));
        self.alive = false;
    }

    /// Sends the write buffer in one call.
    async fn flush(&mut self, st: &RefCell<ThreadState>) {
        if self.wbuf.is_empty() {
            return;
        }
        if let Err(e) = self.stream.write_all(&self.wbuf).await {
            self.fail_io(st, "write", e);
        }
        self.wbuf.clear();
    }

    /// Reads once (bounded by `deadline`) and handles every complete reply.
    /// `window` = the measured interval; replies completing inside it are
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
        if self.rbuf.capacity() - self.rbuf.len() < 16 * 1024 {
            self.rbuf.reserve(64 * 1024);
        }
        let r = match deadline {
            Some(deadline) => tokio::select! {
                biased;
                r = self.stream.read_buf(&mut self.rbuf) => r,
                _ = deadline => return self.fail_io(st, "read", "no reply before the deadline"),
            },
            None => self.stream.read_buf(&mut self.rbuf).await,
        };
        match r {
            Err(e) => return self.fail_io(st, "read", e),
            Ok(0) => return self.fail_io(st, "read", "server closed the connection"),
            Ok(_) => {}
        }
        self.process(st, window);
    }

    /// Handles every complete reply in the read buffer.
    fn process(&mut self, st: &RefCell<ThreadState>, window: Option<(Instant, Instant)>) {
        let now = Instant::now();
        let record = window.is_some_and(|(a, b)| now >= a && now < b);
        let mut guard = st.borrow_mut();
        let ts = &mut *guard;
        let s = &mut ts.stats;
        let (id, verify) = (self.id, self.verify);
        let mut off = 0;
        while let Some(p) = self.inflight.front().copied() {
            let (reply, len) = match proto::parse_reply(&self.rbuf[off..], p.kind) {
                Parsed::Incomplete => break,
                Parsed::Done(r, len) => (r, len),
                Parsed::Mismatch => {
                    let snippet =
                        String::from_utf8_lossy(&self.rbuf[off..(off + 60).min(self.rbuf.len())])
                            .into_owned();
                    count(
                        s,
                        |e| &mut e.mismatch,
                        || {
                            format!(
                                "connection {id}: reply to {:?} does not parse: {snippet:?}",
                                p.kind
                            )
                        },
                    );
                    self.alive = false;
                    return;
                }
            };
            self.inflight.pop_front();
            off += len;
            let mut hits = 0;
            match reply {
                Reply::Stored => {}
                Reply::Failed(e) => {
                    s.errors.reply(e);
                    s.sample(|| {
                        format!("connection {id}: {e:?} for {:?} of key {}", p.kind, p.key)
                    });
                    // A failed get still owes its keys.
                    if p.kind == Kind::Get {
                        self.gkeys.drain(..p.n as usize);
                    }
                }
                Reply::Values(body) => {
                    // Values come back in request order, misses omitted.
                    let mut left = p.n as usize;
                    let mut stray = false;
                    'values: for (key, data) in proto::values(body) {
                        while left > 0 {
                            let (k, expect) = self.gkeys.pop_front().expect("get keys");
                            left -= 1;
                            self.kbuf.clear();
                            proto::push_key(&mut self.kbuf, &self.prefix, k);
                            if key == self.kbuf.as_slice() {
                                hits += 1;
                                check_hit(s, id, verify, k, expect, data);
                                continue 'values;
                            }
                            check_miss(s, id, verify, k, expect);
                        }
                        stray = true;
                        let got = String::from_utf8_lossy(key).into_owned();
                        count(
                            s,
                            |e| &mut e.mismatch,
                            || {
                                format!(
                                    "connection {id}: value for {got:?}, which was not requested (or out of order)"
                                )
                            },
                        );
                        break;
                    }
                    for _ in 0..left {
                        let (k, expect) = self.gkeys.pop_front().expect("get keys");
                        if !stray {
                            check_miss(s, id, verify, k, expect);
                        }
                    }
                }
            }
            let lat = now.saturating_duration_since(p.sent).as_nanos() as u64;
            if record {
                s.hist.saturating_record(lat.max(1));
                match p.kind {
                    Kind::Get => {
                        s.gets += 1;
                        s.get_keys += p.n as u64;
                        s.hits += hits;
                    }
                    Kind::Set => s.sets += 1,
                }
            }
            if let Some(h) = ts.prog_hist.as_mut() {
                h.saturating_record(lat.max(1));
                ts.prog_count += 1;
            }
        }
        self.rbuf.advance(off);
        if self.inflight.is_empty() && !self.rbuf.is_empty() {
            count(
                s,
                |e| &mut e.mismatch,
                || format!("connection {id}: unsolicited bytes from the server"),
            );
            self.alive = false;
        }
    }

    /// Stores every key `k` with `k % connections == id` once.
    pub(crate) async fn prefill(&mut self, st: &RefCell<ThreadState>) {
        let depth = self.depth.max(32);
        let mut key = self.id as u64;
        let deadline = tokio::time::sleep(Duration::from_secs(600));
        tokio::pin!(deadline);
        while self.alive && (key < self.keys || !self.inflight.is_empty()) {
            let now = Instant::now();
            while key < self.keys && self.inflight.len() < depth {
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
                    // slots bounds this connection's writes per request
                    // by 1/refill whatever the server does.
                    None if self.depth - self.inflight.len() >= self.refill => {
                        while self.inflight.len() < self.depth {
                            let op = self.generator.next_op();
                            self.push(op.get, op.key, op.len, now);
                        }
                    }
                    None => {}
                    Some(schedule) => {
                        while self.inflight.len() < self.depth
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
            if self.inflight.is_empty() {
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
                (Some(t), Some(due)) if self.inflight.len() < self.depth => {
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

/// Counts one error of the kind `field` selects and keeps a sample.
fn count(s: &mut Stats, field: fn(&mut ErrorCounts) -> &mut u64, what: impl FnOnce() -> String) {
    *field(&mut s.errors) += 1;
    s.errors.total += 1;
    s.sample(what);
}

/// Checks a hit for key `k`; `expect` is the strict-mode version (0 = any).
fn check_hit(s: &mut Stats, id: usize, verify: VerifyMode, k: u64, expect: u64, data: &[u8]) {
    if verify == VerifyMode::Off {
        return;
    }
    match verify::check(data, k) {
        Err(bad) => count(
            s,
            |e| &mut e.verify_failed,
            || format!("connection {id}: key {k}: value {bad:?}"),
        ),
        Ok(v) if verify == VerifyMode::Strict && expect != 0 && v != expect => count(
            s,
            |e| &mut e.strict_miss,
            || format!("connection {id}: key {k}: version {v:#x}, expected {expect:#x}"),
        ),
        Ok(_) => {}
    }
}

/// A miss is an error only in strict mode, for a key this connection stored.
fn check_miss(s: &mut Stats, id: usize, verify: VerifyMode, k: u64, expect: u64) {
    if verify == VerifyMode::Strict && expect != 0 {
        count(
            s,
            |e| &mut e.strict_miss,
            || format!("connection {id}: key {k} stored but missing"),
        );
    }
}
