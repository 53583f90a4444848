//! One client connection: read, parse every complete request, run them,
//! write every reply in request order, repeat.
//!
//! The loop is the same in both runtimes; only [`Dispatch`], which runs the
//! keyed operations, differs. Each read is turned into a plan of [`Step`]s
//! (one per key for a multi-key get), the plan is run as a whole, and the
//! replies go out in one write. Requests that need every shard (`stats`,
//! `flush_all`) split the plan: what comes before them finishes first, so
//! `set; flush_all; get` behaves as if run one at a time.
//!
//! The connection is generic over its stream: a plaintext `TcpStream` or a
//! TLS stream (`tls.rs`). Each is its own monomorphised copy of the loop,
//! so the plaintext path reads and writes the socket directly, with no
//! dynamic dispatch and no branch on the transport per read or write.

use super::admin;
use super::auth::Passage;
use super::classic;
use super::plan::{AdminStep, Dispatch, OutputPart, Step};
use super::state::ConnState;
use super::{ConnectionSlot, Control, ServerState};
use crate::protocol::{self, ErrorReply, LineRest, ParseError, Reply, Request};
use bytes::{Buf, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Read buffer size to keep free before each read.
const READ_RESERVE: usize = 16 * 1024;
/// How long a shutdown waits for a client that is not reading its replies.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// Buffers that grew past this (a large value went through) are given back
/// once empty, so an idle connection holds little memory.
const BUFFER_KEEP: usize = 256 * 1024;
/// Steps a connection plans from its input before it runs them: the rest
/// of the input waits for the next round. With get lines taken in pieces
/// (`protocol::GET_WHOLE_MAX`), a plan holds at most this and one piece.
const PLAN_MAX: usize = 512;
/// A plan that grew past this many steps is given back once run.
const PLAN_KEEP: usize = 256;
/// A metadump's output is written to the client once it holds this much.
const DUMP_WRITE_AT: usize = 64 * 1024;

/// What the loop does after a batch.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

/// A client connection over stream `S` and its reusable buffers.
pub struct Connection<D, S> {
    stream: S,
    /// Keeps the connection counted and listed in `stats conns`.
    slot: ConnectionSlot,
    state: Arc<ServerState>,
    dispatch: D,
    input: BytesMut,
    output: Vec<u8>,
    plan: Vec<Step>,
    /// Bytes of a refused data block still to be discarded.
    swallow: usize,
    /// Bytes at the start of `input` already known to hold no newline: a
    /// line arriving in many small reads is scanned once, not once per read.
    newline_free: usize,
    /// The rest of a long line taken in pieces: more keys of a `get`, or
    /// the tail of a line already answered with an error.
    line_rest: Option<LineRest>,
    /// Whether the connection speaks the binary protocol: its first byte
    /// decides, for the rest of its life (`binary.rs`).
    binary: Option<bool>,
    /// Until the client authenticates (`--auth-file`), what it has sent of
    /// its login; None once it has, or when no one needs to.
    locked: Option<super::auth::Gate>,
    /// Tells the connection the server is stopping.
    shutdown: watch::Receiver<bool>,
    /// The whole size of a request larger than a read that has begun to
    /// arrive at the front of `input` (a big value), or 0: the buffer is
    /// grown to exactly that, so a client holds at most one item here.
    frame: usize,
}

impl<D: Dispatch, S: AsyncRead + AsyncWrite + Unpin> Connection<D, S> {
    /// Wraps an admitted stream (its socket already set `TCP_NODELAY`).
    pub fn new(
        stream: S,
        slot: ConnectionSlot,
        state: Arc<ServerState>,
        dispatch: D,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Connection {
            shutdown,
            frame: 0,
            stream,
            slot,
            dispatch,
            input: BytesMut::with_capacity(READ_RESERVE),
            output: Vec::with_capacity(READ_RESERVE),
            plan: Vec::new(),
            swallow: 0,
            newline_free: 0,
            line_rest: None,
            // With auth on, every connection speaks text, as in memcached.
            binary: state.auth.is_some().then_some(false),
            locked: state.auth.is_some().then(super::auth::Gate::default),
            state,
        }
    }

    /// Serves the connection until the client leaves, sends `quit`, or the
    /// server shuts down. Requests already read are answered before closing.
    pub async fn serve(mut self) {
        let idle_timeout = !self.state.config.idle_timeout.is_zero();
        loop {
            self.make_room();
            let info = &self.slot.info;
            info.set_state(ConnState::Waiting);
            let read = tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.input) => Some(read),
                _ = self.shutdown.wait_for(|stop| *stop) => break,
                // Only while it waits for a request, as in memcached: a
                // connection busy writing to a slow reader is not idle.
                _ = info.idle_kick.notified(), if idle_timeout => None,
            };
            match read {
                None if info.is_idle(&self.state.config, self.state.clock.now()) => {
                    self.dispatch.thread_stats().idle_kicks.add(1);
                    break;
                }
                // It read since the sweep looked.
                None => continue,
                Some(Ok(0) | Err(_)) => break,
                Some(Ok(n)) => self.dispatch.thread_stats().bytes_read.add(n as u64),
            }
            let now = self.state.clock.now();
            let info = &self.slot.info;
            info.last_active
                .store(now, std::sync::atomic::Ordering::Relaxed);
            info.set_state(ConnState::ParseCmd);
            let next = self.handle_input().await;
            if !self.write_output().await {
                break;
            }
            if next == Next::Close {
                break;
            }
            if self.input.is_empty() && self.input.capacity() > BUFFER_KEEP {
                self.input = BytesMut::with_capacity(READ_RESERVE);
            }
        }
        // A TLS close sends a last record, which a client that does not
        // read could hold up forever.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.stream.shutdown()).await;
    }

    /// Makes room in the input buffer for the next read: for exactly the
    /// request that has begun to arrive if it is larger than the buffer
    /// (growing by doubling could hold twice an item), else a read's worth.
    fn make_room(&mut self) {
        let (len, capacity) = (self.input.len(), self.input.capacity());
        if self.frame > capacity {
            let mut bigger = BytesMut::with_capacity(self.frame);
            bigger.extend_from_slice(&self.input);
            self.input = bigger;
        } else if (self.frame == 0 && capacity - len < READ_RESERVE / 2) || capacity == len {
            self.input.reserve(READ_RESERVE);
        }
    }

    /// Writes what the output buffer holds, with the replies the runtime
    /// kept by reference in their places, and empties it; false if the
    /// client is gone.
    async fn write_output(&mut self) -> bool {
        let referenced = self.dispatch.referenced();
        if self.output.is_empty() && referenced.is_empty() {
            return true;
        }
        let size = self.output.len() + referenced.iter().map(|r| r.bytes().len()).sum::<usize>();
        self.slot.info.set_state(ConnState::Mwrite);
        let shutdown = &mut self.shutdown;
        // A client that stops reading must not hold up a shutdown: once
        // one is under way, its replies get a short grace.
        let written = tokio::select! {
            biased;
            written = write_parts(&mut self.stream, &mut self.output, &mut self.dispatch) => {
                written.is_ok()
            }
            _ = async {
                let _ = shutdown.wait_for(|stop| *stop).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => false,
        };
        if !written {
            return false;
        }
        self.slot.info.set_state(ConnState::ParseCmd);
        self.dispatch.written();
        self.dispatch.thread_stats().bytes_written.add(size as u64);
        self.output.clear();
        if self.output.capacity() > BUFFER_KEEP {
            self.output = Vec::with_capacity(READ_RESERVE);
        }
        true
    }

    /// Runs `lru_crawler metadump`, writing each step to the client before
    /// taking the next, so the dump is never held whole; stops it (every
    /// shard's cursor closed) if the client goes away.
    async fn metadump(&mut self, crawl: protocol::admin::Crawl) -> Next {
        let state = self.state.clone();
        let (dispatch, out) = (&mut self.dispatch, &mut self.output);
        let Some(mut dump) = super::dump::MetaDump::start(crawl, &state, dispatch, out).await
        else {
            return Next::Continue;
        };
        while dump.next(&mut self.dispatch, &mut self.output).await {
            if self.output.len() >= DUMP_WRITE_AT && !self.write_output().await {
                dump.end(&mut self.dispatch).await;
                return Next::Close;
            }
        }
        Next::Continue
    }

    /// Plans and runs every complete request in the input buffer. Once the
    /// output reaches `--output-budget`, no more requests are run before
    /// it is written: a client that does not read holds at most that (and
    /// the replies that crossed it) here.
    async fn handle_input(&mut self) -> Next {
        if let Some(gate) = &mut self.locked {
            let users = self
                .state
                .auth
                .as_ref()
                .expect("a gate only with --auth-file");
            let stats = self.dispatch.thread_stats();
            let (used, passage) = gate.take(&self.input, users, &mut self.output, stats);
            self.input.advance(used);
            match passage {
                Passage::Wait => return Next::Continue,
                Passage::Close => return Next::Close,
                Passage::Open => self.locked = None,
            }
        }
        let skip = self.swallow.min(self.input.len());
        if skip > 0 {
            self.input.advance(skip);
            self.newline_free = 0;
        }
        self.swallow -= skip;
        if self.swallow > 0 {
            return Next::Continue;
        }
        loop {
            let (consumed, next, capped) = self.plan_requests();
            let next = self.run_plan(next).await;
            self.plan.clear();
            if self.plan.capacity() > PLAN_KEEP {
                self.plan = Vec::new();
            }
            self.input.advance(consumed);
            if next == Next::Close || !capped {
                self.frame = self.frame_len();
                return next;
            }
        }
    }

    /// Runs the plan: its keyed steps through the dispatch, its admin
    /// steps here, writing whenever the output reaches the budget.
    /// Returns `next`, or `Close` if a request or the client ended the
    /// connection.
    async fn run_plan(&mut self, mut next: Next) -> Next {
        let budget = self.state.config.output_budget;
        let mut done = 0;
        while done < self.plan.len() {
            let end = self.plan[done..]
                .iter()
                .position(|step| matches!(step, Step::Admin(_)))
                .map_or(self.plan.len(), |i| done + i);
            if end > done {
                let steps = &self.plan[done..end];
                let ran = self
                    .dispatch
                    .run(steps, &self.input, &mut self.output, budget)
                    .await;
                done += ran.answered;
                if ran.close {
                    next = Next::Close;
                    break;
                }
                if done < end {
                    // Over the budget: the client reads what it has
                    // before anything more is run.
                    if !self.write_output().await {
                        next = Next::Close;
                        break;
                    }
                    continue;
                }
            }
            if let Some(&Step::Admin(step)) = self.plan.get(end)
                && self.admin(step).await == Next::Close
            {
                next = Next::Close;
                break;
            }
            done = end + 1;
            if self.output.len() >= budget && !self.write_output().await {
                next = Next::Close;
                break;
            }
        }
        next
    }

    /// The size of the request that has begun to arrive at the front of
    /// the input, if it is larger than a read (see `frame`); else 0.
    fn frame_len(&self) -> usize {
        let max_value = self.state.config.max_item_size;
        let frame = match self.binary {
            _ if self.swallow > 0 || self.line_rest.is_some() => None,
            Some(true) => protocol::binary::frame_len(&self.input, max_value),
            _ => protocol::frame_len(&self.input, max_value),
        };
        frame.filter(|&n| n > READ_RESERVE).unwrap_or(0)
    }

    /// Parses requests into the plan, at most [`PLAN_MAX`] steps' worth;
    /// returns the bytes used, whether the connection must close after
    /// answering them, and whether complete requests may be left.
    fn plan_requests(&mut self) -> (usize, Next, bool) {
        let max_value = self.state.config.max_item_size;
        if *self
            .binary
            .get_or_insert_with(|| super::binary::speaks_binary(&self.input))
        {
            let stats = self.dispatch.thread_stats();
            let (input, swallow) = (&self.input, &mut self.swallow);
            let (consumed, close, capped) =
                super::binary::plan(input, max_value, &mut self.plan, swallow, stats, PLAN_MAX);
            let next = if close { Next::Close } else { Next::Continue };
            return (consumed, next, capped);
        }
        let base: &[u8] = &self.input;
        let known = std::mem::take(&mut self.newline_free).min(base.len());
        if known > 0
            && base.len() < protocol::LINE_MAX_LEN
            && memchr::memchr(b'\n', &base[known..]).is_none()
        {
            // Still in the middle of the same line: nothing to parse yet.
            self.newline_free = base.len();
            return (0, Next::Continue, false);
        }
        let mut pos = 0;
        let mut requests = 0;
        let mut next = Next::Continue;
        let mut capped = false;
        while pos < base.len() {
            if self.plan.len() >= PLAN_MAX {
                capped = true;
                break;
            }
            let parsed = match self.line_rest {
                None => {
                    requests += 1;
                    protocol::parse(&base[pos..], max_value)
                }
                Some(LineRest::Discard) => match memchr::memchr(b'\n', &base[pos..]) {
                    Some(newline) => {
                        pos += newline + 1;
                        self.line_rest = None;
                        continue;
                    }
                    None => {
                        pos = base.len();
                        break;
                    }
                },
                Some(rest) => protocol::parse_rest(&base[pos..], rest),
            };
            let parsed = match parsed {
                Ok(parsed) => parsed,
                Err(ParseError::Incomplete) => {
                    if self.line_rest.is_none() {
                        requests -= 1;
                        // Remember how much of the tail has no newline, so
                        // the next read scans only what it added.
                        let from = if pos == 0 { known } else { pos };
                        if memchr::memchr(b'\n', &base[from..]).is_none() {
                            self.newline_free = base.len() - pos;
                        }
                    }
                    break;
                }
                Err(ParseError::LineTooLong) => {
                    self.plan.push(Step::Error(ErrorReply::LineTooLong));
                    pos = base.len();
                    next = Next::Close;
                    break;
                }
            };
            pos += parsed.consumed;
            self.line_rest = parsed.rest;
            let swallow = match parsed.request {
                Request::Invalid { swallow, .. } | Request::TooLarge { swallow, .. } => swallow,
                Request::Meta(meta) => meta.too_large,
                _ => 0,
            };
            match parsed.request {
                Request::Unframed { error, noreply } => {
                    // Whatever follows may be the refused request's data.
                    if !noreply {
                        self.plan.push(Step::Error(error));
                    }
                    pos = base.len();
                    next = Next::Close;
                    break;
                }
                _ if swallow > 0 => {
                    classic::plan_one(base, parsed.request, false, &mut self.plan);
                    let here = swallow.min(base.len() - pos);
                    pos += here;
                    self.swallow = swallow - here;
                    if self.swallow > 0 {
                        break;
                    }
                }
                Request::Quit => {
                    self.plan.push(Step::Admin(AdminStep::Quit));
                    break;
                }
                request => classic::plan_one(
                    base,
                    request,
                    self.state.config.enable_shutdown,
                    &mut self.plan,
                ),
            }
        }
        // Base64 meta keys are decoded in place, now that nothing borrows the input.
        super::meta::decode_keys(&mut self.input, &mut self.plan);
        self.dispatch.thread_stats().cmd_total.add(requests);
        (pos, next, capped)
    }

    async fn admin(&mut self, step: AdminStep) -> Next {
        let out = &mut self.output;
        match step {
            AdminStep::Quit => return Next::Close,
            AdminStep::DebugRelease => {
                self.state.debug_gate.release();
                out.extend_from_slice(Reply::OK);
            }
            AdminStep::DebugFault(site) => {
                crate::fault::arm(site);
                out.extend_from_slice(Reply::OK);
            }
            AdminStep::Shutdown => {
                let _ = self.state.shutdown.send(true);
                return Next::Close;
            }
            AdminStep::Command(command) => {
                let (state, dispatch) = (&self.state, &mut self.dispatch);
                super::settings::run(command, state, dispatch, out).await;
            }
            AdminStep::MetaDump(crawl) => return self.metadump(crawl).await,
            AdminStep::FlushAll { delay, noreply } => {
                self.dispatch.thread_stats().cmd_flush.add(1);
                let clock = &self.state.clock;
                let now = clock.now();
                // A delay of 0 or less flushes at once, as in memcached.
                let at = match delay {
                    ..=0 => now,
                    delay => clock.deadline(delay, now).millis().unwrap_or(now),
                };
                self.dispatch.control(Control::Flush { at }).await;
                if !noreply {
                    self.output.extend_from_slice(Reply::OK);
                }
            }
            AdminStep::Stats(args) => {
                let args = args.of(&self.input).to_vec();
                admin::stats(&args, &self.state, &mut self.dispatch, &mut self.output).await;
            }
            AdminStep::BinaryStats { group, opaque } => {
                let group = group.of(&self.input).to_vec();
                let (state, dispatch, out) = (&self.state, &mut self.dispatch, &mut self.output);
                admin::binary_stats(&group, opaque, state, dispatch, out).await;
            }
        }
        Next::Continue
    }
}

