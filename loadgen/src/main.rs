//! The `loadgen` command line: a thin wrapper over [`loadgen::run()`] and
//! [`loadgen::compare::compare`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load generator for memcached-compatible servers.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    args: loadgen::Args,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one workload matrix against corecache (both runtimes) and memcached.
    Compare(loadgen::compare::CompareArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Compare(a)) => loadgen::compare::compare(&a).map(|()| true),
        None => run(&cli.args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs one load, or one `--check`; `Ok(false)` when the server misbehaved.
fn run(args: &loadgen::Args) -> anyhow::Result<bool> {
    if let Some(check) = loadgen::lincheck::CheckConfig::from_args(args)? {
        return loadgen::lincheck::main(&check, args.json.as_deref());
    }
    let cfg = loadgen::Config::from_args(args)?;
    let report = loadgen::run(&cfg)?;
    print!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    if report.failed() {
        eprintln!("loadgen: the server sent errors or bad replies (see above)");
    }
    Ok(!report.failed())
}
