//! A shard against a model, driven by operations decoded from the input:
//! see `corecache_fuzz::shard`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corecache_fuzz::shard::check(data));
