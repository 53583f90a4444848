//! Where a runtime's connections come from: the plaintext listen port, the
//! TLS port (`--tls-cert`, `--tls-listen`), the shard-aware port
//! (`--shard-aware-port`), the core's own port (`--port-per-core`,
//! thread-per-core only), and, in thread-per-core mode, connections
//! another core accepted on the shard-aware port and handed over. Each connection comes out
//! with its [`Transport`]: a TLS one is handshaken in its own task, the
//! others speak at once.
//!
//! ```text
//!  client on local port p ---> shard-aware listener of core A (SO_REUSEPORT)
//!                                 p % threads == A: served on A
//!                                 else: into_std, try_send to core B's
//!                                 adoption queue (bounded; full: closed)
//!  core B's accept loop <-- adoption queue: from_std, admitted and served
//! ```
//!
//! A client that knows the rule `stats settings` publishes
//! (docs/shard-aware.md) picks local ports so each connection is served by
//! the core that owns the keys it sends, and nothing is forwarded.
//!
//! The hand-off happens once per connection, at accept, never per request.
//! It never waits: a full queue closes the connection (counted in
//! `handoffs_refused`) rather than stall the accepting core. It takes no
//! lock of ours; the queue is a flume channel like the forwarding
//! mailboxes. The target core notices an adoption because its accept loop
//! awaits the queue: flume wakes that task, which unparks the core's
//! runtime. A connection is admitted (and counted against
//! `--max-connections`) once, by the core that serves it.
//!
//! In work-stealing mode any worker serves any key, so the shard-aware
//! port accepts like the listen port.
//!
//! The shard-aware port speaks plaintext only, TLS on or not (not
//! supported yet; docs/shard-aware.md), so a hand-off carries a plaintext
//! socket and an adopted connection is served as a shard-aware one.

use super::ServerState;
use super::listener::Transport;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Connections a core's adoption queue holds, at most: as many as one
/// listener's backlog, so a burst the kernel would queue is queued here.
pub(super) const ADOPTION_QUEUE: usize = super::listener::BACKLOG as usize;

/// The core that serves a connection from client port `port`.
pub fn core_for(port: u16, threads: usize) -> usize {
    usize::from(port) % threads
}

/// Every core's adoption queue, the sending side: shared by all cores.
pub(super) struct Handoff {
    queues: Box<[flume::Sender<StdStream>]>,
}

impl Handoff {
    /// Queues of `capacity` connections for `threads` cores; the receiving
    /// side of each goes to its core.
    pub fn new(threads: usize, capacity: usize) -> (Arc<Handoff>, Vec<flume::Receiver<StdStream>>) {
        let (queues, receivers): (Vec<_>, _) =
            (0..threads).map(|_| flume::bounded(capacity)).unzip();
        let queues = queues.into_boxed_slice();
        (Arc::new(Handoff { queues }), receivers)
    }

    /// Places a connection that core `here` accepted on the shard-aware
    /// port from client port `peer`: returned if it is `here`'s to serve,
    /// otherwise handed to its core, or closed if that core's queue is
    /// full. Never waits.
    pub fn place(
        &self,
        stream: TcpStream,
        peer: u16,
        here: usize,
        state: &ServerState,
    ) -> Option<TcpStream> {
        let target = core_for(peer, self.queues.len());
        if target == here {
            return Some(stream);
        }
        let stats = &state.threads[here];
        // Leaves this core's reactor; still nonblocking, as `from_std`
        // on the target needs.
        let Ok(stream) = stream.into_std() else {
            stats.handoffs_refused.add(1);
            return None;
        };
        match self.queues[target].try_send(stream) {
            Ok(()) => stats.handed_off.add(1),
            // Full, or the target stopped (shutdown): the stream is
            // dropped with the error, which closes it.
            Err(_) => stats.handoffs_refused.add(1),
        }
        None
    }
}

/// A core's part in the hand-off: the shared queues and its own.
pub(super) struct Adoptions {
    pub handoff: Arc<Handoff>,
    pub queue: flume::Receiver<StdStream>,
}

