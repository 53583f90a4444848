//! `loadgen compare`: the experiment harness.
//!
//! Starts each server under test (corecache with the thread-per-core
//! runtime, corecache with the work-stealing runtime, memcached), pinned to
//! the server CPUs with `taskset` (and corecache's own `--cpus`), waits for
//! its port, runs one workload matrix against it with loadgen pinned to
//! other CPUs, stops it, and writes the results side by side:
//!
//! * a table on stdout (ops/s, p50, p99, p99.9 per system),
//! * `results.csv` (one row per system and cell, with the machine),
//! * `results.md` (the same table in Markdown, for the README),
//! * `results.json` (machine plus every full [`Report`]),
//! * `latency.svg` (throughput and p50/p99 per cell and system).
//!
//! The matrix: pipeline 1 and 16 x uniform and zipf:0.99 x 90% and 50%
//! gets, each with `--prefill`, 50 connections, 32-byte values, 100k keys.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::config::{Config, Distribution, parse_cpu_list, parse_duration};
use crate::report::Report;

/// Flags of `loadgen compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// corecache binary [default: `corecache` next to this executable].
    #[arg(long)]
    pub corecache: Option<PathBuf>,
    /// memcached binary; skipped with a warning when it cannot be found.
    #[arg(long, default_value = "memcached")]
    pub memcached: PathBuf,
    /// Systems to run, comma-separated, from
    /// `corecache-tpc,corecache-ws,memcached`.
    #[arg(long, default_value = "corecache-tpc,corecache-ws,memcached")]
    pub systems: String,
    /// CPUs for the servers [default: the upper half of the usable CPUs;
    /// CPU 1 of 2].
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// CPUs for loadgen's threads, one thread per CPU [default: the lower
    /// half; CPU 0 of 2].
    #[arg(long)]
    pub loadgen_cpus: Option<String>,
    /// Server worker threads [default: one per server CPU].
    #[arg(long)]
    pub server_threads: Option<usize>,
    /// Measured time per cell.
    #[arg(long, default_value = "3s")]
    pub duration: String,
    /// Warmup per cell.
    #[arg(long, default_value = "1s")]
    pub warmup: String,
    /// Connections per cell.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Keys per cell.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,
    /// Server memory limit, MiB (passed as `-m`).
    #[arg(short = 'm', long, default_value_t = 256)]
    pub memory: usize,
    /// Directory for the CSV, Markdown, JSON and SVG outputs.
    #[arg(long, default_value = "compare-results")]
    pub out: PathBuf,
}

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

/// The machine the results come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `nproc`.
    pub nproc: usize,
    /// `uname -r`.
    pub kernel: String,
    /// CPUs the servers were pinned to.
    pub server_cpus: Vec<usize>,
    /// CPUs loadgen was pinned to.
    pub loadgen_cpus: Vec<usize>,
    /// Whether `taskset` was available to pin the servers.
    pub servers_pinned: bool,
}

/// Results of one system over the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    /// `corecache-tpc`, `corecache-ws` or `memcached`.
    pub system: String,
    /// The command line that started it.
    pub command: Vec<String>,
    /// One report per matrix cell, in [`matrix`] order.
    pub reports: Vec<Report>,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Where it ran.
    pub machine: Machine,
    /// The matrix.
    pub cells: Vec<Cell>,
    /// Per system.
    pub systems: Vec<SystemResult>,
}

