//! One table, three renderings: aligned text (stdout), Markdown (docs) and
//! CSV (spreadsheets, scripts).
//!
//! `loadgen compare` builds a [`Table`] once from its results and writes it
//! three ways, so the three outputs cannot disagree. A column says where it
//! is shown ([`Shown`]): wide detail (every percentile, the machine on
//! every row) goes to the CSV only. A [`Value::Spread`] (a median with its
//! min–max over repetitions) is written `median (min–max)` in text and
//! Markdown and as three CSV columns, `name`, `name_min` and `name_max`.

use std::fmt::Write as _;

/// Where a column appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Text, Markdown and CSV.
    Everywhere,
    /// Only in the CSV (detail too wide for a readable table).
    CsvOnly,
    /// Only in text and Markdown (a label the CSV splits into columns).
    TableOnly,
}

/// A column: its heading in text and Markdown, its CSV name, and where it
/// is shown.
#[derive(Debug, Clone)]
pub struct Column {
    /// Heading in text and Markdown.
    pub title: String,
    /// CSV header (`snake_case`); a spread column adds `_min` and `_max`.
    pub csv: String,
    /// Whether values are spreads (three CSV columns).
    pub spread: bool,
    /// Where it appears.
    pub shown: Shown,
}

impl Column {
    /// A column shown everywhere.
    pub fn new(title: &str, csv: &str) -> Column {
        Column {
            title: title.to_string(),
            csv: csv.to_string(),
            spread: false,
            shown: Shown::Everywhere,
        }
    }

    /// Marks the column as holding [`Value::Spread`]s.
    pub fn spread(mut self) -> Column {
        self.spread = true;
        self
    }

    /// Restricts where the column appears.
    pub fn shown(mut self, shown: Shown) -> Column {
        self.shown = shown;
        self
    }
}

/// One cell of the table.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text, left-aligned.
    Text(String),
    /// A number with this many decimals, right-aligned.
    Num(f64, usize),
    /// A median with the min and max it came from, with this many decimals.
    Spread {
        /// The median.
        mid: f64,
        /// The smallest.
        lo: f64,
        /// The largest.
        hi: f64,
        /// Decimals.
        decimals: usize,
    },
    /// No value (a counter the server does not publish).
    Missing,
}

