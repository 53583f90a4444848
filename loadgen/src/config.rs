//! Command-line flags and the validated workload configuration.
//!
//! [`Args`] is what clap parses; [`Config`] is the checked, typed form that
//! [`crate::run()`] consumes. Tests and other crates usually start from
//! [`Config::default`] and change a few fields.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use serde::Serialize;

/// Flags of a load run, as parsed by clap.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Server to load, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:11211")]
    pub server: String,
    /// Speak TLS, trusting server certificates this CA (PEM) signed; the
    /// certificate must name the server's IP address.
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Total number of TCP connections, spread round-robin over the threads.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Number of loadgen threads, each a single-threaded tokio runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// CPUs to pin the threads to, e.g. `0-3,6`; thread i gets the i-th CPU
    /// of the list (cycling). Unpinned when absent.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Length of the measured phase, e.g. `5s`, `500ms`, `1m`.
    #[arg(long, default_value = "5s")]
    pub duration: String,
    /// Closed loop: a connection sends only once at least N of its
    /// pipeline slots are free, so its requests leave in batches of at
    /// least N [default: half the pipeline, at least 1; 1 refills after
    /// every reply].
    #[arg(long)]
    pub refill: Option<usize>,
    /// Unmeasured load before the measured phase.
    #[arg(long, default_value = "1s")]
    pub warmup: String,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Prefix of every key; the key is the prefix followed by its index.
    #[arg(long, default_value = "key:")]
    pub key_prefix: String,
    /// Value size in bytes, `N` or `MIN-MAX` (uniform).
    #[arg(long, default_value = "32")]
    pub value_size: String,
    /// Fraction of requests that are gets (the rest are sets), 0..=1.
    #[arg(long, default_value_t = 0.9)]
    pub get_ratio: f64,
    /// Mixed operations instead of gets and sets: relative weights, e.g.
    /// `set=10,get=70,delete=5,append=5,incr=10` (ops left out weigh 0).
    /// `incr` works on a subset of keys that hold counters (see
    /// docs/loadgen.md).
    #[arg(long, conflicts_with = "get_ratio", value_name = "OP=WEIGHT,...")]
    pub mix: Option<String>,
    /// Key popularity: `uniform` or `zipf:S` (S > 0, e.g. `zipf:0.99`).
    #[arg(long, default_value = "uniform")]
    pub distribution: String,
    /// Keys per get: N > 1 sends `get k1 ... kN` (multi-get); the keys
    /// are drawn independently, so they usually live on different shards.
    #[arg(long, default_value_t = 1)]
    pub multiget: usize,
    /// Spread keys over several servers, HOST:PORT,HOST:PORT,... (instead
    /// of --server): each connection slot opens one socket per server and
    /// sends each key to the server a consistent hash (jump hash of the
    /// key) picks, as a client with a list of memcached servers does. With
    /// corecache's per-core ports (`--port-per-core`) as the list, every
    /// key reaches the core that keeps it.
    #[arg(long, value_name = "ADDR,...", conflicts_with_all = ["server", "shard_aware"])]
    pub servers: Option<String>,
    /// Route each key to the server core that owns it: read the server's
    /// rule from `stats settings`, open one connection per core per
    /// `--connections` slot on its shard-aware port (from local ports the
    /// server maps to each core), and send each key to its owner's.
    #[arg(long)]
    pub shard_aware: bool,
    /// Store every key once before the warmup.
    #[arg(long)]
    pub prefill: bool,
    /// Open loop: this many requests per second in total, on a fixed
    /// schedule, latency measured from the intended send time.
    /// Closed loop when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seed of the request generators; the same seed gives the same
    /// per-connection request sequences.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the full report as JSON to this path.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Check every value read: `--verify` checks hits, `--verify=strict`
    /// also fails on a miss or stale read of a key this run wrote. Use with
    /// `--prefill` when the server may hold values of an unverified run.
    #[arg(long, num_args = 0..=1, default_missing_value = "on", value_name = "strict")]
    pub verify: Option<String>,
    /// `--check` and its flags: a consistency check instead of a load.
    #[command(flatten)]
    pub check: crate::lincheck::CheckArgs,
}

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Key of rank i (0-based) has weight 1/(i+1)^s.
    Zipf {
        /// The exponent.
        s: f64,
    },
}

/// `--mix`: relative weights of the operations (a weight of 0 = never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Mix {
    /// `set`.
    pub set: u32,
    /// `get` (a multi-get with `--multiget`).
    pub get: u32,
    /// `delete`.
    pub delete: u32,
    /// `append`.
    pub append: u32,
    /// `incr`, on counter keys.
    pub incr: u32,
}

