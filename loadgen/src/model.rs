//! What a connection knows about its own keys, and the checks of every
//! reply against it.
//!
//! `--verify=strict` partitions the keys over the connections, so each key
//! has one writer, and that writer keeps a [`Model`]: what each of its
//! keys must hold ([`Expect`]). The model is updated when a request is
//! *sent*, not when it is answered: a server handles one connection's
//! requests in order, so every later request on the connection sees the
//! earlier one's effect, however deep the pipeline. Each request records
//! what its reply must be ([`Want`]) at the same moment.
//!
//! A key the model cannot predict (never written by this run) is
//! [`Expect::Any`]; an `append` or `incr` of such a key is sent as a `set`
//! instead, so the key becomes known. An `append` that would make more
//! than [`MAX_APPENDS`] suffixes is also sent as a `set`, which bounds
//! value growth. Without strict mode the model is empty: every key is
//! `Any`, and only values' integrity is checked (`--verify`).

use crate::config::VerifyMode;
use crate::link::count;
use crate::proto::Kind;
use crate::report::Stats;
use crate::verify;
use crate::workload::{KeySpace, Op, OpKind};

/// Appends a strict-mode value may carry before the next `append` of it
/// is sent as a `set`.
pub(crate) const MAX_APPENDS: u32 = 8;

/// What a key must hold, as far as its connection knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Unknown: any intact value, or a miss.
    Any,
    /// Deleted: a get must miss.
    Absent,
    /// The value of this `set` version, followed by `appends` suffixes.
    Value {
        /// The version the last `set` wrote.
        version: u64,
        /// Suffixes appended since.
        appends: u32,
    },
    /// A counter holding exactly this number.
    Counter(u64),
}

/// What the reply to a `delete`, `append` or `incr` must be; also the
/// outcome a reply reports, so the check is an equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Anything the protocol allows (not strict, or the key is unknown).
    Any,
    /// `DELETED` or `STORED`: the key was there.
    Found,
    /// `NOT_FOUND` or `NOT_STORED`: the key was not there.
    Missing,
    /// An `incr` reply of exactly this value.
    Number(u64),
}

/// A connection's model of the keys it owns (`key % connections == id`);
/// empty, and so all [`Expect::Any`], outside strict mode.
pub(crate) struct Model {
    keys: Vec<Expect>,
    connections: u64,
}

impl Model {
    /// The model of a connection owning `owned` keys out of `connections`
    /// shares; empty unless `strict`.
    pub(crate) fn new(strict: bool, owned: usize, connections: u64) -> Model {
        Model {
            keys: if strict {
                vec![Expect::Any; owned]
            } else {
                Vec::new()
            },
            connections,
        }
    }

    /// What key `k` must hold now.
    #[inline]
    pub(crate) fn expect(&self, k: u64) -> Expect {
        let slot = (k / self.connections) as usize;
        self.keys.get(slot).copied().unwrap_or(Expect::Any)
    }

    /// Records that a request making `k` hold `e` was sent.
    #[inline]
    pub(crate) fn stored(&mut self, k: u64, e: Expect) {
        let slot = (k / self.connections) as usize;
        if let Some(m) = self.keys.get_mut(slot) {
            *m = e;
        }
    }

    /// Decides what the reply to `op` must be and updates the key's
    /// model for it having been sent; may turn `op` into a set (see the
    /// module docs). A set's model is recorded by its sender, who picks
    /// the version, with [`Model::stored`].
    pub(crate) fn plan(&mut self, op: &mut Op) -> Want {
        let slot = (op.key / self.connections) as usize;
        let Some(m) = self.keys.get_mut(slot) else {
            return Want::Any;
        };
        match (op.kind, *m) {
            (OpKind::Get | OpKind::Set, _) => Want::Any,
            (OpKind::Delete, before) => {
                *m = Expect::Absent;
                match before {
                    Expect::Any => Want::Any,
                    Expect::Absent => Want::Missing,
                    Expect::Value { .. } | Expect::Counter(_) => Want::Found,
                }
            }
            (OpKind::Append, Expect::Value { version, appends }) if appends < MAX_APPENDS => {
                *m = Expect::Value {
                    version,
                    appends: appends + 1,
                };
                Want::Found
            }
            (OpKind::Incr, Expect::Counter(n)) => {
                let n = n.wrapping_add(op.delta);
                *m = Expect::Counter(n);
                Want::Number(n)
            }
            (OpKind::Append | OpKind::Incr, Expect::Absent) => Want::Missing,
            (OpKind::Append | OpKind::Incr, _) => {
                op.kind = OpKind::Set;
                Want::Any
            }
        }
    }
}

