#!/usr/bin/env python3
"""One server core against redis-server and memcached: server CPU per request
at pipeline 16, the fair single-core layout (server pinned to CPU 1, its
load generator pinned to CPU 0).

redis speaks only RESP, so it is driven by its own redis-benchmark; corecache
and memcached by the bundled loadgen. The settings match: 50 connections,
pipeline 16, 32-byte values, 100k keys (redis-benchmark: -c 50 -P 16 -d 32
-r 100000, sets then gets; loadgen: 90% gets). Each server's user+system CPU
is read from /proc/<pid>/stat and its request count from its own counters
(`stats threads` cmd_total, memcached's cmd_get+cmd_set, redis's
total_commands_processed) before and after the run. Cells are interleaved
and repeated.

    apt-get install redis-server redis-tools memcached
    cargo build --release --workspace
    python3 benches/redis_compare.py --repeat 3
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forwarding import ROOT, cpu_seconds, free_port, stats, wait_for_port  # noqa: E402


def redis_commands(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"INFO stats\r\n")
        data = b""
        while b"total_commands_processed" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    raise RuntimeError("no total_commands_processed in INFO")


def memcached_requests(port):
    got = stats(port)
    return int(got["cmd_get"]) + int(got["cmd_set"])


def corecache_requests(port):
    threads = stats(port, "threads")
    return sum(int(v) for k, v in threads.items() if k.endswith(":cmd_total"))


def measure(proc, count, run):
    before_cpu, before = cpu_seconds(proc.pid), count()
    started = time.time()
    run()
    elapsed = time.time() - started
    after_cpu, after = cpu_seconds(proc.pid), count()
    requests = max(after - before, 1)
    return {"cpu_us": (after_cpu - before_cpu) * 1e6 / requests, "ops": requests / elapsed}


def loadgen(port, args, prefill=False):
    cmd = [args.loadgen, "--server", f"127.0.0.1:{port}", "--threads", "1", "--cpus", "0",
           "--connections", "50", "--pipeline", "16", "--keys", "100000", "--value-size", "32",
           "--get-ratio", "0.9", "--warmup", "0s"]
    cmd += ["--prefill", "--duration", "1s"] if prefill else ["--duration", args.duration]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def run_memcache_like(kind, args):
    port = free_port()
    if kind == "corecache":
        server = [args.corecache, "--port", str(port), "--threads", "1", "--cpus", "1", "-m", "1024"]
        count = lambda: corecache_requests(port)  # noqa: E731
    else:
        server = ["taskset", "-c", "1", "memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1",
                  "-t", "1", "-m", "1024", "-u", "root"]
        count = lambda: memcached_requests(port)  # noqa: E731
    proc = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(proc, port)
        loadgen(port, args, prefill=True)
        return measure(proc, count, lambda: loadgen(port, args))
    finally:
        proc.kill()
        proc.wait()


def run_redis(args):
    port = free_port()
    server = ["taskset", "-c", "1", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--protected-mode", "no"]
    proc = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench = ["taskset", "-c", "0", "redis-benchmark", "-p", str(port), "-q", "-c", "50", "-P", "16",
             "-d", "32", "-r", "100000", "-t", "set,get", "-n", str(args.redis_requests)]
    try:
        wait_for_port(proc, port)
        subprocess.run(bench[:-1] + ["200000"], check=True, stdout=subprocess.DEVNULL)
        return measure(proc, lambda: redis_commands(port),
                       lambda: subprocess.run(bench, check=True, stdout=subprocess.DEVNULL))
    finally:
        proc.kill()
        proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corecache", default=os.path.join(ROOT, "target/release/corecache"))
    p.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/loadgen"))
    p.add_argument("--duration", default="4s")
    p.add_argument("--redis-requests", type=int, default=2_000_000,
                   help="per redis-benchmark test (set, then get)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    print(f"# {os.uname().release}, 1 server thread on CPU 1, load generator on CPU 0, pipeline 16")
    runs = {"corecache": [], "redis": [], "memcached": []}
    for rep in range(args.repeat):
        for kind in runs:
            r = run_redis(args) if kind == "redis" else run_memcache_like(kind, args)
            runs[kind].append(r)
            print(f"{rep} {kind:10} {r['ops']:10.0f} ops/s {r['cpu_us']:6.3f} us/req "
                  f"{1e6 / r['cpu_us']:10.0f} req/cpu-s", flush=True)
    print("\n# median [min-max] of server CPU us per request; requests per CPU-second; ratio to redis")
    redis = statistics.median(r["cpu_us"] for r in runs["redis"])
    for kind, rs in runs.items():
        cpu = [r["cpu_us"] for r in rs]
        med = statistics.median(cpu)
        print(f"{kind:10} {med:6.3f} [{min(cpu):.3f}-{max(cpu):.3f}] {1e6 / med:10.0f} "
              f"x{redis / med:5.2f}")


if __name__ == "__main__":
    main()
