//! memcached's protocols: bytes in, requests out, replies back to bytes.
//!
//! Everything here is pure: no sockets, no storage, no clocks. The parser
//! ([`parse`]) looks at a read buffer and either returns one complete
//! request borrowing from it, or says the buffer holds only part of one
//! ([`ParseError::Incomplete`]), so a request split over any number of reads
//! parses the same and a buffer holding many requests (pipelining) is taken
//! apart one request at a time without copying. Malformed input is not a
//! parse error: it is a [`Request::Invalid`] carrying the exact reply
//! memcached would send, so the connection answers it in order like any
//! other request. Only a line that never ends, and a storage command whose
//! data block cannot be located ([`Request::Unframed`]), are fatal.
//!
//! Replies are typed values: a keyed request's [`Outcome`], a meta
//! command's [`meta::MetaReply`], a named [`ErrorReply`]. The text encoders
//! are here; [`binary`] holds memcached's binary protocol, its parser and
//! the encoder that writes the same outcomes as binary packets.

pub mod admin;
pub mod binary;
mod get_line;
mod kind;
pub mod meta;
mod meta_line;
mod reply;
mod request;
mod text;
mod tokens;

pub use get_line::{GET_PIECE_MAX, GET_WHOLE_MAX, parse_rest};
pub use kind::{ArithKind, StoreKind};
pub use reply::{ErrorReply, Outcome, Reply, Value};
pub use request::{GetLine, LineRest, ParseError, Parsed, Request};
pub use text::{frame_len, parse};
pub use tokens::{KEY_MAX_LEN, LINE_MAX_LEN, Tokens, valid_key};
