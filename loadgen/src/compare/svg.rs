//! Hand-written SVG charts: one row per cell, one bar (or dot) per system,
//! a min–max whisker over the repetitions, and several panels side by
//! side that share the row labels, so throughput and CPU per request of
//! the same cell sit on one line.
//!
//! Written by hand rather than with a plotting crate: the chart is a few
//! rectangles, lines and labels, and the file stays small and diffable.

use std::fmt::Write as _;

/// A median and the range it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// Median.
    pub mid: f64,
    /// Smallest.
    pub lo: f64,
    /// Largest.
    pub hi: f64,
}

/// How a panel maps values to x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// From zero, for throughput and CPU.
    Linear,
    /// Decades, for latencies that span orders of magnitude.
    Log,
}

/// One panel: a quantity over every row and series.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Heading, with its unit.
    pub title: String,
    /// Axis scale.
    pub scale: Scale,
    /// Bars (linear quantities) or dots (latencies).
    pub bars: bool,
    /// `values[row][series]`; `None` where a series has no value.
    pub values: Vec<Vec<Option<Mark>>>,
}

/// A chart of panels side by side.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title line.
    pub title: String,
    /// A smaller line under it (what the whiskers mean, the machine).
    pub subtitle: String,
    /// Row labels, top to bottom.
    pub rows: Vec<String>,
    /// Series (systems), one colour each.
    pub series: Vec<String>,
    /// Panels, left to right.
    pub panels: Vec<Panel>,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];