/// Checks a hit for key `k` against `expect`.
pub(crate) fn check_hit(
    s: &mut Stats,
    id: usize,
    verify: VerifyMode,
    space: KeySpace,
    k: u64,
    expect: Expect,
    data: &[u8],
) {
    if verify == VerifyMode::Off {
        return;
    }
    if expect == Expect::Absent {
        return count(
            s,
            |e| &mut e.strict_miss,
            || format!("connection {id}: key {k} deleted but still there"),
        );
    }
    if space.is_counter(k) {
        match (verify::parse_counter(data), expect) {
            (None, _) => count(
                s,
                |e| &mut e.verify_failed,
                || {
                    let got = String::from_utf8_lossy(&data[..data.len().min(40)]).into_owned();
                    format!("connection {id}: counter key {k}: {got:?} is not a number")
                },
            ),
            (Some(n), Expect::Counter(want)) if n != want => count(
                s,
                |e| &mut e.strict_miss,
                || format!("connection {id}: counter key {k}: {n}, expected {want}"),
            ),
            _ => {}
        }
        return;
    }
    match (verify::check_appended(data, k), expect) {
        (Err(bad), _) => count(
            s,
            |e| &mut e.verify_failed,
            || format!("connection {id}: key {k}: value {bad:?}"),
        ),
        (Ok(got), Expect::Value { version, appends }) if got != (version, appends) => count(
            s,
            |e| &mut e.strict_miss,
            || {
                format!(
                    "connection {id}: key {k}: version {:#x} + {} appends, expected {version:#x} + {appends}",
                    got.0, got.1
                )
            },
        ),
        _ => {}
    }
}

/// A miss is an error only for a key the model says holds something.
pub(crate) fn check_miss(s: &mut Stats, id: usize, k: u64, expect: Expect) {
    if let Expect::Value { .. } | Expect::Counter(_) = expect {
        count(
            s,
            |e| &mut e.strict_miss,
            || format!("connection {id}: key {k} stored but missing"),
        );
    }
}

