//! Writing binary replies: a request's [`Outcome`], a [`Fixed`] reply, or
//! `stat` packets, each as memcached 1.6.18 writes them.
//!
//! Every reply echoes its request's opcode and opaque. Quiet opcodes say
//! nothing on success and, for gets, nothing on a miss; an error is always
//! sent. Error replies carry memcached's message as their body.

use super::super::reply::Outcome;
use super::header::{HEADER_LEN, Header, Opcode, RESPONSE_MAGIC, Status};

/// A response header.
#[allow(clippy::too_many_arguments)]
fn header_bytes(
    opcode: u8,
    status: Status,
    extras: usize,
    key: usize,
    body: usize,
    opaque: u32,
    cas: u64,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = RESPONSE_MAGIC;
    h[1] = opcode;
    h[2..4].copy_from_slice(&(key as u16).to_be_bytes());
    h[4] = extras as u8;
    // h[5]: data type, always raw bytes (0).
    h[6..8].copy_from_slice(&(status as u16).to_be_bytes());
    h[8..12].copy_from_slice(&(body as u32).to_be_bytes());
    h[12..16].copy_from_slice(&opaque.to_be_bytes());
    h[16..24].copy_from_slice(&cas.to_be_bytes());
    h
}

impl Header {
    fn head(&self, out: &mut Vec<u8>, status: Status, lens: (usize, usize, usize), cas: u64) {
        let (extras, key, body) = lens;
        out.reserve(HEADER_LEN + body);
        let h = header_bytes(self.opcode, status, extras, key, body, self.opaque, cas);
        out.extend_from_slice(&h);
    }

    /// Appends the reply to this request for `outcome` (nothing, when a
    /// quiet opcode drops it). `key` is the request's key: a `getk` miss
    /// echoes it.
    pub fn write(&self, outcome: Outcome<'_>, key: &[u8], out: &mut Vec<u8>) {
        let quiet = self.quiet();
        match outcome {
            Outcome::Value(v) => {
                let key = if self.returns_key() { v.key } else { &[] };
                // `touch` answers with the flags and CAS, not the value.
                let data = if self.command() == Some(Opcode::Touch) {
                    &[]
                } else {
                    v.data
                };
                let body = 4 + key.len() + data.len();
                self.head(out, Status::Success, (4, key.len(), body), v.cas);
                out.extend_from_slice(&v.flags.to_be_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(data);
            }
            Outcome::Miss if quiet => {}
            Outcome::Miss if self.returns_key() => {
                // memcached sends the key instead of a message here.
                self.head(out, Status::KeyNotFound, (0, key.len(), key.len()), 0);
                out.extend_from_slice(key);
            }
            Outcome::Miss | Outcome::NotFound => self.error(Status::KeyNotFound, out),
            Outcome::Stored { cas } => self.success(cas, out),
            Outcome::Deleted | Outcome::Touched => self.success(0, out),
            Outcome::Number { .. } if quiet => {}
            Outcome::Number { value, cas } => {
                self.head(out, Status::Success, (0, 0, 8), cas);
                out.extend_from_slice(&value.to_be_bytes());
            }
            Outcome::NotStored => self.error(
                match self.command() {
                    // What memcached says when add or replace is not stored.
                    Some(Opcode::Add | Opcode::AddQ) => Status::KeyExists,
                    Some(Opcode::Replace | Opcode::ReplaceQ) => Status::KeyNotFound,
                    _ => Status::NotStored,
                },
                out,
            ),
            Outcome::Exists => self.error(Status::KeyExists, out),
            Outcome::Error(error) => {
                let (status, message) = Status::of(error);
                self.error_with(status, message, out);
            }
        }
    }

    fn success(&self, cas: u64, out: &mut Vec<u8>) {
        if !self.quiet() {
            self.head(out, Status::Success, (0, 0, 0), cas);
        }
    }

    /// Appends an error reply with the status's message (always sent).
    pub fn error(&self, status: Status, out: &mut Vec<u8>) {
        self.error_with(status, status.message(), out);
    }

    fn error_with(&self, status: Status, message: &[u8], out: &mut Vec<u8>) {
        self.head(out, status, (0, 0, message.len()), 0);
        out.extend_from_slice(message);
    }
}

/// A reply that needs no shard: a status with a fixed body (`noop`,
/// `version`, a refused request). Plain `Copy` data for a connection's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    header: Header,
    status: Status,
    body: &'static [u8],
}

impl Fixed {
    /// Success with `body` (empty for most commands, the version string for
    /// `version`).
    pub fn success(header: Header, body: &'static [u8]) -> Fixed {
        Fixed {
            header,
            status: Status::Success,
            body,
        }
    }

    /// `status` with its message.
    pub fn error(header: Header, status: Status) -> Fixed {
        Fixed {
            header,
            status,
            body: status.message(),
        }
    }

    /// Appends the reply.
    pub fn write(&self, out: &mut Vec<u8>) {
        let lens = (0, 0, self.body.len());
        self.header.head(out, self.status, lens, 0);
        out.extend_from_slice(self.body);
    }
}

/// Appends one `stat` reply packet: the name as its key, the value as its
/// value, as memcached sends each statistic.
pub fn write_stat(out: &mut Vec<u8>, opaque: u32, name: &str, value: impl std::fmt::Display) {
    write_stat_bytes(out, opaque, name, value.to_string().as_bytes());
}

/// Appends one `stat` packet whose value is raw bytes (memcached's
/// `detailed` statistic, a whole text listing).
pub fn write_stat_bytes(out: &mut Vec<u8>, opaque: u32, name: &str, value: &[u8]) {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(value);
    let stat = Opcode::Stat as u8;
    let h = header_bytes(
        stat,
        Status::Success,
        0,
        name.len(),
        name.len() + value.len(),
        opaque,
        0,
    );
    out[start..start + HEADER_LEN].copy_from_slice(&h);
}

/// Appends the empty `stat` packet that ends a listing.
pub fn write_stats_end(out: &mut Vec<u8>, opaque: u32) {
    let stat = Opcode::Stat as u8;
    out.extend_from_slice(&header_bytes(stat, Status::Success, 0, 0, 0, opaque, 0));
}
