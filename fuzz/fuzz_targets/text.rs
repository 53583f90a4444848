//! The text parser, classic commands first (`fuzz/dict/text.dict`): see
//! `corecache_fuzz::text`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corecache_fuzz::text::check(data));
