//! Forwarding allocates nothing once warm: a counting allocator around a
//! real two-thread server shows no heap allocation while thousands of
//! pipelined requests, half of them forwarded, go through.
//!
//! Its own test binary, because the allocator counts every allocation of
//! the process: the client side here allocates nothing while measuring
//! (its buffers are made before), so whatever is counted is the server's.

mod common;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use common::{Raw, TestServer, key_on_thread};
use corecache::config::RuntimeKind;
use counting_alloc::allocations;
use std::io::{Read, Write};

/// Sends `request` and reads exactly `reply.len()` bytes into `reply`,
/// allocating nothing.
fn round_trip(c: &mut Raw, request: &[u8], reply: &mut [u8]) {
    c.stream.write_all(request).unwrap();
    c.stream.read_exact(reply).unwrap();
}

#[test]
fn forwarded_batches_allocate_nothing_once_warm() {
    let server = TestServer::start(RuntimeKind::ThreadPerCore);
    // Eight connections, so the outbox carries several per message.
    let mut clients: Vec<Raw> = (0..8).map(|_| server.connect()).collect();
    let keys: Vec<String> = (0..16).map(|i| key_on_thread(i % 2, i * 1000)).collect();
    let mut sets = String::new();
    for key in &keys {
        sets.push_str(&format!("set {key} 0 0 4\r\nfour\r\n"));
    }
    let mut stored = vec![0u8; keys.len() * 8];
    round_trip(&mut clients[0], sets.as_bytes(), &mut stored);
    assert_eq!(stored, "STORED\r\n".repeat(keys.len()).as_bytes());
    // A pipelined burst of gets and sets over keys of both threads.
    let mut burst = String::new();
    let mut expected = String::new();
    for key in &keys {
        burst.push_str(&format!("get {key}\r\nset {key} 0 0 4\r\nfour\r\n"));
        expected.push_str(&format!("VALUE {key} 0 4\r\nfour\r\nEND\r\nSTORED\r\n"));
    }
    let (burst, expected) = (burst.into_bytes(), expected.into_bytes());
    let mut reply = vec![0u8; expected.len()];
    let rounds = |n: usize, clients: &mut [Raw], reply: &mut [u8]| {
        for _ in 0..n {
            for c in clients.iter_mut() {
                c.stream.write_all(&burst).unwrap();
            }
            for c in clients.iter_mut() {
                c.stream.read_exact(reply).unwrap();
                assert!(*reply == expected[..], "a wrong reply");
            }
        }
    };
    // Warm up: buffers, pools and queues reach their working sizes.
    rounds(300, &mut clients, &mut reply);
    // How many batches are in flight at once depends on how the two
    // threads and this client interleave, so a busy machine can set a new
    // high-water mark (one more pooled batch or `Rc`) after any warm-up.
    // What must hold is that growth stops: some window of 500 rounds, of
    // at most ten, allocates nothing at all. A per-request or per-message
    // allocation would show in every window.
    //
    // The counter is read over one connection kept open throughout: a
    // connection per read would have the server tear the last one down,
    // which allocates, while the next window counts.
    let mut admin = server.connect();
    let mut forwarded_requests = move || -> u64 {
        let stats = admin.stats("");
        let (_, value) = stats
            .iter()
            .find(|(name, _)| name == "forwarded_requests")
            .unwrap();
        value.parse().unwrap()
    };
    let mut windows = Vec::new();
    for _ in 0..10 {
        let forwarded = forwarded_requests();
        let before = allocations();
        rounds(500, &mut clients, &mut reply);
        let allocated = allocations() - before;
        let forwarded = forwarded_requests() - forwarded;
        // 500 rounds x 8 connections x 32 requests, on keys half of which
        // live on the other thread, whichever thread a connection is on.
        assert_eq!(forwarded, 500 * 8 * 16);
        windows.push(allocated);
        if allocated == 0 {
            return;
        }
    }
    panic!("every window allocated: {windows:?} allocations per 64,000 forwarded requests");
}
