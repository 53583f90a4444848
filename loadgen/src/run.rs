//! The load run: client threads, connections, phases and the request loop.
//!
//! [`run`] connects every connection up front (so a wrong address fails
//! fast), then starts `--threads` OS threads, each pinned to its CPU and
//! running a single-threaded tokio runtime that drives its share of the
//! connections (connection `i` belongs to thread `i % threads`). Phases are
//! synchronised with a barrier: prefill, then one shared clock for warmup
//! and measurement, then a drain of in-flight requests.
//!
//! Each connection's request loop is in [`crate::conn`].

use std::cell::RefCell;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::net::TcpStream;

use crate::config::Config;
use crate::conn::Conn;
use crate::report::{Report, Stats, new_histogram};
use crate::route::{Route, ServerRing};
use crate::shard::{ShardMap, connect_to_core, first_port};
use crate::tls::{Stream, Tls};
use crate::workload::KeyDist;

/// A connection slot's number and its sockets (one per server core with
/// `--shard-aware`, one per server with `--servers`, else one).
type Slot = (usize, Vec<std::net::TcpStream>);

/// Shared clock of the load phases.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    /// Load (warmup) starts.
    pub(crate) start: Instant,
    /// Measurement starts.
    pub(crate) measure: Instant,
    /// No new requests after this.
    pub(crate) end: Instant,
}

/// Live progress shared by the threads: requests and latencies since the
/// last print.
struct Progress {
    inner: Mutex<(u64, Histogram<u64>)>,
}

/// State shared by the connections of one thread.
pub(crate) struct ThreadState {
    pub(crate) stats: Stats,
    pub(crate) prog_count: u64,
    pub(crate) prog_hist: Option<Histogram<u64>>,
}

/// An edge of the measured phase, for [`run_observed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The warmup is over: measurement starts now.
    MeasureStart,
    /// Measurement ends now (in-flight replies are still to come).
    MeasureEnd,
}

/// Runs the workload described by `cfg` and returns the merged report.
///
/// Fails only when the run cannot start (bad config, connect failure);
/// server misbehaviour during the run is counted in [`Report::errors`].
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    run_observed(cfg, &mut |_| {})
}

