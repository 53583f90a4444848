//! The layout of an item inside its slab chunk: a fixed 40-byte header,
//! then the key, then the value.
//!
//! This module owns nothing but the byte layout; [`super::slab`] owns the
//! chunks and the other structures (index chain, LRU links, wheel checks)
//! read and write their fields through these accessors. Everything is plain
//! little-endian byte access on `&[u8]`, so there is no `unsafe` and no
//! alignment requirement on chunks.
//!
//! ```text
//! offset size field
//!  0     4    lru_prev   chunk id of the previous (newer) item in the class LRU
//!  4     4    lru_next   chunk id of the next (older) item
//!  8     4    hash_next  chunk id of the next item in the same index bucket
//! 12     4    flags      the client's opaque flags
//! 16     8    cas        compare-and-swap token
//! 24     4    value_len  bytes of value
//! 28     4    time       last access, seconds since server start
//! 32     6    deadline   expiry in ms since server start (0 = never), low 45
//!                          bits; meta protocol: bit 45 binary key, bit 46
//!                          stale, bit 47 win token sent
//! 38     1    key_len    bytes of key (memcached keys are at most 250)
//! 39     1    bits       bit 0 allocated, bit 1 fetched, bits 2..8 flush epoch
//! ```
//!
//! A chunk id of 0 means "none" in every link field.

use super::{Deadline, Millis};

/// Bytes of header in front of every item's key.
pub const HEADER: usize = 40;

/// The largest deadline the 45-bit field can hold (about 1100 years after
/// server start); later deadlines are clamped to it.
pub const MAX_DEADLINE: Millis = (1 << 45) - 1;

const PREV: usize = 0;
const NEXT: usize = 4;
const HNEXT: usize = 8;
const FLAGS: usize = 12;
const CAS: usize = 16;
const VLEN: usize = 24;
const TIME: usize = 28;
const DEADLINE: usize = 32;
const KLEN: usize = 38;
const BITS: usize = 39;

/// The byte holding the top of the deadline and the two meta bits.
const META: usize = DEADLINE + 5;
/// Meta protocol: the item was invalidated (`md I`) and is served stale.
const STALE: u8 = 0x40;
/// Meta protocol: a client has been handed the win token (`W`) for it.
const TOKEN_SENT: u8 = 0x80;
/// Meta protocol: the item was stored with a base64 (`b`) key, so `mg k`
/// echoes its key base64-encoded.
const KEY_BINARY: u8 = 0x20;
const META_BITS: u8 = STALE | TOKEN_SENT | KEY_BINARY;

const ALLOCATED: u8 = 1;
const FETCHED: u8 = 2;
/// Flush epochs are kept modulo this in the header.
pub const EPOCH_MODULUS: u64 = 64;

/// Total chunk bytes an item with this key and value needs.
pub fn total_size(key_len: usize, value_len: usize) -> usize {
    HEADER + key_len + value_len
}

fn rd32(c: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([c[off], c[off + 1], c[off + 2], c[off + 3]])
}

