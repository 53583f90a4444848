//! Authentication as memcached's text protocol does it (`-Y authfile`):
//! `--auth-file PATH` lists `user:password` lines, and a connection must
//! send `set <any key> <any flags> <any exptime> <len>` whose data is
//! `user password` before anything else is read or written.
//!
//! Until then a connection passes through a [`Gate`] instead of the parser:
//! every other line is answered `CLIENT_ERROR unauthenticated` and dropped,
//! and nothing reaches a shard. The replies are memcached 1.6.18's, byte
//! for byte (`STORED`, `CLIENT_ERROR authentication failure`,
//! `CLIENT_ERROR bad authentication token format`, `CLIENT_ERROR bad
//! command line termination`), with one difference: memcached answers only
//! the last of several requests that arrive together before authentication
//! (its replies overwrite each other), where corecache answers each one, so
//! a pipelining client never waits for a reply that will not come.
//!
//! With auth on, as in memcached, every connection speaks the text
//! protocol: a binary request is text that does not authenticate.
//!
//! Secrets are compared in constant time: both sides are hashed (SHA-256)
//! and the digests compared with `subtle`, whose comparison the optimiser
//! cannot turn into an early exit; every entry is compared, whatever
//! matched. The time taken so depends neither on how much of a guess was
//! right, nor on which user it named, nor on the length of any stored
//! password (memcached compares lengths first, which tells a client them).

use crate::stats::ThreadStats;
use ring::digest::{SHA256, digest};
use std::path::Path;
use subtle::{Choice, ConstantTimeEq};

/// A line longer than this without a newline closes an unauthenticated
/// connection, as in memcached.
const LINE_MAX: usize = 2048;

/// The largest authentication data block taken. memcached resets a
/// connection whose block does not fit its 16 KiB read buffer; an
/// unauthenticated client must not make the server hold more than that.
pub const DATA_MAX: usize = 16 * 1024;

/// The users of `--auth-file`, their names and passwords kept only as
/// SHA-256 digests.
pub struct AuthFile {
    entries: Vec<([u8; 32], [u8; 32])>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

impl AuthFile {
    /// Reads `path`: one `user:password` per line (the password is what
    /// follows the first `:`). A line that could never authenticate (no
    /// `:`, an empty or space-holding name or password) is an error naming
    /// its line, where memcached would take it silently.
    pub fn load(path: &Path) -> Result<AuthFile, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        AuthFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the file's contents (see [`AuthFile::load`]).
    pub fn parse(text: &[u8]) -> Result<AuthFile, String> {
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        if body.is_empty() {
            return Err("no user:password line".to_string());
        }
        let mut entries = Vec::new();
        for (number, line) in body.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let n = number + 1;
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(format!("line {n} is not user:password"));
            };
            let (user, password) = (&line[..colon], &line[colon + 1..]);
            if user.is_empty() || password.is_empty() {
                return Err(format!("line {n} has an empty user or password"));
            }
            // The auth command separates user and password with spaces.
            if user.contains(&b' ') || password.contains(&b' ') {
                return Err(format!(
                    "line {n}: a user or password with a space could never log in"
                ));
            }
            entries.push((sha256(user), sha256(password)));
        }
        Ok(AuthFile { entries })
    }

    /// Whether `user` and `password` are an entry of the file, in time
    /// that depends on neither's contents (see the module docs).
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let (user, password) = (sha256(user), sha256(password));
        let mut found = Choice::from(0);
        for (u, p) in &self.entries {
            found |= u.ct_eq(&user) & p.ct_eq(&password);
        }
        found.into()
    }
}

/// Where an unauthenticated connection stands.
#[derive(Debug, Default)]
pub struct Gate {
    /// The length of the data block of an auth `set` whose line was read.
    data: Option<usize>,
}

/// What [`Gate::take`] leaves the connection to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Passage {
    /// Still unauthenticated: read more.
    Wait,
    /// Authenticated: what follows in the buffer is ordinary requests.
    Open,
    /// Close the connection (a line or data block past the limits).
    Close,
}

impl Gate {
    /// Takes what it can of `input` (an unauthenticated connection's
    /// unread bytes), appending replies to `out`. Returns the bytes used
    /// and what the connection does next.
    pub fn take(
        &mut self,
        input: &[u8],
        file: &AuthFile,
        out: &mut Vec<u8>,
        stats: &ThreadStats,
    ) -> (usize, Passage) {
        crate::fault::check(crate::fault::Site::Auth);
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            let Some(len) = self.data else {
                let Some(newline) = memchr::memchr(b'\n', rest) else {
                    let next = if rest.len() > LINE_MAX {
                        Passage::Close
                    } else {
                        Passage::Wait
                    };
                    return (pos, next);
                };
                pos += newline + 1;
                match auth_set_length(&rest[..newline]) {
                    Some(len) if len > DATA_MAX => return (pos, Passage::Close),
                    Some(len) => self.data = Some(len),
                    None => out.extend_from_slice(b"CLIENT_ERROR unauthenticated\r\n"),
                }
                continue;
            };
            if rest.len() < len + 2 {
                return (pos, Passage::Wait);
            }
            pos += len + 2;
            self.data = None;
            let (data, end) = rest[..len + 2].split_at(len);
            if end != b"\r\n" {
                out.extend_from_slice(b"CLIENT_ERROR bad command line termination\r\n");
                continue;
            }
            let mut tokens = until_nul(data)
                .split(|&b| b == b' ')
                .filter(|t| !t.is_empty());
            let (Some(user), Some(password)) = (tokens.next(), tokens.next()) else {
                out.extend_from_slice(b"CLIENT_ERROR bad authentication token format\r\n");
                continue;
            };
            stats.auth_cmds.add(1);
            if file.check(user, password) {
                out.extend_from_slice(b"STORED\r\n");
                return (pos, Passage::Open);
            }
            stats.auth_errors.add(1);
            out.extend_from_slice(b"CLIENT_ERROR authentication failure\r\n");
        }
    }
}

