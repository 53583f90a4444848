//! `--check linearizable`: the connections that make the histories, the
//! epochs that give them quiet points, and the thread that checks them
//! while the run goes on.
//!
//! Every connection is a thread of its own with a blocking socket: it
//! waits for the gate, picks `--pipeline` operations on random hot keys,
//! reads the clock, sends them in one write, and reads the clock again as
//! each read completes replies. Blocking threads rather than loadgen's
//! async runtimes: this is a correctness check, not a load, and the
//! simplest client is the easiest to trust.
//!
//! **Keys.** Hot key `s` is owned by core `s % cores` (its name is searched
//! for a suffix that lands there), and keys alternate by owner-sized
//! groups between blobs (`append`) and counters (`incr`), so every core
//! owns keys of both kinds. Key names carry a per-run tag, so every key
//! starts absent. A key is *retired* when an operation on it got no reply
//! (its connection was killed, or the server answered an error): the
//! operation may still take effect at any time, so from then on every
//! connection uses the key's next generation, a new name on the same core.
//!
//! **Epochs.** New operations start only while the gate is open: each
//! connection may start `--epoch-batches` batches (4 by default) per epoch,
//! and the gate closes once all have, or after `--epoch` (10 ms), whichever
//! comes first; then it stays closed until nothing is in flight. That quiet
//! point lets the checker cut every key's history there, and the quota
//! bounds a window by `connections x epoch-batches x pipeline / hot-keys`
//! operations on average, however fast the server. Each epoch's records go
//! to the checker thread, which checks them while the next epoch runs (the
//! gate waits if it falls more than a few epochs behind).
//!
//! **Kills.** With `--kill-every T`, every T one connection about to send
//! kills itself instead: it sends its batch, whole or cut at a random byte,
//! sometimes waits up to 200 us, and closes with a reset (linger 0). Its
//! operations are maybe applied; it reconnects on the same core.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::checker::{self, NEVER, Op, Verdict};
use super::model::{Call, Data, Ret, Seen, State};
use super::wire::{self, Parsed, Shape};
use super::{CheckConfig, CheckReport, Placement, Violation, run_tag};

/// Violations described in full; the rest are counted.
const MAX_VIOLATIONS: usize = 20;

/// Epochs the checker may fall behind before the gate waits for it.
const MAX_BACKLOG: usize = 4;

/// The hot keys and their generations.
pub(crate) struct Keys {
    stem: String,
    gens: Vec<AtomicU32>,
    placement: Arc<Placement>,
}

impl Keys {
    fn new(cfg: &CheckConfig, placement: Arc<Placement>) -> Keys {
        Keys {
            stem: format!("{}{}:", cfg.key_prefix, run_tag()),
            gens: (0..cfg.hot_keys).map(|_| AtomicU32::new(0)).collect(),
            placement,
        }
    }

    /// Blob or counter: alternating by groups of one key per core.
    fn shape(&self, slot: usize) -> Shape {
        if (slot / self.placement.cores()).is_multiple_of(2) {
            Shape::Blob
        } else {
            Shape::Counter
        }
    }

    /// The name of generation `generation` of hot key `slot`.
    fn name(&self, slot: usize, generation: u32) -> String {
        self.placement
            .key_on(&format!("{}{slot}.{generation}", self.stem), slot)
    }

    /// Moves `slot` past `generation`, once however many ask.
    fn retire(&self, slot: usize, generation: u32) {
        let _ = self.gens[slot].compare_exchange(generation, generation + 1, AcqRel, Acquire);
    }
}

/// When operations may start.
struct Gate {
    state: Mutex<GateState>,
    /// Wakes connections when the gate opens or the run stops.
    changed: Condvar,
    /// Wakes the coordinator when every connection has used its quota.
    spent: Condvar,
    /// Connections with a batch in flight.
    busy: AtomicUsize,
    /// Batches a connection may start per epoch.
    quota: usize,
    connections: usize,
}

struct GateState {
    open: bool,
    stop: bool,
    epoch: u64,
    /// Connections that have started their last batch of this epoch.
    spent: usize,
}

/// A connection's use of the current epoch.
#[derive(Default)]
struct Quota {
    epoch: u64,
    used: usize,
}