/// The listening sockets of one accept loop, bound but not yet on a
/// runtime.
pub(super) struct Sources {
    /// The plaintext listen port (SO_REUSEPORT), unless TLS took it.
    pub plain: Option<StdListener>,
    /// The TLS port, if TLS is on.
    pub tls: Option<StdListener>,
    /// The shard-aware port, if on.
    pub shard_aware: Option<StdListener>,
    /// This core's own port (`--port-per-core`), if on, and what it
    /// speaks.
    pub per_core: Option<(StdListener, Transport)>,
    /// Thread-per-core with a shard-aware port: the hand-off.
    pub adoptions: Option<Adoptions>,
}

impl Sources {
    /// Registers the sockets with the calling runtime; `index` is the
    /// core whose accept loop this is (0 in work-stealing mode).
    pub fn into_incoming(self, index: usize, state: Arc<ServerState>) -> std::io::Result<Incoming> {
        let register = |l: Option<StdListener>| l.map(TcpListener::from_std).transpose();
        Ok(Incoming {
            plain: register(self.plain)?,
            tls: register(self.tls)?,
            shard_aware: register(self.shard_aware)?,
            per_core: match self.per_core {
                Some((listener, transport)) => Some((TcpListener::from_std(listener)?, transport)),
                None => None,
            },
            adoptions: self.adoptions,
            index,
            state,
        })
    }
}

/// Deals the `count` listeners bound on each of the plaintext, TLS and
/// shard-aware ports (those that are on) out to `count` accept loops, one
/// of each per loop, and loop `i` the `i`-th of `per_core` (each core's
/// own port, none when off), which speaks `per_core_transport`;
/// `hand_off` (thread-per-core) makes the adoption queues when there is a
/// shard-aware port.
pub(super) fn sources(
    count: usize,
    [plain, tls, shard_aware]: [Option<Vec<StdListener>>; 3],
    per_core: Vec<StdListener>,
    per_core_transport: Transport,
    hand_off: bool,
) -> Vec<Sources> {
    let mut per_core = per_core.into_iter();
    let (handoff, mut queues) = match &shard_aware {
        Some(_) if hand_off => {
            let (handoff, queues) = Handoff::new(count, ADOPTION_QUEUE);
            (Some(handoff), queues.into_iter())
        }
        _ => (None, Vec::new().into_iter()),
    };
    let [mut plain, mut tls, mut shard_aware] =
        [plain, tls, shard_aware].map(|bound| bound.map(Vec::into_iter));
    (0..count)
        .map(|_| Sources {
            plain: plain.as_mut().and_then(Iterator::next),
            tls: tls.as_mut().and_then(Iterator::next),
            shard_aware: shard_aware.as_mut().and_then(Iterator::next),
            per_core: per_core
                .next()
                .map(|listener| (listener, per_core_transport)),
            adoptions: handoff
                .clone()
                .zip(queues.next())
                .map(|(handoff, queue)| Adoptions { handoff, queue }),
        })
        .collect()
}

/// One accept loop's sources, on its runtime.
pub(crate) struct Incoming {
    plain: Option<TcpListener>,
    tls: Option<TcpListener>,
    shard_aware: Option<TcpListener>,
    per_core: Option<(TcpListener, Transport)>,
    adoptions: Option<Adoptions>,
    index: usize,
    state: Arc<ServerState>,
}