/// A started server, killed on drop.
struct Server {
    child: Child,
    name: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn find_binary(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(p))
            .find(|c| c.is_file())
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn cpu_list_string(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn start_server(name: &str, argv: &[String], pin: Option<&[usize]>) -> anyhow::Result<Server> {
    let mut cmd = match pin {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu_list_string(cpus)).args(argv);
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    // If loadgen dies (Ctrl-C), take the server with it instead of leaving
    // it bound to its CPU. And hand it no inherited descriptors: a server
    // that outlives us holding, say, a build lock's fd blocks everybody.
    // SAFETY: prctl and close_range are async-signal-safe syscalls; nothing
    // else runs in the child. close_range may be missing (kernel < 5.11),
    // which only loses the hygiene.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}: {argv:?}"))?;
    Ok(Server {
        child,
        name: name.to_string(),
    })
}

fn wait_for_port(server: &mut Server, addr: SocketAddr) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = server.child.try_wait()? {
            bail!("{} exited before listening ({status})", server.name);
        }
        if t0.elapsed() > Duration::from_secs(15) {
            bail!(
                "{} did not accept connections on {addr} within 15 s",
                server.name
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs the comparison and writes its outputs.
pub fn compare(a: &CompareArgs) -> anyhow::Result<()> {
    let nproc = command_output("nproc", &[])
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let kernel = command_output("uname", &["-r"]).unwrap_or_else(|| "unknown".into());
    // Split the CPUs this process may use: loadgen low, servers high.
    let mut usable: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    usable.sort_unstable();
    if usable.is_empty() {
        usable.push(0);
    }
    let half = (usable.len() / 2).max(1);
    let loadgen_cpus = match &a.loadgen_cpus {
        Some(s) => parse_cpu_list(s)?,
        None => usable[..half].to_vec(),
    };
    let server_cpus = match &a.server_cpus {
        Some(s) => parse_cpu_list(s)?,
        None if usable.len() >= 2 => usable[half..].to_vec(),
        None => usable.clone(),
    };
    if server_cpus.iter().any(|c| loadgen_cpus.contains(c)) {
        eprintln!("compare: warning: server and loadgen CPUs overlap; results will be noisy");
    }
    let servers_pinned = find_binary(Path::new("taskset")).is_some();
    if !servers_pinned {
        eprintln!("compare: warning: taskset not found, servers run unpinned");
    }
    let server_threads = a.server_threads.unwrap_or(server_cpus.len());
    let duration = parse_duration(&a.duration)?;
    let warmup = parse_duration(&a.warmup)?;
    let corecache = match &a.corecache {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("locating loadgen's directory")?
            .join("corecache"),
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let machine = Machine {
        nproc,
        kernel,
        server_cpus: server_cpus.clone(),
        loadgen_cpus: loadgen_cpus.clone(),
        servers_pinned,
    };
    println!(
        "machine: {} CPUs, kernel {}; servers on CPUs {} ({} threads), loadgen on CPUs {}",
        machine.nproc,
        machine.kernel,
        cpu_list_string(&server_cpus),
        server_threads,
        cpu_list_string(&loadgen_cpus)
    );

    let cells = matrix();
    let mut results = Vec::new();
    let mut failures = 0;
    let mut broken = Vec::new();
    for system in a
        .systems
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mem = a.memory.to_string();
        let (bin, mut args): (PathBuf, Vec<String>) = match system {
            "corecache-tpc" | "corecache-ws" => {
                let runtime = if system == "corecache-tpc" {
                    "thread-per-core"
                } else {
                    "work-stealing"
                };
                let args = [
                    "--listen",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--threads",
                    &server_threads.to_string(),
                    "--cpus",
                    &cpu_list_string(&server_cpus),
                    "--runtime",
                    runtime,
                    "-m",
                    &mem,
                ]
                .map(String::from)
                .to_vec();
                (corecache.clone(), args)
            }
            "memcached" => {
                let mut args = [
                    "-U",
                    "0",
                    "-l",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    &server_threads.to_string(),
                    "-m",
                    &mem,
                ]
                .map(String::from)
                .to_vec();
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    // memcached refuses to run as root without -u.
                    args.extend(["-u".to_string(), "nobody".to_string()]);
                }
                (a.memcached.clone(), args)
            }
            other => bail!("unknown system {other:?} in --systems"),
        };
        let Some(bin) = find_binary(&bin) else {
            if system == "memcached" {
                // memcached is compared "when installed".
                eprintln!(
                    "compare: warning: skipping memcached: {} not found",
                    bin.display()
                );
            } else {
                eprintln!(
                    "compare: error: {system}: {} not found (see --corecache)",
                    bin.display()
                );
                broken.push(system.to_string());
            }
            continue;
        };
        args.insert(0, bin.display().to_string());
        eprintln!("compare: starting {system}: {}", args.join(" "));
        let started = start_server(
            system,
            &args,
            servers_pinned.then_some(server_cpus.as_slice()),
        )
        .and_then(|mut server| {
            wait_for_port(&mut server, addr)?;
            Ok(server)
        });
        let server = match started {
            Ok(s) => s,
            Err(e) => {
                eprintln!("compare: error: {e:#}; skipping {system}");
                broken.push(system.to_string());
                continue;
            }
        };
        let mut reports = Vec::new();
        for cell in &cells {
            let cfg = Config {
                server: addr,
                connections: a.connections,
                threads: loadgen_cpus.len(),
                cpus: loadgen_cpus.clone(),
                pipeline: cell.pipeline,
                duration,
                warmup,
                keys: a.keys,
                value_min: a.value_size,
                value_max: a.value_size,
                get_ratio: cell.get_ratio,
                distribution: cell.distribution,
                prefill: true,
                progress: false,
                ..Config::default()
            };
            let r = match crate::run(&cfg) {
                Ok(r) => r,
                Err(e) => {
                    // E.g. the server crashed: keep the other systems' results.
                    eprintln!(
                        "compare: error: {system}: {}: {e:#}; skipping the rest of {system}",
                        cell.label()
                    );
                    break;
                }
            };
            eprintln!(
                "compare: {system:<14} {:<20} {:>10.0} ops/s  p50 {:>8.1}  p99 {:>8.1}  p99.9 {:>8.1} us{}",
                cell.label(),
                r.ops_per_sec,
                r.latency_us.p50,
                r.latency_us.p99,
                r.latency_us.p999,
                if r.failed() { "  ERRORS" } else { "" }
            );
            if r.failed() {
                failures += 1;
                for s in &r.error_samples {
                    eprintln!("compare:   {s}");
                }
            }
            reports.push(r);
        }
        drop(server);
        if reports.len() < cells.len() {
            broken.push(system.to_string());
            continue;
        }
        results.push(SystemResult {
            system: system.to_string(),
            command: args,
            reports,
        });
    }
    if results.is_empty() {
        bail!("no system could be started ({})", broken.join(", "));
    }
    let cmp = Comparison {
        machine,
        cells,
        systems: results,
    };
    let table = text_table(&cmp);
    print!("{table}");
    std::fs::write(a.out.join("results.csv"), csv(&cmp))?;
    std::fs::write(a.out.join("results.md"), markdown(&cmp))?;
    std::fs::write(
        a.out.join("results.json"),
        serde_json::to_string_pretty(&cmp)? + "\n",
    )?;
    plot(&cmp, &a.out.join("latency.svg"))?;
    println!(
        "wrote {}/{{results.csv,results.md,results.json,latency.svg}}",
        a.out.display()
    );
    if failures > 0 {
        bail!("{failures} cells saw server errors (marked `!`)");
    }
    if !broken.is_empty() {
        bail!("could not start: {}", broken.join(", "));
    }
    Ok(())
}

/// The side-by-side table printed on stdout.
pub fn text_table(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = write!(s, "{:<20}", "cell");
    for sys in &c.systems {
        let _ = write!(s, " | {:^38}", sys.system);
    }
    s.push('\n');
    let _ = write!(s, "{:<20}", "");
    for _ in &c.systems {
        let _ = write!(
            s,
            " | {:>10} {:>8} {:>8} {:>9}",
            "ops/s", "p50us", "p99us", "p99.9us"
        );
    }
    s.push('\n');
    for (i, cell) in c.cells.iter().enumerate() {
        let _ = write!(s, "{:<20}", cell.label());
        for sys in &c.systems {
            let r = &sys.reports[i];
            let mark = if r.failed() { "!" } else { " " };
            let _ = write!(
                s,
                " | {:>9.0}{mark} {:>8.1} {:>8.1} {:>9.1}",
                r.ops_per_sec, r.latency_us.p50, r.latency_us.p99, r.latency_us.p999
            );
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "machine: nproc {}, kernel {}, server CPUs {}, loadgen CPUs {}",
        c.machine.nproc,
        c.machine.kernel,
        cpu_list_string(&c.machine.server_cpus),
        cpu_list_string(&c.machine.loadgen_cpus)
    );
    s
}

/// `results.csv`: one row per system and cell.
pub fn csv(c: &Comparison) -> String {
    let mut s = String::from(
        "system,pipeline,distribution,get_ratio,ops_per_sec,p50_us,p90_us,p99_us,p999_us,\
         p9999_us,max_us,hit_ratio,errors,client_cpu_us_per_req,nproc,kernel\n",
    );
    for sys in &c.systems {
        for (cell, r) in c.cells.iter().zip(&sys.reports) {
            let d = match cell.distribution {
                Distribution::Uniform => "uniform".to_string(),
                Distribution::Zipf { s } => format!("zipf:{s}"),
            };
            let l = &r.latency_us;
            let _ = writeln!(
                s,
                "{},{},{},{},{:.0},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.4},{},{:.3},{},{}",
                sys.system,
                cell.pipeline,
                d,
                cell.get_ratio,
                r.ops_per_sec,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.p9999,
                l.max,
                r.hit_ratio,
                r.errors.total,
                r.cpu.us_per_request,
                c.machine.nproc,
                c.machine.kernel
            );
        }
    }
    s
}

/// `results.md`: the table in Markdown.
pub fn markdown(c: &Comparison) -> String {
    let mut s = String::from("| cell |");
    for sys in &c.systems {
        let _ = write!(
            s,
            " {0} ops/s | {0} p50 µs | {0} p99 µs | {0} p99.9 µs |",
            sys.system
        );
    }
    s.push_str("\n|---|");
    for _ in &c.systems {
        s.push_str("---:|---:|---:|---:|");
    }
    s.push('\n');
    for (i, cell) in c.cells.iter().enumerate() {
        let _ = write!(s, "| {} |", cell.label());
        for sys in &c.systems {
            let r = &sys.reports[i];
            let l = &r.latency_us;
            let _ = write!(
                s,
                " {:.0}{} | {:.1} | {:.1} | {:.1} |",
                r.ops_per_sec,
                if r.failed() { " (errors)" } else { "" },
                l.p50,
                l.p99,
                l.p999
            );
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "\nMachine: `nproc` = {}, kernel {}; servers pinned to CPUs {}, loadgen to CPUs {}.",
        c.machine.nproc,
        c.machine.kernel,
        cpu_list_string(&c.machine.server_cpus),
        cpu_list_string(&c.machine.loadgen_cpus)
    );
    s
}

/// Draws `latency.svg`: throughput (top) and p50/p99 latency on a log
/// scale (bottom) per cell, one colour per system.
pub fn plot(c: &Comparison, path: &Path) -> anyhow::Result<()> {
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
