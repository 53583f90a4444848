//! Running meta commands (`mg ms md ma me`) on a shard and writing their
//! replies.
//!
//! This module owns the meta protocol's semantics on top of the shard's
//! meta operations: which flags turn into which shard request, which reply
//! code each outcome gets, the response flags echoed in request order
//! (`O` opaques, `k` keys, `c`, `t`, `s`, ...), the `W`/`X`/`Z` markers and
//! quiet mode. Quiet mode (`q`) follows memcached 1.6.18: `mg` drops `EN`,
//! `ms` and `md` drop `HD`, `ma` drops its success reply (`HD` or `VA`)
//! except when it vivified the counter; errors and every other code are
//! always sent. `mn` needs no shard and is answered by the connection.

use super::op::Op;
use crate::clock::Clock;
use crate::protocol::meta::{MetaCommand, decode_key, encode_key};
use crate::protocol::{ErrorReply, KEY_MAX_LEN, Tokens};
use crate::storage::{
    ArithMeta, ArithOp, Deadline, DeleteMeta, DeleteOutcome, MetaArithOutcome, MetaGet, Millis,
    Shard, Store, StoreMeta, StoreMode, StoreOutcome,
};

/// The binary key of `op`: its key as sent, base64-decoded into `buf` if it
/// carries the `b` flag. (The parser checked that it decodes.)
pub(super) fn key<'k>(op: &Op, base: &'k [u8], buf: &'k mut [u8; KEY_MAX_LEN]) -> &'k [u8] {
    let raw = op.key.of(base);
    if op.meta.has(b'b') {
        decode_key(raw, buf).unwrap_or(raw)
    } else {
        raw
    }
}

