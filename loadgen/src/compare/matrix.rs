//! The experiment matrix: layouts (where servers and loadgen run), pinning,
//! systems (how each server is started) and workloads.
//!
//! A *group* is one layout with one pinning: its servers are started once,
//! side by side on their own ports, and every workload of every repetition
//! runs against each of them in turn. A *cell* is a group, a system and a
//! workload; it is measured once per repetition.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::config::Distribution;
use crate::server_process::{cpu_list_string, memcached_argv};

/// One workload: the client side of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Workload {
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Key distribution.
    pub distribution: Distribution,
    /// Fraction of gets.
    pub get_ratio: f64,
    /// Keys per get.
    pub multiget: usize,
}

impl Workload {
    /// Short label such as `p16 zipf0.99 90%g mget10`.
    pub fn label(&self) -> String {
        let d = match self.distribution {
            Distribution::Uniform => "unif".to_string(),
            Distribution::Zipf { s } => format!("zipf{s}"),
        };
        let mut l = format!("p{} {} {:.0}%g", self.pipeline, d, self.get_ratio * 100.0);
        if self.multiget > 1 {
            l.push_str(&format!(" mget{}", self.multiget));
        }
        l
    }

    /// `uniform` or `zipf:S`, as `--distribution` takes it.
    pub fn distribution_name(&self) -> String {
        match self.distribution {
            Distribution::Uniform => "uniform".to_string(),
            Distribution::Zipf { s } => format!("zipf:{s}"),
        }
    }
}

/// The cross product of the workload dimensions, pipeline outermost.
pub fn workloads(
    pipelines: &[usize],
    distributions: &[Distribution],
    get_ratios: &[f64],
    multigets: &[usize],
) -> Vec<Workload> {
    let mut v = Vec::new();
    for &pipeline in pipelines {
        for &distribution in distributions {
            for &get_ratio in get_ratios {
                for &multiget in multigets {
                    v.push(Workload {
                        pipeline,
                        distribution,
                        get_ratio,
                        multiget,
                    });
                }
            }
        }
    }
    v
}

/// Where the servers and loadgen run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// `1+1`, `2 shared`, or `custom`.
    pub name: String,
    /// Server worker threads.
    pub server_threads: usize,
    /// CPUs the server is held to when pinned (corecache: thread `i` on
    /// the `i`-th; memcached: the whole process, with `taskset`).
    pub server_cpus: Vec<usize>,
    /// loadgen threads.
    pub loadgen_threads: usize,
    /// CPUs loadgen's threads are pinned to; empty = unpinned.
    pub loadgen_cpus: Vec<usize>,
}

impl Layout {
    /// Parses `S+L` (S server threads on their own CPUs, L loadgen threads
    /// pinned to the L CPUs below them: `1+1` is loadgen on CPU 0, the
    /// server on CPU 1) or `Nshared` (N server threads on the first N CPUs
    /// and N unpinned loadgen threads that share them), over the `usable`
    /// CPUs in ascending order.
    pub fn parse(spec: &str, usable: &[usize]) -> anyhow::Result<Layout> {
        let spec = spec.trim();
        let number = |s: &str| -> anyhow::Result<usize> {
            s.trim()
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("bad layout {spec:?}: expected S+L or Nshared"))
        };
        let layout = if let Some((s, l)) = spec.split_once('+') {
            let (s, l) = (number(s)?, number(l)?);
            if s + l > usable.len() {
                bail!(
                    "layout {spec}: needs {} CPUs, this process may use {}",
                    s + l,
                    usable.len()
                );
            }
            Layout {
                name: format!("{s}+{l}"),
                server_threads: s,
                server_cpus: usable[l..l + s].to_vec(),
                loadgen_threads: l,
                loadgen_cpus: usable[..l].to_vec(),
            }
        } else if let Some(n) = spec.strip_suffix("shared") {
            let n = number(n.trim_end_matches(['-', ' ']))?;
            if n > usable.len() {
                bail!(
                    "layout {spec}: needs {n} CPUs, this process may use {}",
                    usable.len()
                );
            }
            Layout {
                name: format!("{n} shared"),
                server_threads: n,
                server_cpus: usable[..n].to_vec(),
                loadgen_threads: n,
                loadgen_cpus: Vec::new(),
            }
        } else {
            bail!("bad layout {spec:?}: expected S+L (e.g. 1+1) or Nshared (e.g. 2shared)");
        };
        Ok(layout)
    }
}

/// Whether server threads are pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pinning {
    /// corecache pins thread `i` to the layout's `i`-th server CPU
    /// (`--cpus`) and runs under `taskset` on them; memcached, which
    /// cannot pin its threads, runs under `taskset` on them.
    Pinned,
    /// corecache runs with `--no-pin`, memcached without `taskset`: the
    /// kernel may put their threads on any CPU.
    Unpinned,
}

