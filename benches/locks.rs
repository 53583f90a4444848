//! What a shard lock costs the work-stealing runtime, for the cost model
//! (benches/model.py): a `std::sync::Mutex` taken by one thread alone, then
//! by two threads that each hold it for about as long as a cache operation
//! takes and work outside it for about as long as the rest of a request.
//!
//! `cargo bench --bench locks` prints nanoseconds per acquisition; put
//! `hold_us` and `contend_us` in benches/model_params.toml. Run it on a
//! quiet machine: the two-thread figure needs both CPUs.

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Busy work of roughly `iterations` dependent steps, so the lock is held
/// for a known time without a syscall.
fn work(iterations: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..iterations {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Iterations of `work` that take about `target`.
fn calibrate(target: Duration) -> u64 {
    let n = 1_000_000;
    let start = Instant::now();
    black_box(work(n));
    let per = start.elapsed().as_secs_f64() / n as f64;
    (target.as_secs_f64() / per).max(1.0) as u64
}

/// Wall-clock nanoseconds per round when `threads` threads each do
/// `rounds` rounds of: take the lock, `hold` iterations of work, let go,
/// `outside` iterations of work.
fn rounds_ns(threads: usize, rounds: u64, hold: u64, outside: u64) -> f64 {
    let lock = Arc::new(Mutex::new(0u64));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (lock, barrier) = (lock.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..rounds {
                    let mut guard = lock.lock().unwrap();
                    *guard = guard.wrapping_add(work(hold));
                    drop(guard);
                    black_box(work(outside));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for worker in workers {
        worker.join().unwrap();
    }
    start.elapsed().as_nanos() as f64 / rounds as f64
}

fn main() {
    let hold = calibrate(Duration::from_nanos(150));
    let outside = calibrate(Duration::from_nanos(450));
    let empty = rounds_ns(1, 20_000_000, 0, 0);
    let alone = rounds_ns(1, 2_000_000, hold, outside);
    let held = rounds_ns(1, 2_000_000, hold, 0);
    let both = rounds_ns(2, 2_000_000, hold, outside);
    // Two threads in parallel each see the other holding the lock about
    // hold / (hold + outside) of the time; what the second thread adds to
    // a round, over that chance, is what one contended acquisition costs
    // (the lock's cache line moving, spinning, parking on the futex).
    let chance = held / alone;
    println!("uncontended lock+unlock, empty:        {empty:8.1} ns");
    println!("one thread, ~150 ns held, ~450 outside: {alone:8.1} ns per round");
    println!("two threads, the same each:            {both:8.1} ns per round");
    println!(
        "hold_us = {:.3}\ncontend_us = {:.3}",
        held / 1000.0,
        (both - alone).max(0.0) / chance / 1000.0
    );
}
