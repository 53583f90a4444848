//! Configuration: built-in defaults, an optional TOML file, command-line
//! overrides, and validation that names the setting at fault.
//!
//! Precedence is defaults < file < flags. Every value is checked before
//! anything starts, so a bad setting stops start-up with one clear line
//! rather than a half-started server.
//!
//! This file holds what a configuration is ([`Config`], with its
//! defaults); the layers it is read from are in `cli.rs` (flags and file),
//! building it from them in `merge.rs` ([`Config::from_cli`]), the value
//! syntaxes in `parse.rs`, and the errors, which name their
//! [`Setting`], in `error.rs`.

mod cli;
mod error;
mod merge;
mod parse;

pub use cli::Cli;
pub use error::{ConfigError, Origin, Setting};
pub use parse::{parse_cpu_list, parse_size};

use clap::ValueEnum;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which runtime serves connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// One pinned single-threaded runtime per core; each core owns its
    /// shards and forwards requests for the others' keys.
    ThreadPerCore,
    /// tokio's work-stealing runtime; shards are shared behind locks.
    WorkStealing,
}

impl RuntimeKind {
    /// The name used on the command line and in `stats`.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::ThreadPerCore => "thread-per-core",
            RuntimeKind::WorkStealing => "work-stealing",
        }
    }
}

/// The validated configuration the server runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Address all listeners bind (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Worker threads.
    pub threads: usize,
    /// CPU of each thread, `threads` entries (meaningless when not pinning).
    pub cpus: Vec<usize>,
    /// Pin each thread to its CPU.
    pub pin: bool,
    /// Why `pin` is what it is (the start-up log says it).
    pub pin_rule: PinRule,
    /// Number of shards.
    pub shards: usize,
    /// Item memory in bytes, split evenly over shards.
    pub memory: usize,
    /// Largest item in bytes.
    pub max_item_size: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Bytes of replies a connection may queue before it stops taking
    /// requests and writes (see `server::plan`).
    pub output_budget: usize,
    /// Which runtime to use.
    pub runtime: RuntimeKind,
    /// Interval between expiry passes.
    pub ttl_tick: Duration,
    /// Thread-per-core: the longest to poll for awaited replies before
    /// sleeping (zero: never); see `server::spin`.
    pub spin: Duration,
    /// Connections idle this long are closed (zero: never).
    pub idle_timeout: Duration,
    /// Slab class growth factor.
    pub slab_growth_factor: f64,
    /// Smallest slab chunk in bytes.
    pub slab_min_chunk: usize,
    /// Slab page size in bytes.
    pub slab_page_size: usize,
    /// Whether the `shutdown` command is honoured.
    pub enable_shutdown: bool,
    /// The shard-aware port (0: none); see `server::shard_port`.
    pub shard_aware_port: u16,
    /// Thread-per-core: thread `i` also listens on this port plus `i`
    /// and owns every key sent there (0: none); see docs/per-core-ports.md.
    pub port_per_core: u16,
    /// TLS, when it is on.
    pub tls: Option<TlsConfig>,
    /// Longest a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// The `user:password` file clients must authenticate against, if any;
    /// read when the server starts.
    pub auth_file: Option<PathBuf>,
}

/// TLS settings; the files are read when the server starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain (PEM), the server's certificate first.
    pub cert: PathBuf,
    /// The certificate's private key (PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) a client certificate must chain to; none: no
    /// client certificate is asked for.
    pub ca: Option<PathBuf>,
    /// Where the TLS listener binds; none: `listen` speaks TLS and there is
    /// no plaintext listener.
    pub listen: Option<SocketAddr>,
}

const MIB: usize = 1024 * 1024;

