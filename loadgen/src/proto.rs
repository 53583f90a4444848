//! The memcached text protocol, client side: writing `get`/`set` requests
//! into a reused buffer and parsing replies in place, without allocating.

/// Appends the decimal form of `n` to `out` (no allocation, no `fmt`).
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends `prefix` followed by the decimal key index.
#[inline]
pub fn push_key(out: &mut Vec<u8>, prefix: &[u8], key: u64) {
    out.extend_from_slice(prefix);
    push_u64(out, key);
}

/// Appends `get <key>\r\n`.
#[inline]
pub fn write_get(out: &mut Vec<u8>, prefix: &[u8], key: u64) {
    out.extend_from_slice(b"get ");
    push_key(out, prefix, key);
    out.extend_from_slice(b"\r\n");
}

/// Appends `set <key> 0 0 <len>\r\n` and leaves room for the value, which the
/// caller appends (followed by `\r\n`, see [`finish_set`]).
#[inline]
pub fn write_set_header(out: &mut Vec<u8>, prefix: &[u8], key: u64, len: usize) {
    out.extend_from_slice(b"set ");
    push_key(out, prefix, key);
    out.extend_from_slice(b" 0 0 ");
    push_u64(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// Terminates a `set` data block.
#[inline]
pub fn finish_set(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Why a reply counts as an error; each is one field of
/// [`crate::report::ErrorCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// `ERROR`: the server did not understand the command.
    Error,
    /// `CLIENT_ERROR ...`.
    ClientError,
    /// `SERVER_ERROR ...`.
    ServerError,
    /// `NOT_STORED`, `EXISTS` or `NOT_FOUND` in reply to a plain `set`.
    NotStored,
}

/// One parsed reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `STORED`.
    Stored,
    /// A get hit: the echoed key and the data block.
    Hit {
        /// Key as echoed by the server.
        key: &'a [u8],
        /// The value bytes.
        data: &'a [u8],
    },
    /// A get miss (`END` alone).
    Miss,
    /// An error line that keeps the stream in sync.
    Failed(ReplyError),
}

/// What a parse attempt produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete reply of this many bytes.
    Done(Reply<'a>, usize),
    /// More bytes are needed.
    Incomplete,
    /// The bytes are not a valid reply to this request: the stream is out of
    /// sync and the connection must be dropped.
    Mismatch,
}

/// The request kind a reply answers, which decides what is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `get`.
    Get,
    /// `set`.
    Set,
}

#[inline]
fn line(buf: &[u8]) -> Option<usize> {
    // Index just past "\r\n"; replies are short so a scan is cheap.
    let nl = buf.iter().position(|&b| b == b'\n')?;
    Some(nl + 1)
}

fn error_line(l: &[u8]) -> Option<ReplyError> {
    if l == b"ERROR" || l.starts_with(b"ERROR ") {
        Some(ReplyError::Error)
    } else if l.starts_with(b"CLIENT_ERROR") {
        Some(ReplyError::ClientError)
    } else if l.starts_with(b"SERVER_ERROR") {
        Some(ReplyError::ServerError)
    } else {
        None
    }
}

fn parse_dec(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 12 {
        return None;
    }
    let mut n = 0usize;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as usize;
    }
    Some(n)
}

/// Parses the reply to a request of `kind` at the start of `buf`.
pub fn parse_reply(buf: &[u8], kind: Kind) -> Parsed<'_> {
    let Some(end) = line(buf) else {
        return if buf.len() > 4096 {
            Parsed::Mismatch
        } else {
            Parsed::Incomplete
        };
    };
    if end < 2 || buf[end - 2] != b'\r' {
        return Parsed::Mismatch;
    }
    let l = &buf[..end - 2];
    if let Some(e) = error_line(l) {
        return Parsed::Done(Reply::Failed(e), end);
    }
    match kind {
        Kind::Set => match l {
            b"STORED" => Parsed::Done(Reply::Stored, end),
            b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" => {
                Parsed::Done(Reply::Failed(ReplyError::NotStored), end)
            }
            _ => Parsed::Mismatch,
        },
        Kind::Get => {
            if l == b"END" {
                return Parsed::Done(Reply::Miss, end);
            }
            let Some(rest) = l.strip_prefix(b"VALUE ") else {
                return Parsed::Mismatch;
            };
            // VALUE <key> <flags> <bytes> [<cas>]
            let mut it = rest.split(|&b| b == b' ');
            let (Some(key), Some(_flags), Some(len)) = (it.next(), it.next(), it.next()) else {
                return Parsed::Mismatch;
            };
            let Some(len) = parse_dec(len) else {
                return Parsed::Mismatch;
            };
            let data_start = end;
            let data_end = data_start + len;
            let total = data_end + 2 + 5; // "\r\n" + "END\r\n"
            if buf.len() < total {
                return Parsed::Incomplete;
            }
            if &buf[data_end..total] != b"\r\nEND\r\n" {
                // Multi-value replies are not expected: we send single gets.
                return Parsed::Mismatch;
            }
            Parsed::Done(
                Reply::Hit {
                    key,
                    data: &buf[data_start..data_end],
                },
                total,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_requests() {
        let mut b = Vec::new();
        write_get(&mut b, b"k:", 0);
        write_set_header(&mut b, b"k:", 18_446_744_073_709_551_615, 3);
        b.extend_from_slice(b"abc");
        finish_set(&mut b);
        assert_eq!(
            b,
            b"get k:0\r\nset k:18446744073709551615 0 0 3\r\nabc\r\n".to_vec()
        );
    }

    #[test]
    fn parses_replies() {
        assert_eq!(
            parse_reply(b"STORED\r\nEND", Kind::Set),
            Parsed::Done(Reply::Stored, 8)
        );
        assert_eq!(
            parse_reply(b"END\r\n", Kind::Get),
            Parsed::Done(Reply::Miss, 5)
        );
        let hit = b"VALUE k:1 0 3\r\nabc\r\nEND\r\nxx";
        assert_eq!(
            parse_reply(hit, Kind::Get),
            Parsed::Done(
                Reply::Hit {
                    key: b"k:1",
                    data: b"abc"
                },
                25
            )
        );
        for cut in 0..25 {
            assert_eq!(parse_reply(&hit[..cut], Kind::Get), Parsed::Incomplete);
        }
        assert_eq!(
            parse_reply(b"SERVER_ERROR out of memory\r\n", Kind::Set),
            Parsed::Done(Reply::Failed(ReplyError::ServerError), 28)
        );
        assert_eq!(
            parse_reply(b"ERROR\r\n", Kind::Get),
            Parsed::Done(Reply::Failed(ReplyError::Error), 7)
        );
        assert_eq!(parse_reply(b"STORED\r\n", Kind::Get), Parsed::Mismatch);
        assert_eq!(parse_reply(b"END\r\n", Kind::Set), Parsed::Mismatch);
        assert_eq!(
            parse_reply(b"VALUE k 0 3\r\nabcd\r\nEND\r\n", Kind::Get),
            Parsed::Mismatch
        );
    }
}
