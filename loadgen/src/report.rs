//! Measurement: per-thread counters and histograms, their merge, and the
//! final [`Report`] with its JSON schema and human-readable table.
//!
//! # JSON schema (`--json PATH`, `"schema": 1`)
//!
//! ```text
//! {
//!   "schema": 1,
//!   "config": { server, connections, threads, cpus, pipeline, refill,
//!               duration (s), warmup (s), keys, key_prefix,
//!               value_min, value_max, get_ratio,
//!               mix: null | {set, get, delete, append, incr} (weights),
//!               distribution: {"kind":"uniform"} | {"kind":"zipf","s":0.99},
//!               multiget, prefill, shard_aware,
//!               rate (req/s or null = closed loop), seed,
//!               verify: "off" | "hits" | "strict" },
//!   "elapsed_s": measured wall time in seconds,
//!   "requests": requests completed in the measured phase,
//!   "gets", "sets": their split (a multi-get is one get),
//!   "deletes", "appends", "incrs": the rest of the split (`--mix`; 0
//!       without),
//!   "deleted", "appended", "incremented": of those, how many found their
//!       key (`DELETED`, `STORED`, a number; the others got `NOT_FOUND` or
//!       `NOT_STORED`),
//!   "get_keys": keys the gets asked for (gets x multiget),
//!   "hits", "misses": of those keys,
//!   "ops_per_sec": requests / elapsed_s,
//!   "hit_ratio": hits / get_keys (0 when there were no gets),
//!   "errors": { "total", "error", "client_error", "server_error",
//!               "not_stored", "mismatch", "verify_failed", "strict_miss",
//!               "wrong_reply", "io" }  (whole run, warmup and prefill
//!               included),
//!   "latency_us": { "min", "mean", "p50", "p90", "p99", "p999", "p9999",
//!                   "max" }  (microseconds, floats),
//!   "cpu": { "user_s", "system_s", "us_per_request",
//!            "user_us_per_request" }  (this process, measured phase only;
//!            us_per_request = CPU-seconds per million requests),
//!   "prefill_s": seconds spent prefilling (0 without --prefill),
//!   "shard_map": { "threads", "shards", "port" } the server published,
//!                or null without --shard-aware,
//!   "open_loop": { "sends", "held", "lateness_us": { as latency_us } }
//!                for `--rate` (sends due in the measured phase, how many
//!                of them a full pipeline held, how late they all left),
//!                or null for a closed loop
//! }
//! ```
//!
//! Open loop (`--rate`) latencies of requests a full pipeline held past
//! their intended send time (a slow server) are measured from that time,
//! so the wait counts (coordinated omission corrected); the others are
//! measured from the moment they were sent, so the client's own timer
//! lateness does not count as server latency (see
//! `timer::latency_start`). `open_loop.lateness_us` shows that
//! lateness.

use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::Config;
use crate::proto::ReplyError;
use crate::shard::ShardMap;

/// Highest latency the histograms hold, in nanoseconds (larger ones are
/// clamped): one minute.
const MAX_NS: u64 = 60_000_000_000;

/// Creates an empty latency histogram (nanoseconds, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Error counts by kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Sum of all kinds.
    pub total: u64,
    /// `ERROR` replies.
    pub error: u64,
    /// `CLIENT_ERROR` replies.
    pub client_error: u64,
    /// `SERVER_ERROR` replies.
    pub server_error: u64,
    /// `NOT_STORED`/`EXISTS`/`NOT_FOUND` to a `set`.
    pub not_stored: u64,
    /// Replies that do not match their request (wrong kind, wrong key,
    /// garbage); the connection is dropped after one.
    pub mismatch: u64,
    /// `--verify`: a hit whose value is corrupt or belongs to another key.
    pub verify_failed: u64,
    /// `--verify=strict`: a get that contradicts the connection's model of
    /// its key: a miss of a key it stored, a stale version or append
    /// count, a wrong counter, a hit of a key it deleted.
    pub strict_miss: u64,
    /// `--verify=strict`: a delete, append or incr whose reply contradicts
    /// the model (`DELETED` for `NOT_FOUND` or back, `STORED` for
    /// `NOT_STORED` or back, a wrong `incr` value).
    pub wrong_reply: u64,
    /// Connection failures (connect, read, write, server closed).
    pub io: u64,
}

impl ErrorCounts {
    /// Counts a failed reply.
    pub fn reply(&mut self, e: ReplyError) {
        match e {
            ReplyError::Error => self.error += 1,
            ReplyError::ClientError => self.client_error += 1,
            ReplyError::ServerError => self.server_error += 1,
            ReplyError::NotStored => self.not_stored += 1,
        }
        self.total += 1;
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &ErrorCounts) {
        self.total += o.total;
        self.error += o.error;
        self.client_error += o.client_error;
        self.server_error += o.server_error;
        self.not_stored += o.not_stored;
        self.mismatch += o.mismatch;
        self.verify_failed += o.verify_failed;
        self.strict_miss += o.strict_miss;
        self.wrong_reply += o.wrong_reply;
        self.io += o.io;
    }
}

