//! The reference client for light-load latency: each connection sends
//! one `get` at a time, on a fixed pace, timed from the moment it is
//! written.
//!
//! What it does, all of it:
//!
//! * **Connections.** `--connections C` blocking sockets (`TCP_NODELAY`),
//!   each driven by a thread of its own, as an application whose worker
//!   threads each hold a client connection would: a connection has one
//!   request in flight at most, and different connections' requests may
//!   overlap. With `--one-thread`, one thread uses all C sockets in turn
//!   instead, and exactly one request is ever in flight.
//! * **Pauses.** Over all connections request `n` is due at
//!   `start + n / rate` and goes on connection `n % C`, so each connection
//!   sends every `C / rate` and they are staggered evenly: the same
//!   schedule as `loadgen --rate`. Between its requests a thread sleeps
//!   until the next due time with `clock_nanosleep(CLOCK_MONOTONIC,
//!   TIMER_ABSTIME)` and 1 ns timer slack: it never spins, so its CPU
//!   idles between requests as an application's would. A reply that comes
//!   after the thread's next due time delays that send (it goes at once
//!   and counts in `late_sends`); the pace catches up, it never skips.
//! * **Timing.** A request's latency runs from just before its `write` to
//!   just after the `read` that completes its reply: the server's answer
//!   plus the kernel's loopback and wake-ups, none of the client's own
//!   sending lateness (rpc-perf times its requests the same way). How late
//!   the sends left is reported beside it (`send_lateness_us`).
//!   Percentiles are exact: every latency is kept, in memory allocated
//!   before the clock starts, and sorted at the end.
//! * **CPU placement.** Unpinned, or every thread pinned to `--cpu N`;
//!   the output says which.
//! * **Workload.** Gets of `key:<k>` (loadgen's default key names), `k`
//!   uniform over `--keys`; `--prefill` first stores every key with a
//!   `--value-size`-byte value, as `loadgen --prefill` does.
//!
//! It shares no code with loadgen (no runtime, no timer, no parser of
//! loadgen's), so the two agreeing means something; `benches/light_load.py`
//! runs both against one server, interleaved, and prints the comparison
//! (docs/loadgen.md, "A light load"). It is a bench target rather than a
//! loadgen subcommand for the same reason, and `cargo bench` builds it
//! with the release profile.
//!
//! ```sh
//! cargo bench --bench one_at_a_time -- --server 127.0.0.1:11211 \
//!     --connections 20 --rate 2000 --duration 5s --warmup 1s --prefill
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;

use clap::Parser;