/// Writes `output` with the dispatch's referenced replies in their places:
/// one plain write when there are none, else vectored writes of at most
/// [`IOV_BATCH`] parts each, with nothing allocated, for as long as the
/// socket takes them without waiting. Once it would wait, what is left is
/// copied into `output` and the references let go: a slow reader must not
/// hold the batches they lie in (with other connections' replies) for as
/// long as it likes. Then a flush: free on a socket, but a TLS stream may
/// still hold the end of the replies.
async fn write_parts<S: AsyncWrite + Unpin, D: Dispatch>(
    stream: &mut S,
    output: &mut Vec<u8>,
    dispatch: &mut D,
) -> std::io::Result<()> {
    let referenced = dispatch.referenced();
    if !referenced.is_empty() {
        // The parts alternate: output up to the first reference, the
        // reference, output up to the next, ... and the output's tail.
        let part = |i: usize| -> &[u8] {
            if i % 2 == 1 {
                return referenced[i / 2].bytes();
            }
            let from = if i == 0 {
                0
            } else {
                referenced[i / 2 - 1].at()
            };
            let to = referenced.get(i / 2).map_or(output.len(), |r| r.at());
            &output[from..to]
        };
        let parts = 2 * referenced.len() + 1;
        let (mut next, mut offset) = (0, 0);
        while next < parts {
            let mut slices = [std::io::IoSlice::new(&[]); IOV_BATCH];
            let mut count = 0;
            for i in next..parts.min(next + IOV_BATCH) {
                let bytes = part(i);
                slices[count] =
                    std::io::IoSlice::new(if i == next { &bytes[offset..] } else { bytes });
                count += 1;
            }
            let attempt = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(
                    std::pin::Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..count]),
                )
            });
            let mut written = match attempt.await {
                std::task::Poll::Ready(written) => written?,
                std::task::Poll::Pending => break,
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            // Advance past what the write took.
            while next < parts {
                let left = part(next).len() - offset;
                if written < left {
                    offset += written;
                    break;
                }
                written -= left;
                next += 1;
                offset = 0;
            }
        }
        if next == parts {
            output.clear();
        } else {
            let mut rest =
                Vec::with_capacity((next..parts).map(|i| part(i).len()).sum::<usize>() - offset);
            rest.extend_from_slice(&part(next)[offset..]);
            for i in next + 1..parts {
                rest.extend_from_slice(part(i));
            }
            *output = rest;
        }
        dispatch.written();
    }
    stream.write_all(output).await?;
    stream.flush().await
}

/// Parts given to one vectored write at most.
const IOV_BATCH: usize = 64;