impl Pinning {
    /// `pinned` or `unpinned`.
    pub fn name(self) -> &'static str {
        match self {
            Pinning::Pinned => "pinned",
            Pinning::Unpinned => "unpinned",
        }
    }

    /// Parses `pinned` or `unpinned`.
    pub fn parse(s: &str) -> anyhow::Result<Pinning> {
        match s.trim() {
            "pinned" => Ok(Pinning::Pinned),
            "unpinned" | "no-pin" => Ok(Pinning::Unpinned),
            o => bail!("--pinning takes pinned and/or unpinned, not {o:?}"),
        }
    }
}

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum System {
    /// corecache, `--runtime thread-per-core`.
    #[serde(rename = "corecache-tpc")]
    CorecacheTpc,
    /// corecache, `--runtime work-stealing`.
    #[serde(rename = "corecache-ws")]
    CorecacheWs,
    /// corecache thread-per-core with `--shard-aware-port`, loaded with
    /// `loadgen --shard-aware` (each key sent to its owner core).
    #[serde(rename = "corecache-sa")]
    CorecacheShardAware,
    /// corecache thread-per-core with `--port-per-core` (thread `i` on
    /// the port `i + 1` above the main one), loaded with `loadgen
    /// --servers` over those ports (each key sent to the core that keeps
    /// it, as a client with a server list does).
    #[serde(rename = "corecache-pc")]
    CorecachePerCore,
    /// memcached.
    #[serde(rename = "memcached")]
    Memcached,
}

impl System {
    /// Parses a `--systems` entry.
    pub fn parse(s: &str) -> anyhow::Result<System> {
        match s.trim() {
            "corecache-tpc" => Ok(System::CorecacheTpc),
            "corecache-ws" => Ok(System::CorecacheWs),
            "corecache-sa" => Ok(System::CorecacheShardAware),
            "corecache-pc" => Ok(System::CorecachePerCore),
            "memcached" => Ok(System::Memcached),
            o => bail!("unknown system {o:?} in --systems"),
        }
    }

