//! memcached's meta commands (`mg ms md ma me mn`): typed requests, their
//! parser (`parse.rs`) and their typed reply ([`MetaReply`]).
//!
//! Each command parses into its own request type ([`MetaGet`],
//! [`MetaSet`], [`MetaDelete`], [`MetaArith`], [`MetaDebug`]), plain `Copy`
//! data with no borrows, small enough to ride inside an operation across
//! threads. The request line's key, flag tokens and data block stay slices
//! of the read buffer ([`Meta`]): a reply echoes some flags in request
//! order (`O` opaques, `k`, `c`, `t`...), so the reply walks the tokens
//! again.
//!
//! Base64 keys (`b`) are checked here without being decoded
//! ([`base64_len`]); the server decodes each one once, in place in its read
//! buffer ([`decode_in_place`]), before it hashes the key.

mod reply;

pub use super::meta_line::OPAQUE_MAX_LEN;
pub use reply::{DebugReply, MetaCode, MetaEcho, MetaFacts, MetaReply, MetaStatus, Ttls};

use super::kind::{ArithKind, StoreKind};
use super::tokens::KEY_MAX_LEN;

/// Which meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCommand {
    /// `mg`: get.
    Get,
    /// `ms`: set, in any mode.
    Set,
    /// `md`: delete or invalidate.
    Delete,
    /// `ma`: increment or decrement.
    Arith,
    /// `me`: debug dump of an item's metadata.
    Debug,
}

/// One parsed meta request (not `mn`, which is
/// [`Request::MetaNoop`](super::Request::MetaNoop)), borrowing from the
/// read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta<'a> {
    /// The command and its flags.
    pub request: MetaRequest,
    /// The key as sent: base64 text if [`MetaRequest::base64`].
    pub key: &'a [u8],
    /// The flag tokens as sent, for echoing in order.
    pub tokens: &'a [u8],
    /// `ms` only: the data block, without its `\r\n`.
    pub data: &'a [u8],
    /// `ms` only: nonzero if the data block is larger than any item can be;
    /// the bytes of it (and its `\r\n`) still to skip after the line. The
    /// request is then answered `SERVER_ERROR object too large for cache`
    /// and any item under the key is removed.
    pub too_large: usize,
}

/// A meta command with its flags, typed per command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaRequest {
    /// `mg`
    Get(MetaGet),
    /// `ms`
    Set(MetaSet),
    /// `md`
    Delete(MetaDelete),
    /// `ma`
    Arith(MetaArith),
    /// `me`
    Debug(MetaDebug),
}

impl MetaRequest {
    /// Which command this is.
    pub fn command(&self) -> MetaCommand {
        match self {
            MetaRequest::Get(_) => MetaCommand::Get,
            MetaRequest::Set(_) => MetaCommand::Set,
            MetaRequest::Delete(_) => MetaCommand::Delete,
            MetaRequest::Arith(_) => MetaCommand::Arith,
            MetaRequest::Debug(_) => MetaCommand::Debug,
        }
    }

    /// Whether the key was sent base64-encoded (`b`).
    pub fn base64(&self) -> bool {
        match self {
            MetaRequest::Get(r) => r.base64,
            MetaRequest::Set(r) => r.base64,
            MetaRequest::Delete(r) => r.base64,
            MetaRequest::Arith(r) => r.base64,
            MetaRequest::Debug(r) => r.base64,
        }
    }

    /// Whether quiet mode (`q`) was asked for.
    pub fn quiet(&self) -> bool {
        match self {
            MetaRequest::Get(r) => r.quiet,
            MetaRequest::Set(r) => r.quiet,
            MetaRequest::Delete(r) => r.quiet,
            MetaRequest::Arith(r) => r.quiet,
            MetaRequest::Debug(_) => false,
        }
    }
}

/// The CAS tokens of a meta request: `C` (compare with the item's) and
/// `E` (the CAS token a modified item gets). Two optional numbers, packed
/// so that a request fits the operation carrying it across threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CasTokens {
    compare: u64,
    new_cas: u64,
    given: u8,
}

impl CasTokens {
    const COMPARE: u8 = 1;
    const NEW_CAS: u8 = 2;

    /// `C`: act only if the item's CAS token is this one.
    pub fn compare(&self) -> Option<u64> {
        (self.given & Self::COMPARE != 0).then_some(self.compare)
    }

