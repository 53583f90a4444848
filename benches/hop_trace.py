#!/usr/bin/env python3
"""Where a request's time goes at light load, traced with perf tracepoints.

One client sends one `get` at a time with a pause between them (0.5 ms by
default) over one connection, for keys its connection's core owns (local)
and keys the other core owns (forwarded), while `perf record` takes the
scheduler's wake-ups and switches and the write system calls of every CPU.
For each request it finds, in order:

  send     the client's sendto of the request
  woken    the connection's core woken (sched_wakeup)
  running  that core running (sched_switch in)
  post     it writes an eventfd (8 bytes) to wake the owner core  [forwarded]
  owner    the owner core running                                 [forwarded]
  back     the owner writes an eventfd to wake the connection's core
  again    the connection's core running again                    [forwarded]
  reply    the reply written to the socket (by whichever core writes it:
           the owner writes it itself at pipeline 1, `sendmsg`)
  client   the client running again
  done     the client's recvfrom returns

and prints the median time from `send` to each, with the CPU each ran on,
so a timeline can be read off it. Needs root (perf with tracepoints).

    cargo build --release
    python3 benches/hop_trace.py                       # 2 threads, default flags
    python3 benches/hop_trace.py --server-flag=--no-pin --requests 1000
"""
import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forwarding import ROOT, free_port, stats, wait_for_port  # noqa: E402

EVENTS = ["sched:sched_wakeup", "sched:sched_switch", "syscalls:sys_enter_write",
          "syscalls:sys_enter_writev", "syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg",
          "syscalls:sys_exit_recvfrom"]
LINE = re.compile(r"^\s*(?P<comm>\S.*?)\s+(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>[\d.]+):\s+(?P<event>[\w:]+):\s*(?P<rest>.*)$")


def my_thread(sock, port):
    mine = f"tcp:{sock.getsockname()[0]}:{sock.getsockname()[1]}"
    conns = stats(port, "conns")
    for k, v in conns.items():
        if k.endswith(":addr") and v == mine:
            return int(conns[k.replace(":addr", ":thread")]), int(k.split(":")[0])
    raise RuntimeError("connection not listed")


def roundtrip(sock, request):
    sock.sendall(request)
    data = b""
    while not data.endswith(b"END\r\n"):
        data += sock.recv(65536)
    return data


def pick_keys(sock, port, count):
    """`count` keys the connection's core owns and `count` the other core
    owns, found by asking: a get whose `forwarded_requests` moves is remote."""
    local, remote = [], []
    i = 0
    while len(local) < count or len(remote) < count:
        key = f"trace:{i}"
        i += 1
        before = int(stats(port)["forwarded_requests"])
        roundtrip(sock, f"get {key}\r\n".encode())
        forwarded = int(stats(port)["forwarded_requests"]) > before
        (remote if forwarded else local).append(key)
    return local[:count], remote[:count]


def run_client(sock, keys, requests, pause, marks):
    for n in range(requests):
        key = keys[n % len(keys)]
        marks.append(key)
        roundtrip(sock, f"get {key}\r\n".encode())
        time.sleep(pause)


def parse(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "comm,tid,cpu,time,event,trace"],
                         capture_output=True, text=True, check=True).stdout
    events = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            events.append((float(m["ts"]) * 1e6, m["comm"].strip(), int(m["tid"]), int(m["cpu"]),
                           m["event"], m["rest"]))
    return events