/// One get at a time on a fixed pace; see the module doc.
#[derive(Parser, Debug)]
struct Args {
    /// Server, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:11211")]
    server: String,
    /// Connections, each with a thread of its own.
    #[arg(long, default_value_t = 20)]
    connections: usize,
    /// One thread uses every connection in turn: one request in flight
    /// over all of them.
    #[arg(long)]
    one_thread: bool,
    /// Requests per second over all connections.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Measured time, e.g. `5s`.
    #[arg(long, default_value = "5s")]
    duration: String,
    /// Unmeasured time before it.
    #[arg(long, default_value = "1s")]
    warmup: String,
    /// Distinct keys, `key:0` to `key:<keys-1>`.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Bytes per value (`--prefill`).
    #[arg(long, default_value_t = 32)]
    value_size: usize,
    /// Store every key once before the run.
    #[arg(long)]
    prefill: bool,
    /// Pin every thread to this CPU; unpinned without.
    #[arg(long)]
    cpu: Option<usize>,
    /// Write the result as JSON to this path.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the sleeps use.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until CLOCK_MONOTONIC reads `at_ns`.
fn sleep_until(at_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid absolute time; a signal only ends the sleep early,
    // and the caller's clock check covers that.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// Reads from `s` until `buf` holds one whole reply to a get: `END\r\n`,
/// after any `VALUE` blocks (whose data is skipped by its length, so a
/// value holding `END` cannot end it early).
fn read_get_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if reply_len(buf)?.is_some() {
            return Ok(());
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("server closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Length of the complete get reply at the start of `b`, if there is one.
fn reply_len(b: &[u8]) -> std::io::Result<Option<usize>> {
    let mut off = 0;
    loop {
        let Some(eol) = b[off..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = &b[off..off + eol];
        if line == b"END" {
            return Ok(Some(off + eol + 2));
        }
        let bad =
            || std::io::Error::other(format!("bad reply: {:?}", String::from_utf8_lossy(line)));
        if !line.starts_with(b"VALUE ") {
            return Err(bad());
        }
        let len: usize = std::str::from_utf8(line.rsplit(|&c| c == b' ').next().unwrap_or(b""))
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        off += eol + 2 + len + 2;
        if b.len() < off {
            return Ok(None);
        }
    }
}

/// Value at quantile `q` of sorted `v` (nearest rank), in microseconds.
fn quantile_us(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64 / 1e3
}

/// The schedule and workload every thread shares.
#[derive(Clone, Copy)]
struct Plan {
    /// CLOCK_MONOTONIC time request 0 is due.
    start_ns: u64,
    /// Between two requests over all connections.
    interval_ns: f64,
    /// Requests over all connections, warmup included.
    total: u64,
    /// The first measured request.
    first_measured: u64,
    keys: u64,
    cpu: Option<usize>,
}

/// What one thread measured.
struct Measured {
    /// Latencies of measured requests, ns.
    lat: Vec<u64>,
    /// How late each measured request was written after its due time, ns.
    late: Vec<u64>,
    /// Measured requests written after the thread's next request was due.
    late_sends: u64,
}

/// Runs requests `first, first + step, ...` of the plan; request `n` goes
/// on `conns[n % conns.len()]`.
fn drive(plan: Plan, conns: &mut [TcpStream], first: u64, step: u64) -> std::io::Result<Measured> {
    if let Some(cpu) = plan.cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        return Err(std::io::Error::other(format!("cannot pin to CPU {cpu}")));
    }
    // The default 50 us of slack would let every sleep end up to 50 us late.
    // SAFETY: only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mine = (plan.total.saturating_sub(plan.first_measured) / step + 1) as usize;
    let mut m = Measured {
        lat: Vec::with_capacity(mine),
        late: Vec::with_capacity(mine),
        late_sends: 0,
    };
    // A send later than this thread's next due time delayed that one too.
    let own_interval = (plan.interval_ns * step as f64) as u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut req = Vec::with_capacity(64);
    // xorshift64, seeded per thread: uniform enough for picking keys.
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (first + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut n = first;
    while n < plan.total {
        let due = plan.start_ns + (n as f64 * plan.interval_ns) as u64;
        if now_ns() < due {
            sleep_until(due);
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        req.clear();
        write!(req, "get key:{}\r\n", rng % plan.keys)?;
        let len = conns.len() as u64;
        let s = &mut conns[(n % len) as usize];
        let sent = now_ns();
        s.write_all(&req)?;
        read_get_reply(s, &mut buf)?;
        let done = now_ns();
        if n >= plan.first_measured {
            m.lat.push(done - sent);
            m.late.push(sent.saturating_sub(due));
            if sent > due + own_interval {
                m.late_sends += 1;
            }
        }
        n += step;
    }
    Ok(m)
}

/// Stores `key:<k>` for every `k < keys` with a `size`-byte value.
fn prefill(s: &mut TcpStream, keys: u64, size: usize) -> std::io::Result<()> {
    let value = vec![b'x'; size];
    let mut buf = Vec::new();
    for k in 0..keys {
        let mut req = format!("set key:{k} 0 0 {size}\r\n").into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
        s.write_all(&req)?;
        buf.clear();
        while !buf.ends_with(b"\r\n") {
            let mut c = [0u8; 64];
            let n = s.read(&mut c)?;
            if n == 0 {
                return Err(std::io::Error::other("server closed the connection"));
            }
            buf.extend_from_slice(&c[..n]);
        }
        if buf != b"STORED\r\n" {
            let got = String::from_utf8_lossy(&buf);
            return Err(std::io::Error::other(format!("set key:{k}: {got:?}")));
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let duration = humantime::parse_duration(&args.duration).map_err(std::io::Error::other)?;
    let warmup = humantime::parse_duration(&args.warmup).map_err(std::io::Error::other)?;
    if args.connections == 0 || args.rate <= 0.0 || args.keys == 0 {
        return Err(std::io::Error::other(
            "--connections, --rate and --keys must be positive",
        ));
    }
    let mut conns = (0..args.connections)
        .map(|_| {
            let s = TcpStream::connect(&args.server)?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    if args.prefill {
        prefill(&mut conns[0], args.keys, args.value_size)?;
    }

    let total = ((warmup + duration).as_secs_f64() * args.rate) as u64;
    let plan = Plan {
        // Time for every thread to start before the first is due.
        start_ns: now_ns() + 20_000_000,
        interval_ns: 1e9 / args.rate,
        total,
        first_measured: (warmup.as_secs_f64() * args.rate) as u64,
        keys: args.keys,
        cpu: args.cpu,
    };
    let parts: Vec<Measured> = if args.one_thread {
        vec![drive(plan, &mut conns, 0, 1)?]
    } else {
        let step = args.connections as u64;
        let threads: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, s)| std::thread::spawn(move || drive(plan, &mut [s], i as u64, step)))
            .collect();
        let mut parts = Vec::new();
        for t in threads {
            parts.push(
                t.join()
                    .map_err(|_| std::io::Error::other("a thread panicked"))??,
            );
        }
        parts
    };
    let mut lat: Vec<u64> = parts.iter().flat_map(|m| m.lat.iter().copied()).collect();
    let mut late: Vec<u64> = parts.iter().flat_map(|m| m.late.iter().copied()).collect();
    let late_sends: u64 = parts.iter().map(|m| m.late_sends).sum();
    let mean = lat.iter().sum::<u64>() as f64 / lat.len().max(1) as f64 / 1e3;
    lat.sort_unstable();
    late.sort_unstable();
    let cpu = match args.cpu {
        Some(c) => format!("pinned to CPU {c}"),
        None => "unpinned".to_string(),
    };
    let pause_us = args.connections as f64 / args.rate * 1e6;
    let threads = if args.one_thread {
        "one thread using them in turn, one request in flight".to_string()
    } else {
        format!("{} threads, one each", args.connections)
    };
    println!(
        "one_at_a_time: {} connections, {threads}, {} req/s (each connection sends every \
         {pause_us:.0} us and sleeps between), threads {cpu}",
        args.connections, args.rate
    );
    println!(
        "requests {}  late sends (after the thread's next one was due) {}",
        lat.len(),
        late_sends
    );
    println!(
        "latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {mean:.1}",
        quantile_us(&lat, 0.5),
        quantile_us(&lat, 0.9),
        quantile_us(&lat, 0.99),
        quantile_us(&lat, 0.999),
        quantile_us(&lat, 1.0)
    );
    println!(
        "send lateness us: p50 {:.1}  p99 {:.1}  max {:.1}",
        quantile_us(&late, 0.5),
        quantile_us(&late, 0.99),
        quantile_us(&late, 1.0)
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "client": "one_at_a_time",
            "server": args.server,
            "connections": args.connections,
            "one_thread": args.one_thread,
            "rate": args.rate,
            "pause_us": pause_us,
            "cpu": args.cpu,
            "duration_s": duration.as_secs_f64(),
            "warmup_s": warmup.as_secs_f64(),
            "requests": lat.len(),
            "late_sends": late_sends,
            "latency_us": {
                "p50": quantile_us(&lat, 0.5), "p90": quantile_us(&lat, 0.9),
                "p99": quantile_us(&lat, 0.99), "p999": quantile_us(&lat, 0.999),
                "max": quantile_us(&lat, 1.0), "mean": mean,
            },
            "send_lateness_us": {
                "p50": quantile_us(&late, 0.5), "p99": quantile_us(&late, 0.99),
                "max": quantile_us(&late, 1.0),
            },
        });
        std::fs::write(path, format!("{json:#}\n"))?;
    }
    Ok(())
}