/// The data length of an auth `set` line (`set <key> <flags> <exptime>
/// <len> ...`, only the command and the length checked, as memcached
/// does), or None for any other line.
fn auth_set_length(line: &[u8]) -> Option<usize> {
    let line = until_nul(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    if tokens.next()? != b"set" {
        return None;
    }
    let length = tokens.nth(3)?;
    let digits = length.strip_prefix(b"+").unwrap_or(length);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Anything longer than a usize is past the limit anyway.
    Some(
        std::str::from_utf8(digits)
            .ok()?
            .parse()
            .unwrap_or(usize::MAX),
    )
}

/// `bytes` up to its first NUL: memcached reads the login line and data as
/// C strings, so a NUL ends them (`alice secret\0x` logs in as alice).
fn until_nul(bytes: &[u8]) -> &[u8] {
    memchr::memchr(0, bytes).map_or(bytes, |nul| &bytes[..nul])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> AuthFile {
        AuthFile::parse(b"alice:secret\r\nbob:hunter2:with:colons\n").unwrap()
    }

    /// Feeds `input` whole; returns (bytes used, outcome, replies).
    fn feed(gate: &mut Gate, input: &[u8]) -> (usize, Passage, String) {
        let mut out = Vec::new();
        let (used, next) = gate.take(input, &file(), &mut out, &ThreadStats::default());
        (used, next, String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_file_takes_what_follows_the_first_colon_as_the_password() {
        let file = file();
        assert!(file.check(b"alice", b"secret"));
        assert!(file.check(b"bob", b"hunter2:with:colons"));
        assert!(!file.check(b"alice", b"hunter2:with:colons"));
        assert!(!file.check(b"alice", b"secre"));
        assert!(!file.check(b"alic", b"secret"));
        assert!(!file.check(b"", b""));
    }

    #[test]
    fn lines_that_could_never_log_in_are_refused() {
        for (text, why) in [
            (
                &b"alice:secret\n\nbob:x\n"[..],
                "line 2 is not user:password",
            ),
            (b"alice secret\n", "line 1 is not user:password"),
            (b":secret\n", "line 1 has an empty user or password"),
            (b"alice:\n", "line 1 has an empty user or password"),
            (
                b"alice:two words\n",
                "line 1: a user or password with a space",
            ),
            (b"", "no user:password line"),
        ] {
            let err = AuthFile::parse(text).err().expect("refused");
            assert!(err.starts_with(why), "{text:?}: {err}");
        }
        assert!(AuthFile::parse(b"alice:secret").is_ok(), "no final newline");
    }

    #[test]
    fn a_right_login_opens_and_leaves_what_follows() {
        let mut gate = Gate::default();
        let input = b"set any 0 0 12\r\nalice secret\r\nget k\r\n";
        assert_eq!(
            feed(&mut gate, input),
            (30, Passage::Open, "STORED\r\n".into())
        );
    }

    #[test]
    fn a_nul_ends_the_line_and_the_data_as_in_memcached() {
        let mut gate = Gate::default();
        let input = b"set a 0 0 14\0x\r\nalice secret\0x\r\n";
        let (used, next, replies) = feed(&mut gate, input);
        assert_eq!((used, next), (input.len(), Passage::Open));
        assert_eq!(replies, "STORED\r\n");
        let mut gate = Gate::default();
        let (_, next, replies) = feed(&mut gate, b"set a 0 0 12\r\nalice\0secret\r\n");
        assert_eq!(next, Passage::Wait);
        assert_eq!(replies, "CLIENT_ERROR bad authentication token format\r\n");
    }

    #[test]
    fn every_other_line_is_unauthenticated_and_nothing_more() {
        let mut gate = Gate::default();
        let input = b"get k\r\nSET a 0 0 1\r\nset a 0 0\r\nset a 0 0 -1\r\nset a 0 0 1x\r\n\r\n";
        let (used, next, replies) = feed(&mut gate, input);
        assert_eq!((used, next), (input.len(), Passage::Wait));
        assert_eq!(replies, "CLIENT_ERROR unauthenticated\r\n".repeat(6));
    }

    #[test]
    fn bad_data_blocks_get_memcacheds_errors() {
        let mut gate = Gate::default();
        let input = b"set a 0 0 5\r\nalice\r\nset a 0 0 12\r\nalice wrong!\r\nset a 0 0 3\r\nabcXY";
        let (used, next, replies) = feed(&mut gate, input);
        assert_eq!((used, next), (input.len(), Passage::Wait));
        assert_eq!(
            replies,
            "CLIENT_ERROR bad authentication token format\r\n\
             CLIENT_ERROR authentication failure\r\n\
             CLIENT_ERROR bad command line termination\r\n"
        );
    }

    #[test]
    fn partial_input_waits_and_long_input_closes() {
        let mut gate = Gate::default();
        assert_eq!(
            feed(&mut gate, b"set a 0 0 12\r\nalice sec"),
            (14, Passage::Wait, String::new())
        );
        assert_eq!(
            feed(&mut gate, b"alice secret\r\n"),
            (14, Passage::Open, "STORED\r\n".into())
        );
        let mut gate = Gate::default();
        let long = vec![b'x'; LINE_MAX + 1];
        assert_eq!(feed(&mut gate, &long).1, Passage::Close);
        assert_eq!(feed(&mut gate, &long[1..]).1, Passage::Wait);
        let huge = format!("set a 0 0 {}\r\n", DATA_MAX + 1);
        assert_eq!(feed(&mut gate, huge.as_bytes()).1, Passage::Close);
    }
}
