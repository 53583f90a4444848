//! Randomized comparison against the reference model of a shard: proptest
//! generates operations, and the model (shared with the fuzz crate's
//! `shard` target, which decodes the same operations from bytes) checks
//! every reply, every key and, from the shard's eviction log, the order of
//! evictions.

use super::small_pages;
use crate::storage::{ArithOp, Shard, ShardConfig};
use model::{Mode, Op, Run, Ttl};
use proptest::prelude::*;

#[path = "../../../fuzz/src/model.rs"]
mod model;

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        4 => Just(Ttl::Never),
        3 => (1u64..5000).prop_map(Ttl::In),
        1 => Just(Ttl::Past),
    ]
}

fn value(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..max),
        1 => (0u64..1000).prop_map(|n| n.to_string().into_bytes()),
    ]
}

fn store_op(
    mode: impl Strategy<Value = Mode>,
    keys: u8,
    max_value: usize,
    ttl: impl Strategy<Value = Ttl>,
) -> impl Strategy<Value = Op> {
    (mode, 0..keys, value(max_value), any::<u32>(), ttl).prop_map(
        |(mode, key, value, flags, ttl)| Op::Store {
            mode,
            key,
            value,
            flags,
            ttl,
        },
    )
}

fn op(keys: u8, max_value: usize) -> impl Strategy<Value = Op> {
    let mode = prop_oneof![
        Just(Mode::Set),
        Just(Mode::Add),
        Just(Mode::Replace),
        Just(Mode::Append),
        Just(Mode::Prepend),
        Just(Mode::CasRight),
        Just(Mode::CasWrong),
    ];
    prop_oneof![
        8 => store_op(mode, keys, max_value, ttl()),
        6 => (0..keys).prop_map(Op::Get),
        1 => (0..keys, ttl()).prop_map(|(k, t)| Op::Gat(k, t)),
        1 => (0..keys, ttl()).prop_map(|(k, t)| Op::Touch(k, t)),
        2 => (0..keys).prop_map(Op::Delete),
        1 => (0..keys).prop_map(Op::Discard),
        2 => (0..keys, prop_oneof![Just(ArithOp::Incr), Just(ArithOp::Decr)], 0u64..100)
            .prop_map(|(k, o, d)| Op::Arith(k, o, d)),
        1 => prop_oneof![Just(0u64), 1u64..3000].prop_map(Op::Flush),
        2 => Just(Op::Tick),
        3 => (0u64..1500).prop_map(Op::Advance),
    ]
}

/// [`op`], and now and then a memory limit of up to ten pages or a
/// `slabs reassign` between any classes: pages move and leave.
fn op_or_admin(keys: u8, max_value: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => op(keys, max_value),
        1 => (0usize..10).prop_map(Op::MemoryLimit),
        1 => (-1i64..23, -1i64..23).prop_map(|(src, dst)| Op::Reassign(src, dst)),
    ]
}

/// Mostly stores and reads with no flush: a full cache that keeps
/// evicting, where overwrites often land in the chunk they already had.
fn churn_op(keys: u8, max_value: usize) -> impl Strategy<Value = Op> {
    let mode = prop_oneof![
        6 => Just(Mode::Set),
        1 => Just(Mode::Add),
        1 => Just(Mode::Append),
    ];
    prop_oneof![
        10 => store_op(mode, keys, max_value, Just(Ttl::Never)),
        4 => (0..keys).prop_map(Op::Get),
        1 => (0..keys, ttl()).prop_map(|(k, t)| Op::Touch(k, t)),
        1 => (0..keys).prop_map(Op::Delete),
        1 => (0..keys, Just(ArithOp::Incr), 0u64..100).prop_map(|(k, o, d)| Op::Arith(k, o, d)),
        1 => Just(Op::Tick),
        2 => (0u64..1500).prop_map(Op::Advance),
    ]
}

/// Runs `ops` on a shard of `config` with keys `key-0` to `key-<keys-1>`
/// against the shard model, which also checks the order of evictions from
/// the shard's eviction log; returns the shard.
fn run_model(config: &ShardConfig, keys: u8, ops: &[Op]) -> Shard {
    let names = (0..keys).map(|k| format!("key-{k}").into_bytes()).collect();
    let mut run = Run::new(config, names, Some(Shard::take_evictions));
    run.shard.log_evictions();
    for op in ops {
        run.apply(op);
    }
    run.finish();
    run.shard
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn model_with_room_never_loses_keys(ops in proptest::collection::vec(op(24, 600), 1..400)) {
        let shard = run_model(&ShardConfig::for_tests(64 << 20), 24, &ops);
        prop_assert_eq!(shard.stats().evictions, 0);
    }

    #[test]
    fn model_under_memory_pressure(ops in proptest::collection::vec(op_or_admin(64, 2000), 1..400)) {
        // Two 4 KiB pages for 64 keys of up to 2 KB: evictions and page
        // moves happen in most runs.
        run_model(&small_pages(2 * 4096, 4096), 64, &ops);
    }

    #[test]
    fn model_evicts_in_lru_order_in_one_full_class(ops in proptest::collection::vec(churn_op(128, 40), 1..600)) {
        // Two 4 KiB pages of the smallest class (92 chunks) for 128 keys:
        // every item fits that class, so it is always full and evicting
        // while overwrites rewrite items in their chunks.
        run_model(&small_pages(2 * 4096, 4096), 128, &ops);
    }
}