    /// `E`: the CAS token the item gets instead of a fresh one.
    pub fn new_cas(&self) -> Option<u64> {
        (self.given & Self::NEW_CAS != 0).then_some(self.new_cas)
    }

    /// The tokens `C` and `E` carry, if given.
    pub fn new(compare: Option<u64>, new_cas: Option<u64>) -> CasTokens {
        CasTokens {
            compare: compare.unwrap_or(0),
            new_cas: new_cas.unwrap_or(0),
            given: u8::from(compare.is_some()) * Self::COMPARE
                + u8::from(new_cas.is_some()) * Self::NEW_CAS,
        }
    }
}

/// `mg <key> <flags>*`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaGet {
    /// `v`: return the value.
    pub value: bool,
    /// `T`: a new TTL (protocol exptime).
    pub touch: Option<i32>,
    /// `N`: on a miss, create an empty item with this TTL.
    pub vivify: Option<i32>,
    /// `R`: win the recache token if the remaining TTL is below this.
    pub recache: Option<i32>,
    /// `u`: leave the LRU position, fetched bit and access time alone.
    pub no_bump: bool,
    /// `E`: the CAS token of an item `N` creates.
    pub new_cas: Option<u64>,
    /// `q`: no `EN` on a miss.
    pub quiet: bool,
    /// `b`: the key is base64.
    pub base64: bool,
}

/// How `ms` treats an existing item (`M`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetMode {
    /// `MS` (the default): store.
    #[default]
    Set,
    /// `ME`: store only if absent.
    Add,
    /// `MA`: append to the value.
    Append,
    /// `MP`: prepend to the value.
    Prepend,
    /// `MR`: store only if present.
    Replace,
}

impl SetMode {
    /// The classic storage command that stores as this mode does.
    pub fn store_kind(self) -> StoreKind {
        match self {
            SetMode::Set => StoreKind::Set,
            SetMode::Add => StoreKind::Add,
            SetMode::Append => StoreKind::Append,
            SetMode::Prepend => StoreKind::Prepend,
            SetMode::Replace => StoreKind::Replace,
        }
    }
}

/// `ms <key> <datalen> <flags>*`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaSet {
    /// `M`: the mode.
    pub mode: SetMode,
    /// `F`: client flags.
    pub client_flags: u32,
    /// `T`: TTL (protocol exptime).
    pub ttl: Option<i32>,
    /// `N`: append/prepend on a miss create the item with this TTL.
    pub vivify: Option<i32>,
    /// `C`, `E`.
    pub cas: CasTokens,
    /// `I`: with `C`, an older token still stores, marking the item stale.
    pub invalidate: bool,
    /// `q`: no `HD` on success.
    pub quiet: bool,
    /// `b`: the key is base64.
    pub base64: bool,
}

/// `md <key> <flags>*`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaDelete {
    /// `C`, `E`.
    pub cas: CasTokens,
    /// `T`: with `I`, a new TTL.
    pub ttl: Option<i32>,
    /// `I`: mark stale instead of removing.
    pub invalidate: bool,
    /// `x`: empty the value, keep the item.
    pub strip: bool,
    /// `q`: no `HD` on success.
    pub quiet: bool,
    /// `b`: the key is base64.
    pub base64: bool,
}

/// `ma <key> <flags>*`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaArith {
    /// `M`: increment (`I`, `+`, the default) or decrement (`D`, `-`).
    pub kind: ArithKind,
    /// `D`: the delta (default 1).
    pub delta: u64,
    /// `J`: the value of a counter `N` creates.
    pub initial: u64,
    /// `N`: on a miss, create the counter with this TTL.
    pub vivify: Option<i32>,
    /// `T`: a new TTL on success.
    pub ttl: Option<i32>,
    /// `C`, `E`.
    pub cas: CasTokens,
    /// `v`: return the value.
    pub value: bool,
    /// `q`: no reply on success (but one for a vivified counter).
    pub quiet: bool,
    /// `b`: the key is base64.
    pub base64: bool,
}

/// `me <key> [b]`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaDebug {
    /// `b`: the key is base64.
    pub base64: bool,
}

/// The decoded length of a base64 key, or `None` if it is not base64 as
/// the standard alphabet with canonical padding writes it, or decodes to
/// nothing. Checks without decoding: the server decodes once, in place.
pub fn base64_len(key: &[u8]) -> Option<usize> {
    if key.is_empty() || !key.len().is_multiple_of(4) {
        return None;
    }
    let quads = key.len() / 4;
    let mut len = 0;
    for (i, quad) in key.chunks_exact(4).enumerate() {
        let quad = [quad[0], quad[1], quad[2], quad[3]];
        len += decode_quad(quad, i + 1 == quads)?.1;
    }
    Some(len)
}

