//! What a configuration error says: the setting at fault, by the name of
//! the layer its value came from (`--memory`, or `memory (config file)`),
//! and why it cannot be used.

use std::path::PathBuf;

/// A setting whose value can be refused. Its flag is `--` and its
/// [`key`](Setting::key); its file key is the key itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `--listen`.
    Listen,
    /// `--threads`.
    Threads,
    /// `--cpus`.
    Cpus,
    /// `--shards`.
    Shards,
    /// `--memory`.
    Memory,
    /// `--max-item-size`.
    MaxItemSize,
    /// `--max-connections`.
    MaxConnections,
    /// `--output-budget`.
    OutputBudget,
    /// `--ttl-tick`.
    TtlTick,
    /// `--spin`.
    Spin,
    /// `--idle-timeout`.
    IdleTimeout,
    /// `--slab-growth-factor`.
    SlabGrowthFactor,
    /// `--slab-min-chunk`.
    SlabMinChunk,
    /// `--slab-page-size`.
    SlabPageSize,
    /// `--shard-aware-port`.
    ShardAwarePort,
    /// `--port-per-core`.
    PortPerCore,
    /// `--tls-cert`.
    TlsCert,
    /// `--tls-key`.
    TlsKey,
    /// `--tls-ca`.
    TlsCa,
    /// `--tls-listen`.
    TlsListen,
    /// `--tls-handshake-timeout`.
    TlsHandshakeTimeout,
}

impl Setting {
    /// Every setting, for tests that hold the names to the flags.
    pub const ALL: [Setting; 21] = [
        Setting::Listen,
        Setting::Threads,
        Setting::Cpus,
        Setting::Shards,
        Setting::Memory,
        Setting::MaxItemSize,
        Setting::MaxConnections,
        Setting::OutputBudget,
        Setting::TtlTick,
        Setting::Spin,
        Setting::IdleTimeout,
        Setting::SlabGrowthFactor,
        Setting::SlabMinChunk,
        Setting::SlabPageSize,
        Setting::ShardAwarePort,
        Setting::PortPerCore,
        Setting::TlsCert,
        Setting::TlsKey,
        Setting::TlsCa,
        Setting::TlsListen,
        Setting::TlsHandshakeTimeout,
    ];

    /// The file key, and the flag without its `--`.
    pub fn key(self) -> &'static str {
        match self {
            Setting::Listen => "listen",
            Setting::Threads => "threads",
            Setting::Cpus => "cpus",
            Setting::Shards => "shards",
            Setting::Memory => "memory",
            Setting::MaxItemSize => "max-item-size",
            Setting::MaxConnections => "max-connections",
            Setting::OutputBudget => "output-budget",
            Setting::TtlTick => "ttl-tick",
            Setting::Spin => "spin",
            Setting::IdleTimeout => "idle-timeout",
            Setting::SlabGrowthFactor => "slab-growth-factor",
            Setting::SlabMinChunk => "slab-min-chunk",
            Setting::SlabPageSize => "slab-page-size",
            Setting::ShardAwarePort => "shard-aware-port",
            Setting::PortPerCore => "port-per-core",
            Setting::TlsCert => "tls-cert",
            Setting::TlsKey => "tls-key",
            Setting::TlsCa => "tls-ca",
            Setting::TlsListen => "tls-listen",
            Setting::TlsHandshakeTimeout => "tls-handshake-timeout",
        }
    }

    /// How an error names the setting when its value came from `origin`:
    /// the file's key if the file gave it, else the flag (a default is
    /// changed with the flag).
    pub fn named(self, origin: Origin) -> String {
        match origin {
            Origin::File => format!("{} (config file)", self.key()),
            Origin::Flag | Origin::Default => format!("--{}", self.key()),
        }
    }
}

/// Which layer a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The command line.
    Flag,
    /// The `--config` file.
    File,
    /// Neither: the built-in default.
    Default,
}

/// Why a configuration cannot be used. One line, naming what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The `--config` file cannot be read, or is not a configuration.
    #[error("--config {}: {reason}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong reading or parsing it.
        reason: String,
    },
    /// TOML text given to [`super::Config::from_toml`] is not a
    /// configuration.
    #[error("config: {0}")]
    Toml(String),
    /// A setting's value cannot be used.
    #[error("{}: {reason}", .setting.named(*.origin))]
    Setting {
        /// The setting at fault.
        setting: Setting,
        /// Where its value came from.
        origin: Origin,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    /// The setting at fault, if the error is about one.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            ConfigError::Setting { setting, .. } => Some(*setting),
            ConfigError::File { .. } | ConfigError::Toml(_) => None,
        }
    }
}
