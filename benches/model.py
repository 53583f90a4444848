#!/usr/bin/env python3
"""A cost model of corecache's two runtimes: server CPU per request and ops/s
for N = 1..64 cores, from constants measured on this machine.

    python3 benches/forwarding.py --layouts 1t-split,2t-pinned,2t-nopin \\
        --pipelines 1,2,4,8,16 --json calib.json          # measure
    python3 benches/model.py fit calib.json               # constants -> benches/model_params.toml
    python3 benches/model.py validate calib.json          # predicted vs measured, every cell
    python3 benches/model.py predict --svg docs/results/model.svg
    python3 benches/model.py predict --busy    # msg, fwd from benches/mailbox.rs

The model, per request (all costs are server CPU, in microseconds):

  thread-per-core  op + read/p_eff + f*(fwd + msg/b) + s*sleep + w*wake
  work-stealing    op_ws + read_ws/p_eff + x*xfer + P*contend
  shard-aware      thread-per-core with f = 0 and p_eff = max(1, p/N)

  p_eff  requests a connection's read brings (its pipeline depth)
  f      forwarded share; (N-1)/N with uniform keys
  b      requests per forward message; grows with connections ready in one
         turn (k) and shrinks with owners to split them over: max(1, k*p/N)
  s, w   core sleeps and wakes of a parked core, per request (from `stats`)
  x      share of lock acquisitions whose lock (and shard lines) were last
         touched by another core: (N-1)/N
  P      chance the lock is held when taken: (N-1)/N * hold/cpu per request

`fit` solves the thread-per-core constants by least squares over the
1-thread and pinned 2-thread cells (their s and w as `stats` counted them),
and work-stealing's over its 1- and 2-thread pinned cells; `validate` then
predicts every cell, including the unpinned layout the fit never saw. The
contended-lock cost cannot be separated on 2 CPUs: it comes from
`cargo bench --bench locks` (two threads on one mutex), recorded in the
parameters file with the rest.

`predict` assumes dedicated, saturated cores and a client that keeps them
busy: cores then rarely park, so s and w take the rates the 2-thread
pipeline-16 cells measured per message. Skewed keys (zipf 0.99 over 100k
keys) are placed on shards by a seeded random hash; the busiest core then
bounds throughput (thread-per-core: its owner-side work; work-stealing: the
hot shard's lock, which serialises every operation on it).
"""
import argparse
import json
import math
import os
import random
import statistics
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
PARAMS = os.path.join(HERE, "model_params.toml")
FIT_LAYOUTS = ("1t-split", "2t-pinned")


def threads_of(layout):
    return 1 if layout.startswith("1t") else 2


