//! Encoding replies: every reply is appended to a caller's reusable buffer.

/// An error reply, in memcached's three kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReply {
    /// `ERROR`: an unknown command or a form no command has.
    Error,
    /// `CLIENT_ERROR <reason>`: the request is malformed.
    Client(&'static str),
    /// `SERVER_ERROR <reason>`: the request was fine but could not be done.
    Server(&'static str),
}

impl ErrorReply {
    /// Appends the reply line to `out`.
    pub fn write(self, out: &mut Vec<u8>) {
        match self {
            ErrorReply::Error => out.extend_from_slice(b"ERROR\r\n"),
            ErrorReply::Client(why) => Reply::line(out, &[b"CLIENT_ERROR ", why.as_bytes()]),
            ErrorReply::Server(why) => Reply::line(out, &[b"SERVER_ERROR ", why.as_bytes()]),
        }
    }
}

/// The fixed replies and the writers for the ones that carry values.
pub struct Reply;

impl Reply {
    /// `STORED`
    pub const STORED: &'static [u8] = b"STORED\r\n";
    /// `NOT_STORED`
    pub const NOT_STORED: &'static [u8] = b"NOT_STORED\r\n";
    /// `EXISTS`
    pub const EXISTS: &'static [u8] = b"EXISTS\r\n";
    /// `NOT_FOUND`
    pub const NOT_FOUND: &'static [u8] = b"NOT_FOUND\r\n";
    /// `DELETED`
    pub const DELETED: &'static [u8] = b"DELETED\r\n";
    /// `TOUCHED`
    pub const TOUCHED: &'static [u8] = b"TOUCHED\r\n";
    /// `END`, closing a get or a stats listing.
    pub const END: &'static [u8] = b"END\r\n";
    /// `OK`
    pub const OK: &'static [u8] = b"OK\r\n";

    /// Appends the parts and a `\r\n`.
    pub fn line(out: &mut Vec<u8>, parts: &[&[u8]]) {
        for part in parts {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Appends one `VALUE <key> <flags> <bytes> [<cas>]` block with its data.
    pub fn value(out: &mut Vec<u8>, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
        let mut numbers = itoa::Buffer::new();
        out.reserve(key.len() + data.len() + 48);
        out.extend_from_slice(b"VALUE ");
        out.extend_from_slice(key);
        out.push(b' ');
        out.extend_from_slice(numbers.format(flags).as_bytes());
        out.push(b' ');
        out.extend_from_slice(numbers.format(data.len()).as_bytes());
        if let Some(cas) = cas {
            out.push(b' ');
            out.extend_from_slice(numbers.format(cas).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }

    /// Appends a number on its own line (the reply to `incr`/`decr`).
    pub fn number(out: &mut Vec<u8>, value: u64) {
        Reply::line(out, &[itoa::Buffer::new().format(value).as_bytes()]);
    }

    /// Appends one `STAT <name> <value>` line.
    pub fn stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "STAT {name} {value}\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_block() {
        let mut out = Vec::new();
        Reply::value(&mut out, b"k", 7, b"data", None);
        Reply::value(&mut out, b"k", 0, b"", Some(99));
        assert_eq!(out, b"VALUE k 7 4\r\ndata\r\nVALUE k 0 0 99\r\n\r\n");
    }

    #[test]
    fn errors() {
        let mut out = Vec::new();
        ErrorReply::Error.write(&mut out);
        ErrorReply::Client("bad data chunk").write(&mut out);
        ErrorReply::Server("out of memory").write(&mut out);
        assert_eq!(
            out,
            b"ERROR\r\nCLIENT_ERROR bad data chunk\r\nSERVER_ERROR out of memory\r\n"
        );
    }
}