impl Gate {
    fn new(quota: usize, connections: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState {
                open: false,
                stop: false,
                epoch: 0,
                spent: 0,
            }),
            changed: Condvar::new(),
            spent: Condvar::new(),
            busy: AtomicUsize::new(0),
            quota,
            connections,
        }
    }

    /// Waits until the gate is open on an epoch whose quota the caller has
    /// not used up, and counts the caller busy; false once the run is over.
    fn enter(&self, mine: &mut Quota) -> bool {
        let mut g = self.state.lock().unwrap();
        loop {
            if g.stop {
                return false;
            }
            if g.open {
                if g.epoch != mine.epoch {
                    *mine = Quota {
                        epoch: g.epoch,
                        used: 0,
                    };
                }
                if mine.used < self.quota {
                    mine.used += 1;
                    if mine.used == self.quota {
                        g.spent += 1;
                        if g.spent == self.connections {
                            self.spent.notify_one();
                        }
                    }
                    // Under the lock: whoever closes the gate after this
                    // sees it.
                    self.busy.fetch_add(1, SeqCst);
                    return true;
                }
            }
            g = self.changed.wait(g).unwrap();
        }
    }

    fn leave(&self) {
        self.busy.fetch_sub(1, SeqCst);
    }

    /// Opens a new epoch and waits until every connection has started its
    /// quota of batches, or `longest` has passed; then closes it.
    fn run_epoch(&self, longest: Duration) {
        let mut g = self.state.lock().unwrap();
        g.epoch += 1;
        g.spent = 0;
        g.open = true;
        self.changed.notify_all();
        let (mut g, _) = self
            .spent
            .wait_timeout_while(g, longest, |g| g.spent < self.connections)
            .unwrap();
        g.open = false;
    }

    fn stop(&self) {
        let mut g = self.state.lock().unwrap();
        g.open = false;
        g.stop = true;
        self.changed.notify_all();
    }

    /// Waits until no batch is in flight (each has a read timeout, so this
    /// ends).
    fn wait_idle(&self) {
        while self.busy.load(SeqCst) > 0 {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// What the connections share.
struct Shared {
    gate: Gate,
    keys: Arc<Keys>,
    placement: Arc<Placement>,
    base: Instant,
    sessions: AtomicU32,
    /// Nanoseconds (since `base`) of the next kill; `u64::MAX` = never.
    next_kill: AtomicU64,
    kill_every: u64,
}

impl Shared {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Whether the caller is the one to be killed now.
    fn claim_kill(&self, now: u64) -> bool {
        let next = self.next_kill.load(Acquire);
        now >= next
            && self
                .next_kill
                .compare_exchange(next, next.saturating_add(self.kill_every), AcqRel, Acquire)
                .is_ok()
    }
}

/// One operation's record, on its way to the checker.
pub(crate) struct Rec {
    slot: u16,
    generation: u32,
    op: Op,
}

enum Msg {
    Batch(Vec<Rec>),
    EpochEnd,
    Done,
}

/// What a connection thread reports at the end.
#[derive(Default)]
struct ConnTotals {
    kills: u64,
    errors: Vec<String>,
    error_count: u64,
}

impl ConnTotals {
    fn error(&mut self, what: String) {
        self.error_count += 1;
        if self.errors.len() < 10 {
            self.errors.push(what);
        }
    }
}

/// Runs `--check linearizable`.
pub fn run(cfg: &CheckConfig) -> anyhow::Result<CheckReport> {
    let placement = Arc::new(Placement::fetch(cfg.server)?);
    let keys = Arc::new(Keys::new(cfg, placement.clone()));
    let mut per_core = vec![
        0;
        if placement.places() {
            placement.cores()
        } else {
            0
        }
    ];
    let mut streams = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let (stream, core) = placement.connect(i)?;
        if let Some(core) = core {
            per_core[core] += 1;
        }
        streams.push(stream);
    }
    let shared = Arc::new(Shared {
        gate: Gate::new(cfg.epoch_batches, cfg.connections),
        keys: keys.clone(),
        placement: placement.clone(),
        base: Instant::now(),
        sessions: AtomicU32::new(0),
        next_kill: AtomicU64::new(
            cfg.kill_every
                .map_or(u64::MAX, |d| d.as_nanos().max(1) as u64),
        ),
        kill_every: cfg.kill_every.map_or(u64::MAX, |d| d.as_nanos() as u64),
    });
    let (tx, rx) = channel::<Msg>();
    let backlog = Arc::new(AtomicUsize::new(0));
    let checker = {
        let (cfg, keys, backlog) = (cfg.clone(), keys.clone(), backlog.clone());
        std::thread::Builder::new()
            .name("lincheck".into())
            .spawn(move || check_main(rx, &cfg, &keys, &backlog))?
    };
    let mut conns = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let (shared, cfg, tx) = (shared.clone(), cfg.clone(), tx.clone());
        conns.push(
            std::thread::Builder::new()
                .name(format!("lincheck-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || conn_main(i, stream, &shared, &cfg, &tx))?,
        );
    }

    let end = shared.base + cfg.duration;
    let mut epochs = 0;
    while Instant::now() < end {
        while backlog.load(SeqCst) > MAX_BACKLOG {
            std::thread::sleep(Duration::from_millis(1));
        }
        shared
            .gate
            .run_epoch(cfg.epoch.min(end.saturating_duration_since(Instant::now())));
        shared.gate.wait_idle();
        // Every batch of the epoch was sent to the checker before its
        // connection left the gate, so this marker comes after all of them.
        backlog.fetch_add(1, SeqCst);
        let _ = tx.send(Msg::EpochEnd);
        epochs += 1;
    }
    let elapsed = shared.base.elapsed().as_secs_f64();
    shared.gate.stop();
    let mut report = CheckReport {
        config: Some(cfg.clone()),
        server_cores: placement.cores(),
        connections_per_core: per_core,
        elapsed_s: elapsed,
        epochs,
        ..CheckReport::default()
    };
    for c in conns {
        let totals = c
            .join()
            .map_err(|_| anyhow::anyhow!("a connection thread panicked"))?;
        report.kills += totals.kills;
        report.errors += totals.error_count;
        for e in totals.errors {
            if report.error_samples.len() < 10 {
                report.error_samples.push(e);
            }
        }
    }
    let _ = tx.send(Msg::Done);
    drop(tx);
    let found = checker
        .join()
        .map_err(|_| anyhow::anyhow!("the checker thread panicked"))?;
    found.into_report(&mut report);
    Ok(report)
}

/// One request of a batch.
struct Pending {
    slot: usize,
    generation: u32,
    key: Rc<[u8]>,
    call: Call,
    shape: Shape,
}

/// A connection's socket and its identity in the histories.
struct Session {
    stream: TcpStream,
    id: u32,
    seq: u32,
}

impl Session {
    fn new(stream: TcpStream, shared: &Shared) -> Session {
        Session {
            stream,
            id: shared.sessions.fetch_add(1, Relaxed),
            seq: 0,
        }
    }

    /// Closes with a reset: no FIN handshake, unread replies dropped.
    fn kill(self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
    }
}

fn conn_main(
    i: usize,
    stream: TcpStream,
    shared: &Shared,
    cfg: &CheckConfig,
    tx: &Sender<Msg>,
) -> ConnTotals {
    let mut totals = ConnTotals::default();
    let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64);
    let mut session = Session::new(stream, shared);
    let mut uid_seq: u32 = 0;
    let mut next_uid = move || {
        uid_seq = uid_seq.wrapping_add(1);
        ((i as u64 + 1) << 32) | uid_seq as u64
    };
    // The last cas unique this connection read: key, generation, unique.
    let mut token: Option<(usize, u32, u64)> = None;
    let mut names: Vec<(u32, Rc<[u8]>)> = vec![(u32::MAX, Rc::from(&b""[..])); cfg.hot_keys];
    let (mut wbuf, mut rbuf) = (Vec::new(), Vec::new());
    let mut chunk = vec![0u8; 64 * 1024];
    let mut batch: Vec<Pending> = Vec::new();
    let mut quota = Quota::default();
    while shared.gate.enter(&mut quota) {
        batch.clear();
        wbuf.clear();
        for _ in 0..cfg.pipeline {
            // Half the time a token read by a `gets` is used at once, so
            // connections that read the same version race their `cas`.
            let cas = token.take().filter(|_| rng.gen_bool(0.5));
            let slot = cas.map_or_else(|| rng.gen_range(0..cfg.hot_keys), |(slot, ..)| slot);
            let generation = shared.keys.gens[slot].load(Acquire);
            if names[slot].0 != generation {
                names[slot] = (
                    generation,
                    shared.keys.name(slot, generation).into_bytes().into(),
                );
            }
            let shape = shared.keys.shape(slot);
            let call = match cas {
                Some((_, g, unique)) if g == generation => {
                    Call::Cas(data(shape, next_uid()), unique)
                }
                _ => choose(&mut rng, shape, &mut next_uid),
            };
            wire::write_request(&mut wbuf, &names[slot].1, call);
            batch.push(Pending {
                slot,
                generation,
                key: names[slot].1.clone(),
                call,
                shape,
            });
        }
        let inv = shared.now();
        let mut recs: Vec<Rec> = batch
            .iter()
            .map(|p| {
                session.seq += 1;
                Rec {
                    slot: p.slot as u16,
                    generation: p.generation,
                    op: Op {
                        session: session.id,
                        seq: session.seq,
                        call: p.call,
                        ret: Ret::Unknown,
                        inv,
                        done: NEVER,
                    },
                }
            })
            .collect();
        let healthy = if shared.claim_kill(inv) {
            // Mid-operation: the whole batch or a cut of it, then a reset,
            // sometimes after the server had a moment with it.
            let cut = if rng.gen_bool(0.5) {
                wbuf.len()
            } else {
                rng.gen_range(1..wbuf.len())
            };
            let _ = session.stream.write_all(&wbuf[..cut]);
            if rng.gen_bool(0.5) {
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..200)));
            }
            totals.kills += 1;
            false
        } else {
            let mut io = Io {
                session: &mut session,
                rbuf: &mut rbuf,
                chunk: &mut chunk,
                totals: &mut totals,
            };
            io.exchange(shared, &batch, &mut recs, &wbuf, &mut token)
        };
        // Whatever got no reply may still happen: retire its keys.
        for r in &recs {
            if r.op.is_maybe() {
                shared.keys.retire(r.slot as usize, r.generation);
            }
        }
        let _ = tx.send(Msg::Batch(recs));
        shared.gate.leave();
        if !healthy {
            let stream = match shared.placement.connect(i) {
                Ok((stream, _)) => stream,
                Err(e) => {
                    totals.error(format!("connection {i}: reconnecting: {e:#}"));
                    return totals;
                }
            };
            std::mem::replace(&mut session, Session::new(stream, shared)).kill();
            rbuf.clear();
        }
    }
    totals
}

