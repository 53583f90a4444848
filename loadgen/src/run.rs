//! The load run: client threads, connections, phases and the request loop.
//!
//! [`run`] connects every connection up front (so a wrong address fails
//! fast), then starts `--threads` OS threads, each pinned to its CPU and
//! running a single-threaded tokio runtime that drives its share of the
//! connections (connection `i` belongs to thread `i % threads`). Phases are
//! synchronised with a barrier: prefill, then one shared clock for warmup
//! and measurement, then a drain of in-flight requests.
//!
//! Each connection keeps up to `--pipeline` requests in flight. Requests are
//! appended to one reused write buffer and sent with one `write` per batch;
//! replies are parsed in place from a `BytesMut` and matched in order with a
//! ring of pending requests. Nothing on this path allocates.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::config::{Config, VerifyMode};
use crate::proto::{self, Kind, Parsed, Reply};
use crate::report::{ErrorCounts, Report, Stats, new_histogram};
use crate::timer::{PreciseTimer, Schedule};
use crate::tls::{Stream, Tls};
use crate::verify;
use crate::workload::{Generator, KeyDist};

/// Shared clock of the load phases.
#[derive(Debug, Clone, Copy)]
struct Phase {
    /// Load (warmup) starts.
    start: Instant,
    /// Measurement starts.
    measure: Instant,
    /// No new requests after this.
    end: Instant,
}

/// Live progress shared by the threads: requests and latencies since the
/// last print.
struct Progress {
    inner: Mutex<(u64, Histogram<u64>)>,
}

/// State shared by the connections of one thread.
struct ThreadState {
    stats: Stats,
    prog_count: u64,
    prog_hist: Option<Histogram<u64>>,
}

/// Runs the workload described by `cfg` and returns the merged report.
///
/// Fails only when the run cannot start (bad config, connect failure);
/// server misbehaviour during the run is counted in [`Report::errors`].
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    cfg.validate()?;
    // Each thread builds its own copy; this one reports a bad CA file.
    cfg.tls_ca
        .as_ref()
        .map(|ca| Tls::new(ca, cfg.server))
        .transpose()?;
    let dist = KeyDist::new(cfg.keys, cfg.distribution);
    let mut per_thread: Vec<Vec<(usize, std::net::TcpStream)>> =
        (0..cfg.threads).map(|_| Vec::new()).collect();
    for i in 0..cfg.connections {
        let s = std::net::TcpStream::connect(cfg.server)
            .with_context(|| format!("connecting to {}", cfg.server))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        per_thread[i % cfg.threads].push((i, s));
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    for cpu in &cfg.cpus {
        if !cores.iter().any(|c| c.id == *cpu) {
            anyhow::bail!("--cpus: CPU {cpu} is not available to this process");
        }
    }
    let show_progress = cfg.progress && std::io::stdout().is_terminal();
    let progress = show_progress.then(|| {
        Arc::new(Progress {
            inner: Mutex::new((0, new_histogram())),
        })
    });
    let barrier = Arc::new(Barrier::new(cfg.threads + 1));
    let phase = Arc::new(OnceLock::<Phase>::new());
    let cfg_arc = Arc::new(cfg.clone());

    let mut handles = Vec::new();
    for (t, conns) in per_thread.into_iter().enumerate() {
        let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[t % cfg.cpus.len()]);
        let (barrier, phase, cfg, dist, progress) = (
            barrier.clone(),
            phase.clone(),
            cfg_arc.clone(),
            dist.clone(),
            progress.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || thread_main(cpu, conns, &cfg, dist, &barrier, &phase, progress))?;
        handles.push(h);
    }

    // Phase 1: everybody connected and runtimes built; prefill runs.
    barrier.wait();
    let prefill_start = Instant::now();
    barrier.wait();
    let prefill_s = if cfg.prefill {
        prefill_start.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let start = Instant::now();
    let p = Phase {
        start,
        measure: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
    };
    phase.set(p).expect("phase set once");
    barrier.wait();

    let mut last = Instant::now();
    let mut wait_until = |deadline: Instant| {
        while Instant::now() < deadline {
            let step = match &progress {
                Some(_) => (last + Duration::from_secs(1)).min(deadline),
                None => deadline,
            };
            std::thread::sleep(step.saturating_duration_since(Instant::now()));
            if let Some(pr) = &progress {
                let now = Instant::now();
                if now >= last + Duration::from_secs(1) {
                    let (n, p99) = {
                        let mut g = pr.inner.lock().unwrap();
                        let r = (g.0, g.1.value_at_quantile(0.99));
                        g.0 = 0;
                        g.1.reset();
                        r
                    };
                    let secs = (now - last).as_secs_f64();
                    let tag = if last < p.measure { "warmup" } else { "run" };
                    print!(
                        "\r[{:>6} {:>5.0}s] {:>12.0} ops/s   p99 {:>9.1} us ",
                        tag,
                        (now - p.start).as_secs_f64(),
                        n as f64 / secs,
                        p99 as f64 / 1e3
                    );
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                    last = now;
                }
            }
        }
    };
    wait_until(p.measure);
    let cpu0 = cpu_times();
    wait_until(p.end);
    let cpu1 = cpu_times();
    if progress.is_some() {
        println!();
    }

    let mut total = Stats::default();
    for h in handles {
        let s = h
            .join()
            .map_err(|_| anyhow::anyhow!("a loadgen thread panicked"))?;
        total.merge(&s);
    }
    let elapsed = (p.end - p.measure).as_secs_f64();
    Ok(Report::new(
        cfg.clone(),
        &total,
        elapsed,
        (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1),
        prefill_s,
    ))
}

