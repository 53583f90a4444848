//! The meta protocol (`mg ms md ma me mn`) over real TCP, byte for byte, in
//! both runtimes. Expected replies were checked against memcached 1.6.18
//! except where docs/meta.md says we follow the newer protocol.txt.

mod common;

use base64::Engine as _;
use common::{Raw, key_on_thread};
use std::time::Duration;

fn b64(key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// The CAS token of `key`, read with `mg <key> c`.
fn cas_of(c: &mut Raw, key: &str) -> u64 {
    c.send(format!("mg {key} c\r\n").as_bytes());
    let line = c.read_until(b"\r\n");
    let line = String::from_utf8(line).unwrap();
    line.trim_end()
        .strip_prefix("HD c")
        .unwrap_or_else(|| panic!("no cas in {line:?}"))
        .parse()
        .unwrap()
}

both_runtimes! {
    fn mg_flags_on_a_hit_and_a_miss(server) {
        let mut c = server.connect();
        c.expect("ms k 2 T0 F5 E77\r\nhi\r\n", "HD\r\n");
        // Flags come back in request order; h and l describe the item as
        // it was before this request.
        c.expect(
            "mg k v t c f s k O123 h l\r\n",
            "VA 2 t-1 c77 f5 s2 kk O123 h0 l0\r\nhi\r\n",
        );
        c.expect("mg k v\r\n", "VA 2\r\nhi\r\n");
        c.expect("mg k h l t\r\n", "HD h1 l0 t-1\r\n");
        c.expect("mg k\r\n", "HD\r\n");
        // A miss echoes only O and k.
        c.expect("mg missing v\r\n", "EN\r\n");
        c.expect("mg missing v s k O9\r\n", "EN kmissing O9\r\n");
        // T sets a new TTL and t reports it.
        c.expect("mg k T100 t\r\n", "HD t100\r\n");
        c.expect("mg k t v\r\n", "VA 2 t100\r\nhi\r\n");
        // t reports the TTL as of its place among the flags.
        c.expect("mg k t T50\r\n", "HD t100\r\n");
        c.expect("mg k t\r\n", "HD t50\r\n");
        c.expect("mg tv t N30\r\n", "HD t-1 W\r\n");
        c.expect("mg tv t\r\n", "HD t30 Z\r\n");
    }

    fn mg_u_leaves_the_fetched_bit_alone(server) {
        let mut c = server.connect();
        c.expect("ms u 1\r\nx\r\n", "HD\r\n");
        c.expect("mg u u h\r\n", "HD h0\r\n");
        c.expect("mg u h\r\n", "HD h0\r\n");
        c.expect("mg u h\r\n", "HD h1\r\n");
    }

    fn base64_keys(server) {
        let mut c = server.connect();
        let key = b"\x00bin\xffkey\r\n";
        let encoded = b64(key);
        c.expect(&format!("ms {encoded} 2 b k c E5\r\nhi\r\n"), &format!("HD k{encoded} b c5\r\n"));
        c.expect(&format!("mg {encoded} b k v\r\n"), &format!("VA 2 k{encoded} b\r\nhi\r\n"));
        // The decoded key is the key: "a2V5" is base64 for "key".
        c.expect("ms a2V5 3 b\r\nabc\r\n", "HD\r\n");
        c.expect("mg key v\r\n", "VA 3\r\nabc\r\n");
        c.expect("get key\r\n", "VALUE key 0 3\r\nabc\r\nEND\r\n");
        c.expect("mg a2V5 v\r\n", "EN\r\n");
        // An item stored with a base64 key echoes it that way to mg, with
        // or without b (memcached 1.6.18 remembers it per item)...
        c.expect("mg key k\r\n", "HD ka2V5 b\r\n");
        c.expect("md key k q\r\nmn\r\n", "MN\r\n");
        // ...and a store without b forgets it.
        c.expect("ms a2V5 3 b\r\nabc\r\nms key 1\r\nx\r\n", "HD\r\nHD\r\n");
        c.expect("mg key k\r\n", "HD kkey\r\n");
        c.expect("ma key k\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
        c.expect("md a2V5 b q\r\nmg key\r\n", "EN\r\n");
        c.expect("mg !!!! b\r\n", "CLIENT_ERROR error decoding key\r\n");
        c.expect("ms !!!! 2 b\r\nhi\r\nmn\r\n", "CLIENT_ERROR error decoding key\r\nMN\r\n");
    }

    fn opaque_tokens_are_echoed(server) {
        let mut c = server.connect();
        c.expect("ms o 1 O1\r\nx\r\n", "HD O1\r\n");
        c.expect("mg o O2 v Oextra\r\n", "CLIENT_ERROR duplicate flag\r\n");
        c.expect("mg o Oabc v\r\n", "VA 1 Oabc\r\nx\r\n");
        c.expect("md o O3 k\r\n", "HD O3 ko\r\n");
        c.expect("md o O3 k\r\n", "NF O3 ko\r\n");
        c.expect("ma o O4\r\n", "NF O4\r\n");
        let long = format!("mg o O{}\r\n", "9".repeat(32));
        c.expect(&long, "CLIENT_ERROR opaque token too long\r\n");
        let ok = format!("mg o O{}\r\n", "9".repeat(31));
        c.expect(&ok, &format!("EN O{}\r\n", "9".repeat(31)));
    }

    fn quiet_mode_with_mn(server) {
        let mut c = server.connect();
        // Every uninteresting reply vanishes; mn marks the end.
        c.expect(
            "ms q1 1 q\r\na\r\nms q2 1 q\r\nb\r\nmg q1 v q\r\nmg nope v q\r\nmd q2 q\r\nmd q2 q\r\nma n q\r\nmn\r\n",
            "VA 1\r\na\r\nNF\r\nNF\r\nMN\r\n",
        );
        // NS and EX are always sent; so are errors.
        c.expect("ms q1 1 ME q\r\nz\r\nms q1 1 C999999 q\r\nz\r\nmg q1 zz q\r\nmn\r\n",
            "NS\r\nEX\r\nCLIENT_ERROR invalid flag\r\nMN\r\n");
        // ma drops a successful reply, but (as memcached 1.6.18 does) not
        // the one that vivified the counter.
        c.expect("ma cnt q N0\r\nma cnt q v\r\nmg cnt v\r\nmn\r\n", "HD\r\nVA 1\r\n1\r\nMN\r\n");
        // A hit answered HD is not quiet for mg.
        c.expect("mg q1 q\r\nmn\r\n", "HD\r\nMN\r\n");
    }

    fn ms_modes(server) {
        let mut c = server.connect();
        c.expect("ms k 2 MX\r\nhi\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n");
        c.expect("ms k 2 MEE\r\nhi\r\n", "CLIENT_ERROR incorrect length for M token\r\n");
        c.expect("ms k 2 ME\r\nhi\r\n", "HD\r\n");
        c.expect("ms k 2 ME\r\nho\r\n", "NS\r\n");
        c.expect("ms k 2 MA\r\n!!\r\n", "HD\r\n");
        c.expect("ms k 2 MP s\r\n<<\r\n", "HD s6\r\n");
        c.expect("mg k v\r\n", "VA 6\r\n<<hi!!\r\n");
        c.expect("ms k 1 MR F3\r\nr\r\n", "HD\r\n");
        c.expect("mg k v f\r\n", "VA 1 f3\r\nr\r\n");
        c.expect("ms k 1 MS\r\ns\r\n", "HD\r\n");
        c.expect("mg k v f\r\n", "VA 1 f0\r\ns\r\n");
        c.expect("ms nope 2 MR\r\nhi\r\n", "NS\r\n");
        c.expect("ms nope 2 MA\r\nhi\r\n", "NS\r\n");
        c.expect("ms nope 2 MP\r\nhi\r\n", "NS\r\n");
        // N: append autovivifies on a miss with N's TTL (newer protocol.txt;
        // memcached 1.6.18 answers NS).
        c.expect("ms viv 2 MA N100\r\nhi\r\n", "HD\r\n");
        c.expect("mg viv v t\r\n", "VA 2 t100\r\nhi\r\n");
        c.expect("ms viv 2 MA N100\r\nho\r\n", "HD\r\n");
        c.expect("mg viv v\r\n", "VA 4\r\nhiho\r\n");
    }

    fn ms_cas_compare_and_explicit_cas(server) {
        let mut c = server.connect();
        c.expect("ms c 1 E100 c\r\n1\r\n", "HD c100\r\n");
        c.expect("mg c c\r\n", "HD c100\r\n");
        c.expect("ms c 1 C99 c\r\n2\r\n", "EX c0\r\n");
        c.expect("ms cx 1 C5\r\n2\r\n", "NF\r\n");
        c.expect("ms c 1 C100 E200 c\r\n3\r\n", "HD c200\r\n");
        c.expect("mg c v c\r\n", "VA 1 c200\r\n3\r\n");
        // C works in append mode too.
        c.expect("ms c 1 MA C1\r\n4\r\n", "EX\r\n");
        c.expect("ms c 1 MA C200 E201\r\n4\r\n", "HD\r\n");
        c.expect("mg c v c\r\n", "VA 2 c201\r\n34\r\n");
        // A fresh CAS is not the explicit one.
        c.expect("ms c 1\r\n5\r\n", "HD\r\n");
        assert_ne!(cas_of(&mut c, "c"), 201);
        // Classic gets sees the meta CAS.
        c.expect("ms c 1 E300\r\n6\r\n", "HD\r\n");
        c.expect("gets c\r\n", "VALUE c 0 1 300\r\n6\r\nEND\r\n");
        c.expect("cas c 0 0 1 300\r\n7\r\n", "STORED\r\n");
    }

    fn ma_arithmetic(server) {
        let mut c = server.connect();
        c.expect("ma n\r\n", "NF\r\n");
        c.expect("ma n N0\r\n", "HD\r\n");
        c.expect("ma n v\r\n", "VA 1\r\n1\r\n");
        c.expect("ma n v D10 t E9 c\r\n", "VA 2 t-1 c9\r\n11\r\n");
        c.expect("ma n MD D100 v\r\n", "VA 1\r\n0\r\n");
        c.expect("ma n M- v\r\n", "VA 1\r\n0\r\n");
        c.expect("ma n M+ D5 v\r\n", "VA 1\r\n5\r\n");
        c.expect("ma n MI v k\r\n", "VA 1 kn\r\n6\r\n");
        c.expect("ma n MX\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n");
        c.expect("ma n DX\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
        c.expect("ma n D1 D1\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
        // J seeds a vivified counter; the delta is not applied to it.
        c.expect("ma j N100 J42 v t\r\n", "VA 2 t100\r\n42\r\n");
        c.expect("ma j v\r\n", "VA 2\r\n43\r\n");
        // C compares, T sets the TTL on success.
        c.expect("ma j C1\r\n", "EX\r\n");
        c.expect("ma j E50\r\n", "HD\r\n");
        c.expect("ma j C50 T30 t v\r\n", "VA 2 t30\r\n45\r\n");
        c.expect("ma tt N0 t T50\r\n", "HD t-1\r\n");
        c.expect("ma tt t T60\r\n", "HD t50\r\n");
        c.expect("ma tt t\r\n", "HD t60\r\n");
        c.expect("ms s 1\r\nx\r\n", "HD\r\n");
        c.expect("ma s\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
        // Wrapping past 2^64 as incr does.
        c.expect("ms w 20\r\n18446744073709551615\r\n", "HD\r\n");
        c.expect("ma w v\r\n", "VA 1\r\n0\r\n");
        c.expect("incr n 1\r\n", "7\r\n");
        c.expect("ma n v\r\n", "VA 1\r\n8\r\n");
    }

    fn md_delete_invalidate_and_strip(server) {
        let mut c = server.connect();
        c.expect("ms d 1\r\nx\r\n", "HD\r\n");
        c.expect("md d\r\n", "HD\r\n");
        c.expect("md d\r\n", "NF\r\n");
        c.expect("ms d 1 E10\r\nx\r\n", "HD\r\n");
        c.expect("md d C1\r\n", "EX\r\n");
        c.expect("md d C10 q\r\nmn\r\n", "MN\r\n");
        c.expect("get d\r\n", "END\r\n");
        c.expect("md d zz\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
        // x empties the value but keeps the item (newer protocol.txt;
        // memcached 1.6.18 does not know x).
        c.expect("ms x 5 F3 E20\r\nhello\r\n", "HD\r\n");
        c.expect("md x x E21\r\n", "HD\r\n");
        c.expect("mg x v c f\r\n", "VA 0 c21 f3\r\n\r\n");
        // x with I leaves a stale tombstone.
        c.expect("md x x I\r\n", "HD\r\n");
        c.expect("mg x s v\r\n", "VA 0 s0 X W\r\n\r\n");
    }

    fn stale_while_revalidate(server) {
        let mut a = server.connect();
        let mut b = server.connect();
        a.expect("ms sw 3 T100 E1\r\nold\r\n", "HD\r\n");
        a.expect("md sw I T30 E2\r\n", "HD\r\n");
        // The first reader wins the right to recache and still gets the
        // stale value; the next one is told someone else has it.
        a.expect("mg sw v c t\r\n", "VA 3 c2 t30 X W\r\nold\r\n");
        b.expect("mg sw v c\r\n", "VA 3 c2 Z X\r\nold\r\n");
        a.expect("mg sw\r\n", "HD Z X\r\n");
        // A wrong token cannot store...
        b.expect("ms sw 3 C1\r\nnew\r\n", "EX\r\n");
        // ...unless I accepts an older one: stored, still stale.
        b.expect("ms sw 3 I C1 E3\r\nnew\r\n", "HD\r\n");
        b.expect("mg sw v c\r\n", "VA 3 c3 Z X\r\nnew\r\n");
        // A plain store makes it fresh again.
        a.expect("ms sw 3 E4\r\nnew\r\n", "HD\r\n");
        b.expect("mg sw v c\r\n", "VA 3 c4\r\nnew\r\n");
        // md I on a missing key.
        a.expect("md nothing I\r\n", "NF\r\n");
    }

    fn vivify_on_miss_hands_out_one_win(server) {
        let mut a = server.connect();
        let mut b = server.connect();
        a.expect("mg viv N30 v t\r\n", "VA 0 t30 W\r\n\r\n");
        b.expect("mg viv N30 v t\r\n", "VA 0 t30 Z\r\n\r\n");
        b.expect("mg viv v\r\n", "VA 0 Z\r\n\r\n");
        a.expect("ms viv 3\r\nabc\r\n", "HD\r\n");
        b.expect("mg viv v N30\r\n", "VA 3\r\nabc\r\n");
        // E gives the vivified stub its CAS.
        a.expect("mg viv2 N30 E7 c\r\n", "HD c7 W\r\n");
    }

    fn recache_wins_once_when_the_ttl_runs_low(server) {
        let mut c = server.connect();
        c.expect("ms rc 1 T10\r\nx\r\n", "HD\r\n");
        c.expect("mg rc R5 v\r\n", "VA 1\r\nx\r\n");
        c.expect("mg rc R30 v t\r\n", "VA 1 t10 W\r\nx\r\n");
        c.expect("mg rc R30 v\r\n", "VA 1 Z\r\nx\r\n");
        c.expect("mg rc v\r\n", "VA 1 Z\r\nx\r\n");
        // Never-expiring items never win by R.
        c.expect("ms forever 1\r\nx\r\n", "HD\r\n");
        c.expect("mg forever R30\r\n", "HD\r\n");
    }

    fn me_debug(server) {
        let mut c = server.connect();
        c.expect("me nothing\r\n", "EN\r\n");
        c.expect("me\r\n", "CLIENT_ERROR bad command line format\r\n");
        c.expect("me !!!! b\r\n", "CLIENT_ERROR bad command line format\r\n");
        c.expect("mg kk O\r\nms kk 1 O\r\nx\r\nmg kk O k\r\n", "EN O\r\nHD O\r\nHD O kkk\r\n");
        c.expect("ms dbg 3 T0\r\nabc\r\n", "HD\r\n");
        c.expect("mg dbg E9\r\nms dbg 3 E9\r\nabc\r\n", "HD\r\nHD\r\n");
        // 40-byte header + 3 key + 3 value; the smallest class is 1.
        c.expect("me dbg\r\n", "ME dbg exp=-1 la=0 cas=9 fetch=no cls=1 size=46\r\n");
        c.expect("mg dbg T100\r\n", "HD\r\n");
        c.expect("me dbg\r\n", "ME dbg exp=100 la=0 cas=9 fetch=yes cls=1 size=46\r\n");
        c.expect("me ZGJn b\r\n", "ME dbg exp=100 la=0 cas=9 fetch=yes cls=1 size=46\r\n");
        // An item stored with a base64 key is dumped with its key encoded,
        // whether `me` names it raw or encoded, as memcached 1.6.18 does;
        // stored again with a raw key, it is dumped raw.
        c.expect("ms YWJj 1 b E7\r\nx\r\n", "HD\r\n");
        c.expect("me abc\r\n", "ME YWJj exp=-1 la=0 cas=7 fetch=no cls=1 size=44\r\n");
        c.expect("me YWJj b\r\n", "ME YWJj exp=-1 la=0 cas=7 fetch=no cls=1 size=44\r\n");
        c.expect("ms abc 1 E8\r\ny\r\n", "HD\r\n");
        c.expect("me abc\r\n", "ME abc exp=-1 la=0 cas=8 fetch=no cls=1 size=44\r\n");
    }

    fn errors_match_memcached(server) {
        let mut c = server.connect();
        c.expect("mg\r\n", "ERROR\r\n");
        c.expect("md\r\n", "ERROR\r\n");
        c.expect("ma\r\n", "ERROR\r\n");
        c.expect("mn extra\r\n", "MN\r\n");
        c.expect("mg k zz\r\n", "CLIENT_ERROR invalid flag\r\n");
        c.expect("mg k v v\r\n", "CLIENT_ERROR duplicate flag\r\n");
        c.expect("mg k Tx\r\n", "CLIENT_ERROR bad token in command line format\r\n");
        // A bad flag after a readable length swallows the data block.
        c.expect("ms k 2 Z\r\nhi\r\nmn\r\n", "CLIENT_ERROR invalid flag\r\nMN\r\n");
        c.expect("ms k 2 Tx\r\nhi\r\nmn\r\n", "CLIENT_ERROR bad token in command line format\r\nMN\r\n");
        c.expect("ms k 2 Fx\r\nhi\r\nmn\r\n", "CLIENT_ERROR bad command line format\r\nMN\r\n");
        // Keys over 250 bytes. memcached checks the key before the length
        // and then runs the data block as a command; corecache swallows it.
        let long = "k".repeat(251);
        c.expect(&format!("mg {long} v\r\n"), "CLIENT_ERROR bad command line format\r\n");
        c.expect(
            &format!("ms {long} 2\r\nhi\r\nmn\r\n"),
            "CLIENT_ERROR bad command line format\r\nMN\r\n",
        );
        // Too large: the data is swallowed, even in quiet mode the error
        // is sent, and the old value is gone.
        c.expect("ms big 1\r\nx\r\n", "HD\r\n");
        let size = 2_000_000;
        let mut request = format!("ms big {size} q T0\r\n").into_bytes();
        request.extend(std::iter::repeat_n(b'v', size));
        request.extend_from_slice(b"\r\nmg big v\r\nmn\r\n");
        c.send(&request);
        let reply = c.read_until(b"MN\r\n");
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "SERVER_ERROR object too large for cache\r\nEN\r\nMN\r\n"
        );
        c.expect("mg k v c f s t k h l u q O1 T1 N1 R1 E1 b P L\r\n", "CLIENT_ERROR options flags are too long\r\n");
        c.expect("ma k v c f s t k h l u q O1 T1 N1 J1 E1 D1 C1 M+\r\n", "CLIENT_ERROR options flags too long\r\n");
    }

    fn meta_and_classic_mixed_in_one_pipelined_burst_across_threads(server) {
        let mut c = server.connect();
        let here = c.thread();
        let mut request = String::new();
        let mut expected = String::new();
        let mut forwarded = 0;
        for i in 0..200 {
            // Seeds far apart: every key is distinct.
            let k = key_on_thread(i % 2, i * 1000);
            // Keyed requests on `k` below (mn is not one).
            if i % 2 != here {
                forwarded += [2, 3, 3, 4, 3][i % 5];
            }
            match i % 5 {
                0 => {
                    request += &format!("ms {k} 2 T0 F{i} O{i} k c E{}\r\nv{}\r\n", 1000 + i, i % 10);
                    expected += &format!("HD O{i} k{k} c{}\r\n", 1000 + i);
                    request += &format!("get {k}\r\n");
                    expected += &format!("VALUE {k} {i} 2\r\nv{}\r\nEND\r\n", i % 10);
                }
                1 => {
                    request += &format!("set {k} 0 0 1\r\n7\r\n");
                    expected += "STORED\r\n";
                    request += &format!("ma {k} v D3 O{i}\r\n");
                    expected += &format!("VA 2 O{i}\r\n10\r\n");
                    request += &format!("incr {k} 1\r\n");
                    expected += "11\r\n";
                }
                2 => {
                    request += &format!("mg {k} v q O{i}\r\n");
                    request += &format!("md {k} q\r\n");
                    expected += "NF\r\n";
                    request += &format!("mg {} b k\r\n", b64(k.as_bytes()));
                    expected += &format!("EN k{} b\r\n", b64(k.as_bytes()));
                }
                3 => {
                    request += &format!("set {k} 3 0 2\r\nab\r\n");
                    expected += "STORED\r\n";
                    request += &format!("mg {k} s f v k\r\n");
                    expected += &format!("VA 2 s2 f3 k{k}\r\nab\r\n");
                    request += &format!("md {k} q\r\nmn\r\n");
                    expected += "MN\r\n";
                    request += &format!("get {k}\r\n");
                    expected += "END\r\n";
                }
                _ => {
                    request += &format!("mg {k} N60 O{i} c E{i}\r\n");
                    expected += &format!("HD O{i} c{i} W\r\n");
                    request += &format!("gets {k}\r\n");
                    expected += &format!("VALUE {k} 0 0 {i}\r\n\r\nEND\r\n");
                    request += &format!("mg {k} O{i}\r\n");
                    expected += &format!("HD O{i} Z\r\n");
                }
            }
        }
        request += "mn\r\n";
        expected += "MN\r\n";
        c.send(request.as_bytes());
        let got = c.read_exact(expected.len());
        assert_eq!(String::from_utf8_lossy(&got), expected);
        server.assert_forwarded_exactly(forwarded);
    }

    fn meta_request_split_byte_by_byte(server) {
        let mut c = server.connect();
        let request = b"ms split 5 T0 k\r\nhello\r\nmg split v k O1\r\n";
        server.send_in_separate_reads(&mut c, request.chunks(1));
        let want = "HD ksplit\r\nVA 5 ksplit O1\r\nhello\r\n";
        assert_eq!(String::from_utf8_lossy(&c.read_exact(want.len())), want);
    }

    fn meta_ttls_expire(server) {
        let mut c = server.connect();
        c.expect("ms e 1 T1\r\nx\r\n", "HD\r\n");
        c.expect("ms neg 1 T-1\r\nx\r\n", "HD\r\n");
        c.expect("mg neg v\r\n", "EN\r\n");
        c.expect("mg e t\r\n", "HD t1\r\n");
        // t rounds up: 1 ms left is 1 s left; then it is gone.
        server.advance(Duration::from_millis(999));
        c.expect("mg e t v\r\n", "VA 1 t1\r\nx\r\n");
        server.advance(Duration::from_millis(1));
        c.expect("mg e v\r\n", "EN\r\n");
        // md I with T limits how long a stale item lives.
        c.expect("ms st 1\r\nx\r\n", "HD\r\n");
        c.expect("md st I T1\r\n", "HD\r\n");
        c.expect("mg st t\r\n", "HD t1 X W\r\n");
        server.advance(Duration::from_secs(1));
        c.expect("mg st\r\n", "EN\r\n");
    }

    fn l_and_la_are_whole_idle_seconds_refreshed_at_most_once_a_minute(server) {
        let mut c = server.connect();
        c.expect("ms idle 1 T0 E5\r\nx\r\n", "HD\r\n");
        c.expect("me idle\r\n", "ME idle exp=-1 la=0 cas=5 fetch=no cls=1 size=45\r\n");
        server.advance(Duration::from_millis(2500));
        c.expect("mg idle l v\r\n", "VA 1 l2\r\nx\r\n");
        // A hit within a minute of the last refresh leaves the access time.
        c.expect("mg idle l\r\n", "HD l2\r\n");
        c.expect("me idle\r\n", "ME idle exp=-1 la=2 cas=5 fetch=yes cls=1 size=45\r\n");
        // A hit a minute or more after it refreshes it.
        server.advance(Duration::from_secs(58));
        c.expect("mg idle l\r\n", "HD l60\r\n");
        c.expect("mg idle l\r\n", "HD l0\r\n");
        // u reads without refreshing.
        server.advance(Duration::from_secs(61));
        c.expect("mg idle u l\r\n", "HD l61\r\n");
        c.expect("me idle\r\n", "ME idle exp=-1 la=61 cas=5 fetch=yes cls=1 size=45\r\n");
        c.expect("mg idle l\r\n", "HD l61\r\n");
        c.expect("mg idle l\r\n", "HD l0\r\n");
    }
}