/// Why the threads are pinned or not.
///
/// The default follows what was measured (docs/performance.md, "Pinning
/// only where it pays"): a thread pinned to a CPU it shares with other busy
/// processes (the clients, a proxy, the kernel's own work) cannot move off
/// it when they run, and every request forwarded to it waits behind them;
/// an unpinned thread follows the free CPU, and the kernel runs a woken
/// thread where the waker ran, which is what makes a hop cheap at light
/// load. Pinning pays only where the server's CPUs are its own, which the
/// server can only infer: it has them when it leaves some of the CPUs it
/// may use to everything else (`--threads` below the allowed count, as
/// `configs/many-core.toml` leaves CPU 0). Seastar's `--overprovisioned`
/// is the same choice made by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinRule {
    /// `--pin`, `--no-pin` or the file's `pin` said so.
    Given,
    /// `--cpus` (or the file's `cpus`) named the CPUs: pinned to them.
    CpusNamed,
    /// Fewer threads than allowed CPUs: the rest are left to other work,
    /// so each thread gets a CPU of its own.
    LeavesCpus,
    /// As many threads as allowed CPUs (or more): every CPU is shared with
    /// whatever else runs, so threads are left to the scheduler.
    SharesEveryCpu,
}

impl PinRule {
    /// The reason, as the start-up log gives it.
    pub fn why(self) -> &'static str {
        match self {
            PinRule::Given => "as configured",
            PinRule::CpusNamed => "--cpus names the CPUs",
            PinRule::LeavesCpus => {
                "fewer threads than allowed CPUs leave the rest to other work, \
                 so each thread has a CPU of its own"
            }
            PinRule::SharesEveryCpu => {
                "a thread for every allowed CPU shares each one with the clients \
                 and the kernel, where a pinned thread cannot move off a busy CPU \
                 (--pin to pin anyway)"
            }
        }
    }
}

impl Config {
    /// Built-in defaults for a machine whose allowed CPUs are `allowed`.
    pub fn defaults(allowed: &[usize]) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 11211)),
            threads: allowed.len().max(1),
            cpus: allowed.to_vec(),
            // One thread per allowed CPU: the server shares every CPU with
            // everything else on the machine, so it is not pinned (PinRule).
            pin: false,
            pin_rule: PinRule::SharesEveryCpu,
            shards: allowed.len().max(1),
            memory: 64 * MIB,
            max_item_size: MIB,
            max_connections: 1024,
            output_budget: 256 * 1024,
            runtime: RuntimeKind::ThreadPerCore,
            ttl_tick: Duration::from_millis(100),
            spin: Duration::from_micros(50),
            idle_timeout: Duration::ZERO,
            slab_growth_factor: 1.25,
            slab_min_chunk: 48,
            slab_page_size: MIB,
            enable_shutdown: false,
            shard_aware_port: 0,
            port_per_core: 0,
            tls: None,
            tls_handshake_timeout: Duration::from_secs(5),
            auth_file: None,
        }
    }

    /// Where plaintext clients connect: `listen`, unless TLS took it.
    pub fn plaintext_listen(&self) -> Option<SocketAddr> {
        match &self.tls {
            Some(TlsConfig { listen: None, .. }) => None,
            _ => Some(self.listen),
        }
    }

    /// Where TLS clients connect, when TLS is on.
    pub fn tls_listen(&self) -> Option<SocketAddr> {
        self.tls
            .as_ref()
            .map(|tls| tls.listen.unwrap_or(self.listen))
    }

    /// The per-core ports (`--port-per-core`), thread `i`'s at index `i`;
    /// empty when off.
    /// (Building a configuration refuses the setting under work-stealing;
    /// one made in code that sets it anyway gets no ports there.)
    pub fn per_core_ports(&self) -> Vec<u16> {
        match self.port_per_core {
            _ if self.runtime != RuntimeKind::ThreadPerCore => Vec::new(),
            0 => Vec::new(),
            // Checked when the configuration was built: they all fit.
            base => (0..self.threads).map(|i| base + i as u16).collect(),
        }
    }

    /// The sizing of shard `index`.
    pub fn shard_config(&self, index: usize) -> crate::storage::ShardConfig {
        crate::storage::ShardConfig {
            memory_limit: crate::storage::memory_share(self.memory, index, self.shards),
            max_item_size: self.max_item_size,
            slab_page_size: self.slab_page_size,
            slab_min_chunk: self.slab_min_chunk,
            slab_growth_factor: self.slab_growth_factor,
            index,
            shard_count: self.shards,
        }
    }
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    cpus.sort_unstable();
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus
}

#[cfg(test)]
mod tests;
