#!/usr/bin/env python3
"""Syscalls (and, on a quiet machine, CPU) per request of load generators.

Runs each client against memcached -t 1 and corecache --threads 1, both on
CPU 1, with the client on CPU 0: pipeline 1 and 16, 50 connections, 90%
gets, uniform keys over a prefilled 100k-key set, 32-byte values. Every
client run is wrapped in `perf stat -e 'syscalls:sys_enter_*'`, so the
counts cover the whole client process (connect and drain included: a few
hundred calls against millions of requests). Runs are interleaved: each
repetition runs every client once per cell before the next repetition.

    python3 benches/loadgen_syscalls.py \
        --client before=/tmp/loadgen-old --client after=target/release/loadgen \
        --memtier /path/to/memtier_benchmark --repeat 5 --duration 3

A client is NAME=PATH to a loadgen binary; --memtier adds memtier_benchmark
(`-P memcache_text -t 1 -c 50 --ratio 1:9`). Extra loadgen flags for one
client: NAME=PATH=--flag,value (e.g. after1=target/release/loadgen=--refill,1).

Counts are meaningful on a busy machine only as a median over repetitions
(how many replies a read finds depends on how fast each side runs); the
CPU columns (client task-clock, server utime+stime from /proc) mean
something only on a quiet machine.

Needs perf with tracepoints (run as root), memcached, taskset, and
`cargo build --release --workspace` for corecache.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = {
    "read": ("read", "recvfrom", "readv", "recvmsg"),
    "write": ("write", "sendto", "writev", "sendmsg"),
    "poll": ("epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select"),
    "epoll_ctl": ("epoll_ctl",),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc):
    for _ in range(500):
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"server did not listen: {proc.args}")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / hz


def die_with_us():
    """Child set-up: SIGKILL when this script dies, however it dies."""
    import ctypes
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def start_servers(corecache):
    servers = {}
    port = free_port()
    argv = ["taskset", "-c", "1", "memcached", "-U", "0", "-l", "127.0.0.1",
            "-p", str(port), "-t", "1", "-m", "256"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    servers["memcached"] = (subprocess.Popen(argv, preexec_fn=die_with_us), port)
    port = free_port()
    argv = ["taskset", "-c", "1", corecache, "--port", str(port), "--threads", "1",
            "--cpus", "1", "-m", "256"]
    servers["corecache"] = (
        subprocess.Popen(argv, stdout=subprocess.DEVNULL, preexec_fn=die_with_us), port)
    for proc, port in servers.values():
        wait_port(port, proc)
    return servers


def perf_counts(path):
    counts = {}
    task_ms = 0.0
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 3 or not parts[0].replace(".", "").isdigit():
                continue
            value, event = float(parts[0]), parts[2]
            if event.startswith("syscalls:sys_enter_"):
                counts[event[len("syscalls:sys_enter_"):]] = int(value)
            elif event == "task-clock":
                task_ms = value
    return counts, task_ms


def run_client(client, port, pipeline, duration, tmp):
    name, path, extra = client
    out = os.path.join(tmp, "out.json")
    perf_out = os.path.join(tmp, "perf.txt")
    if name == "memtier":
        cmd = [path, "-s", "127.0.0.1", "-p", str(port), "-P", "memcache_text",
               "-t", "1", "-c", "50", f"--pipeline={pipeline}",
               f"--test-time={int(duration)}", "--ratio=1:9", "--key-prefix=key:",
               "--key-minimum=1", "--key-maximum=99999",
               "-d", "32", "--hide-histogram", f"--json-out-file={out}"]
    else:
        cmd = [path, "--server", f"127.0.0.1:{port}", "--cpus", "0", "--connections", "50",
               "--pipeline", str(pipeline), "--duration", f"{duration}s", "--warmup", "0s",
               "--keys", "100000", "--get-ratio", "0.9", "--json", out] + extra
    perf = ["perf", "stat", "-x,", "-e", "syscalls:sys_enter_*,task-clock", "-o", perf_out,
            "taskset", "-c", "0"] + cmd
    subprocess.run(perf, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    with open(out) as f:
        j = json.load(f)
    if name == "memtier":
        requests = int(j["ALL STATS"]["Totals"]["Count"])
    else:
        requests = j["requests"]
    counts, task_ms = perf_counts(perf_out)
    return requests, counts, task_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--client", action="append", default=[],
                    help="NAME=PATH[=--flag,value,...] of a loadgen binary (repeatable)")
    ap.add_argument("--memtier", help="memtier_benchmark binary to compare with")
    ap.add_argument("--corecache", default=os.path.join(ROOT, "target/release/corecache"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--json", help="write every run here")
    a = ap.parse_args()
    clients = []
    for c in a.client or [f"loadgen={os.path.join(ROOT, 'target/release/loadgen')}"]:
        name, path, *extra = c.split("=", 2)
        clients.append((name, path, extra[0].split(",") if extra else []))
    if a.memtier:
        clients.append(("memtier", a.memtier, []))
    pipelines = [int(p) for p in a.pipelines.split(",")]

    servers = start_servers(a.corecache)
    runs = []
    try:
        # Prefill both servers once: every key, so gets hit.
        for _, port in servers.values():
            subprocess.run([clients[0][1], "--server", f"127.0.0.1:{port}", "--connections",
                            "50", "--pipeline", "16", "--keys", "100000", "--prefill",
                            "--duration", "100ms", "--warmup", "0s"],
                           stdout=subprocess.DEVNULL, check=True)
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(a.repeat):
                for server, (proc, port) in servers.items():
                    for pipeline in pipelines:
                        for client in clients:
                            cpu0 = proc_cpu(proc.pid)
                            requests, counts, task_ms = run_client(
                                client, port, pipeline, a.duration, tmp)
                            server_cpu = proc_cpu(proc.pid) - cpu0
                            runs.append({"rep": rep, "server": server, "pipeline": pipeline,
                                         "client": client[0], "requests": requests,
                                         "syscalls": counts, "client_task_ms": task_ms,
                                         "server_cpu_s": server_cpu})
                            print(f"rep {rep} {server:<9} p{pipeline:<2} {client[0]:<10} "
                                  f"{requests:>9} requests", file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f, indent=1)
    report(runs, clients, pipelines, list(servers))


def report(runs, clients, pipelines, servers):
    def per_request(run, names):
        return sum(run["syscalls"].get(n, 0) for n in names) / max(run["requests"], 1)

    columns = list(GROUPS) + ["other", "total"]
    print("Syscalls per request, median (min-max) over repetitions; CPU columns only "
          "mean something on a quiet machine.\n")
    print("| server | pipeline | client | " + " | ".join(columns)
          + " | reads/poll | client CPU µs/req | server CPU µs/req |")
    print("|---|---:|---|" + "---:|" * (len(columns) + 3))
    known = {n for names in GROUPS.values() for n in names}
    for server in servers:
        for pipeline in pipelines:
            for name, _, _ in clients:
                rs = [r for r in runs if r["server"] == server and r["pipeline"] == pipeline
                      and r["client"] == name]
                if not rs:
                    continue
                cells = []
                values = {}
                for col in columns:
                    if col == "total":
                        v = [sum(r["syscalls"].values()) / max(r["requests"], 1) for r in rs]
                    elif col == "other":
                        v = [per_request(r, [n for n in r["syscalls"] if n not in known])
                             for r in rs]
                    else:
                        v = [per_request(r, GROUPS[col]) for r in rs]
                    values[col] = v
                    cells.append(fmt(v, 3))
                reads_per_poll = [rd / p if p else float("nan")
                                  for rd, p in zip(values["read"], values["poll"])]
                client_cpu = [r["client_task_ms"] * 1e3 / max(r["requests"], 1) for r in rs]
                server_cpu = [r["server_cpu_s"] * 1e6 / max(r["requests"], 1) for r in rs]
                print(f"| {server} | {pipeline} | {name} | " + " | ".join(cells)
                      + f" | {fmt(reads_per_poll, 1)} | {fmt(client_cpu, 2)} | "
                      f"{fmt(server_cpu, 2)} |")


def fmt(values, digits):
    values = [v for v in values if v == v]
    if not values:
        return "-"
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}–{max(values):.{digits}f})")


if __name__ == "__main__":
    main()
