//! The comparison as one [`Table`]: a row per system and cell, written as
//! text (stdout), Markdown (`results.md`) and CSV (`results.csv`).

use super::Comparison;
use crate::config::Distribution;
use crate::server_process::cpu_list_string;
use crate::table::{Column, Shown, Table, Value};

/// The results table: the four headline numbers per system and cell in
/// every rendering; percentiles, hit ratio, errors, loadgen's CPU and the
/// machine in the CSV too.
pub fn table(c: &Comparison) -> Table {
    let mut t = Table::new(vec![
        Column::new("system", "system"),
        Column::new("cell", "cell").shown(Shown::TableOnly),
        Column::new("pipeline", "pipeline").shown(Shown::CsvOnly),
        Column::new("distribution", "distribution").shown(Shown::CsvOnly),
        Column::new("get ratio", "get_ratio").shown(Shown::CsvOnly),
        Column::new("ops/s", "ops_per_sec"),
        Column::new("p50 µs", "p50_us"),
        Column::new("p90 µs", "p90_us").shown(Shown::CsvOnly),
        Column::new("p99 µs", "p99_us"),
        Column::new("p99.9 µs", "p999_us"),
        Column::new("p99.99 µs", "p9999_us").shown(Shown::CsvOnly),
        Column::new("max µs", "max_us").shown(Shown::CsvOnly),
        Column::new("hit ratio", "hit_ratio").shown(Shown::CsvOnly),
        Column::new("errors", "errors"),
        Column::new("loadgen CPU µs/req", "client_cpu_us_per_req").shown(Shown::CsvOnly),
        Column::new("nproc", "nproc").shown(Shown::CsvOnly),
        Column::new("kernel", "kernel").shown(Shown::CsvOnly),
    ]);
    for sys in &c.systems {
        for (cell, r) in c.cells.iter().zip(&sys.reports) {
            let d = match cell.distribution {
                Distribution::Uniform => "uniform".to_string(),
                Distribution::Zipf { s } => format!("zipf:{s}"),
            };
            let l = &r.latency_us;
            let us = |v: f64| Value::Num(v, 1);
            t.push(vec![
                Value::Text(sys.system.clone()),
                Value::Text(cell.label()),
                Value::Num(cell.pipeline as f64, 0),
                Value::Text(d),
                Value::Num(cell.get_ratio, 2),
                Value::Num(r.ops_per_sec, 0),
                us(l.p50),
                us(l.p90),
                us(l.p99),
                us(l.p999),
                us(l.p9999),
                us(l.max),
                Value::Num(r.hit_ratio, 4),
                Value::Num(r.errors.total as f64, 0),
                Value::Num(r.cpu.us_per_request, 3),
                Value::Num(c.machine.nproc as f64, 0),
                Value::Text(c.machine.kernel.clone()),
            ]);
        }
    }
    t.notes.push(format!(
        "machine: nproc {}, kernel {}; servers pinned to CPUs {}, loadgen to CPUs {}",
        c.machine.nproc,
        c.machine.kernel,
        cpu_list_string(&c.machine.server_cpus),
        cpu_list_string(&c.machine.loadgen_cpus)
    ));
    t
}
