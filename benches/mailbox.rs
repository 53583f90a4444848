//! The per-message cost of forwarding between two cores that never sleep
//! (issue 18 item 6; docs/experiments.md, "The per-message cost on busy
//! cores"): the real outbox, mailbox, batch and wait list
//! (`corecache::server::saturated`), an origin thread keeping a window of
//! messages in flight to an owner thread that polls its inbox without
//! pause. For each message shape it prints both threads' busy time per
//! message (time in calls that did work; empty polls left out, as a
//! saturated core would spend that time on other work) and their CPU,
//! then fits `cpu per message = msg + requests × per_request` by least
//! squares, and measures a local get on the same shard so the forwarding
//! share of `per_request` (the model's `fwd`) can be read off.
//!
//!     cargo bench --bench mailbox                 # both CPUs, quiet machine
//!     cargo bench --bench mailbox -- --repeat 5 --messages 200000
//!
//! Both threads spin, so this needs both CPUs to itself: run it under the
//! CPU lock and nothing else. Put `msg_us` and `fwd_us` in the
//! `[busy_cores]` table of benches/model_params.toml, then
//! `python3 benches/model.py predict --busy` gives the predictions with them.

use corecache::server::saturated::{Shape, message_cost};
use std::time::Instant;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Least squares of y = a + b·x.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let b = sxy / sxx;
    (my - b * mx, b)
}

fn main() {
    let repeat = arg("--repeat", 3) as usize;
    let messages = arg("--messages", 100_000);
    let window = arg("--window", 8) as usize;
    println!("# {messages} messages a run, window {window}, median of {repeat} runs");
    println!(
        "# requests requesters busy_us/msg [min-max]       origin  owner  cpu_us/msg wall_us/msg"
    );
    for per_connection in [false, true] {
        let mut points = Vec::new();
        for requests in [1, 2, 4, 8, 16, 32] {
            // One connection's pipeline, or a turn of pipeline-1 connections.
            let requesters = if per_connection { requests } else { 1 };
            let shape = Shape {
                requests,
                requesters,
                window,
            };
            // Warm the pools and the caches.
            message_cost(shape, messages / 10);
            let runs: Vec<_> = (0..repeat).map(|_| message_cost(shape, messages)).collect();
            let per = |f: &dyn Fn(&corecache::server::saturated::Cost) -> f64| {
                median(runs.iter().map(f).collect())
            };
            let cpu: Vec<f64> = runs.iter().map(|c| c.busy_us_per_message()).collect();
            let (lo, hi) = cpu
                .iter()
                .fold((f64::MAX, 0f64), |(l, h), &c| (l.min(c), h.max(c)));
            let m = median(cpu);
            let origin = per(&|c| c.origin_busy.as_secs_f64() * 1e6 / c.messages as f64);
            let owner = per(&|c| c.owner_busy.as_secs_f64() * 1e6 / c.messages as f64);
            let all =
                per(&|c| (c.origin_cpu + c.owner_cpu).as_secs_f64() * 1e6 / c.messages as f64);
            let wall = per(&|c| c.wall.as_secs_f64() * 1e6 / c.messages as f64);
            println!(
                "{requests:>10} {requesters:>10} {m:>11.3}  [{lo:.3}-{hi:.3}] {origin:>7.3} {owner:>6.3} {all:>10.3} {wall:>9.3}"
            );
            points.push((requests as f64, m));
        }
        let (msg, per_request) = fit(&points);
        let form = if per_connection {
            "one requester per request (pipeline-1 connections)"
        } else {
            "one requester per message (a pipeline)"
        };
        println!("# fit, {form}: msg_us = {msg:.3}, per_request_us = {per_request:.3}");
    }
    let local = local_get_us();
    println!("# a local get on the same shard: {local:.3} us (per_request - this = fwd_us)");
}

/// CPU per get run on one thread against a shard, with no forwarding:
/// the part of `per_request` a request costs wherever it runs.
fn local_get_us() -> f64 {
    // A one-request message's owner side without the message: the
    // forwarding bench's own shard and keys, measured on this thread.
    let runs: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let n = corecache::server::saturated::local_gets(1_000_000);
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    median(runs)
}
