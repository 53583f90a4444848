//! Binding the listen addresses once per thread with `SO_REUSEPORT`, and
//! the kinds of listener (accepting from them is `incoming.rs`).
//!
//! Every thread-per-core thread gets its own listening socket on the same
//! address, so the kernel spreads incoming connections across threads (by
//! hash of the connection's addresses, not by load: `stats threads` shows
//! how it came out) and a connection never has to move. With TLS on, each
//! thread has a second socket, on the TLS address, spread the same way; with
//! a shard-aware port, a third (`shard_port.rs`). A per-core port
//! (`--port-per-core`) is bound once, by its own thread only.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// Which kind of listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Plaintext: the connection speaks the protocol at once.
    Plain,
    /// TLS: a handshake comes first.
    Tls,
    /// The shard-aware port (directly, or handed over by another core):
    /// plaintext, like `Plain`; it differs in its address.
    ShardAware,
    /// The accepting core's own port (`--port-per-core`): every key the
    /// connection sends is that core's. It speaks what `--listen` speaks:
    /// TLS when TLS took `--listen`, else plaintext.
    PerCore {
        /// A TLS handshake comes first.
        tls: bool,
    },
}

impl Transport {
    /// Whether the connection speaks TLS (a handshake comes first).
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::PerCore { tls: true })
    }
}

/// Pending connections each listener queues before accepting.
pub(super) const BACKLOG: i32 = 1024;

/// Binds `count` listeners to `addr`; returns them and the bound address
/// (with the real port when `addr` asks for port 0).
///
/// `SO_REUSEPORT` would also let a second server bind a port this one
/// holds, and split its traffic silently. So the address is first bound
/// once without it: if anything is listening there, that fails with
/// "address in use", as memcached would.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let probe = socket(addr)?;
    probe.bind(&addr.into())?;
    let bound = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound address is not an IP address"))?;
    drop(probe);
    let listeners = (0..count)
        .map(|_| {
            let socket = socket(bound)?;
            socket.set_reuse_port(true)?;
            socket.bind(&bound.into())?;
            socket.listen(BACKLOG)?;
            socket.set_nonblocking(true)?;
            Ok(socket.into())
        })
        .collect::<io::Result<_>>()?;
    Ok((listeners, bound))
}

fn socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting must not wait for the previous run's TIME_WAIT sockets.
    socket.set_reuse_address(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_share_one_port_and_a_second_server_is_refused() {
        let (listeners, addr) = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(listeners.len(), 3);
        assert_ne!(addr.port(), 0);
        for listener in &listeners {
            assert_eq!(listener.local_addr().unwrap(), addr);
        }
        let err = bind(addr, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
