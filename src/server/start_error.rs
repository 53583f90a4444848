//! Why the server could not start: the one error type [`super::start`]
//! returns, named by the setting at fault.

use std::net::SocketAddr;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding a listen address failed.
    #[error("{setting} {addr}: {source}")]
    Bind {
        /// The setting that named the address.
        setting: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Binding the shard-aware port failed.
    #[error("--shard-aware-port {}: {source}", addr.port())]
    ShardAwareBind {
        /// The address (the listen address's IP).
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Binding a per-core port failed.
    #[error("--port-per-core: port {} (thread {thread}): {source}", addr.port())]
    PerCoreBind {
        /// The address (the listen address's IP).
        addr: SocketAddr,
        /// The thread whose port it is.
        thread: usize,
        /// The cause.
        source: std::io::Error,
    },
    /// The `--auth-file` could not be read or has a bad line.
    #[error("--auth-file {0}")]
    Auth(String),
    /// A TLS certificate, key or CA file could not be read or used.
    #[error("{setting} {reason}")]
    Tls {
        /// The setting that named the file.
        setting: &'static str,
        /// The file and what is wrong with it.
        reason: String,
    },
    /// A thread could not be started or pinned.
    #[error("--cpus: {0}")]
    Thread(String),
}
