//! One accepted connection's task, the same in both runtimes: admission,
//! the TLS handshake if it came in on a TLS listener, then the connection
//! loop, with a panic in any of them contained to the connection.

use super::connection::Connection;
use super::listener::Transport;
use super::plan::Dispatch;
use super::state::{ConnectionSlot, ServerState, admit};
use super::tls;
use std::os::fd::RawFd;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Serves one accepted connection on `thread`, the task's whole life:
/// admission, the TLS handshake if it came in on a TLS listener, then the
/// connection loop with the dispatch `dispatch` makes. Both runtimes spawn
/// it for every accepted connection.
///
/// A panic in the connection's own work (its handshake, its login, its
/// parsing; a keyed operation's is contained in `ServerState::run_op`)
/// ends the connection, is logged and counted, and leaves the core's other
/// tasks (mail, ticks, accepts) running.
pub(crate) async fn serve_accepted<D: Dispatch>(
    state: Arc<ServerState>,
    thread: usize,
    stream: TcpStream,
    transport: Transport,
    stop: watch::Receiver<bool>,
    dispatch: impl FnOnce(&ConnectionSlot, Option<RawFd>) -> D,
) {
    let serve = serve_connection(state.clone(), thread, stream, transport, stop, dispatch);
    let mut serve = std::pin::pin!(serve);
    let panicked = std::future::poll_fn(|cx| {
        let poll = std::panic::AssertUnwindSafe(|| serve.as_mut().poll(cx));
        match std::panic::catch_unwind(poll) {
            Ok(std::task::Poll::Ready(())) => std::task::Poll::Ready(false),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(true),
        }
    })
    .await;
    if panicked {
        tracing::error!("a connection's task panicked; the connection is closed");
        state.threads[thread].request_panics.add_shared(1);
    }
}

/// [`serve_accepted`]'s work.
async fn serve_connection<D: Dispatch>(
    state: Arc<ServerState>,
    thread: usize,
    mut stream: TcpStream,
    transport: Transport,
    mut stop: watch::Receiver<bool>,
    dispatch: impl FnOnce(&ConnectionSlot, Option<RawFd>) -> D,
) {
    // Replies are written whole, once per batch: Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let Some(slot) = admit(&state, thread, &mut stream, transport).await else {
        return;
    };
    match transport {
        Transport::Plain | Transport::ShardAware | Transport::PerCore { tls: false } => {
            // Plaintext: another core may write a reply to the socket itself.
            let dispatch = dispatch(&slot, Some(slot.info.fd));
            Connection::new(stream, slot, state, dispatch, stop)
                .serve()
                .await
        }
        Transport::Tls | Transport::PerCore { tls: true } => {
            let acceptor = state.tls.as_ref().expect("a TLS listener has TLS on");
            let (timeout, stats) = (state.config.tls_handshake_timeout, &state.threads[thread]);
            let handshake = tls::handshake(acceptor, stream, timeout, &mut stop, stats);
            let Some(stream) = handshake.await else {
                return;
            };
            let dispatch = dispatch(&slot, None);
            Connection::new(stream, slot, state, dispatch, stop)
                .serve()
                .await
        }
    }
}