/// A connection's socket and buffers, for one exchange.
struct Io<'a> {
    session: &'a mut Session,
    rbuf: &'a mut Vec<u8>,
    chunk: &'a mut [u8],
    totals: &'a mut ConnTotals,
}

impl Io<'_> {
    /// Sends the batch and reads its replies into `recs`; false when the
    /// connection broke (what had no reply yet stays without one).
    fn exchange(
        &mut self,
        shared: &Shared,
        batch: &[Pending],
        recs: &mut [Rec],
        wbuf: &[u8],
        token: &mut Option<(usize, u32, u64)>,
    ) -> bool {
        let id = self.session.id;
        if let Err(e) = self.session.stream.write_all(wbuf) {
            self.totals.error(format!("session {id}: write: {e}"));
            return false;
        }
        let mut got = 0;
        while got < batch.len() {
            quick_ack(&self.session.stream);
            let n = match self.session.stream.read(self.chunk) {
                Ok(0) => {
                    self.totals
                        .error(format!("session {id}: the server closed the connection"));
                    return false;
                }
                Ok(n) => n,
                Err(e) => {
                    self.totals.error(format!("session {id}: read: {e}"));
                    return false;
                }
            };
            let now = shared.now();
            self.rbuf.extend_from_slice(&self.chunk[..n]);
            let mut off = 0;
            while got < batch.len() {
                let p = &batch[got];
                let key = || String::from_utf8_lossy(&p.key).into_owned();
                match wire::parse_reply(&self.rbuf[off..], &p.key, p.call, p.shape) {
                    Parsed::Incomplete => break,
                    Parsed::Done(ret, len) => {
                        if let (Call::Gets, Ret::Hit(_, Some(cas))) = (p.call, ret) {
                            *token = Some((p.slot, p.generation, cas));
                        }
                        if let Ret::Hit(Seen::Garbled, _) = ret {
                            self.totals.error(format!(
                                "session {id}: {} of {}: a value no write sent",
                                p.call.name(),
                                key()
                            ));
                        }
                        recs[got].op.ret = ret;
                        recs[got].op.done = now;
                        off += len;
                    }
                    // Left without a reply: maybe applied, as far as the
                    // checker is concerned.
                    Parsed::Failed(line, len) => {
                        self.totals.error(format!(
                            "session {id}: {} of {}: {line}",
                            p.call.name(),
                            key()
                        ));
                        off += len;
                    }
                    Parsed::Mismatch(why) => {
                        self.totals.error(format!("session {id}: {why}"));
                        return false;
                    }
                }
                got += 1;
            }
            self.rbuf.drain(..off);
        }
        if !self.rbuf.is_empty() {
            self.totals
                .error(format!("session {id}: bytes after the last reply"));
            return false;
        }
        true
    }
}