impl Mix {
    /// Sum of the weights.
    pub fn total(&self) -> u64 {
        [self.set, self.get, self.delete, self.append, self.incr]
            .iter()
            .map(|&w| w as u64)
            .sum()
    }
}

/// Parses `op=weight,...` (ops `set`, `get`, `delete`, `append`, `incr`).
pub fn parse_mix(s: &str) -> anyhow::Result<Mix> {
    let mut mix = Mix::default();
    let mut seen = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (op, weight) = part
            .split_once('=')
            .with_context(|| format!("--mix: {part:?} is not OP=WEIGHT"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("--mix: bad weight in {part:?}"))?;
        let op = op.trim();
        let slot = match op {
            "set" => &mut mix.set,
            "get" => &mut mix.get,
            "delete" => &mut mix.delete,
            "append" => &mut mix.append,
            "incr" => &mut mix.incr,
            _ => bail!("--mix: unknown operation {op:?} (set, get, delete, append, incr)"),
        };
        if seen.contains(&op) {
            bail!("--mix: {op} given twice");
        }
        seen.push(op);
        *slot = weight;
    }
    if mix.total() == 0 {
        bail!("--mix needs a positive weight");
    }
    Ok(mix)
}

/// What `--verify` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Values are a fixed pattern and are not checked.
    Off,
    /// Every hit must decode to the requested key with a valid checksum.
    Hits,
    /// As `Hits`, and a get must return exactly the last version this run
    /// stored for the key; a miss of a stored key is a failure.
    Strict,
}

/// Validated workload and client configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Server address (with `servers`, the first of them).
    pub server: SocketAddr,
    /// `--servers`: every server keys are spread over, in order; empty =
    /// only `server`.
    pub servers: Vec<SocketAddr>,
    /// TLS: the CA that signed the server's certificate; `None` = plaintext.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Total connections.
    pub connections: usize,
    /// Client threads.
    pub threads: usize,
    /// CPUs to pin client threads to (cycled); empty = unpinned.
    pub cpus: Vec<usize>,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Closed loop: free slots a connection waits for before it sends
    /// (`None`: half the pipeline; see [`Config::effective_refill`]).
    pub refill: Option<usize>,
    /// Measured phase.
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Warmup phase.
    #[serde(serialize_with = "ser_secs")]
    pub warmup: Duration,
    /// Number of keys.
    pub keys: u64,
    /// Key prefix.
    pub key_prefix: String,
    /// Smallest value size in bytes.
    pub value_min: usize,
    /// Largest value size in bytes.
    pub value_max: usize,
    /// Fraction of gets (with `mix`, its get share, for the record).
    pub get_ratio: f64,
    /// `--mix`: operation weights; `None` = gets and sets by `get_ratio`.
    pub mix: Option<Mix>,
    /// Key distribution.
    pub distribution: Distribution,
    /// Keys per get request (1 = plain get).
    pub multiget: usize,
    /// Store every key once first.
    pub prefill: bool,
    /// Send each key on a connection to its owner core (see
    /// [`crate::shard`]).
    pub shard_aware: bool,
    /// Total open-loop rate in requests/s; `None` = closed loop.
    pub rate: Option<f64>,
    /// RNG seed.
    pub seed: u64,
    /// Verification mode.
    pub verify: VerifyMode,
    /// Print a live progress line (only honoured when stdout is a terminal).
    #[serde(skip)]
    pub progress: bool,
    /// How long after the measured phase in-flight replies may take before
    /// their connection counts as failed (`errors.io`).
    #[serde(skip)]
    pub drain_timeout: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Smallest value that can carry the `--verify` header.
pub const VERIFY_MIN_VALUE: usize = crate::verify::HEADER_LEN;

