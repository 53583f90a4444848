//! Benchmarks of the storage engine: the slab arena, LRU, timing wheel and
//! whole-shard get/set at 10k and 1M items (shard operations must cost the
//! same at both sizes, apart from cache misses).

use corecache::storage::item;
use corecache::storage::lru::Lru;
use corecache::storage::slab::Slabs;
use corecache::storage::wheel::{Entry, Wheel};
use corecache::storage::{Deadline, Prefetch, Shard, ShardConfig, Store, StoreMode, key_hash};
use criterion::{BatchSize, Criterion, black_box, criterion_group, criterion_main};
use std::time::Duration;

/// A cheap pseudo-random walk over `0..n`, so lookups do not stream
/// through memory in order.
struct Walk {
    state: u64,
}

impl Walk {
    fn next(&mut self, n: usize) -> usize {
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.state >> 33) as usize) % n
    }
}

fn keys(n: usize, prefix: &str) -> Vec<(Vec<u8>, u64)> {
    (0..n)
        .map(|i| {
            let key = format!("{prefix}{i:08}").into_bytes();
            let hash = key_hash(&key);
            (key, hash)
        })
        .collect()
}

fn filled_shard(n: usize) -> (Shard, Vec<(Vec<u8>, u64)>) {
    let mut shard = Shard::new(&ShardConfig::for_tests(1 << 30));
    let keys = keys(n, "key:");
    let value = [b'v'; 100];
    for (key, hash) in &keys {
        shard.store(
            &Store {
                mode: StoreMode::Set,
                key,
                hash: *hash,
                flags: 0,
                deadline: Deadline::NEVER,
                value: &value,
            },
            0,
        );
    }
    shard.tick(100);
    (shard, keys)
}

fn bench_slab(c: &mut Criterion) {
    let mut slabs = Slabs::new(&ShardConfig::for_tests(64 << 20));
    let class = slabs.class_for(152).unwrap();
    // Warm: the class has a page and a free list.
    let warm: Vec<_> = (0..1000).map(|_| slabs.alloc(class).unwrap()).collect();
    for id in &warm {
        item::init(slabs.chunk_mut(*id), b"k", 0, 0, 1, Deadline::NEVER, 0, 0);
    }
    c.bench_function("slab/alloc+free", |b| {
        b.iter(|| {
            let id = slabs.alloc(class).unwrap();
            item::init(slabs.chunk_mut(id), b"k", 0, 0, 1, Deadline::NEVER, 0, 0);
            slabs.free(black_box(id));
        })
    });
}

fn bench_lru(c: &mut Criterion) {
    let mut slabs = Slabs::new(&ShardConfig::for_tests(256 << 20));
    let class = slabs.class_for(152).unwrap();
    let mut lru = Lru::new(slabs.class_count());
    let ids: Vec<_> = (0..100_000)
        .map(|_| {
            let id = slabs.alloc(class).unwrap();
            item::init(slabs.chunk_mut(id), b"k", 0, 0, 1, Deadline::NEVER, 0, 0);
            lru.push_front(&mut slabs, class, id);
            id
        })
        .collect();
    let mut walk = Walk { state: 1 };
    c.bench_function("lru/bump (100k items)", |b| {
        b.iter(|| {
            let id = ids[walk.next(ids.len())];
            lru.bump(&mut slabs, class, black_box(id));
        })
    });
    c.bench_function("lru/evict tail + push", |b| {
        b.iter(|| {
            let tail = lru.tail(class).unwrap();
            lru.unlink(&mut slabs, class, tail);
            lru.push_front(&mut slabs, class, black_box(tail));
        })
    });
}

