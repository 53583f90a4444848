//! Request generation: which operation, which key, how big a value.
//!
//! One [`Generator`] per connection, each with its own `SmallRng` seeded from
//! `--seed` and the connection number. Zipf keys come from a cumulative
//! weight table shared by all connections (built once, `O(keys)`), sampled
//! by binary search in `O(log keys)` with no allocation.
//!
//! With `--mix` and `incr`, every [`COUNTER_EVERY`]th key of each
//! connection's share is a counter key ([`KeySpace`]): `incr`s are moved
//! onto the nearest one and `append`s off it, so counters only ever hold
//! numbers and the other keys only verified values.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::config::{Config, Distribution, Mix};

/// With counters, key `k` is one when `(k / connections) % COUNTER_EVERY
/// == 0`: the first of every eight keys of each connection's share.
pub const COUNTER_EVERY: u64 = 8;

/// Which keys are counters; a pure function of the key, so every
/// connection (and every verify mode) agrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpace {
    connections: u64,
    keys: u64,
    counters: bool,
}

impl KeySpace {
    /// The key space of `cfg`: counters exist when its mix has `incr`.
    pub fn new(cfg: &Config) -> KeySpace {
        KeySpace {
            connections: cfg.connections as u64,
            keys: cfg.keys,
            counters: cfg.mix.is_some_and(|m| m.incr > 0),
        }
    }

    /// True when `key` holds a counter.
    #[inline]
    pub fn is_counter(&self, key: u64) -> bool {
        self.counters && (key / self.connections).is_multiple_of(COUNTER_EVERY)
    }

    /// The counter key at or below `key` in the same connection's share
    /// (`key % connections` is kept).
    #[inline]
    fn counter_at(&self, key: u64) -> u64 {
        key - ((key / self.connections) % COUNTER_EVERY) * self.connections
    }

    /// `key`, or its share's next (else previous) key when `key` is a
    /// counter. Config validation keeps one of them in range.
    #[inline]
    fn data_at(&self, key: u64) -> u64 {
        if !self.is_counter(key) {
            key
        } else if key + self.connections < self.keys {
            key + self.connections
        } else {
            key - self.connections
        }
    }
}

/// The kind of one generated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `get` (of `--multiget` keys).
    Get,
    /// `set`.
    Set,
    /// `delete`.
    Delete,
    /// `append` of a key's suffix (never a counter key).
    Append,
    /// `incr` (always a counter key).
    Incr,
}

/// Shared, immutable key-popularity table.
#[derive(Debug, Clone)]
pub enum KeyDist {
    /// Uniform over `0..keys`.
    Uniform(u64),
    /// Cumulative (unnormalised) zipf weights; key i has rank i.
    Zipf(Arc<[f64]>),
}

impl KeyDist {
    /// Builds the table for a configuration.
    pub fn new(keys: u64, d: Distribution) -> KeyDist {
        match d {
            Distribution::Uniform => KeyDist::Uniform(keys),
            Distribution::Zipf { s } => {
                let mut acc = 0.0;
                let cdf: Vec<f64> = (0..keys)
                    .map(|i| {
                        acc += 1.0 / ((i + 1) as f64).powf(s);
                        acc
                    })
                    .collect();
                KeyDist::Zipf(cdf.into())
            }
        }
    }

    #[inline]
    fn sample(&self, rng: &mut SmallRng) -> u64 {
        match self {
            KeyDist::Uniform(n) => rng.gen_range(0..*n),
            KeyDist::Zipf(cdf) => {
                let total = cdf[cdf.len() - 1];
                let u = rng.r#gen::<f64>() * total;
                (cdf.partition_point(|&c| c <= u) as u64).min(cdf.len() as u64 - 1)
            }
        }
    }
}

/// One generated operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// What to send.
    pub kind: OpKind,
    /// Key index.
    pub key: u64,
    /// Value length (sets of non-counter keys).
    pub len: usize,
    /// Increment (`incr` only, else 0).
    pub delta: u64,
}

/// Per-connection request generator.
#[derive(Debug)]
pub struct Generator {
    rng: SmallRng,
    dist: KeyDist,
    get_threshold: u64,
    always_get: bool,
    /// `--mix`: cumulative weights of set, get, delete, append, incr.
    mix: Option<[u64; 5]>,
    space: KeySpace,
    value_min: usize,
    value_span: u64,
    /// Strict verify: keys are partitioned as `key % connections == conn`.
    partition: Option<(u64, u64, u64)>,
}

impl Generator {
    /// A generator for connection `conn` of `cfg`, sharing `dist`.
    pub fn new(cfg: &Config, dist: KeyDist, conn: usize, partitioned: bool) -> Generator {
        let seed = cfg
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(conn as u64);
        Generator {
            rng: SmallRng::seed_from_u64(seed),
            dist,
            get_threshold: (cfg.get_ratio * u64::MAX as f64) as u64,
            always_get: cfg.get_ratio >= 1.0,
            mix: cfg.mix.map(cumulative),
            space: KeySpace::new(cfg),
            value_min: cfg.value_min,
            value_span: (cfg.value_max - cfg.value_min) as u64 + 1,
            partition: partitioned.then_some((cfg.connections as u64, conn as u64, cfg.keys)),
        }
    }

