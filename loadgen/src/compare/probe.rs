//! What the server spent: its CPU time from `/proc/<pid>/stat` and its
//! request and forwarding counters from `stats`, read before and after the
//! measured phase of every run.
//!
//! Server CPU per request is `Δ(utime + stime)` of the server process
//! (every thread) divided by `Δ(cmd_get + cmd_set)` from its `stats`, over
//! the same measured phase. Both memcached and corecache count `cmd_get`
//! per key, so a multi-get of 10 keys counts 10: the divisor is the same
//! for every system. corecache's `stats threads` `cmd_total` (commands,
//! a multi-get counting once) is recorded too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

/// A reading of the server's counters.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// User CPU seconds of the whole process.
    pub user_s: f64,
    /// System CPU seconds.
    pub system_s: f64,
    /// `cmd_get + cmd_set`.
    pub requests: u64,
    /// Sum of `stats threads` `thread:N:cmd_total` (corecache only).
    pub cmd_total: Option<u64>,
    /// `forwarded_requests` (corecache only).
    pub forwarded_requests: Option<u64>,
    /// `forward_messages` (corecache only).
    pub forward_messages: Option<u64>,
    /// `core_wakes` (corecache only).
    pub core_wakes: Option<u64>,
}

/// What the server did during one measured phase: the difference of two
/// [`Reading`]s. Counters a server does not publish are `null`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerDelta {
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub system_s: f64,
    /// Requests the server counted: `cmd_get + cmd_set` (gets per key).
    pub requests: u64,
    /// `(user_s + system_s) / requests`, in microseconds.
    pub cpu_us_per_request: f64,
    /// Commands corecache parsed (`stats threads` `cmd_total`).
    pub cmd_total: Option<u64>,
    /// Keyed operations sent to another thread.
    pub forwarded_requests: Option<u64>,
    /// Messages that carried them.
    pub forward_messages: Option<u64>,
    /// Times a thread woke a sleeping one.
    pub core_wakes: Option<u64>,
}

impl ServerDelta {
    /// `after - before`.
    pub fn between(before: &Reading, after: &Reading) -> ServerDelta {
        let d = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
        let user_s = (after.user_s - before.user_s).max(0.0);
        let system_s = (after.system_s - before.system_s).max(0.0);
        let requests = after.requests.saturating_sub(before.requests);
        ServerDelta {
            user_s,
            system_s,
            requests,
            cpu_us_per_request: if requests > 0 {
                (user_s + system_s) * 1e6 / requests as f64
            } else {
                f64::NAN
            },
            cmd_total: d(after.cmd_total, before.cmd_total),
            forwarded_requests: d(after.forwarded_requests, before.forwarded_requests),
            forward_messages: d(after.forward_messages, before.forward_messages),
            core_wakes: d(after.core_wakes, before.core_wakes),
        }
    }

    /// Forwarded requests per forward message.
    pub fn requests_per_message(&self) -> Option<f64> {
        let (r, m) = (self.forwarded_requests?, self.forward_messages?);
        (m > 0).then(|| r as f64 / m as f64)
    }
}

/// Reads one server: its process and a control connection for `stats`.
pub struct Probe {
    pid: u32,
    conn: TcpStream,
    /// Whether `stats threads` answers with `cmd_total` (corecache).
    threads: bool,
    buf: Vec<u8>,
}

impl Probe {
    /// Opens the control connection to the server `pid` listening on `addr`.
    pub fn connect(pid: u32, addr: SocketAddr) -> anyhow::Result<Probe> {
        let conn =
            TcpStream::connect(addr).with_context(|| format!("stats connection to {addr}"))?;
        // A server that stops answering must fail the run, not hang it.
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut p = Probe {
            pid,
            conn,
            threads: true,
            buf: Vec::new(),
        };
        let stats = p.stats("stats threads")?;
        p.threads = stats.iter().any(|(k, _)| k.ends_with(":cmd_total"));
        Ok(p)
    }