def cells(paths, build=None):
    """Median of each (runtime, layout, pipeline) cell over repeats, of one
    build when the runs hold several."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs += json.load(f)
    builds = sorted({r["build"] for r in runs})
    if build is None and len(builds) > 1:
        sys.exit(f"model: the runs hold builds {builds}: choose one with --build")
    runs = [r for r in runs if build is None or r["build"] == build]
    groups = {}
    for r in runs:
        groups.setdefault((r["runtime"], r["layout"], r["pipeline"]), []).append(r)
    out = []
    for (runtime, layout, pipeline), rs in sorted(groups.items()):
        med = {k: statistics.median(r[k] for r in rs)
               for k in ("cpu_us", "forwarded", "per_msg", "wakes", "sleeps", "ops")}
        spread = (min(r["cpu_us"] for r in rs), max(r["cpu_us"] for r in rs))
        out.append(dict(med, runtime=runtime, layout=layout, pipeline=pipeline,
                        threads=threads_of(layout), spread=spread, n=len(rs)))
    return out


# Regressors, in the order of the constants they multiply.
TPC_TERMS = ("op", "read", "fwd", "msg", "sleep", "wake")
WS_TERMS = ("op_ws", "read_ws", "xfer")


def tpc_row(c):
    f, b = c["forwarded"], max(c["per_msg"], 1.0)
    return [1.0, 1.0 / c["pipeline"], f, f / b if f else 0.0, c["sleeps"], c["wakes"]]


def ws_row(c):
    n = c["threads"]
    return [1.0, 1.0 / c["pipeline"], (n - 1) / n]


def solve(a, b):
    """The x minimising |a x - b|, by the normal equations."""
    k = len(a[0])
    ata = [[sum(r[i] * r[j] for r in a) for j in range(k)] for i in range(k)]
    atb = [sum(r[i] * y for r, y in zip(a, b)) for i in range(k)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda i: abs(ata[i][col]))
        if abs(ata[pivot][col]) < 1e-12:
            sys.exit("model: the calibration cells cannot separate the constants "
                     "(measure more pipelines or layouts)")
        ata[col], ata[pivot] = ata[pivot], ata[col]
        atb[col], atb[pivot] = atb[pivot], atb[col]
        for i in range(k):
            if i != col:
                factor = ata[i][col] / ata[col][col]
                ata[i] = [x - factor * y for x, y in zip(ata[i], ata[col])]
                atb[i] -= factor * atb[col]
    return [atb[i] / ata[i][i] for i in range(k)]


def fit_costs(rows, ys, known=None):
    """Constants for `rows` (regressors) against measured `ys`, fitted in
    relative error (a cell at 0.8 us counts as much as one at 8 us), every
    constant >= 0 (a cost cannot be negative: one the fit would make
    negative is pinned to 0 and the rest refitted). `known` maps a column
    to a value measured elsewhere, used as is."""
    known = dict(known or {})
    while True:
        free = [i for i in range(len(rows[0])) if i not in known]
        a = [[r[i] / y for i in free] for r, y in zip(rows, ys)]
        b = [(y - sum(r[i] * v for i, v in known.items())) / y for r, y in zip(rows, ys)]
        got = dict(zip(free, solve(a, b))) if free else {}
        negative = [i for i, v in got.items() if v < 0]
        if not negative:
            known.update(got)
            return [known[i] for i in range(len(rows[0]))]
        for i in negative:
            known[i] = 0.0


def load_params():
    with open(PARAMS, "rb") as f:
        return tomllib.load(f)


def fit(args):
    cs = cells(args.calibration, args.build)
    tpc = [c for c in cs if c["runtime"] == "thread-per-core" and c["layout"] in FIT_LAYOUTS]
    ws = [c for c in cs if c["runtime"] == "work-stealing" and c["layout"] in FIT_LAYOUTS]
    old = load_params() if os.path.exists(PARAMS) else {}
    wake = old.get("measured", {}).get("wake_us", 12.0)
    # In stages, so each constant comes from the cells that show it: the
    # local costs from one thread, where nothing is forwarded; then, with
    # those fixed and the wake cost measured directly (perf: the eventfd
    # write that wakes a parked core), forwarding's from two threads.
    one = [c for c in tpc if c["threads"] == 1]
    op, read = fit_costs([tpc_row(c)[:2] for c in one], [c["cpu_us"] for c in one])
    t = fit_costs([tpc_row(c) for c in tpc], [c["cpu_us"] for c in tpc],
                  known={0: op, 1: read, 5: wake})
    one = [c for c in ws if c["threads"] == 1]
    op_ws, read_ws = fit_costs([ws_row(c)[:2] for c in one], [c["cpu_us"] for c in one])
    w = fit_costs([ws_row(c) for c in ws], [c["cpu_us"] for c in ws], known={0: op_ws, 1: read_ws})
    two = [c for c in tpc if c["threads"] == 2 and c["forwarded"] > 0]
    # Connections ready per turn: b = k * p / N at N = 2.
    k = statistics.median(2 * c["per_msg"] / c["pipeline"] for c in two)
    busy = [c for c in two if c["pipeline"] == max(x["pipeline"] for x in two)]
    msgs = [c["forwarded"] / c["per_msg"] for c in busy]
    wakes_per_msg = statistics.median(c["wakes"] / m for c, m in zip(busy, msgs))
    sleeps_per_req = statistics.median(c["sleeps"] for c in busy)
    locks = old.get("locks", {"hold_us": 0.15, "contend_us": 1.0,
                              "source": "placeholder: run cargo bench --bench locks"})
    lines = [
        "# corecache cost model constants (benches/model.py). Fitted by",
        f"# `python3 benches/model.py fit {' '.join(os.path.basename(p) for p in args.calibration)}`",
        "# from benches/forwarding.py cells on this machine; microseconds of server CPU.",
        "",
        "[thread_per_core]",
    ]
    lines += [f"{name} = {value:.4f}" for name, value in zip(TPC_TERMS, t)]
    lines += ["", "[work_stealing]"]
    lines += [f"{name} = {value:.4f}" for name, value in zip(WS_TERMS, w)]
    lines += ["", "# Busy-regime rates for predictions (2-thread, highest pipeline cells).",
              "[busy]",
              f"ready_connections_per_turn = {k:.3f}",
              f"wakes_per_message = {wakes_per_msg:.5f}",
              f"sleeps_per_request = {sleeps_per_req:.5f}",
              "", "# Measured directly, not fitted.", "[measured]",
              f"wake_us = {wake}  # sender's CPU for an eventfd write that wakes a parked core (perf)",
              "", "# One std::sync::Mutex: `cargo bench --bench locks`.", "[locks]",
              f"hold_us = {locks['hold_us']}", f"contend_us = {locks['contend_us']}",
              f"source = \"{locks['source']}\"", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(open(args.out).read())


def predict_cell(p, c):
    """CPU per request for a measured cell, from its own event rates."""
    if c["runtime"] == "thread-per-core":
        coef = [p["thread_per_core"][t] for t in TPC_TERMS]
        return sum(a * b for a, b in zip(coef, tpc_row(c)))
    coef = [p["work_stealing"][t] for t in WS_TERMS]
    return sum(a * b for a, b in zip(coef, ws_row(c)))


def validate(args):
    p = load_params()
    cs = cells(args.calibration, args.build)
    print(f"{'runtime':15} {'layout':9} {'pipe':>4} {'measured':>9} {'spread':>13} "
          f"{'model':>7} {'error':>7}  used by fit")
    errors = {True: [], False: []}
    for c in cs:
        got = predict_cell(p, c)
        err = (got - c["cpu_us"]) / c["cpu_us"]
        used = c["layout"] in FIT_LAYOUTS
        errors[used].append(abs(err))
        print(f"{c['runtime']:15} {c['layout']:9} {c['pipeline']:>4} {c['cpu_us']:9.2f} "
              f"{c['spread'][0]:6.2f}-{c['spread'][1]:<6.2f} {got:7.2f} {100 * err:+6.1f}%  "
              f"{'yes' if used else 'no'}")
    for used, errs in errors.items():
        if errs:
            print(f"# mean |error| {'in' if used else 'outside'} the fit: "
                  f"{100 * statistics.mean(errs):.1f}% over {len(errs)} cells, "
                  f"max {100 * max(errs):.1f}%")


def zipf_hot_share(n, keys=100_000, s=0.99, seed=7):
    """Share of requests the busiest of n shards gets, zipf(s) keys placed
    on shards by a seeded random hash."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** s for i in range(keys)]
    total = sum(weights)
    load = [0.0] * n
    for w in weights:
        load[rng.randrange(n)] += w / total
    return max(load)


