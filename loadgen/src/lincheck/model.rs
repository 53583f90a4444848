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
//!
//! **memcached's `incr` against a `gets` in flight** ([`Spec::Memcached`]).
//! memcached 1.6 `incr`s a counter in place only when no other connection
//! holds its item; when one does (a `get` or `gets` that has taken the item
//! and not yet sent it), `do_add_delta` links a new item with a new unique
//! and then writes that unique into the *old* item as well (memcached.c,
//! since its 2011 fix of bug 220, still so in 1.6.18). A `gets` that took
//! the old item before the `incr` and prints its unique after it reports
//! the old value with the new version's unique, a pair the key never held;
//! a `cas` with that token then wins against the incremented value and
//! undoes the `incr`. Under [`Spec::Memcached`] the model allows exactly
//! that: a `gets` of a counter may report, instead of its version's own
//! unique, the unique of the version the `incr` that replaces it will make
//! ([`Succ`]); from then on only an `incr` may replace it, and the version
//! that `incr` makes has that unique. docs/lincheck.md has the evidence.

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

/// [`Spec::Memcached`]: what a `gets` of the current version reported of
/// the unique of the version an `incr` will make of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Succ {
    /// Nothing: the next write may be any write.
    None,
    /// A `gets` of this version reported this unique, which is not this
    /// version's: it is the one the `incr` that replaces it will give the
    /// new version, and only an `incr` may replace it.
    Known(u64),
    /// Unknown (after [`Val::Unknown`]): either.
    Any,
}

/// One key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct State {
    /// The value.
    pub val: Val,
    /// Its cas unique (meaningless, and kept [`Cas::Fresh`], when absent).
    pub cas: Cas,
    /// Its successor's unique, as an early `gets` reported it (always
    /// [`Succ::None`] under [`Spec::Strict`]).
    pub succ: Succ,
}

impl State {
    /// A key never written.
    pub const ABSENT: State = State {
        val: Val::Absent,
        cas: Cas::Fresh,
        succ: Succ::None,
    };
    /// A key nothing is known of.
    pub const UNKNOWN: State = State {
        val: Val::Unknown,
        cas: Cas::Any,
        succ: Succ::None,
    };

    fn written(val: Val) -> State {
        State {
            val,
            cas: Cas::Fresh,
            succ: Succ::None,
        }
    }
}

/// Which server behaviour the model describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Spec {
    /// A linearizable key: every reply is what one atomic step at some
    /// moment between request and reply would give.
    #[default]
    Strict,
    /// memcached 1.6 as it is: [`Spec::Strict`] except that a `gets` of a
    /// counter racing the `incr` that replaces the version it read may
    /// report that version's value with the *new* version's unique (see
    /// the module docs). Nothing else is relaxed.
    Memcached,
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

/// The states an operation may leave: none when its reply is impossible,
/// two when the reply does not say which of two things happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcomes {
    states: [State; 2],
    len: u8,
}

impl Outcomes {
    /// No state: the reply is impossible.
    pub const NONE: Outcomes = Outcomes {
        states: [State::ABSENT; 2],
        len: 0,
    };

    fn one(s: State) -> Outcomes {
        let mut o = Outcomes::NONE;
        o.push(s);
        o
    }

    fn push(&mut self, s: State) {
        if !self.as_slice().contains(&s) {
            self.states[self.len as usize] = s;
            self.len += 1;
        }
    }

    /// The states.
    pub fn as_slice(&self) -> &[State] {
        &self.states[..self.len as usize]
    }

    /// Whether the reply is impossible.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the operation leaves exactly `s`, whatever else it could
    /// have done.
    pub fn only(&self, s: State) -> bool {
        self.as_slice() == [s]
    }
}