    /// Maps a key onto this connection's partition, keeping its
    /// neighbourhood (and so roughly its popularity).
    #[inline]
    fn own(&self, key: u64) -> u64 {
        match self.partition {
            None => key,
            Some((n, c, keys)) => {
                let k = key - key % n + c;
                if k >= keys { k - n } else { k }
            }
        }
    }

    /// Next operation.
    #[inline]
    pub fn next_op(&mut self) -> Op {
        let kind = match &self.mix {
            // Without --mix, the same draws as before mixes existed, so a
            // seed still gives the same requests.
            None if self.always_get || self.rng.next_u64() < self.get_threshold => OpKind::Get,
            None => OpKind::Set,
            Some(cum) => {
                let r = self.rng.next_u64() % cum[4];
                const KINDS: [OpKind; 5] = [
                    OpKind::Set,
                    OpKind::Get,
                    OpKind::Delete,
                    OpKind::Append,
                    OpKind::Incr,
                ];
                KINDS[cum.iter().position(|&c| r < c).unwrap_or(4)]
            }
        };
        let raw = self.dist.sample(&mut self.rng);
        let key = match kind {
            OpKind::Incr => self.space.counter_at(self.own(raw)),
            OpKind::Append => self.space.data_at(self.own(raw)),
            _ => self.own(raw),
        };
        let len = self.next_len();
        let delta = if kind == OpKind::Incr {
            1 + self.rng.next_u64() % 16
        } else {
            0
        };
        Op {
            kind,
            key,
            len,
            delta,
        }
    }

    /// Another key for the same multi-get (same distribution and
    /// partition as [`Generator::next_op`]).
    #[inline]
    pub fn next_key(&mut self) -> u64 {
        let raw = self.dist.sample(&mut self.rng);
        self.own(raw)
    }

    /// A value length for a set of a given key (used by prefill).
    #[inline]
    pub fn next_len(&mut self) -> usize {
        if self.value_span == 1 {
            self.value_min
        } else {
            self.value_min + (self.rng.next_u64() % self.value_span) as usize
        }
    }
}

/// Running sums of a mix's weights in [`OpKind`] order.
fn cumulative(m: Mix) -> [u64; 5] {
    let mut acc = 0;
    [m.set, m.get, m.delete, m.append, m.incr].map(|w| {
        acc += w as u64;
        acc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let cfg = Config {
            keys: 1000,
            distribution: Distribution::Zipf { s: 0.99 },
            ..Config::default()
        };
        let dist = KeyDist::new(cfg.keys, cfg.distribution);
        let mut g = Generator::new(&cfg, dist, 0, false);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[g.next_op().key as usize] += 1;
        }
        assert!(counts[0] > 10 * counts[500].max(1), "{counts:?}");
    }

    #[test]
    fn strict_partition_owns_keys() {
        let cfg = Config {
            keys: 103,
            connections: 10,
            ..Config::default()
        };
        for conn in 0..10 {
            let dist = KeyDist::new(cfg.keys, cfg.distribution);
            let mut g = Generator::new(&cfg, dist, conn, true);
            for _ in 0..2000 {
                let k = g.next_op().key;
                assert!(k < 103 && k % 10 == conn as u64, "{k} for {conn}");
            }
        }
    }

    #[test]
    fn get_ratio_is_respected() {
        let cfg = Config {
            get_ratio: 0.5,
            ..Config::default()
        };
        let mut g = Generator::new(&cfg, KeyDist::new(cfg.keys, cfg.distribution), 3, false);
        let gets = (0..10_000)
            .filter(|_| g.next_op().kind == OpKind::Get)
            .count();
        assert!((4500..5500).contains(&gets), "{gets}");
    }

    #[test]
    fn a_mix_keeps_its_weights_and_counters_apart() {
        let cfg = Config {
            keys: 1000,
            connections: 7,
            mix: Some(
                crate::config::parse_mix("set=10,get=60,delete=5,append=10,incr=15").unwrap(),
            ),
            ..Config::default()
        };
        let space = KeySpace::new(&cfg);
        for conn in 0..7 {
            let mut g = Generator::new(&cfg, KeyDist::new(cfg.keys, cfg.distribution), conn, true);
            let mut counts = [0u32; 5];
            for _ in 0..20_000 {
                let op = g.next_op();
                assert!(op.key < 1000 && op.key % 7 == conn as u64, "{op:?}");
                match op.kind {
                    OpKind::Incr => {
                        assert!(space.is_counter(op.key) && (1..=16).contains(&op.delta))
                    }
                    OpKind::Append => assert!(!space.is_counter(op.key), "{op:?}"),
                    _ => assert_eq!(op.delta, 0),
                }
                counts[op.kind as usize] += 1;
            }
            // 20,000 draws: each share within 1.5 points of its weight
            // (in OpKind order: get, set, delete, append, incr).
            for (i, pct) in [60, 10, 5, 10, 15].into_iter().enumerate() {
                let want = 200 * pct;
                assert!(counts[i].abs_diff(want) < 300, "{counts:?}");
            }
        }
        // One in eight keys of each share is a counter, the first of each eight.
        let counters: Vec<u64> = (0..200).filter(|&k| space.is_counter(k)).collect();
        assert_eq!(&counters[..9], &[0, 1, 2, 3, 4, 5, 6, 56, 57]);
        assert!(!KeySpace::new(&Config::default()).is_counter(0));
    }
}
