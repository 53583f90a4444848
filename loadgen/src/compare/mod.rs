//! `loadgen compare`: one command, one matrix, one report.
//!
//! ```text
//! for each layout (1+1, 2 shared) x pinning (pinned, unpinned):      a group
//!     start every system side by side, each on its own port
//!     for each repetition:
//!         for each workload (pipeline x keys x get ratio x multi-get):
//!             for each system: one loadgen run, server CPU and counters
//!                              read at both edges of its measured phase
//!     stop them
//! ```
//!
//! Repetitions are interleaved: every system runs a cell before any runs
//! its next repetition, and the systems of a cell run back to back, so a
//! machine that slows down during the matrix slows all systems alike
//! instead of the one that happened to run last. Each server is prefilled
//! by its first run and keeps its items for the rest of the group (every
//! workload uses the same keys and value size).
//!
//! Outputs, in `--out`:
//!
//! * the table on stdout, `results.md` and `results.csv`: one row per
//!   group, workload and system, each number the median of the
//!   repetitions with its min–max (see [`results`]),
//! * `results.json`: the machine, the settings and every run's full
//!   [`Report`] with the server's deltas ([`probe::ServerDelta`]),
//! * `throughput-cpu.svg`: ops/s and server CPU per request side by side,
//! * `latency.svg`: p50, p99 and p99.9 side by side.

mod machine;
mod matrix;
pub mod probe;
mod results;
pub mod svg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

pub use machine::Machine;
pub use matrix::{Layout, Pinning, System, Workload, workloads};
pub use results::{charts, table};

use crate::config::{Config, parse_cpu_list, parse_distribution, parse_duration};
use crate::report::Report;
use crate::run::{Edge, run_observed};
use crate::server_process::{ServerProcess, cpu_list_string, find_binary, free_port};
use matrix::parse_list;
use probe::{Probe, Reading, ServerDelta};

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
    /// `corecache-tpc,corecache-ws,corecache-sa,corecache-pc,memcached`
    /// (`corecache-sa`: thread-per-core with `--shard-aware-port`, loaded
    /// with `--shard-aware`; `corecache-pc`: thread-per-core with
    /// `--port-per-core`, loaded with `--servers` over its per-core ports).
    #[arg(
        long,
        default_value = "corecache-tpc,corecache-ws,corecache-sa,corecache-pc,memcached"
    )]
    pub systems: String,
    /// Layouts, comma-separated: `S+L` (S server threads on their own
    /// CPUs, L loadgen threads pinned below them) or `Nshared` (N server
    /// threads on the first N CPUs, N unpinned loadgen threads).
    #[arg(long, default_value = "1+1,2shared")]
    pub layouts: String,
    /// Server pinning, comma-separated: `pinned`, `unpinned`.
    #[arg(long, default_value = "pinned,unpinned")]
    pub pinning: String,
    /// One custom layout instead of `--layouts`: the servers' CPUs.
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// Custom layout: loadgen's CPUs, one thread per CPU.
    #[arg(long)]
    pub loadgen_cpus: Option<String>,
    /// Custom layout: server worker threads [default: one per server CPU].
    #[arg(long)]
    pub server_threads: Option<usize>,
    /// Pipeline depths, comma-separated.
    #[arg(long, default_value = "1,16")]
    pub pipelines: String,
    /// Key distributions, comma-separated (`uniform`, `zipf:S`).
    #[arg(long, default_value = "uniform,zipf:0.99")]
    pub distributions: String,
    /// Get ratios, comma-separated.
    #[arg(long, default_value = "0.9,0.5")]
    pub get_ratios: String,
    /// Keys per get, comma-separated (1 = plain get).
    #[arg(long, default_value = "1,10")]
    pub multigets: String,
    /// Repetitions of every cell [default: 3; 1 with --quick].
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Measured time per run [default: 3s; 100ms with --quick].
    #[arg(long)]
    pub duration: Option<String>,
    /// Warmup per run [default: 1s; 0s with --quick].
    #[arg(long)]
    pub warmup: Option<String>,
    /// A smoke run of the whole matrix: one repetition, short runs, few
    /// keys (flags given explicitly still win).
    #[arg(long)]
    pub quick: bool,
    /// Connections per run.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Keys [default: 100000; 2000 with --quick].
    #[arg(long)]
    pub keys: Option<u64>,
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

/// The fixed part of every run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Connections per run.
    pub connections: usize,
    /// Keys.
    pub keys: u64,
    /// Value size, bytes.
    pub value_size: usize,
    /// Measured seconds per run.
    pub duration_s: f64,
    /// Warmup seconds per run.
    pub warmup_s: f64,
    /// Repetitions of every cell.
    pub repeat: usize,
    /// Server memory, MiB.
    pub memory_mib: usize,
}

