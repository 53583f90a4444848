//! `--check`: consistency checks of a server, instead of a load.
//!
//! * `--check linearizable` ([`client`]): connections spread over the
//!   server's cores run `get`, `gets`, `set`, `add`, `cas`, `append`,
//!   `incr` and `delete` on a handful of hot keys, every write with a value
//!   no other write has, and record for each operation when it was sent,
//!   when its reply came and what it was. Each key's history is checked
//!   against the sequential [`model`] of a memcached key by the Wing & Gong
//!   search in [`checker`], window by window. With `--kill-every`,
//!   connections are killed mid-operation and reopened; what they had in
//!   flight is "maybe applied", and their keys are retired.
//! * `--check write-order` ([`order`]): writers pipeline `set a` then
//!   `set b` to keys of different owner cores, readers read `b`, then `a`;
//!   a reader that sees the new `b` and an older `a` saw the writes out of
//!   the order they were sent.
//!
//! Either way the run fails (exit 1) on a violation or on any error reply,
//! and prints what it checked. docs/lincheck.md has the design and the
//! numbers.

pub mod checker;
pub mod client;
pub mod model;
pub mod order;
pub mod wire;

use std::fmt;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use serde::Serialize;

use crate::config::parse_duration;
use crate::shard::{ShardMap, connect_to_core, first_port};
pub use model::Spec;

/// Flags of `--check` (flattened into [`crate::Args`]). The check also
/// reads `--server`, `--connections`, `--pipeline`, `--duration`,
/// `--key-prefix`, `--seed` and `--json`.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct CheckArgs {
    /// Check the server instead of loading it: `linearizable` (every hot
    /// key's history, across connections and cores) or `write-order`
    /// (a connection's pipelined writes to two cores become visible in
    /// order). See docs/lincheck.md.
    #[arg(long, value_name = "linearizable|write-order")]
    pub check: Option<String>,
    /// `--check`: keys every connection works on (write-order: twice the
    /// key pairs).
    #[arg(long, default_value_t = 8)]
    pub hot_keys: usize,
    /// `--check linearizable`: batches each connection starts per epoch;
    /// after an epoch, nothing starts until nothing is in flight, so every
    /// key's history has a quiet point to be cut at.
    #[arg(long, default_value_t = 4)]
    pub epoch_batches: usize,
    /// `--check linearizable`: the longest an epoch admits new operations.
    #[arg(long, default_value = "10ms", value_name = "DURATION")]
    pub epoch: String,
    /// `--check linearizable`: kill a connection mid-operation this often
    /// (and reopen it); off when absent.
    #[arg(long, value_name = "DURATION")]
    pub kill_every: Option<String>,
    /// `--check linearizable`: most configurations the search of one
    /// window may visit before the window counts as inconclusive.
    #[arg(long, default_value_t = 2_000_000)]
    pub check_budget: u64,
    /// `--check linearizable`: the model histories are checked against:
    /// `strict` (a linearizable key) or `memcached` (strict but for one
    /// documented quirk of memcached's `incr`; see docs/lincheck.md).
    #[arg(long, default_value = "strict", value_name = "strict|memcached")]
    pub spec: String,
}

/// Which check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Per-key linearizability.
    Linearizable,
    /// Pipelined writes to two owners become visible in order.
    WriteOrder,
}