/// Requests of `--mix` beyond gets and sets: how many were answered in
/// the measured window, and how many of those found their key.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OpCounts {
    /// Deletes.
    pub deletes: u64,
    /// `DELETED` replies among `deletes`.
    pub deleted: u64,
    /// Appends.
    pub appends: u64,
    /// `STORED` replies among `appends`.
    pub appended: u64,
    /// Incrs.
    pub incrs: u64,
    /// Numbers (not `NOT_FOUND`) among the replies to `incrs`.
    pub incremented: u64,
}

impl OpCounts {
    /// Deletes, appends and incrs together.
    pub fn requests(&self) -> u64 {
        self.deletes + self.appends + self.incrs
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &OpCounts) {
        self.deletes += o.deletes;
        self.deleted += o.deleted;
        self.appends += o.appends;
        self.appended += o.appended;
        self.incrs += o.incrs;
        self.incremented += o.incremented;
    }
}

/// Counters of one client thread (or the merge of all).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of measured requests, nanoseconds.
    pub hist: Histogram<u64>,
    /// Measured get requests.
    pub gets: u64,
    /// Keys those gets asked for (`gets` × `--multiget`).
    pub get_keys: u64,
    /// Measured sets.
    pub sets: u64,
    /// Measured get hits.
    pub hits: u64,
    /// Measured deletes, appends and incrs.
    pub ops: OpCounts,
    /// Errors over the whole run.
    pub errors: ErrorCounts,
    /// First few error descriptions, for the human report.
    pub samples: Vec<String>,
    /// Open loop: sends made that were due in the measured phase.
    pub sends: u64,
    /// Open loop: of `sends`, those a full pipeline held past their due
    /// time.
    pub held: u64,
    /// Open loop: how late each of `sends` left, nanoseconds.
    pub lateness: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hist: new_histogram(),
            gets: 0,
            get_keys: 0,
            sets: 0,
            hits: 0,
            ops: OpCounts::default(),
            errors: ErrorCounts::default(),
            samples: Vec::new(),
            sends: 0,
            held: 0,
            lateness: new_histogram(),
        }
    }
}

impl Stats {
    /// Keeps a description of an error if fewer than ten are kept.
    pub fn sample(&mut self, f: impl FnOnce() -> String) {
        if self.samples.len() < 10 {
            self.samples.push(f());
        }
    }

    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &Stats) {
        self.hist.add(&o.hist).expect("same histogram bounds");
        self.gets += o.gets;
        self.get_keys += o.get_keys;
        self.sets += o.sets;
        self.hits += o.hits;
        self.ops.add(&o.ops);
        self.errors.add(&o.errors);
        self.sends += o.sends;
        self.held += o.held;
        self.lateness
            .add(&o.lateness)
            .expect("same histogram bounds");
        for s in &o.samples {
            if self.samples.len() < 10 {
                self.samples.push(s.clone());
            }
        }
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// 99.99th percentile.
    pub p9999: f64,
    /// Largest.
    pub max: f64,
}

impl Latency {
    /// Summarises a nanosecond histogram.
    pub fn from_hist(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Latency {
            min: us(h.min()),
            mean: h.mean() / 1e3,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// How well an open loop kept its schedule in the measured phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpenLoop {
    /// Sends made that were due in the measured phase (a send still held
    /// by a full pipeline when the phase ends is not made).
    pub sends: u64,
    /// Of those made, the ones a full pipeline held past their due time:
    /// their latency counts from that time.
    pub held: u64,
    /// How late the sends left after their due time, whatever the cause
    /// (a full pipeline, the client's timer waking late), microseconds.
    pub lateness_us: Latency,
}

/// The client's own CPU use during the measured phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cpu {
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub system_s: f64,
    /// (user + system) microseconds per measured request.
    pub us_per_request: f64,
    /// User-space share of `us_per_request` (the kernel's TCP stack is
    /// the rest).
    pub user_us_per_request: f64,
}

/// Result of a run; see the module docs for the JSON schema.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Schema version of this JSON.
    pub schema: u32,
    /// The workload.
    pub config: Config,
    /// Wall time of the measured phase, seconds.
    pub elapsed_s: f64,
    /// Requests completed in the measured phase.
    pub requests: u64,
    /// Get requests among them.
    pub gets: u64,
    /// Sets among them.
    pub sets: u64,
    /// Keys the gets asked for (= `gets` unless `--multiget`).
    pub get_keys: u64,
    /// Keys found.
    pub hits: u64,
    /// Keys not found (`get_keys - hits`).
    pub misses: u64,
    /// Deletes, appends and incrs (`--mix`), flat in the JSON.
    #[serde(flatten)]
    pub ops: OpCounts,
    /// Requests per second (a multi-get is one request).
    pub ops_per_sec: f64,
    /// `hits / get_keys`.
    pub hit_ratio: f64,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Latency percentiles, microseconds.
    pub latency_us: Latency,
    /// Client CPU use.
    pub cpu: Cpu,
    /// Time spent in `--prefill`, seconds.
    pub prefill_s: f64,
    /// `--shard-aware`: the rule the server published and loadgen routed
    /// by (`null` without `--shard-aware`).
    pub shard_map: Option<ShardMap>,
    /// `--rate`: how the schedule was kept (`null` for a closed loop).
    pub open_loop: Option<OpenLoop>,
    /// First few error descriptions (not part of the JSON).
    #[serde(skip)]
    pub error_samples: Vec<String>,
}

