//! One key rule for every protocol, over real TCP in both runtimes: a key
//! stored by classic, meta or binary commands is read and deleted by the
//! others, and no reply line is ever broken by a key. Replies were checked
//! against memcached 1.6.18 side by side; where they differ, docs/meta.md
//! ("Keys") says how and why.

mod common;

use base64::Engine as _;

fn b64(key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A binary request packet.
fn packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = (extras.len() + key.len() + value.len()) as u32;
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0; 3]);
    p.extend_from_slice(&body.to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    [p, extras.to_vec(), key.to_vec(), value.to_vec()].concat()
}

/// Stores `key` through the binary protocol and reads `GETK` back: the
/// status and the key echoed.
fn binary_set_and_get(server: &common::TestServer, key: &[u8], value: &[u8]) -> (u16, Vec<u8>) {
    let mut c = server.connect();
    c.send(&packet(0x01, &[0; 8], key, value));
    let stored = c.read_exact(24);
    assert_eq!(&stored[6..8], &[0, 0], "set {key:?}");
    read_getk(&mut c, key)
}

fn read_getk(c: &mut common::Raw, key: &[u8]) -> (u16, Vec<u8>) {
    c.send(&packet(0x0c, &[], key, &[]));
    let header = c.read_exact(24);
    let body = u32::from_be_bytes(header[8..12].try_into().unwrap()) as usize;
    let key_len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let body = c.read_exact(body);
    let extras = header[4] as usize;
    let status = u16::from_be_bytes([header[6], header[7]]);
    (status, body[extras..extras + key_len].to_vec())
}

both_runtimes! {
    // Any byte but a space, CR or LF, in classic and meta commands alike
    // (memcached 1.6.18 answers the same).
    fn control_bytes_in_keys_work_in_classic_and_meta_commands(server) {
        let mut c = server.connect();
        c.expect("set a\x01b 0 0 1\r\nx\r\n", "STORED\r\n");
        c.expect("mg a\x01b v k\r\n", "VA 1 ka\x01b\r\nx\r\n");
        c.expect("ms t\tb 1\r\ny\r\n", "HD\r\n");
        c.expect("get t\tb\r\n", "VALUE t\tb 0 1\r\ny\r\nEND\r\n");
        c.expect("delete t\tb\r\n", "DELETED\r\n");
        c.expect("md a\x01b\r\n", "HD\r\n");
        c.expect("get a\x01b\r\n", "END\r\n");
        c.send(b"set d\x7f\xff 0 0 1\r\nz\r\nmg d\x7f\xff v k\r\n");
        let expected = b"STORED\r\nVA 1 kd\x7f\xff\r\nz\r\n";
        assert_eq!(c.read_exact(expected.len()), expected);
    }

    // A CR inside a key is refused by classic and meta commands alike
    // (memcached takes it; docs/meta.md says why we do not), the data
    // block swallowed.
    fn a_cr_in_a_key_is_refused_by_every_text_command(server) {
        let mut c = server.connect();
        c.expect(
            "set c\rr 0 0 1\r\nx\r\nms c\rr 1\r\nx\r\nmg c\rr v\r\nget c\rr\r\nmn\r\n",
            "CLIENT_ERROR bad command line format\r\n\
             CLIENT_ERROR bad command line format\r\n\
             CLIENT_ERROR bad command line format\r\n\
             CLIENT_ERROR bad command line format\r\nMN\r\n",
        );
    }

    // A key stored with a base64 key that a text command cannot name is
    // echoed and dumped base64-encoded, never raw (as 1.6.18 does for
    // base64-stored items), and read by the binary protocol as it is.
    fn a_base64_key_with_a_space_cr_and_lf(server) {
        let key = b"a b\r\nc";
        let encoded = b64(key);
        let mut c = server.connect();
        c.expect(&format!("ms {encoded} 1 b E5\r\nx\r\n"), "HD\r\n");
        c.expect(&format!("mg {encoded} b k v\r\n"), &format!("VA 1 k{encoded} b\r\nx\r\n"));
        // 40-byte header, 6-byte key, 1-byte value; memcached says
        // cls=1 size=66 for its own item layout.
        c.expect(
            &format!("me {encoded} b\r\n"),
            &format!("ME {encoded} exp=-1 la=0 cas=5 fetch=yes cls=1 size=47\r\n"),
        );
        let mut binary = server.connect();
        assert_eq!(read_getk(&mut binary, key), (0, key.to_vec()));
        c.expect(&format!("md {encoded} b k\r\n"), &format!("HD k{encoded} b\r\n"));
        assert_eq!(read_getk(&mut binary, key).0, 1);
    }

    // A binary-protocol key with a space, CR and LF: read and deleted by
    // meta commands with `b`; its echo and dump are encoded (memcached
    // 1.6.18 prints it raw, breaking the reply line).
    fn a_binary_protocol_key_is_read_and_deleted_by_meta_commands(server) {
        let key = b"q r\r\nz";
        let encoded = b64(key);
        assert_eq!(binary_set_and_get(&server, key, b"v"), (0, key.to_vec()));
        let mut c = server.connect();
        c.expect(&format!("mg {encoded} b k v\r\n"), &format!("VA 1 k{encoded} b\r\nv\r\n"));
        let cas = {
            c.send(format!("mg {encoded} b c\r\n").as_bytes());
            let line = String::from_utf8(c.read_until(b"\r\n")).unwrap();
            line.trim_end().strip_prefix("HD c").unwrap().to_string()
        };
        c.expect(
            &format!("me {encoded} b\r\n"),
            &format!("ME {encoded} exp=-1 la=0 cas={cas} fetch=yes cls=1 size=47\r\n"),
        );
        c.expect(&format!("md {encoded} b\r\n"), "HD\r\n");
        c.expect(&format!("mg {encoded} b v\r\n"), "EN\r\n");
        // A binary key a text command can name is an ordinary key.
        assert_eq!(binary_set_and_get(&server, b"plain", b"w"), (0, b"plain".to_vec()));
        c.expect("get plain\r\n", "VALUE plain 0 1\r\nw\r\nEND\r\n");
        c.expect("mg plain k v\r\n", "VA 1 kplain\r\nw\r\n");
        c.expect("delete plain\r\n", "DELETED\r\n");
        // And a classic key is a binary one.
        c.expect("set classic 0 0 1\r\nx\r\n", "STORED\r\n");
        let mut binary = server.connect();
        assert_eq!(read_getk(&mut binary, b"classic"), (0, b"classic".to_vec()));
    }
}
