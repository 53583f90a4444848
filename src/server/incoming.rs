//! Where a runtime's connections come from, and its accept loop: the
//! plaintext listen port, the TLS port (`--tls-cert`, `--tls-listen`), the
//! shard-aware port (`--shard-aware-port`), and, in thread-per-core mode,
//! connections another core accepted there and handed over
//! (`shard_port.rs`). Each connection comes out with its [`Transport`]: a
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
            adoptions: self.adoptions,
            index,
            state,
        })
    }
}

/// Deals the `count` listeners bound on each of the plaintext, TLS and
/// shard-aware ports (those that are on) out to `count` accept loops, one
/// of each per loop; `hand_off` (thread-per-core) makes the adoption
/// queues when there is a shard-aware port.
pub(super) fn sources(
    count: usize,
    [plain, tls, shard_aware]: [Option<Vec<StdListener>>; 3],
    hand_off: bool,
) -> Vec<Sources> {
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
