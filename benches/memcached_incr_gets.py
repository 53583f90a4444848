#!/usr/bin/env python3
"""Shows the memcached behaviour `loadgen --spec memcached` allows for: a
`gets` racing an `incr` reports the counter's old value with the unique of
its new value, and a `cas` with that unique wins over the new value.

    python3 benches/memcached_incr_gets.py --port 11211 --seconds 20

One connection increments a counter as fast as it can; three others
pipeline 50 `gets` of it at a time. A pipeline that saw one value with two
uniques writes that value back with `cas` and the later unique: `STORED`
means the cas undid an incr. Prints what it found; exits 0 either way (it
is a probe, not a test). Loopback only; no third-party packages.
"""

import argparse
import multiprocessing
import socket
import time

KEY = b"incr-gets-probe"


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Lines:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line


def incrementer(port, seconds, out):
    s = connect(port)
    r = Lines(s)
    n, end = 0, time.time() + seconds
    while time.time() < end:
        s.sendall(b"incr " + KEY + b" 1\r\n")
        r.line()
        n += 1
    out.put(("incrs", n))


def reader(port, seconds, depth, out):
    s = connect(port)
    r = Lines(s)
    reads = pairs = won = 0
    end = time.time() + seconds
    while time.time() < end:
        s.sendall((b"gets " + KEY + b"\r\n") * depth)
        uniques = {}
        for _ in range(depth):
            header = r.line().split()
            value = r.line()
            assert r.line() == b"END"
            uniques.setdefault(value, set()).add(int(header[4]))
            reads += 1
        for value, seen in uniques.items():
            if len(seen) > 1:
                pairs += 1
                token = max(seen)
                s.sendall(b"cas %s 0 0 %d %d\r\n%s\r\n" % (KEY, len(value), token, value))
                reply = r.line()
                won += reply == b"STORED"
                if pairs <= 3:
                    print(f"value {value.decode()} read with uniques {sorted(seen)};"
                          f" cas {token} writing it back: {reply.decode()}", flush=True)
    out.put(("reader", reads, pairs, won))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--readers", type=int, default=3)
    a = p.parse_args()
    s = connect(a.port)
    s.sendall(b"set " + KEY + b" 0 0 7\r\n1000000\r\n")
    assert Lines(s).line() == b"STORED"
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=incrementer, args=(a.port, a.seconds, out))]
    procs += [multiprocessing.Process(target=reader, args=(a.port, a.seconds, 50, out))
              for _ in range(a.readers)]
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    incrs = sum(r[1] for r in results if r[0] == "incrs")
    reads = sum(r[1] for r in results if r[0] == "reader")
    pairs = sum(r[2] for r in results if r[0] == "reader")
    won = sum(r[3] for r in results if r[0] == "reader")
    print(f"{incrs} incrs, {reads} gets: {pairs} pipelines saw one value with two uniques;"
          f" {won} cas with the later unique were STORED over a newer value")


if __name__ == "__main__":
    main()
