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

mod matrix;
mod plot;
mod results;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

pub use matrix::{Cell, matrix};
pub use results::table;

use crate::config::{Config, parse_cpu_list, parse_duration};
use crate::report::Report;
use crate::server_process::{
    ServerProcess, cpu_list_string, find_binary, free_port, memcached_argv,
};

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

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
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
                let mut argv = memcached_argv(&a.memcached, port, server_threads, a.memory);
                argv.remove(0);
                (a.memcached.clone(), argv)
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
        let started = ServerProcess::start(
            system,
            &args,
            servers_pinned.then_some(server_cpus.as_slice()),
        )
        .and_then(|mut server| {
            server.wait_for_port(addr, Duration::from_secs(15))?;
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
    let table = results::table(&cmp);
    print!("{}", table.text());
    std::fs::write(a.out.join("results.csv"), table.csv())?;
    std::fs::write(a.out.join("results.md"), table.markdown())?;
    std::fs::write(
        a.out.join("results.json"),
        serde_json::to_string_pretty(&cmp)? + "\n",
    )?;
    plot::latency(&cmp, &a.out.join("latency.svg"))?;
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
