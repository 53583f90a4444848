//! The binary protocol parser: see `corecache_fuzz::binary`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corecache_fuzz::binary::check(data));