/// A validated check configuration.
#[derive(Debug, Clone, Serialize)]
pub struct CheckConfig {
    /// Which check.
    pub mode: Mode,
    /// Server address.
    pub server: SocketAddr,
    /// Connections (each a thread of its own).
    pub connections: usize,
    /// Requests a connection sends per batch (one write).
    pub pipeline: usize,
    /// How long new operations start.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Hot keys (write-order: twice the pairs).
    pub hot_keys: usize,
    /// Key prefix; a per-run tag follows it so every key starts absent.
    pub key_prefix: String,
    /// RNG seed.
    pub seed: u64,
    /// Linearizable: batches a connection starts per epoch.
    pub epoch_batches: usize,
    /// Linearizable: the longest an epoch admits new operations.
    #[serde(serialize_with = "secs")]
    pub epoch: Duration,
    /// Linearizable: kill a connection this often.
    #[serde(serialize_with = "opt_secs")]
    pub kill_every: Option<Duration>,
    /// Linearizable: the search budget per window.
    pub budget: u64,
    /// Linearizable: the model of a key the histories are checked against.
    pub spec: Spec,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl CheckConfig {
    /// The check `args` asks for, or `None` without `--check`.
    pub fn from_args(args: &crate::Args) -> anyhow::Result<Option<CheckConfig>> {
        let c = &args.check;
        let Some(mode) = c.check.as_deref() else {
            return Ok(None);
        };
        let mode = match mode {
            "linearizable" => Mode::Linearizable,
            "write-order" => Mode::WriteOrder,
            other => bail!("--check takes linearizable or write-order, not {other:?}"),
        };
        let server = args
            .server
            .to_socket_addrs()
            .with_context(|| format!("resolving --server {}", args.server))?
            .next()
            .with_context(|| format!("--server {} resolves to nothing", args.server))?;
        let cfg = CheckConfig {
            mode,
            server,
            connections: args.connections,
            pipeline: args.pipeline,
            duration: parse_duration(&args.duration).context("--duration")?,
            hot_keys: c.hot_keys,
            key_prefix: args.key_prefix.clone(),
            seed: args.seed,
            epoch_batches: c.epoch_batches,
            epoch: parse_duration(&c.epoch).context("--epoch")?,
            kill_every: c
                .kill_every
                .as_deref()
                .map(parse_duration)
                .transpose()
                .context("--kill-every")?,
            budget: c.check_budget,
            spec: match c.spec.as_str() {
                "strict" => Spec::Strict,
                "memcached" => Spec::Memcached,
                other => bail!("--spec takes strict or memcached, not {other:?}"),
            },
        };
        cfg.validate()?;
        Ok(Some(cfg))
    }

    /// A configuration of `mode` against `server` with the defaults of
    /// the flags, for tests and other crates.
    pub fn new(mode: Mode, server: SocketAddr) -> CheckConfig {
        CheckConfig {
            mode,
            server,
            connections: 64,
            pipeline: 1,
            duration: Duration::from_secs(2),
            hot_keys: 8,
            key_prefix: "lin:".into(),
            seed: 1,
            epoch_batches: 4,
            epoch: Duration::from_millis(10),
            kill_every: None,
            budget: 2_000_000,
            spec: Spec::Strict,
        }
    }

    /// Checks the invariants the runs rely on.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=4000).contains(&self.connections) {
            bail!("--check needs 1..=4000 --connections (one thread each)");
        }
        if !(1..=64).contains(&self.pipeline) {
            bail!("--check needs --pipeline within 1..=64");
        }
        if !(1..=1000).contains(&self.hot_keys) {
            bail!("--hot-keys must be within 1..=1000");
        }
        if self.mode == Mode::WriteOrder && (self.hot_keys < 2 || self.connections < 2) {
            bail!("--check write-order needs --hot-keys >= 2 and --connections >= 2");
        }
        if self.epoch.is_zero() || self.duration.is_zero() || self.epoch_batches == 0 {
            bail!("--epoch, --epoch-batches and --duration must be positive");
        }
        if self.key_prefix.len() > 150 || self.key_prefix.bytes().any(|b| b <= b' ') {
            bail!("--key-prefix must be short and contain no spaces or control bytes");
        }
        Ok(())
    }
}

/// Runs the check `cfg` describes.
pub fn run(cfg: &CheckConfig) -> anyhow::Result<CheckReport> {
    cfg.validate()?;
    match cfg.mode {
        Mode::Linearizable => client::run(cfg),
        Mode::WriteOrder => order::run(cfg),
    }
}