/// Decodes the base64 key in `key` into its own first bytes and returns
/// the decoded length; `None` (and `key` partly overwritten) if it is not
/// base64 ([`base64_len`] says beforehand).
pub fn decode_in_place(key: &mut [u8]) -> Option<usize> {
    if key.is_empty() || !key.len().is_multiple_of(4) {
        return None;
    }
    let quads = key.len() / 4;
    let mut out = 0;
    for i in 0..quads {
        // Quad i is read before bytes 3i..3i+3 are written, and those never
        // reach past it: decoding in place never reads what it wrote.
        let at = 4 * i;
        let quad = [key[at], key[at + 1], key[at + 2], key[at + 3]];
        let (bytes, len) = decode_quad(quad, i + 1 == quads)?;
        key[out..out + len].copy_from_slice(&bytes[..len]);
        out += len;
    }
    Some(out)
}

/// One group of four base64 characters: its 1 to 3 bytes. Padding (`=`)
/// may only end the last group, and the bits it leaves over must be zero.
fn decode_quad(quad: [u8; 4], last: bool) -> Option<([u8; 3], usize)> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let len = match (quad[2], quad[3]) {
        (b'=', b'=') if last => 1,
        (_, b'=') if last => 2,
        _ => 3,
    };
    let mut bits = 0u32;
    for &c in &quad[..len + 1] {
        bits = bits << 6 | sextet(c)?;
    }
    // Left-align the 6 * (len + 1) bits read into 24.
    bits <<= 6 * (3 - len);
    if bits & 0xff_ffff >> (8 * len) != 0 {
        return None;
    }
    Some(([(bits >> 16) as u8, (bits >> 8) as u8, bits as u8], len))
}

/// Appends `key` base64-encoded to `out`.
pub fn encode_key(key: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    let start = out.len();
    out.resize(start + key.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(key, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

/// A base64 key decodes to at most this many bytes: the encoded key is a
/// token of at most [`KEY_MAX_LEN`] bytes.
pub const BASE64_KEY_MAX_LEN: usize = KEY_MAX_LEN / 4 * 3;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn decoded(key: &[u8]) -> Option<Vec<u8>> {
        let mut buf = key.to_vec();
        let len = decode_in_place(&mut buf)?;
        buf.truncate(len);
        Some(buf)
    }

    #[test]
    fn base64_keys_round_trip() {
        assert_eq!(decoded(b"a2V5"), Some(b"key".to_vec()));
        assert_eq!(base64_len(b"a2V5"), Some(3));
        assert_eq!(decoded(b""), None);
        assert_eq!(base64_len(b""), None);
        let mut out = b"k".to_vec();
        encode_key(b"\x00\xffkey", &mut out);
        assert_eq!(out, b"kAP9rZXk=");
        assert_eq!(decoded(&out[1..]), Some(b"\x00\xffkey".to_vec()));
    }

    #[test]
    fn cas_tokens_keep_zero_apart_from_absent() {
        let tokens = CasTokens::new(Some(0), None);
        assert_eq!((tokens.compare(), tokens.new_cas()), (Some(0), None));
        let tokens = CasTokens::new(None, Some(u64::MAX));
        assert_eq!((tokens.compare(), tokens.new_cas()), (None, Some(u64::MAX)));
    }

    proptest::proptest! {
        /// Checking and decoding in place accept exactly what the base64
        /// crate's standard engine accepts, and decode to the same bytes.
        #[test]
        fn decoding_matches_the_base64_crate(
            text in proptest::collection::vec(
                proptest::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=!".to_vec()),
                0..40,
            ),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..40),
        ) {
            let engine = base64::engine::general_purpose::STANDARD;
            let expected = engine.decode(&text).ok().filter(|d| !d.is_empty());
            proptest::prop_assert_eq!(decoded(&text), expected.clone());
            proptest::prop_assert_eq!(base64_len(&text), expected.map(|d| d.len()));
            let encoded = engine.encode(&raw);
            proptest::prop_assert_eq!(decoded(encoded.as_bytes()), Some(raw.clone()));
            proptest::prop_assert_eq!(base64_len(encoded.as_bytes()), Some(raw.len()));
        }
    }
}
