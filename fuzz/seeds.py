#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (fuzz/corpus/<target>/).

The seeds are committed; this script says where they came from and makes
them again: python3 fuzz/seeds.py. Each seed is a small, valid or nearly
valid input that reaches one feature, so the fuzzer starts from every
command, flag and packet shape instead of having to discover them.
"""

import os
import random
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, seeds):
    folder = os.path.join(HERE, "corpus", target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def text_seeds():
    keys = " ".join(f"key:{i:05}" for i in range(300))
    return {
        "get": b"get a\r\n",
        "get-many": b"get a bb   ccc \r\ngets a\n",
        "gat": b"gat 100 a b\r\ngats -1 a\r\ngat 5\r\n",
        "set": b"set k 5 100 3\r\nabc\r\nget k\r\n",
        "set-noreply": b"set k 0 0 1 noreply\r\nx\r\n",
        "add-replace": b"add k 1 2 2\r\nhi\r\nreplace k 0 0 0\r\n\r\n",
        "append-prepend": b"append k 0 0 2\r\nzz\r\nprepend k 0 0 1 noreply\r\na\r\n",
        "cas": b"cas k 0 0 1 12345\r\nv\r\ncas k 0 0 1 1 noreply\r\nv\r\n",
        "delete": b"delete k\r\ndelete k 0\r\ndelete k noreply\r\ndelete k 0 noreply\r\ndelete k 1\r\n",
        "incr-decr": b"incr k 1\r\ndecr k 18446744073709551615 noreply\r\nincr k -1\r\n",
        "touch": b"touch k 10\r\ntouch k x\r\n",
        "flush": b"flush_all\r\nflush_all 10\r\nflush_all noreply\r\nflush_all -1 noreply\r\n",
        "admin": b"version\r\nverbosity 1\r\nstats\r\nstats slabs\r\nquit\r\n",
        "errors": b"bogus\r\n\r\nget\r\nset k 0 0\r\nincr k\r\n",
        "bad-chunk": b"set k 0 0 3\r\nabcd\r\nget k\r\n",
        "too-large": b"set k 0 0 5000\r\n" + b"x" * 40 + b"\r\nget k\r\n",
        "refused-block": b"set k x 0 3\r\nabc\r\nget k\r\n",
        "bad-key": b"set " + b"k" * 251 + b" 0 0 1\r\nx\r\n",
        "long-get": f"get {keys}\r\nget after\r\n".encode(),
        "long-gat": f"gats 300 {keys}\r\n".encode(),
        "endless": b"set k 0 0 1 " + b"9" * 2100,
        "pipeline": b"set a 0 0 1\r\n1\r\nget a\r\nincr a 5\r\nmn\r\ndelete a\r\n",
    }


def meta_seeds():
    return {
        "mg": b"mg key v c T30 N-1 R5 Oabc k u\r\n",
        "mg-flags": b"mg key s t f h l q E9 b\r\nmg a2V5 b v k\r\n",
        "ms": b"ms key 3 T60 F5 c O1 k\r\nabc\r\n",
        "ms-modes": b"ms k 1 MA N30\r\nx\r\nms k 1 MP\r\ny\r\nms k 1 ME q\r\nz\r\nms k 1 MR C12 I\r\nw\r\n",
        "ms-too-large": b"ms k 5000 T0\r\n" + b"x" * 30,
        "ms-bad": b"ms k xx\r\nms k 2 MZ\r\nab\r\nms k 2 F-1\r\nab\r\n",
        "md": b"md key q C5 E7 I T30 x O1 k\r\n",
        "ma": b"ma key MI D5 J10 N0 T9 C3 E4 v q k\r\nma k M- D18446744073709551615\r\n",
        "me": b"me key\r\nme a2V5 b\r\nme !!! b\r\n",
        "mn": b"mg a v q\r\nmg b v q\r\nmn\r\n",
        "errors": b"mg\r\nms\r\nmg k v v\r\nmg k !\r\nmg k O" + b"o" * 40 + b"\r\nmg k T-x\r\n",
        "many-flags": b"mg k " + b" ".join(b"O%d" % i for i in range(25)) + b"\r\n",
        "base64": b"mg AP9rZXk= b v\r\nms AP9rZXk= 1 b\r\nx\r\nmd =bad b\r\n",
        "mixed": b"set a 0 0 1\r\n1\r\nmg a v\r\nma a\r\nget a\r\n",
    }


MAGIC = 0x80


def packet(opcode, key=b"", extras=b"", value=b"", opaque=0, cas=0, body=None, key_len=None):
    body_len = len(extras) + len(key) + len(value) if body is None else body
    key_len = len(key) if key_len is None else key_len
    header = struct.pack(">BBHBBHIIQ", MAGIC, opcode, key_len, len(extras), 0, 0,
                         body_len, opaque, cas)
    return header + extras + key + value


def store_extras(flags=0, exptime=0):
    return struct.pack(">II", flags, exptime)


def arith_extras(delta=1, initial=0, exptime=0):
    return struct.pack(">QQI", delta, initial, exptime)


def binary_seeds():
    seeds = {
        "get": packet(0x00, b"key", opaque=7),
        "getq-getk-getkq": packet(0x09, b"a") + packet(0x0C, b"b") + packet(0x0D, b"c") + packet(0x0A),
        "set": packet(0x01, b"key", store_extras(5, 100), b"value", cas=0),
        "set-cas": packet(0x01, b"key", store_extras(), b"v", cas=12345),
        "add-replace": packet(0x02, b"k", store_extras(), b"a") + packet(0x03, b"k", store_extras(), b"b"),
        "quiet-stores": packet(0x11, b"k", store_extras(), b"a") + packet(0x12, b"k", store_extras(), b"a")
        + packet(0x13, b"k", store_extras(), b"a") + packet(0x0A),
        "append-prepend": packet(0x0E, b"k", b"", b"zz") + packet(0x0F, b"k", b"", b"a")
        + packet(0x19, b"k", b"", b"q") + packet(0x1A, b"k", b"", b"q"),
        "delete": packet(0x04, b"k") + packet(0x14, b"k"),
        "incr-decr": packet(0x05, b"n", arith_extras(5, 10, 0)) + packet(0x06, b"n", arith_extras(1, 0, 0xFFFFFFFF))
        + packet(0x15, b"n", arith_extras()) + packet(0x16, b"n", arith_extras()),
        "touch-gat": packet(0x1C, b"k", struct.pack(">I", 10)) + packet(0x1D, b"k", struct.pack(">I", 0))
        + packet(0x1E, b"k", struct.pack(">I", 1)) + packet(0x23, b"k", struct.pack(">I", 2))
        + packet(0x24, b"k", struct.pack(">I", 3)),
        "flush": packet(0x08) + packet(0x08, extras=struct.pack(">I", 10)) + packet(0x18),
        "admin": packet(0x0A) + packet(0x0B) + packet(0x10) + packet(0x10, b"settings") + packet(0x07),
        "quitq": packet(0x17),
        "sasl": packet(0x20) + packet(0x21, b"PLAIN", value=b"\0u\0p") + packet(0x22, b"PLAIN"),
        "too-large": packet(0x01, b"k", store_extras(), b"x" * 2000) + packet(0x00, b"k"),
        "too-large-partial": packet(0x01, b"k", store_extras(), b"", body=8 + 1 + 100000),
        "unknown-opcode": packet(0x1B, b"k", value=b"abc") + packet(0x50) + packet(0x0A),
        "malformed": packet(0x00, b"k", b"xxxx"),
        "bad-lengths": packet(0x01, b"k", store_extras(), b"", body=3),
        "key-too-long": packet(0x00, b"k" * 251),
        "bad-magic": b"\x81" + packet(0x00, b"k")[1:],
        "text-after": packet(0x0A) + b"get k\r\n",
        "header-only": packet(0x0A)[:10],
    }
    return seeds


def shard_seeds():
    """Operation sequences for fuzz/src/shard.rs: a configuration byte, a
    key-space byte, then operations (see `Op::decode`)."""
    rng = random.Random(10)

    def op(kind, key, *args):
        return bytes([kind, key, *args])

    def store(mode, key, shape, size, flags=0, ttl=0, form=0):
        args = [mode, shape, size]
        if shape % 8 == 7:
            args.append(form)
        return op(0, key, *args, flags, ttl)

    seeds = {
        # Roomy: every command on a few keys.
        "roomy-basics": bytes([0, 0]) + store(0, 1, 1, 10) + op(80, 1) + store(3, 1, 1, 5)
        + store(4, 1, 1, 5) + op(80, 1) + store(5, 1, 1, 3) + store(6, 1, 1, 3) + op(80, 1)
        + op(140, 1) + op(80, 1),
        "counters": bytes([0, 0]) + store(0, 2, 7, 42, form=0) + op(160, 2, 0, 5) + op(160, 2, 1, 250)
        + op(80, 2) + store(0, 3, 7, 200, form=9) + op(160, 3, 0, 1) + store(3, 2, 1, 1)
        + op(160, 2, 0, 1),
        "expiry": bytes([0, 0]) + store(0, 1, 1, 10, ttl=130) + op(210, 0, 150) + op(80, 1)
        + op(190, 0) + store(0, 2, 1, 10, ttl=200) + op(130, 2, 129) + op(210, 0, 240) + op(80, 2),
        "flush": bytes([0, 0]) + store(0, 1, 1, 9) + op(185, 0, 21) + store(0, 2, 1, 9)
        + op(210, 0, 130) + op(80, 1) + op(80, 2) + op(185, 0, 0) + op(80, 2),
        # Small pages: evictions, moves, shrinking, reassign.
        "pressure": bytes([1, 2]) + b"".join(store(0, k, 4, 40) for k in range(40)),
        "pressure-sizes": bytes([2, 2]) + b"".join(store(0, k, [1, 4, 6][k % 3], 200) for k in range(30))
        + op(242, 0, 3, 5) + op(235, 0, 1) + op(190, 0) + op(190, 0),
        "too-large": bytes([1, 1]) + store(0, 1, 1, 9) + store(0, 1, 6, 250) + op(80, 1)
        + store(3, 2, 1, 9) + store(3, 2, 6, 200) + op(250, 2),
    }
    for i in range(12):
        config = rng.randrange(256)
        ops = bytes(rng.randrange(256) for _ in range(rng.randrange(60, 1500)))
        seeds[f"random-{i:02}"] = bytes([config, rng.randrange(256)]) + ops
    return seeds


def write_binary_dict():
    """fuzz/dict/binary.dict: the request magic before every opcode byte
    memcached knows (and two it does not), then header lengths and extras
    at their edges."""
    lines = [
        "# libFuzzer dictionary for the binary target, written by fuzz/seeds.py:",
        "# the request magic with each opcode, header lengths and extras.",
    ]
    pieces = [bytes([MAGIC, op]) for op in list(range(0x00, 0x25)) + [0x50, 0xFF]]
    pieces += [b"\x00\x01", b"\x00\xfa", b"\x00\xfb", b"\xff\xff", b"\x08", b"\x14", b"\x04",
               b"\x00\x00\x00\x00", b"\x00\x00\x04\x00", b"\x00\x00\x04\x01", b"\xff\xff\xff\xff",
               b"\x00\x00\x00\x09", b"\x00\x00\x00\x15", b"\xff" * 8]
    for piece in pieces:
        lines.append('"' + "".join("\\x%02x" % c for c in piece) + '"')
    with open(os.path.join(HERE, "dict", "binary.dict"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    write_binary_dict()
    write("text", text_seeds())
    write("meta", meta_seeds())
    write("binary", binary_seeds())
    write("shard", shard_seeds())


if __name__ == "__main__":
    main()
