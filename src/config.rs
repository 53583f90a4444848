//! Configuration: built-in defaults, an optional TOML file, command-line
//! overrides, and validation that names the setting at fault.
//!
//! Precedence is defaults < file < flags. Every value is checked before
//! anything starts, so a bad setting stops start-up with one clear line
//! rather than a half-started server.

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
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

/// Command-line flags. Every flag is optional so that the file and the
/// defaults can fill in what is not given.
#[derive(Parser, Debug, Default)]
#[command(
    name = "corecache",
    version,
    about = "A memcached-compatible, thread-per-core, shared-nothing cache server"
)]
pub struct Cli {
    /// TOML configuration file (see configs/default.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on: an IP, or IP:PORT [default: 127.0.0.1:11211].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// TCP port; overrides the port in --listen [default: 11211].
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Worker threads [default: the CPUs this process may use].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// CPUs to pin threads to, e.g. `0-3,6` [default: the first N allowed].
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Do not pin threads to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Shards the keyspace is split into; at least --threads [default: threads].
    #[arg(long)]
    pub shards: Option<usize>,
    /// Item memory in MiB (a size with a unit, like `1g`, also works) [default: 64].
    #[arg(short = 'm', long, value_name = "MiB")]
    pub memory: Option<String>,
    /// Largest item, e.g. `1m`, `512k` [default: 1m].
    #[arg(short = 'I', long, value_name = "SIZE")]
    pub max_item_size: Option<String>,
    /// Most simultaneous connections [default: 1024].
    #[arg(short = 'c', long)]
    pub max_connections: Option<usize>,
    /// Replies a connection may have queued before it takes no more
    /// requests until the client reads them, e.g. `1m` [default: 256k].
    #[arg(long, value_name = "SIZE")]
    pub output_budget: Option<String>,
    /// thread-per-core or work-stealing [default: thread-per-core].
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeKind>,
    /// How often expired items are reclaimed, e.g. `100ms` [default: 100ms].
    #[arg(long, value_name = "DURATION")]
    pub ttl_tick: Option<String>,
    /// Thread-per-core: the longest a thread whose connections wait for
    /// another thread's replies polls for them before it sleeps, from the
    /// last message, e.g. `50us`; 0 = never [default: 50us]. It spares the
    /// other thread a wake-up and the waiting clients its latency, for CPU
    /// an idle core would not use anyway. The window halves after a spin
    /// that catches nothing and doubles after one that does; set 0 when
    /// the server shares its CPUs with other busy processes.
    #[arg(long, value_name = "DURATION")]
    pub spin: Option<String>,
    /// Close a connection that has sent nothing for this long, e.g. `300s`
    /// (memcached's `idle_timeout`); whole seconds, 0 = never [default: 0].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Growth factor between slab class sizes [default: 1.25].
    #[arg(long, value_name = "FACTOR")]
    pub slab_growth_factor: Option<f64>,
    /// Smallest slab chunk, in bytes of item data [default: 48].
    #[arg(long, value_name = "BYTES")]
    pub slab_min_chunk: Option<usize>,
    /// Slab page size, e.g. `1m`; at least --max-item-size [default: 1m].
    #[arg(long, value_name = "SIZE")]
    pub slab_page_size: Option<String>,
    /// Allow the `shutdown` command to stop the server.
    #[arg(long)]
    pub enable_shutdown: bool,
    /// A second port, on the same address: a connection accepted there is
    /// served by thread `client port % threads`, so a client that picks
    /// its local port reaches each key's owner directly; 0 = off
    /// [default: 0].
    #[arg(long, value_name = "PORT")]
    pub shard_aware_port: Option<u16>,
    /// TLS certificate chain (PEM), server certificate first. With
    /// --tls-key it turns TLS on: on --listen, or on --tls-listen if given.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): TLS clients must present a certificate signed
    /// by one of them, or the handshake fails.
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// A TLS listener at this IP:PORT beside the plaintext one on --listen
    /// [default: none; --listen itself speaks TLS].
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<String>,
    /// Longest a TLS handshake may take before the connection is closed,
    /// e.g. `5s` [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub tls_handshake_timeout: Option<String>,
    /// Require memcached's text-protocol authentication: `user:password`
    /// lines; a client first sends `set <any> 0 0 <len>` with data `user
    /// password` (memcached's -Y).
    #[arg(short = 'Y', long, value_name = "PATH")]
    pub auth_file: Option<PathBuf>,
}