/// Acknowledges what arrives at once. A server that answers a pipelined
/// batch with a send per reply and Nagle on (memcached) holds its second
/// reply until the first is acknowledged, and a delayed ACK would make
/// that 40 ms. The kernel clears the flag by itself, so it is set before
/// every read.
pub(crate) fn quick_ack(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

/// The value a write of `uid` sends to a key of `shape`.
fn data(shape: Shape, uid: u64) -> Data {
    match shape {
        Shape::Blob => Data::Blob(uid),
        // Counters of two sets stay apart however many incrs follow.
        Shape::Counter => Data::Num(uid << 20),
    }
}

/// Draws the next operation on a key of `shape` (a `cas` comes from a
/// token instead, see [`conn_main`]).
fn choose(rng: &mut SmallRng, shape: Shape, next_uid: &mut impl FnMut() -> u64) -> Call {
    match rng.gen_range(0..100) {
        0..25 => Call::Get,
        25..45 => Call::Gets,
        45..60 => Call::Set(data(shape, next_uid())),
        60..68 => Call::Add(data(shape, next_uid())),
        68..88 => match shape {
            Shape::Blob => Call::Append(next_uid()),
            Shape::Counter => Call::Incr(rng.gen_range(1..=16)),
        },
        _ => Call::Delete,
    }
}

/// One key's history still to check, and what it may hold where that
/// history begins.
struct KeyLog {
    ops: Vec<Op>,
    starts: Vec<State>,
    /// An operation on it got no reply, so it was retired in the epoch
    /// whose records are being read: no operation on it comes after that
    /// epoch. (The generation counter cannot say so: the next epoch, running
    /// while this one is checked, may already have moved it.)
    retired: bool,
}

/// What the checker thread found.
#[derive(Default)]
struct Found {
    ops: u64,
    maybe: u64,
    by_kind: BTreeMap<String, u64>,
    windows: u64,
    max_window: u64,
    inconclusive: u64,
    max_window_s: f64,
    cpu_s: f64,
    violations: Vec<Violation>,
    more: u64,
    keys: u64,
}

impl Found {
    fn into_report(self, r: &mut CheckReport) {
        r.ops = self.ops;
        r.maybe_ops = self.maybe;
        r.ops_by_kind = self.by_kind;
        r.keys = self.keys;
        r.windows = self.windows;
        r.max_window_ops = self.max_window;
        r.inconclusive_windows = self.inconclusive;
        r.checker_cpu_s = self.cpu_s;
        r.checker_us_per_op = self.cpu_s * 1e6 / self.ops.max(1) as f64;
        r.checker_us_per_window = self.cpu_s * 1e6 / self.windows.max(1) as f64;
        r.max_window_ms = self.max_window_s * 1e3;
        r.violations = self.violations;
        r.violations_more = self.more;
    }
}

/// CPU seconds this thread has used.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn check_main(rx: Receiver<Msg>, cfg: &CheckConfig, keys: &Keys, backlog: &AtomicUsize) -> Found {
    let mut found = Found::default();
    let mut logs: HashMap<(u16, u32), KeyLog> = HashMap::new();
    for msg in rx {
        match msg {
            Msg::Batch(recs) => {
                for r in recs {
                    let log = logs.entry((r.slot, r.generation)).or_insert_with(|| {
                        found.keys += 1;
                        KeyLog {
                            ops: Vec::new(),
                            starts: vec![State::ABSENT],
                            retired: false,
                        }
                    });
                    log.retired |= r.op.is_maybe();
                    log.ops.push(r.op);
                }
            }
            Msg::EpochEnd | Msg::Done => {
                let last = matches!(msg, Msg::Done);
                for (&(slot, generation), log) in logs.iter_mut() {
                    // A retired key gets no operation after the epoch it
                    // was retired in: its history is whole.
                    let name = || keys.name(slot as usize, generation);
                    drain(log, last || log.retired, cfg, &name, &mut found);
                }
                logs.retain(|_, log| !log.retired);
                if last {
                    break;
                }
                backlog.fetch_sub(1, SeqCst);
            }
        }
    }
    found.cpu_s = thread_cpu();
    found
}