/// One repetition of one cell.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Repetition, from 0.
    pub rep: usize,
    /// What the server spent and counted in the measured phase.
    pub server: ServerDelta,
    /// loadgen's full report.
    pub report: Report,
}

/// One cell: a group, a system and a workload, with its repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct CellResult {
    /// Layout name (`1+1`, `2 shared`).
    pub layout: String,
    /// Server pinning.
    pub pinning: Pinning,
    /// Server worker threads.
    pub server_threads: usize,
    /// The system.
    pub system: System,
    /// The workload.
    pub workload: Workload,
    /// The server's command line (program first).
    pub command: Vec<String>,
    /// CPUs it was held to with `taskset`, if any.
    pub taskset: Option<Vec<usize>>,
    /// One per repetition, in order.
    pub samples: Vec<Sample>,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Version of this JSON's shape.
    pub schema: u32,
    /// Where it ran.
    pub machine: Machine,
    /// The fixed workload settings.
    pub settings: Settings,
    /// The layouts, in run order.
    pub layouts: Vec<Layout>,
    /// Every cell with its samples, by group, then workload, then system.
    pub cells: Vec<CellResult>,
}

/// A server of the running group.
struct Running {
    system: System,
    server: ServerProcess,
    addr: SocketAddr,
    /// corecache-pc: its per-core ports, which loadgen spreads keys over.
    servers: Vec<SocketAddr>,
    probe: Probe,
    command: Vec<String>,
    taskset: Option<Vec<usize>>,
    prefilled: bool,
    failed: bool,
    /// Samples per workload.
    samples: Vec<Vec<Sample>>,
}

