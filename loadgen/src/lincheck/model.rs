//! The sequential specification of one memcached key, as the checker
//! models it: what each operation returns in each state, and the state it
//! leaves.
//!
//! Values are abstract. Every write carries a value no other write of the
//! run carries (a *uid*), so a value read back names the write that made
//! it: a blob key holds a base uid followed by the uids appended to it
//! (folded into a digest, so a state stays a few words however many
//! appends it has seen); a counter key holds a number (a set stores
//! `uid << 20`, so the numbers of two sets never meet however many
//! `incr`s follow).
//!
//! The cas unique is modelled without knowing the server's numbers: a
//! write gives the key a *fresh* unique nobody has seen; the first `gets`
//! that sees it binds it to the number it read ([`Cas::Known`]); a `cas`
//! succeeds only against the bound number, and always fails against a
//! fresh one (the client's token came from a `gets` that, being over
//! before the `cas` began, saw an earlier version). Every successful
//! modification makes a fresh unique, as in memcached.
//!
//! [`Val::Unknown`] is "anything": the state a window starts from when the
//! window before it could not be searched to the end. It accepts every
//! first observation and binds what it learns, so it can hide a violation
//! but never invent one.

use std::fmt;

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Val {
    /// Not stored.
    Absent,
    /// A blob: the value of the write `base`, then `appends` appended uids,
    /// all folded into `digest`.
    Blob {
        /// The uid of the set, add or cas that stored the base.
        base: u64,
        /// How many appends followed it.
        appends: u32,
        /// [`digest`] of the base and every append, in order.
        digest: u64,
    },
    /// A counter.
    Num(u64),
    /// Could be anything (see the module docs).
    Unknown,
}

/// What the checker knows of a present key's cas unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cas {
    /// Made by the last write and not yet read by any `gets`: no token a
    /// client holds can match it.
    Fresh,
    /// Read by a `gets`: this number.
    Known(u64),
    /// Unknown (after [`Val::Unknown`]): any token may match.
    Any,
}

/// One key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct State {
    /// The value.
    pub val: Val,
    /// Its cas unique (meaningless, and kept [`Cas::Fresh`], when absent).
    pub cas: Cas,
}

impl State {
    /// A key never written.
    pub const ABSENT: State = State {
        val: Val::Absent,
        cas: Cas::Fresh,
    };
    /// A key nothing is known of.
    pub const UNKNOWN: State = State {
        val: Val::Unknown,
        cas: Cas::Any,
    };

    fn written(val: Val) -> State {
        State {
            val,
            cas: Cas::Fresh,
        }
    }
}

/// A value a write sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// A blob whose text is the uid (see [`crate::lincheck::wire`]).
    Blob(u64),
    /// A counter value.
    Num(u64),
}

impl Data {
    fn val(self) -> Val {
        match self {
            Data::Blob(uid) => Val::Blob {
                base: uid,
                appends: 0,
                digest: digest(0, uid),
            },
            Data::Num(n) => Val::Num(n),
        }
    }
}

/// The digest of a blob after `uid` is added to one whose digest is
/// `prior` (0 before the base).
pub fn digest(prior: u64, uid: u64) -> u64 {
    splitmix(prior ^ uid.rotate_left(29))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One request, as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `get`.
    Get,
    /// `gets`: the value and its cas unique.
    Gets,
    /// `set`.
    Set(Data),
    /// `add`: stores only if absent.
    Add(Data),
    /// `cas`: stores only if the unique is still this token.
    Cas(Data, u64),
    /// `append` of this uid's text to a blob.
    Append(u64),
    /// `incr` by this delta.
    Incr(u64),
    /// `delete`.
    Delete,
}

impl Call {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Get => "get",
            Call::Gets => "gets",
            Call::Set(_) => "set",
            Call::Add(_) => "add",
            Call::Cas(..) => "cas",
            Call::Append(_) => "append",
            Call::Incr(_) => "incr",
            Call::Delete => "delete",
        }
    }
}

/// A value as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A blob: its base, how many appends, and the digest of all of them.
    Blob {
        /// First uid.
        base: u64,
        /// Uids after it.
        appends: u32,
        /// [`digest`] over all of them.
        digest: u64,
    },
    /// A counter.
    Num(u64),
    /// Bytes no write of this run could have produced.
    Garbled,
}

