//! The comparison as one [`Table`] (text, Markdown, CSV) and two charts.
//!
//! A row is one cell: a layout, a pinning, a workload and a system. Every
//! number is the median over the repetitions with its min–max beside it
//! (three columns in the CSV: `x`, `x_min`, `x_max`):
//!
//! * `ops/s`, `p50`/`p99`/`p99.9` µs: loadgen's report of the run;
//! * `server CPU µs/req`: the server's `Δ(utime + stime)` over
//!   `Δ(cmd_get + cmd_set)` in the measured phase (see [`super::probe`]);
//! * `fwd %`: forwarded requests as a share of the server's requests;
//!   `req/msg`: forwarded requests per forward message; `wakes/1k req`:
//!   times a thread woke a sleeping one, per thousand requests (corecache
//!   only; `-` where the server does not publish them).

use super::Comparison;
use super::probe::ServerDelta;
use super::svg::{Chart, Mark, Panel, Scale};
use crate::report::Report;
use crate::table::{Column, Shown, Table, Value};

/// The value of one repetition, `None` when it has none.
type Metric = fn(&Report, &ServerDelta) -> Option<f64>;

/// Median and min–max of `metric` over a cell's samples.
fn spread(samples: &[super::Sample], metric: Metric, decimals: usize) -> Value {
    let v: Vec<f64> = samples
        .iter()
        .filter_map(|s| metric(&s.report, &s.server))
        .collect();
    Value::spread_of(&v, decimals)
}

const OPS: Metric = |r, _| Some(r.ops_per_sec);
const P50: Metric = |r, _| Some(r.latency_us.p50);
const P99: Metric = |r, _| Some(r.latency_us.p99);
const P999: Metric = |r, _| Some(r.latency_us.p999);
const SERVER_CPU: Metric = |_, s| Some(s.cpu_us_per_request).filter(|v| v.is_finite());
const FORWARDED_SHARE: Metric = |_, s| {
    let f = s.forwarded_requests? as f64;
    (s.requests > 0).then(|| 100.0 * f / s.requests as f64)
};
const PER_MESSAGE: Metric = |_, s| s.requests_per_message();
const WAKES: Metric = |_, s| {
    let w = s.core_wakes? as f64;
    (s.requests > 0).then(|| 1000.0 * w / s.requests as f64)
};

/// The results table.
pub fn table(c: &Comparison) -> Table {
    let csv = Shown::CsvOnly;
    let mut t = Table::new(vec![
        Column::new("layout", "layout"),
        Column::new("pinning", "pinning"),
        Column::new("threads", "server_threads"),
        Column::new("workload", "workload").shown(Shown::TableOnly),
        Column::new("pipeline", "pipeline").shown(csv),
        Column::new("distribution", "distribution").shown(csv),
        Column::new("get ratio", "get_ratio").shown(csv),
        Column::new("multiget", "multiget").shown(csv),
        Column::new("system", "system"),
        Column::new("runs", "runs").shown(csv),
        Column::new("ops/s", "ops_per_sec").spread(),
        Column::new("p50 µs", "p50_us").spread(),
        Column::new("p99 µs", "p99_us").spread(),
        Column::new("p99.9 µs", "p999_us").spread(),
        Column::new("server CPU µs/req", "server_cpu_us_per_req").spread(),
        Column::new("fwd %", "forwarded_pct").spread(),
        Column::new("req/msg", "forwarded_per_message").spread(),
        Column::new("wakes/1k req", "core_wakes_per_1k_req").spread(),
        Column::new("server requests", "server_requests")
            .spread()
            .shown(csv),
        Column::new("forwarded", "forwarded_requests")
            .spread()
            .shown(csv),
        Column::new("messages", "forward_messages")
            .spread()
            .shown(csv),
        Column::new("wakes", "core_wakes").spread().shown(csv),
        Column::new("loadgen CPU µs/req", "loadgen_cpu_us_per_req")
            .spread()
            .shown(csv),
        Column::new("hit ratio", "hit_ratio").spread().shown(csv),
        Column::new("errors", "errors"),
        Column::new("CPU", "cpu_model").shown(csv),
        Column::new("CPUs", "cpus_online").shown(csv),
        Column::new("kernel", "kernel").shown(csv),
    ]);
    let m = &c.machine;
    for cell in &c.cells {
        let w = &cell.workload;
        let s = &cell.samples;
        let errors: u64 = s.iter().map(|x| x.report.errors.total).sum();
        t.push(vec![
            Value::Text(cell.layout.clone()),
            Value::Text(cell.pinning.name().to_string()),
            Value::Num(cell.server_threads as f64, 0),
            Value::Text(w.label()),
            Value::Num(w.pipeline as f64, 0),
            Value::Text(w.distribution_name()),
            Value::Num(w.get_ratio, 2),
            Value::Num(w.multiget as f64, 0),
            Value::Text(cell.system.name().to_string()),
            Value::Num(s.len() as f64, 0),
            spread(s, OPS, 0),
            spread(s, P50, 1),
            spread(s, P99, 1),
            spread(s, P999, 1),
            spread(s, SERVER_CPU, 2),
            spread(s, FORWARDED_SHARE, 1),
            spread(s, PER_MESSAGE, 1),
            spread(s, WAKES, 1),
            spread(s, |_, d| Some(d.requests as f64), 0),
            spread(s, |_, d| d.forwarded_requests.map(|v| v as f64), 0),
            spread(s, |_, d| d.forward_messages.map(|v| v as f64), 0),
            spread(s, |_, d| d.core_wakes.map(|v| v as f64), 0),
            spread(s, |r, _| Some(r.cpu.us_per_request), 2),
            spread(s, |r, _| Some(r.hit_ratio), 4),
            Value::Num(errors as f64, 0),
            Value::Text(m.cpu_model.clone()),
            Value::Num(m.cpus_online as f64, 0),
            Value::Text(m.kernel.clone()),
        ]);
    }
    t.notes.push(m.summary());
    let st = &c.settings;
    t.notes.push(format!(
        "Each number: median of {} run(s) (min–max). {} connections, {} keys, {}-byte values, \
         {:.1} s measured after {:.1} s warmup per run. Server CPU µs/req = Δ(utime+stime) of \
         the server process / Δ(cmd_get+cmd_set) (a multi-get counts each key). fwd %, req/msg, \
         wakes/1k req: corecache's forwarded_requests, forward_messages and core_wakes deltas.",
        st.repeat, st.connections, st.keys, st.value_size, st.duration_s, st.warmup_s
    ));
    for l in &c.layouts {
        t.notes.push(format!(
            "Layout {}: {} server thread(s) on CPU(s) {} when pinned; loadgen {} thread(s) {}. \
             memcached cannot pin its threads: \"pinned\" runs it under taskset on those CPUs, \
             \"unpinned\" without.",
            l.name,
            l.server_threads,
            crate::server_process::cpu_list_string(&l.server_cpus),
            l.loadgen_threads,
            if l.loadgen_cpus.is_empty() {
                "unpinned".to_string()
            } else {
                format!(
                    "pinned to CPU(s) {}",
                    crate::server_process::cpu_list_string(&l.loadgen_cpus)
                )
            }
        ));
    }
    t
}