/// Checks every window of `log` that is over: all of them at the end of
/// an epoch (nothing is in flight then) except one holding an operation
/// that never got a reply, which stays open until the history is `whole`.
fn drain(
    log: &mut KeyLog,
    whole: bool,
    cfg: &CheckConfig,
    name: &dyn Fn() -> String,
    found: &mut Found,
) {
    if log.ops.is_empty() {
        return;
    }
    checker::sort(&mut log.ops);
    let parts = checker::split_quiet(&log.ops);
    let mut used = 0;
    for part in parts {
        let ops = &log.ops[part.clone()];
        if !whole && ops.iter().any(Op::is_maybe) {
            break;
        }
        window(ops, &mut log.starts, cfg, name, found);
        used = part.end;
    }
    log.ops.drain(..used);
}

fn window(
    ops: &[Op],
    starts: &mut Vec<State>,
    cfg: &CheckConfig,
    name: &dyn Fn() -> String,
    found: &mut Found,
) {
    let t = Instant::now();
    found.windows += 1;
    found.ops += ops.len() as u64;
    found.max_window = found.max_window.max(ops.len() as u64);
    for o in ops {
        found.maybe += o.is_maybe() as u64;
        *found.by_kind.entry(o.call.name().to_string()).or_default() += 1;
    }
    match checker::check(ops, starts, cfg.budget, false, cfg.spec) {
        Verdict::Linearizable(ends) => *starts = ends,
        Verdict::GaveUp => {
            found.inconclusive += 1;
            *starts = vec![State::UNKNOWN];
        }
        Verdict::Violation => {
            if found.violations.len() < MAX_VIOLATIONS {
                let (small, from) = checker::minimize(ops, starts, cfg.budget, cfg.spec);
                found.violations.push(describe(&name(), ops, &small, &from));
            } else {
                found.more += 1;
            }
            *starts = vec![State::UNKNOWN];
        }
    }
    found.max_window_s = found.max_window_s.max(t.elapsed().as_secs_f64());
}

/// A violation for the report: times in microseconds from the first
/// operation of the smallest history.
pub(crate) fn describe(key: &str, window: &[Op], ops: &[Op], starts: &[State]) -> Violation {
    let t0 = ops.iter().map(|o| o.inv).min().unwrap_or(0);
    let us = |t: u64| (t as i128 - t0 as i128) as f64 / 1e3;
    let line = |o: &Op| {
        let done = if o.is_maybe() {
            "never".to_string()
        } else {
            format!("{:.1}", us(o.done))
        };
        format!(
            "session {:>5}  {:>10.1} .. {:>10} us  {} -> {}",
            o.session,
            us(o.inv),
            done,
            o.call,
            o.ret
        )
    };
    Violation {
        key: key.to_string(),
        window_ops: window.len(),
        starts: starts.iter().map(State::to_string).collect(),
        ops: ops.iter().map(line).collect(),
        window: window.iter().take(200).map(line).collect(),
    }
}
