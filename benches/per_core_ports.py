#!/usr/bin/env python3
"""Per-core ports against memcached: loadgen `--servers` over corecache's
per-core ports beside loadgen `--server` against memcached -t 2 (and
corecache's shared port, for reference), in one run, interleaved.

Servers (started here, side by side, on free ports, 127.0.0.1):
  memcached      memcached -t 2 -U 0 -m 256
  corecache-pc   corecache --threads 2 -m 256 --port-per-core P+1 (default
                 pinning rule); loadgen --servers P+1,P+2
  corecache      the same server's shared port P; loadgen --server P

Per repeat, each system in turn (the order rotates every repeat):
  closed  loadgen --connections 50 --pipeline 1 --threads 2: ops/s
  open    loadgen --rate 2000 --connections 20 --pipeline 1 --threads 1:
          p50 / p99 (loadgen's open loop, checked against a
          one-request-at-a-time client in benches/light_load.py)
and for corecache the change in `forwarded_requests` over each run.
loadgen is unpinned, like the servers: everything shares the machine's
CPUs. Prints every run, then medians with min-max and ratios to memcached.

    cargo build --release --bin corecache -p loadgen
    flock /tmp/cpu.lock python3 benches/per_core_ports.py --repeat 3

Run it alone on the machine.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = __file__.rsplit("/benches/", 1)[0]


def free_run(count):
    """A port with `count` free ports above it."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + count > 65535:
            continue
        try:
            for i in range(1, count + 1):
                with socket.socket() as t:
                    t.bind(("127.0.0.1", port + i))
            return port
        except OSError:
            continue


def wait_port(port):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.01)
    sys.exit(f"nothing listens on {port}")


def stat(port, name):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += s.recv(65536)
    for line in data.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == name:
            return int(parts[2])
    return None


def loadgen(binary, target, extra, duration, warmup):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [binary, *target, "--keys", "10000", "--get-ratio", "0.9",
               "--duration", duration, "--warmup", warmup, "--json", out.name, *extra]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.load(open(out.name))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corecache", default=f"{ROOT}/target/release/corecache")
    p.add_argument("--loadgen", default=f"{ROOT}/target/release/loadgen")
    p.add_argument("--memcached", default="memcached")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", default="5s")
    p.add_argument("--warmup", default="1s")
    p.add_argument("--json", help="write every run here")
    args = p.parse_args()

    mc_port = free_run(0)
    cc_port = free_run(2)
    procs = [
        subprocess.Popen([args.memcached, "-t", "2", "-U", "0", "-m", "256", "-l", "127.0.0.1",
                          "-p", str(mc_port)]
                         # memcached refuses to run as root without -u.
                         + (["-u", "root"] if os.geteuid() == 0 else []),
                         stderr=subprocess.DEVNULL),
        subprocess.Popen([args.corecache, "--listen", f"127.0.0.1:{cc_port}", "--threads", "2",
                          "-m", "256", "--port-per-core", str(cc_port + 1)],
                         stderr=subprocess.DEVNULL),
    ]
    try:
        for port in (mc_port, cc_port, cc_port + 1, cc_port + 2):
            wait_port(port)
        per_core = f"127.0.0.1:{cc_port + 1},127.0.0.1:{cc_port + 2}"
        systems = {
            "memcached": (["--server", f"127.0.0.1:{mc_port}"], None),
            "corecache-pc": (["--servers", per_core], cc_port),
            "corecache": (["--server", f"127.0.0.1:{cc_port}"], cc_port),
        }
        kinds = {
            "closed": ["--connections", "50", "--pipeline", "1", "--threads", "2"],
            "open": ["--rate", "2000", "--connections", "20", "--pipeline", "1", "--threads", "1"],
        }
        # Store every key once on each server (per-core: through its ports).
        for name, (target, _) in systems.items():
            if name != "corecache":
                loadgen(args.loadgen, target, ["--prefill", "--connections", "10"], "100ms", "0s")
        runs = []
        names = list(systems)
        print(f"{'rep':>3} {'system':13} {'run':6} {'ops/s':>9} {'p50 us':>7} {'p99 us':>7} {'fwd':>8}")
        for rep in range(args.repeat):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for kind, extra in kinds.items():
                for name in order:
                    target, stats_port = systems[name]
                    before = stat(stats_port, "forwarded_requests") if stats_port else None
                    r = loadgen(args.loadgen, target, extra, args.duration, args.warmup)
                    after = stat(stats_port, "forwarded_requests") if stats_port else None
                    run = dict(rep=rep, system=name, kind=kind, ops=r["ops_per_sec"],
                               p50=r["latency_us"]["p50"], p99=r["latency_us"]["p99"],
                               errors=r["errors"]["total"],
                               forwarded=None if before is None else after - before)
                    runs.append(run)
                    fwd = "-" if run["forwarded"] is None else run["forwarded"]
                    print(f"{rep:>3} {name:13} {kind:6} {run['ops']:9.0f} {run['p50']:7.1f} "
                          f"{run['p99']:7.1f} {fwd:>8}", flush=True)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    if args.json:
        json.dump(runs, open(args.json, "w"), indent=1)

    def values(name, kind, field):
        return [r[field] for r in runs if (r["system"], r["kind"]) == (name, kind)]

    def cell(name, kind, field):
        v = values(name, kind, field)
        return f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"

    def ratio(name, kind, field):
        mine, base = values(name, kind, field), values("memcached", kind, field)
        per_rep = [a / b for a, b in zip(mine, base)]
        return (f"{statistics.median(mine) / statistics.median(base):.2f} "
                f"({min(per_rep):.2f}-{max(per_rep):.2f})")

    print()
    print("| system | p1 c50 ops/s | vs memcached | open 2000/s p50 us | vs memcached | "
          "p99 us | vs memcached | forwarded (closed, open) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        fwd = [r["forwarded"] for r in runs if r["system"] == name]
        fwd = "-" if None in fwd else f"{max(values(name, 'closed', 'forwarded'))}, " \
                                      f"{max(values(name, 'open', 'forwarded'))} (max)"
        print(f"| {name} | {cell(name, 'closed', 'ops')} | {ratio(name, 'closed', 'ops')} | "
              f"{cell(name, 'open', 'p50')} | {ratio(name, 'open', 'p50')} | "
              f"{cell(name, 'open', 'p99')} | {ratio(name, 'open', 'p99')} | {fwd} |")
    if any(r["errors"] for r in runs):
        sys.exit("some runs saw errors")


if __name__ == "__main__":
    main()
