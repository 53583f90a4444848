//! An owner core writing a reply to a connection's socket itself.
//!
//! A connection's bytes are otherwise written by its own core. At
//! pipeline 1 the only thing a connection waits for is its one forwarded
//! request, so the owner can answer the client itself instead of waking
//! the connection's core to do it: the client's answer then costs one wake
//! (of the owner), not two. The owner writes with a non-blocking send and
//! never waits: whatever the socket does not take at once, the connection's
//! core writes after it, in order (see `hop.rs`, "One wake fewer").

use std::os::fd::RawFd;

/// Sends as much of `parts`, in order, as the socket `fd` takes now,
/// without blocking and without `SIGPIPE`; returns the bytes sent (0 on any
/// error: the connection's core writes them and sees the error itself).
pub(super) fn send(fd: RawFd, parts: &[&[u8]]) -> usize {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2];
    let count = parts.len().min(iov.len());
    for (slot, part) in iov.iter_mut().zip(parts) {
        // sendmsg only reads from the buffers it is given.
        slot.iov_base = part.as_ptr() as *mut libc::c_void;
        slot.iov_len = part.len();
    }
    // SAFETY: a zeroed msghdr is a valid empty one (no address, no control
    // data); only its iovec fields are set below.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iov.as_mut_ptr();
    message.msg_iovlen = count as _;
    // SAFETY: `message` points at `count` iovecs of live slices for the
    // duration of the call; `fd` is the connection's socket, which its core
    // keeps open while this request is out (the connection waits for the
    // reply batch before it can close).
    let sent = unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    usize::try_from(sent).unwrap_or(0)
}