/// The configuration file: the same settings as the flags, in TOML.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    listen: Option<String>,
    port: Option<u16>,
    threads: Option<usize>,
    cpus: Option<String>,
    pin: Option<bool>,
    shards: Option<usize>,
    memory: Option<toml::Value>,
    max_item_size: Option<String>,
    max_connections: Option<usize>,
    output_budget: Option<String>,
    runtime: Option<RuntimeKind>,
    ttl_tick: Option<String>,
    spin: Option<String>,
    idle_timeout: Option<String>,
    slab_growth_factor: Option<f64>,
    slab_min_chunk: Option<usize>,
    slab_page_size: Option<String>,
    enable_shutdown: Option<bool>,
    shard_aware_port: Option<u16>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_listen: Option<String>,
    tls_handshake_timeout: Option<String>,
    auth_file: Option<PathBuf>,
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

/// A setting that cannot be used, with the setting's name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{setting}: {reason}")]
pub struct ConfigError {
    /// The flag or key at fault, e.g. `--threads`.
    pub setting: String,
    /// What is wrong with it.
    pub reason: String,
}

fn error(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_string(),
        reason: reason.into(),
    }
}

const MIB: usize = 1024 * 1024;

impl Config {
    /// Built-in defaults for a machine whose allowed CPUs are `allowed`.
    pub fn defaults(allowed: &[usize]) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 11211)),
            threads: allowed.len().max(1),
            cpus: allowed.to_vec(),
            pin: true,
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

    /// Builds the configuration from parsed flags, reading `--config` if
    /// given, against the CPUs this process may run on.
    pub fn from_cli(cli: &Cli, allowed: &[usize]) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::merge(cli, file, allowed)
    }

    /// Builds a configuration from TOML text and flags (for tests and tools).
    pub fn from_toml(text: &str, cli: &Cli, allowed: &[usize]) -> Result<Config, ConfigError> {
        let file = toml::from_str(text).map_err(|e| error("config", e.message()))?;
        Config::merge(cli, file, allowed)
    }

    fn merge(cli: &Cli, mut file: FileConfig, allowed: &[usize]) -> Result<Config, ConfigError> {
        let mut config = Config::defaults(allowed);
        (config.tls, config.tls_handshake_timeout) = merge_tls(cli, &mut file)?;
        // Each setting: the flag if given, else the file's, else the default.
        // The name reported is the one the value came from.
        let pick = |flag: Option<String>, key: Option<String>, name: &str| match (flag, key) {
            (Some(v), _) => Some((v, format!("--{name}"))),
            (None, Some(v)) => Some((v, format!("{name} (config file)"))),
            (None, None) => None,
        };

        if let Some((listen, name)) = pick(cli.listen.clone(), file.listen, "listen") {
            config.listen = parse_listen(&listen).map_err(|r| error(&name, r))?;
        }
        if let Some(port) = cli.port.or(file.port) {
            config.listen.set_port(port);
        }
        if let Some(tls) = config.tls.as_ref().and_then(|tls| tls.listen)
            && tls == config.listen
            && tls.port() != 0
        {
            return Err(error("--tls-listen", format!("{tls} is --listen already")));
        }
        let memory_file = file.memory.map(|v| match v {
            toml::Value::Integer(n) => n.to_string(),
            other => other.as_str().map(str::to_string).unwrap_or_default(),
        });
        if let Some((memory, name)) = pick(cli.memory.clone(), memory_file, "memory") {
            // A bare number is MiB, as in memcached's -m.
            config.memory = match memory.trim().parse::<usize>() {
                Ok(mib) => mib
                    .checked_mul(MIB)
                    .ok_or_else(|| error(&name, "too large"))?,
                Err(_) => parse_size(&memory).map_err(|r| error(&name, r))?,
            };
            if config.memory == 0 {
                return Err(error(&name, "must be more than 0"));
            }
        }
        if let Some((size, name)) = pick(
            cli.max_item_size.clone(),
            file.max_item_size,
            "max-item-size",
        ) {
            config.max_item_size = parse_size(&size).map_err(|r| error(&name, r))?;
            if config.max_item_size < 1024 {
                return Err(error(&name, "must be at least 1k"));
            }
        }
        if let Some((size, name)) = pick(
            cli.output_budget.clone(),
            file.output_budget,
            "output-budget",
        ) {
            config.output_budget = parse_size(&size).map_err(|r| error(&name, r))?;
            if config.output_budget < 4096 {
                return Err(error(&name, "must be at least 4k"));
            }
        }
        if let Some((size, name)) = pick(
            cli.slab_page_size.clone(),
            file.slab_page_size,
            "slab-page-size",
        ) {
            config.slab_page_size = parse_size(&size).map_err(|r| error(&name, r))?;
        } else {
            // Pages grow with the largest item unless set explicitly.
            config.slab_page_size = config.slab_page_size.max(config.max_item_size);
        }
        if let Some((tick, name)) = pick(cli.ttl_tick.clone(), file.ttl_tick, "ttl-tick") {
            config.ttl_tick = humantime::parse_duration(&tick)
                .map_err(|e| error(&name, format!("'{tick}' is not a duration ({e})")))?;
            if config.ttl_tick.is_zero() {
                return Err(error(&name, "must be more than 0"));
            }
        }
        if let Some((spin, name)) = pick(cli.spin.clone(), file.spin, "spin") {
            config.spin = humantime::parse_duration(&spin)
                .map_err(|e| error(&name, format!("'{spin}' is not a duration ({e})")))?;
            // A spin is meant to bridge one round trip, not to replace sleep.
            if config.spin > Duration::from_millis(1) {
                return Err(error(&name, "must be at most 1ms"));
            }
        }
        if let Some((idle, name)) =
            pick(cli.idle_timeout.clone(), file.idle_timeout, "idle-timeout")
        {
            config.idle_timeout = humantime::parse_duration(&idle)
                .map_err(|e| error(&name, format!("'{idle}' is not a duration ({e})")))?;
            // memcached counts idle time in whole seconds.
            if config.idle_timeout.subsec_nanos() != 0 {
                return Err(error(&name, "must be whole seconds (or 0 for none)"));
            }
        }
        if let Some(port) = cli.shard_aware_port.or(file.shard_aware_port) {
            // Sharing the listen port would let SO_REUSEPORT mix the two
            // kinds of listener on one port.
            if port != 0 && port == config.listen.port() {
                return Err(error(
                    "--shard-aware-port",
                    format!("{port} is the listen port; it needs a port of its own"),
                ));
            }
            // Nor the TLS port, when TLS listens on the same address.
            let tls = config
                .tls_listen()
                .filter(|tls| tls.ip() == config.listen.ip());
            if port != 0 && tls.is_some_and(|tls| tls.port() == port) {
                return Err(error(
                    "--shard-aware-port",
                    format!("{port} is the --tls-listen port; it needs a port of its own"),
                ));
            }
            config.shard_aware_port = port;
        }
        if let Some(max) = cli.max_connections.or(file.max_connections) {
            if max == 0 {
                return Err(error("--max-connections", "must be at least 1"));
            }
            config.max_connections = max;
        }
        if let Some(runtime) = cli.runtime.or(file.runtime) {
            config.runtime = runtime;
        }
        if let Some(factor) = cli.slab_growth_factor.or(file.slab_growth_factor) {
            if !(factor > 1.0 && factor <= 4.0) {
                return Err(error(
                    "--slab-growth-factor",
                    "must be above 1.0 and at most 4.0",
                ));
            }
            config.slab_growth_factor = factor;
        }
        if let Some(chunk) = cli.slab_min_chunk.or(file.slab_min_chunk) {
            if !(8..=65536).contains(&chunk) {
                return Err(error(
                    "--slab-min-chunk",
                    "must be between 8 and 65536 bytes",
                ));
            }
            config.slab_min_chunk = chunk;
        }
        config.auth_file = cli.auth_file.clone().or(file.auth_file);
        config.pin = !cli.no_pin && file.pin.unwrap_or(true);
        config.enable_shutdown = cli.enable_shutdown || file.enable_shutdown.unwrap_or(false);

        // Threads and CPUs: --cpus alone sets the thread count; --threads
        // alone takes the first N allowed CPUs.
        let cpus = match pick(cli.cpus.clone(), file.cpus, "cpus") {
            Some((list, name)) => {
                let cpus = parse_cpu_list(&list).map_err(|r| error(&name, r))?;
                if let Some(cpu) = cpus.iter().find(|cpu| !allowed.contains(cpu)) {
                    return Err(error(
                        &name,
                        format!("CPU {cpu} is not one this process may use (allowed: {allowed:?})"),
                    ));
                }
                Some((cpus, name))
            }
            None => None,
        };
        let threads = cli.threads.or(file.threads);
        if threads == Some(0) {
            return Err(error("--threads", "must be at least 1"));
        }
        match (threads, cpus) {
            (Some(n), Some((cpus, name))) => {
                if cpus.len() < n {
                    return Err(error(
                        &name,
                        format!("lists {} CPUs but --threads is {n}", cpus.len()),
                    ));
                }
                config.threads = n;
                config.cpus = cpus[..n].to_vec();
            }
            (None, Some((cpus, _))) => {
                config.threads = cpus.len();
                config.cpus = cpus;
            }
            (Some(n), None) => {
                config.threads = n;
                if config.pin && n > allowed.len() {
                    return Err(error(
                        "--threads",
                        format!(
                            "{n} threads but this process may use only {} CPUs (add --no-pin to run more)",
                            allowed.len()
                        ),
                    ));
                }
                config.cpus = allowed.iter().copied().cycle().take(n).collect();
            }
            (None, None) => {}
        }
        config.shards = cli.shards.or(file.shards).unwrap_or(config.threads);
        if config.shards < config.threads {
            return Err(error(
                "--shards",
                format!(
                    "{} is fewer than the {} threads",
                    config.shards, config.threads
                ),
            ));
        }
        if config.slab_page_size < config.max_item_size {
            return Err(error(
                "--slab-page-size",
                format!(
                    "{} bytes is smaller than --max-item-size ({} bytes)",
                    config.slab_page_size, config.max_item_size
                ),
            ));
        }
        let per_shard = config.memory / config.shards;
        if per_shard < config.slab_page_size {
            return Err(error(
                "--memory",
                format!(
                    "{} MiB over {} shards leaves {} KiB per shard, less than one slab page ({} KiB)",
                    config.memory / MIB,
                    config.shards,
                    per_shard / 1024,
                    config.slab_page_size / 1024
                ),
            ));
        }
        // The engine's own limits (class count, chunk ids per shard).
        crate::storage::validate_config(&config.shard_config(0)).map_err(|reason| {
            let setting = [
                ("slab page size", "--slab-page-size"),
                ("max item size", "--max-item-size"),
                ("slab growth factor", "--slab-growth-factor"),
                ("slab minimum chunk", "--slab-min-chunk"),
            ]
            .iter()
            .find(|(prefix, _)| reason.starts_with(prefix))
            .map_or("--memory", |(_, flag)| flag);
            error(setting, reason)
        })?;
        Ok(config)
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

/// The TLS settings: certificate and key together or neither; a CA or a
/// TLS listener only with them. Takes its keys out of `file`.
fn merge_tls(
    cli: &Cli,
    file: &mut FileConfig,
) -> Result<(Option<TlsConfig>, Duration), ConfigError> {
    fn pick<T>(flag: Option<T>, key: Option<T>, name: &str) -> Option<(T, String)> {
        match (flag, key) {
            (Some(v), _) => Some((v, format!("--{name}"))),
            (None, Some(v)) => Some((v, format!("{name} (config file)"))),
            (None, None) => None,
        }
    }
    let cert = pick(cli.tls_cert.clone(), file.tls_cert.take(), "tls-cert");
    let key = pick(cli.tls_key.clone(), file.tls_key.take(), "tls-key");
    let ca = pick(cli.tls_ca.clone(), file.tls_ca.take(), "tls-ca");
    let listen = pick(cli.tls_listen.clone(), file.tls_listen.take(), "tls-listen");
    let timeout = pick(
        cli.tls_handshake_timeout.clone(),
        file.tls_handshake_timeout.take(),
        "tls-handshake-timeout",
    );
    let timeout = match timeout {
        None => Config::defaults(&[0]).tls_handshake_timeout,
        Some((text, name)) => {
            let timeout = humantime::parse_duration(&text)
                .map_err(|e| error(&name, format!("'{text}' is not a duration ({e})")))?;
            if timeout.is_zero() {
                return Err(error(&name, "must be more than 0"));
            }
            timeout
        }
    };
    let (cert, key) = match (cert, key) {
        (Some((cert, _)), Some((key, _))) => (cert, key),
        (Some((_, name)), None) => return Err(error(&name, "needs --tls-key as well")),
        (None, Some((_, name))) => return Err(error(&name, "needs --tls-cert as well")),
        (None, None) => {
            let orphan = ca.map(|(_, name)| name).or(listen.map(|(_, name)| name));
            return match orphan {
                Some(name) => Err(error(&name, "needs --tls-cert and --tls-key")),
                None => Ok((None, timeout)),
            };
        }
    };
    let listen = match listen {
        Some((text, name)) => Some(
            text.parse::<SocketAddr>()
                .map_err(|_| error(&name, format!("'{text}' is not IP:PORT")))?,
        ),
        None => None,
    };
    let ca = ca.map(|(ca, _)| ca);
    Ok((
        Some(TlsConfig {
            cert,
            key,
            ca,
            listen,
        }),
        timeout,
    ))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let name = format!("--config {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| error(&name, e.to_string()))?;
    toml::from_str(&text).map_err(|e| error(&name, e.message().trim().to_string()))
}

/// Parses `IP` or `IP:PORT` (IPv6 as `[::1]:11211`).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 11211))
        .map_err(|_| format!("'{text}' is not an IP address or IP:PORT"))
}

/// Parses a byte size: a number with an optional `k`, `m` or `g` suffix
/// (binary units; `b` and `ib` endings are accepted).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let trimmed = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, shift) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 30),
        _ => (trimmed, 0),
    };
    digits
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{text}' is not a size (examples: 1048576, 512k, 1m, 2g)"))
}

/// Parses a CPU list such as `0-3,6`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("'{text}' is not a CPU list (example: 0-3,6)");
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(bad());
        }
        for cpu in lo..=hi {
            if cpus.contains(&cpu) {
                return Err(format!("CPU {cpu} is listed twice"));
            }
            cpus.push(cpu);
        }
    }
    Ok(cpus)
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