/// A reply, as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// No reply (the connection was killed, or an error reply): the
    /// operation may or may not have taken effect.
    Unknown,
    /// A hit, with the cas unique for `gets`.
    Hit(Seen, Option<u64>),
    /// A miss (`END` alone).
    Miss,
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// The value after an `incr`.
    Number(u64),
}

/// Applies `call` with reply `ret` to `s`: the state after it, or `None`
/// when that reply is impossible in that state.
pub fn step(s: State, call: Call, ret: Ret) -> Option<State> {
    if s.val == Val::Unknown {
        return step_unknown(call, ret);
    }
    let present = s.val != Val::Absent;
    // What the server must answer, and the state it leaves.
    let (want, next) = match call {
        Call::Get | Call::Gets => return read(s, call, ret),
        Call::Set(d) => (Ret::Stored, State::written(d.val())),
        Call::Add(d) if !present => (Ret::Stored, State::written(d.val())),
        Call::Add(_) => (Ret::NotStored, s),
        Call::Cas(..) if !present => (Ret::NotFound, s),
        Call::Cas(d, token) => match s.cas {
            Cas::Known(c) if c == token => (Ret::Stored, State::written(d.val())),
            Cas::Known(_) | Cas::Fresh => (Ret::Exists, s),
            // Either outcome is possible.
            Cas::Any => {
                return match ret {
                    Ret::Stored => Some(State::written(d.val())),
                    Ret::Exists => Some(s),
                    Ret::Unknown => Some(State::UNKNOWN),
                    _ => None,
                };
            }
        },
        Call::Append(_) if !present => (Ret::NotStored, s),
        Call::Append(uid) => match s.val {
            Val::Blob {
                base,
                appends,
                digest: d,
            } => (
                Ret::Stored,
                State::written(Val::Blob {
                    base,
                    appends: appends + 1,
                    digest: digest(d, uid),
                }),
            ),
            // Never sent: counter keys get no appends.
            _ => (Ret::Stored, State::UNKNOWN),
        },
        Call::Incr(_) if !present => (Ret::NotFound, s),
        Call::Incr(delta) => match s.val {
            Val::Num(n) => {
                let n = n.wrapping_add(delta);
                (Ret::Number(n), State::written(Val::Num(n)))
            }
            // Never sent: blob keys get no incrs.
            _ => (Ret::Unknown, State::UNKNOWN),
        },
        Call::Delete if present => (Ret::Deleted, State::ABSENT),
        Call::Delete => (Ret::NotFound, s),
    };
    // An operation that may not have answered may have happened: taking
    // effect is the only choice to model, since one that never returns
    // can always be placed last, where its effect is invisible.
    (ret == want || ret == Ret::Unknown).then_some(next)
}

fn read(s: State, call: Call, ret: Ret) -> Option<State> {
    match (s.val, ret) {
        (_, Ret::Unknown) => Some(s),
        (Val::Absent, Ret::Miss) => Some(s),
        (val, Ret::Hit(seen, cas)) if matches(val, seen) => match (call, cas) {
            (Call::Get, None) => Some(s),
            (Call::Gets, Some(c)) => match s.cas {
                Cas::Known(k) => (k == c).then_some(s),
                Cas::Fresh | Cas::Any => Some(State {
                    val,
                    cas: Cas::Known(c),
                }),
            },
            _ => None,
        },
        _ => None,
    }
}

fn matches(val: Val, seen: Seen) -> bool {
    match (val, seen) {
        (
            Val::Blob {
                base,
                appends,
                digest,
            },
            Seen::Blob {
                base: b,
                appends: a,
                digest: d,
            },
        ) => (base, appends, digest) == (b, a, d),
        (Val::Num(n), Seen::Num(m)) => n == m,
        _ => false,
    }
}

fn seen_val(seen: Seen) -> Option<Val> {
    match seen {
        Seen::Blob {
            base,
            appends,
            digest,
        } => Some(Val::Blob {
            base,
            appends,
            digest,
        }),
        Seen::Num(n) => Some(Val::Num(n)),
        Seen::Garbled => None,
    }
}

