//! The workload matrix: which cells a comparison runs.

use serde::Serialize;

use crate::config::Distribution;

/// One cell of the workload matrix.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cell {
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Key distribution.
    pub distribution: Distribution,
    /// Fraction of gets.
    pub get_ratio: f64,
}

impl Cell {
    /// Short label such as `p16 zipf 90%g`.
    pub fn label(&self) -> String {
        let d = match self.distribution {
            Distribution::Uniform => "unif".to_string(),
            Distribution::Zipf { s } => format!("zipf{s}"),
        };
        format!("p{} {} {:.0}%g", self.pipeline, d, self.get_ratio * 100.0)
    }
}

/// The fixed matrix.
pub fn matrix() -> Vec<Cell> {
    let mut v = Vec::new();
    for pipeline in [1, 16] {
        for distribution in [Distribution::Uniform, Distribution::Zipf { s: 0.99 }] {
            for get_ratio in [0.9, 0.5] {
                v.push(Cell {
                    pipeline,
                    distribution,
                    get_ratio,
                });
            }
        }
    }
    v
}
