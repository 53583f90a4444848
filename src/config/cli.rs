//! The two layers a configuration is read from besides the defaults: the
//! command-line flags ([`Cli`], parsed by clap) and the TOML file
//! ([`FileConfig`], read by serde), with the same settings under the same
//! names (`--max-item-size` is `max-item-size = ...`).

use super::RuntimeKind;
use clap::Parser;
use serde::Deserialize;
use std::path::PathBuf;

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
    /// Pin each thread to its CPU [default: only when --threads is below
    /// the allowed CPUs, or --cpus names them].
    #[arg(long, conflicts_with = "no_pin")]
    pub pin: bool,
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
    /// that catches nothing and is restored in full after one that catches
    /// a reply; set 0 when the server shares its CPUs with other busy
    /// processes.
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
    /// Thread-per-core: thread i also listens on BASE+i, and every key
    /// sent there is kept on thread i, whatever its hash: list the ports
    /// as separate servers in a client that spreads keys itself (ketama,
    /// pymemcache's HashClient, twemproxy) and nothing is forwarded;
    /// 0 = off [default: 0].
    #[arg(long, value_name = "BASE")]
    pub port_per_core: Option<u16>,
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
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) threads: Option<usize>,
    pub(super) cpus: Option<String>,
    pub(super) pin: Option<bool>,
    pub(super) shards: Option<usize>,
    pub(super) memory: Option<toml::Value>,
    pub(super) max_item_size: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) output_budget: Option<String>,
    pub(super) runtime: Option<RuntimeKind>,
    pub(super) ttl_tick: Option<String>,
    pub(super) spin: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) slab_growth_factor: Option<f64>,
    pub(super) slab_min_chunk: Option<usize>,
    pub(super) slab_page_size: Option<String>,
    pub(super) enable_shutdown: Option<bool>,
    pub(super) shard_aware_port: Option<u16>,
    pub(super) port_per_core: Option<u16>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_ca: Option<PathBuf>,
    pub(super) tls_listen: Option<String>,
    pub(super) tls_handshake_timeout: Option<String>,
    pub(super) auth_file: Option<PathBuf>,
}
