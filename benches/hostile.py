#!/usr/bin/env python3
"""Hostile clients against corecache (both runtimes) and memcached, side by
side: peak RSS, and whether a well-behaved client connected first is
answered while they run.

The attack (loopback only), at -m 64 and 2 threads:
  - one 16 KB line, `get big big ...`, naming a 1,000,000-byte value
    4,000 times (4 GB of replies), from a client that never reads;
  - 50 clients pipelining 100 `get big` each, never reading;
  - one client pipelining 2,000 `mg big v`, never reading;
  - one client sending 2,000 binary GETKQ for it, never reading.
Every attacking socket has a 4 KiB receive buffer. The well-behaved
client sends `version` every 50 ms for the whole run and records how long
each answer took.

    cargo build --release
    python3 benches/hostile.py                     # 10 s per server
    python3 benches/hostile.py --seconds 20 --json docs/results/hostile.json

Prints one row per server: peak RSS (VmHWM), RSS at the end, the slowest
`version` answer and how many went unanswered (over 5 s).
"""
import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forwarding import ROOT, free_port, wait_for_port  # noqa: E402

MIB = 1 << 20


def status_bytes(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def never_reads(port, payload):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    # Send what the server takes; the rest is dropped when the kernel's
    # buffers are full (the server stopped reading): that is the point.
    try:
        s.sendall(payload)
    except BlockingIOError:
        pass
    return s


def getkq(key):
    return struct.pack(">BBHBBHIIQ", 0x80, 0x0D, len(key), 0, 0, 0, len(key), 0, 0) + key


def attack(name, command, seconds):
    port = free_port()
    proc = subprocess.Popen(command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(proc, port)
        good = socket.create_connection(("127.0.0.1", port))
        good.settimeout(5)
        value = b"x" * 1_000_000
        good.sendall(b"set big 0 0 %d\r\n" % len(value) + value + b"\r\n")
        assert good.recv(100) == b"STORED\r\n"
        baseline = status_bytes(proc.pid, "VmRSS")
        latencies, unanswered = [], 0
        stop = threading.Event()

        def ask():
            nonlocal unanswered
            while not stop.is_set():
                start = time.perf_counter()
                try:
                    good.sendall(b"version\r\n")
                    reply = b""
                    while not reply.endswith(b"\r\n"):
                        reply += good.recv(100)
                    latencies.append(time.perf_counter() - start)
                except OSError:
                    unanswered += 1
                time.sleep(0.05)

        asker = threading.Thread(target=ask)
        asker.start()
        clients = [never_reads(port, b"get" + b" big" * 4000 + b"\r\n")]
        clients += [never_reads(port, b"get big\r\n" * 100) for _ in range(50)]
        clients.append(never_reads(port, b"mg big v\r\n" * 2000))
        clients.append(never_reads(port, getkq(b"big") * 2000))
        deadline = time.time() + seconds
        while time.time() < deadline:
            time.sleep(0.1)
        stop.set()
        asker.join()
        row = {
            "server": name,
            "peak_rss_mib": status_bytes(proc.pid, "VmHWM") / MIB,
            "end_rss_mib": status_bytes(proc.pid, "VmRSS") / MIB,
            "baseline_rss_mib": baseline / MIB,
            "answers": len(latencies),
            "unanswered": unanswered,
            "slowest_answer_ms": max(latencies, default=float("nan")) * 1000,
            "median_answer_ms": sorted(latencies)[len(latencies) // 2] * 1000 if latencies else float("nan"),
        }
        for c in clients:
            c.close()
        return row
    finally:
        proc.kill()
        proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corecache", default=os.path.join(ROOT, "target/release/corecache"))
    p.add_argument("--memcached", default="memcached")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    servers = [
        ("corecache thread-per-core", lambda port: [args.corecache, "--port", str(port), "-m", "64", "-t", "2",
                                                     "--runtime", "thread-per-core"]),
        ("corecache work-stealing", lambda port: [args.corecache, "--port", str(port), "-m", "64", "-t", "2",
                                                   "--runtime", "work-stealing"]),
        ("memcached", lambda port: [args.memcached, "-u", "root", "-l", "127.0.0.1", "-p", str(port), "-U", "0",
                                    "-m", "64", "-t", "2"]),
    ]
    print(f"# {args.seconds:.0f} s each; -m 64, 2 threads; the attack in the module doc")
    print(f"{'server':27} {'peak RSS':>9} {'end RSS':>8} {'answers':>8} {'unanswered':>10} {'median ms':>9} {'slowest ms':>10}")
    rows = []
    for name, command in servers:
        row = attack(name, command, args.seconds)
        rows.append(row)
        print(f"{name:27} {row['peak_rss_mib']:8.1f}M {row['end_rss_mib']:7.1f}M {row['answers']:8} "
              f"{row['unanswered']:10} {row['median_answer_ms']:9.2f} {row['slowest_answer_ms']:10.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