fn wr32(c: &mut [u8], off: usize, v: u32) {
    c[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a fresh header (links cleared, allocated, not fetched) and copies
/// the key in. The value bytes are left for the caller to fill through
/// [`value_mut`].
#[allow(clippy::too_many_arguments)]
pub fn init(
    c: &mut [u8],
    key: &[u8],
    value_len: usize,
    flags: u32,
    cas: u64,
    deadline: Deadline,
    time: u32,
    epoch: u64,
) {
    debug_assert!(key.len() <= u8::MAX as usize);
    debug_assert!(HEADER + key.len() + value_len <= c.len());
    c[..HEADER].fill(0);
    wr32(c, FLAGS, flags);
    c[CAS..CAS + 8].copy_from_slice(&cas.to_le_bytes());
    wr32(c, VLEN, value_len as u32);
    wr32(c, TIME, time);
    set_deadline(c, deadline);
    c[KLEN] = key.len() as u8;
    c[BITS] = ALLOCATED | (((epoch % EPOCH_MODULUS) as u8) << 2);
    c[HEADER..HEADER + key.len()].copy_from_slice(key);
}

/// Rewrites an item in place for a store that keeps its chunk: new value
/// length, flags, CAS, deadline and time, not fetched; the key, links and
/// flush epoch stay. The caller then writes the value through
/// [`value_mut`].
pub fn rewrite(
    c: &mut [u8],
    value_len: usize,
    flags: u32,
    cas: u64,
    deadline: Deadline,
    time: u32,
) {
    debug_assert!(HEADER + key_len(c) + value_len <= c.len());
    wr32(c, FLAGS, flags);
    c[CAS..CAS + 8].copy_from_slice(&cas.to_le_bytes());
    wr32(c, VLEN, value_len as u32);
    wr32(c, TIME, time);
    set_deadline(c, deadline);
    c[BITS] &= !FETCHED;
    c[META] &= !META_BITS;
}

/// Whether the item is marked stale (meta `md I`).
pub fn stale(c: &[u8]) -> bool {
    c[META] & STALE != 0
}

/// Marks the item stale or fresh.
pub fn set_stale(c: &mut [u8], on: bool) {
    if on {
        c[META] |= STALE;
    } else {
        c[META] &= !STALE;
    }
}

/// Whether the item was stored with a base64 key (meta `ms b`).
pub fn key_binary(c: &[u8]) -> bool {
    c[META] & KEY_BINARY != 0
}

/// Records whether the item was stored with a base64 key.
pub fn set_key_binary(c: &mut [u8], on: bool) {
    if on {
        c[META] |= KEY_BINARY;
    } else {
        c[META] &= !KEY_BINARY;
    }
}

/// Whether a win token (`W`) has been handed out for the item.
pub fn token_sent(c: &[u8]) -> bool {
    c[META] & TOKEN_SENT != 0
}

/// Records whether a win token has been handed out.
pub fn set_token_sent(c: &mut [u8], on: bool) {
    if on {
        c[META] |= TOKEN_SENT;
    } else {
        c[META] &= !TOKEN_SENT;
    }
}

/// Marks a chunk free (clears the allocated bit).
pub fn clear(c: &mut [u8]) {
    c[BITS] = 0;
}

/// Whether the chunk holds an item.
pub fn is_allocated(c: &[u8]) -> bool {
    c[BITS] & ALLOCATED != 0
}

/// Whether the item has been read since it was stored.
pub fn fetched(c: &[u8]) -> bool {
    c[BITS] & FETCHED != 0
}

/// Marks the item as read.
pub fn set_fetched(c: &mut [u8]) {
    c[BITS] |= FETCHED;
}

/// The flush epoch (modulo [`EPOCH_MODULUS`]) the item was stored in.
pub fn epoch(c: &[u8]) -> u64 {
    u64::from(c[BITS] >> 2)
}

/// The previous (more recently used) item in the LRU.
pub fn lru_prev(c: &[u8]) -> u32 {
    rd32(c, PREV)
}

/// Sets the LRU previous link.
pub fn set_lru_prev(c: &mut [u8], id: u32) {
    wr32(c, PREV, id);
}

/// The next (less recently used) item in the LRU.
pub fn lru_next(c: &[u8]) -> u32 {
    rd32(c, NEXT)
}

/// Sets the LRU next link.
pub fn set_lru_next(c: &mut [u8], id: u32) {
    wr32(c, NEXT, id);
}

/// The next item in the same index bucket.
pub fn hash_next(c: &[u8]) -> u32 {
    rd32(c, HNEXT)
}

/// Sets the index chain link.
pub fn set_hash_next(c: &mut [u8], id: u32) {
    wr32(c, HNEXT, id);
}

/// Client flags.
pub fn flags(c: &[u8]) -> u32 {
    rd32(c, FLAGS)
}

/// CAS token.
pub fn cas(c: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&c[CAS..CAS + 8]);
    u64::from_le_bytes(b)
}

/// Sets the CAS token.
pub fn set_cas(c: &mut [u8], cas: u64) {
    c[CAS..CAS + 8].copy_from_slice(&cas.to_le_bytes());
}

/// Last access time in seconds since server start.
pub fn time(c: &[u8]) -> u32 {
    rd32(c, TIME)
}

/// Sets the last access time.
pub fn set_time(c: &mut [u8], secs: u32) {
    wr32(c, TIME, secs);
}

/// The item's deadline.
pub fn deadline(c: &[u8]) -> Deadline {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&c[DEADLINE..DEADLINE + 6]);
    match u64::from_le_bytes(b) & MAX_DEADLINE {
        0 => Deadline::NEVER,
        ms => Deadline::at(ms),
    }
}

