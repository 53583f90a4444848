//! The name a forwarded request carries of the connection that waits for
//! its reply: a leaf, so the batch that carries it and the wait list that
//! hands it out need not know each other.

/// Names one connection waiting for forwarded replies: its slot in its
/// core's wait list (`waiting.rs`) and the slot's generation when it was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The slot in the core's wait list.
    pub(super) slot: u32,
    /// The slot's generation when the ticket was taken.
    pub(super) generation: u32,
}