/// `throughput-cpu.svg` (ops/s and server CPU per request) and
/// `latency.svg` (p50, p99, p99.9), one row per layout, pinning and
/// workload, one colour per system.
pub fn charts(c: &Comparison) -> (Chart, Chart) {
    let mut rows: Vec<String> = Vec::new();
    let mut series: Vec<String> = Vec::new();
    // (row, series) of every cell: cells come sorted by group and workload.
    let mut at = Vec::new();
    for cell in &c.cells {
        let row = format!(
            "{} {} · {}",
            cell.layout,
            cell.pinning.name(),
            cell.workload.label()
        );
        if rows.last() != Some(&row) {
            rows.push(row);
        }
        let name = cell.system.name();
        let k = match series.iter().position(|s| s == name) {
            Some(k) => k,
            None => {
                series.push(name.to_string());
                series.len() - 1
            }
        };
        at.push((rows.len() - 1, k));
    }
    let panel = |title: &str, scale, bars, metric: Metric| {
        let mut values = vec![vec![None; series.len()]; rows.len()];
        for (cell, &(r, k)) in c.cells.iter().zip(&at) {
            if let Value::Spread { mid, lo, hi, .. } = spread(&cell.samples, metric, 0) {
                values[r][k] = Some(Mark { mid, lo, hi });
            }
        }
        Panel {
            title: title.to_string(),
            scale,
            bars,
            values,
        }
    };
    let subtitle = format!(
        "median of {} run(s), whiskers min–max · {}",
        c.settings.repeat,
        c.machine.summary()
    );
    let throughput_cpu = Chart {
        title: "Throughput and server CPU per request".into(),
        subtitle: subtitle.clone(),
        rows: rows.clone(),
        series: series.clone(),
        panels: vec![
            panel("ops/s", Scale::Linear, true, OPS),
            panel(
                "server CPU µs per request (multi-get: per key)",
                Scale::Linear,
                true,
                SERVER_CPU,
            ),
        ],
    };
    let latency = Chart {
        title: "Latency, µs (log scale)".into(),
        subtitle,
        rows: rows.clone(),
        series: series.clone(),
        panels: vec![
            panel("p50 µs", Scale::Log, false, P50),
            panel("p99 µs", Scale::Log, false, P99),
            panel("p99.9 µs", Scale::Log, false, P999),
        ],
    };
    (throughput_cpu, latency)
}
