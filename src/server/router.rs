//! Where a key lives: key -> hash -> shard -> owning thread.
//!
//! Pure arithmetic, computed per request and never looked up under a lock.
//! The shard is picked from the hash's high 32 bits (Lemire's multiply-shift
//! reduction, no division) so the shard's own index can use the low bits
//! without every key in a shard sharing them.

/// The fixed map from keys to shards and from shards to threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Router {
    shards: usize,
    threads: usize,
}

impl Router {
    /// The hash's name as `stats settings` publishes it (`shard_hash`):
    /// xxh3, 64 bits, seed 0, over the key's bytes.
    pub const HASH_NAME: &'static str = "xxh3_64";
    /// How [`Router::shard`] picks a shard, as published (`shard_select`):
    /// `((hash >> 32) * shards) >> 32`.
    pub const SELECT_NAME: &'static str = "hi32_mul";
    /// How [`Router::owner`] picks a thread, as published (`shard_owner`):
    /// `shard % threads`.
    pub const OWNER_NAME: &'static str = "modulo";

    /// A router over `shards` shards spread round-robin over `threads`.
    pub fn new(shards: usize, threads: usize) -> Router {
        assert!(shards >= threads && threads > 0, "shards >= threads > 0");
        Router { shards, threads }
    }

    /// The hash every layer uses for `key` ([`crate::storage::key_hash`]);
    /// computed once per request.
    #[inline]
    pub fn hash(key: &[u8]) -> u64 {
        crate::storage::key_hash(key)
    }

    /// The shard that stores keys with this hash.
    #[inline]
    pub fn shard(&self, hash: u64) -> usize {
        (((hash >> 32) * self.shards as u64) >> 32) as usize
    }

    /// The thread that owns `shard`.
    #[inline]
    pub fn owner(&self, shard: usize) -> usize {
        shard % self.threads
    }

    /// `shard`'s position among its owner's shards.
    #[inline]
    pub fn local_index(&self, shard: usize) -> usize {
        shard / self.threads
    }

    /// How many shards `thread` owns.
    pub fn shards_of(&self, thread: usize) -> usize {
        (thread..self.shards).step_by(self.threads).count()
    }

    /// Total shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Total threads.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_has_one_owner_and_a_dense_local_index() {
        let router = Router::new(7, 3);
        let mut seen = vec![Vec::new(); 3];
        for shard in 0..7 {
            seen[router.owner(shard)].push(router.local_index(shard));
        }
        for (thread, locals) in seen.iter().enumerate() {
            assert_eq!(*locals, (0..router.shards_of(thread)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn keys_spread_over_all_shards() {
        let router = Router::new(8, 2);
        let mut counts = [0usize; 8];
        for i in 0..80_000 {
            counts[router.shard(Router::hash(format!("key:{i}").as_bytes()))] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn the_hash_is_stable_across_processes() {
        // Fixed so a key's shard never depends on the process or the build.
        assert_eq!(
            Router::hash(b"corecache"),
            crate::storage::key_hash(b"corecache")
        );
        assert_eq!(Router::new(4, 2).shard(0), 0);
        assert_eq!(Router::new(4, 2).shard(u64::MAX), 3);
    }

    /// The rule `stats settings` publishes, computed from its description
    /// (docs/shard-aware.md), places keys where the router does.
    #[test]
    fn the_published_rule_is_the_routers() {
        assert_eq!(
            (Router::HASH_NAME, Router::SELECT_NAME, Router::OWNER_NAME),
            ("xxh3_64", "hi32_mul", "modulo")
        );
        // XXH3_64bits with seed 0, from the reference implementation.
        assert_eq!(Router::hash(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(Router::hash(b"key:0"), 0xb464_ee7b_6334_4e80);
        for (shards, threads) in [(8u64, 2u64), (16, 3), (7, 7), (64, 5)] {
            let router = Router::new(shards as usize, threads as usize);
            for i in 0..1000 {
                let key = format!("key:{i}");
                let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
                let shard = ((hash >> 32) * shards) >> 32;
                let owner = shard % threads;
                let routed = router.shard(Router::hash(key.as_bytes()));
                assert_eq!((routed as u64, router.owner(routed) as u64), (shard, owner));
            }
        }
    }
}
