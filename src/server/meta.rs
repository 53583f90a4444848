//! Meta commands (`mg ms md ma me`) planned: a parsed meta request turned
//! into an [`Op`], and base64 keys decoded once each, in place in the read
//! buffer. `mn` needs no shard and is answered by the connection; the ops
//! run in `execute/meta.rs`.

use super::Router;
use super::op::{Op, OpKind, Span, Wire};
use super::plan::Step;
use crate::protocol::meta::{Meta, decode_in_place};

/// The operation of a parsed meta request. A base64 key is still encoded
/// (and hashed as sent): [`decode_keys`] decodes it and hashes it again.
pub(super) fn op(base: &[u8], meta: &Meta<'_>) -> Op {
    let kind = if meta.too_large > 0 {
        OpKind::Discard
    } else {
        OpKind::Meta
    };
    let mut op = Op::new(kind, base, meta.key, Wire::Meta(meta.request));
    op.data = Span::within(base, meta.data);
    op.tokens = Span::within(base, meta.tokens);
    op
}

/// Decodes the base64 key of every meta operation in a freshly planned
/// batch where it lies in the read buffer (a decoded key is shorter than
/// its text), then hashes it. Each key is decoded once: the operation
/// carries the binary key from here on, to its shard and across threads.
pub(super) fn decode_keys(input: &mut [u8], plan: &mut [Step]) {
    for step in plan {
        let Step::Op(op) = step else { continue };
        if !matches!(op.wire, Wire::Meta(request) if request.base64()) {
            continue;
        }
        let start = op.key.start as usize;
        let end = start + op.key.len as usize;
        // The parser checked that the key decodes.
        if let Some(len) = decode_in_place(&mut input[start..end]) {
            op.key.len = len as u32;
        }
        op.hash = Router::hash(op.key.of(input));
    }
}
