//! Building a [`Config`] from its layers: the defaults, then the file,
//! then the flags. Each concern (TLS, addresses, sizes, timing, limits,
//! threads) takes its settings and checks each value as it takes it;
//! a last pass checks that the settings fit together. An error names the
//! setting at fault by the layer its value came from.

use super::cli::{Cli, FileConfig};
use super::error::{ConfigError, Origin, Setting};
use super::parse::{parse_cpu_list, parse_listen, parse_size};
use super::{Config, MIB, PinRule, RuntimeKind, TlsConfig};
use crate::storage::SlabConfigError;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

impl Config {
    /// Builds the configuration from parsed flags, reading `--config` if
    /// given, against the CPUs this process may run on.
    pub fn from_cli(cli: &Cli, allowed: &[usize]) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        merge(cli, file, allowed)
    }

    /// Builds a configuration from TOML text and flags (for tests and tools).
    pub fn from_toml(text: &str, cli: &Cli, allowed: &[usize]) -> Result<Config, ConfigError> {
        let file = toml::from_str(text).map_err(|e| ConfigError::Toml(e.message().to_string()))?;
        merge(cli, file, allowed)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    toml::from_str(&text).map_err(|e| error(e.message().trim().to_string()))
}

fn merge(cli: &Cli, file: FileConfig, allowed: &[usize]) -> Result<Config, ConfigError> {
    let mut merge = Merge {
        cli,
        file,
        allowed,
        origins: Origins::default(),
        config: Config::defaults(allowed),
    };
    merge.tls()?;
    merge.addresses()?;
    merge.sizes()?;
    merge.timing()?;
    merge.limits()?;
    merge.threads()?;
    merge.per_core_ports()?;
    merge.fits()?;
    Ok(merge.config)
}

/// Pinning as the flags or the file set it: a flag overrides the file.
fn pin_given(cli: &Cli, file: &FileConfig) -> Option<bool> {
    match (cli.pin, cli.no_pin) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => file.pin,
    }
}

/// A setting's value, and where it came from.
struct Given<T> {
    value: T,
    setting: Setting,
    origin: Origin,
}

impl<T> Given<T> {
    /// Refuses the value, naming the setting as it was given.
    fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Setting {
            setting: self.setting,
            origin: self.origin,
            reason: reason.into(),
        }
    }
}

impl Given<String> {
    /// The value as a duration (`100ms`, `2s`).
    fn duration(&self) -> Result<Duration, ConfigError> {
        humantime::parse_duration(&self.value)
            .map_err(|e| self.error(format!("'{}' is not a duration ({e})", self.value)))
    }
}

/// Where each setting taken so far came from, so a check of settings
/// together names each as it was given. A setting not taken is a default.
#[derive(Default)]
struct Origins(Vec<(Setting, Origin)>);

impl Origins {
    /// The flag if given, else the file's key; records which.
    fn take<T>(&mut self, setting: Setting, flag: Option<T>, key: Option<T>) -> Option<Given<T>> {
        let (value, origin) = match (flag, key) {
            (Some(value), _) => (value, Origin::Flag),
            (None, Some(value)) => (value, Origin::File),
            (None, None) => return None,
        };
        self.0.push((setting, origin));
        Some(Given {
            value,
            setting,
            origin,
        })
    }

    /// Refuses `setting`, named by where its value came from.
    fn error(&self, setting: Setting, reason: impl Into<String>) -> ConfigError {
        let origin = self
            .0
            .iter()
            .find(|(taken, _)| *taken == setting)
            .map_or(Origin::Default, |(_, origin)| *origin);
        ConfigError::Setting {
            setting,
            origin,
            reason: reason.into(),
        }
    }
}

/// A configuration being built. Each method takes the settings of one
/// concern out of the flags and the file (what it took is gone from
/// `file`) into `config`.
struct Merge<'a> {
    cli: &'a Cli,
    file: FileConfig,
    allowed: &'a [usize],
    origins: Origins,
    config: Config,
}

