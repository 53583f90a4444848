#!/usr/bin/env python3
"""Storage experiments for corecache, side by side with memcached.

Each experiment starts the servers itself (corecache from target/release,
memcached from $PATH when installed), drives them over real sockets with
pipelined text-protocol requests, samples RSS from /proc, and prints one
line of results per server.

    cargo build --release
    python3 benches/storage_experiments.py memory-bound   # RSS under -m 64 while 1 GiB of mixed sets go in
    python3 benches/storage_experiments.py expiry         # 100k keys, exptime 2, no reads: all reclaimed?
    python3 benches/storage_experiments.py calcification  # values switch 100 B -> 10 KiB at the limit
    python3 benches/storage_experiments.py per-item       # RSS per item for 1M items with 100-byte values
    python3 benches/storage_experiments.py all

Servers are pinned to the last CPU and this script to the first when the
machine has more than one, so the client does not steal the server's core.
"""

import argparse
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forwarding import ROOT, free_port, rss_bytes  # noqa: E402

CORECACHE = os.path.join(ROOT, "target", "release", "corecache")
MIB = 1 << 20
# corecache threads (and so shards): set by --threads.
THREADS = 1


class Server:
    """A server process on a free port, killed on exit."""

    def __init__(self, name, argv_for_port, cpu):
        self.name = name
        self.port = free_port()
        argv = argv_for_port(self.port)
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu)] + argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"{name} did not start")
                time.sleep(0.05)

    def pid(self):
        # taskset execs the server, so the pid is the server's.
        return self.proc.pid

    def rss(self):
        return rss_bytes(self.pid())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def servers(memory_mib, extra=(), which=("corecache", "memcached")):
    """The servers to compare: corecache always, memcached when installed."""
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = cpus[-1] if len(cpus) > 1 else None
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[0]})
    made = []
    if "corecache" in which:
        if not os.path.exists(CORECACHE):
            sys.exit(f"{CORECACHE} is missing: run `cargo build --release` first")
        made.append(Server(
            "corecache",
            lambda p: [CORECACHE, "--port", str(p), "--threads", str(THREADS), "--no-pin",
                       "-m", str(memory_mib), *extra],
            server_cpu))
    if "memcached" in which and shutil.which("memcached"):
        made.append(Server(
            "memcached",
            lambda p: ["memcached", "-u", "nobody", "-U", "0", "-l", "127.0.0.1",
                       "-p", str(p), "-t", "1", "-m", str(memory_mib)],
            server_cpu))
    return made


