#!/usr/bin/env python3
"""The hop at ordinary load: corecache's configurations beside memcached
-t 2, in one run, interleaved and repeated (issue 18's table).

Rows, each against every server in turn:

  light     one request at a time: benches/one_at_a_time.rs, 8 connections
            (a thread each, unpinned), each sending about every 0.5 ms
            (--rate 16000 on loadgen's staggered schedule); p50 and p99
  open      loadgen's open loop, 2,000 req/s over 20 connections,
            pipeline 1, one unpinned thread; p50 and p99
  p1        loadgen closed loop, 50 connections, pipeline 1, one unpinned
            thread; ops/s, and server CPU per request (user+system from
            /proc/<pid>/stat over requests counted by `stats`)
  p16       the same at pipeline 16 (not in the default rows)

Gets only, 1,000 keys of 32 bytes stored first. Servers (--servers picks):

  memcached       memcached -t 2 -U 0 (never pinned)
  tpc             corecache --threads 2 (default flags)
  tpc-nopin       corecache --threads 2 --no-pin
  tpc-pin         corecache --threads 2 --pin
  ws              corecache --threads 2 --runtime work-stealing
  one             corecache --threads 1
and any NAME=FLAGS given with --config (corecache with those flags; a
first word with a `/` in it is another corecache binary to run, e.g.
`--config old=/tmp/cc-834` for an older build beside this one).

    cargo build --release --workspace
    flock /tmp/cpu.lock python3 benches/hop_table.py --repeat 3 --json out.json

Every server starts fresh for each repeat; the order of servers rotates
between repeats. Prints each run and a summary: medians [min-max] and the
ratio of each to memcached's median (CPU: to work-stealing's).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forwarding import ROOT, cpu_seconds, free_port, stats, wait_for_port  # noqa: E402
from light_load import reference_binary  # noqa: E402

KEYS = 1000


def configs(args):
    base = [args.corecache, "--threads", "2"]
    known = {
        "memcached": ["memcached", "-t", "2", "-U", "0", "-m", "64"]
        + (["-u", "nobody"] if os.geteuid() == 0 else []),
        "tpc": base,
        "tpc-nopin": base + ["--no-pin"],
        "tpc-pin": base + ["--pin"],
        "ws": base + ["--runtime", "work-stealing"],
        "one": [args.corecache, "--threads", "1"],
    }
    for extra in args.config:
        name, flags = extra.split("=", 1)
        words = flags.split()
        if words and "/" in words[0]:
            known[name] = [words[0], "--threads", "2"] + words[1:]
        else:
            known[name] = base + words
    return {name: known[name] for name in args.servers.split(",")}


def start(argv):
    port = free_port()
    if argv[0] == "memcached":
        argv = argv + ["-l", "127.0.0.1", "-p", str(port)]
    else:
        argv = argv + ["--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(proc, port)
    return proc, port


def requests_served(port):
    s = stats(port)
    return int(s.get("cmd_get", 0)) + int(s.get("cmd_set", 0))


def light(ref, port, args):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([ref, "--server", f"127.0.0.1:{port}", "--rate", "16000", "--connections", "8",
                        "--keys", str(KEYS), "--value-size", "32", "--duration", args.duration,
                        "--warmup", "1s", "--json", out.name], check=True, stdout=subprocess.DEVNULL)
        r = json.load(open(out.name))
    return {"p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"]}


def loadgen(port, args, extra, pid=None):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [args.loadgen, "--server", f"127.0.0.1:{port}", "--threads", "1",
               "--get-ratio", "1", "--keys", str(KEYS), "--value-size", "32",
               "--duration", args.duration, "--warmup", "1s", "--json", out.name] + extra
        before = (cpu_seconds(pid), requests_served(port)) if pid else None
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        after = (cpu_seconds(pid), requests_served(port)) if pid else None
        r = json.load(open(out.name))
    row = {"p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"], "ops": r["ops_per_sec"]}
    if pid:
        # Warmup requests are in both counts: CPU and requests span the same.
        row["cpu_us"] = (after[0] - before[0]) * 1e6 / max(after[1] - before[1], 1)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corecache", default=os.path.join(ROOT, "target/release/corecache"))
    p.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/loadgen"))
    p.add_argument("--servers", default="memcached,tpc,tpc-nopin,ws,one")
    p.add_argument("--config", action="append", default=[], help="NAME=corecache flags (repeatable)")
    p.add_argument("--rows", default="light,open,p1")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", default="5s")
    p.add_argument("--json")
    args = p.parse_args()
    servers = configs(args)
    rows = args.rows.split(",")
    ref = reference_binary()
    runs = []
    names = list(servers)
    for rep in range(args.repeat):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            proc, port = start(servers[name])
            try:
                loadgen(port, args, ["--pipeline", "1", "--prefill", "--rate", "100", "--connections", "4"])
                for row in rows:
                    if row == "light":
                        r = light(ref, port, args)
                    elif row == "open":
                        r = loadgen(port, args, ["--pipeline", "1", "--rate", "2000", "--connections", "20"])
                    elif row == "p1":
                        r = loadgen(port, args, ["--pipeline", "1", "--connections", "50"], pid=proc.pid)
                    else:
                        r = loadgen(port, args, ["--pipeline", "16", "--connections", "50"], pid=proc.pid)
                    r.update(server=name, row=row, rep=rep)
                    runs.append(r)
                    extra = f" {r['ops']:9.0f} ops/s {r['cpu_us']:6.2f} us/req" if row in ("p1", "p16") else ""
                    print(f"{rep} {name:10} {row:6} p50 {r['p50']:7.1f} p99 {r['p99']:8.1f}{extra}", flush=True)
            finally:
                proc.kill()
                proc.wait()
    print("\n# summary: median [min-max]; ratio of medians to memcached's (cpu: to ws's)")
    for row in rows:
        fields = ["p50", "p99"] + (["ops", "cpu_us"] if row in ("p1", "p16") else [])
        for field in fields:
            ref_name = "ws" if field == "cpu_us" else "memcached"
            base = [r[field] for r in runs if r["row"] == row and r["server"] == ref_name]
            print(f"{row:6} {field:7}", end="")
            for name in names:
                v = [r[field] for r in runs if r["row"] == row and r["server"] == name]
                ratio = f" x{statistics.median(v) / statistics.median(base):.2f}" if base else ""
                print(f" | {name} {statistics.median(v):.1f} [{min(v):.1f}-{max(v):.1f}]{ratio}", end="")
            print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