impl Report {
    /// Builds the report from merged stats.
    pub fn new(
        config: Config,
        s: &Stats,
        elapsed_s: f64,
        cpu_s: (f64, f64),
        prefill_s: f64,
        shard_map: Option<ShardMap>,
    ) -> Report {
        let requests = s.gets + s.sets + s.ops.requests();
        let open_loop = config.rate.map(|_| OpenLoop {
            sends: s.sends,
            held: s.held,
            lateness_us: Latency::from_hist(&s.lateness),
        });
        Report {
            schema: 1,
            config,
            elapsed_s,
            requests,
            gets: s.gets,
            sets: s.sets,
            get_keys: s.get_keys,
            hits: s.hits,
            misses: s.get_keys - s.hits,
            ops: s.ops.clone(),
            ops_per_sec: if elapsed_s > 0.0 {
                requests as f64 / elapsed_s
            } else {
                0.0
            },
            hit_ratio: if s.get_keys > 0 {
                s.hits as f64 / s.get_keys as f64
            } else {
                0.0
            },
            errors: s.errors.clone(),
            latency_us: Latency::from_hist(&s.hist),
            cpu: Cpu {
                user_s: cpu_s.0,
                system_s: cpu_s.1,
                us_per_request: if requests > 0 {
                    (cpu_s.0 + cpu_s.1) * 1e6 / requests as f64
                } else {
                    0.0
                },
                user_us_per_request: if requests > 0 {
                    cpu_s.0 * 1e6 / requests as f64
                } else {
                    0.0
                },
            },
            prefill_s,
            shard_map,
            open_loop,
            error_samples: s.samples.clone(),
        }
    }

    /// True when the server misbehaved: any protocol error, mismatched
    /// reply, verification failure or lost connection.
    pub fn failed(&self) -> bool {
        self.errors.total > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let mode = match c.rate {
            Some(r) => format!("open loop, {r:.0} req/s"),
            None => "closed loop".into(),
        };
        writeln!(
            f,
            "server {}  {} conns x pipeline {} on {} threads, {}",
            c.server, c.connections, c.pipeline, c.threads, mode
        )?;
        writeln!(f, "{:<22}{:>14.0}", "ops/s", self.ops_per_sec)?;
        writeln!(
            f,
            "{:<22}{:>14}  ({} gets, {} sets in {:.2} s)",
            "requests", self.requests, self.gets, self.sets, self.elapsed_s
        )?;
        if c.multiget > 1 {
            writeln!(
                f,
                "{:<22}{:>14}  ({} per get)",
                "keys requested", self.get_keys, c.multiget
            )?;
        }
        if c.mix.is_some() {
            writeln!(
                f,
                "{:<22}{:>14}  ({} deletes, {} found; {} appends, {} found; {} incrs, {} found)",
                "other requests",
                self.ops.requests(),
                self.ops.deletes,
                self.ops.deleted,
                self.ops.appends,
                self.ops.appended,
                self.ops.incrs,
                self.ops.incremented
            )?;
        }
        writeln!(f, "{:<22}{:>14.4}", "hit ratio", self.hit_ratio)?;
        let l = &self.latency_us;
        for (name, v) in [
            ("latency p50 (us)", l.p50),
            ("latency p90 (us)", l.p90),
            ("latency p99 (us)", l.p99),
            ("latency p99.9 (us)", l.p999),
            ("latency p99.99 (us)", l.p9999),
            ("latency max (us)", l.max),
        ] {
            writeln!(f, "{name:<22}{v:>14.1}")?;
        }
        if let Some(o) = &self.open_loop {
            writeln!(
                f,
                "{:<22}{:>14.1}  (p99 {:.1}, max {:.1}; {} of {} sends held by a full pipeline)",
                "send late p50 (us)",
                o.lateness_us.p50,
                o.lateness_us.p99,
                o.lateness_us.max,
                o.held,
                o.sends
            )?;
        }
        writeln!(
            f,
            "{:<22}{:>14.3}",
            "client cpu us/req", self.cpu.us_per_request
        )?;
        let e = &self.errors;
        writeln!(f, "{:<22}{:>14}", "errors", e.total)?;
        if e.total > 0 {
            writeln!(
                f,
                "  error {} client_error {} server_error {} not_stored {} mismatch {} \
                 verify_failed {} strict_miss {} wrong_reply {} io {}",
                e.error,
                e.client_error,
                e.server_error,
                e.not_stored,
                e.mismatch,
                e.verify_failed,
                e.strict_miss,
                e.wrong_reply,
                e.io
            )?;
            for s in &self.error_samples {
                writeln!(f, "  - {s}")?;
            }
        }
        Ok(())
    }
}