/// Whether `call` answered `ret` is a write in no state: a read, or a
/// write whose reply says it did nothing (`NOT_STORED`, `EXISTS`,
/// `NOT_FOUND`). The checker's no-branching rule needs this as well as
/// [`Outcomes::only`]: a write the model cannot follow from
/// [`State::UNKNOWN`] (an `append` to a value nobody knows) also leaves
/// that state as it is, yet it writes.
pub fn writes_nothing(call: Call, ret: Ret) -> bool {
    matches!(
        (call, ret),
        (Call::Get | Call::Gets, Ret::Hit(..) | Ret::Miss)
            | (Call::Add(_) | Call::Append(_), Ret::NotStored)
            | (Call::Cas(..), Ret::Exists)
            | (Call::Cas(..) | Call::Incr(_) | Call::Delete, Ret::NotFound)
    )
}

/// Applies `call` with reply `ret` to `s` as `spec` says the server does:
/// every state it may leave (none when that reply is impossible there).
///
/// An operation without a reply ([`Ret::Unknown`]) takes effect: whether
/// it never happened is the checker's choice to make (it may leave it
/// unplaced), not the model's.
pub fn step(s: State, call: Call, ret: Ret, spec: Spec) -> Outcomes {
    if s.val == Val::Unknown {
        return step_unknown(call, ret, spec);
    }
    let present = s.val != Val::Absent;
    // What the server must answer, and the state it leaves.
    let (want, next) = match call {
        Call::Get | Call::Gets => return read(s, call, ret, spec),
        Call::Set(d) => (Ret::Stored, State::written(d.val())),
        Call::Add(d) if !present => (Ret::Stored, State::written(d.val())),
        Call::Add(_) => (Ret::NotStored, s),
        Call::Cas(..) if !present => (Ret::NotFound, s),
        Call::Cas(d, token) => match s.cas {
            Cas::Known(c) if c == token => (Ret::Stored, State::written(d.val())),
            Cas::Known(_) | Cas::Fresh => (Ret::Exists, s),
            // Either outcome is possible.
            Cas::Any => match ret {
                Ret::Exists => (Ret::Exists, s),
                _ => (Ret::Stored, State::written(d.val())),
            },
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
                // memcached: the new version's unique is the one a gets of
                // the old version may already have reported.
                let cas = match s.succ {
                    Succ::None => Cas::Fresh,
                    Succ::Known(u) => Cas::Known(u),
                    Succ::Any => Cas::Any,
                };
                (
                    Ret::Number(n),
                    State {
                        val: Val::Num(n),
                        cas,
                        succ: Succ::None,
                    },
                )
            }
            // Never sent: blob keys get no incrs.
            _ => (Ret::Unknown, State::UNKNOWN),
        },
        Call::Delete if present => (Ret::Deleted, State::ABSENT),
        Call::Delete => (Ret::NotFound, s),
    };
    if ret != want && ret != Ret::Unknown {
        return Outcomes::NONE;
    }
    // A version whose successor's unique a gets reported can only be
    // replaced by that incr: memcached writes the new unique into the old
    // item in no other path.
    if matches!(s.succ, Succ::Known(_)) && next != s && !matches!(call, Call::Incr(_)) {
        return Outcomes::NONE;
    }
    Outcomes::one(next)
}

fn read(s: State, call: Call, ret: Ret, spec: Spec) -> Outcomes {
    match (s.val, ret) {
        (_, Ret::Unknown) => Outcomes::one(s),
        (Val::Absent, Ret::Miss) => Outcomes::one(s),
        (val, Ret::Hit(seen, cas)) if matches(val, seen) => match (call, cas) {
            (Call::Get, None) => Outcomes::one(s),
            (Call::Gets, Some(u)) => {
                let mut out = Outcomes::NONE;
                // The unique is this version's own.
                let own = match s.cas {
                    Cas::Known(k) => k == u,
                    Cas::Fresh | Cas::Any => true,
                };
                if own && s.succ != Succ::Known(u) {
                    out.push(State {
                        cas: Cas::Known(u),
                        ..s
                    });
                }
                // memcached: the gets took this version, and an incr
                // replaced it before the gets printed its unique.
                let successor = match s.succ {
                    Succ::Known(p) => p == u,
                    Succ::None | Succ::Any => {
                        reports_successor(spec, val) && s.cas != Cas::Known(u)
                    }
                };
                if successor {
                    out.push(State {
                        succ: Succ::Known(u),
                        ..s
                    });
                }
                out
            }
            _ => Outcomes::NONE,
        },
        _ => Outcomes::NONE,
    }
}

