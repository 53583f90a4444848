//! `--check write-order`: a connection's pipelined writes become visible in
//! the order it sent them, even to two different owner cores.
//!
//! Key pairs `(a, b)` are chosen so that `a` and `b` have different owner
//! cores, over every ordered pair of cores. Each pair has one writer
//! connection, which pipelines, round after round, `set a r` then
//! `set b r` (`r` counts up), for all its pairs in one write, `--pipeline`
//! rounds at a time. Readers pick pairs, `get b`, and only after that reply
//! `get a`. memcached runs a connection's requests in order, so once `b`
//! holds round `r`, `a` holds `r` or later: a reader that sees `b = r` and
//! then `a < r` (or no `a`) saw the writes out of order. Writers and
//! readers are spread over the cores (through the shard-aware port when
//! the server has one), so a write or a read may be local or forwarded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::model::{Call, Data, Ret, Seen};
use super::wire::{self, Parsed, Shape};
use super::{CheckConfig, CheckReport, Placement, Violation, run_tag};

/// What the write-order check counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrderCounts {
    /// Key pairs.
    pub pairs: usize,
    /// Distinct (owner of a, owner of b) core pairs among them.
    pub owner_pairs: usize,
    /// Writer connections (the rest read).
    pub writers: usize,
    /// Rounds written, over all pairs.
    pub rounds: u64,
    /// Reads of `b` that hit, each followed by a checked read of `a`.
    pub checked: u64,
    /// Of those, reads of `a` that saw a later round than `b` had.
    pub a_newer: u64,
}

struct Pair {
    a: String,
    b: String,
    owners: (usize, usize),
}

/// What the threads add up.
#[derive(Default)]
struct Totals {
    report: CheckReport,
    counts: OrderCounts,
}

/// Runs `--check write-order`.
pub fn run(cfg: &CheckConfig) -> anyhow::Result<CheckReport> {
    let placement = Arc::new(Placement::fetch(cfg.server)?);
    let cores = placement.cores();
    let combos: Vec<(usize, usize)> = if cores < 2 {
        vec![(0, 0)]
    } else {
        (0..cores)
            .flat_map(|x| (0..cores).filter(move |&y| y != x).map(move |y| (x, y)))
            .collect()
    };
    let tag = format!("{}{}:", cfg.key_prefix, run_tag());
    let pairs: Arc<Vec<Pair>> = Arc::new(
        (0..cfg.hot_keys / 2)
            .map(|p| {
                let owners = combos[p % combos.len()];
                Pair {
                    a: placement.key_on(&format!("{tag}a{p}"), owners.0),
                    b: placement.key_on(&format!("{tag}b{p}"), owners.1),
                    owners,
                }
            })
            .collect(),
    );
    let writers = (cfg.connections / 4).clamp(1, pairs.len());
    let mut per_core = vec![0; if placement.places() { cores } else { 0 }];
    let mut streams = Vec::new();
    for i in 0..cfg.connections {
        let (stream, core) = placement.connect(i)?;
        if let Some(core) = core {
            per_core[core] += 1;
        }
        streams.push((stream, core));
    }
    let totals = Arc::new(Mutex::new(Totals::default()));
    let base = Instant::now();
    let end = base + cfg.duration;
    let mut threads = Vec::new();
    for (i, (stream, core)) in streams.into_iter().enumerate() {
        let (pairs, totals, cfg) = (pairs.clone(), totals.clone(), cfg.clone());
        threads.push(std::thread::spawn(move || {
            let mut t = Totals::default();
            let mut c = Conn {
                stream,
                core,
                id: i,
                rbuf: Vec::new(),
                wbuf: Vec::new(),
            };
            if i < writers {
                let mine: Vec<usize> = (i..pairs.len()).step_by(writers).collect();
                c.write(&pairs, &mine, &cfg, end, &mut t);
            } else {
                c.read(&pairs, &cfg, i, base, end, &mut t);
            }
            let mut all = totals.lock().unwrap();
            all.counts.rounds += t.counts.rounds;
            all.counts.checked += t.counts.checked;
            all.counts.a_newer += t.counts.a_newer;
            all.report.errors += t.report.errors;
            for e in t.report.error_samples {
                if all.report.error_samples.len() < 10 {
                    all.report.error_samples.push(e);
                }
            }
            for v in t.report.violations {
                if all.report.violations.len() < 20 {
                    all.report.violations.push(v);
                } else {
                    all.report.violations_more += 1;
                }
            }
        }));
    }
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a write-order thread panicked"))?;
    }
    let mut all = std::mem::take(&mut *totals.lock().unwrap());
    let mut owner_pairs: Vec<(usize, usize)> = pairs.iter().map(|p| p.owners).collect();
    owner_pairs.sort_unstable();
    owner_pairs.dedup();
    all.counts.pairs = pairs.len();
    all.counts.owner_pairs = owner_pairs.len();
    all.counts.writers = writers;
    Ok(CheckReport {
        config: Some(cfg.clone()),
        server_cores: cores,
        connections_per_core: per_core,
        elapsed_s: base.elapsed().as_secs_f64(),
        order: Some(all.counts),
        ..all.report
    })
}