/// Where connections go: to chosen cores through the server's shard-aware
/// port when it has one, else wherever the kernel's `SO_REUSEPORT` hash
/// puts them; and which core owns a key, when the server says.
pub struct Placement {
    server: SocketAddr,
    /// The server's key-to-core rule (none for memcached and corecache's
    /// work-stealing runtime, where no core owns a key).
    pub map: Option<ShardMap>,
    next_port: Mutex<u32>,
}

impl Placement {
    /// Reads the server's rule from `stats settings`.
    pub fn fetch(server: SocketAddr) -> anyhow::Result<Placement> {
        Ok(Placement {
            server,
            map: ShardMap::fetch_rule(server)?,
            next_port: Mutex::new(first_port()),
        })
    }

    /// Cores that own keys (1 when no core does).
    pub fn cores(&self) -> usize {
        self.map.map_or(1, |m| m.threads)
    }

    /// The core that owns `key` (0 when no core does).
    pub fn owner(&self, key: &[u8]) -> usize {
        self.map.map_or(0, |m| m.owner(key))
    }

    /// Whether connections can be put on chosen cores.
    pub fn places(&self) -> bool {
        self.map.is_some_and(|m| m.port != 0)
    }

    /// A connection for slot `i`: on core `i % cores` through the
    /// shard-aware port when the server has one (returned with it), else
    /// to `--server`.
    pub fn connect(&self, i: usize) -> anyhow::Result<(TcpStream, Option<usize>)> {
        let (stream, core) = match self.map.filter(|m| m.port != 0) {
            Some(m) => {
                let core = i % m.threads;
                let target = SocketAddr::new(self.server.ip(), m.port);
                let mut next = self.next_port.lock().unwrap();
                (
                    connect_to_core(target, m.threads, core, &mut next)?,
                    Some(core),
                )
            }
            None => (
                TcpStream::connect(self.server)
                    .with_context(|| format!("connecting to {}", self.server))?,
                None,
            ),
        };
        stream.set_nodelay(true)?;
        // A server that stops answering fails the check instead of hanging it.
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok((stream, core))
    }

    /// A key name starting `stem` that core `core % cores` owns.
    pub fn key_on(&self, stem: &str, core: usize) -> String {
        let want = core % self.cores();
        (0..)
            .map(|j| format!("{stem}.{j}"))
            .find(|k| self.owner(k.as_bytes()) == want)
            .expect("some suffix lands on every core")
    }
}

/// A tag unique to this run (time and process), so its keys start absent.
pub fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}", nanos ^ (std::process::id() as u64) << 40)
}

/// One violation, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// Operations in the window it was found in.
    pub window_ops: usize,
    /// What the key could hold when the window began (for the smallest
    /// history: `unknown` when its operations contradict one another
    /// whatever it held).
    pub starts: Vec<String>,
    /// The smallest history found, in invocation order.
    pub ops: Vec<String>,
    /// The whole window it was found in (JSON only; its first 200
    /// operations), times from the same origin as `ops`.
    pub window: Vec<String>,
}

