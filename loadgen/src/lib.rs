//! `loadgen`: a load generator for memcached-compatible servers.
//!
//! It speaks the memcached text protocol (`get`, `set`, and with `--mix`
//! `delete`, `append`, `incr`) over many pipelined
//! connections, driven by thread-per-core client threads (one pinned,
//! single-threaded tokio runtime per `--threads`), and reports throughput,
//! hit ratio, errors by kind and hdrhistogram latency percentiles.
//!
//! Use it in-process (the server's integration tests do):
//!
//! ```no_run
//! let cfg = loadgen::Config {
//!     server: "127.0.0.1:11211".parse().unwrap(),
//!     duration: std::time::Duration::from_secs(1),
//!     ..loadgen::Config::default()
//! };
//! let report = loadgen::run(&cfg)?;
//! assert!(!report.failed());
//! println!("{report}");
//! # anyhow::Ok(())
//! ```
//!
//! The JSON written by `--json` is [`Report`] serialised; its schema is
//! documented in [`report`]. `--verify` value layout is in [`verify`];
//! what `--verify=strict` expects of each reply is in `model.rs`. The
//! `compare` experiment harness is in [`compare`]; the consistency checks
//! of `--check` (linearizability, write order) are in [`lincheck`].

#![warn(missing_docs)]

pub mod compare;
pub mod config;
mod conn;
pub mod lincheck;
mod link;
mod model;
pub mod proto;
pub mod report;
pub mod route;
pub mod run;
pub mod server_process;
pub mod shard;
pub mod table;
pub mod timer;
pub mod tls;
pub mod verify;
pub mod workload;

pub use config::{Args, Config, Distribution, Mix, VerifyMode};
pub use report::Report;
pub use run::{Edge, run, run_observed};
