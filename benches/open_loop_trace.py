#!/usr/bin/env python3
"""Where an open-loop send's lateness comes from, traced with perf.

Runs one loadgen open loop (single thread) under `perf record -a` with the
kernel's timer, scheduler and syscall tracepoints, then follows every
send from its intended time to its `sendto`:

  due               the time loadgen armed its timerfd for (hrtimer_start,
                    softexpires: the schedule's due time)
  timer fires       hrtimer_expire_entry of that timer (its `now`)
  loadgen woken     sched_wakeup of the loadgen thread
  loadgen on CPU    sched_switch to it
  epoll returns     sys_exit_epoll_wait
  sendto            sys_enter_sendto: the request leaves

and prints each step's percentiles, how many sends each wake made, and
how many wakes landed on another CPU than the timer's. perf records with
`-k mono`, so the tracepoint times and the hrtimer's expiry times are on
one clock (CLOCK_MONOTONIC).

    flock /tmp/cpu.lock python3 benches/open_loop_trace.py -- \\
        --server 127.0.0.1:PORT --connections 20 --rate 2000 --duration 2s \\
        --warmup 200ms --get-ratio 1 --keys 1000

Everything after `--` goes to loadgen (`--threads` must stay 1). Needs
perf with tracepoints (root). The tracing itself adds a few microseconds
to every syscall, so read the steps as shares, not as the untraced run's
figures.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = ("timer:hrtimer_start,timer:hrtimer_expire_entry,sched:sched_wakeup,sched:sched_switch,"
          "syscalls:sys_enter_sendto,syscalls:sys_exit_epoll_wait")
LINE = re.compile(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)")


def events(path):
    """(ns, comm, tid, cpu, event, fields) of every line of `perf script`."""
    out = subprocess.run(["perf", "script", "-i", path, "--ns", "-F", "comm,tid,cpu,time,event,trace"],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            comm, tid, cpu, t, ev, rest = m.groups()
            yield int(round(float(t) * 1e9)), comm, int(tid), int(cpu), ev, rest


def field(rest, name):
    return re.search(rf"{name}=(\S+)", rest).group(1)


def sends(evs, thread):
    """One dict per traced send: the times of its steps, in ns."""
    tid, armed, cur, per_wake, out = None, {}, None, [], []
    for t, comm, etid, cpu, ev, rest in evs:
        if tid is None and comm == thread:
            tid = etid
        if ev == "timer:hrtimer_start" and etid == tid and "timerfd_tmrproc" in rest:
            armed[field(rest, "hrtimer")] = int(field(rest, "softexpires"))
        elif ev == "timer:hrtimer_expire_entry" and "timerfd_tmrproc" in rest:
            due = armed.pop(field(rest, "hrtimer"), None)
            if due is not None:
                cur = {"due": due, "fire": int(field(rest, "now")), "fire_cpu": cpu}
        elif ev == "syscalls:sys_exit_epoll_wait" and etid == tid:
            per_wake.append(0)
            if cur is not None and "epoll" not in cur:
                cur["epoll"] = t
        elif ev == "syscalls:sys_enter_sendto" and etid == tid:
            if per_wake:
                per_wake[-1] += 1
            if cur is not None:
                cur["sendto"] = t
                out.append(cur)
                cur = None
        elif cur is None:
            continue
        elif ev == "sched:sched_wakeup" and f"pid={tid} " in rest and "wake" not in cur:
            cur["wake"], cur["wake_cpu"] = t, int(field(rest, "target_cpu"))
        elif ev == "sched:sched_switch" and f"next_pid={tid} " in rest and "run" not in cur:
            cur["run"] = t
    return out, per_wake


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/loadgen"))
    p.add_argument("loadgen_args", nargs=argparse.REMAINDER)
    args = p.parse_args()
    extra = [a for a in args.loadgen_args if a != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-k", "mono", "-q", "-o", data, "-e", EVENTS, "-a", "--",
                        args.loadgen, "--threads", "1"] + extra, check=True, stdout=sys.stdout)
        rows, per_wake = sends(events(data), "loadgen-0")
    print(f"\n{len(rows)} sends traced; microseconds")
    print(f"{'step':30} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>8}")
    for a, b, name in [("fire", "due", "due -> timer fires"), ("wake", "fire", "timer fires -> loadgen woken"),
                       ("run", "wake", "woken -> on CPU"), ("epoll", "run", "on CPU -> epoll_wait returns"),
                       ("sendto", "epoll", "epoll_wait returns -> sendto"), ("sendto", "due", "due -> sendto")]:
        v = [(r[a] - r[b]) / 1e3 for r in rows if a in r and b in r]
        print(f"{name:30} {pct(v, .5):7.1f} {pct(v, .9):7.1f} {pct(v, .99):7.1f} {max(v, default=0):8.1f}")
    other = sum(1 for r in rows if "wake_cpu" in r and r["wake_cpu"] != r["fire_cpu"])
    print(f"woken on another CPU than the timer fired on: {other} of {len(rows)}")
    hist = {}
    for n in per_wake:
        hist[n] = hist.get(n, 0) + 1
    print("sends per epoll_wait return: " + ", ".join(f"{k}: {v}" for k, v in sorted(hist.items())))


if __name__ == "__main__":
    main()
