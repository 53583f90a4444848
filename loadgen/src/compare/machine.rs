//! The machine a comparison ran on, recorded with its results.

use serde::Serialize;

/// Where the results come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo` (`unknown` when absent).
    pub cpu_model: String,
    /// CPUs online (`/proc/cpuinfo` processors).
    pub cpus_online: usize,
    /// CPUs this process may use (its affinity mask), in order.
    pub usable_cpus: Vec<usize>,
    /// `uname -r`.
    pub kernel: String,
    /// Whether `taskset` was found (pinned memcached and corecache run
    /// under it; without it they run unpinned, with a warning).
    pub taskset: bool,
}

impl Machine {
    /// Reads this machine.
    pub fn detect(taskset: bool) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let cpus_online = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count();
        let mut usable_cpus: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        usable_cpus.sort_unstable();
        if usable_cpus.is_empty() {
            usable_cpus.push(0);
        }
        let kernel = std::process::Command::new("uname")
            .arg("-r")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        Machine {
            cpu_model,
            cpus_online: cpus_online.max(usable_cpus.len()),
            usable_cpus,
            kernel,
            taskset,
        }
    }

    /// One line: model, CPUs, kernel.
    pub fn summary(&self) -> String {
        format!(
            "machine: {}, {} CPUs online ({} usable), kernel {}{}",
            self.cpu_model,
            self.cpus_online,
            self.usable_cpus.len(),
            self.kernel,
            if self.taskset {
                ""
            } else {
                "; no taskset: nothing pinned"
            }
        )
    }
}