class Client:
    """A pipelining text-protocol client."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _read_line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n):
        while len(self.buf) < n:
            self.buf += self.sock.recv(1 << 20)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def set_many(self, items, exptime=0):
        """Stores (key, value) pairs pipelined; returns the reply lines."""
        out = []
        for key, value in items:
            out.append(b"set %s 0 %d %d\r\n%s\r\n" % (key, exptime, len(value), value))
        self.sock.sendall(b"".join(out))
        return [self._read_line() for _ in items]

    def get_many(self, keys):
        """Multi-get; returns {key: value}."""
        self.sock.sendall(b"get " + b" ".join(keys) + b"\r\n")
        found = {}
        while True:
            line = self._read_line()
            if line == b"END":
                return found
            _, key, _flags, length = line.split()[:4]
            found[key] = self._read_exact(int(length) + 2)[:-2]

    def stats(self, args=b""):
        self.sock.sendall(b"stats " + args + b"\r\n" if args else b"stats\r\n")
        stats = {}
        while True:
            line = self._read_line()
            if line == b"END":
                return stats
            _, name, value = line.decode().split(" ", 2)
            stats[name] = value


def log_uniform(rng, low, high):
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def memory_bound(args):
    limit = 64
    total = args.gib * (1 << 30)
    print(f"memory-bound: -m {limit}, {total / MIB:.0f} MiB of sets, values 10 B - 100 KiB log-uniform")
    print(f"  RSS goal: under {limit * 1.1 + 16:.1f} MiB throughout")
    for server in servers(limit):
        rng = random.Random(1)
        client = Client(server.port)
        sent, n, peak = 0, 0, 0
        recent = []
        while sent < total:
            batch = []
            for _ in range(64):
                value = b"v" * log_uniform(rng, 10, 100 * 1024)
                key = b"mb:%d" % n
                n += 1
                batch.append((key, value))
                sent += len(value)
            replies = client.set_many(batch)
            bad = [r for r in replies if r != b"STORED"]
            if bad:
                print(f"  {server.name}: unexpected reply {bad[0]!r}")
            recent = batch
            if n % 1024 == 0:
                peak = max(peak, server.rss())
        peak = max(peak, server.rss())
        got = client.get_many([k for k, _ in recent])
        readable = sum(1 for k, v in recent if got.get(k) == v)
        stats = client.stats()
        print(f"  {server.name:9} peak RSS {peak / MIB:6.1f} MiB  items {stats['curr_items']:>6}  "
              f"evictions {stats['evictions']:>7}  last 64 written readable: {readable}/64")
        server.stop()


def expiry(args):
    keys = 100_000
    print(f"expiry: {keys} keys with exptime 2 and 1000 without; no reads; stats after 4 s")
    for server in servers(256, extra=("--ttl-tick", "100ms"), which=("corecache",)):
        client = Client(server.port)
        for start in range(0, keys, 1000):
            client.set_many([(b"ttl:%d" % i, b"x" * 32) for i in range(start, start + 1000)], exptime=2)
        client.set_many([(b"keep:%d" % i, b"y" * 32) for i in range(1000)])
        before = client.stats()
        time.sleep(4)
        after = client.stats()
        print(f"  {server.name:9} before: curr_items {before['curr_items']} bytes {before['bytes']}  "
              f"after 4 s: curr_items {after['curr_items']} bytes {after['bytes']} "
              f"reclaimed {after['reclaimed']} expired_unfetched {after['expired_unfetched']}")
        server.stop()


def calcification(args):
    limit = 64
    small, large = 100, 10 * 1024
    new_keys = (limit * MIB // 2) // large
    print(f"calcification: fill -m {limit} with {small} B values, then a working set of "
          f"{new_keys} x {large // 1024} KiB values (half the memory); hit ratio per 5 s")
    for server in servers(limit):
        client = Client(server.port)
        n = 0
        while True:
            client.set_many([(b"old:%d" % (n + i), b"s" * small) for i in range(256)])
            n += 256
            if n % 8192 == 0 and int(client.stats()["evictions"]) > 0:
                break
        rng = random.Random(2)
        value = b"L" * large
        start = time.time()
        hits = gets = 0
        line = []
        window_end = start + 5
        while time.time() - start < args.seconds:
            keys = [b"new:%d" % rng.randrange(new_keys) for _ in range(32)]
            got = client.get_many(keys)
            gets += len(keys)
            hits += len(got)
            missing = [k for k in keys if k not in got]
            if missing:
                client.set_many([(k, value) for k in missing])
            if time.time() >= window_end:
                line.append(f"{hits / gets:.2f}")
                hits = gets = 0
                window_end += 5
        moved = client.stats().get("slabs_moved", "n/a")
        print(f"  {server.name:9} hit ratio by 5 s window: {' '.join(line)}  (slabs_moved {moved})")
        server.stop()


def per_item(args):
    items = args.items
    print(f"per-item: {items} items, 12-byte keys, 100-byte values; (RSS after - RSS before) / items")
    for server in servers(1024):
        client = Client(server.port)
        before = server.rss()
        value = b"x" * 100
        for start in range(0, items, 1000):
            client.set_many([(b"key:%08d" % i, value) for i in range(start, start + 1000)])
        stats = client.stats()
        after = server.rss()
        print(f"  {server.name:9} RSS {before / MIB:.1f} -> {after / MIB:.1f} MiB  "
              f"{(after - before) / items:.1f} bytes/item  (curr_items {stats['curr_items']}, "
              f"evictions {stats['evictions']})")
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=["memory-bound", "expiry", "calcification", "per-item", "all"])
    parser.add_argument("--gib", type=float, default=1.0, help="data pushed by memory-bound")
    parser.add_argument("--seconds", type=float, default=30, help="length of calcification's run")
    parser.add_argument("--items", type=int, default=1_000_000, help="items stored by per-item")
    parser.add_argument("--threads", type=int, default=1, help="corecache threads (one shard each)")
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    runs = {
        "memory-bound": memory_bound,
        "expiry": expiry,
        "calcification": calcification,
        "per-item": per_item,
    }
    for name, run in runs.items():
        if args.experiment in (name, "all"):
            run(args)


if __name__ == "__main__":
    main()
