#!/usr/bin/env python3
"""Does loadgen's open loop measure a light load right? Its percentiles
beside those of a client that sends one request at a time per connection.

Against one server started here (memcached -t 2 -U 0 by default; with
--corecache PATH also corecache --threads 2, default flags), for each rate
and repeat, runs

  loadgen        --rate R --connections C --pipeline 1 --threads 1
                 --get-ratio 1 (open loop: one thread, a timerfd per
                 connection); each --loadgen NAME=PATH build in turn
  one_at_a_time  --rate R --connections C (benches/one_at_a_time.rs: a
                 thread per blocking connection, one request in flight
                 each, clock_nanosleep pauses on loadgen's schedule)

back to back, alternating which goes first, on the same keys (`key:0` to
`key:<keys-1>`, 32-byte values, stored once first). Every rate runs before
any rate's next repeat, so a machine that slows down slows every client
alike. Prints each run, then per rate the medians with min-max and the
ratio loadgen / one_at_a_time of the medians (with the range of the
per-repeat ratios), as a Markdown table.

CPU placement: both clients unpinned by default; --client-cpu N pins both
to CPU N (loadgen --cpus N, every one_at_a_time thread --cpu N). memcached
is never pinned (it cannot pin its threads); corecache keeps its default
(pinned) unless --corecache-flags says otherwise.

    cargo build --release --workspace
    flock /tmp/cpu.lock python3 benches/light_load.py --repeat 3 --json out.json

Run it alone on the machine: it measures tens of microseconds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forwarding import ROOT, free_port, wait_for_port  # noqa: E402


def reference_binary():
    """Path of the one_at_a_time bench executable cargo built."""
    out = subprocess.run(
        ["cargo", "bench", "--bench", "one_at_a_time", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("executable") and msg.get("target", {}).get("name") == "one_at_a_time":
            return msg["executable"]
    sys.exit("cargo did not report the one_at_a_time executable")


def start_server(kind, args):
    port = free_port()
    if kind == "memcached":
        argv = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-t", "2", "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
    else:
        argv = [args.corecache, "--listen", f"127.0.0.1:{port}", "--threads", "2"]
        argv += args.corecache_flags.split()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(proc, port)
    return proc, port


def run_loadgen(binary, port, rate, args):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [binary, "--server", f"127.0.0.1:{port}", "--rate", str(rate),
               "--connections", str(args.connections), "--pipeline", "1", "--threads", "1",
               "--get-ratio", "1", "--keys", str(args.keys), "--value-size", "32",
               "--duration", args.duration, "--warmup", args.warmup, "--json", out.name]
        if args.client_cpu is not None:
            cmd += ["--cpus", str(args.client_cpu)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        r = json.load(open(out.name))
    # Builds before the open_loop report had no lateness figures.
    o = r.get("open_loop") or {"lateness_us": {"p50": float("nan"), "p99": float("nan")},
                               "held": 0, "sends": 0}
    return {"p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
            "p999": r["latency_us"]["p999"], "requests": r["requests"],
            "late_p50": o["lateness_us"]["p50"], "late_p99": o["lateness_us"]["p99"],
            "held": o["held"], "sends": o["sends"], "cpu_us": r["cpu"]["us_per_request"]}


def run_reference(binary, port, rate, args, prefill=False):
    """One run of one_at_a_time; with `prefill`, a 100 ms run that first
    stores every key."""
    duration, warmup = ("100ms", "0s") if prefill else (args.duration, args.warmup)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [binary, "--server", f"127.0.0.1:{port}", "--rate", str(rate),
               "--connections", str(args.connections), "--keys", str(args.keys),
               "--value-size", "32", "--duration", duration, "--warmup", warmup,
               "--json", out.name]
        if prefill:
            cmd += ["--prefill"]
        if args.client_cpu is not None:
            cmd += ["--cpu", str(args.client_cpu)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        r = json.load(open(out.name))
    return {"p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
            "p999": r["latency_us"]["p999"], "requests": r["requests"],
            "late_p50": r["send_lateness_us"]["p50"], "late_p99": r["send_lateness_us"]["p99"],
            "late_sends": r["late_sends"]}


def span(v, fmt="{:.1f}"):
    return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}-{fmt.format(max(v))})"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loadgen", action="append", default=[],
                   help="NAME=PATH of a loadgen build (repeatable; default loadgen=this build's)")
    p.add_argument("--reference", help="one_at_a_time executable (default: ask cargo)")
    p.add_argument("--corecache", help="also measure this corecache binary, --threads 2")
    p.add_argument("--corecache-flags", default="", help="extra corecache flags, space-separated")
    p.add_argument("--servers", default=None, help="memcached,corecache (default: memcached, "
                   "and corecache when --corecache is given)")
    p.add_argument("--rates", default="500,1000,2000,5000")
    p.add_argument("--connections", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", default="5s")
    p.add_argument("--warmup", default="1s")
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--client-cpu", type=int, help="pin both clients to this CPU (default unpinned)")
    p.add_argument("--json", help="write every run here")
    args = p.parse_args()
    reference = args.reference or reference_binary()
    loadgens = dict(x.split("=", 1) for x in args.loadgen) or {
        "loadgen": os.path.join(ROOT, "target/release/loadgen")}
    servers = (args.servers or ("memcached,corecache" if args.corecache else "memcached")).split(",")
    rates = [int(r) for r in args.rates.split(",")]
    placement = "unpinned" if args.client_cpu is None else f"pinned to CPU {args.client_cpu}"
    print(f"# {os.uname().release}, {os.cpu_count()} CPUs; clients {placement}; "
          f"{args.connections} connections, pipeline 1, gets of {args.keys} keys (32 B), "
          f"{args.warmup} warmup + {args.duration} per run, {args.repeat} interleaved repeats")
    runs = []
    for server in servers:
        proc, port = start_server(server, args)
        try:
            run_reference(reference, port, 100, args, prefill=True)
            print(f"{'server':10} {'rep':>3} {'rate':>5} {'client':14} {'p50':>7} {'p99':>7} {'p99.9':>8} "
                  f"{'late p50':>8} {'late p99':>8}")
            for rep in range(args.repeat):
                for i, rate in enumerate(rates):
                    order = list(loadgens) + ["one_at_a_time"]
                    if (rep + i) % 2:
                        order.reverse()
                    for client in order:
                        if client in loadgens:
                            r = run_loadgen(loadgens[client], port, rate, args)
                        else:
                            r = run_reference(reference, port, rate, args)
                        r.update(server=server, rep=rep, rate=rate, client=client,
                                 connections=args.connections, placement=placement)
                        runs.append(r)
                        print(f"{server:10} {rep:>3} {rate:>5} {client:14} {r['p50']:7.1f} {r['p99']:7.1f} "
                              f"{r['p999']:8.1f} {r['late_p50']:8.1f} {r['late_p99']:8.1f}", flush=True)
        finally:
            proc.kill()
            proc.wait()

    print("\n# median (min-max) over repeats, microseconds; ratio = loadgen / one_at_a_time of the "
          "medians (range of the per-repeat ratios)")
    print("| server | rate/s | conns | loadgen | loadgen p50 | one_at_a_time p50 | ratio | loadgen p99 | "
          "one_at_a_time p99 | ratio | sends late p50 / p99 | sends held |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in loadgens:
        worst = 0.0
        for server in servers:
            for rate in rates:
                def cell(c):
                    return sorted((r for r in runs if (r["server"], r["rate"], r["client"]) == (server, rate, c)),
                                  key=lambda r: r["rep"])
                lgs, refs = cell(name), cell("one_at_a_time")
                row = [server, str(rate), str(args.connections), name]
                for q in ("p50", "p99"):
                    lg = [r[q] for r in lgs]
                    ref = [r[q] for r in refs]
                    ratio = statistics.median(lg) / statistics.median(ref)
                    pairs = [a / b for a, b in zip(lg, ref)]
                    worst = max(worst, abs(ratio - 1))
                    row += [span(lg), span(ref), f"{ratio:.2f} ({min(pairs):.2f}-{max(pairs):.2f})"]
                row.append(f"{statistics.median(r['late_p50'] for r in lgs):.0f} / "
                           f"{statistics.median(r['late_p99'] for r in lgs):.0f}")
                row.append(f"{sum(r['held'] for r in lgs)} of {sum(r['sends'] for r in lgs)}")
                print("| " + " | ".join(row) + " |")
        print(f"<!-- {name}: largest gap between medians {worst * 100:.0f}% "
              f"({'within' if worst <= 0.2 else 'NOT within'} 20%) -->")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"placement": placement, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
