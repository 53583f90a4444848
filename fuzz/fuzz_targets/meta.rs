//! The text parser, seeded with meta commands (`fuzz/dict/meta.dict`):
//! the same checks as the `text` target, which compare every meta
//! request's typed flags with its tokens; see `corecache_fuzz::text`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corecache_fuzz::text::check(data));