impl Merge<'_> {
    /// TLS: certificate and key together or neither; a CA or a TLS
    /// listener only with them; the handshake timeout.
    fn tls(&mut self) -> Result<(), ConfigError> {
        let Merge {
            cli,
            file,
            origins,
            config,
            ..
        } = self;
        let cert = origins.take(Setting::TlsCert, cli.tls_cert.clone(), file.tls_cert.take());
        let key = origins.take(Setting::TlsKey, cli.tls_key.clone(), file.tls_key.take());
        let ca = origins.take(Setting::TlsCa, cli.tls_ca.clone(), file.tls_ca.take());
        let listen = origins.take(
            Setting::TlsListen,
            cli.tls_listen.clone(),
            file.tls_listen.take(),
        );
        if let Some(timeout) = origins.take(
            Setting::TlsHandshakeTimeout,
            cli.tls_handshake_timeout.clone(),
            file.tls_handshake_timeout.take(),
        ) {
            config.tls_handshake_timeout = timeout.duration()?;
            if config.tls_handshake_timeout.is_zero() {
                return Err(timeout.error("must be more than 0"));
            }
        }
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert.value, key.value),
            (Some(cert), None) => return Err(cert.error("needs --tls-key as well")),
            (None, Some(key)) => return Err(key.error("needs --tls-cert as well")),
            (None, None) => {
                let without = "needs --tls-cert and --tls-key";
                if let Some(ca) = ca {
                    return Err(ca.error(without));
                }
                if let Some(listen) = listen {
                    return Err(listen.error(without));
                }
                return Ok(());
            }
        };
        let listen = match listen {
            Some(given) => Some(
                given
                    .value
                    .parse::<SocketAddr>()
                    .map_err(|_| given.error(format!("'{}' is not IP:PORT", given.value)))?,
            ),
            None => None,
        };
        config.tls = Some(TlsConfig {
            cert,
            key,
            ca: ca.map(|ca| ca.value),
            listen,
        });
        Ok(())
    }

    /// The listen address and port, and the ports that must differ from
    /// it: TLS's own and the shard-aware port.
    fn addresses(&mut self) -> Result<(), ConfigError> {
        let Merge {
            cli,
            file,
            origins,
            config,
            ..
        } = self;
        if let Some(listen) = origins.take(Setting::Listen, cli.listen.clone(), file.listen.take())
        {
            config.listen = parse_listen(&listen.value).map_err(|r| listen.error(r))?;
        }
        if let Some(port) = cli.port.or(file.port) {
            config.listen.set_port(port);
        }
        if let Some(tls) = config.tls.as_ref().and_then(|tls| tls.listen)
            && tls == config.listen
            && tls.port() != 0
        {
            return Err(origins.error(Setting::TlsListen, format!("{tls} is --listen already")));
        }
        let Some(port) = origins.take(
            Setting::ShardAwarePort,
            cli.shard_aware_port,
            file.shard_aware_port,
        ) else {
            return Ok(());
        };
        // Sharing the listen port would let SO_REUSEPORT mix the two
        // kinds of listener on one port.
        let p = port.value;
        if p != 0 && p == config.listen.port() {
            return Err(port.error(format!(
                "{p} is the listen port; it needs a port of its own"
            )));
        }
        // Nor the TLS port, when TLS listens on the same address.
        let tls = config
            .tls_listen()
            .filter(|tls| tls.ip() == config.listen.ip());
        if p != 0 && tls.is_some_and(|tls| tls.port() == p) {
            return Err(port.error(format!(
                "{p} is the --tls-listen port; it needs a port of its own"
            )));
        }
        config.shard_aware_port = p;
        Ok(())
    }

    /// Item memory, the largest item, a connection's output budget and the
    /// slab geometry.
    fn sizes(&mut self) -> Result<(), ConfigError> {
        let Merge {
            cli,
            file,
            origins,
            config,
            ..
        } = self;
        // The file may give memory as a number or as a string.
        let memory_key = file.memory.take().map(|v| match v {
            toml::Value::Integer(n) => n.to_string(),
            other => other.as_str().map(str::to_string).unwrap_or_default(),
        });
        if let Some(memory) = origins.take(Setting::Memory, cli.memory.clone(), memory_key) {
            // A bare number is MiB, as in memcached's -m.
            config.memory = match memory.value.trim().parse::<usize>() {
                Ok(mib) => mib
                    .checked_mul(MIB)
                    .ok_or_else(|| memory.error("too large"))?,
                Err(_) => parse_size(&memory.value).map_err(|r| memory.error(r))?,
            };
            if config.memory == 0 {
                return Err(memory.error("must be more than 0"));
            }
        }
        if let Some(size) = origins.take(
            Setting::MaxItemSize,
            cli.max_item_size.clone(),
            file.max_item_size.take(),
        ) {
            config.max_item_size = parse_size(&size.value).map_err(|r| size.error(r))?;
            if config.max_item_size < 1024 {
                return Err(size.error("must be at least 1k"));
            }
        }
        if let Some(budget) = origins.take(
            Setting::OutputBudget,
            cli.output_budget.clone(),
            file.output_budget.take(),
        ) {
            config.output_budget = parse_size(&budget.value).map_err(|r| budget.error(r))?;
            if config.output_budget < 4096 {
                return Err(budget.error("must be at least 4k"));
            }
        }
        match origins.take(
            Setting::SlabPageSize,
            cli.slab_page_size.clone(),
            file.slab_page_size.take(),
        ) {
            Some(size) => {
                config.slab_page_size = parse_size(&size.value).map_err(|r| size.error(r))?;
            }
            // Pages grow with the largest item unless set explicitly.
            None => config.slab_page_size = config.slab_page_size.max(config.max_item_size),
        }
        if let Some(factor) = origins.take(
            Setting::SlabGrowthFactor,
            cli.slab_growth_factor,
            file.slab_growth_factor,
        ) {
            if !(factor.value > 1.0 && factor.value <= 4.0) {
                return Err(factor.error("must be above 1.0 and at most 4.0"));
            }
            config.slab_growth_factor = factor.value;
        }
        if let Some(chunk) = origins.take(
            Setting::SlabMinChunk,
            cli.slab_min_chunk,
            file.slab_min_chunk,
        ) {
            if !(8..=65536).contains(&chunk.value) {
                return Err(chunk.error("must be between 8 and 65536 bytes"));
            }
            config.slab_min_chunk = chunk.value;
        }
        Ok(())
    }

    /// The expiry tick, the spin and the idle timeout.
    fn timing(&mut self) -> Result<(), ConfigError> {
        let Merge {
            cli,
            file,
            origins,
            config,
            ..
        } = self;
        if let Some(tick) =
            origins.take(Setting::TtlTick, cli.ttl_tick.clone(), file.ttl_tick.take())
        {
            config.ttl_tick = tick.duration()?;
            if config.ttl_tick.is_zero() {
                return Err(tick.error("must be more than 0"));
            }
        }
        if let Some(spin) = origins.take(Setting::Spin, cli.spin.clone(), file.spin.take()) {
            config.spin = spin.duration()?;
            // A spin is meant to bridge one round trip, not to replace sleep.
            if config.spin > Duration::from_millis(1) {
                return Err(spin.error("must be at most 1ms"));
            }
        }
        if let Some(idle) = origins.take(
            Setting::IdleTimeout,
            cli.idle_timeout.clone(),
            file.idle_timeout.take(),
        ) {
            config.idle_timeout = idle.duration()?;
            // memcached counts idle time in whole seconds.
            if config.idle_timeout.subsec_nanos() != 0 {
                return Err(idle.error("must be whole seconds (or 0 for none)"));
            }
        }
        Ok(())
    }

    /// What the server admits and allows, and which runtime serves.
    fn limits(&mut self) -> Result<(), ConfigError> {
        let Merge {
            cli,
            file,
            origins,
            config,
            ..
        } = self;
        if let Some(max) = origins.take(
            Setting::MaxConnections,
            cli.max_connections,
            file.max_connections,
        ) {
            if max.value == 0 {
                return Err(max.error("must be at least 1"));
            }
            config.max_connections = max.value;
        }
        if let Some(runtime) = cli.runtime.or(file.runtime) {
            config.runtime = runtime;
        }
        config.auth_file = cli.auth_file.clone().or(file.auth_file.take());
        config.enable_shutdown = cli.enable_shutdown || file.enable_shutdown.unwrap_or(false);
        Ok(())
    }

    /// Threads, their CPUs and the shards: `--cpus` alone sets the thread
    /// count; `--threads` alone takes the first N allowed CPUs.
    fn threads(&mut self) -> Result<(), ConfigError> {
        let Merge {
            cli,
            file,
            allowed,
            origins,
            config,
        } = self;
        let cpus = match origins.take(Setting::Cpus, cli.cpus.clone(), file.cpus.take()) {
            Some(list) => {
                let cpus = parse_cpu_list(&list.value).map_err(|r| list.error(r))?;
                if let Some(cpu) = cpus.iter().find(|cpu| !allowed.contains(cpu)) {
                    return Err(list.error(format!(
                        "CPU {cpu} is not one this process may use (allowed: {allowed:?})"
                    )));
                }
                Some(Given {
                    value: cpus,
                    setting: list.setting,
                    origin: list.origin,
                })
            }
            None => None,
        };
        let cpus_named = cpus.is_some();
        let threads = origins.take(Setting::Threads, cli.threads, file.threads);
        if let Some(threads) = threads.as_ref().filter(|n| n.value == 0) {
            return Err(threads.error("must be at least 1"));
        }
        match (threads, cpus) {
            (Some(n), Some(cpus)) => {
                if cpus.value.len() < n.value {
                    return Err(cpus.error(format!(
                        "lists {} CPUs but --threads is {}",
                        cpus.value.len(),
                        n.value
                    )));
                }
                config.threads = n.value;
                config.cpus = cpus.value[..n.value].to_vec();
            }
            (None, Some(cpus)) => {
                config.threads = cpus.value.len();
                config.cpus = cpus.value;
            }
            (Some(n), None) => {
                config.threads = n.value;
                if pin_given(cli, file) == Some(true) && n.value > allowed.len() {
                    return Err(n.error(format!(
                        "{} threads but this process may use only {} CPUs to pin them to (drop --pin to run more)",
                        n.value,
                        allowed.len()
                    )));
                }
                config.cpus = allowed.iter().copied().cycle().take(n.value).collect();
            }
            (None, None) => {}
        }
        (config.pin, config.pin_rule) = match pin_given(cli, file) {
            Some(pin) => (pin, PinRule::Given),
            None if cpus_named => (true, PinRule::CpusNamed),
            None if config.threads < allowed.len() => (true, PinRule::LeavesCpus),
            None => (false, PinRule::SharesEveryCpu),
        };
        let shards = origins.take(Setting::Shards, cli.shards, file.shards);
        config.shards = shards.as_ref().map_or(config.threads, |s| s.value);
        if let Some(shards) = shards.filter(|s| s.value < config.threads) {
            return Err(shards.error(format!(
                "{} is fewer than the {} threads",
                shards.value, config.threads
            )));
        }
        Ok(())
    }

    /// `--port-per-core`: thread-per-core only, and `threads` ports from
    /// the base that fit below 65536 and take none of the other ports on
    /// the listen address.
    fn per_core_ports(&mut self) -> Result<(), ConfigError> {
        let Merge {
            cli,
            file,
            origins,
            config,
            ..
        } = self;
        let Some(base) = origins.take(Setting::PortPerCore, cli.port_per_core, file.port_per_core)
        else {
            return Ok(());
        };
        if base.value == 0 {
            return Ok(());
        }
        if config.runtime == RuntimeKind::WorkStealing {
            // No thread owns a key there, so no port can mean one.
            return Err(base.error(
                "needs --runtime thread-per-core (under work-stealing every thread \
                 serves every key, so no port belongs to one)",
            ));
        }
        let first = u32::from(base.value);
        let last = first + config.threads as u32 - 1;
        if last > u32::from(u16::MAX) {
            return Err(base.error(format!(
                "{} threads from port {first} need ports up to {last}; the last port is 65535",
                config.threads
            )));
        }
        let range = first..=last;
        let listen_ip = config.listen.ip();
        let tls = config.tls_listen().filter(|tls| tls.ip() == listen_ip);
        let taken = [
            ("the listen port", Some(config.listen.port())),
            ("the --tls-listen port", tls.map(|tls| tls.port())),
            ("--shard-aware-port", Some(config.shard_aware_port)),
        ];
        for (what, port) in taken {
            if let Some(port) = port.filter(|&p| p != 0 && range.contains(&u32::from(p))) {
                return Err(base.error(format!(
                    "ports {first}-{last} (one per thread) include {what} {port}"
                )));
            }
        }
        config.port_per_core = base.value;
        Ok(())
    }

    /// The settings together: pages hold the largest item, every shard
    /// gets a page, and the engine can address what it is given.
    fn fits(&self) -> Result<(), ConfigError> {
        let Merge {
            origins, config, ..
        } = self;
        if config.slab_page_size < config.max_item_size {
            return Err(origins.error(
                Setting::SlabPageSize,
                format!(
                    "{} bytes is smaller than --max-item-size ({} bytes)",
                    config.slab_page_size, config.max_item_size
                ),
            ));
        }
        let per_shard = config.memory / config.shards;
        if per_shard < config.slab_page_size {
            return Err(origins.error(
                Setting::Memory,
                format!(
                    "{} MiB over {} shards leaves {} KiB per shard, less than one slab page ({} KiB)",
                    config.memory / MIB,
                    config.shards,
                    per_shard / 1024,
                    config.slab_page_size / 1024
                ),
            ));
        }
        crate::storage::validate_config(&config.shard_config(0))
            .map_err(|e| origins.error(slab_setting(&e), e.to_string()))
    }
}

/// The setting behind each of the engine's refusals.
fn slab_setting(error: &SlabConfigError) -> Setting {
    match error {
        SlabConfigError::PageSize(_) => Setting::SlabPageSize,
        SlabConfigError::ItemOverPage { .. } | SlabConfigError::ItemBelowChunk { .. } => {
            Setting::MaxItemSize
        }
        SlabConfigError::GrowthFactor(_) | SlabConfigError::TooManyClasses { .. } => {
            Setting::SlabGrowthFactor
        }
        SlabConfigError::MinChunk { .. } => Setting::SlabMinChunk,
        SlabConfigError::MemoryLimit { .. } => Setting::Memory,
    }
}
