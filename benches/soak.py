#!/usr/bin/env python3
"""Soak: both runtimes at once, under verified load and faults, for a set time.

    python3 benches/soak.py 60                  # 60 s; builds the release binaries first
    python3 benches/soak.py 1800 --out docs/soak --no-build

Starts two release corecache servers on loopback (thread-per-core and
work-stealing, 2 threads each, unpinned, no spin: they share the CPUs with
their clients), and runs against each, at the same time:

- loadgen --verify=strict: 50 connections, pipeline 16, the mix of MIX (half
  gets, multi-gets of 4 keys; sets, deletes, appends, incrs), every value and
  every delete/append/incr reply checked, no miss or stale read allowed;
- a model client: set/add/replace/append/prepend/incr/decr/delete/get on its
  own keys, pipelined in batches, every reply checked against a model (the
  commands loadgen does not send);
- bad input: unknown commands, malformed and oversized lines, bad data
  blocks, each answered with memcached's error, then a `version` to prove
  the connection is still in step (or a close where memcached closes);
- a slow client that pipelines gets and never reads a reply;
- a flooding client: bursts of 4,000 requests in one write, all replies read;
- clients that disconnect mid-pipeline: a burst, then close unread;
- hostile clients (docs/operations.md, "Memory: one bound for the whole
  process"), over and over: one 16 KB-class line naming a 1 MB value 4,000
  times, 2,000 pipelined `mg ... v` and 2,000 binary GETKQ for it, none of
  them reading, each held a few seconds and closed; and a slow reader of a
  multi-get of 20 such values, every byte checked.

Every second it samples each server's RSS and open descriptors (/proc) and
its connection and forwarding gauges (`stats`), and checks the RSS against
the memory bound for the connections open then. At the end every client
stops, the servers must return to one connection (the sampler's), nothing
in flight, no panic, and exit 0 on SIGTERM. It writes report.md, samples.csv
and rss_fds.svg to --out, prints the report, and ends with SOAK PASS or
SOAK FAIL (exit 0 or 1). Loopback only; no third-party Python packages.
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forwarding import ROOT, free_port, rss_bytes  # noqa: E402
from hostile import getkq, never_reads  # noqa: E402

RUNTIMES = ["thread-per-core", "work-stealing"]
# loadgen's operations: half gets, and writes of every kind strict mode checks.
MIX = "set=20,get=50,delete=10,append=10,incr=10"


class Server:
    """One corecache process, its address and its /proc figures."""

    def __init__(self, binary, runtime, out):
        self.runtime = runtime
        self.port = free_port()
        self.log_path = os.path.join(out, f"server-{runtime}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1", "--port", str(self.port),
             "--threads", "2", "--no-pin", "--spin", "0", "-m", "256",
             "-c", "4096", "--runtime", runtime],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while "listening on" not in open(self.log_path).read():
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"{runtime}: server did not start, see {self.log_path}")
            time.sleep(0.05)
        self.stats_conn = None

    def rss(self):
        return rss_bytes(self.proc.pid)

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stats(self, group=""):
        """`stats [group]` over one connection kept open for it."""
        if self.stats_conn is None:
            self.stats_conn = Conn(self.port)
        c = self.stats_conn
        c.send(f"stats {group}\r\n".encode() if group else b"stats\r\n")
        reply = c.read_until(b"END\r\n")
        return dict(line.split(" ", 2)[1:] for line in reply.decode().splitlines()
                    if line.startswith("STAT "))


class Conn:
    """A blocking client socket with a read buffer."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def read_until(self, terminator):
        while terminator not in self.buf:
            self.fill()
        end = self.buf.index(terminator) + len(terminator)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def read_line(self):
        return self.read_until(b"\r\n")

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_close(self):
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                self.buf += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return self.buf

    def close(self):
        self.sock.close()