    /// Reads the counters now: CPU first, then `stats`.
    pub fn read(&mut self) -> anyhow::Result<Reading> {
        let (user_s, system_s) = process_cpu(self.pid)?;
        let general = self.stats("stats")?;
        let get = |name: &str| -> Option<u64> {
            general
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse().ok())
        };
        let requests = get("cmd_get").unwrap_or(0) + get("cmd_set").unwrap_or(0);
        let cmd_total = if self.threads {
            let t = self.stats("stats threads")?;
            Some(
                t.iter()
                    .filter(|(k, _)| k.ends_with(":cmd_total"))
                    .filter_map(|(_, v)| v.parse::<u64>().ok())
                    .sum(),
            )
        } else {
            None
        };
        Ok(Reading {
            user_s,
            system_s,
            requests,
            cmd_total,
            forwarded_requests: get("forwarded_requests"),
            forward_messages: get("forward_messages"),
            core_wakes: get("core_wakes"),
        })
    }

    /// Sends `command` and returns its `STAT name value` lines; an
    /// unknown command (memcached's `stats threads`) gives none.
    fn stats(&mut self, command: &str) -> anyhow::Result<Vec<(String, String)>> {
        self.conn.write_all(format!("{command}\r\n").as_bytes())?;
        self.buf.clear();
        let mut chunk = [0u8; 16384];
        loop {
            if self.buf.ends_with(b"END\r\n") || self.buf.ends_with(b"ERROR\r\n") {
                break;
            }
            let n = self.conn.read(&mut chunk).context("reading stats")?;
            if n == 0 {
                bail!("the server closed the stats connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(String::from_utf8_lossy(&self.buf)
            .lines()
            .filter_map(|l| {
                let mut w = l.strip_prefix("STAT ")?.splitn(2, ' ');
                Some((w.next()?.to_string(), w.next()?.trim().to_string()))
            })
            .collect())
    }
}

/// User and system CPU seconds of process `pid`, all its threads, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
pub fn process_cpu(pid: u32) -> anyhow::Result<(f64, f64)> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_proc_stat(&text).with_context(|| format!("parsing {path}"))
}

fn parse_proc_stat(text: &str) -> Option<(f64, f64)> {
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start past its last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime as f64 / hz, stime as f64 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields_after_a_tricky_name() {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let line = "123 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 3 0 100";
        assert_eq!(parse_proc_stat(line), Some((250.0 / hz, 75.0 / hz)));
        assert_eq!(parse_proc_stat("123 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_has_spent_cpu() {
        let (mut x, mut spin) = (0u64, 0u64);
        let before = process_cpu(std::process::id()).unwrap();
        // Burn a few clock ticks so the reading must move.
        while process_cpu(std::process::id()).unwrap() == before {
            spin += 1;
            x = x.wrapping_mul(6364136223846793005).wrapping_add(spin);
        }
        std::hint::black_box(x);
        let after = process_cpu(std::process::id()).unwrap();
        assert!(after.0 + after.1 > before.0 + before.1);
    }

    #[test]
    fn deltas_and_ratios() {
        let before = Reading {
            user_s: 1.0,
            system_s: 2.0,
            requests: 1000,
            cmd_total: Some(10),
            forwarded_requests: Some(100),
            forward_messages: Some(10),
            core_wakes: Some(5),
        };
        let after = Reading {
            user_s: 1.5,
            system_s: 2.5,
            requests: 2000,
            cmd_total: Some(110),
            forwarded_requests: Some(500),
            forward_messages: Some(60),
            core_wakes: Some(7),
        };
        let d = ServerDelta::between(&before, &after);
        assert_eq!(d.requests, 1000);
        assert!((d.cpu_us_per_request - 1000.0).abs() < 1e-9);
        assert_eq!(
            (
                d.cmd_total,
                d.forwarded_requests,
                d.forward_messages,
                d.core_wakes
            ),
            (Some(100), Some(400), Some(50), Some(2))
        );
        assert_eq!(d.requests_per_message(), Some(8.0));
        let memcached = Reading {
            requests: 5,
            ..Reading::default()
        };
        let d = ServerDelta::between(&Reading::default(), &memcached);
        assert_eq!(
            (d.forwarded_requests, d.requests_per_message()),
            (None, None)
        );
    }
}