def model(p, runtime, n, pipeline, skew):
    """(CPU us per request, ops/s) on n dedicated, saturated cores."""
    t, ws, busy, locks = p["thread_per_core"], p["work_stealing"], p["busy"], p["locks"]
    hot = zipf_hot_share(n) if skew else 1.0 / n
    if runtime == "work-stealing":
        x = (n - 1) / n
        base = ws["op_ws"] + ws["read_ws"] / pipeline + ws["xfer"] * x
        contended = x * locks["hold_us"] / base
        cpu = base + contended * locks["contend_us"]
        # Every op on the hot shard passes through its lock, one at a time.
        lock_bound = 1e6 / ((locks["hold_us"] + ws["xfer"] * x) * hot) if n > 1 else math.inf
        return cpu, min(n * 1e6 / cpu, lock_bound)
    if runtime == "shard-aware":
        p_eff = max(1.0, pipeline / n)
        cpu = t["op"] + t["read"] / p_eff + busy["sleeps_per_request"] * t["sleep"]
        return cpu, min(n * 1e6 / cpu, 1e6 / (cpu * hot))
    f = (n - 1) / n
    b = max(1.0, busy["ready_connections_per_turn"] * pipeline / n)
    msgs = f / b
    cpu = (t["op"] + t["read"] / pipeline + f * (t["fwd"] + t["msg"] / b)
           + busy["sleeps_per_request"] * t["sleep"]
           + msgs * busy["wakes_per_message"] * t["wake"])
    # The owner of the hot shard runs its share of everyone's operations;
    # its own connections' reads are spread evenly.
    owner = t["op"] + f * t["fwd"] / 2
    hot_bound = 1e6 / (owner * hot * n + (cpu - owner)) * n if skew else math.inf
    return cpu, min(n * 1e6 / cpu, hot_bound)


RUNTIMES = ("thread-per-core", "work-stealing", "shard-aware")
COLORS = {"thread-per-core": "#1f77b4", "work-stealing": "#d62728", "shard-aware": "#2ca02c"}