/// Runs a meta op and appends its reply to `out`.
pub(super) fn execute(
    op: &Op,
    command: MetaCommand,
    base: &[u8],
    shard: &mut Shard,
    clock: &Clock,
    now: Millis,
    out: &mut Vec<u8>,
) {
    let mut buf = [0u8; KEY_MAX_LEN];
    let key = key(op, base, &mut buf);
    let mut echo = Echo {
        key,
        binary: op.meta.has(b'b'),
        tokens: op.tokens.of(base),
    };
    let m = &op.meta;
    let deadline =
        |flag: u8, exptime: i32| m.has(flag).then(|| clock.deadline(i64::from(exptime), now));
    match command {
        MetaCommand::Get => {
            let req = MetaGet {
                touch: deadline(b'T', m.ttl),
                vivify: deadline(b'N', m.vivify),
                recache_before: deadline(b'R', m.recache),
                no_bump: m.has(b'u'),
                new_cas: m.has(b'E').then_some(m.new_cas),
            };
            let Some(hit) = shard.meta_get(key, op.hash, &req, now) else {
                if !m.has(b'q') {
                    out.extend_from_slice(b"EN");
                    echo.common(out);
                    out.extend_from_slice(b"\r\n");
                }
                return;
            };
            let item = hit.item;
            // A hit echoes its key the way it was stored (memcached 1.6.18).
            echo.binary = hit.binary_key;
            let value = m.has(b'v');
            // `t` reports the TTL as of its place in the request: T and N
            // take effect where they appear, as in memcached.
            let mut shown = hit.deadline_before;
            if value {
                out.extend_from_slice(b"VA ");
                number(out, item.value.len() as u64);
            } else {
                out.extend_from_slice(b"HD");
            }
            for token in Tokens::new(echo.tokens) {
                match token[0] {
                    b's' => flag(out, b's', item.value.len() as u64),
                    b't' => ttl(out, shown, now),
                    b'T' => shown = req.touch.unwrap_or(shown),
                    b'N' if hit.created => shown = req.vivify.unwrap_or(shown),
                    b'c' => flag(out, b'c', item.cas),
                    b'f' => flag(out, b'f', u64::from(item.flags)),
                    b'l' => flag(out, b'l', u64::from(hit.idle_secs)),
                    b'h' => flag(out, b'h', u64::from(hit.fetched_before)),
                    _ => echo.one(out, token),
                }
            }
            if hit.token_taken {
                out.extend_from_slice(b" Z");
            }
            if hit.stale {
                out.extend_from_slice(b" X");
            }
            if hit.won {
                out.extend_from_slice(b" W");
            }
            out.extend_from_slice(b"\r\n");
            if value {
                out.extend_from_slice(item.value);
                out.extend_from_slice(b"\r\n");
            }
        }
        MetaCommand::Set => {
            let mut mode = match m.mode {
                b'E' => StoreMode::Add,
                b'A' => StoreMode::Append,
                b'P' => StoreMode::Prepend,
                b'R' => StoreMode::Replace,
                _ => StoreMode::Set,
            };
            let mut compare = m.has(b'C').then_some(m.compare);
            if let (Some(cas), StoreMode::Set | StoreMode::Replace) = (compare, mode) {
                mode = StoreMode::Cas(cas);
                compare = None;
            }
            let appending = matches!(mode, StoreMode::Append | StoreMode::Prepend);
            let store = Store {
                mode,
                key,
                hash: op.hash,
                flags: m.client_flags,
                deadline: deadline(b'T', m.ttl).unwrap_or(Deadline::NEVER),
                value: op.data.of(base),
            };
            let meta = StoreMeta {
                compare,
                new_cas: m.has(b'E').then_some(m.new_cas),
                invalidate: m.has(b'I'),
                vivify: deadline(b'N', m.vivify).filter(|_| appending),
                binary_key: m.has(b'b'),
            };
            let outcome = shard.store_meta(&store, &meta, now);
            let stored = matches!(outcome, StoreOutcome::Stored(_));
            let (code, cas): (&[u8], u64) = match outcome {
                StoreOutcome::Stored(cas) => (b"HD", cas),
                StoreOutcome::NotStored => (b"NS", 0),
                StoreOutcome::Exists => (b"EX", 0),
                StoreOutcome::NotFound => (b"NF", 0),
                StoreOutcome::TooLarge => {
                    return ErrorReply::Server("object too large for cache").write(out);
                }
                StoreOutcome::OutOfMemory => {
                    return ErrorReply::Server("out of memory storing object").write(out);
                }
            };
            if stored && m.has(b'q') {
                return;
            }
            out.extend_from_slice(code);
            for token in Tokens::new(echo.tokens) {
                match token[0] {
                    b'c' => flag(out, b'c', cas),
                    b's' if stored => {
                        let len = shard.value_len(key, op.hash, now).unwrap_or(0);
                        flag(out, b's', len as u64);
                    }
                    _ => echo.one(out, token),
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        MetaCommand::Delete => {
            let req = DeleteMeta {
                compare: m.has(b'C').then_some(m.compare),
                invalidate: m.has(b'I'),
                new_cas: m.has(b'E').then_some(m.new_cas),
                touch: deadline(b'T', m.ttl),
                strip: m.has(b'x'),
            };
            let code: &[u8] = match shard.meta_delete(key, op.hash, &req, now) {
                DeleteOutcome::Done if m.has(b'q') => return,
                DeleteOutcome::Done => b"HD",
                DeleteOutcome::NotFound => b"NF",
                DeleteOutcome::Exists => b"EX",
            };
            out.extend_from_slice(code);
            echo.common(out);
            out.extend_from_slice(b"\r\n");
        }
        MetaCommand::Arith => {
            let op_kind = match m.mode {
                b'D' | b'-' => ArithOp::Decr,
                _ => ArithOp::Incr,
            };
            let req = ArithMeta {
                compare: m.has(b'C').then_some(m.compare),
                new_cas: m.has(b'E').then_some(m.new_cas),
                vivify: deadline(b'N', m.vivify).map(|d| (d, m.initial)),
                touch: deadline(b'T', m.ttl),
            };
            let code: &[u8] = match shard.meta_arith(key, op.hash, op_kind, m.delta, &req, now) {
                MetaArithOutcome::Value {
                    value,
                    cas,
                    deadline: _,
                    deadline_before,
                    created,
                } => {
                    // memcached 1.6.18 answers a vivified counter even in
                    // quiet mode.
                    if m.has(b'q') && !created {
                        return;
                    }
                    let mut digits = itoa::Buffer::new();
                    let digits = digits.format(value).as_bytes();
                    let with_value = m.has(b'v');
                    if with_value {
                        out.extend_from_slice(b"VA ");
                        number(out, digits.len() as u64);
                    } else {
                        out.extend_from_slice(b"HD");
                    }
                    // As for mg, `t` sees T and N only once they appear.
                    let mut shown = deadline_before;
                    for token in Tokens::new(echo.tokens) {
                        match token[0] {
                            b'c' => flag(out, b'c', cas),
                            b't' => ttl(out, shown, now),
                            b'T' => shown = req.touch.unwrap_or(shown),
                            b'N' if created => shown = req.vivify.map_or(shown, |(d, _)| d),
                            _ => echo.one(out, token),
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                    if with_value {
                        out.extend_from_slice(digits);
                        out.extend_from_slice(b"\r\n");
                    }
                    return;
                }
                MetaArithOutcome::NotFound => b"NF",
                MetaArithOutcome::NotStored => b"NS",
                MetaArithOutcome::Exists => b"EX",
                MetaArithOutcome::NonNumeric => {
                    return ErrorReply::Client("cannot increment or decrement non-numeric value")
                        .write(out);
                }
            };
            out.extend_from_slice(code);
            echo.common(out);
            out.extend_from_slice(b"\r\n");
        }
        MetaCommand::Debug => {
            let Some(d) = shard.meta_debug(key, op.hash, now) else {
                out.extend_from_slice(b"EN\r\n");
                return;
            };
            out.extend_from_slice(b"ME ");
            // The decoded key even with `b`: what 1.6.18 prints (protocol.txt
            // says base64).
            out.extend_from_slice(key);
            out.extend_from_slice(b" exp=");
            let exp = Clock::remaining_secs(d.deadline, now);
            out.extend_from_slice(itoa::Buffer::new().format(exp).as_bytes());
            out.extend_from_slice(b" la=");
            number(out, u64::from(d.idle_secs));
            out.extend_from_slice(b" cas=");
            number(out, d.cas);
            let fetch: &[u8] = if d.fetched {
                b" fetch=yes"
            } else {
                b" fetch=no"
            };
            out.extend_from_slice(fetch);
            out.extend_from_slice(b" cls=");
            number(out, d.class as u64 + 1);
            out.extend_from_slice(b" size=");
            number(out, d.size as u64);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The response flags every meta reply echoes: `O` opaques and `k` keys.
struct Echo<'a> {
    key: &'a [u8],
    /// Echo the key base64-encoded, followed by ` b`.
    binary: bool,
    tokens: &'a [u8],
}

impl Echo<'_> {
    /// Echoes every `O` and `k` in request order.
    fn common(&self, out: &mut Vec<u8>) {
        for token in Tokens::new(self.tokens) {
            self.one(out, token);
        }
    }

    /// Echoes `token` if it is an `O` or a `k`.
    fn one(&self, out: &mut Vec<u8>, token: &[u8]) {
        match token[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(token);
            }
            b'k' => {
                out.extend_from_slice(b" k");
                if self.binary {
                    encode_key(self.key, out);
                    out.extend_from_slice(b" b");
                } else {
                    out.extend_from_slice(self.key);
                }
            }
            _ => {}
        }
    }
}

fn number(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn flag(out: &mut Vec<u8>, flag: u8, value: u64) {
    out.push(b' ');
    out.push(flag);
    number(out, value);
}

fn ttl(out: &mut Vec<u8>, deadline: Deadline, now: Millis) {
    out.extend_from_slice(b" t");
    let secs = Clock::remaining_secs(deadline, now);
    out.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
}
