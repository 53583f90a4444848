//! corecache: a memcached-compatible, thread-per-core, shared-nothing cache.
//!
//! ```text
//!              clients (any memcached client, proxy or tool)
//!                 |  SO_REUSEPORT: the kernel spreads connections
//!        +--------+---------+------------------+
//!        v                  v                  v
//!   [thread 0]         [thread 1]   ...   [thread N-1]     one pinned current_thread
//!   listener           listener           listener         tokio runtime each
//!   connections        connections        connections
//!   shards 0, N..      shards 1, N+1..    ...              owned, never shared
//!        ^   \             ^   /
//!        |    +--flume-----+--+   a key owned elsewhere is forwarded in one
//!        +------ replies ------   batch per owner per read; replies return
//!                                 the same way and are stitched in order
//! ```
//!
//! A request's key is hashed once ([`server::Router::hash`]); the hash picks
//! the shard, the shard fixes the owning thread. The owner runs the request
//! on its [`storage::Shard`], a single-threaded engine with no I/O.
//!
//! Invariants the code keeps:
//! - **Replies in order.** A connection answers every request in the order
//!   it was sent, even when a pipelined burst mixes keys of many threads
//!   and a multi-key `get` spans them.
//! - **No locks on the thread-per-core data path.** A shard is touched only
//!   by its owner; threads talk through bounded flume channels.
//! - **Bounded memory.** Item memory stays within `--memory`; connection
//!   buffers shrink back after a large value.
//! - **Bad input gets an error reply, never a panic or a stall** for other
//!   clients: malformed requests are answered in turn, a line that never
//!   ends closes only its own connection.
//!
//! The same binary also runs a work-stealing runtime
//! (`--runtime work-stealing`) over the same shards behind locks, so the
//! two designs can be compared on one workload.
//!
//! Modules: [`protocol`] (bytes to requests and replies to bytes),
//! [`storage`] (the shard engine), [`server`] (runtimes, connections,
//! routing, forwarding), [`config`], [`stats`], [`clock`].
#![warn(missing_docs)]

pub mod clock;
pub mod config;
pub mod fault;
pub mod protocol;
pub mod server;
pub mod stats;
pub mod storage;