impl Default for Config {
    fn default() -> Self {
        Config {
            server: SocketAddr::from(([127, 0, 0, 1], 11211)),
            servers: Vec::new(),
            tls_ca: None,
            connections: 50,
            threads: 1,
            cpus: Vec::new(),
            pipeline: 1,
            refill: None,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            keys: 100_000,
            key_prefix: "key:".into(),
            value_min: 32,
            value_max: 32,
            get_ratio: 0.9,
            mix: None,
            distribution: Distribution::Uniform,
            multiget: 1,
            prefill: false,
            shard_aware: false,
            rate: None,
            seed: 1,
            verify: VerifyMode::Off,
            progress: false,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Parses and validates command-line [`Args`].
    pub fn from_args(a: &Args) -> anyhow::Result<Config> {
        let resolve = |flag: &str, addr: &str| -> anyhow::Result<SocketAddr> {
            addr.to_socket_addrs()
                .with_context(|| format!("resolving {flag} {addr}"))?
                .next()
                .with_context(|| format!("{flag} {addr} resolves to nothing"))
        };
        let servers = match &a.servers {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|addr| resolve("--servers", addr))
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let server = match servers.first() {
            Some(first) => *first,
            None => resolve("--server", &a.server)?,
        };
        if a.servers.is_some() && servers.is_empty() {
            bail!("--servers needs at least one HOST:PORT");
        }
        let (value_min, value_max) = parse_size_range(&a.value_size)?;
        let verify = match a.verify.as_deref() {
            None => VerifyMode::Off,
            Some("on") | Some("") => VerifyMode::Hits,
            Some("strict") => VerifyMode::Strict,
            Some(o) => bail!("--verify takes no value or `strict`, not {o:?}"),
        };
        let mix = a.mix.as_deref().map(parse_mix).transpose()?;
        let c = Config {
            server,
            servers,
            tls_ca: a.tls_ca.clone(),
            connections: a.connections,
            threads: a.threads,
            cpus: match &a.cpus {
                Some(s) => parse_cpu_list(s)?,
                None => Vec::new(),
            },
            pipeline: a.pipeline,
            refill: a.refill,
            duration: parse_duration(&a.duration).context("--duration")?,
            warmup: parse_duration(&a.warmup).context("--warmup")?,
            keys: a.keys,
            key_prefix: a.key_prefix.clone(),
            value_min,
            value_max,
            get_ratio: match mix {
                Some(m) => m.get as f64 / m.total() as f64,
                None => a.get_ratio,
            },
            mix,
            distribution: parse_distribution(&a.distribution)?,
            multiget: a.multiget,
            prefill: a.prefill,
            shard_aware: a.shard_aware,
            rate: a.rate,
            seed: a.seed,
            verify,
            progress: true,
            ..Config::default()
        };
        c.validate()?;
        Ok(c)
    }

    /// Free pipeline slots a closed-loop connection waits for before it
    /// sends: `--refill`, or half the pipeline, within `1..=pipeline`.
    pub fn effective_refill(&self) -> usize {
        self.refill
            .unwrap_or(self.pipeline / 2)
            .clamp(1, self.pipeline.max(1))
    }

    /// Checks the invariants [`crate::run()`] relies on.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.connections == 0 || self.threads == 0 || self.pipeline == 0 {
            bail!("--connections, --threads and --pipeline must be at least 1");
        }
        if self.refill.is_some_and(|r| r == 0 || r > self.pipeline) {
            bail!("--refill must be within 1..=--pipeline");
        }
        if !(1..=100).contains(&self.multiget) {
            bail!("--multiget must be within 1..=100");
        }
        if self.keys == 0 {
            bail!("--keys must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.get_ratio) {
            bail!("--get-ratio must be within 0..=1");
        }
        if let Some(m) = self.mix {
            if m.total() == 0 {
                bail!("--mix needs a positive weight");
            }
            // Only a set resets a value's length; without sets, appends
            // from other connections would grow values without bound.
            if m.append > 0 && m.set == 0 {
                bail!("--mix: append needs set (sets bound the values appends grow)");
            }
            // Appends move off counter keys to the next key of the same
            // connection's share, which must exist.
            if m.append > 0 && m.incr > 0 && self.keys < 2 * self.connections as u64 {
                bail!("--mix with append and incr needs --keys >= 2 x --connections");
            }
        }
        if self.value_min > self.value_max || self.value_max > 1 << 20 {
            bail!("--value-size must be MIN <= MAX <= 1 MiB");
        }
        if self.key_prefix.len() + 20 > 250 || self.key_prefix.bytes().any(|b| b <= b' ') {
            bail!("--key-prefix must be short and contain no spaces or control bytes");
        }
        if self.duration.is_zero() {
            bail!("--duration must be positive");
        }
        // The shard map is read over plaintext `stats`, and the local-port
        // trick picks a core per TCP connection, not per TLS session.
        if self.shard_aware && self.tls_ca.is_some() {
            bail!("--shard-aware does not work with --tls-ca");
        }
        if self.shard_aware && !self.servers.is_empty() {
            bail!("--servers and --shard-aware are two ways to route keys: pick one");
        }
        if self.servers.len() > 1024 {
            bail!("--servers takes at most 1024 servers");
        }
        if self
            .servers
            .first()
            .is_some_and(|first| *first != self.server)
        {
            bail!("with --servers, the server is the first of them");
        }
        // One TLS name checked for every server: its IP address.
        if self.tls_ca.is_some() && self.servers.iter().any(|s| s.ip() != self.server.ip()) {
            bail!("--servers with --tls-ca needs every server on one IP address");
        }
        if let Some(r) = self.rate
            && !(r > 0.0 && r.is_finite())
        {
            bail!("--rate must be a positive number");
        }
        if let Distribution::Zipf { s } = self.distribution
            && !(s > 0.0 && s.is_finite())
        {
            bail!("zipf exponent must be positive");
        }
        if self.verify != VerifyMode::Off && self.value_min < VERIFY_MIN_VALUE {
            bail!("--verify needs values of at least {VERIFY_MIN_VALUE} bytes");
        }
        if self.verify == VerifyMode::Strict && self.keys < self.connections as u64 {
            bail!("--verify=strict partitions keys over connections: need --keys >= --connections");
        }
        Ok(())
    }
}

/// Parses a humane duration: `250ms`, `5s`, `1.5s`, `2m`, `100us`; a bare
/// number is seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => bail!("unknown duration unit {u:?} in {s:?}"),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        bail!("bad duration {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a CPU list such as `0-3,6` into `[0, 1, 2, 3, 6]`.
pub fn parse_cpu_list(s: &str) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().with_context(|| format!("bad CPU {a:?}"))?;
                let b: usize = b.trim().parse().with_context(|| format!("bad CPU {b:?}"))?;
                if a > b {
                    bail!("bad CPU range {part:?}");
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().with_context(|| format!("bad CPU {part:?}"))?),
        }
    }
    if out.is_empty() {
        bail!("empty CPU list {s:?}");
    }
    Ok(out)
}