impl Value {
    /// Median, min and max of `samples` (empty gives [`Value::Missing`]).
    pub fn spread_of(samples: &[f64], decimals: usize) -> Value {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if s.is_empty() {
            return Value::Missing;
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let mid = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Value::Spread {
            mid,
            lo: s[0],
            hi: s[n - 1],
            decimals,
        }
    }

    fn right_aligned(&self) -> bool {
        !matches!(self, Value::Text(_))
    }

    /// The human form: `Spread` as `mid (lo–hi)`, with `dash` between.
    fn human(&self, dash: &str) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Num(v, d) => format!("{v:.d$}"),
            Value::Spread {
                mid,
                lo,
                hi,
                decimals: d,
            } => format!("{mid:.d$} ({lo:.d$}{dash}{hi:.d$})"),
            Value::Missing => "-".to_string(),
        }
    }

    /// The CSV fields: one, or three for a spread column.
    fn csv_fields(&self, spread: bool, out: &mut Vec<String>) {
        let num = |v: f64, d: usize| format!("{v:.d$}");
        match (self, spread) {
            (
                Value::Spread {
                    mid,
                    lo,
                    hi,
                    decimals,
                },
                true,
            ) => out.extend([
                num(*mid, *decimals),
                num(*lo, *decimals),
                num(*hi, *decimals),
            ]),
            (Value::Spread { mid, decimals, .. }, false) => out.push(num(*mid, *decimals)),
            (Value::Num(v, d), true) => out.extend([num(*v, *d), num(*v, *d), num(*v, *d)]),
            (Value::Num(v, d), false) => out.push(num(*v, *d)),
            (Value::Text(s), true) => out.extend([csv_quote(s), String::new(), String::new()]),
            (Value::Text(s), false) => out.push(csv_quote(s)),
            (Value::Missing, true) => out.extend([String::new(), String::new(), String::new()]),
            (Value::Missing, false) => out.push(String::new()),
        }
    }
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Rows of values under columns, with notes printed after the table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows; each has one value per column.
    pub rows: Vec<Vec<Value>>,
    /// Lines shown after the table in text and Markdown (the machine, what
    /// a column means).
    pub notes: Vec<String>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: Vec<Column>) -> Table {
        Table {
            columns,
            ..Table::default()
        }
    }

    /// Appends a row; it must have one value per column.
    pub fn push(&mut self, row: Vec<Value>) {
        assert_eq!(row.len(), self.columns.len(), "one value per column");
        self.rows.push(row);
    }

    /// A column is right-aligned when its first value is a number.
    fn right(&self, i: usize) -> bool {
        self.rows.first().is_some_and(|r| r[i].right_aligned())
    }

    fn table_columns(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.columns.len()).filter(|&i| self.columns[i].shown != Shown::CsvOnly)
    }

    /// Aligned plain text: columns padded to their widest value, `|`
    /// between them, notes after.
    pub fn text(&self) -> String {
        let cols: Vec<usize> = self.table_columns().collect();
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| cols.iter().map(|&i| r[i].human("-")).collect())
            .collect();
        let widths: Vec<usize> = cols
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                cells
                    .iter()
                    .map(|r| r[k].chars().count())
                    .chain([self.columns[i].title.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut s = String::new();
        let line = |s: &mut String, fields: &mut dyn Iterator<Item = (usize, String, bool)>| {
            let parts: Vec<String> = fields
                .map(|(w, f, right)| {
                    if right {
                        format!("{f:>w$}")
                    } else {
                        format!("{f:<w$}")
                    }
                })
                .collect();
            let _ = writeln!(s, "{}", parts.join(" | ").trim_end());
        };
        line(
            &mut s,
            &mut cols
                .iter()
                .enumerate()
                .map(|(k, &i)| (widths[k], self.columns[i].title.clone(), self.right(i))),
        );
        let _ = writeln!(
            s,
            "{}",
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("-+-")
        );
        for (row, texts) in self.rows.iter().zip(&cells) {
            line(
                &mut s,
                &mut cols
                    .iter()
                    .enumerate()
                    .map(|(k, &i)| (widths[k], texts[k].clone(), row[i].right_aligned())),
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "{n}");
        }
        s
    }

    /// A Markdown table (numbers right-aligned), notes as paragraphs after.
    pub fn markdown(&self) -> String {
        let cols: Vec<usize> = self.table_columns().collect();
        let mut s = String::from("|");
        for &i in &cols {
            let _ = write!(s, " {} |", self.columns[i].title);
        }
        s.push_str("\n|");
        for &i in &cols {
            s.push_str(if self.right(i) { "---:|" } else { "---|" });
        }
        s.push('\n');
        for row in &self.rows {
            s.push('|');
            for &i in &cols {
                let _ = write!(s, " {} |", row[i].human("–").replace('|', "\\|"));
            }
            s.push('\n');
        }
        for n in &self.notes {
            let _ = write!(s, "\n{n}\n");
        }
        s
    }

    /// CSV: a header line, then one line per row; spread columns expand
    /// to `name,name_min,name_max`. Notes are not part of the CSV.
    pub fn csv(&self) -> String {
        let cols: Vec<usize> = (0..self.columns.len())
            .filter(|&i| self.columns[i].shown != Shown::TableOnly)
            .collect();
        let mut header = Vec::new();
        for &i in &cols {
            let c = &self.columns[i];
            header.push(c.csv.clone());
            if c.spread {
                header.push(format!("{}_min", c.csv));
                header.push(format!("{}_max", c.csv));
            }
        }
        let mut s = header.join(",") + "\n";
        for row in &self.rows {
            let mut fields = Vec::new();
            for &i in &cols {
                row[i].csv_fields(self.columns[i].spread, &mut fields);
            }
            s.push_str(&fields.join(","));
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(vec![
            Column::new("system", "system"),
            Column::new("cell", "cell").shown(Shown::TableOnly),
            Column::new("pipeline", "pipeline").shown(Shown::CsvOnly),
            Column::new("ops/s", "ops_per_sec").spread(),
            Column::new("forwarded", "forwarded"),
        ]);
        t.push(vec![
            Value::Text("memcached".into()),
            Value::Text("p16 unif".into()),
            Value::Num(16.0, 0),
            Value::spread_of(&[300.0, 100.0, 200.0], 0),
            Value::Missing,
        ]);
        t.push(vec![
            Value::Text("a,b".into()),
            Value::Text("p1 | x".into()),
            Value::Num(1.0, 0),
            Value::Num(5.26, 1),
            Value::Num(7.0, 0),
        ]);
        t.notes.push("machine: test".into());
        t
    }

    #[test]
    fn one_model_three_renderings() {
        let t = sample();
        assert_eq!(
            t.text(),
            "system    | cell     |         ops/s | forwarded\n\
             ----------+----------+---------------+----------\n\
             memcached | p16 unif | 200 (100-300) |         -\n\
             a,b       | p1 | x   |           5.3 |         7\n\
             machine: test\n"
        );
        assert_eq!(
            t.markdown(),
            "| system | cell | ops/s | forwarded |\n\
             |---|---|---:|---:|\n\
             | memcached | p16 unif | 200 (100–300) | - |\n\
             | a,b | p1 \\| x | 5.3 | 7 |\n\
             \nmachine: test\n"
        );
        assert_eq!(
            t.csv(),
            "system,pipeline,ops_per_sec,ops_per_sec_min,ops_per_sec_max,forwarded\n\
             memcached,16,200,100,300,\n\
             \"a,b\",1,5.3,5.3,5.3,7\n"
        );
    }

    #[test]
    fn spread_of_takes_the_median_and_extremes() {
        assert_eq!(
            Value::spread_of(&[4.0, 1.0, 3.0, 2.0], 1),
            Value::Spread {
                mid: 2.5,
                lo: 1.0,
                hi: 4.0,
                decimals: 1
            }
        );
        assert_eq!(Value::spread_of(&[], 1), Value::Missing);
        assert_eq!(Value::spread_of(&[f64::NAN], 1), Value::Missing);
    }
}