/// [`step`] from [`State::UNKNOWN`]: any reply the command can give is
/// possible, and the state after it is whatever the reply reveals.
fn step_unknown(call: Call, ret: Ret) -> Option<State> {
    let written = |d: Data| Some(State::written(d.val()));
    match (call, ret) {
        (Call::Get | Call::Gets, Ret::Miss) => Some(State::ABSENT),
        (Call::Get, Ret::Hit(seen, None)) => Some(State {
            val: seen_val(seen)?,
            cas: Cas::Any,
        }),
        (Call::Gets, Ret::Hit(seen, Some(c))) => Some(State {
            val: seen_val(seen)?,
            cas: Cas::Known(c),
        }),
        (Call::Get | Call::Gets, Ret::Unknown) => Some(State::UNKNOWN),
        (Call::Set(d), Ret::Stored | Ret::Unknown) => written(d),
        (Call::Add(d) | Call::Cas(d, _), Ret::Stored) => written(d),
        (Call::Add(_), Ret::NotStored) | (Call::Cas(..), Ret::Exists) => Some(State::UNKNOWN),
        (Call::Add(_) | Call::Cas(..) | Call::Append(_) | Call::Incr(_), Ret::Unknown) => {
            Some(State::UNKNOWN)
        }
        (Call::Cas(..) | Call::Incr(_) | Call::Delete, Ret::NotFound)
        | (Call::Append(_), Ret::NotStored)
        | (Call::Delete, Ret::Deleted | Ret::Unknown) => Some(State::ABSENT),
        (Call::Append(_), Ret::Stored) => Some(State::UNKNOWN),
        (Call::Incr(_), Ret::Number(n)) => Some(State::written(Val::Num(n))),
        _ => None,
    }
}