/// User and system CPU seconds of this process so far.
fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn thread_main(
    cpu: Option<usize>,
    conns: Vec<(usize, std::net::TcpStream)>,
    cfg: &Config,
    dist: KeyDist,
    barrier: &Barrier,
    phase: &OnceLock<Phase>,
    progress: Option<Arc<Progress>>,
) -> Stats {
    if let Some(id) = cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id })
    {
        eprintln!("loadgen: could not pin a thread to CPU {id}");
    }
    if cfg.rate.is_some() {
        // The default 50 us timer slack would delay every open-loop send.
        // SAFETY: PR_SET_TIMERSLACK only changes this thread's slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Still take part in the three phase barriers, or run() hangs.
            let mut stats = Stats::default();
            stats.errors.io += conns.len() as u64;
            stats.errors.total += conns.len() as u64;
            stats.sample(|| format!("building a tokio runtime: {e}"));
            (0..3).for_each(|_| {
                barrier.wait();
            });
            return stats;
        }
    };
    let state = Rc::new(RefCell::new(ThreadState {
        stats: Stats::default(),
        prog_count: 0,
        prog_hist: progress.as_ref().map(|_| new_histogram()),
    }));
    let pattern: Rc<[u8]> = vec![b'x'; cfg.value_max].into();
    // No panics before the barriers below: the other threads would wait
    // forever. A socket tokio cannot register is a failed connection.
    // run() checked the CA file already.
    let tls = cfg
        .tls_ca
        .as_ref()
        .and_then(|ca| Tls::new(ca, cfg.server).ok());
    let mut conns: Vec<Conn> = rt.block_on(async {
        let mut out = Vec::new();
        for (i, s) in conns {
            let stream = match (TcpStream::from_std(s), &tls) {
                (Ok(s), None) => Ok(Stream::Plain(s)),
                (Ok(s), Some(tls)) => tls.connect(s).await.map_err(|e| ("TLS handshake", e)),
                (Err(e), _) => Err(("registering the socket", e)),
            };
            match stream {
                Ok(s) => out.push(Conn::new(cfg, dist.clone(), i, s, pattern.clone())),
                Err((what, e)) => {
                    let mut st = state.borrow_mut();
                    st.stats.errors.io += 1;
                    st.stats.errors.total += 1;
                    st.stats.sample(|| format!("connection {i}: {what}: {e}"));
                }
            }
        }
        out
    });
    barrier.wait();
    if cfg.prefill {
        let local = tokio::task::LocalSet::new();
        conns = local.block_on(&rt, async {
            let hs: Vec<_> = conns
                .into_iter()
                .map(|mut c| {
                    let st = state.clone();
                    tokio::task::spawn_local(async move {
                        c.prefill(&st).await;
                        c
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in hs {
                out.push(h.await.expect("prefill task"));
            }
            out
        });
    }
    barrier.wait();
    barrier.wait();
    let p = *phase.get().expect("phase is set before the last barrier");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut hs = Vec::new();
        for mut c in conns {
            let st = state.clone();
            hs.push(tokio::task::spawn_local(async move {
                c.drive(p, &st).await;
            }));
        }
        if let Some(pr) = progress {
            let st = state.clone();
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    {
                        let mut s = st.borrow_mut();
                        let n = std::mem::take(&mut s.prog_count);
                        let h = s.prog_hist.as_mut().expect("progress histogram");
                        let mut g = pr.inner.lock().unwrap();
                        g.0 += n;
                        let _ = g.1.add(&*h);
                        h.reset();
                    }
                    if Instant::now() >= p.end {
                        break;
                    }
                }
            });
        }
        // Watchdog: a server that stops answering must not hang the run.
        let drain = cfg.drain_timeout;
        let aborts: Vec<_> = hs.iter().map(|h| h.abort_handle()).collect();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until((p.end + drain).into()).await;
            aborts.iter().for_each(|a| a.abort());
        });
        for h in hs {
            match h.await {
                Ok(()) => {}
                Err(e) if e.is_cancelled() => {
                    let mut s = state.borrow_mut();
                    s.stats.errors.io += 1;
                    s.stats.errors.total += 1;
                    s.stats.sample(|| {
                        format!("a connection got no reply within {drain:?} of the end")
                    });
                }
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    });
    drop(local);
    Rc::try_unwrap(state)
        .ok()
        .expect("all tasks finished")
        .into_inner()
        .stats
}

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
struct Conn {
    id: usize,
    stream: Stream,
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
    fn new(cfg: &Config, dist: KeyDist, id: usize, stream: Stream, pattern: Rc<[u8]>) -> Conn {
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
        // The flush is free on a socket; TLS may hold the tail until it.
        let sent = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        };
        if let Err(e) = sent.await {
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
    async fn prefill(&mut self, st: &RefCell<ThreadState>) {
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
    async fn drive(&mut self, p: Phase, st: &RefCell<ThreadState>) {
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
                    None => {
                        while self.inflight.len() < self.depth {
                            let op = self.generator.next_op();
                            self.push(op.get, op.key, op.len, now);
                        }
                    }
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
