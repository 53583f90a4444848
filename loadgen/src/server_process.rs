//! A server under test as a child process: started (optionally pinned with
//! `taskset`), waited for until it accepts connections, killed on drop.
//!
//! `loadgen compare` starts corecache and memcached this way, and loadgen's
//! own tests start memcached and stand-in servers with the same code, so
//! the tests exercise the set-up the experiments use.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A started server process, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    name: String,
}

impl ServerProcess {
    /// Starts `argv` (program first). With `pin`, it runs under
    /// `taskset -c LIST`, which `exec`s it, so [`ServerProcess::pid`] is the
    /// server's own pid either way.
    ///
    /// The child dies with the thread that started it (`PR_SET_PDEATHSIG`),
    /// so a loadgen killed mid-run does not leave a server bound to its CPU;
    /// start servers from a thread that outlives them. It inherits no file
    /// descriptors beyond stdin/stdout/stderr: a server that outlived us
    /// holding, say, a build lock's descriptor would block everybody.
    pub fn start(name: &str, argv: &[String], pin: Option<&[usize]>) -> anyhow::Result<Self> {
        let Some((program, args)) = argv.split_first() else {
            bail!("starting {name}: empty command line");
        };
        let mut cmd = match pin {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu_list_string(cpus)).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args);
        // SAFETY: prctl and close_range are async-signal-safe syscalls and
        // nothing else runs in the child before exec. close_range may be
        // missing (kernel < 5.11), which only loses the hygiene.
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
        Ok(ServerProcess {
            child,
            name: name.to_string(),
        })
    }

    /// Waits until the server accepts a TCP connection on `addr`; fails if
    /// it exits first or `timeout` passes.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited before listening ({status})", self.name);
            }
            if t0.elapsed() > timeout {
                bail!(
                    "{} did not accept connections on {addr} within {timeout:?}",
                    self.name
                );
            }
            // Polling a port: there is no event to wait on for "listening".
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's pid (also under `taskset`, which execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name it was started under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free right now (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Finds a program: a path with a directory must exist as given; a bare
/// name is looked up in `$PATH`.
pub fn find_binary(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(p))
            .find(|c| c.is_file())
    })
}

/// `[0, 2, 3]` as `0,2,3`, the form `taskset -c` and `--cpus` take.
pub fn cpu_list_string(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The argv that starts memcached on `127.0.0.1:port` with `threads`
/// worker threads and `memory_mib` of item memory (adding `-u nobody` when
/// running as root, which memcached otherwise refuses).
pub fn memcached_argv(bin: &Path, port: u16, threads: usize, memory_mib: usize) -> Vec<String> {
    let mut argv: Vec<String> = [
        &bin.display().to_string(),
        "-U",
        "0",
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        &threads.to_string(),
        "-m",
        &memory_mib.to_string(),
    ]
    .map(String::from)
    .to_vec();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        argv.extend(["-u".to_string(), "nobody".to_string()]);
    }
    argv
}