def timelines(events, client_tid, conn_fd, server_tids, origin_tid, owner_tid):
    """Splits the trace into requests at the client's sends and finds each
    step's first time (µs after the send) and CPU."""
    sends = [i for i, e in enumerate(events) if e[2] == client_tid and e[4] == "syscalls:sys_enter_sendto"]
    rows = []
    for a, b in zip(sends, sends[1:] + [len(events)]):
        t0 = events[a][0]
        row = {"send": (0.0, events[a][3])}

        def first(name, pred, start=a):
            for i in range(start, b):
                e = events[i]
                if pred(e):
                    row[name] = (e[0] - t0, e[3])
                    return i
            return None

        def woke(tid):
            return lambda e: e[4] == "sched:sched_wakeup" and f"pid={tid} " in e[5] + " "

        def switched_in(tid):
            return lambda e: e[4] == "sched:sched_switch" and re.search(rf"next_pid={tid}\b", e[5])

        def eventfd_by(tid):
            return lambda e: e[2] == tid and e[4] == "syscalls:sys_enter_write" and "count: 0x00000008" in e[5]

        def reply(e):
            fd = f"fd: 0x{conn_fd:08x}"
            return e[2] in server_tids and e[4] in ("syscalls:sys_enter_write", "syscalls:sys_enter_writev",
                                                      "syscalls:sys_enter_sendto",
                                                      "syscalls:sys_enter_sendmsg") and fd in e[5]

        i = first("woken", woke(origin_tid)) or a
        first("running", switched_in(origin_tid), i)
        p = first("post", eventfd_by(origin_tid), i)
        if p is not None:
            o = first("owner", switched_in(owner_tid), p) or p
            k = first("back", eventfd_by(owner_tid), o)
            if k is not None:
                first("again", switched_in(origin_tid), k)
        r = first("reply", reply, i)
        if r is not None:
            c = first("client", switched_in(client_tid), r) or r
            first("done", lambda e: e[2] == client_tid and e[4] == "syscalls:sys_exit_recvfrom", c)
        rows.append(row)
    return rows


def report(name, rows):
    steps = ["send", "woken", "running", "post", "owner", "back", "again", "reply", "client", "done"]
    print(f"\n{name}: {len(rows)} requests; median µs after the client's send (CPU most often seen), "
          "share of requests with the step")
    for step in steps:
        have = [r[step] for r in rows if step in r]
        if not have:
            continue
        cpus = [c for _, c in have]
        cpu = max(set(cpus), key=cpus.count)
        print(f"  {step:8} {statistics.median(t for t, _ in have):8.1f}  cpu{cpu}  {len(have) / len(rows):5.0%}")
    done = [r["done"][0] for r in rows if "done" in r]
    if done:
        done.sort()
        print(f"  end-to-end p50 {done[len(done) // 2]:.1f} µs, p90 {done[len(done) * 9 // 10]:.1f} µs")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corecache", default=os.path.join(ROOT, "target/release/corecache"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--server-flag", action="append", default=[])
    p.add_argument("--requests", type=int, default=500, help="per kind (local, forwarded)")
    p.add_argument("--pause-ms", type=float, default=0.5)
    args = p.parse_args()
    port = free_port()
    server = subprocess.Popen([args.corecache, "--port", str(port), "--threads", str(args.threads)]
                              + args.server_flag, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(server, port)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread, fd = my_thread(sock, port)
        local, remote = pick_keys(sock, port, 20)
        for key in local + remote:
            roundtrip(sock, f"set {key} 0 0 5\r\nvalue\r\nget {key}\r\n".encode())
        tids = {int(t): name for t, name in
                ((d, open(f"/proc/{server.pid}/task/{d}/comm").read().strip())
                 for d in os.listdir(f"/proc/{server.pid}/task"))}
        origin = next(t for t, n in tids.items() if n == f"corecache-{thread}")
        owner = next(t for t, n in tids.items() if n.startswith("corecache-") and t != origin
                     and n != "corecache")
        with tempfile.TemporaryDirectory() as tmp:
            for name, keys in [("local", local), ("forwarded", remote)]:
                path = os.path.join(tmp, f"{name}.data")
                marks = []
                rec = subprocess.Popen(["perf", "record", "-q", "-a", "-o", path]
                                       + [x for e in EVENTS for x in ("-e", e)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                run_client(sock, keys, args.requests, args.pause_ms / 1000, marks)
                time.sleep(0.2)
                rec.send_signal(2)
                rec.wait()
                events = parse(path)
                rows = timelines(events, threading.get_native_id(), fd, set(tids), origin, owner)
                report(f"{name} (connection on core {thread}; flags {args.server_flag or 'default'})",
                       rows[5:])
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