/// Whether a `gets` of `val` may report the unique of the version an
/// incr makes of it (see [`Spec::Memcached`]).
fn reports_successor(spec: Spec, val: Val) -> bool {
    spec == Spec::Memcached && matches!(val, Val::Num(_))
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
fn step_unknown(call: Call, ret: Ret, spec: Spec) -> Outcomes {
    let one = Outcomes::one;
    let written = |d: Data| one(State::written(d.val()));
    // What a read learns: the value, and nothing of what a gets before
    // the window may have reported of its successor.
    let seen = |val: Val, cas: Cas| State {
        val,
        cas,
        succ: if spec == Spec::Memcached {
            Succ::Any
        } else {
            Succ::None
        },
    };
    match (call, ret) {
        (Call::Get | Call::Gets, Ret::Miss) => one(State::ABSENT),
        (Call::Get, Ret::Hit(seen_as, None)) => match seen_val(seen_as) {
            Some(val) => one(seen(val, Cas::Any)),
            None => Outcomes::NONE,
        },
        (Call::Gets, Ret::Hit(seen_as, Some(c))) => match seen_val(seen_as) {
            Some(val) => {
                let mut out = one(seen(val, Cas::Known(c)));
                if reports_successor(spec, val) {
                    out.push(State {
                        val,
                        cas: Cas::Any,
                        succ: Succ::Known(c),
                    });
                }
                out
            }
            None => Outcomes::NONE,
        },
        (Call::Get | Call::Gets, Ret::Unknown) => one(State::UNKNOWN),
        (Call::Set(d), Ret::Stored | Ret::Unknown) => written(d),
        (Call::Add(d) | Call::Cas(d, _), Ret::Stored) => written(d),
        (Call::Add(_), Ret::NotStored) | (Call::Cas(..), Ret::Exists) => one(State::UNKNOWN),
        (Call::Add(_) | Call::Cas(..) | Call::Append(_) | Call::Incr(_), Ret::Unknown) => {
            one(State::UNKNOWN)
        }
        (Call::Cas(..) | Call::Incr(_) | Call::Delete, Ret::NotFound)
        | (Call::Append(_), Ret::NotStored)
        | (Call::Delete, Ret::Deleted | Ret::Unknown) => one(State::ABSENT),
        (Call::Append(_), Ret::Stored) => one(State::UNKNOWN),
        // memcached: the old version's gets may have reported this
        // version's unique, so any token may match it.
        (Call::Incr(_), Ret::Number(n)) => one(State {
            val: Val::Num(n),
            cas: if spec == Spec::Memcached {
                Cas::Any
            } else {
                Cas::Fresh
            },
            succ: Succ::None,
        }),
        _ => Outcomes::NONE,
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
        }?;
        match self.succ {
            Succ::Known(u) => write!(f, " (the next incr's unique {u} already read)"),
            Succ::None | Succ::Any => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::step`] under [`Spec::Strict`], which never branches: the
    /// one state it leaves, or `None`.
    fn step(s: State, call: Call, ret: Ret) -> Option<State> {
        let out = super::step(s, call, ret, Spec::Strict);
        assert!(out.as_slice().len() <= 1, "{out:?}");
        out.as_slice().first().copied()
    }

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

    /// Every state `call` answered `ret` leaves from `s` under `spec`.
    fn outs(s: State, call: Call, ret: Ret, spec: Spec) -> Vec<State> {
        super::step(s, call, ret, spec).as_slice().to_vec()
    }

    /// memcached's quirk: a gets of a counter that an incr replaces while
    /// the gets holds it reports the old value with the new unique, and a
    /// cas with that unique then wins over the incremented value.
    #[test]
    fn memcached_a_gets_may_report_the_unique_of_the_incr_that_follows() {
        let set = State::written(Val::Num(100));
        let gets = Ret::Hit(Seen::Num(100), Some(7));
        // Strict: the unique is this version's, nothing else.
        let strict = outs(set, Call::Gets, gets, Spec::Strict);
        assert_eq!(strict.len(), 1);
        let after = step(strict[0], Call::Incr(1), Ret::Number(101)).unwrap();
        assert_eq!(step(after, Call::Cas(Data::Num(5), 7), Ret::Stored), None);
        // memcached: it may also be the unique of the next version, which
        // only an incr may make, and which then has that unique.
        let mc = outs(set, Call::Gets, gets, Spec::Memcached);
        assert_eq!(mc.len(), 2, "{mc:?}");
        let early = mc
            .iter()
            .copied()
            .find(|s| s.succ == Succ::Known(7))
            .unwrap();
        assert_eq!(early.val, Val::Num(100));
        let incr = outs(early, Call::Incr(1), Ret::Number(101), Spec::Memcached);
        assert_eq!(incr.len(), 1);
        assert_eq!(incr[0].cas, Cas::Known(7));
        assert_eq!(
            outs(
                incr[0],
                Call::Cas(Data::Num(5), 7),
                Ret::Stored,
                Spec::Memcached
            )
            .len(),
            1
        );
        // No other write may replace that version.
        for call in [
            Call::Set(Data::Num(9)),
            Call::Delete,
            Call::Cas(Data::Num(9), 7),
        ] {
            for ret in [Ret::Stored, Ret::Deleted] {
                assert!(
                    outs(early, call, ret, Spec::Memcached).is_empty(),
                    "{call} {ret}"
                );
            }
        }
        // Reads of it still see the old value, and a second gets may report
        // either unique (its own, once the version has one, or the next).
        assert_eq!(
            outs(
                early,
                Call::Get,
                Ret::Hit(Seen::Num(100), None),
                Spec::Memcached
            ),
            [early]
        );
        assert_eq!(outs(early, Call::Gets, gets, Spec::Memcached), [early]);
    }

    /// The relaxation is for counters only: blobs change by append or
    /// set, which never write into the item a gets holds.
    #[test]
    fn memcached_blobs_are_strict() {
        let set = State::written(Val::Blob {
            base: 1,
            appends: 0,
            digest: digest(0, 1),
        });
        let gets = Ret::Hit(blob(&[1]), Some(7));
        assert_eq!(
            outs(set, Call::Gets, gets, Spec::Memcached),
            outs(set, Call::Gets, gets, Spec::Strict)
        );
        let read = outs(set, Call::Gets, gets, Spec::Memcached)[0];
        let appended = outs(read, Call::Append(2), Ret::Stored, Spec::Memcached);
        assert!(
            outs(
                appended[0],
                Call::Cas(Data::Blob(3), 7),
                Ret::Stored,
                Spec::Memcached
            )
            .is_empty()
        );
        // Nor may a counter's version report two uniques of its own.
        let n = State::written(Val::Num(100));
        let first = outs(
            n,
            Call::Gets,
            Ret::Hit(Seen::Num(100), Some(7)),
            Spec::Memcached,
        );
        let own = first
            .iter()
            .copied()
            .find(|s| s.cas == Cas::Known(7))
            .unwrap();
        let again = outs(
            own,
            Call::Gets,
            Ret::Hit(Seen::Num(100), Some(8)),
            Spec::Memcached,
        );
        // Only as the next incr's unique, which then must come.
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].succ, Succ::Known(8));
        assert!(outs(again[0], Call::Delete, Ret::Deleted, Spec::Memcached).is_empty());
    }
}
