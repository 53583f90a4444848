//! The binary protocol parser, fed as a connection feeds it.
//!
//! [`check`] runs an input through a model of the connection's read loop
//! (`protocol::binary::parse`, skipping what a request says to swallow,
//! closing on a bad magic byte, `quit` or a malformed packet) and checks
//! after every step:
//!
//! - progress and framing: a request consumes its header and at most the
//!   buffer; what it consumes and what it swallows add up to exactly the
//!   packet its header announced, and it swallows only bytes not yet read;
//! - keys and values: a key is 1 to 250 bytes, the length the header gave,
//!   at its place after the extras; a value is the rest of the body, no
//!   larger than [`MAX_VALUE`]; extras decode to the request's fields;
//! - bounded memory: an incomplete request is a header, or a packet whose
//!   needed part (never a refused value) is still arriving.
//!
//! And whatever the read schedule ([`super::split`]), the same requests.

use super::split;
use corecache::protocol::KEY_MAX_LEN;
use corecache::protocol::binary::{
    BinaryError, HEADER_LEN, Opcode, Parsed, REQUEST_MAGIC, Request, parse,
};

/// The largest value the fuzzed parser accepts: small, so both a value
/// still arriving and a value refused as too large are common.
pub const MAX_VALUE: usize = 1024;

/// Checks `input` under every read schedule; see the module doc.
pub fn check(input: &[u8]) {
    split::check_agreement(input, feed, |a, b| a == b);
}

/// What a connection made of its input: each request (header and
/// request, as `Debug` text) or why it closed.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Request(String),
    Closed(&'static str),
}

fn feed(input: &[u8], schedule: &[usize]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut buf = Vec::new();
    let mut swallow = 0usize;
    let mut at = 0;
    'reads: for &read in schedule {
        if at >= input.len() {
            break;
        }
        let end = (at + read).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        loop {
            let here = swallow.min(buf.len());
            buf.drain(..here);
            swallow -= here;
            if swallow > 0 {
                continue 'reads;
            }
            let parsed = match parse(&buf, MAX_VALUE) {
                Ok(parsed) => parsed,
                Err(BinaryError::Incomplete) => {
                    check_incomplete(&buf);
                    continue 'reads;
                }
                Err(BinaryError::BadMagic) => {
                    assert_ne!(buf.first(), Some(&REQUEST_MAGIC));
                    events.push(Event::Closed("bad magic"));
                    break 'reads;
                }
            };
            check_parsed(&buf, &parsed);
            events.push(Event::Request(format!(
                "{:?} {:?}",
                parsed.header, parsed.request
            )));
            let close = match parsed.request {
                Request::Quit => Some("quit"),
                Request::Refused { close: true, .. } => Some("malformed"),
                _ => None,
            };
            if let Some(why) = close {
                events.push(Event::Closed(why));
                break 'reads;
            }
            swallow = parsed.swallow;
            buf.drain(..parsed.consumed);
        }
    }
    events
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// The parser waits for more: a header, or the part of a packet it needs,
/// which is never more than extras, a key and a value it accepts.
fn check_incomplete(buf: &[u8]) {
    if buf.len() < HEADER_LEN {
        return;
    }
    let body_len = be32(&buf[8..12]) as usize;
    assert!(
        buf.len() < HEADER_LEN + body_len,
        "incomplete with the whole packet here"
    );
    assert!(
        buf.len() < HEADER_LEN + 8 + KEY_MAX_LEN + MAX_VALUE,
        "holding {} bytes of one packet",
        buf.len()
    );
}

fn check_parsed(buf: &[u8], parsed: &Parsed<'_>) {
    let Parsed {
        header,
        request,
        consumed,
        swallow,
    } = *parsed;
    assert_eq!(buf[0], REQUEST_MAGIC);
    let key_len = be16(&buf[2..4]);
    let extras_len = usize::from(buf[4]);
    let body_len = be32(&buf[8..12]) as usize;
    assert_eq!(header.opcode, buf[1]);
    assert_eq!(header.opaque, be32(&buf[12..16]));
    assert_eq!(header.cas, be64(&buf[16..24]));
    assert!(
        (HEADER_LEN..=buf.len()).contains(&consumed),
        "consumed {consumed} of {}",
        buf.len()
    );
    assert_eq!(
        consumed + swallow,
        HEADER_LEN + body_len,
        "a packet is consumed or swallowed whole: {request:?}"
    );
    assert!(
        swallow == 0 || consumed == buf.len(),
        "swallows what is here"
    );
    let extras = &buf[HEADER_LEN..consumed.min(HEADER_LEN + extras_len)];
    let key_at = buf.as_ptr().wrapping_add(HEADER_LEN + extras_len);
    let key_ok = |key: &[u8]| {
        assert!(
            (1..=KEY_MAX_LEN).contains(&key.len()),
            "key of {} bytes",
            key.len()
        );
        assert_eq!(key.len(), key_len, "key length");
        assert_eq!(key.as_ptr(), key_at, "key misplaced");
    };
    let value_len = body_len.checked_sub(key_len + extras_len);
    let opcode = header.command();
    match request {
        Request::Get { key, touch } => {
            key_ok(key);
            let touching = matches!(
                opcode,
                Some(Opcode::Touch | Opcode::Gat | Opcode::GatQ | Opcode::GatK | Opcode::GatKQ)
            );
            assert_eq!(touch.is_some(), touching);
            if let Some(exptime) = touch {
                assert_eq!((extras_len, exptime), (4, be32(extras)));
            }
        }
        Request::Store {
            key,
            flags,
            exptime,
            value,
            ..
        } => {
            key_ok(key);
            assert_eq!(Some(value.len()), value_len, "value length");
            assert!(
                value.len() <= MAX_VALUE,
                "a value of {} accepted",
                value.len()
            );
            assert_eq!(value.as_ptr(), key_at.wrapping_add(key_len));
            let (f, e) = match extras_len {
                8 => (be32(&extras[..4]), be32(&extras[4..])),
                _ => (0, 0),
            };
            assert_eq!((flags, exptime), (f, e));
        }
        Request::TooLarge { key, .. } => {
            key_ok(key);
            assert!(value_len.is_some_and(|len| len > MAX_VALUE));
        }
        Request::Delete { key } => key_ok(key),
        Request::Arith {
            key,
            delta,
            initial,
            exptime,
            ..
        } => {
            key_ok(key);
            assert_eq!(extras_len, 20);
            let fields = (be64(extras), be64(&extras[8..]), be32(&extras[16..]));
            assert_eq!((delta, initial, exptime), fields);
        }
        Request::Stat { group } => {
            assert!(group.len() == key_len && key_len <= KEY_MAX_LEN);
            assert_eq!(group.as_ptr(), key_at, "stat group misplaced");
        }
        Request::Flush { delay } => {
            let expected = if extras_len == 4 { be32(extras) } else { 0 };
            assert_eq!(delay, expected);
        }
        Request::Noop | Request::Version | Request::Quit => assert_eq!(body_len, 0),
        Request::Refused { .. } => {}
    }
}
