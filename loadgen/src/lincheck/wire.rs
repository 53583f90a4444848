//! The text protocol for the checks: requests for the model's calls, and
//! replies parsed into the model's [`Ret`].
//!
//! Values on the wire: a blob set (or add, or cas) stores its uid in
//! lower-case hex; an append adds `.` and its uid in hex; so a blob reads
//! back as `base.uid.uid...`. A counter holds a decimal number (memcached
//! may pad a counter with spaces after an `incr`; they are ignored).

use super::model::{Call, Data, Ret, Seen, digest};

/// Appends the request for `call` on `key`.
pub fn write_request(out: &mut Vec<u8>, key: &[u8], call: Call) {
    let cmd: &[u8] = match call {
        Call::Get => b"get ",
        Call::Gets => b"gets ",
        Call::Set(_) => b"set ",
        Call::Add(_) => b"add ",
        Call::Cas(..) => b"cas ",
        Call::Append(_) => b"append ",
        Call::Incr(_) => b"incr ",
        Call::Delete => b"delete ",
    };
    out.extend_from_slice(cmd);
    out.extend_from_slice(key);
    let data = match call {
        Call::Get | Call::Gets | Call::Delete => None,
        Call::Incr(delta) => {
            out.push(b' ');
            crate::proto::push_u64(out, delta);
            None
        }
        Call::Set(d) | Call::Add(d) | Call::Cas(d, _) => Some(data_text(d)),
        Call::Append(uid) => Some(format!(".{uid:x}")),
    };
    if let Some(data) = data {
        out.extend_from_slice(b" 0 0 ");
        crate::proto::push_u64(out, data.len() as u64);
        if let Call::Cas(_, token) = call {
            out.push(b' ');
            crate::proto::push_u64(out, token);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn data_text(d: Data) -> String {
    match d {
        Data::Blob(uid) => format!("{uid:x}"),
        Data::Num(n) => n.to_string(),
    }
}

/// How a read value is to be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Blob tokens.
    Blob,
    /// A decimal counter.
    Counter,
}

/// What parsing one reply produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A reply of this many bytes.
    Done(Ret, usize),
    /// An error line (`ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`) of
    /// this many bytes.
    Failed(String, usize),
    /// More bytes are needed.
    Incomplete,
    /// Not a reply to this request: the stream is out of step.
    Mismatch(String),
}

fn line(buf: &[u8]) -> Option<&[u8]> {
    let nl = buf.windows(2).position(|w| w == b"\r\n")?;
    Some(&buf[..nl])
}

/// Parses the reply to `call` on `key` at the start of `buf`.
pub fn parse_reply(buf: &[u8], key: &[u8], call: Call, shape: Shape) -> Parsed {
    let Some(l) = line(buf) else {
        return if buf.len() > 4096 {
            Parsed::Mismatch("a reply line longer than 4 KiB".into())
        } else {
            Parsed::Incomplete
        };
    };
    let len = l.len() + 2;
    if l == b"ERROR" || l.starts_with(b"CLIENT_ERROR") || l.starts_with(b"SERVER_ERROR") {
        return Parsed::Failed(String::from_utf8_lossy(l).into_owned(), len);
    }
    let ret = match (call, l) {
        (Call::Get | Call::Gets, b"END") => Ret::Miss,
        (Call::Get | Call::Gets, _) => return parse_value(buf, l, key, call, shape),
        (Call::Set(_) | Call::Add(_) | Call::Cas(..) | Call::Append(_), b"STORED") => Ret::Stored,
        (Call::Add(_) | Call::Append(_), b"NOT_STORED") => Ret::NotStored,
        (Call::Cas(..), b"EXISTS") => Ret::Exists,
        (Call::Cas(..) | Call::Incr(_) | Call::Delete, b"NOT_FOUND") => Ret::NotFound,
        (Call::Delete, b"DELETED") => Ret::Deleted,
        (Call::Incr(_), digits) => match crate::proto::parse_u64(digits) {
            Some(n) => Ret::Number(n),
            None => return mismatch(call, l),
        },
        _ => return mismatch(call, l),
    };
    Parsed::Done(ret, len)
}

fn mismatch(call: Call, l: &[u8]) -> Parsed {
    Parsed::Mismatch(format!(
        "{:?} in reply to {}",
        String::from_utf8_lossy(&l[..l.len().min(80)]),
        call.name()
    ))
}

/// `VALUE <key> <flags> <bytes> [<cas>]`, the data, then `END`.
fn parse_value(buf: &[u8], header: &[u8], key: &[u8], call: Call, shape: Shape) -> Parsed {
    let mut words = header.split(|&b| b == b' ');
    let (Some(b"VALUE"), Some(k), Some(_flags), Some(bytes)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return mismatch(call, header);
    };
    let cas = words.next().map(crate::proto::parse_u64);
    let bad_cas = match (call, cas) {
        (Call::Gets, Some(Some(_))) | (Call::Get, None) => false,
        // memcached sends no unique to a plain get.
        _ => true,
    };
    let Some(bytes) = crate::proto::parse_u64(bytes).map(|b| b as usize) else {
        return mismatch(call, header);
    };
    if k != key || bad_cas || words.next().is_some() {
        return mismatch(call, header);
    }
    let data_start = header.len() + 2;
    let end = data_start + bytes + 2 + 5;
    if buf.len() < end {
        return if bytes > 1 << 20 {
            Parsed::Mismatch("a value over 1 MiB".into())
        } else {
            Parsed::Incomplete
        };
    }
    if &buf[data_start + bytes..end] != b"\r\nEND\r\n" {
        return mismatch(call, &buf[data_start + bytes..end]);
    }
    let data = &buf[data_start..data_start + bytes];
    let seen = match shape {
        Shape::Blob => parse_blob(data),
        Shape::Counter => crate::verify::parse_counter(data).map_or(Seen::Garbled, Seen::Num),
    };
    Parsed::Done(Ret::Hit(seen, cas.flatten()), end)
}

/// Decodes `base.uid.uid...` (hex); [`Seen::Garbled`] if it is not that.
pub fn parse_blob(data: &[u8]) -> Seen {
    let mut d = 0;
    let mut base = None;
    let mut appends = 0u32;
    for token in data.split(|&b| b == b'.') {
        let uid = match std::str::from_utf8(token)
            .ok()
            .filter(|t| !t.is_empty() && t.len() <= 16)
            .and_then(|t| u64::from_str_radix(t, 16).ok())
        {
            Some(uid) => uid,
            None => return Seen::Garbled,
        };
        d = digest(d, uid);
        if base.is_none() {
            base = Some(uid);
        } else {
            appends += 1;
        }
    }
    match base {
        Some(base) => Seen::Blob {
            base,
            appends,
            digest: d,
        },
        None => Seen::Garbled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let mut out = Vec::new();
        for call in [
            Call::Get,
            Call::Gets,
            Call::Set(Data::Blob(0xab)),
            Call::Add(Data::Num(42)),
            Call::Cas(Data::Blob(1), 99),
            Call::Append(0x10),
            Call::Incr(3),
            Call::Delete,
        ] {
            write_request(&mut out, b"k", call);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "get k\r\ngets k\r\nset k 0 0 2\r\nab\r\nadd k 0 0 2\r\n42\r\n\
             cas k 0 0 1 99\r\n1\r\nappend k 0 0 3\r\n.10\r\nincr k 3\r\ndelete k\r\n"
        );
    }

    #[test]
    fn replies() {
        let p = |buf: &[u8], call, shape| parse_reply(buf, b"k", call, shape);
        let blob = Shape::Blob;
        assert_eq!(p(b"END\r\n", Call::Get, blob), Parsed::Done(Ret::Miss, 5));
        let v = b"VALUE k 0 5 77\r\nab.10\r\nEND\r\n";
        let seen = parse_blob(b"ab.10");
        assert_eq!(
            seen,
            Seen::Blob {
                base: 0xab,
                appends: 1,
                digest: digest(digest(0, 0xab), 0x10)
            }
        );
        assert_eq!(
            p(v, Call::Gets, blob),
            Parsed::Done(Ret::Hit(seen, Some(77)), v.len())
        );
        for cut in 0..v.len() {
            assert_eq!(p(&v[..cut], Call::Gets, blob), Parsed::Incomplete, "{cut}");
        }
        // A unique where none belongs, another key, or junk after.
        assert!(matches!(p(v, Call::Get, blob), Parsed::Mismatch(_)));
        assert!(matches!(
            parse_reply(v, b"j", Call::Gets, blob),
            Parsed::Mismatch(_)
        ));
        assert!(matches!(
            p(b"VALUE k 0 2\r\n12\r\nEND\r\n", Call::Gets, blob),
            Parsed::Mismatch(_)
        ));
        assert_eq!(
            p(b"VALUE k 0 4\r\n12  \r\nEND\r\n", Call::Get, Shape::Counter),
            Parsed::Done(Ret::Hit(Seen::Num(12), None), 24)
        );
        assert_eq!(
            p(b"VALUE k 0 2\r\nzz\r\nEND\r\n", Call::Get, blob),
            Parsed::Done(Ret::Hit(Seen::Garbled, None), 22)
        );
        let cas = Call::Cas(Data::Num(1), 2);
        assert_eq!(p(b"EXISTS\r\n", cas, blob), Parsed::Done(Ret::Exists, 8));
        assert_eq!(
            p(b"NOT_FOUND\r\n", cas, blob),
            Parsed::Done(Ret::NotFound, 11)
        );
        assert!(matches!(
            p(b"NOT_STORED\r\n", cas, blob),
            Parsed::Mismatch(_)
        ));
        assert_eq!(
            p(b"18\r\n", Call::Incr(1), blob),
            Parsed::Done(Ret::Number(18), 4)
        );
        assert!(matches!(
            p(b"DELETED\r\n", Call::Incr(1), blob),
            Parsed::Mismatch(_)
        ));
        assert_eq!(
            p(b"SERVER_ERROR out of memory\r\n", Call::Delete, blob),
            Parsed::Failed("SERVER_ERROR out of memory".into(), 28)
        );
        assert_eq!(parse_blob(b""), Seen::Garbled);
        assert_eq!(parse_blob(b"a..b"), Seen::Garbled);
    }
}
