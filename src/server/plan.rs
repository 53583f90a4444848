//! The vocabulary between a connection and the runtime that runs its
//! requests: a read batch becomes a plan of [`Step`]s, and a [`Dispatch`]
//! runs the keyed ones.
//!
//! A connection parses every complete request in its read buffer into
//! steps (one per key of a multi-key get), then hands runs of steps to its
//! runtime's [`Dispatch`]. The dispatch answers them in order, within the
//! connection's output budget: it stops once the output holds `budget`
//! bytes, the connection writes, and the rest of the plan is run after.
//! So a client that sends much and reads nothing holds at most its budget
//! (and the replies that crossed it) in server memory.

use super::op::{Op, Span};
use super::{Control, ShardReport};
use crate::protocol;
use crate::protocol::ErrorReply;
use crate::stats::ThreadStats;

/// One entry of a read batch's plan.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// A keyed operation; its reply goes here.
    Op(Op),
    /// A fixed reply, such as the `END` after a get's values.
    Text(&'static [u8]),
    /// An error reply.
    Error(ErrorReply),
    /// A binary-protocol reply that needs no shard (`binary.rs`).
    Binary(protocol::binary::Fixed),
    /// A request that needs the whole server.
    Admin(AdminStep),
}

impl Step {
    /// Appends the reply of a step that needs no shard (text, an error, a
    /// fixed binary packet). Keyed and admin steps are run elsewhere.
    pub fn write_fixed(&self, out: &mut Vec<u8>) {
        match self {
            Step::Text(text) => out.extend_from_slice(text),
            Step::Error(error) => error.write(out),
            Step::Binary(reply) => reply.write(out),
            Step::Op(_) | Step::Admin(_) => unreachable!("not a fixed reply"),
        }
    }
}

/// Requests that are not about one key.
#[derive(Clone, Copy, Debug)]
pub enum AdminStep {
    /// `stats [args]`; the arguments as a span of the read buffer.
    Stats(Span),
    /// `flush_all`.
    FlushAll {
        /// Delay in seconds or absolute unix time.
        delay: i64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `shutdown` (enabled, and in a form memcached takes): closes the
    /// connection without a reply, as memcached does, and stops the server.
    Shutdown,
    /// `quit`: stop here and close.
    Quit,
    /// `debug_release` (debug builds only): lets a `debug_hold` go.
    DebugRelease,
    /// `debug_fault <site>` (debug builds only): arms a fault.
    DebugFault(crate::fault::Site),
    /// An admin command that needs the server (`admin.rs`, `settings.rs`).
    Command(protocol::admin::Admin),
    /// `lru_crawler metadump`: written in pieces as it goes (`dump.rs`).
    MetaDump(protocol::admin::Crawl),
    /// A binary `stat` request (`binary.rs`): the group asked for, as a
    /// span of the read buffer, and the opaque its packets echo.
    BinaryStats {
        /// The stat group (the request's key).
        group: Span,
        /// The request's opaque.
        opaque: u32,
    },
}

/// What one [`Dispatch::run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ran {
    /// How many leading steps are answered: their replies are in the
    /// output (or among the referenced parts).
    pub answered: usize,
    /// A request failed in a way that closes the connection (its handling
    /// panicked): close once the output is written.
    pub close: bool,
}

/// How a runtime runs keyed operations and reaches every shard.
pub trait Dispatch {
    /// Runs `steps` (which hold no [`Step::Admin`]) in order, appending
    /// each reply to `out`, until every step is answered or the output
    /// (`out` and the referenced parts) holds at least `budget` bytes. Op
    /// spans refer to `base`.
    ///
    /// When it returns with steps unanswered, the caller writes the output
    /// and calls again with the unanswered steps (`&steps[ran.answered..]`)
    /// over the same `base`: a runtime may have run some of them already
    /// and keep their replies until their turn.
    async fn run(&mut self, steps: &[Step], base: &[u8], out: &mut Vec<u8>, budget: usize) -> Ran;

    /// Runs `control` on every shard, after everything this connection sent
    /// before it; returns each shard's stats.
    async fn control(&mut self, control: Control) -> Vec<ShardReport>;

    /// Counters of the thread this connection is running on.
    fn thread_stats(&self) -> &ThreadStats;

    /// Replies a runtime does not copy into the output (thread-per-core:
    /// large forwarded ones), written from where they lie.
    type Referenced: OutputPart;

    /// The replies of the last [`Dispatch::run`]s that were not copied into
    /// the output, in output order.
    fn referenced(&self) -> &[Self::Referenced];

    /// The output, referenced replies included, has been written (or
    /// copied into the output: the references are no longer needed).
    fn written(&mut self);
}

/// A reply that goes out just before byte [`OutputPart::at`] of the
/// connection's output, written from where it lies (a vectored write).
pub trait OutputPart {
    /// Where in the output it belongs.
    fn at(&self) -> usize;
    /// Its bytes.
    fn bytes(&self) -> &[u8];
}

/// A runtime that copies every reply into the output has no other parts.
impl OutputPart for std::convert::Infallible {
    fn at(&self) -> usize {
        match *self {}
    }

    fn bytes(&self) -> &[u8] {
        match *self {}
    }
}
