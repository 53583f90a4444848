#!/usr/bin/env python3
"""What crossing cores costs: server CPU per request, throughput and
forwarding figures, for corecache builds and runtimes side by side.

Every cell starts a fresh server, prefills 100k keys, then runs the
bundled loadgen (50 connections, 32-byte values, 90% gets, uniform keys)
and reads, before and after the measured run, the server's user+system
CPU time from /proc/<pid>/stat and its counters from `stats` and
`stats threads`. Cells are interleaved and repeated, so a noisy neighbour
spreads over all of them; compare rows as ratios from one run.

Layouts (where loadgen runs matters more than anything on 2 CPUs):
  2t-pinned   2 server threads pinned to CPUs 0 and 1, loadgen unpinned
  2t-nopin    2 server threads unpinned (--no-pin), loadgen unpinned
  1t-split    1 server thread pinned to CPU 1, loadgen pinned to CPU 0:
              the fair single-core comparison

    cargo build --release --workspace
    python3 benches/forwarding.py                       # this build, default matrix
    python3 benches/forwarding.py --bin old=/path/to/old/corecache --bin new=target/release/corecache
    python3 benches/forwarding.py --layouts 2t-pinned --pipelines 1 --repeat 5 --extra=--spin=20us
    python3 benches/forwarding.py --shard-aware --runtimes thread-per-core --layouts 2t-pinned,2t-nopin

Prints one line per run and a summary (median and range per cell); with
--json PATH writes every run.
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
HZ = os.sysconf("SC_CLK_TCK")


def stats(port, args=""):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"stats {args}\r\n".encode())
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for line in data.decode().splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    return out


def counters(port):
    general = stats(port)
    threads = stats(port, "threads")
    total = sum(int(v) for k, v in threads.items() if k.endswith(":cmd_total"))
    keys = ["forwarded_requests", "forward_messages", "core_wakes", "core_sleeps"]
    got = {k: int(general.get(k, 0)) for k in keys}
    # Builds before the mailbox counted batches, not messages.
    if "forward_batches" in general:
        got["forward_messages"] = int(general["forward_batches"])
    got["requests"] = total
    return got


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(proc, port):
    """Returns once the server `proc` accepts on `port`; raises if it exits
    or has not started within 10 s."""
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"server on port {port} did not start: {' '.join(proc.args)}")
            time.sleep(0.02)


def rss_bytes(pid):
    """Resident set size of process `pid`, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def run_cell(binary, runtime, layout, pipeline, args):
    port = free_port()
    binary, *own_flags = binary.split(",")
    server = [binary, "--port", str(port), "--runtime", runtime, "-m", "1024"] + own_flags
    loadgen_cpus = []
    if layout == "2t-pinned":
        server += ["--threads", "2", "--cpus", "0,1"]
    elif layout == "2t-nopin":
        server += ["--threads", "2", "--no-pin"]
    elif layout == "1t-split":
        server += ["--threads", "1", "--cpus", "1"]
        loadgen_cpus = ["--cpus", "0"]
    else:
        sys.exit(f"unknown layout {layout}")
    server += args.extra
    if args.shard_aware:
        server += ["--shard-aware-port", str(free_port())]
    proc = subprocess.Popen(server, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(proc, port)
        load = [args.loadgen, "--server", f"127.0.0.1:{port}", "--threads", "1",
                "--connections", str(args.connections), "--pipeline", str(pipeline),
                "--keys", str(args.keys), "--value-size", args.value_size,
                "--get-ratio", str(args.get_ratio)]
        load += loadgen_cpus
        if args.shard_aware:
            load += ["--shard-aware"]
        subprocess.run(load + ["--prefill", "--duration", "1s", "--warmup", "0s"],
                       check=True, stdout=subprocess.DEVNULL)
        if args.rate:
            load += ["--rate", str(args.rate)]
        before_cpu, before = cpu_seconds(proc.pid), counters(port)
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(load + ["--duration", args.duration, "--warmup", "0s",
                                   "--json", out.name], check=True, stdout=subprocess.DEVNULL)
            report = json.load(open(out.name))
        after_cpu, after = cpu_seconds(proc.pid), counters(port)
    finally:
        proc.kill()
        proc.wait()
    d = {k: after[k] - before[k] for k in after}
    requests = max(d["requests"], 1)
    return {
        "ops": report["ops_per_sec"],
        "p50_us": report["latency_us"]["p50"],
        "p99_us": report["latency_us"]["p99"],
        "p999_us": report["latency_us"]["p999"],
        "cpu_us": (after_cpu - before_cpu) * 1e6 / requests,
        "forwarded": d["forwarded_requests"] / requests,
        "per_msg": d["forwarded_requests"] / d["forward_messages"] if d["forward_messages"] else 0,
        "wakes": d["core_wakes"] / requests,
        "sleeps": d["core_sleeps"] / requests,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", action="append", default=[],
                   help="NAME=PATH[,FLAG...] of a corecache binary and flags of its own "
                        "(repeatable), e.g. spin50=target/release/corecache,--spin=50us; "
                        "default this build")
    p.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/loadgen"))
    p.add_argument("--runtimes", default="thread-per-core,work-stealing")
    p.add_argument("--layouts", default="2t-pinned,2t-nopin,1t-split")
    p.add_argument("--pipelines", default="1,16")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", default="4s")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--get-ratio", default="0.9")
    p.add_argument("--value-size", default="32")
    p.add_argument("--keys", type=int, default=100000)
    p.add_argument("--rate", type=int, help="open loop: requests per second (loadgen --rate)")

    p.add_argument("--extra", action="append", default=[], help="extra server flag (repeatable)")
    p.add_argument("--shard-aware", action="store_true",
                   help="servers get a --shard-aware-port and loadgen --shard-aware: "
                        "each key sent straight to its owner core")
    p.add_argument("--json", help="write every run here")
    args = p.parse_args()
    bins = [b.split("=", 1) for b in args.bin] or [["this", os.path.join(ROOT, "target/release/corecache")]]
    cells = [(name, path, rt, lay, int(pl))
             for lay in args.layouts.split(",")
             for pl in args.pipelines.split(",")
             for rt in args.runtimes.split(",")
             for name, path in bins]
    print(f"# {os.uname().release}, {os.cpu_count()} CPUs, {args.duration} per run, "
          f"{args.connections} connections, {args.keys} keys of {args.value_size} bytes, "
          f"get ratio {args.get_ratio}, extra {args.extra}"
          f"{', shard-aware clients' if args.shard_aware else ''}")
    header = f"{'build':8} {'runtime':15} {'layout':9} {'pipe':>4} {'ops/s':>9} {'p50us':>6} {'p99us':>7} " \
             f"{'cpu_us':>7} {'fwd':>5} {'req/msg':>7} {'wake/req':>8} {'sleep/req':>9}"
    print(header)
    runs = []
    for rep in range(args.repeat):
        for name, path, rt, lay, pl in cells:
            r = run_cell(path, rt, lay, pl, args)
            r.update(build=name, runtime=rt, layout=lay, pipeline=pl, rep=rep)
            runs.append(r)
            print(f"{name:8} {rt:15} {lay:9} {pl:>4} {r['ops']:9.0f} {r['p50_us']:6.0f} {r['p99_us']:7.0f} "
                  f"{r['cpu_us']:7.2f} {r['forwarded']:5.2f} {r['per_msg']:7.2f} "
                  f"{r['wakes']:8.3f} {r['sleeps']:9.3f}", flush=True)
    print("\n# summary: median [min-max] over repeats")
    print(f"{'build':8} {'runtime':15} {'layout':9} {'pipe':>4} {'ops/s':>22} {'cpu_us/req':>20} "
          f"{'p50us':>6} {'p99us':>7} {'req/msg':>7} {'wake/req':>8}")
    for name, path, rt, lay, pl in cells:
        rs = [r for r in runs if (r["build"], r["runtime"], r["layout"], r["pipeline"]) == (name, rt, lay, pl)]
        def m(k, fmt):
            v = [r[k] for r in rs]
            return f"{fmt.format(statistics.median(v))} [{fmt.format(min(v))}-{fmt.format(max(v))}]"
        print(f"{name:8} {rt:15} {lay:9} {pl:>4} {m('ops', '{:.0f}'):>22} {m('cpu_us', '{:.2f}'):>20} "
              f"{statistics.median(r['p50_us'] for r in rs):6.0f} {statistics.median(r['p99_us'] for r in rs):7.0f} "
              f"{statistics.median(r['per_msg'] for r in rs):7.2f} "
              f"{statistics.median(r['wakes'] for r in rs):8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