impl Incoming {
    /// Accepts connections from every source until shutdown is asked for,
    /// handing each to `serve` (which spawns its task) with the kind of
    /// listener it came in on: a TLS handshake never runs here, so a slow
    /// one holds up no one. Both runtimes use it.
    pub async fn accept_until_shutdown(
        &self,
        shutdown: &watch::Receiver<bool>,
        mut serve: impl FnMut(TcpStream, Transport),
    ) {
        let mut stop = shutdown.clone();
        loop {
            let accepted = tokio::select! {
                accepted = self.next() => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            if let Some((stream, transport)) = accepted {
                serve(stream, transport);
            }
        }
    }

    /// The next connection this loop serves, with the kind of listener it
    /// came in on; `None` when an accept failed (the caller goes on
    /// accepting). Cancel-safe: nothing accepted is lost if the future is
    /// dropped. A hand-off carries a plaintext socket only: the
    /// shard-aware port does not speak TLS.
    async fn next(&self) -> Option<(TcpStream, Transport)> {
        let accepted = |accepted: std::io::Result<(TcpStream, SocketAddr)>, transport| {
            accepted.ok().map(|(stream, _)| (stream, transport))
        };
        loop {
            tokio::select! {
                plain = accept(self.plain.as_ref()) => return accepted(plain, Transport::Plain),
                tls = accept(self.tls.as_ref()) => return accepted(tls, Transport::Tls),
                // Only this core listens on its own port: nothing to hand over.
                per_core = accept(self.per_core.as_ref().map(|(l, _)| l)) => {
                    let transport = self.per_core.as_ref().map(|(_, t)| *t);
                    return accepted(per_core, transport.expect("a per-core listener"));
                }
                shard_aware = accept(self.shard_aware.as_ref()) => {
                    let (stream, peer) = shard_aware.ok()?;
                    let here = match &self.adoptions {
                        None => Some(stream),
                        Some(adoptions) => {
                            adoptions.handoff.place(stream, peer.port(), self.index, &self.state)
                        }
                    };
                    if let Some(stream) = here {
                        return Some((stream, Transport::ShardAware));
                    }
                }
                adopted = adopt(self.adoptions.as_ref()) => {
                    return adopted.map(|stream| (stream, Transport::ShardAware));
                }
            }
        }
    }
}

/// Accepts on `listener`, or never if there is none.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// The next connection handed to this core, registered with its runtime;
/// never resolves without a hand-off.
async fn adopt(adoptions: Option<&Adoptions>) -> Option<TcpStream> {
    let Some(adoptions) = adoptions else {
        return std::future::pending().await;
    };
    match adoptions.queue.recv_async().await {
        Ok(stream) => TcpStream::from_std(stream).ok(),
        // Every core holds every sender, this one's included: they cannot
        // all be gone while this core runs.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use loadgen::shard::{connect_to_core, first_port};
    use std::io::Read;
    use tokio::io::AsyncWriteExt;

    /// Connections from client ports chosen for `cores` (of 2), accepted
    /// on the calling runtime: (client end, server end, client port).
    async fn connections(cores: &[usize]) -> Vec<(StdStream, TcpStream, u16)> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut next = first_port();
        let mut out = Vec::new();
        for &core in cores {
            let client = connect_to_core(addr, 2, core, &mut next).unwrap();
            let (server, peer) = listener.accept().await.unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
            out.push((client, server, peer.port()));
        }
        out
    }

    #[test]
    fn the_client_port_picks_the_core() {
        assert_eq!(core_for(40_001, 2), 1);
        assert_eq!(core_for(40_002, 2), 0);
        assert_eq!(core_for(40_001, 3), 40_001 % 3);
        assert_eq!(core_for(7, 1), 0);
    }

    /// On core 0 of 2, with adoption queues of one: a connection for core
    /// 0 stays; the first for core 1 is queued there; the next two find
    /// the queue full and are closed and counted, without waiting.
    #[test]
    fn a_full_adoption_queue_closes_the_connection() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut config = Config::defaults(&[0, 1]);
            config.pin = false;
            let state = ServerState::for_tests(config);
            let (handoff, queues) = Handoff::new(2, 1);
            let mut placed = Vec::new();
            for (client, server, port) in connections(&[0, 1, 1, 1]).await {
                placed.push((client, handoff.place(server, port, 0, &state)));
            }
            assert!(placed[0].1.is_some(), "core 0's connection stays");
            assert!(placed[1..].iter().all(|(_, stays)| stays.is_none()));
            let stats = &state.threads[0];
            assert_eq!(stats.handed_off.get(), 1);
            assert_eq!(stats.handoffs_refused.get(), 2);
            // The first for core 1 is in its queue, and only it.
            let queued = queues[1].try_recv().unwrap();
            assert_eq!(
                queued.peer_addr().unwrap(),
                placed[1].0.local_addr().unwrap()
            );
            assert!(queues[1].try_recv().is_err());
            assert!(queues[0].try_recv().is_err());
            // The refused ones are closed: their clients read end of stream.
            for (client, _) in &mut placed[2..] {
                client
                    .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                    .unwrap();
                assert_eq!(client.read(&mut [0u8; 8]).unwrap(), 0);
            }
            // The queued one works once adopted by a runtime.
            let mut adopted = TcpStream::from_std(queued).unwrap();
            adopted.write_all(b"hi").await.unwrap();
            let mut buf = [0u8; 2];
            placed[1].0.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hi");
        });
    }
}
