//! One socket of a connection slot: its buffers, the requests awaiting a
//! reply on it, and the matching of replies to them.
//!
//! Replies come back in request order, so they are matched with a ring of
//! [`Pending`] requests and parsed in place from the read buffer; a get's
//! keys wait in their own ring with what each must hold in strict mode
//! ([`crate::model`] checks them). Nothing here allocates once the rings
//! have grown.

use std::collections::VecDeque;
use std::time::Instant;

use crate::tls::Stream;
use bytes::{Buf, BytesMut};

use crate::config::VerifyMode;
use crate::model::{self, Expect, Want};
use crate::proto::{self, Kind, Parsed, Reply};
use crate::report::{ErrorCounts, Stats};
use crate::run::ThreadState;
use crate::workload::KeySpace;

/// `Pending::part` of a request sent whole on one socket.
pub(crate) const WHOLE: u32 = u32::MAX;

/// A request (or one part of a split multi-get) awaiting its reply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) kind: Kind,
    pub(crate) key: u64,
    /// Send time (closed loop) or intended send time (open loop).
    pub(crate) sent: Instant,
    /// Gets: number of keys (their entries lead `Link::gkeys`).
    pub(crate) n: u32,
    /// [`WHOLE`], or the slot's split-request entry this part belongs to.
    pub(crate) part: u32,
    /// Strict verify: what the reply to a delete, append or incr must be.
    pub(crate) want: Want,
}

/// One socket and its reused buffers.
pub(crate) struct Link {
    pub(crate) stream: Stream,
    pub(crate) wbuf: Vec<u8>,
    pub(crate) rbuf: BytesMut,
    pub(crate) inflight: VecDeque<Pending>,
    /// Keys of in-flight gets with what each must hold in strict mode,
    /// in send order.
    pub(crate) gkeys: VecDeque<(u64, Expect)>,
}

/// What reply matching needs from its connection slot.
pub(crate) struct Matching<'a> {
    pub(crate) id: usize,
    pub(crate) verify: VerifyMode,
    pub(crate) space: KeySpace,
    pub(crate) prefix: &'a [u8],
    /// Scratch for formatting a key.
    pub(crate) kbuf: &'a mut Vec<u8>,
}

impl Link {
    pub(crate) fn new(stream: Stream, pipeline: usize, multiget: usize) -> Link {
        Link {
            stream,
            wbuf: Vec::with_capacity(64 * 1024),
            rbuf: BytesMut::with_capacity(64 * 1024),
            inflight: VecDeque::with_capacity(pipeline.max(32)),
            gkeys: VecDeque::with_capacity(pipeline.max(32) * multiget),
        }
    }

    /// Handles every complete reply in the read buffer, calling `done`
    /// with each answered request and its hits. Returns false when the
    /// stream is out of sync (counted as a mismatch): the caller drops the
    /// connection.
    pub(crate) fn process(
        &mut self,
        ts: &mut ThreadState,
        m: Matching<'_>,
        mut done: impl FnMut(&mut ThreadState, &Pending, u64),
    ) -> bool {
        let (id, verify, space) = (m.id, m.verify, m.space);
        let mut off = 0;
        while let Some(p) = self.inflight.front().copied() {
            let s = &mut ts.stats;
            let (reply, len) = match proto::parse_reply(&self.rbuf[off..], p.kind) {
                Parsed::Incomplete => break,
                Parsed::Done(r, len) => (r, len),
                Parsed::Mismatch => {
                    let snippet =
                        String::from_utf8_lossy(&self.rbuf[off..(off + 60).min(self.rbuf.len())])
                            .into_owned();
                    count(
                        s,
                        |e| &mut e.mismatch,
                        || {
                            format!(
                                "connection {id}: reply to {:?} does not parse: {snippet:?}",
                                p.kind
                            )
                        },
                    );
                    return false;
                }
            };
            self.inflight.pop_front();
            off += len;
            let mut hits = 0;
            // A delete, append or incr that found its key counts as a hit.
            let outcome = match reply {
                Reply::Stored | Reply::Deleted => Some(Want::Found),
                Reply::Missing => Some(Want::Missing),
                Reply::Number(n) => Some(Want::Number(n)),
                Reply::Values(_) | Reply::Failed(_) => None,
            };
            if let Some(got) = outcome {
                hits = u64::from(got != Want::Missing);
                model::check_reply(s, id, p.kind, p.key, p.want, got);
            }
            match reply {
                Reply::Stored | Reply::Deleted | Reply::Missing | Reply::Number(_) => {}
                Reply::Failed(e) => {
                    s.errors.reply(e);
                    s.sample(|| {
                        format!("connection {id}: {e:?} for {:?} of key {}", p.kind, p.key)
                    });
                    // A failed get still owes its keys.
                    if p.kind == Kind::Get {
                        self.gkeys.drain(..p.n as usize);
                    }
                }
                Reply::Values(body) => {
                    // Values come back in request order, misses omitted.
                    let mut left = p.n as usize;
                    let mut stray = false;
                    'values: for (key, data) in proto::values(body) {
                        while left > 0 {
                            let (k, expect) = self.gkeys.pop_front().expect("get keys");
                            left -= 1;
                            m.kbuf.clear();
                            proto::push_key(m.kbuf, m.prefix, k);
                            if key == m.kbuf.as_slice() {
                                hits += 1;
                                model::check_hit(s, id, verify, space, k, expect, data);
                                continue 'values;
                            }
                            model::check_miss(s, id, k, expect);
                        }
                        stray = true;
                        let got = String::from_utf8_lossy(key).into_owned();
                        count(
                            s,
                            |e| &mut e.mismatch,
                            || {
                                format!(
                                    "connection {id}: value for {got:?}, which was not requested (or out of order)"
                                )
                            },
                        );
                        break;
                    }
                    for _ in 0..left {
                        let (k, expect) = self.gkeys.pop_front().expect("get keys");
                        if !stray {
                            model::check_miss(s, id, k, expect);
                        }
                    }
                }
            }
            done(ts, &p, hits);
        }
        self.rbuf.advance(off);
        if self.inflight.is_empty() && !self.rbuf.is_empty() {
            count(
                &mut ts.stats,
                |e| &mut e.mismatch,
                || format!("connection {id}: unsolicited bytes from the server"),
            );
            return false;
        }
        true
    }
}

/// Counts one error of the kind `field` selects and keeps a sample.
pub(crate) fn count(
    s: &mut Stats,
    field: fn(&mut ErrorCounts) -> &mut u64,
    what: impl FnOnce() -> String,
) {
    *field(&mut s.errors) += 1;
    s.errors.total += 1;
    s.sample(what);
}
