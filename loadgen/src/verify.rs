//! Self-describing values for `--verify`.
//!
//! Layout of a verified value of `len >= HEADER_LEN` bytes (integers
//! little-endian):
//!
//! | bytes     | content                                              |
//! |-----------|------------------------------------------------------|
//! | `0..8`    | key index                                            |
//! | `8..16`   | version                                              |
//! | `16..24`  | checksum = `mix(key, version, len)`                  |
//! | `24..len` | filler: a pseudo-random stream seeded by the checksum |
//!
//! A hit is good when the checksum matches the header, the key index is the
//! one requested, and every filler byte is what the checksum predicts, so a
//! value served for the wrong key, truncated, spliced or bit-flipped is
//! caught. Versions are unique per run: `(connection << 40) | counter`.
//!
//! With `--mix`, an `append` adds [`SUFFIX_LEN`] bytes that depend only on
//! the key ([`push_suffix`]), so a value is a verified base followed by
//! zero or more copies of its key's suffix, and [`check_appended`] finds
//! the base by peeling suffixes off the end (the base's checksum covers its
//! own length, so exactly one split fits). Counter keys (those `incr`
//! works on) hold plain decimal numbers instead ([`parse_counter`]).

/// Bytes taken by the header.
pub const HEADER_LEN: usize = 24;

#[inline]
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn checksum(key: u64, version: u64, len: usize) -> u64 {
    splitmix(splitmix(key ^ 0x5EED) ^ version.rotate_left(17) ^ (len as u64) << 1)
}

fn fill(out: &mut [u8], seed: u64) {
    let mut s = seed;
    for chunk in out.chunks_mut(8) {
        s = splitmix(s);
        chunk.copy_from_slice(&s.to_le_bytes()[..chunk.len()]);
    }
}

/// Appends a value of `len` bytes encoding `key` and `version`.
pub fn encode(out: &mut Vec<u8>, key: u64, version: u64, len: usize) {
    debug_assert!(len >= HEADER_LEN);
    let c = checksum(key, version, len);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&c.to_le_bytes());
    let start = out.len();
    out.resize(start + len - HEADER_LEN, 0);
    fill(&mut out[start..], c);
}

/// Why a value failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Shorter than the header.
    TooShort,
    /// Header checksum or filler does not match.
    Corrupt,
    /// Intact, but it is the value of another key.
    WrongKey,
}

/// Checks a value read for `key`; returns its version.
pub fn check(data: &[u8], key: u64) -> Result<u64, Bad> {
    if data.len() < HEADER_LEN {
        return Err(Bad::TooShort);
    }
    let word = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().unwrap());
    let (k, v, c) = (word(0), word(8), word(16));
    if checksum(k, v, data.len()) != c {
        return Err(Bad::Corrupt);
    }
    let mut s = c;
    for chunk in data[HEADER_LEN..].chunks(8) {
        s = splitmix(s);
        if chunk != &s.to_le_bytes()[..chunk.len()] {
            return Err(Bad::Corrupt);
        }
    }
    if k != key {
        return Err(Bad::WrongKey);
    }
    Ok(v)
}

/// Bytes one `append` adds.
pub const SUFFIX_LEN: usize = 8;

#[inline]
fn suffix(key: u64) -> [u8; SUFFIX_LEN] {
    splitmix(key ^ 0xA99E_D5FF_1C5E_0001).to_le_bytes()
}

/// Appends the data an `append` to `key` sends.
pub fn push_suffix(out: &mut Vec<u8>, key: u64) {
    out.extend_from_slice(&suffix(key));
}

/// Checks a value read for `key` that appends may have extended; returns
/// its version and how many suffixes follow the base.
pub fn check_appended(data: &[u8], key: u64) -> Result<(u64, u32), Bad> {
    let tail = suffix(key);
    let mut base = data.len();
    let mut appends = 0;
    loop {
        match check(&data[..base], key) {
            Ok(v) => return Ok((v, appends)),
            // Not a whole value yet: peel one more suffix if there is one.
            Err(Bad::Corrupt | Bad::TooShort)
                if base >= HEADER_LEN + SUFFIX_LEN && data[base - SUFFIX_LEN..base] == tail =>
            {
                base -= SUFFIX_LEN;
                appends += 1;
            }
            Err(bad) => return Err(bad),
        }
    }
}

/// Reads a counter's value: decimal digits, optionally padded with spaces
/// (memcached pads in place when an `incr` wraps to fewer digits).
pub fn parse_counter(data: &[u8]) -> Option<u64> {
    let digits = data.iter().position(|&b| b == b' ').unwrap_or(data.len());
    if data[digits..].iter().any(|&b| b != b' ') {
        return None;
    }
    crate::proto::parse_u64(&data[..digits])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_values_split_into_base_and_suffixes() {
        for len in [HEADER_LEN, 40, 301] {
            let mut v = Vec::new();
            encode(&mut v, 9, 5, len);
            for appends in 0..5 {
                assert_eq!(check_appended(&v, 9), Ok((5, appends)), "{len}+{appends}");
                push_suffix(&mut v, 9);
            }
            // Another key's suffix, or a torn one, is not an append.
            let mut w = v.clone();
            push_suffix(&mut w, 10);
            assert_eq!(check_appended(&w, 9), Err(Bad::Corrupt));
            assert!(check_appended(&v[..v.len() - 1], 9).is_err());
            for i in 0..v.len() {
                let mut w = v.clone();
                w[i] ^= 0x04;
                assert!(check_appended(&w, 9).is_err(), "flip at {i} undetected");
            }
            assert_eq!(check_appended(&v, 8), Err(Bad::Corrupt));
        }
    }

    #[test]
    fn counters_parse_with_memcached_padding() {
        assert_eq!(parse_counter(b"0"), Some(0));
        assert_eq!(parse_counter(b"42   "), Some(42));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b" 1", b"4 2", b"x", b"18446744073709551616"] {
            assert_eq!(parse_counter(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn round_trip_and_corruption() {
        for len in [HEADER_LEN, 25, 32, 100, 4097] {
            let mut v = Vec::new();
            encode(&mut v, 42, 7, len);
            assert_eq!(v.len(), len);
            assert_eq!(check(&v, 42), Ok(7));
            assert_eq!(check(&v, 43), Err(Bad::WrongKey));
            for i in 0..len {
                let mut w = v.clone();
                w[i] ^= 0x10;
                assert!(check(&w, 42).is_err(), "flip at {i} of {len} undetected");
            }
            assert!(check(&v[..len - 1], 42).is_err());
        }
        assert_eq!(check(b"short", 1), Err(Bad::TooShort));
    }
}
