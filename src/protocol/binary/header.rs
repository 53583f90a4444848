//! The binary protocol's wire vocabulary: the magic bytes, the header,
//! the opcodes and the statuses. The parser (`binary.rs`) and the reply
//! writer (`reply.rs`) both speak it; it imports neither.

use super::super::reply::ErrorReply;

/// First byte of every request packet.
pub const REQUEST_MAGIC: u8 = 0x80;
/// First byte of every response packet.
pub const RESPONSE_MAGIC: u8 = 0x81;
/// Bytes of a packet header.
pub const HEADER_LEN: usize = 24;

/// The opcodes memcached 1.6 answers (and the SASL ones, which it refuses
/// when SASL is off). Any other byte is an unknown command.
#[allow(missing_docs)] // each is the command of the same name
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    Get = 0x00,
    Set = 0x01,
    Add = 0x02,
    Replace = 0x03,
    Delete = 0x04,
    Increment = 0x05,
    Decrement = 0x06,
    Quit = 0x07,
    Flush = 0x08,
    GetQ = 0x09,
    Noop = 0x0a,
    Version = 0x0b,
    GetK = 0x0c,
    GetKQ = 0x0d,
    Append = 0x0e,
    Prepend = 0x0f,
    Stat = 0x10,
    SetQ = 0x11,
    AddQ = 0x12,
    ReplaceQ = 0x13,
    DeleteQ = 0x14,
    IncrementQ = 0x15,
    DecrementQ = 0x16,
    QuitQ = 0x17,
    FlushQ = 0x18,
    AppendQ = 0x19,
    PrependQ = 0x1a,
    Touch = 0x1c,
    Gat = 0x1d,
    GatQ = 0x1e,
    SaslListMechs = 0x20,
    SaslAuth = 0x21,
    SaslStep = 0x22,
    GatK = 0x23,
    GatKQ = 0x24,
}

impl Opcode {
    /// The opcode of `byte`, if memcached knows it.
    pub fn from_byte(byte: u8) -> Option<Opcode> {
        use Opcode::*;
        Some(match byte {
            0x00 => Get,
            0x01 => Set,
            0x02 => Add,
            0x03 => Replace,
            0x04 => Delete,
            0x05 => Increment,
            0x06 => Decrement,
            0x07 => Quit,
            0x08 => Flush,
            0x09 => GetQ,
            0x0a => Noop,
            0x0b => Version,
            0x0c => GetK,
            0x0d => GetKQ,
            0x0e => Append,
            0x0f => Prepend,
            0x10 => Stat,
            0x11 => SetQ,
            0x12 => AddQ,
            0x13 => ReplaceQ,
            0x14 => DeleteQ,
            0x15 => IncrementQ,
            0x16 => DecrementQ,
            0x17 => QuitQ,
            0x18 => FlushQ,
            0x19 => AppendQ,
            0x1a => PrependQ,
            0x1c => Touch,
            0x1d => Gat,
            0x1e => GatQ,
            0x20 => SaslListMechs,
            0x21 => SaslAuth,
            0x22 => SaslStep,
            0x23 => GatK,
            0x24 => GatKQ,
            // 0x1b (verbosity) included: memcached 1.6 has never answered it.
            _ => return None,
        })
    }

    /// Quiet forms say nothing on success (and gets nothing on a miss).
    pub fn quiet(self) -> bool {
        use Opcode::*;
        matches!(
            self,
            GetQ | GetKQ
                | SetQ
                | AddQ
                | ReplaceQ
                | DeleteQ
                | IncrementQ
                | DecrementQ
                | QuitQ
                | FlushQ
                | AppendQ
                | PrependQ
                | GatQ
                | GatKQ
        )
    }

    /// The reply to a hit (and to a miss) carries the key.
    pub fn returns_key(self) -> bool {
        matches!(
            self,
            Opcode::GetK | Opcode::GetKQ | Opcode::GatK | Opcode::GatKQ
        )
    }
}

/// What every reply to a request echoes, and the request's CAS token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The opcode byte, echoed in the reply.
    pub opcode: u8,
    /// The client's opaque, echoed in the reply.
    pub opaque: u32,
    /// The request's CAS token (0: none).
    pub cas: u64,
}

impl Header {
    /// The opcode, if memcached knows it.
    pub fn command(&self) -> Option<Opcode> {
        Opcode::from_byte(self.opcode)
    }

    /// Whether success (and a get's miss) goes unanswered.
    pub fn quiet(&self) -> bool {
        self.command().is_some_and(Opcode::quiet)
    }

    /// Whether the reply carries the key.
    pub fn returns_key(&self) -> bool {
        self.command().is_some_and(Opcode::returns_key)
    }
}

/// A reply's status, with memcached's codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// Done.
    Success = 0x00,
    /// Key not found.
    KeyNotFound = 0x01,
    /// Key exists (a CAS mismatch, or `add` of a present key).
    KeyExists = 0x02,
    /// Value too large.
    TooLarge = 0x03,
    /// Invalid arguments (a malformed packet).
    Invalid = 0x04,
    /// Item not stored.
    NotStored = 0x05,
    /// Incr/decr on a non-numeric value.
    NonNumeric = 0x06,
    /// Unknown command.
    UnknownCommand = 0x81,
    /// Out of memory.
    OutOfMemory = 0x82,
    /// Internal error (the binary protocol's status for a server failure;
    /// memcached 1.6 never sends it).
    Internal = 0x84,
}

impl Status {
    /// The body memcached sends with this status when it has no other.
    pub fn message(self) -> &'static [u8] {
        match self {
            Status::Success => b"",
            Status::KeyNotFound => b"Not found",
            Status::KeyExists => b"Data exists for key.",
            Status::TooLarge => b"Too large.",
            Status::Invalid => b"Invalid arguments",
            Status::NotStored => b"Not stored.",
            Status::NonNumeric => b"Non-numeric server-side value for incr or decr",
            Status::UnknownCommand => b"Unknown command",
            Status::OutOfMemory => b"Out of memory",
            Status::Internal => b"Internal error",
        }
    }

    /// The status and body a failed keyed request gets for `error`.
    pub(super) fn of(error: ErrorReply) -> (Status, &'static [u8]) {
        match error {
            ErrorReply::TooLarge => (Status::TooLarge, Status::TooLarge.message()),
            // memcached's words when an item cannot be allocated.
            ErrorReply::OutOfMemory => (Status::OutOfMemory, b"Out of memory allocating item"),
            ErrorReply::OutOfMemoryGet => (Status::OutOfMemory, Status::OutOfMemory.message()),
            ErrorReply::NonNumeric => (Status::NonNumeric, Status::NonNumeric.message()),
            ErrorReply::Internal => (Status::Internal, Status::Internal.message()),
            // Text-only errors (malformed lines) never come from a binary
            // request.
            _ => (Status::Invalid, Status::Invalid.message()),
        }
    }
}
