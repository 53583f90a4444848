//! The binary protocol on a connection: binary requests planned into the
//! same steps as text ones (the keyed ones run in `execute/binary.rs`).
//!
//! A connection speaks binary when its first byte is the request magic
//! ([`speaks_binary`]), for the rest of its life, as in memcached. Each
//! keyed binary request becomes the same [`Op`] a text request does, with
//! [`Wire::Binary`] saying how to answer it, so it is routed, forwarded
//! across threads and answered in order like any other. What has no key
//! becomes a fixed reply ([`Fixed`]) or a whole-server step (`flush`,
//! `stat`, `quit`).

use super::admin;
use super::execute::arith_op;
use super::op::{Op, OpKind, Span, Wire};
use super::plan::{AdminStep, Step};
use crate::protocol::StoreKind;
use crate::protocol::binary::{self, BinaryError, Fixed, Parsed, Request, Status};
use crate::stats::ThreadStats;

/// Whether a connection whose first bytes are `input` speaks binary.
pub(super) fn speaks_binary(input: &[u8]) -> bool {
    input.first() == Some(&binary::REQUEST_MAGIC)
}

/// Parses the binary requests in `input` into `plan`, until it holds
/// `max_steps`. Returns the bytes used, whether the connection must close
/// after answering them (a bad magic byte, a malformed packet), and
/// whether it stopped at `max_steps`; sets `swallow` to the bytes of a
/// refused body still to come.
pub(super) fn plan(
    input: &[u8],
    max_value: usize,
    plan: &mut Vec<Step>,
    swallow: &mut usize,
    stats: &ThreadStats,
    max_steps: usize,
) -> (usize, bool, bool) {
    let mut pos = 0;
    let mut requests = 0;
    let mut close = false;
    let mut capped = false;
    while pos < input.len() {
        if plan.len() >= max_steps {
            capped = true;
            break;
        }
        let parsed = match binary::parse(&input[pos..], max_value) {
            Ok(parsed) => parsed,
            Err(BinaryError::Incomplete) => break,
            Err(BinaryError::BadMagic) => {
                // memcached closes such a connection without a word.
                close = true;
                pos = input.len();
                break;
            }
        };
        requests += 1;
        pos += parsed.consumed;
        *swallow = parsed.swallow;
        match plan_one(input, &parsed, plan) {
            After::Next => {}
            After::Quit => break,
            After::Close => {
                close = true;
                pos = input.len();
                break;
            }
        }
    }
    stats.cmd_total.add(requests);
    (pos, close, capped)
}

/// What comes after a planned request.
enum After {
    Next,
    /// `quit`: nothing after it is read.
    Quit,
    /// Answer, then close.
    Close,
}

/// Appends the steps of one binary request to `plan`.
fn plan_one(base: &[u8], parsed: &Parsed<'_>, plan: &mut Vec<Step>) -> After {
    let header = parsed.header;
    let op = |kind, key| Op::new(kind, base, key, Wire::Binary { header, initial: 0 });
    match parsed.request {
        Request::Get { key, touch } => {
            let kind = OpKind::Get {
                cas: true,
                touch: touch.is_some(),
            };
            plan.push(Step::Op(Op {
                exptime: touch.map_or(0, i64::from),
                ..op(kind, key)
            }));
        }
        Request::Store {
            kind,
            key,
            flags,
            exptime,
            value,
        } => {
            // With a CAS token, set, add and replace all compare and swap,
            // as in memcached.
            let kind = match kind {
                StoreKind::Set | StoreKind::Add | StoreKind::Replace if header.cas != 0 => {
                    StoreKind::Cas
                }
                kind => kind,
            };
            plan.push(Step::Op(Op {
                data: Span::within(base, value),
                flags,
                exptime: i64::from(exptime),
                number: header.cas,
                ..op(OpKind::Store(kind), key)
            }));
        }
        Request::Delete { key } => plan.push(Step::Op(op(OpKind::Delete, key))),
        Request::Arith {
            kind,
            key,
            delta,
            initial,
            exptime,
        } => {
            plan.push(Step::Op(Op {
                number: delta,
                exptime: i64::from(exptime),
                wire: Wire::Binary { header, initial },
                ..op(OpKind::Arith(arith_op(kind)), key)
            }));
        }
        Request::Flush { delay } => {
            let delay = i64::from(delay);
            let flush = AdminStep::FlushAll {
                delay,
                noreply: true,
            };
            plan.push(Step::Admin(flush));
            if !header.quiet() {
                plan.push(Step::Binary(Fixed::success(header, b"")));
            }
        }
        Request::Noop => plan.push(Step::Binary(Fixed::success(header, b""))),
        Request::Version => plan.push(Step::Binary(Fixed::success(
            header,
            admin::VERSION.as_bytes(),
        ))),
        Request::Quit => {
            if !header.quiet() {
                plan.push(Step::Binary(Fixed::success(header, b"")));
            }
            plan.push(Step::Admin(AdminStep::Quit));
            return After::Quit;
        }
        Request::Stat { group } => plan.push(Step::Admin(AdminStep::BinaryStats {
            group: Span::within(base, group),
            opaque: header.opaque,
        })),
        // A refused set also drops the old value, as memcached does.
        Request::TooLarge {
            kind: StoreKind::Set,
            key,
        } => plan.push(Step::Op(op(OpKind::Discard, key))),
        Request::TooLarge { .. } => plan.push(Step::Binary(Fixed::error(header, Status::TooLarge))),
        Request::Refused { status, close } => {
            plan.push(Step::Binary(Fixed::error(header, status)));
            if close {
                return After::Close;
            }
        }
    }
    After::Next
}