def svg_chart(panels, path):
    """Small multiples: one panel per (title, {series: [(x, y)]}, y label)."""
    w, h, pad = 330, 230, 48
    cols = 4
    rows = math.ceil(len(panels) / cols)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{cols * w}" height="{rows * h + 30}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{cols * w}" height="{rows * h + 30}" fill="white"/>']
    for i, (title, series, ylabel) in enumerate(panels):
        ox, oy = (i % cols) * w, (i // cols) * h
        ymax = max(y for pts in series.values() for _, y in pts) * 1.1
        xs = [x for pts in series.values() for x, _ in pts]
        lx = lambda x: ox + pad + (math.log2(x) / math.log2(max(xs))) * (w - pad - 12)  # noqa: E731
        ly = lambda y: oy + h - 30 - (y / ymax) * (h - 60)  # noqa: E731
        out.append(f'<text x="{ox + w / 2}" y="{oy + 16}" text-anchor="middle" font-weight="bold">'
                   f'{title}</text>')
        out.append(f'<line x1="{lx(1)}" y1="{ly(0)}" x2="{lx(max(xs))}" y2="{ly(0)}" stroke="#999"/>')
        out.append(f'<line x1="{lx(1)}" y1="{ly(0)}" x2="{lx(1)}" y2="{ly(ymax)}" stroke="#999"/>')
        for x in (1, 2, 4, 8, 16, 32, 64):
            if x <= max(xs):
                out.append(f'<text x="{lx(x)}" y="{ly(0) + 13}" text-anchor="middle">{x}</text>')
        for frac in (0.5, 1.0):
            y = ymax / 1.1 * frac
            label = f"{y / 1e6:.0f}M" if y >= 1e6 else f"{y:.2f}"
            out.append(f'<text x="{lx(1) - 4}" y="{ly(y) + 4}" text-anchor="end">{label}</text>')
        out.append(f'<text x="{ox + 10}" y="{oy + h / 2}" transform="rotate(-90 {ox + 10} {oy + h / 2})" '
                   f'text-anchor="middle">{ylabel}</text>')
        for name, pts in series.items():
            d = " ".join(f"{lx(x):.1f},{ly(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{d}" fill="none" stroke="{COLORS[name]}" stroke-width="2"/>')
    lx0 = 10
    for name, color in COLORS.items():
        out.append(f'<rect x="{lx0}" y="{rows * h + 12}" width="12" height="4" fill="{color}"/>')
        out.append(f'<text x="{lx0 + 16}" y="{rows * h + 18}">{name}</text>')
        lx0 += 150
    out.append(f'<text x="{cols * w - 10}" y="{rows * h + 18}" text-anchor="end">x: cores (log scale). '
               'Model from benches/model_params.toml; dedicated, saturated cores.</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def predict(args):
    p = load_params()
    if args.busy:
        # benches/mailbox.rs: a message between two cores that never park.
        busy = p["busy_cores"]
        p["thread_per_core"]["msg"] = busy["msg_us"]
        p["thread_per_core"]["fwd"] = busy["fwd_us"]
        print(f"# msg {busy['msg_us']} us, fwd {busy['fwd_us']} us per message/request, "
              "as measured between two busy cores (benches/mailbox.rs)")
    ns = [1, 2, 4, 8, 16, 32, 64]
    print(f"{'runtime':15} {'pipe':>4} {'keys':8} " + " ".join(f"{'N=' + str(n):>16}" for n in ns))
    print(f"{'':29} " + " ".join(f"{'us/req  Mops/s':>16}" for _ in ns))
    panels = []
    for pipeline in (1, 16):
        for skew in (False, True):
            cpu_series, ops_series = {}, {}
            for runtime in RUNTIMES:
                row = [model(p, runtime, n, pipeline, skew) for n in ns]
                cpu_series[runtime] = list(zip(ns, (c for c, _ in row)))
                ops_series[runtime] = list(zip(ns, (o for _, o in row)))
                print(f"{runtime:15} {pipeline:>4} {'zipf' if skew else 'uniform':8} " +
                      " ".join(f"{c:7.2f} {o / 1e6:8.2f}" for c, o in row))
            keys = "zipf 0.99" if skew else "uniform"
            panels.append((f"CPU/request, p{pipeline}, {keys}", cpu_series, "us"))
            panels.append((f"ops/s, p{pipeline}, {keys}", ops_series, "ops/s"))
    if args.svg:
        svg_chart(panels, args.svg)
        print(f"# wrote {args.svg}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("calibration", nargs="+")
    f.add_argument("--out", default=PARAMS)
    f.add_argument("--build")
    v = sub.add_parser("validate")
    v.add_argument("calibration", nargs="+")
    v.add_argument("--build")
    pr = sub.add_parser("predict")
    pr.add_argument("--svg")
    pr.add_argument("--busy", action="store_true",
                    help="thread-per-core's msg and fwd from [busy_cores] (benches/mailbox.rs)")
    args = ap.parse_args()
    {"fit": fit, "validate": validate, "predict": predict}[args.cmd](args)


if __name__ == "__main__":
    main()