struct Conn {
    stream: TcpStream,
    core: Option<usize>,
    id: usize,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl Conn {
    /// Sends `wbuf` and reads one reply per `(key, call)`; `None` (with
    /// the error counted) when the connection failed.
    fn exchange(&mut self, calls: &[(&str, Call)], t: &mut Totals) -> Option<Vec<Ret>> {
        let id = self.id;
        if let Err(e) = self.stream.write_all(&self.wbuf) {
            t.report.error(format!("connection {id}: write: {e}"));
            return None;
        }
        let mut out = Vec::with_capacity(calls.len());
        let mut chunk = [0u8; 16 * 1024];
        while out.len() < calls.len() {
            super::client::quick_ack(&self.stream);
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    t.report
                        .error(format!("connection {id}: closed by the server"));
                    return None;
                }
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    t.report.error(format!("connection {id}: read: {e}"));
                    return None;
                }
            }
            let mut off = 0;
            while out.len() < calls.len() {
                let (key, call) = calls[out.len()];
                match wire::parse_reply(&self.rbuf[off..], key.as_bytes(), call, Shape::Counter) {
                    Parsed::Incomplete => break,
                    Parsed::Done(ret, len) => {
                        out.push(ret);
                        off += len;
                    }
                    Parsed::Failed(line, _) => {
                        t.report
                            .error(format!("connection {id}: {} of {key}: {line}", call.name()));
                        return None;
                    }
                    Parsed::Mismatch(why) => {
                        t.report.error(format!("connection {id}: {why}"));
                        return None;
                    }
                }
            }
            self.rbuf.drain(..off);
        }
        Some(out)
    }

    /// A writer: rounds of `set a r`, `set b r` over its pairs.
    fn write(
        &mut self,
        pairs: &[Pair],
        mine: &[usize],
        cfg: &CheckConfig,
        end: Instant,
        t: &mut Totals,
    ) {
        let mut round = 0u64;
        while Instant::now() < end {
            self.wbuf.clear();
            let mut calls = Vec::new();
            for _ in 0..cfg.pipeline {
                round += 1;
                for &p in mine {
                    for key in [&pairs[p].a, &pairs[p].b] {
                        let call = Call::Set(Data::Num(round));
                        wire::write_request(&mut self.wbuf, key.as_bytes(), call);
                        calls.push((key.as_str(), call));
                    }
                }
            }
            let Some(rets) = self.exchange(&calls, t) else {
                return;
            };
            if let Some(r) = rets.iter().find(|&&r| r != Ret::Stored) {
                t.report
                    .error(format!("connection {}: set answered {r}", self.id));
                return;
            }
            t.counts.rounds += (cfg.pipeline * mine.len()) as u64;
        }
    }

    /// A reader: `get b` for some pairs, then `get a` for each.
    fn read(
        &mut self,
        pairs: &[Pair],
        cfg: &CheckConfig,
        seed: usize,
        base: Instant,
        end: Instant,
        t: &mut Totals,
    ) {
        let mut rng = SmallRng::seed_from_u64(cfg.seed ^ (seed as u64) << 20);
        let round_of = |r: Ret| match r {
            Ret::Hit(Seen::Num(n), _) => Some(Some(n)),
            Ret::Miss => Some(None),
            _ => None,
        };
        while Instant::now() < end {
            let mut picked: Vec<usize> = (0..cfg.pipeline)
                .map(|_| rng.gen_range(0..pairs.len()))
                .collect();
            picked.sort_unstable();
            picked.dedup();
            let ask = |conn: &mut Conn, a: bool, t: &mut Totals| {
                conn.wbuf.clear();
                let calls: Vec<(&str, Call)> = picked
                    .iter()
                    .map(|&p| {
                        let key = if a { &pairs[p].a } else { &pairs[p].b };
                        wire::write_request(&mut conn.wbuf, key.as_bytes(), Call::Get);
                        (key.as_str(), Call::Get)
                    })
                    .collect();
                let sent = base.elapsed();
                let rets = conn.exchange(&calls, t)?;
                rets.into_iter()
                    .map(round_of)
                    .collect::<Option<Vec<_>>>()
                    .map(|r| (r, sent))
            };
            let Some((bs, b_sent)) = ask(self, false, t) else {
                t.report
                    .error(format!("connection {}: get b failed", self.id));
                return;
            };
            let Some((as_, a_sent)) = ask(self, true, t) else {
                t.report
                    .error(format!("connection {}: get a failed", self.id));
                return;
            };
            for ((&p, b), a) in picked.iter().zip(bs).zip(as_) {
                let Some(b) = b else { continue };
                t.counts.checked += 1;
                match a {
                    Some(a) if a >= b => t.counts.a_newer += (a > b) as u64,
                    _ => {
                        let pair = &pairs[p];
                        let core = self.core.map_or("?".to_string(), |c| c.to_string());
                        t.report.violations.push(Violation {
                            key: format!("{} / {}", pair.a, pair.b),
                            window_ops: 2,
                            starts: vec![format!(
                                "a on core {}, b on core {}; the writer pipelines set a r, set b r",
                                pair.owners.0, pair.owners.1
                            )],
                            ops: vec![
                                format!(
                                    "connection {} (core {core}) at {:.1} us: get b -> round {b}",
                                    self.id,
                                    b_sent.as_secs_f64() * 1e6
                                ),
                                format!(
                                    "connection {} (core {core}) at {:.1} us: get a -> {}",
                                    self.id,
                                    a_sent.as_secs_f64() * 1e6,
                                    a.map_or("miss".to_string(), |a| format!("round {a}"))
                                ),
                            ],
                            window: Vec::new(),
                        });
                    }
                }
            }
        }
    }
}