/// Parses `N` or `MIN-MAX` into an inclusive range.
pub fn parse_size_range(s: &str) -> anyhow::Result<(usize, usize)> {
    let parse = |x: &str| -> anyhow::Result<usize> {
        x.trim()
            .parse()
            .with_context(|| format!("bad --value-size {s:?}"))
    };
    match s.split_once('-') {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => {
            let n = parse(s)?;
            Ok((n, n))
        }
    }
}

/// Parses `uniform` or `zipf:S`.
pub fn parse_distribution(s: &str) -> anyhow::Result<Distribution> {
    if s == "uniform" {
        return Ok(Distribution::Uniform);
    }
    if let Some(x) = s.strip_prefix("zipf:") {
        let s: f64 = x
            .parse()
            .with_context(|| format!("bad zipf exponent {x:?}"))?;
        return Ok(Distribution::Zipf { s });
    }
    bail!("--distribution must be `uniform` or `zipf:S`, not {s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn refill_defaults_to_half_the_pipeline() {
        let c = |pipeline, refill| Config {
            pipeline,
            refill,
            ..Config::default()
        };
        assert_eq!(c(16, None).effective_refill(), 8);
        assert_eq!(c(1, None).effective_refill(), 1);
        assert_eq!(c(3, None).effective_refill(), 1);
        assert_eq!(c(16, Some(1)).effective_refill(), 1);
        assert!(c(16, Some(17)).validate().is_err());
        assert!(c(16, Some(0)).validate().is_err());
        assert!(c(16, Some(16)).validate().is_ok());
    }

    #[test]
    fn sizes_and_distributions() {
        assert_eq!(parse_size_range("32").unwrap(), (32, 32));
        assert_eq!(parse_size_range("10-100").unwrap(), (10, 100));
        assert_eq!(
            parse_distribution("uniform").unwrap(),
            Distribution::Uniform
        );
        assert_eq!(
            parse_distribution("zipf:0.99").unwrap(),
            Distribution::Zipf { s: 0.99 }
        );
        assert!(parse_distribution("zipf").is_err());
    }

    #[test]
    fn mixes() {
        assert_eq!(
            parse_mix("set=10,get=70,delete=5,append=5,incr=10").unwrap(),
            Mix {
                set: 10,
                get: 70,
                delete: 5,
                append: 5,
                incr: 10
            }
        );
        assert_eq!(
            parse_mix(" get = 3 , incr=1").unwrap(),
            Mix {
                get: 3,
                incr: 1,
                ..Mix::default()
            }
        );
        for bad in [
            "",
            "get=0",
            "get",
            "get=x",
            "get=1,get=2",
            "cas=1",
            "get=-1",
        ] {
            assert!(parse_mix(bad).is_err(), "{bad:?}");
        }
        let c = |mix: &str, keys, connections| Config {
            mix: Some(parse_mix(mix).unwrap()),
            keys,
            connections,
            ..Config::default()
        };
        assert!(c("get=1,append=1", 100, 10).validate().is_err());
        assert!(c("set=1,append=1,incr=1", 19, 10).validate().is_err());
        assert!(c("set=1,append=1,incr=1", 20, 10).validate().is_ok());
        assert!(c("get=1,incr=1", 10, 10).validate().is_ok());
    }
}