/// Checks the outcome of a `delete`, `append` or `incr` against `want`.
pub(crate) fn check_reply(s: &mut Stats, id: usize, kind: Kind, k: u64, want: Want, got: Want) {
    if want != Want::Any && want != got {
        count(
            s,
            |e| &mut e.wrong_reply,
            || format!("connection {id}: {kind:?} of key {k}: got {got:?}, expected {want:?}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, key: u64, delta: u64) -> Op {
        Op {
            kind,
            key,
            len: 32,
            delta,
        }
    }

    #[test]
    fn the_model_predicts_each_reply_and_what_follows() {
        // Connection 1 of 4 owns keys 1, 5, 9, ...
        let mut m = Model::new(true, 3, 4);
        let plan = |m: &mut Model, kind, key, delta| {
            let mut o = op(kind, key, delta);
            (m.plan(&mut o), o.kind)
        };
        // Unknown keys: no prediction, and appends and incrs become sets.
        assert_eq!(plan(&mut m, OpKind::Append, 1, 0), (Want::Any, OpKind::Set));
        assert_eq!(plan(&mut m, OpKind::Incr, 5, 3), (Want::Any, OpKind::Set));
        assert_eq!(
            plan(&mut m, OpKind::Delete, 9, 0),
            (Want::Any, OpKind::Delete)
        );
        assert_eq!(m.expect(9), Expect::Absent);
        assert_eq!(
            plan(&mut m, OpKind::Delete, 9, 0),
            (Want::Missing, OpKind::Delete)
        );
        assert_eq!(
            plan(&mut m, OpKind::Append, 9, 0),
            (Want::Missing, OpKind::Append)
        );
        assert_eq!(
            plan(&mut m, OpKind::Incr, 9, 2),
            (Want::Missing, OpKind::Incr)
        );
        assert_eq!(m.expect(9), Expect::Absent);
        // A value takes MAX_APPENDS appends, then the next is a set.
        m.stored(
            1,
            Expect::Value {
                version: 7,
                appends: 0,
            },
        );
        for n in 1..=MAX_APPENDS {
            assert_eq!(
                plan(&mut m, OpKind::Append, 1, 0),
                (Want::Found, OpKind::Append)
            );
            assert_eq!(
                m.expect(1),
                Expect::Value {
                    version: 7,
                    appends: n
                }
            );
        }
        assert_eq!(plan(&mut m, OpKind::Append, 1, 0), (Want::Any, OpKind::Set));
        // Counters add up, wrapping as memcached's do.
        m.stored(5, Expect::Counter(u64::MAX - 1));
        assert_eq!(
            plan(&mut m, OpKind::Incr, 5, 1),
            (Want::Number(u64::MAX), OpKind::Incr)
        );
        assert_eq!(
            plan(&mut m, OpKind::Incr, 5, 3),
            (Want::Number(2), OpKind::Incr)
        );
        assert_eq!(plan(&mut m, OpKind::Get, 5, 0), (Want::Any, OpKind::Get));
        assert_eq!(
            plan(&mut m, OpKind::Delete, 5, 0),
            (Want::Found, OpKind::Delete)
        );
        assert_eq!(m.expect(5), Expect::Absent);
        // Outside strict mode nothing is predicted or changed.
        let mut m = Model::new(false, 3, 4);
        assert_eq!(
            plan(&mut m, OpKind::Append, 1, 0),
            (Want::Any, OpKind::Append)
        );
        assert_eq!(m.expect(1), Expect::Any);
    }

    #[test]
    fn hits_and_replies_are_checked_against_the_model() {
        let cfg = crate::Config {
            connections: 4,
            mix: Some(crate::config::parse_mix("set=1,incr=1").unwrap()),
            ..crate::Config::default()
        };
        let space = KeySpace::new(&cfg);
        let strict = VerifyMode::Strict;
        let mut value = Vec::new();
        verify::encode(&mut value, 5, 7, 40);
        verify::push_suffix(&mut value, 5);
        let errors = |f: &dyn Fn(&mut Stats)| {
            let mut s = Stats::default();
            f(&mut s);
            s.errors
        };
        let v = |version, appends| Expect::Value { version, appends };
        assert_eq!(
            errors(&|s| check_hit(s, 0, strict, space, 5, v(7, 1), &value)).total,
            0
        );
        assert_eq!(
            errors(&|s| check_hit(s, 0, strict, space, 5, Expect::Any, &value)).total,
            0
        );
        // A lost append, a lost set, a lost delete.
        assert_eq!(
            errors(&|s| check_hit(s, 0, strict, space, 5, v(7, 2), &value)).strict_miss,
            1
        );
        assert_eq!(
            errors(&|s| check_hit(s, 0, strict, space, 5, v(8, 1), &value)).strict_miss,
            1
        );
        assert_eq!(
            errors(&|s| check_hit(s, 0, strict, space, 5, Expect::Absent, &value)).strict_miss,
            1
        );
        assert_eq!(
            errors(&|s| check_hit(s, 0, strict, space, 6, Expect::Any, &value)).verify_failed,
            1
        );
        // Key 1 is a counter key of this space.
        let c = Expect::Counter(42);
        assert!(space.is_counter(1));
        assert_eq!(
            errors(&|s| check_hit(s, 0, strict, space, 1, c, b"42")).total,
            0
        );
        assert_eq!(
            errors(&|s| check_hit(s, 0, strict, space, 1, c, b"43")).strict_miss,
            1
        );
        assert_eq!(
            errors(&|s| check_hit(s, 0, strict, space, 1, c, &value)).verify_failed,
            1
        );
        assert_eq!(
            errors(&|s| check_hit(s, 0, VerifyMode::Hits, space, 1, Expect::Any, b"9")).total,
            0
        );
        assert_eq!(
            errors(&|s| check_hit(s, 0, VerifyMode::Off, space, 1, c, b"x")).total,
            0
        );
        // Misses.
        assert_eq!(errors(&|s| check_miss(s, 0, 5, v(7, 0))).strict_miss, 1);
        assert_eq!(errors(&|s| check_miss(s, 0, 1, c)).strict_miss, 1);
        assert_eq!(errors(&|s| check_miss(s, 0, 5, Expect::Absent)).total, 0);
        assert_eq!(errors(&|s| check_miss(s, 0, 5, Expect::Any)).total, 0);
        // Replies.
        let reply =
            |want, got| errors(&|s| check_reply(s, 0, Kind::Incr, 1, want, got)).wrong_reply;
        assert_eq!(reply(Want::Number(3), Want::Number(3)), 0);
        assert_eq!(reply(Want::Number(3), Want::Number(4)), 1);
        assert_eq!(reply(Want::Found, Want::Missing), 1);
        assert_eq!(reply(Want::Missing, Want::Found), 1);
        assert_eq!(reply(Want::Any, Want::Missing), 0);
    }
}
