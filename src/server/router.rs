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
}
