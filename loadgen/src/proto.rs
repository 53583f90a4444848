//! The memcached text protocol, client side: writing `get`, `set`,
//! `delete`, `append` and `incr` requests into a reused buffer and parsing
//! replies in place, without allocating.

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
    write_storage_header(out, b"set ", prefix, key, len);
}

/// Appends `append <key> 0 0 <len>\r\n`; the caller appends the data and
/// [`finish_set`].
#[inline]
pub fn write_append_header(out: &mut Vec<u8>, prefix: &[u8], key: u64, len: usize) {
    write_storage_header(out, b"append ", prefix, key, len);
}

#[inline]
fn write_storage_header(out: &mut Vec<u8>, cmd: &[u8], prefix: &[u8], key: u64, len: usize) {
    out.extend_from_slice(cmd);
    push_key(out, prefix, key);
    out.extend_from_slice(b" 0 0 ");
    push_u64(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole `set <key> 0 0 <digits>\r\n<n>\r\n`: a counter `incr`
/// can work on.
#[inline]
pub fn write_set_number(out: &mut Vec<u8>, prefix: &[u8], key: u64, n: u64) {
    let digits = n.checked_ilog10().unwrap_or(0) as usize + 1;
    write_set_header(out, prefix, key, digits);
    push_u64(out, n);
    finish_set(out);
}

/// Appends `delete <key>\r\n`.
#[inline]
pub fn write_delete(out: &mut Vec<u8>, prefix: &[u8], key: u64) {
    out.extend_from_slice(b"delete ");
    push_key(out, prefix, key);
    out.extend_from_slice(b"\r\n");
}

/// Appends `incr <key> <delta>\r\n`.
#[inline]
pub fn write_incr(out: &mut Vec<u8>, prefix: &[u8], key: u64, delta: u64) {
    out.extend_from_slice(b"incr ");
    push_key(out, prefix, key);
    out.push(b' ');
    push_u64(out, delta);
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

/// The largest reply line [`parse_reply`] waits for before it calls the
/// stream out of sync.
const MAX_LINE: usize = 4096;

/// One parsed reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `STORED` (to a `set` or an `append`).
    Stored,
    /// `DELETED`.
    Deleted,
    /// The key was not there: `NOT_FOUND` to a `delete` or an `incr`,
    /// `NOT_STORED` to an `append`. An outcome, not an error.
    Missing,
    /// The value after an `incr`.
    Number(u64),
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
    /// `delete`.
    Delete,
    /// `append`.
    Append,
    /// `incr`.
    Incr,
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

/// Parses a decimal `u64` (no sign, no spaces, no overflow).
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        if c.is_ascii_digit() {
            n.checked_mul(10)?.checked_add((c - b'0') as u64)
        } else {
            None
        }
    })
}

/// Parses the reply to a request of `kind` at the start of `buf`.
pub fn parse_reply(buf: &[u8], kind: Kind) -> Parsed<'_> {
    let Some(end) = line(buf) else {
        return if buf.len() > MAX_LINE {
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
        Kind::Delete => match l {
            b"DELETED" => Parsed::Done(Reply::Deleted, end),
            b"NOT_FOUND" => Parsed::Done(Reply::Missing, end),
            _ => Parsed::Mismatch,
        },
        Kind::Append => match l {
            b"STORED" => Parsed::Done(Reply::Stored, end),
            b"NOT_STORED" => Parsed::Done(Reply::Missing, end),
            _ => Parsed::Mismatch,
        },
        Kind::Incr => match l {
            b"NOT_FOUND" => Parsed::Done(Reply::Missing, end),
            _ => match parse_u64(l) {
                Some(n) => Parsed::Done(Reply::Number(n), end),
                None => Parsed::Mismatch,
            },
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
                    None if buf.len() - pos > MAX_LINE => return Parsed::Mismatch,
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
        b.clear();
        write_delete(&mut b, b"k:", 5);
        write_incr(&mut b, b"k:", 6, 17);
        write_append_header(&mut b, b"k:", 7, 2);
        b.extend_from_slice(b"xy");
        finish_set(&mut b);
        for n in [0, 9, 10, u64::MAX] {
            write_set_number(&mut b, b"n", 1, n);
        }
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "delete k:5\r\nincr k:6 17\r\nappend k:7 0 0 2\r\nxy\r\n\
             set n1 0 0 1\r\n0\r\nset n1 0 0 1\r\n9\r\nset n1 0 0 2\r\n10\r\n\
             set n1 0 0 20\r\n18446744073709551615\r\n"
        );
    }

    #[test]
    fn parses_replies_to_mixed_operations() {
        let done = |buf: &'static [u8], kind| match parse_reply(buf, kind) {
            Parsed::Done(r, n) if n == buf.len() => Some(r),
            Parsed::Done(..) => panic!("{buf:?}: length"),
            _ => None,
        };
        assert_eq!(done(b"DELETED\r\n", Kind::Delete), Some(Reply::Deleted));
        assert_eq!(done(b"NOT_FOUND\r\n", Kind::Delete), Some(Reply::Missing));
        assert_eq!(done(b"STORED\r\n", Kind::Append), Some(Reply::Stored));
        assert_eq!(done(b"NOT_STORED\r\n", Kind::Append), Some(Reply::Missing));
        assert_eq!(done(b"NOT_FOUND\r\n", Kind::Incr), Some(Reply::Missing));
        assert_eq!(done(b"0\r\n", Kind::Incr), Some(Reply::Number(0)));
        assert_eq!(
            done(b"18446744073709551615\r\n", Kind::Incr),
            Some(Reply::Number(u64::MAX))
        );
        assert_eq!(
            done(
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                Kind::Incr
            ),
            Some(Reply::Failed(ReplyError::ClientError))
        );
        // A reply meant for another kind of request is out of sync.
        assert_eq!(done(b"STORED\r\n", Kind::Delete), None);
        assert_eq!(done(b"DELETED\r\n", Kind::Append), None);
        assert_eq!(done(b"STORED\r\n", Kind::Incr), None);
        assert_eq!(done(b"18446744073709551616\r\n", Kind::Incr), None);
        assert_eq!(done(b"END\r\n", Kind::Incr), None);
        assert_eq!(parse_reply(b"DELET", Kind::Delete), Parsed::Incomplete);
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
