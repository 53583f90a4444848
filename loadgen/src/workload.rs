//! Request generation: which operation, which key, how big a value.
//!
//! One [`Generator`] per connection, each with its own `SmallRng` seeded from
//! `--seed` and the connection number. Zipf keys come from a cumulative
//! weight table shared by all connections (built once, `O(keys)`), sampled
//! by binary search in `O(log keys)` with no allocation.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::config::{Config, Distribution};

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
    /// True for a get, false for a set.
    pub get: bool,
    /// Key index.
    pub key: u64,
    /// Value length (sets only).
    pub len: usize,
}

/// Per-connection request generator.
#[derive(Debug)]
pub struct Generator {
    rng: SmallRng,
    dist: KeyDist,
    get_threshold: u64,
    always_get: bool,
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
        let get = self.always_get || self.rng.next_u64() < self.get_threshold;
        let raw = self.dist.sample(&mut self.rng);
        let key = self.own(raw);
        let len = if self.value_span == 1 {
            self.value_min
        } else {
            self.value_min + (self.rng.next_u64() % self.value_span) as usize
        };
        Op { get, key, len }
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
        let gets = (0..10_000).filter(|_| g.next_op().get).count();
        assert!((4500..5500).contains(&gets), "{gets}");
    }
}