/// Prints a uid as the connection slot and sequence number it encodes.
pub struct Uid(pub u64);

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}#{}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Data::Blob(uid) => write!(f, "{}", Uid(uid)),
            Data::Num(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Call::Get | Call::Gets | Call::Delete => f.write_str(self.name()),
            Call::Set(d) | Call::Add(d) => write!(f, "{} {d}", self.name()),
            Call::Cas(d, token) => write!(f, "cas {d} token {token}"),
            Call::Append(uid) => write!(f, "append {}", Uid(uid)),
            Call::Incr(delta) => write!(f, "incr {delta}"),
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Seen::Blob {
                base, appends: 0, ..
            } => write!(f, "{}", Uid(base)),
            Seen::Blob { base, appends, .. } => write!(f, "{} + {appends} appends", Uid(base)),
            Seen::Num(n) => write!(f, "{n}"),
            Seen::Garbled => f.write_str("<garbled>"),
        }
    }
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Ret::Unknown => f.write_str("<no reply: maybe applied>"),
            Ret::Hit(seen, None) => write!(f, "{seen}"),
            Ret::Hit(seen, Some(cas)) => write!(f, "{seen} cas {cas}"),
            Ret::Miss => f.write_str("miss"),
            Ret::Stored => f.write_str("STORED"),
            Ret::NotStored => f.write_str("NOT_STORED"),
            Ret::Exists => f.write_str("EXISTS"),
            Ret::NotFound => f.write_str("NOT_FOUND"),
            Ret::Deleted => f.write_str("DELETED"),
            Ret::Number(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.val {
            Val::Absent => return f.write_str("absent"),
            Val::Unknown => return f.write_str("unknown"),
            Val::Blob {
                base, appends: 0, ..
            } => write!(f, "{}", Uid(base))?,
            Val::Blob { base, appends, .. } => write!(f, "{} + {appends} appends", Uid(base))?,
            Val::Num(n) => write!(f, "{n}")?,
        }
        match self.cas {
            Cas::Fresh => f.write_str(" (cas unread)"),
            Cas::Known(c) => write!(f, " (cas {c})"),
            Cas::Any => f.write_str(" (cas unknown)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(uids: &[u64]) -> Seen {
        let mut d = 0;
        for &u in uids {
            d = digest(d, u);
        }
        Seen::Blob {
            base: uids[0],
            appends: uids.len() as u32 - 1,
            digest: d,
        }
    }

    /// Runs `ops` from `s`, each reply required; returns the final state.
    fn run(mut s: State, ops: &[(Call, Ret)]) -> Option<State> {
        for &(call, ret) in ops {
            s = step(s, call, ret)?;
        }
        Some(s)
    }

    #[test]
    fn blobs_sets_appends_and_reads() {
        let s = run(
            State::ABSENT,
            &[
                (Call::Get, Ret::Miss),
                (Call::Append(9), Ret::NotStored),
                (Call::Add(Data::Blob(1)), Ret::Stored),
                (Call::Add(Data::Blob(2)), Ret::NotStored),
                (Call::Append(3), Ret::Stored),
                (Call::Get, Ret::Hit(blob(&[1, 3]), None)),
            ],
        )
        .unwrap();
        assert_eq!(
            s.val,
            Val::Blob {
                base: 1,
                appends: 1,
                digest: digest(digest(0, 1), 3)
            }
        );
        // A read of the value before the append, or of another order of
        // the same uids, is impossible.
        assert_eq!(step(s, Call::Get, Ret::Hit(blob(&[1]), None)), None);
        assert_eq!(step(s, Call::Get, Ret::Hit(blob(&[3, 1]), None)), None);
        assert_eq!(step(s, Call::Get, Ret::Miss), None);
        assert_eq!(step(s, Call::Get, Ret::Hit(Seen::Garbled, None)), None);
        assert_eq!(step(s, Call::Delete, Ret::Deleted), Some(State::ABSENT));
        assert_eq!(step(s, Call::Delete, Ret::NotFound), None);
    }

    #[test]
    fn cas_wins_only_against_the_unique_a_gets_bound() {
        let set = run(State::ABSENT, &[(Call::Set(Data::Blob(1)), Ret::Stored)]).unwrap();
        assert_eq!(set.cas, Cas::Fresh);
        // A token can only have come from an earlier version.
        assert_eq!(
            step(set, Call::Cas(Data::Blob(2), 77), Ret::Exists),
            Some(set)
        );
        assert_eq!(step(set, Call::Cas(Data::Blob(2), 77), Ret::Stored), None);
        let read = step(set, Call::Gets, Ret::Hit(blob(&[1]), Some(77))).unwrap();
        assert_eq!(read.cas, Cas::Known(77));
        // Another unique for the same version is impossible.
        assert_eq!(step(read, Call::Gets, Ret::Hit(blob(&[1]), Some(78))), None);
        let won = step(read, Call::Cas(Data::Blob(2), 77), Ret::Stored).unwrap();
        assert_eq!(step(read, Call::Cas(Data::Blob(2), 77), Ret::Exists), None);
        assert_eq!(
            step(read, Call::Cas(Data::Blob(2), 76), Ret::Exists),
            Some(read)
        );
        // Two cas with one token cannot both win.
        assert_eq!(step(won, Call::Cas(Data::Blob(3), 77), Ret::Stored), None);
        assert_eq!(
            step(State::ABSENT, Call::Cas(Data::Blob(3), 77), Ret::NotFound),
            Some(State::ABSENT)
        );
    }

    #[test]
    fn counters_add_up() {
        let s = run(
            State::ABSENT,
            &[
                (Call::Incr(1), Ret::NotFound),
                (Call::Set(Data::Num(100)), Ret::Stored),
                (Call::Incr(5), Ret::Number(105)),
                (Call::Incr(2), Ret::Number(107)),
                (Call::Get, Ret::Hit(Seen::Num(107), None)),
            ],
        )
        .unwrap();
        assert_eq!(s.val, Val::Num(107));
        // A lost incr.
        assert_eq!(step(s, Call::Incr(1), Ret::Number(109)), None);
    }

    #[test]
    fn a_maybe_applied_operation_takes_effect() {
        let s = step(State::ABSENT, Call::Set(Data::Num(5)), Ret::Unknown).unwrap();
        assert_eq!(s.val, Val::Num(5));
        let s = step(s, Call::Incr(1), Ret::Unknown).unwrap();
        assert_eq!(s.val, Val::Num(6));
        assert_eq!(step(s, Call::Get, Ret::Unknown), Some(s));
    }

    #[test]
    fn unknown_accepts_any_first_observation_and_binds_it() {
        let u = State::UNKNOWN;
        assert_eq!(step(u, Call::Get, Ret::Miss), Some(State::ABSENT));
        let s = step(u, Call::Gets, Ret::Hit(blob(&[4]), Some(9))).unwrap();
        assert_eq!(s.cas, Cas::Known(9));
        assert_eq!(step(s, Call::Get, Ret::Hit(blob(&[5]), None)), None);
        assert!(step(u, Call::Cas(Data::Num(1), 3), Ret::Stored).is_some());
        assert!(step(u, Call::Cas(Data::Num(1), 3), Ret::Exists).is_some());
        assert_eq!(step(u, Call::Get, Ret::Stored), None);
        assert_eq!(step(u, Call::Get, Ret::Hit(Seen::Garbled, None)), None);
    }
}
