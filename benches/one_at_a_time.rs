//! The reference client for light-load latency: one `get` at a time, on a
//! fixed pace, timed from the moment it is written.
//!
//! What it does, all of it:
//!
//! * **One thread, `--connections` blocking sockets** (`TCP_NODELAY`),
//!   used in turn: request `n` goes on connection `n % connections`.
//!   Exactly one request is ever in flight over all of them.
//! * **Pauses.** Request `n` is due at `start + n / rate`. The thread
//!   sleeps until then with `clock_nanosleep(CLOCK_MONOTONIC,
//!   TIMER_ABSTIME)` and 1 ns timer slack, so it does not spin and the
//!   CPU it runs on idles between requests, as an application's would.
//!   Each connection therefore pauses `connections / rate` between its
//!   requests. A reply that comes after the next due time delays that send
//!   (it is sent at once, counted in `late_sends`); the pace then catches
//!   up, it never skips.
//! * **Timing.** A request's latency runs from just before its `write` to
//!   just after the `read` that completes its reply: the server's answer
//!   plus the kernel's loopback and wake-ups, none of the client's own
//!   sending lateness (rpc-perf times its requests the same way). How late
//!   the sends left is reported beside it (`send_lateness_us`).
//!   Percentiles are exact (every latency is kept and sorted).
//! * **CPU placement.** Unpinned, or pinned to `--cpu N`; the output says
//!   which.
//! * **Workload.** Gets of `key:<k>` (loadgen's default key names), `k`
//!   uniform over `--keys`; `--prefill` first stores every key with a
//!   `--value-size`-byte value, as `loadgen --prefill` does.
//!
//! It shares no code with loadgen (no runtime, no timer, no parser of
//! loadgen's), so that the two agreeing means something;
//! `benches/light_load.py` runs both against one server, interleaved, and
//! prints the comparison (docs/loadgen.md, "A light load").
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
    /// Connections, used in turn.
    #[arg(long, default_value_t = 20)]
    connections: usize,
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
    /// Pin the thread to this CPU; unpinned without.
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

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let duration = humantime::parse_duration(&args.duration).map_err(std::io::Error::other)?;
    let warmup = humantime::parse_duration(&args.warmup).map_err(std::io::Error::other)?;
    if args.connections == 0 || args.rate <= 0.0 || args.keys == 0 {
        return Err(std::io::Error::other(
            "--connections, --rate and --keys must be positive",
        ));
    }
    if let Some(cpu) = args.cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        return Err(std::io::Error::other(format!("cannot pin to CPU {cpu}")));
    }
    // The default 50 us of slack would let every sleep end up to 50 us late.
    // SAFETY: only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };

    let mut conns = (0..args.connections)
        .map(|_| {
            let s = TcpStream::connect(&args.server)?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut buf = Vec::with_capacity(64 * 1024);
    if args.prefill {
        let value = vec![b'x'; args.value_size];
        for k in 0..args.keys {
            let s = &mut conns[(k % args.connections as u64) as usize];
            let mut req = format!("set key:{k} 0 0 {}\r\n", args.value_size).into_bytes();
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
                return Err(std::io::Error::other(format!(
                    "set key:{k}: {:?}",
                    String::from_utf8_lossy(&buf)
                )));
            }
        }
    }

    let interval_ns = 1e9 / args.rate;
    let total = ((warmup + duration).as_secs_f64() * args.rate) as u64;
    let first_measured = (warmup.as_secs_f64() * args.rate) as u64;
    let measured = (total - first_measured) as usize;
    // Every latency is kept: allocated once, before the clock starts.
    let mut lat = Vec::with_capacity(measured);
    let mut late = Vec::with_capacity(measured);
    let mut late_sends = 0u64;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut req = Vec::with_capacity(64);
    let start = now_ns() + 1_000_000;
    let mut measure_start = 0;
    for n in 0..total {
        let due = start + (n as f64 * interval_ns) as u64;
        if now_ns() < due {
            sleep_until(due);
        }
        // xorshift64: uniform enough for picking keys.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        req.clear();
        write!(req, "get key:{}\r\n", rng % args.keys)?;
        let s = &mut conns[(n % args.connections as u64) as usize];
        let sent = now_ns();
        s.write_all(&req)?;
        read_get_reply(s, &mut buf)?;
        let done = now_ns();
        if n == first_measured {
            measure_start = sent;
        }
        if n >= first_measured {
            lat.push(done - sent);
            late.push(sent.saturating_sub(due));
            if sent > due + interval_ns as u64 {
                late_sends += 1;
            }
        }
    }
    let elapsed = (now_ns() - measure_start) as f64 / 1e9;
    let mean = lat.iter().sum::<u64>() as f64 / lat.len().max(1) as f64 / 1e3;
    lat.sort_unstable();
    late.sort_unstable();
    let cpu = match args.cpu {
        Some(c) => format!("pinned to CPU {c}"),
        None => "unpinned".to_string(),
    };
    let pause_us = args.connections as f64 / args.rate * 1e6;
    println!(
        "one_at_a_time: {} connections used in turn, one request in flight, {} req/s \
         (each connection pauses {pause_us:.0} us between its requests), thread {cpu}",
        args.connections, args.rate
    );
    println!(
        "requests {}  achieved {:.0}/s  late sends (over one interval) {}",
        lat.len(),
        lat.len() as f64 / elapsed,
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
            "rate": args.rate,
            "pause_us": pause_us,
            "cpu": args.cpu,
            "duration_s": duration.as_secs_f64(),
            "warmup_s": warmup.as_secs_f64(),
            "requests": lat.len(),
            "ops_per_sec": lat.len() as f64 / elapsed,
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
