//! The words of a text line and the limits on them: [`Tokens`], the key
//! and line limits, what makes a key, what makes a number. A leaf: every
//! text parser (classic, long get lines, meta, admin) and the meta reply
//! writer use it, and it uses none of them.

/// Longest key memcached accepts.
pub const KEY_MAX_LEN: usize = 250;

/// Longest command line (without its data block) other than a `get` line,
/// as in memcached: a line that reaches it without a newline is fatal,
/// since the connection cannot find where the next request starts. A
/// `get` line that reaches it is taken in pieces instead.
pub const LINE_MAX_LEN: usize = 2048;

/// A space-separated list of keys, iterated without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tokens<'a>(&'a [u8]);

impl<'a> Tokens<'a> {
    /// The tokens of `line`.
    pub fn new(line: &'a [u8]) -> Tokens<'a> {
        Tokens(line)
    }

    /// What is left to iterate, as one slice of the original line.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.0.iter().position(|&b| b != b' ')?;
        let rest = &self.0[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.0 = &rest[end..];
        Some(&rest[..end])
    }
}

/// Whether a text command can name `key` as it is, and a text reply print
/// it as it is: 1 to 250 bytes, none of them a space, CR or LF. One rule
/// for classic and meta commands, so a key either stores is read and
/// deleted by both. Any other key (stored through the binary protocol or
/// with a base64 key) is named base64-encoded with the meta `b` flag, and
/// printed that way. memcached's classic commands also take a CR inside a
/// key; here it would end up in reply lines, so it is refused.
pub fn valid_key(key: &[u8]) -> bool {
    !key.is_empty()
        && key.len() <= KEY_MAX_LEN
        && key.iter().all(|&b| !matches!(b, b' ' | b'\r' | b'\n'))
}

/// `token` as a number of type `T`, if it is one.
pub(super) fn number<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    // Only ASCII digits and a leading sign get this far, so the `str`
    // conversion never fails on valid input; anything else is a bad number.
    std::str::from_utf8(token).ok()?.parse().ok()
}
