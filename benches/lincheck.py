#!/usr/bin/env python3
"""Issue 22's long checks: `loadgen --check linearizable` with connections
killed mid-operation, then `--check write-order`, against corecache
(thread-per-core and work-stealing) and memcached, one system at a time.

    cargo build --release --workspace
    flock /tmp/cpu.lock python3 benches/lincheck.py              # 10 min each
    python3 benches/lincheck.py --duration 20 --order-duration 5 # a smoke run

Each system gets a fresh server on loopback: corecache with --threads 3
--no-pin --spin 0 (three unpinned threads on a 2-CPU machine: the case
where a batch's forwarded writes go out in waves) and a shard-aware port,
so the check puts its connections on every core; memcached with -t 3.
The linearizability check runs 64 connections on 8 hot keys with one
connection killed every --kill-every (default 1 s); then write-order runs
with 64 connections, pipeline 4, a key pair per ordered pair of cores.

Writes loadgen's JSON reports and a summary.md to --out (default
docs/results/lincheck), and prints the summary. Exits 1 if any check
failed. Loopback only; no third-party Python packages.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forwarding import ROOT, counters, free_port, wait_for_port  # noqa: E402

SYSTEMS = ["thread-per-core", "work-stealing", "memcached"]


def start(system, port, shard_port, threads):
    if system == "memcached":
        argv = ["memcached", "-U", "0", "-l", "127.0.0.1", "-p", str(port),
                "-t", str(threads), "-m", "256", "-c", "4096"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
    else:
        argv = [os.path.join(ROOT, "target/release/corecache"), "--listen", "127.0.0.1",
                "--port", str(port), "--threads", str(threads), "--no-pin", "--spin", "0",
                "-m", "256", "-c", "4096", "--runtime", system,
                "--shard-aware-port", str(shard_port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(proc, port)
    return proc


def loadgen(port, out, args):
    argv = [os.path.join(ROOT, "target/release/loadgen"), "--server", f"127.0.0.1:{port}",
            "--json", out] + args
    started = time.time()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(done.stdout, end="", flush=True)
    with open(out) as f:
        report = json.load(f)
    report["wall_s"] = time.time() - started
    report["exit_code"] = done.returncode
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=600, help="linearizable seconds")
    p.add_argument("--order-duration", type=float, default=60, help="write-order seconds")
    p.add_argument("--kill-every", default="1s")
    p.add_argument("--threads", type=int, default=3)
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--out", default=os.path.join(ROOT, "docs/results/lincheck"))
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    failed = False
    pairs = a.threads * (a.threads - 1)
    for system in a.systems.split(","):
        port, shard_port = free_port(), free_port()
        proc = start(system, port, shard_port, a.threads)
        try:
            print(f"== {system}: --check linearizable for {a.duration:.0f} s", flush=True)
            # memcached is checked against its own model: strict but for
            # the unique an incr writes into the item a gets holds
            # (docs/lincheck.md, "memcached's incr and gets").
            spec = "memcached" if system == "memcached" else "strict"
            lin = loadgen(port, os.path.join(a.out, f"{system}-linearizable.json"), [
                "--check", "linearizable", "--connections", "64", "--hot-keys", "8",
                "--duration", f"{a.duration}s", "--kill-every", a.kill_every,
                "--spec", spec])
            print(f"== {system}: --check write-order for {a.order_duration:.0f} s", flush=True)
            order = loadgen(port, os.path.join(a.out, f"{system}-write-order.json"), [
                "--check", "write-order", "--connections", "64", "--pipeline", "4",
                "--hot-keys", str(2 * pairs), "--duration", f"{a.order_duration}s"])
            server = counters(port) if system != "memcached" else {}
        finally:
            proc.terminate()
            proc.wait()
        failed |= lin["exit_code"] != 0 or order["exit_code"] != 0
        rows.append((system, lin, order, server))

    lines = [
        f"Layout: server {a.threads} threads unpinned (corecache --spin 0, shard-aware port; "
        f"memcached -t {a.threads}), loadgen on the same 2 CPUs, each system alone.",
        "",
        "| system | ops checked | maybe applied | keys | windows | largest window | inconclusive"
        " | kills | checker CPU s | us/op | us/window | longest window ms | ops/s | forwarded"
        " | model | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for system, lin, order, server in rows:
        lines.append(
            f"| {system} | {lin['ops']} | {lin['maybe_ops']} | {lin['keys']} | {lin['windows']}"
            f" | {lin['max_window_ops']} | {lin['inconclusive_windows']} | {lin['kills']}"
            f" | {lin['checker_cpu_s']:.1f} | {lin['checker_us_per_op']:.2f}"
            f" | {lin['checker_us_per_window']:.1f} | {lin['max_window_ms']:.1f}"
            f" | {lin['ops'] / lin['elapsed_s']:.0f} | {server.get('forwarded_requests', '-')}"
            f" | {lin['config']['spec']} | {'pass' if lin['exit_code'] == 0 else 'FAIL'} |")
    lines += [
        "",
        "| system | key pairs | owner pairs | writer rounds | b-then-a reads checked | a newer | result |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for system, lin, order, server in rows:
        o = order["order"]
        lines.append(
            f"| {system} | {o['pairs']} | {o['owner_pairs']} | {o['rounds']} | {o['checked']}"
            f" | {o['a_newer']} | {'pass' if order['exit_code'] == 0 else 'FAIL'} |")
    lines += ["", "Command: `" + " ".join(["python3", "benches/lincheck.py"] + sys.argv[1:]) + "`"]
    summary = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write(summary)
    print(summary)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
