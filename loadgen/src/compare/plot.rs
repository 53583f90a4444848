//! `latency.svg`: throughput (top) and p50/p99 latency on a log scale
//! (bottom) per cell, one colour per system, drawn by `plotters` with only
//! its SVG backend.

use std::path::Path;

use super::{Cell, Comparison};
use crate::report::Report;

/// Draws `latency.svg`: throughput (top) and p50/p99 latency on a log
/// scale (bottom) per cell, one colour per system.
pub fn latency(c: &Comparison, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let n = c.cells.len();
    let labels: Vec<String> = c.cells.iter().map(Cell::label).collect();
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    let max_ops = c
        .systems
        .iter()
        .flat_map(|s| s.reports.iter().map(|r| r.ops_per_sec))
        .fold(1.0, f64::max);
    let lat = |f: &dyn Fn(&Report) -> f64| -> Vec<f64> {
        c.systems
            .iter()
            .flat_map(|s| s.reports.iter().map(f))
            .filter(|v| *v > 0.0)
            .collect()
    };
    let all_lat: Vec<f64> = [lat(&|r| r.latency_us.p50), lat(&|r| r.latency_us.p99)].concat();
    let lo = all_lat
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(0.1)
        / 1.5;
    let hi = all_lat.iter().copied().fold(1.0, f64::max) * 1.5;
    let x_fmt = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < n {
            labels[i as usize].clone()
        } else {
            String::new()
        }
    };

    let root = SVGBackend::new(path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (top, bottom) = root.split_vertically(360);
    let res: Result<(), Box<dyn std::error::Error>> = (|| {
        let mut ch = ChartBuilder::on(&top)
            .caption(
                "Throughput per workload (closed loop, 50 connections)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..max_ops * 1.15)?;
        ch.configure_mesh()
            .x_labels(n)
            .x_label_formatter(&x_fmt)
            .y_desc("ops/s")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(TRANSPARENT)
            .disable_x_mesh()
            .draw()?;
        for (k, sys) in c.systems.iter().enumerate() {
            let col = colors[k % colors.len()];
            let pts: Vec<(f64, f64)> = sys
                .reports
                .iter()
                .enumerate()
                .map(|(i, r)| (i as f64, r.ops_per_sec))
                .collect();
            ch.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?
                .label(sys.system.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
            ch.draw_series(pts.iter().map(|p| Circle::new(*p, 4, col.filled())))?;
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;

        let mut ch = ChartBuilder::on(&bottom)
            .caption(
                "Latency: p99 (solid) and p50 (thin), microseconds, log scale",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo..hi).log_scale())?;
        ch.configure_mesh()
            .x_labels(n)
            .x_label_formatter(&x_fmt)
            .y_desc("µs")
            .y_labels(6)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(TRANSPARENT)
            .disable_x_mesh()
            .draw()?;
        for (k, sys) in c.systems.iter().enumerate() {
            let col = colors[k % colors.len()];
            let series = |f: fn(&Report) -> f64| -> Vec<(f64, f64)> {
                sys.reports
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i as f64, f(r).max(lo)))
                    .collect()
            };
            let p99 = series(|r| r.latency_us.p99);
            let p50 = series(|r| r.latency_us.p50);
            ch.draw_series(LineSeries::new(p99.clone(), col.stroke_width(2)))?
                .label(format!("{} p99", sys.system))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
            ch.draw_series(p99.iter().map(|p| Circle::new(*p, 4, col.filled())))?;
            ch.draw_series(LineSeries::new(p50.clone(), col.stroke_width(1)))?;
            ch.draw_series(p50.iter().map(|p| Circle::new(*p, 3, col)))?;
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    res.map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}