const PANEL_W: f64 = 340.0;
const PANEL_GAP: f64 = 36.0;
const BAR_H: f64 = 6.0;
const GROUP_PAD: f64 = 8.0;
const TOP: f64 = 84.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Short tick labels: `1.5M`, `200k`, `12`, `0.5`.
fn tick_label(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if v >= 1e6 {
        trim(format!("{:.1}", v / 1e6)) + "M"
    } else if v >= 1e3 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if v >= 1.0 || v == 0.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

/// Axis range and ticks of a panel.
struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Axis {
    fn new(p: &Panel) -> Axis {
        let marks = p.values.iter().flatten().flatten();
        let max = marks.clone().map(|m| m.hi).fold(0.0, f64::max);
        match p.scale {
            Scale::Linear => {
                let max = if max > 0.0 { max } else { 1.0 };
                // A 1-2-5 step giving at most about five ticks.
                let raw = max / 5.0;
                let pow = 10f64.powf(raw.log10().floor());
                let step = [1.0, 2.0, 5.0, 10.0]
                    .into_iter()
                    .map(|f| f * pow)
                    .find(|s| *s >= raw)
                    .unwrap_or(10.0 * pow);
                let hi = (max / step).ceil() * step;
                let ticks = (0..=((hi / step).round() as usize))
                    .map(|i| i as f64 * step)
                    .collect();
                Axis {
                    scale: Scale::Linear,
                    lo: 0.0,
                    hi,
                    ticks,
                }
            }
            Scale::Log => {
                let min = marks
                    .map(|m| m.lo)
                    .filter(|v| *v > 0.0)
                    .fold(f64::INFINITY, f64::min);
                let (min, max) = if min.is_finite() && max > 0.0 {
                    (min, max)
                } else {
                    (1.0, 10.0)
                };
                let lo = min.log10().floor();
                let hi = max.log10().ceil().max(lo + 1.0);
                let ticks = (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect();
                Axis {
                    scale: Scale::Log,
                    lo,
                    hi,
                    ticks,
                }
            }
        }
    }

    /// Fraction of the panel width at value `v` (clamped to the panel).
    fn frac(&self, v: f64) -> f64 {
        let f = match self.scale {
            Scale::Linear => v / self.hi,
            Scale::Log if v > 0.0 => (v.log10() - self.lo) / (self.hi - self.lo),
            Scale::Log => 0.0,
        };
        f.clamp(0.0, 1.0)
    }
}

impl Chart {
    /// The SVG document.
    pub fn svg(&self) -> String {
        let n = self.series.len().max(1);
        let group_h = n as f64 * (BAR_H + 1.0) + GROUP_PAD;
        let label_w = self
            .rows
            .iter()
            .map(|r| r.chars().count())
            .max()
            .unwrap_or(0) as f64
            * 6.4
            + 16.0;
        let width = label_w + self.panels.len() as f64 * (PANEL_W + PANEL_GAP) + 10.0;
        let plot_h = self.rows.len() as f64 * group_h;
        let height = TOP + plot_h + 40.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(
            s,
            r##"<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="15" font-weight="bold">{}</text>
<text x="10" y="38" fill="#444">{}</text>"##,
            esc(&self.title),
            esc(&self.subtitle)
        );
        // Legend.
        let mut x = 10.0;
        for (k, name) in self.series.iter().enumerate() {
            let c = COLORS[k % COLORS.len()];
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="48" width="12" height="10" fill="{c}"/><text x="{:.1}" y="57">{}</text>"#,
                x + 16.0,
                esc(name)
            );
            x += 16.0 + name.chars().count() as f64 * 6.4 + 18.0;
        }
        // Stripes and row labels.
        for (r, label) in self.rows.iter().enumerate() {
            let y = TOP + r as f64 * group_h;
            if r % 2 == 0 {
                let _ = writeln!(
                    s,
                    r##"<rect x="0" y="{:.1}" width="{width:.0}" height="{group_h:.1}" fill="#f3f3f3"/>"##,
                    y
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                label_w - 8.0,
                y + group_h / 2.0 + 4.0,
                esc(label)
            );
        }
        for (i, p) in self.panels.iter().enumerate() {
            let x0 = label_w + i as f64 * (PANEL_W + PANEL_GAP);
            self.panel(&mut s, p, x0, group_h, plot_h);
        }
        s.push_str("</svg>\n");
        s
    }

    fn panel(&self, s: &mut String, p: &Panel, x0: f64, group_h: f64, plot_h: f64) {
        let axis = Axis::new(p);
        let x = |v: f64| x0 + axis.frac(v) * PANEL_W;
        let bottom = TOP + plot_h;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            x0 + PANEL_W / 2.0,
            TOP - 10.0,
            esc(&p.title)
        );
        for &t in &axis.ticks {
            let tx = x(t);
            let _ = writeln!(
                s,
                r##"<line x1="{tx:.1}" y1="{TOP:.1}" x2="{tx:.1}" y2="{bottom:.1}" stroke="#ccc"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                bottom + 14.0,
                tick_label(t)
            );
        }
        let _ = writeln!(
            s,
            r#"<line x1="{x0:.1}" y1="{TOP:.1}" x2="{x0:.1}" y2="{bottom:.1}" stroke="black"/>"#
        );
        for (r, row) in p.values.iter().enumerate() {
            for (k, mark) in row.iter().enumerate() {
                let Some(m) = mark else { continue };
                let c = COLORS[k % COLORS.len()];
                let y = TOP + r as f64 * group_h + GROUP_PAD / 2.0 + k as f64 * (BAR_H + 1.0);
                let cy = y + BAR_H / 2.0;
                if p.bars {
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{BAR_H:.1}" fill="{c}"/>"#,
                        x(m.mid) - x0
                    );
                } else {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{cy:.1}" r="2.8" fill="{c}"/>"#,
                        x(m.mid)
                    );
                }
                if m.hi > m.lo {
                    let (a, b) = (x(m.lo), x(m.hi));
                    let _ = writeln!(
                        s,
                        r#"<path d="M{a:.1} {:.1}V{:.1}M{a:.1} {cy:.1}H{b:.1}M{b:.1} {:.1}V{:.1}" stroke="black" stroke-width="0.8" fill="none"/>"#,
                        cy - 2.5,
                        cy + 2.5,
                        cy - 2.5,
                        cy + 2.5
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_well() {
        assert_eq!(tick_label(1_500_000.0), "1.5M");
        assert_eq!(tick_label(200_000.0), "200k");
        assert_eq!(tick_label(12.0), "12");
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(0.0), "0");
    }

    #[test]
    fn axes_cover_the_data() {
        let p = |scale, lo, hi| Panel {
            title: String::new(),
            scale,
            bars: true,
            values: vec![vec![Some(Mark { mid: lo, lo, hi }), None]],
        };
        let a = Axis::new(&p(Scale::Linear, 100.0, 1_234_000.0));
        // max / 5 = 246.8k: the step is 500k.
        assert_eq!(a.hi, 1_500_000.0);
        assert_eq!(a.ticks, vec![0.0, 500_000.0, 1_000_000.0, 1_500_000.0]);
        let a = Axis::new(&p(Scale::Log, 35.0, 4200.0));
        assert_eq!((a.lo, a.hi), (1.0, 4.0));
        assert_eq!(a.ticks, vec![10.0, 100.0, 1000.0, 10000.0]);
        assert_eq!(a.frac(100.0), 1.0 / 3.0);
    }

    #[test]
    fn one_bar_and_whisker_per_value() {
        let chart = Chart {
            title: "t & u".into(),
            subtitle: "s".into(),
            rows: vec!["a <1>".into(), "b".into()],
            series: vec!["x".into(), "y".into()],
            panels: vec![Panel {
                title: "ops/s".into(),
                scale: Scale::Linear,
                bars: true,
                values: vec![
                    vec![
                        Some(Mark {
                            mid: 2.0,
                            lo: 1.0,
                            hi: 3.0,
                        }),
                        None,
                    ],
                    vec![
                        Some(Mark {
                            mid: 1.0,
                            lo: 1.0,
                            hi: 1.0,
                        }),
                        Some(Mark {
                            mid: 4.0,
                            lo: 3.0,
                            hi: 5.0,
                        }),
                    ],
                ],
            }],
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("t &amp; u") && svg.contains("a &lt;1&gt;"));
        // Three values, so three bars (plus two legend swatches and the
        // background and one stripe); two have a spread, so two whiskers.
        assert_eq!(svg.matches("<rect").count(), 3 + 2 + 2);
        assert_eq!(svg.matches("<path").count(), 2);
    }
}