/// What a check did and found (`--json` writes it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// The configuration.
    pub config: Option<CheckConfig>,
    /// Server cores that own keys (1: none do, or one does).
    pub server_cores: usize,
    /// Connections opened on each core (by the shard-aware port); empty
    /// when the kernel placed them.
    pub connections_per_core: Vec<usize>,
    /// Seconds the operations ran.
    pub elapsed_s: f64,
    /// Operations checked, replies and maybe-applied ones alike.
    pub ops: u64,
    /// Of those, operations that got no reply.
    pub maybe_ops: u64,
    /// Operations by command.
    pub ops_by_kind: std::collections::BTreeMap<String, u64>,
    /// Keys whose histories were checked.
    pub keys: u64,
    /// Windows searched.
    pub windows: u64,
    /// Operations in the largest window.
    pub max_window_ops: u64,
    /// Windows whose search ran over its budget.
    pub inconclusive_windows: u64,
    /// Epochs the run was cut into.
    pub epochs: u64,
    /// Connections killed mid-operation.
    pub kills: u64,
    /// CPU seconds the checker spent.
    pub checker_cpu_s: f64,
    /// Checker CPU microseconds per operation.
    pub checker_us_per_op: f64,
    /// Checker CPU microseconds per window.
    pub checker_us_per_window: f64,
    /// Longest time spent on one window, in milliseconds.
    pub max_window_ms: f64,
    /// Write-order: what was checked.
    pub order: Option<order::OrderCounts>,
    /// Error replies and broken connections (not killed on purpose).
    pub errors: u64,
    /// A few of those, described.
    pub error_samples: Vec<String>,
    /// Every violation found.
    pub violations: Vec<Violation>,
    /// Violations beyond those described (the first 20 are).
    pub violations_more: u64,
}

impl CheckReport {
    /// True when the server broke a promise or misbehaved.
    pub fn failed(&self) -> bool {
        self.errors > 0 || !self.violations.is_empty()
    }

    pub(crate) fn error(&mut self, what: String) {
        self.errors += 1;
        if self.error_samples.len() < 10 {
            self.error_samples.push(what);
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = self.config.as_ref().map(|c| c.mode);
        writeln!(
            f,
            "check {}: {} connections over {} server core(s) {:?}, {:.1} s",
            match mode {
                Some(Mode::WriteOrder) => "write-order",
                _ => "linearizable",
            },
            self.config.as_ref().map_or(0, |c| c.connections),
            self.server_cores,
            self.connections_per_core,
            self.elapsed_s
        )?;
        if let Some(o) = &self.order {
            writeln!(
                f,
                "  {} key pairs over {} owner pairs; {} writer rounds; {} reads of b then a checked ({} saw a newer a)",
                o.pairs, o.owner_pairs, o.rounds, o.checked, o.a_newer
            )?;
        } else {
            writeln!(
                f,
                "  {} operations ({} maybe applied) on {} keys, {} windows (largest {} ops, {} inconclusive), {} epochs, {} kills",
                self.ops,
                self.maybe_ops,
                self.keys,
                self.windows,
                self.max_window_ops,
                self.inconclusive_windows,
                self.epochs,
                self.kills
            )?;
            let kinds: Vec<String> = self
                .ops_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(f, "  by command: {}", kinds.join(", "))?;
            writeln!(
                f,
                "  checker: {:.2} s CPU, {:.2} us per operation, {:.1} us per window, longest window {:.1} ms",
                self.checker_cpu_s,
                self.checker_us_per_op,
                self.checker_us_per_window,
                self.max_window_ms
            )?;
        }
        if self.errors > 0 {
            writeln!(f, "  errors: {}", self.errors)?;
            for e in &self.error_samples {
                writeln!(f, "    {e}")?;
            }
        }
        for v in &self.violations {
            writeln!(
                f,
                "VIOLATION on key {} ({} operations in its window); it could hold: {}",
                v.key,
                v.window_ops,
                v.starts.join(" | ")
            )?;
            writeln!(f, "  smallest history found ({} operations):", v.ops.len())?;
            for op in &v.ops {
                writeln!(f, "    {op}")?;
            }
        }
        if self.violations_more > 0 {
            writeln!(f, "  ...and {} more violations", self.violations_more)?;
        }
        if self.failed() {
            writeln!(f, "FAILED")
        } else {
            writeln!(f, "passed")
        }
    }
}

/// `loadgen --check ...`: runs the check, prints it, writes `--json`;
/// `Ok(false)` when the server failed it.
pub fn main(cfg: &CheckConfig, json: Option<&std::path::Path>) -> anyhow::Result<bool> {
    let report = run(cfg)?;
    print!("{report}");
    let _ = std::io::stdout().flush();
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(!report.failed())
}