/// [`run`], calling `observe` on the main thread at each [`Edge`] of the
/// measured phase, right after loadgen reads its own CPU time there, so a
/// caller can read the server's counters over the same window.
pub fn run_observed(cfg: &Config, observe: &mut dyn FnMut(Edge)) -> anyhow::Result<Report> {
    cfg.validate()?;
    // Each thread builds its own copy; this one reports a bad CA file.
    cfg.tls_ca
        .as_ref()
        .map(|ca| Tls::new(ca, cfg.server))
        .transpose()?;
    let dist = KeyDist::new(cfg.keys, cfg.distribution);
    let map = if cfg.shard_aware {
        Some(ShardMap::fetch(cfg.server)?)
    } else {
        None
    };
    let route = match (map, cfg.servers.len()) {
        (Some(map), _) => Route::Owner(map),
        (None, 0) => Route::One,
        (None, n) => Route::Ring(ServerRing::new(n)),
    };
    let mut per_thread: Vec<Vec<Slot>> = (0..cfg.threads).map(|_| Vec::new()).collect();
    let mut next_port = first_port();
    let connect = |server: &SocketAddr| {
        std::net::TcpStream::connect(server).with_context(|| format!("connecting to {server}"))
    };
    for i in 0..cfg.connections {
        let streams = match &map {
            // One socket per server, in the order of --servers.
            None if !cfg.servers.is_empty() => cfg
                .servers
                .iter()
                .map(connect)
                .collect::<anyhow::Result<_>>()?,
            None => vec![connect(&cfg.server)?],
            // One socket per core, each from a local port the shard-aware
            // listener hands to that core.
            Some(m) => {
                let target = SocketAddr::new(cfg.server.ip(), m.port);
                (0..m.threads)
                    .map(|core| connect_to_core(target, m.threads, core, &mut next_port))
                    .collect::<anyhow::Result<_>>()?
            }
        };
        for s in &streams {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
        }
        per_thread[i % cfg.threads].push((i, streams));
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    for cpu in &cfg.cpus {
        if !cores.iter().any(|c| c.id == *cpu) {
            anyhow::bail!("--cpus: CPU {cpu} is not available to this process");
        }
    }
    let show_progress = cfg.progress && std::io::stdout().is_terminal();
    let progress = show_progress.then(|| {
        Arc::new(Progress {
            inner: Mutex::new((0, new_histogram())),
        })
    });
    let barrier = Arc::new(Barrier::new(cfg.threads + 1));
    let phase = Arc::new(OnceLock::<Phase>::new());
    let cfg_arc = Arc::new(cfg.clone());

    let mut handles = Vec::new();
    for (t, conns) in per_thread.into_iter().enumerate() {
        let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[t % cfg.cpus.len()]);
        let (barrier, phase, cfg, dist, progress) = (
            barrier.clone(),
            phase.clone(),
            cfg_arc.clone(),
            dist.clone(),
            progress.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || {
                let share = Share { cpu, conns, route };
                thread_main(share, &cfg, dist, &barrier, &phase, progress)
            })?;
        handles.push(h);
    }

    // Phase 1: everybody connected and runtimes built; prefill runs.
    barrier.wait();
    let prefill_start = Instant::now();
    barrier.wait();
    let prefill_s = if cfg.prefill {
        prefill_start.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let start = Instant::now();
    let p = Phase {
        start,
        measure: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
    };
    phase.set(p).expect("phase set once");
    barrier.wait();

    let mut last = Instant::now();
    let mut wait_until = |deadline: Instant| {
        while Instant::now() < deadline {
            let step = match &progress {
                Some(_) => (last + Duration::from_secs(1)).min(deadline),
                None => deadline,
            };
            std::thread::sleep(step.saturating_duration_since(Instant::now()));
            if let Some(pr) = &progress {
                let now = Instant::now();
                if now >= last + Duration::from_secs(1) {
                    let (n, p99) = {
                        let mut g = pr.inner.lock().unwrap();
                        let r = (g.0, g.1.value_at_quantile(0.99));
                        g.0 = 0;
                        g.1.reset();
                        r
                    };
                    let secs = (now - last).as_secs_f64();
                    let tag = if last < p.measure { "warmup" } else { "run" };
                    print!(
                        "\r[{:>6} {:>5.0}s] {:>12.0} ops/s   p99 {:>9.1} us ",
                        tag,
                        (now - p.start).as_secs_f64(),
                        n as f64 / secs,
                        p99 as f64 / 1e3
                    );
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                    last = now;
                }
            }
        }
    };
    wait_until(p.measure);
    let cpu0 = cpu_times();
    observe(Edge::MeasureStart);
    wait_until(p.end);
    let cpu1 = cpu_times();
    observe(Edge::MeasureEnd);
    if progress.is_some() {
        println!();
    }

    let mut total = Stats::default();
    for h in handles {
        let s = h
            .join()
            .map_err(|_| anyhow::anyhow!("a loadgen thread panicked"))?;
        total.merge(&s);
    }
    let elapsed = (p.end - p.measure).as_secs_f64();
    Ok(Report::new(
        cfg.clone(),
        &total,
        elapsed,
        (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1),
        prefill_s,
        map,
    ))
}

/// User and system CPU seconds of this process so far.
fn cpu_times() -> (f64, f64) {
    // SAFETY: `rusage` is plain C data (integers and `timeval`s), for
    // which all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage` that outlives the call,
    // and getrusage(2) writes only into the struct it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// What one client thread gets: its CPU, its slots and their route.
struct Share {
    cpu: Option<usize>,
    conns: Vec<Slot>,
    route: Route,
}

fn thread_main(
    Share { cpu, conns, route }: Share,
    cfg: &Config,
    dist: KeyDist,
    barrier: &Barrier,
    phase: &OnceLock<Phase>,
    progress: Option<Arc<Progress>>,
) -> Stats {
    if let Some(id) = cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id })
    {
        eprintln!("loadgen: could not pin a thread to CPU {id}");
    }
    if cfg.rate.is_some() {
        // The default 50 us timer slack would delay every open-loop send.
        // SAFETY: PR_SET_TIMERSLACK only changes this thread's slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Still take part in the three phase barriers, or run() hangs.
            let mut stats = Stats::default();
            stats.errors.io += conns.len() as u64;
            stats.errors.total += conns.len() as u64;
            stats.sample(|| format!("building a tokio runtime: {e}"));
            (0..3).for_each(|_| {
                barrier.wait();
            });
            return stats;
        }
    };
    let state = Rc::new(RefCell::new(ThreadState {
        stats: Stats::default(),
        prog_count: 0,
        prog_hist: progress.as_ref().map(|_| new_histogram()),
    }));
    let pattern: Rc<[u8]> = vec![b'x'; cfg.value_max].into();
    // No panics before the barriers below: the other threads would wait
    // forever. A socket tokio cannot register is a failed connection.
    // run() checked the CA file already.
    let tls = cfg
        .tls_ca
        .as_ref()
        .and_then(|ca| Tls::new(ca, cfg.server).ok());
    let mut conns: Vec<Conn> = rt.block_on(async {
        let mut out = Vec::new();
        for (i, sockets) in conns {
            let mut streams = Vec::with_capacity(sockets.len());
            let mut failure = None;
            for s in sockets {
                let stream = match (TcpStream::from_std(s), &tls) {
                    (Ok(s), None) => Ok(Stream::Plain(s)),
                    (Ok(s), Some(tls)) => tls.connect(s).await.map_err(|e| ("TLS handshake", e)),
                    (Err(e), _) => Err(("registering the socket", e)),
                };
                match stream {
                    Ok(s) => streams.push(s),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            match failure {
                None => out.push(Conn::new(
                    cfg,
                    dist.clone(),
                    i,
                    streams,
                    route,
                    pattern.clone(),
                )),
                Some((what, e)) => {
                    let mut st = state.borrow_mut();
                    st.stats.errors.io += 1;
                    st.stats.errors.total += 1;
                    st.stats.sample(|| format!("connection {i}: {what}: {e}"));
                }
            }
        }
        out
    });
    barrier.wait();
    if cfg.prefill {
        let local = tokio::task::LocalSet::new();
        conns = local.block_on(&rt, async {
            let hs: Vec<_> = conns
                .into_iter()
                .map(|mut c| {
                    let st = state.clone();
                    tokio::task::spawn_local(async move {
                        c.prefill(&st).await;
                        c
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in hs {
                out.push(h.await.expect("prefill task"));
            }
            out
        });
    }
    barrier.wait();
    barrier.wait();
    let p = *phase.get().expect("phase is set before the last barrier");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut hs = Vec::new();
        for mut c in conns {
            let st = state.clone();
            hs.push(tokio::task::spawn_local(async move {
                c.drive(p, &st).await;
            }));
        }
        if let Some(pr) = progress {
            let st = state.clone();
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    {
                        let mut s = st.borrow_mut();
                        let n = std::mem::take(&mut s.prog_count);
                        let h = s.prog_hist.as_mut().expect("progress histogram");
                        let mut g = pr.inner.lock().unwrap();
                        g.0 += n;
                        let _ = g.1.add(&*h);
                        h.reset();
                    }
                    if Instant::now() >= p.end {
                        break;
                    }
                }
            });
        }
        // Watchdog: a server that stops answering must not hang the run.
        let drain = cfg.drain_timeout;
        let aborts: Vec<_> = hs.iter().map(|h| h.abort_handle()).collect();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until((p.end + drain).into()).await;
            aborts.iter().for_each(|a| a.abort());
        });
        for h in hs {
            match h.await {
                Ok(()) => {}
                Err(e) if e.is_cancelled() => {
                    let mut s = state.borrow_mut();
                    s.stats.errors.io += 1;
                    s.stats.errors.total += 1;
                    s.stats.sample(|| {
                        format!("a connection got no reply within {drain:?} of the end")
                    });
                }
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    });
    drop(local);
    Rc::try_unwrap(state)
        .ok()
        .expect("all tasks finished")
        .into_inner()
        .stats
}
