//! Forwarding between cores: what travels, how a scheduler turn's worth of
//! it is batched, how a core is woken only when it sleeps, and how a
//! connection's plan is run across cores within its output budget.
//!
//! ```text
//!  core A                                               core B
//!  connection: Hop --ops--> Outbox[B]                   Inbox (flume queue)
//!   (waits on its           | flushed once per turn       | drained in B's turn
//!    Ticket)                v by A's mailbox task         v and before B parks
//!                     Mailbox[B].post(Forward) -------->  Batch::execute on
//!  WaitList <-- deliver <-- A's Inbox <-- Mailbox[A].post(Reply)  B's shards
//! ```
//!
//! - **One message per owner per turn** ([`outbox::Outbox`]). Connections append
//!   their remote operations to the core's outbox; the core's mailbox
//!   task, woken when the outbox becomes non-empty, runs after the
//!   connections already woken in that turn and sends each owner one
//!   [`batch::Batch`] holding all of them. Replies are coalesced the same way.
//! - **A core is woken only when it has said it sleeps** (`mailbox.rs`:
//!   one atomic word per mailbox, the count of messages posted and a
//!   SLEEPING bit).
//! - **Sends never wait.** See [`mailbox::capacity`]: a mailbox is bounded above
//!   what can ever be in flight to it, so `try_send` cannot fail, and two
//!   cores can never block on each other.
//! - **A late reply cannot reach the wrong connection** (`waiting.rs`:
//!   tickets carry their slot's generation).
//! - **Replies in order, writes in order, within the budget** ([`Hop`]):
//!   a connection's plan runs in waves, its replies are stitched back in
//!   request order, its writes become visible in the order it sent them,
//!   and what it holds of replies stays within its output budget (plus
//!   one reply per core).
//!
//! Files: `batch.rs` (what travels), `mailbox.rs` (the queue and the wake
//! protocol), `outbox.rs` (batching and pooling), `waiting.rs` (tickets),
//! `exchange.rs` (a core's mail run), `hop.rs` (a connection's waves).

mod batch;
mod direct;
mod exchange;
mod hop;
mod mailbox;
mod outbox;
#[doc(hidden)]
pub mod saturated;
mod waiting;

pub(crate) use batch::Referenced;
pub(crate) use exchange::{Exchange, LocalShards, MailRun};
pub(crate) use hop::Hop;
pub(crate) use mailbox::{Inbox, Mailbox, mailboxes};