class Tally:
    """Counts by name, shared by a server's fault clients."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.problems = []

    def add(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def problem(self, text):
        with self.lock:
            self.add("problems")
            if len(self.problems) < 20:
                self.problems.append(text)


def model_client(port, stop, tally, seed):
    """Mixed commands on keys only this client touches, checked against a model.

    Counters and strings live on separate keys: memcached's rules for what
    `incr` makes of a spliced value are its own business, not the soak's.
    """
    rng = random.Random(seed)
    numbers = [f"soak:model:n{i}" for i in range(100)]
    strings = [f"soak:model:s{i}" for i in range(100)]
    model = {}
    c = Conn(port)

    def store(op, key, value):
        have = model.get(key)
        stored = {"set": True, "add": have is None}.get(op, have is not None)
        if stored:
            model[key] = {"append": (have or "") + value, "prepend": value + (have or "")}.get(op, value)
        return (f"{op} {key} 0 0 {len(value)}\r\n{value}\r\n",
                "STORED\r\n" if stored else "NOT_STORED\r\n")

    def arith(op, key):
        have = model.get(key)
        delta = rng.randrange(1000)
        line = f"{op} {key} {delta}\r\n"
        if have is None:
            return line, "NOT_FOUND\r\n"
        if not have.rstrip(" ").isdigit():
            return line, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        n = int(have) + delta if op == "incr" else max(0, int(have) - delta)
        n %= 2 ** 64
        # As memcached: a shorter result is padded with spaces in place.
        model[key] = str(n).ljust(len(have)) if len(str(n)) <= len(have) else str(n)
        return line, f"{n}\r\n"

    while not stop.is_set():
        batch, expected = [], []
        for _ in range(32):
            number = rng.random() < 0.5
            key = rng.choice(numbers if number else strings)
            have = model.get(key)
            r = rng.random()
            if r < 0.3:
                op = rng.choice(["set", "add", "replace"] + ([] if number else ["append", "prepend"]))
                value = str(rng.randrange(10 ** rng.randrange(1, 20))) if number \
                    else rng.choice("abc") * rng.randrange(1, 40)
                line, want = store(op, key, value)
            elif r < 0.6:
                line, want = arith(rng.choice(["incr", "decr"]), key)
            elif r < 0.7:
                line = f"delete {key}\r\n"
                want = "DELETED\r\n" if model.pop(key, None) is not None else "NOT_FOUND\r\n"
            else:
                line = f"get {key}\r\n"
                want = f"VALUE {key} 0 {len(have)}\r\n{have}\r\nEND\r\n" if have is not None else "END\r\n"
            batch.append(line)
            expected.append(want)
        c.send("".join(batch).encode())
        want = "".join(expected).encode()
        got = c.read_exact(len(want))
        tally.add("model_requests", len(batch))
        if got != want:
            tally.problem(f"model client: expected {want[:300]!r}, got {got[:300]!r}")
            tally.add("model_mismatches")
            # Start again from a known state: every key deleted.
            c.close()
            c = Conn(port)
            model = {}
            for key in numbers + strings:
                c.send(f"delete {key}\r\n".encode())
                c.read_line()
    c.close()


# Bad input and the answer (memcached's error line). After most, `version` must answer (the
# connection is still in step); after those marked closing, the server
# answers and closes, since nothing says where the refused data ends.
BAD_LINES = [
    (b"bogus_command\r\n", b"ERROR\r\n", False),
    (b"\r\n", b"ERROR\r\n", False),
    (b"get " + b"k" * 251 + b"\r\n", b"CLIENT_ERROR bad command line format\r\n", False),
    (b"incr soak:bad:n notanumber\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n", False),
    (b"set soak:bad:k 0 0 notanumber\r\n", b"CLIENT_ERROR bad command line format\r\n", True),
    (b"set soak:bad:k 0 0 3\r\nabcdef\r\n", b"CLIENT_ERROR bad data chunk\r\n", True),
    # A line longer than any command, without a newline.
    (b"x" * 4096, b"CLIENT_ERROR line too long\r\n", True),
]


def bad_input_client(port, stop, tally, seed):
    rng = random.Random(seed)
    c = Conn(port)
    while not stop.is_set():
        line, want, closes = rng.choice(BAD_LINES)
        kind = "closed after " if closes else ""
        kind += want.split(b"\r\n")[0].decode()
        if closes:
            c.send(line)
            got = c.read_to_close()
            if got != want:
                tally.problem(f"bad input {line[:40]!r}: got {got[:80]!r} before the close")
            c.close()
            c = Conn(port)
        else:
            c.send(line + b"version\r\n")
            got = c.read_exact(len(want))
            version = c.read_line()
            if got != want or not version.startswith(b"VERSION "):
                tally.problem(f"bad input {line[:40]!r}: got {got!r} then {version!r}")
        tally.add(f"bad: {kind}")
    c.close()


def slow_client(port, stop, tally, seed):
    """Pipelines gets and never reads: the server must not buffer without bound."""
    c = Conn(port, timeout=0.5)
    burst = b"".join(f"get key:{i}\r\n".encode() for i in range(1000))
    while not stop.is_set():
        try:
            c.send(burst)
            tally.add("slow_bytes_sent", len(burst))
        except socket.timeout:
            # The server stopped reading: everything is in socket buffers.
            tally.add("slow_blocked_sends")
            stop.wait(0.5)
    c.close()


def flood_client(port, stop, tally, seed):
    rng = random.Random(seed)
    c = Conn(port)
    while not stop.is_set():
        keys = [f"soak:flood:{rng.randrange(2000)}" for _ in range(2000)]
        burst = b"".join(f"set {k} 0 0 8\r\nfloodval\r\nget {k}\r\n".encode() for k in keys)
        c.send(burst)
        # Each set then get of the same key, on one connection: in order.
        for k in keys:
            want = f"STORED\r\nVALUE {k} 0 8\r\nfloodval\r\nEND\r\n".encode()
            got = c.read_exact(len(want))
            if got != want:
                tally.problem(f"flood: expected {want!r}, got {got!r}")
                break
        tally.add("flood_requests", 2 * len(keys))
    c.close()


def disconnect_client(port, stop, tally, seed):
    rng = random.Random(seed)
    while not stop.is_set():
        c = Conn(port)
        n = rng.randrange(100, 5000)
        c.send(b"".join(f"get key:{rng.randrange(20000)}\r\nset soak:dc:{i % 100} 0 0 1\r\nx\r\n".encode()
                        for i in range(n)))
        if rng.random() < 0.5:
            c.read_exact(rng.randrange(1, 200))
        c.close()
        tally.add("disconnects")
        tally.add("disconnect_requests_sent", 2 * n)


# The hostile clients' value: memcached's 1 MB.
BIG = 1_000_000


def big_key(seed):
    return f"B{seed}"


def store_big(c, key):
    c.send(f"set {key} 0 0 {BIG}\r\n".encode() + b"b" * BIG + b"\r\n")
    got = c.read_line()
    if got != b"STORED\r\n":
        raise ConnectionError(f"storing {key}: {got!r}")


def hostile_client(port, stop, tally, seed):
    """Over and over: a 1 MB value named 4,000 times in one get line, 2,000
    pipelined `mg <key> v`, 2,000 binary GETKQ, each from a connection that
    never reads, held for 3 s and closed."""
    key = big_key(seed)
    store_big(Conn(port), key)
    k = key.encode()
    payloads = {
        "amplifying get lines": b"get" + (b" " + k) * 4000 + b"\r\n",
        "mg pipelines, never read": (b"mg " + k + b" v\r\n") * 2000,
        "GETKQ pipelines, never read": getkq(k) * 2000,
    }
    while not stop.is_set():
        held = []
        for name, payload in payloads.items():
            held.append(never_reads(port, payload))
            tally.add(name)
        stop.wait(3)
        for s in held:
            s.close()


def slow_reader_client(port, stop, tally, seed):
    """Over and over: a multi-get of a 1 MB value 20 times, read 64 KiB at a
    time with a pause, every byte checked."""
    key = big_key(seed)
    c = Conn(port)
    store_big(c, key)
    want = (f"VALUE {key} 0 {BIG}\r\n".encode() + b"b" * BIG + b"\r\n") * 20 + b"END\r\n"
    while not stop.is_set():
        c.send(f"get {' '.join([key] * 20)}\r\n".encode())
        got = b""
        while len(got) < len(want):
            time.sleep(0.002)
            chunk = c.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed by the server")
            got += chunk
        if got != want:
            tally.problem(f"slow reader: {len(got)} bytes, not the {len(want)} expected")
            break
        tally.add("slow multi-gets read whole")
    c.close()


def memory_bound(connections):
    """The RSS bound of docs/operations.md for this soak's servers (`-m 256`,
    2 threads, the default budget and item size) with `connections` open."""
    mib, kib = 1 << 20, 1 << 10
    per_connection = 256 * kib + 2 * (mib + 512) + (mib + 32 * kib) + (512 + 2048) * 128
    return 256 * mib + connections * per_connection + 32 * mib + 2 * 8 * mib


def guarded(client, port, stop, tally, seed):
    try:
        client(port, stop, tally, seed)
    except Exception as e:  # a fault client must not die silently
        tally.problem(f"{client.__name__}: {type(e).__name__}: {e}")


def svg_plot(series, duration):
    """Two panels (RSS MiB, open fds) over seconds, one line per runtime."""
    width, height, pad = 760, 220, 50
    colors = {"thread-per-core": "#1f77b4", "work-stealing": "#d62728"}
    panels = [("RSS (MiB)", "rss", 1 / (1 << 20)), ("open descriptors", "fds", 1)]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{2 * height + 30}" '
             'font-family="sans-serif" font-size="12">']
    for p, (title, field, scale) in enumerate(panels):
        top = p * height + 20
        values = [s[field] * scale for rt in series for s in series[rt]]
        hi = max(values + [1]) * 1.1
        tmax = max([s["t"] for rt in series for s in series[rt]] + [duration, 1])
        x = lambda t: pad + (width - 2 * pad) * t / tmax
        y = lambda v: top + height - pad + -(height - 2 * pad) * v / hi
        parts.append(f'<text x="{pad}" y="{top + 10}">{title} over seconds</text>')
        parts.append(f'<line x1="{pad}" y1="{y(0)}" x2="{width - pad}" y2="{y(0)}" stroke="black"/>')
        parts.append(f'<line x1="{pad}" y1="{y(0)}" x2="{pad}" y2="{y(hi)}" stroke="black"/>')
        for frac in (0, 0.5, 1):
            parts.append(f'<text x="5" y="{y(hi * frac / 1.1) + 4}">{hi * frac / 1.1:.0f}</text>')
            parts.append(f'<text x="{x(tmax * frac) - 8}" y="{y(0) + 16}">{tmax * frac:.0f}</text>')
        for i, rt in enumerate(series):
            points = " ".join(f"{x(s['t']):.1f},{y(s[field] * scale):.1f}" for s in series[rt])
            parts.append(f'<polyline fill="none" stroke="{colors[rt]}" stroke-width="1.5" points="{points}"/>')
            parts.append(f'<text x="{width - pad - 150}" y="{top + 10 + 14 * i}" fill="{colors[rt]}">{rt}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("duration", type=int, nargs="?", default=60, help="seconds of load (at least 20)")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "soak"), help="where the report goes")
    parser.add_argument("--no-build", action="store_true", help="use target/release as it is")
    parser.add_argument("--connections", type=int, default=50, help="loadgen's connections per server")
    args = parser.parse_args()
    duration = max(args.duration, 20)
    os.makedirs(args.out, exist_ok=True)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "corecache", "-p", "loadgen"], cwd=ROOT, check=True)
    corecache = os.path.join(ROOT, "target", "release", "corecache")
    loadgen = os.path.join(ROOT, "target", "release", "loadgen")

    servers = {rt: Server(corecache, rt, args.out) for rt in RUNTIMES}
    baseline = {rt: {"fds": s.fds(), "rss": s.rss()} for rt, s in servers.items()}
    stop = threading.Event()
    tallies = {rt: Tally() for rt in RUNTIMES}
    threads, loadgens = [], {}
    for n, (rt, server) in enumerate(servers.items()):
        json_path = os.path.join(args.out, f"loadgen-{rt}.json")
        # The measured phase ends 5 s before the faults stop, so loadgen's
        # drain never races the end of the soak.
        loadgens[rt] = (json_path, subprocess.Popen(
            [loadgen, "--server", f"127.0.0.1:{server.port}", "--connections", str(args.connections),
             "--pipeline", "16", "--keys", "20000", "--value-size", "32-512",
             "--mix", MIX, "--multiget", "4", "--verify=strict", "--prefill",
             "--warmup", "1s", "--duration", f"{duration - 5}s", "--seed", str(n + 1),
             "--json", json_path],
            stdout=open(os.path.join(args.out, f"loadgen-{rt}.txt"), "w"), stderr=subprocess.STDOUT))
        for i, client in enumerate([model_client, bad_input_client, slow_client, flood_client,
                                    disconnect_client, disconnect_client, hostile_client,
                                    slow_reader_client]):
            t = threading.Thread(target=guarded, args=(client, server.port, stop, tallies[rt], 100 * n + i))
            t.start()
            threads.append(t)

    series = {rt: [] for rt in RUNTIMES}
    start = time.time()
    alive = True
    while time.time() - start < duration:
        time.sleep(1)
        for rt, server in servers.items():
            if server.proc.poll() is not None:
                alive = False
                continue
            st = server.stats()
            rss = server.rss()
            bound = memory_bound(int(st["curr_connections"]))
            if rss > bound:
                tallies[rt].problem(f"RSS {rss >> 20} MiB over the bound {bound >> 20} MiB "
                                    f"with {st['curr_connections']} connections")
            series[rt].append({"t": round(time.time() - start, 1), "rss": rss, "fds": server.fds(),
                               "conns": int(st["curr_connections"]), "inflight": int(st["forward_inflight"]),
                               "waiting": int(st["forward_waiting"]), "mailbox_max": int(st["mailbox_max_depth"])})
        if not alive:
            break
    stop.set()
    for t in threads:
        t.join(timeout=30)
    results = {}
    for rt, server in servers.items():
        json_path, proc = loadgens[rt]
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        report = json.load(open(json_path)) if os.path.exists(json_path) else None
        quiet = None
        if server.proc.poll() is None:
            # Every client is gone: one connection (this one) and nothing in flight.
            deadline = time.time() + 10
            while time.time() < deadline:
                quiet = server.stats()
                if quiet["curr_connections"] == "1" and quiet["forward_inflight"] == "0":
                    break
                time.sleep(0.2)
            quiet_fds = server.fds()
            quiet_rss = server.rss()
            server.stats_conn.close()
            server.proc.send_signal(signal.SIGTERM)
            try:
                code = server.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                code = "hung"
        else:
            code, quiet_fds, quiet_rss = server.proc.returncode, None, None
        results[rt] = {"loadgen": report, "loadgen_exit": proc.returncode, "quiet": quiet,
                       "quiet_fds": quiet_fds, "quiet_rss": quiet_rss, "exit": code}

    # Verdict.
    failures = []
    for rt in RUNTIMES:
        r, s, tally = results[rt], series[rt], tallies[rt]
        lg = r["loadgen"]
        if lg is None:
            failures.append(f"{rt}: loadgen wrote no report (exit {r['loadgen_exit']})")
        elif r["loadgen_exit"] != 0 or lg["errors"]["total"] != 0:
            failures.append(f"{rt}: loadgen exit {r['loadgen_exit']}, errors {lg['errors']}")
        if tally.counts.get("problems"):
            failures.append(f"{rt}: {tally.counts['problems']} fault-client problems: {tally.problems[:3]}")
        q = r["quiet"]
        if q is None:
            failures.append(f"{rt}: the server died during the run")
        else:
            if q["curr_connections"] != "1" or q["forward_inflight"] != "0" or q["forward_waiting"] != "0":
                failures.append(f"{rt}: after the clients left: curr_connections {q['curr_connections']}, "
                                f"forward_inflight {q['forward_inflight']}, forward_waiting {q['forward_waiting']}")
            if q["request_panics"] != "0" or q.get("tick_panics", "0") != "0":
                failures.append(f"{rt}: {q['request_panics']} request panics, "
                                f"{q.get('tick_panics')} tick panics")
            # 20,000 keys of at most 512 bytes fit in 256 MiB many times
            # over: an eviction would make a strict miss look like a loss.
            if q.get("evictions", "0") != "0":
                failures.append(f"{rt}: {q['evictions']} evictions")
            if r["quiet_fds"] > baseline[rt]["fds"] + 1:
                failures.append(f"{rt}: {r['quiet_fds']} descriptors open at the end, {baseline[rt]['fds']} at start")
        if r["exit"] != 0:
            failures.append(f"{rt}: exit status {r['exit']} on SIGTERM")
        half = [x["rss"] for x in s[: len(s) // 2]]
        last = [x["rss"] for x in s[len(s) * 3 // 4:]]
        if half and last and max(last) > max(half) * 1.10 + (8 << 20):
            failures.append(f"{rt}: RSS grew: first half peak {max(half) >> 20} MiB, "
                            f"last quarter peak {max(last) >> 20} MiB")

    verdict = "PASS" if not failures else "FAIL"
    md = [f"# Soak report: {verdict}", "",
          f"{duration} s, both runtimes at once on loopback, 2 threads each, unpinned, "
          f"`-m 256`; started {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(start))} UTC "
          f"on {os.cpu_count()} CPUs.", "",
          f"Load per server: loadgen `--verify=strict`, {args.connections} connections, pipeline 16, "
          f"`--mix {MIX}` (multi-gets of 4 keys), 32-512 byte values over 20,000 keys; a model client "
          "(set/add/replace/append/prepend/incr/decr/delete/get, every reply checked); bad input; "
          "a client that never reads; a flooding client (4,000-request bursts); two clients that "
          "disconnect mid-pipeline, over and over; hostile clients (a 1 MB value named 4,000 "
          "times in one get line, 2,000 pipelined `mg v`, 2,000 binary GETKQ, none reading, each "
          "held 3 s, over and over; a slow reader of a 20 MB multi-get). Every sample's RSS is "
          "checked against the memory bound for the connections open (docs/operations.md).", ""]
    if failures:
        md += ["## Failures", ""] + [f"- {f}" for f in failures] + [""]
    md += ["## Requests and errors", "",
           "| | " + " | ".join(RUNTIMES) + " |", "|---|" + "---:|" * len(RUNTIMES)]

    def row(name, f):
        md.append(f"| {name} | " + " | ".join(str(f(rt)) for rt in RUNTIMES) + " |")

    lg = lambda rt: results[rt]["loadgen"] or {"errors": {}, "requests": "-", "ops_per_sec": 0}
    q = lambda rt: results[rt]["quiet"] or {}
    row("requests served (server `cmd_get` + `cmd_set`, keys)", lambda rt: int(q(rt).get("cmd_get", 0)) + int(q(rt).get("cmd_set", 0)))
    row("loadgen requests (measured phase)", lambda rt: lg(rt)["requests"])
    for kind in ["error", "client_error", "server_error", "not_stored", "mismatch", "io"]:
        row(f"loadgen errors: {kind}", lambda rt, k=kind: lg(rt)["errors"].get(k, "-"))
    row("**verify failures** (wrong value)", lambda rt: lg(rt)["errors"].get("verify_failed", "-"))
    row("**lost writes** (strict misses / stale reads)", lambda rt: lg(rt)["errors"].get("strict_miss", "-"))
    row("model client requests", lambda rt: tallies[rt].counts.get("model_requests", 0))
    row("**model client mismatches**", lambda rt: tallies[rt].counts.get("model_mismatches", 0))
    bad_kinds = sorted({k for rt in RUNTIMES for k in tallies[rt].counts if k.startswith("bad: ")})
    for kind in bad_kinds:
        row(f"bad input answered `{kind[5:]}`", lambda rt, k=kind: tallies[rt].counts.get(k, 0))
    row("flood requests (all replies checked)", lambda rt: tallies[rt].counts.get("flood_requests", 0))
    row("mid-pipeline disconnects", lambda rt: tallies[rt].counts.get("disconnects", 0))
    row("slow client: bytes sent, never read", lambda rt: tallies[rt].counts.get("slow_bytes_sent", 0))
    for name in ["amplifying get lines", "mg pipelines, never read", "GETKQ pipelines, never read",
                 "slow multi-gets read whole"]:
        row(f"hostile: {name}", lambda rt, n=name: tallies[rt].counts.get(n, 0))
    row("fault-client problems", lambda rt: tallies[rt].counts.get("problems", 0))
    row("evictions", lambda rt: q(rt).get("evictions", "-"))
    row("request panics", lambda rt: q(rt).get("request_panics", "-"))
    row("output budget waits", lambda rt: q(rt).get("output_budget_waits", "-"))
    row("reads refused for the budget (`get_budget_refused`)", lambda rt: q(rt).get("get_budget_refused", "-"))
    row("exit status on SIGTERM", lambda rt: results[rt]["exit"])
    md += ["", "## RSS and descriptors", "", "![RSS and descriptors over time](rss_fds.svg)", "",
           "| | " + " | ".join(RUNTIMES) + " |", "|---|" + "---:|" * len(RUNTIMES)]
    mib = lambda b: f"{b / (1 << 20):.1f}"
    row("RSS at start, MiB", lambda rt: mib(baseline[rt]["rss"]))
    row("RSS min / max under load, MiB", lambda rt: f"{mib(min(x['rss'] for x in series[rt]))} / {mib(max(x['rss'] for x in series[rt]))}" if series[rt] else "-")
    row("RSS after the clients left, MiB", lambda rt: mib(results[rt]["quiet_rss"] or 0))
    row("memory bound at the most connections seen, MiB",
        lambda rt: mib(memory_bound(max((x["conns"] for x in series[rt]), default=0))))
    row("descriptors at start", lambda rt: baseline[rt]["fds"])
    row("descriptors min / max under load", lambda rt: f"{min(x['fds'] for x in series[rt])} / {max(x['fds'] for x in series[rt])}" if series[rt] else "-")
    row("descriptors after the clients left", lambda rt: results[rt]["quiet_fds"])
    row("connections max under load", lambda rt: max((x["conns"] for x in series[rt]), default="-"))
    row("mailbox max depth (messages)", lambda rt: max((x["mailbox_max"] for x in series[rt]), default="-"))
    md += ["", "Samples, one a second: `samples.csv`. Server logs: `server-*.log`; loadgen reports: "
           "`loadgen-*.json`.", ""]
    for rt in RUNTIMES:
        if tallies[rt].problems:
            md += [f"Problems seen by the {rt} fault clients (first few):", ""]
            md += [f"- `{p[:300]}`" for p in tallies[rt].problems[:5]] + [""]
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(args.out, "rss_fds.svg"), "w") as f:
        f.write(svg_plot(series, duration))
    with open(os.path.join(args.out, "samples.csv"), "w") as f:
        f.write("runtime,t,rss,fds,conns,forward_inflight,forward_waiting,mailbox_max_depth\n")
        for rt in RUNTIMES:
            for x in series[rt]:
                f.write(f"{rt},{x['t']},{x['rss']},{x['fds']},{x['conns']},{x['inflight']},{x['waiting']},{x['mailbox_max']}\n")
    print("\n".join(md))
    print(f"report: {os.path.join(args.out, 'report.md')}")
    print(f"SOAK {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