fn bench_wheel(c: &mut Criterion) {
    c.bench_function("wheel/schedule", |b| {
        let mut wheel = Wheel::new(0);
        let mut walk = Walk { state: 7 };
        let mut n = 0u32;
        b.iter(|| {
            n = n.wrapping_add(1);
            let deadline = 1 + walk.next(3_600_000) as u64;
            wheel.schedule(Entry { chunk: n, check: 0 }, black_box(deadline));
        })
    });
    // Per entry: 10k entries spread over 10 s, then ticks every 100 ms
    // until all have fired (visits include cascades).
    const N: usize = 10_000;
    let mut group = c.benchmark_group("wheel");
    group.throughput(criterion::Throughput::Elements(N as u64));
    group.bench_function("schedule+tick to expiry (per 10k)", |b| {
        b.iter_batched(
            || {
                let mut wheel = Wheel::new(0);
                let mut walk = Walk { state: 3 };
                for i in 0..N {
                    wheel.schedule(
                        Entry {
                            chunk: i as u32,
                            check: 0,
                        },
                        1 + walk.next(10_000) as u64,
                    );
                }
                wheel
            },
            |mut wheel| {
                let mut now = 0;
                while !wheel.is_empty() {
                    now += 100;
                    wheel.advance(now, usize::MAX, |_| None);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The 12-byte key `{prefix}{i:08}` (prefix of 4 bytes) built on the stack,
/// with its hash, as the server would have it: a table of a million heap
/// keys would add its own cache misses to every lookup measured.
fn key(prefix: &[u8; 4], mut i: usize) -> ([u8; 12], u64) {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(prefix);
    for at in (4..12).rev() {
        key[at] = b'0' + (i % 10) as u8;
        i /= 10;
    }
    let hash = key_hash(&key);
    (key, hash)
}

fn bench_shard(c: &mut Criterion) {
    for &n in &[10_000usize, 1_000_000] {
        let (mut shard, keys) = filled_shard(n);
        assert_eq!(keys[n - 1].0, key(b"key:", n - 1).0);
        drop(keys);
        let label = if n >= 1_000_000 { "1M" } else { "10k" };
        let mut walk = Walk { state: 11 };
        c.bench_function(&format!("shard/get hit ({label} items)"), |b| {
            b.iter(|| {
                let (key, hash) = key(b"key:", walk.next(n));
                black_box(shard.get(&key, hash, 1000).map(|i| i.value.len()));
            })
        });
        // A batch of 16 gets, as a pipelined read or a forwarded message
        // brings them, run plainly and with the batch prefetched first
        // (every bucket, then every item header, then the gets).
        let batch = |walk: &mut Walk| -> [([u8; 12], u64); 16] {
            std::array::from_fn(|_| key(b"key:", walk.next(n)))
        };
        let mut group = c.benchmark_group(format!("shard/16 gets ({label} items)"));
        group.throughput(criterion::Throughput::Elements(16));
        group.bench_function("one by one", |b| {
            b.iter(|| {
                for (key, hash) in batch(&mut walk) {
                    black_box(shard.get(&key, hash, 1000).map(|i| i.value.len()));
                }
            })
        });
        group.bench_function("prefetched", |b| {
            b.iter(|| {
                let keys = batch(&mut walk);
                for what in [Prefetch::Bucket, Prefetch::Item] {
                    for (_, hash) in &keys {
                        shard.prefetch(*hash, what);
                    }
                }
                for (key, hash) in keys {
                    black_box(shard.get(&key, hash, 1000).map(|i| i.value.len()));
                }
            })
        });
        group.finish();
        c.bench_function(&format!("shard/get miss ({label} items)"), |b| {
            b.iter(|| {
                let (key, hash) = key(b"nok:", walk.next(n));
                black_box(shard.get(&key, hash, 1000).is_none());
            })
        });
        let value = [b'w'; 100];
        c.bench_function(&format!("shard/set overwrite ({label} items)"), |b| {
            b.iter(|| {
                let (key, hash) = key(b"key:", walk.next(n));
                black_box(shard.store(
                    &Store {
                        mode: StoreMode::Set,
                        key: &key,
                        hash,
                        flags: 0,
                        deadline: Deadline::NEVER,
                        value: &value,
                    },
                    1000,
                ));
            })
        });
        c.bench_function(&format!("shard/set with ttl ({label} items)"), |b| {
            let mut now = 1000;
            let mut ops = 0u32;
            b.iter(|| {
                let (key, hash) = key(b"key:", walk.next(n));
                black_box(shard.store(
                    &Store {
                        mode: StoreMode::Set,
                        key: &key,
                        hash,
                        flags: 0,
                        deadline: Deadline::at(now + 60_000),
                        value: &value,
                    },
                    now,
                ));
                ops += 1;
                if ops.is_multiple_of(1000) {
                    now += 1;
                    shard.tick(now);
                }
            })
        });
        println!(
            "{label}: {} items, {} pages, {} index bytes",
            shard.stats().curr_items,
            shard.pages_allocated(),
            shard.index_memory()
        );
    }
}

/// Sets of new keys into a full shard: every store evicts the LRU tail.
fn bench_full(c: &mut Criterion) {
    let mut shard = Shard::new(&ShardConfig::for_tests(64 << 20));
    let value = [b'v'; 100];
    let mut i = 0usize;
    let mut set_next = |shard: &mut Shard| {
        let (key, hash) = key(b"new:", i % 100_000_000);
        i += 1;
        shard.store(
            &Store {
                mode: StoreMode::Set,
                key: &key,
                hash,
                flags: 0,
                deadline: Deadline::NEVER,
                value: &value,
            },
            1000,
        )
    };
    while shard.stats().evictions == 0 {
        set_next(&mut shard);
    }
    println!("full at {} items", shard.stats().curr_items);
    c.bench_function("shard/set evicting (full, 64 MiB)", |b| {
        b.iter(|| black_box(set_next(&mut shard)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_slab, bench_lru, bench_wheel, bench_shard, bench_full
}
criterion_main!(benches);