/// Runs the comparison and writes its outputs.
pub fn compare(a: &CompareArgs) -> anyhow::Result<()> {
    let taskset = find_binary(Path::new("taskset")).is_some();
    if !taskset {
        eprintln!("compare: warning: taskset not found, servers run unpinned");
    }
    let machine = Machine::detect(taskset);
    let layouts = layouts(a, &machine.usable_cpus)?;
    let pinnings = parse_list(&a.pinning, Pinning::parse)?;
    let systems = parse_list(&a.systems, System::parse)?;
    let workloads = workloads(
        &parse_list(&a.pipelines, |s| Ok(s.parse::<usize>()?))?,
        &parse_list(&a.distributions, parse_distribution)?,
        &parse_list(&a.get_ratios, |s| Ok(s.parse::<f64>()?))?,
        &parse_list(&a.multigets, |s| Ok(s.parse::<usize>()?))?,
    );
    let settings = Settings {
        connections: a.connections,
        keys: a.keys.unwrap_or(if a.quick { 2000 } else { 100_000 }),
        value_size: a.value_size,
        duration_s: parse_duration(a.duration.as_deref().unwrap_or(if a.quick {
            "100ms"
        } else {
            "3s"
        }))?
        .as_secs_f64(),
        warmup_s: parse_duration(
            a.warmup
                .as_deref()
                .unwrap_or(if a.quick { "0s" } else { "1s" }),
        )?
        .as_secs_f64(),
        repeat: a.repeat.unwrap_or(if a.quick { 1 } else { 3 }).max(1),
        memory_mib: a.memory,
    };
    let corecache = match &a.corecache {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("locating loadgen's directory")?
            .join("corecache"),
    };
    let mut broken = Vec::new();
    let mut binaries = Vec::new();
    for &system in &systems {
        let bin = match system {
            System::Memcached => &a.memcached,
            _ => &corecache,
        };
        match (find_binary(bin), system) {
            (Some(b), _) => binaries.push((system, b)),
            // memcached is compared "when installed".
            (None, System::Memcached) => eprintln!(
                "compare: warning: skipping memcached: {} not found",
                bin.display()
            ),
            (None, _) => {
                eprintln!(
                    "compare: error: {}: {} not found (see --corecache)",
                    system.name(),
                    bin.display()
                );
                broken.push(system.name().to_string());
            }
        }
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    println!("{}", machine.summary());
    let runs = layouts.len() * pinnings.len() * binaries.len() * workloads.len() * settings.repeat;
    eprintln!(
        "compare: {runs} runs of {:.1} s + {:.1} s warmup",
        settings.duration_s, settings.warmup_s
    );

    let mut cells = Vec::new();
    for layout in &layouts {
        for &pinning in &pinnings {
            let group = format!("{} {}", layout.name, pinning.name());
            let mut running = Vec::new();
            for (system, bin) in &binaries {
                match start(*system, bin, layout, pinning, &settings, taskset) {
                    Ok(r) => running.push(r),
                    Err(e) => {
                        eprintln!(
                            "compare: error: {e:#}; skipping {} in {group}",
                            system.name()
                        );
                        broken.push(format!("{} ({group})", system.name()));
                    }
                }
            }
            for rep in 0..settings.repeat {
                for (w, workload) in workloads.iter().enumerate() {
                    for r in running.iter_mut().filter(|r| !r.failed) {
                        measure(r, layout, workload, w, rep, &settings, &group);
                    }
                }
            }
            for r in running {
                if r.failed {
                    broken.push(format!("{} ({group})", r.system.name()));
                    continue;
                }
                for (workload, samples) in workloads.iter().zip(r.samples) {
                    cells.push(CellResult {
                        layout: layout.name.clone(),
                        pinning,
                        server_threads: layout.server_threads,
                        system: r.system,
                        workload: *workload,
                        command: r.command.clone(),
                        taskset: r.taskset.clone(),
                        samples,
                    });
                }
            }
        }
    }
    if cells.is_empty() {
        bail!("no system could be measured ({})", broken.join(", "));
    }
    // By group, then workload, then system: the systems of a cell side by side.
    let order = |c: &CellResult| {
        (
            layouts.iter().position(|l| l.name == c.layout),
            pinnings.iter().position(|p| *p == c.pinning),
            workloads.iter().position(|w| *w == c.workload),
            systems.iter().position(|s| *s == c.system),
        )
    };
    cells.sort_by_key(order);
    let cmp = Comparison {
        schema: 2,
        machine,
        settings,
        layouts,
        cells,
    };
    let failures: usize = cmp
        .cells
        .iter()
        .flat_map(|c| &c.samples)
        .filter(|s| s.report.failed())
        .count();
    let table = table(&cmp);
    print!("{}", table.text());
    std::fs::write(a.out.join("results.csv"), table.csv())?;
    std::fs::write(a.out.join("results.md"), table.markdown())?;
    std::fs::write(
        a.out.join("results.json"),
        serde_json::to_string_pretty(&cmp)? + "\n",
    )?;
    let (throughput_cpu, latency) = charts(&cmp);
    std::fs::write(a.out.join("throughput-cpu.svg"), throughput_cpu.svg())?;
    std::fs::write(a.out.join("latency.svg"), latency.svg())?;
    println!(
        "wrote {}/{{results.csv,results.md,results.json,throughput-cpu.svg,latency.svg}}",
        a.out.display()
    );
    if failures > 0 {
        bail!("{failures} runs saw server errors (see the errors column)");
    }
    if !broken.is_empty() {
        bail!("could not measure: {}", broken.join(", "));
    }
    Ok(())
}

/// `--layouts`, or the one custom layout the old per-CPU flags describe.
fn layouts(a: &CompareArgs, usable: &[usize]) -> anyhow::Result<Vec<Layout>> {
    if a.server_cpus.is_none() && a.loadgen_cpus.is_none() && a.server_threads.is_none() {
        return parse_list(&a.layouts, |s| Layout::parse(s, usable));
    }
    let half = (usable.len() / 2).max(1);
    let loadgen_cpus = match &a.loadgen_cpus {
        Some(s) => parse_cpu_list(s)?,
        None => usable[..half].to_vec(),
    };
    let server_cpus = match &a.server_cpus {
        Some(s) => parse_cpu_list(s)?,
        None if usable.len() >= 2 => usable[half..].to_vec(),
        None => usable.to_vec(),
    };
    if server_cpus.iter().any(|c| loadgen_cpus.contains(c)) {
        eprintln!("compare: warning: server and loadgen CPUs overlap; results will be noisy");
    }
    Ok(vec![Layout {
        name: "custom".into(),
        server_threads: a.server_threads.unwrap_or(server_cpus.len()),
        server_cpus,
        loadgen_threads: loadgen_cpus.len(),
        loadgen_cpus,
    }])
}

/// Starts one system of a group and opens its stats connection.
fn start(
    system: System,
    bin: &Path,
    layout: &Layout,
    pinning: Pinning,
    settings: &Settings,
    taskset: bool,
) -> anyhow::Result<Running> {
    // corecache-sa also listens on port + 1, corecache-pc on one port per
    // thread above it: find a run that is free.
    let extra = system.extra_ports(layout.server_threads);
    let free_above = |port: u16| {
        (1..=extra).all(|i| {
            usize::from(port) + i <= usize::from(u16::MAX)
                && std::net::TcpListener::bind(("127.0.0.1", port + i as u16)).is_ok()
        })
    };
    let mut port = free_port()?;
    while !free_above(port) {
        port = free_port()?;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (command, pin) = system.command(bin, port, layout, pinning, settings.memory_mib);
    let pin = pin.filter(|_| taskset);
    eprintln!(
        "compare: {} {}: starting {}{}",
        layout.name,
        pinning.name(),
        pin.as_ref()
            .map(|c| format!("taskset -c {} ", cpu_list_string(c)))
            .unwrap_or_default(),
        command.join(" ")
    );
    let mut server = ServerProcess::start(system.name(), &command, pin.as_deref())?;
    server.wait_for_port(addr, Duration::from_secs(15))?;
    let probe = Probe::connect(server.pid(), addr)?;
    Ok(Running {
        system,
        server,
        addr,
        servers: system.per_core_servers(port, layout.server_threads),
        probe,
        command,
        taskset: pin,
        prefilled: false,
        failed: false,
        samples: Vec::new(),
    })
}

/// One run of `workload` against `r`, with the server read at both edges
/// of the measured phase. A run that cannot start, or a server that dies
/// or stops answering `stats`, drops the system from its group.
fn measure(
    r: &mut Running,
    layout: &Layout,
    workload: &Workload,
    w: usize,
    rep: usize,
    settings: &Settings,
    group: &str,
) {
    let cfg = Config {
        // corecache-pc: keys go to the per-core ports; the probe reads the
        // whole server's counters on the main one.
        server: r.servers.first().copied().unwrap_or(r.addr),
        servers: r.servers.clone(),
        connections: settings.connections,
        threads: layout.loadgen_threads,
        cpus: layout.loadgen_cpus.clone(),
        pipeline: workload.pipeline,
        multiget: workload.multiget,
        duration: Duration::from_secs_f64(settings.duration_s),
        warmup: Duration::from_secs_f64(settings.warmup_s),
        keys: settings.keys,
        value_min: settings.value_size,
        value_max: settings.value_size,
        get_ratio: workload.get_ratio,
        distribution: workload.distribution,
        prefill: !r.prefilled,
        shard_aware: r.system == System::CorecacheShardAware,
        progress: false,
        ..Config::default()
    };
    let (mut before, mut after) = (None::<Reading>, None::<Reading>);
    let mut probe_error = None;
    let probe = &mut r.probe;
    let report = run_observed(&cfg, &mut |edge| match probe.read() {
        Ok(reading) if edge == Edge::MeasureStart => before = Some(reading),
        Ok(reading) => after = Some(reading),
        Err(e) => probe_error = Some(e),
    });
    let system = r.system.name();
    let outcome = match (report, before, after, probe_error) {
        (Ok(report), Some(b), Some(a), None) if !r.server.exited() => Ok((report, b, a)),
        (Err(e), ..) => Err(e),
        (.., Some(e)) => Err(e.context("reading the server's counters")),
        _ => Err(anyhow::anyhow!("the server exited")),
    };
    let (report, before, after) = match outcome {
        Ok(x) => x,
        Err(e) => {
            // E.g. the server crashed: keep the other systems' results.
            eprintln!(
                "compare: error: {group} {system}: {}: {e:#}; skipping the rest of {system} in {group}",
                workload.label()
            );
            r.failed = true;
            return;
        }
    };
    r.prefilled = true;
    let server = ServerDelta::between(&before, &after);
    eprintln!(
        "compare: {group:<16} rep {rep} {:<24} {system:<14} {:>10.0} ops/s  p99 {:>8.1} us  server {:>6.2} us/req{}",
        workload.label(),
        report.ops_per_sec,
        report.latency_us.p99,
        server.cpu_us_per_request,
        if report.failed() { "  ERRORS" } else { "" }
    );
    for s in report.error_samples.iter().take(3) {
        eprintln!("compare:   {s}");
    }
    if r.samples.len() <= w {
        r.samples.resize_with(w + 1, Vec::new);
    }
    r.samples[w].push(Sample {
        rep,
        server,
        report,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CompareArgs,
    }

    fn layouts_of(argv: &[&str]) -> anyhow::Result<Vec<Layout>> {
        let cli = Cli::try_parse_from([&["compare"][..], argv].concat()).unwrap();
        layouts(&cli.args, &[0, 1, 2, 3])
    }

    #[test]
    fn the_old_cpu_flags_make_one_custom_layout() {
        let l = layouts_of(&[]).unwrap();
        assert_eq!(
            l.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["1+1", "2 shared"]
        );
        let l = layouts_of(&["--server-cpus", "2-3", "--loadgen-cpus", "0"]).unwrap();
        assert_eq!(
            l,
            vec![Layout {
                name: "custom".into(),
                server_threads: 2,
                server_cpus: vec![2, 3],
                loadgen_threads: 1,
                loadgen_cpus: vec![0],
            }]
        );
        // Threads alone: the upper half of the CPUs for the server.
        let l = layouts_of(&["--server-threads", "4"]).unwrap();
        assert_eq!(
            (l[0].server_threads, &l[0].server_cpus, &l[0].loadgen_cpus),
            (4, &vec![2, 3], &vec![0, 1])
        );
        assert!(layouts_of(&["--layouts", "1+1,3+3"]).is_err());
    }
}
