//! Where a runtime's connections come from, and its accept loop: the
//! plaintext listen port, the TLS port (`--tls-cert`, `--tls-listen`), the
//! shard-aware port (`--shard-aware-port`), the core's own port
//! (`--port-per-core`, thread-per-core only), and, in thread-per-core mode,
//! connections another core accepted on the shard-aware port and handed
//! over (`shard_port.rs`). Each connection comes out with its [`Transport`]: a
//! TLS one is handshaken in its own task, the others speak at once.

use super::ServerState;
use super::listener::Transport;
use super::shard_port::{ADOPTION_QUEUE, Adoptions, Handoff};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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