/// Sets the deadline (clamped to [`MAX_DEADLINE`]); the meta bits sharing
/// its top byte are kept.
pub fn set_deadline(c: &mut [u8], deadline: Deadline) {
    let ms = deadline.millis().map_or(0, |ms| ms.min(MAX_DEADLINE));
    let bits = c[META] & META_BITS;
    c[DEADLINE..DEADLINE + 6].copy_from_slice(&ms.to_le_bytes()[..6]);
    c[META] |= bits;
}

/// Key length.
pub fn key_len(c: &[u8]) -> usize {
    c[KLEN] as usize
}

/// Value length.
pub fn value_len(c: &[u8]) -> usize {
    rd32(c, VLEN) as usize
}

/// Sets the value length (the caller keeps it within the chunk).
pub fn set_value_len(c: &mut [u8], len: usize) {
    wr32(c, VLEN, len as u32);
}

/// Header, key and value bytes of the item.
pub fn item_size(c: &[u8]) -> usize {
    HEADER + key_len(c) + value_len(c)
}

/// The key bytes.
pub fn key(c: &[u8]) -> &[u8] {
    &c[HEADER..HEADER + key_len(c)]
}

/// The value bytes.
pub fn value(c: &[u8]) -> &[u8] {
    let start = HEADER + key_len(c);
    &c[start..start + value_len(c)]
}

/// The value bytes, writable.
pub fn value_mut(c: &mut [u8]) -> &mut [u8] {
    let start = HEADER + key_len(c);
    let len = value_len(c);
    &mut c[start..start + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut c = vec![0xAAu8; 128];
        init(&mut c, b"key", 5, 7, 99, Deadline::at(1234), 3, 65);
        value_mut(&mut c).copy_from_slice(b"hello");
        assert!(is_allocated(&c));
        assert!(!fetched(&c));
        assert_eq!(epoch(&c), 1);
        assert_eq!(key(&c), b"key");
        assert_eq!(value(&c), b"hello");
        assert_eq!(flags(&c), 7);
        assert_eq!(cas(&c), 99);
        assert_eq!(deadline(&c), Deadline::at(1234));
        assert_eq!(time(&c), 3);
        assert_eq!(item_size(&c), HEADER + 8);
        set_fetched(&mut c);
        set_lru_prev(&mut c, 11);
        set_lru_next(&mut c, 12);
        set_hash_next(&mut c, 13);
        assert!(fetched(&c));
        assert_eq!((lru_prev(&c), lru_next(&c), hash_next(&c)), (11, 12, 13));
        set_deadline(&mut c, Deadline::NEVER);
        assert_eq!(deadline(&c), Deadline::NEVER);
        set_deadline(&mut c, Deadline::at(u64::MAX));
        assert_eq!(deadline(&c), Deadline::at(MAX_DEADLINE));
        rewrite(&mut c, 2, 8, 100, Deadline::at(5), 4);
        assert_eq!((value(&c), flags(&c), cas(&c)), (&b"he"[..], 8, 100));
        assert_eq!(
            (deadline(&c), time(&c), fetched(&c)),
            (Deadline::at(5), 4, false)
        );
        assert_eq!(
            (key(&c), lru_prev(&c), hash_next(&c), epoch(&c)),
            (&b"key"[..], 11, 13, 1)
        );
        clear(&mut c);
        assert!(!is_allocated(&c));
    }

    #[test]
    fn meta_bits_share_the_deadline_byte() {
        let mut c = vec![0u8; 64];
        init(&mut c, b"k", 0, 0, 1, Deadline::at(MAX_DEADLINE), 0, 0);
        assert!(!stale(&c) && !token_sent(&c));
        set_stale(&mut c, true);
        set_token_sent(&mut c, true);
        set_key_binary(&mut c, true);
        assert_eq!(deadline(&c), Deadline::at(MAX_DEADLINE));
        set_deadline(&mut c, Deadline::at(77));
        assert!(stale(&c) && token_sent(&c) && key_binary(&c));
        assert_eq!(deadline(&c), Deadline::at(77));
        set_token_sent(&mut c, false);
        assert!(stale(&c) && !token_sent(&c));
        rewrite(&mut c, 0, 0, 2, Deadline::NEVER, 0);
        assert!(!stale(&c) && !token_sent(&c) && !key_binary(&c));
        assert_eq!(deadline(&c), Deadline::NEVER);
    }
}
