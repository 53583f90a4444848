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
    write_multiget(out, prefix, &[key]);
}

/// Appends `get <key1> <key2> ...\r\n`.
#[inline]
pub fn write_multiget(out: &mut Vec<u8>, prefix: &[u8], keys: &[u64]) {
    out.extend_from_slice(b"get");
    for &k in keys {
        out.push(b' ');
        push_key(out, prefix, k);
    }
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
    /// The reply to a (multi-)get: zero or more `VALUE` blocks, already
    /// validated, before `END`. Iterate them with [`values`]; empty means
    /// every key missed.
    Values(&'a [u8]),
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
            // VALUE blocks until END.
            let mut pos = 0;
            let mut line_end = end;
            loop {
                let l = &buf[pos..line_end - 2];
                if l == b"END" {
                    return Parsed::Done(Reply::Values(&buf[..pos]), line_end);
                }
                let Some((_, len)) = value_header(l) else {
                    return Parsed::Mismatch;
                };
                let data_end = line_end + len;
                if buf.len() < data_end + 2 {
                    return Parsed::Incomplete;
                }
                if &buf[data_end..data_end + 2] != b"\r\n" {
                    return Parsed::Mismatch;
                }
                pos = data_end + 2;
                match line(&buf[pos..]) {
                    None if buf.len() - pos > 4096 => return Parsed::Mismatch,
                    None => return Parsed::Incomplete,
                    Some(n) if n < 2 || buf[pos + n - 2] != b'\r' => return Parsed::Mismatch,
                    Some(n) => line_end = pos + n,
                }
            }
        }
    }
}

/// Splits `VALUE <key> <flags> <bytes> [<cas>]` into key and length.
fn value_header(l: &[u8]) -> Option<(&[u8], usize)> {
    let rest = l.strip_prefix(b"VALUE ")?;
    let mut it = rest.split(|&b| b == b' ');
    let (key, _flags, len) = (it.next()?, it.next()?, it.next()?);
    Some((key, parse_dec(len)?))
}

/// Iterates the `(key, data)` blocks of a [`Reply::Values`] body.
pub fn values(mut body: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let end = line(body)?;
        let (key, len) = value_header(&body[..end - 2])?;
        let data = &body[end..end + len];
        body = &body[end + len + 2..];
        Some((key, data))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_requests() {
        let mut b = Vec::new();
        write_get(&mut b, b"k:", 0);
        write_multiget(&mut b, b"k:", &[1, 22]);
        write_set_header(&mut b, b"k:", 18_446_744_073_709_551_615, 3);
        b.extend_from_slice(b"abc");
        finish_set(&mut b);
        assert_eq!(
            b,
            b"get k:0\r\nget k:1 k:22\r\nset k:18446744073709551615 0 0 3\r\nabc\r\n".to_vec()
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
            Parsed::Done(Reply::Values(b""), 5)
        );
        let hit = b"VALUE k:1 0 3\r\nabc\r\nEND\r\nxx";
        let Parsed::Done(Reply::Values(body), 25) = parse_reply(hit, Kind::Get) else {
            panic!("{:?}", parse_reply(hit, Kind::Get));
        };
        assert_eq!(
            values(body).collect::<Vec<_>>(),
            vec![(&b"k:1"[..], &b"abc"[..])]
        );
        for cut in 0..25 {
            assert_eq!(parse_reply(&hit[..cut], Kind::Get), Parsed::Incomplete);
        }
        let multi = b"VALUE a 0 2\r\nxy\r\nVALUE bb 5 0 77\r\n\r\nEND\r\n";
        let Parsed::Done(Reply::Values(body), n) = parse_reply(multi, Kind::Get) else {
            panic!("{:?}", parse_reply(multi, Kind::Get));
        };
        assert_eq!(n, multi.len());
        assert_eq!(
            values(body).collect::<Vec<_>>(),
            vec![(&b"a"[..], &b"xy"[..]), (&b"bb"[..], &b""[..])]
        );
        for cut in 0..multi.len() {
            assert_eq!(
                parse_reply(&multi[..cut], Kind::Get),
                Parsed::Incomplete,
                "{cut}"
            );
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
