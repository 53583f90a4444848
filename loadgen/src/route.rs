//! Which socket of a connection slot a key goes out on: the one socket;
//! with `--shard-aware`, its owner core's ([`crate::shard::ShardMap`]);
//! with `--servers`, the server a consistent hash picks ([`ServerRing`]).
//!
//! `--servers a,b,...` is how a client that spreads keys over a list of
//! memcached servers behaves (libmemcached's ketama, pymemcache's
//! `HashClient`, twemproxy): a key always goes to the same server, and the
//! servers get about equal shares. Pointed at corecache's per-core ports
//! (`--port-per-core`), every key reaches the core that keeps it.

use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::shard::ShardMap;

/// How a slot picks the socket for a key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    /// One socket: every key goes there.
    One,
    /// `--shard-aware`: socket `i` is served by core `i`.
    Owner(ShardMap),
    /// `--servers`: socket `i` goes to server `i`.
    Ring(ServerRing),
}

impl Route {
    /// The socket for `key` (its bytes as sent).
    #[inline]
    pub(crate) fn socket_of(&self, key: &[u8]) -> usize {
        match self {
            Route::One => 0,
            Route::Owner(map) => map.owner(key),
            Route::Ring(ring) => ring.server_of(key),
        }
    }
}

/// Consistent hashing over `servers` servers: Lamping and Veach's jump
/// hash ("A Fast, Minimal Memory, Consistent Hash Algorithm", 2014) of
/// the key's xxh3. Growing the list from N to N+1 servers moves only the
/// keys the new server takes (about 1/(N+1) of them), each server's share
/// is even, and it needs no ring in memory. The seed keeps the choice
/// independent of corecache's own shard hash (xxh3 with seed 0), so the
/// keys a port gets still spread over its core's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServerRing {
    /// How many servers.
    pub servers: usize,
}

/// The seed of the key hash (any fixed value other than the server's 0).
const SEED: u64 = 0x6c6f_6164_6765_6e21;

impl ServerRing {
    /// A ring over `servers` (at least 1) servers.
    pub fn new(servers: usize) -> ServerRing {
        assert!(servers >= 1, "a ring needs a server");
        ServerRing { servers }
    }

    /// The server (`0..servers`) that `key` always goes to.
    #[inline]
    pub fn server_of(&self, key: &[u8]) -> usize {
        jump(xxh3_64_with_seed(key, SEED), self.servers)
    }
}

/// Jump consistent hash: the bucket in `0..buckets` for `key`. Each step
/// draws where the key would next jump with a 64-bit LCG; the last jump
/// below `buckets` is its bucket.
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut bucket, mut next) = (-1i64, 0i64);
    while next < buckets as i64 {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Vec<u8> {
        format!("key:{i}").into_bytes()
    }

    /// Values from the paper's reference code, so this is jump hash and
    /// not something near it.
    #[test]
    fn jump_matches_the_reference() {
        assert_eq!(jump(0, 1), 0);
        assert_eq!(jump(0, 100), 0);
        // Computed with the paper's C++ over these keys.
        for (k, buckets, want) in [
            (1u64, 2usize, 0usize),
            (2, 10, 6),
            (100, 1000, 169),
            (123_456_789, 7, 0),
            (0xdead_beef, 64, 16),
        ] {
            assert_eq!(jump(k, buckets), want, "jump({k}, {buckets})");
        }
    }

    #[test]
    fn a_key_always_goes_to_the_same_server() {
        let (a, b) = (ServerRing::new(5), ServerRing::new(5));
        for i in 0..10_000 {
            assert_eq!(a.server_of(&key(i)), b.server_of(&key(i)));
            assert_eq!(a.server_of(&key(i)), a.server_of(&key(i)));
        }
    }

    #[test]
    fn keys_spread_evenly() {
        for servers in [2, 3, 8] {
            let ring = ServerRing::new(servers);
            let mut counts = vec![0u32; servers];
            let n = 120_000u64;
            for i in 0..n {
                counts[ring.server_of(&key(i))] += 1;
            }
            let fair = n as f64 / servers as f64;
            for &c in &counts {
                assert!(
                    (c as f64 - fair).abs() < fair * 0.03,
                    "{servers} servers: {counts:?}"
                );
            }
        }
    }

    /// Adding a server moves only the keys the new one takes, about its
    /// fair share; every other key stays where it was.
    #[test]
    fn adding_a_server_moves_only_its_share() {
        let (before, after) = (ServerRing::new(4), ServerRing::new(5));
        let n = 50_000u64;
        let mut moved = 0;
        for i in 0..n {
            let (was, is) = (before.server_of(&key(i)), after.server_of(&key(i)));
            if was != is {
                assert_eq!(is, 4, "key:{i} moved from {was} to {is}");
                moved += 1;
            }
        }
        let share = n as f64 / 5.0;
        assert!((moved as f64 - share).abs() < share * 0.05, "{moved} moved");
    }

    #[test]
    fn one_server_takes_everything() {
        let ring = ServerRing::new(1);
        assert!((0..1000).all(|i| ring.server_of(&key(i)) == 0));
        assert_eq!(Route::One.socket_of(b"x"), 0);
    }
}