    /// Its name in outputs.
    pub fn name(self) -> &'static str {
        match self {
            System::CorecacheTpc => "corecache-tpc",
            System::CorecacheWs => "corecache-ws",
            System::CorecacheShardAware => "corecache-sa",
            System::CorecachePerCore => "corecache-pc",
            System::Memcached => "memcached",
        }
    }

    /// The command line that starts it on `port` in `layout` (program
    /// first), and the CPUs to hold it to with `taskset`, if any.
    pub fn command(
        self,
        bin: &Path,
        port: u16,
        layout: &Layout,
        pinning: Pinning,
        memory_mib: usize,
    ) -> (Vec<String>, Option<Vec<usize>>) {
        let taskset = (pinning == Pinning::Pinned).then(|| layout.server_cpus.clone());
        let runtime = match self {
            System::CorecacheTpc | System::CorecacheShardAware | System::CorecachePerCore => {
                "thread-per-core"
            }
            System::CorecacheWs => "work-stealing",
            System::Memcached => {
                return (
                    memcached_argv(bin, port, layout.server_threads, memory_mib),
                    taskset,
                );
            }
        };
        let mut argv: Vec<String> = [
            &bin.display().to_string(),
            "--listen",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--threads",
            &layout.server_threads.to_string(),
        ]
        .map(String::from)
        .to_vec();
        match pinning {
            Pinning::Pinned => {
                argv.extend(["--cpus".into(), cpu_list_string(&layout.server_cpus)]);
            }
            Pinning::Unpinned => argv.push("--no-pin".into()),
        }
        argv.extend(["--runtime", runtime, "-m", &memory_mib.to_string()].map(String::from));
        if self == System::CorecacheShardAware {
            // The shard-aware port is the next one up; `start` checks it
            // is free before starting the server.
            argv.extend(["--shard-aware-port".into(), (port + 1).to_string()]);
        }
        if self == System::CorecachePerCore {
            // Thread i's port is port + 1 + i; `start` checks they are free.
            argv.extend(["--port-per-core".into(), (port + 1).to_string()]);
        }
        (argv, taskset)
    }

    /// Ports above the main one it also listens on, which must be free
    /// before it starts.
    pub fn extra_ports(self, server_threads: usize) -> usize {
        match self {
            System::CorecacheShardAware => 1,
            System::CorecachePerCore => server_threads,
            System::CorecacheTpc | System::CorecacheWs | System::Memcached => 0,
        }
    }

    /// The servers loadgen spreads keys over (`--servers`) when the
    /// system is started on `port`: its per-core ports; none for the others.
    pub fn per_core_servers(self, port: u16, server_threads: usize) -> Vec<SocketAddr> {
        match self {
            System::CorecachePerCore => (0..server_threads)
                .map(|i| SocketAddr::from(([127, 0, 0, 1], port + 1 + i as u16)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Parses a comma-separated list with `item`.
pub fn parse_list<T>(s: &str, item: impl Fn(&str) -> anyhow::Result<T>) -> anyhow::Result<Vec<T>> {
    let v: Vec<T> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(item)
        .collect::<anyhow::Result<_>>()?;
    if v.is_empty() {
        bail!("empty list {s:?}");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_split_the_usable_cpus() {
        let l = Layout::parse("1+1", &[0, 1]).unwrap();
        assert_eq!(
            (l.name.as_str(), l.server_threads, l.loadgen_threads),
            ("1+1", 1, 1)
        );
        assert_eq!((l.server_cpus, l.loadgen_cpus), (vec![1], vec![0]));
        let l = Layout::parse("2shared", &[0, 1]).unwrap();
        assert_eq!(l.name, "2 shared");
        assert_eq!((l.server_cpus, l.loadgen_cpus), (vec![0, 1], vec![]));
        assert_eq!(l.loadgen_threads, 2);
        let l = Layout::parse("2+2", &[2, 3, 5, 7]).unwrap();
        assert_eq!((l.server_cpus, l.loadgen_cpus), (vec![5, 7], vec![2, 3]));
        assert!(Layout::parse("2+1", &[0, 1]).is_err());
        assert!(Layout::parse("3shared", &[0, 1]).is_err());
        assert!(Layout::parse("0+1", &[0, 1]).is_err());
        assert!(Layout::parse("split", &[0, 1]).is_err());
    }

    #[test]
    fn server_commands_follow_layout_and_pinning() {
        let l = Layout::parse("2shared", &[0, 1]).unwrap();
        let bin = Path::new("/x/corecache");
        let (argv, taskset) = System::CorecacheWs.command(bin, 7, &l, Pinning::Pinned, 64);
        assert_eq!(
            argv.join(" "),
            "/x/corecache --listen 127.0.0.1 --port 7 --threads 2 --cpus 0,1 \
             --runtime work-stealing -m 64"
        );
        assert_eq!(taskset, Some(vec![0, 1]));
        let (argv, taskset) = System::CorecacheTpc.command(bin, 7, &l, Pinning::Unpinned, 64);
        assert_eq!(
            argv.join(" "),
            "/x/corecache --listen 127.0.0.1 --port 7 --threads 2 --no-pin \
             --runtime thread-per-core -m 64"
        );
        assert_eq!(taskset, None);
        let (argv, _) = System::CorecacheShardAware.command(bin, 7, &l, Pinning::Pinned, 64);
        assert_eq!(
            argv.join(" "),
            "/x/corecache --listen 127.0.0.1 --port 7 --threads 2 --cpus 0,1 \
             --runtime thread-per-core -m 64 --shard-aware-port 8"
        );
        let (argv, _) = System::CorecachePerCore.command(bin, 7, &l, Pinning::Unpinned, 64);
        assert_eq!(
            argv.join(" "),
            "/x/corecache --listen 127.0.0.1 --port 7 --threads 2 --no-pin \
             --runtime thread-per-core -m 64 --port-per-core 8"
        );
        assert_eq!(
            System::CorecachePerCore.per_core_servers(7, 2),
            [
                "127.0.0.1:8".parse().unwrap(),
                "127.0.0.1:9".parse().unwrap()
            ]
        );
        assert_eq!(System::CorecachePerCore.extra_ports(2), 2);
        assert!(System::CorecacheTpc.per_core_servers(7, 2).is_empty());
        let (argv, taskset) =
            System::Memcached.command(Path::new("memcached"), 7, &l, Pinning::Unpinned, 64);
        assert!(
            argv.join(" ")
                .starts_with("memcached -U 0 -l 127.0.0.1 -p 7 -t 2 -m 64")
        );
        assert_eq!(taskset, None);
    }

    #[test]
    fn workloads_are_the_cross_product() {
        let w = workloads(
            &[1, 16],
            &[Distribution::Uniform, Distribution::Zipf { s: 0.99 }],
            &[0.9, 0.5],
            &[1, 10],
        );
        assert_eq!(w.len(), 16);
        assert_eq!(w[0].label(), "p1 unif 90%g");
        assert_eq!(w[15].label(), "p16 zipf0.99 50%g mget10");
    }
}
