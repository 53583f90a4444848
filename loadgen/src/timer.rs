//! The open-loop schedule, a microsecond-precise async timer to keep it,
//! and the rule for where an open-loop request's latency starts.
//!
//! tokio's timer wheel has a 1 ms resolution, so open-loop sends are timed
//! with a Linux `timerfd` (an hrtimer) registered with the runtime's epoll:
//! it wakes the task without spinning. Even an hrtimer leaves late on a
//! virtual machine whose idle CPUs halt: tens of microseconds at the
//! median, hundreds at p99 (docs/loadgen.md, "A light load"). That
//! lateness is the client's, not the server's, so [`latency_start`]
//! charges it to the server only when the server caused it.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

/// One-shot timer backed by a non-blocking `timerfd`.
///
/// Arming and waiting are separate steps so that an open loop can arm its
/// next send *before* it writes the current one: a reply that comes back
/// in a few microseconds then finds the client already waiting, instead
/// of queued behind its timer bookkeeping.
pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
    /// The time the timer is armed for and has not been waited out.
    armed: Cell<Option<Instant>>,
}

impl PreciseTimer {
    /// Creates a disarmed timer; must be called inside a tokio runtime.
    pub fn new() -> io::Result<PreciseTimer> {
        // SAFETY: plain syscall; the fd is owned by OwnedFd right after.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd stays open for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(PreciseTimer {
            fd,
            armed: Cell::new(None),
        })
    }

    /// Arms the timer to fire at `at` (at once if it has passed). Costs a
    /// syscall only when it is not already armed for `at`.
    pub fn arm(&self, at: Instant) -> io::Result<()> {
        if self.armed.get() == Some(at) {
            return Ok(());
        }
        // A zero it_value would disarm it: a time that has passed fires
        // after a nanosecond.
        let d = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        self.settime(d)?;
        self.armed.set(Some(at));
        Ok(())
    }

    /// Waits until the time last [`arm`](Self::arm)ed. Cancel-safe: a
    /// dropped wait leaves the timer armed, and the next one picks up its
    /// expiry.
    pub async fn fired(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut ticks = 0u64;
            // SAFETY: reads 8 bytes into a u64 we own.
            let n = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    (&mut ticks as *mut u64).cast(),
                    8,
                )
            };
            if n == 8 {
                // A one-shot timer is not readable again until re-armed:
                // forgetting the readiness now saves the next wait a
                // read that could only fail.
                guard.clear_ready();
                self.armed.set(None);
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
            guard.clear_ready();
        }
    }

    fn settime(&self, d: Duration) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid fd and a fully initialised itimerspec.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.get_ref().as_raw_fd(),
                0,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// When one connection of an open loop sends: every `interval` (so the
/// connections together send at the total rate), the first at the start
/// plus this connection's share of one interval so they do not all send
/// at once, none at or after the end. A schedule property, so tests count
/// sends here rather than time a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    next: Instant,
    interval: Duration,
    end: Instant,
}

impl Schedule {
    pub(crate) fn new(
        rate: f64,
        connections: usize,
        id: usize,
        start: Instant,
        end: Instant,
    ) -> Schedule {
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        Schedule {
            next: start + interval.mul_f64(id as f64 / connections as f64),
            interval,
            end,
        }
    }

    /// The next send, if it is due by `now`, and moves past it.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Instant> {
        let due = self.next().filter(|&due| due <= now)?;
        self.next += self.interval;
        Some(due)
    }

    /// The next send, if any is left.
    pub(crate) fn next(&self) -> Option<Instant> {
        (self.next < self.end).then_some(self.next)
    }

    /// The send that will be next once `room` more sends due by `now`
    /// have been taken (fewer if fewer are due): what to arm the timer
    /// for before making them.
    pub(crate) fn next_after(&self, now: Instant, room: usize) -> Option<Instant> {
        let mut ahead = *self;
        for _ in 0..room {
            if ahead.take_due(now).is_none() {
                break;
            }
        }
        ahead.next()
    }
}

/// Where the latency of an open-loop request due at `due` and sent at
/// `sent` starts, and whether the server held it back: a request that
/// found its connection's pipeline full at its due time (the last slot
/// was freed at `slot_freed`, after `due`) waited for the server, and its
/// latency runs from `due` (coordinated omission corrected, as wrk2
/// does). Otherwise the pipeline had room, and any gap between `due` and
/// `sent` is the client waking late: its latency runs from `sent`, as a
/// client that sends one request at a time measures it (rpc-perf does).
pub(crate) fn latency_start(due: Instant, sent: Instant, slot_freed: Instant) -> (Instant, bool) {
    if slot_freed > due {
        (due, true)
    } else {
        (sent.max(due), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_send_held_by_a_full_pipeline_counts_from_its_due_time() {
        let t0 = Instant::now();
        let at = |us| t0 + Duration::from_micros(us);
        // Due at 100, sent at 160, the pipeline had room since 50: the
        // 60 us are the client's own lateness.
        assert_eq!(latency_start(at(100), at(160), at(50)), (at(160), false));
        // The last slot was freed at 150, after the due time: the server
        // held the send, and its wait counts.
        assert_eq!(latency_start(at(100), at(160), at(150)), (at(100), true));
        // Freed exactly at the due time: sendable then, not held.
        assert_eq!(latency_start(at(100), at(100), at(100)), (at(100), false));
    }

    /// Sends the open loops of `connections` connections make between
    /// `from` and `to`, for a run from `start` to `end`.
    fn sends(rate: f64, connections: usize, end_ms: u64, from_ms: u64, to_ms: u64) -> usize {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        (0..connections)
            .map(|id| {
                let mut schedule = Schedule::new(rate, connections, id, start, at(end_ms));
                let mut last: Option<Instant> = None;
                std::iter::from_fn(|| schedule.take_due(at(end_ms)))
                    .inspect(|&due| {
                        // One connection's sends are exactly one interval apart.
                        let interval = Duration::from_secs_f64(connections as f64 / rate);
                        assert!(last.is_none_or(|last| due - last == interval));
                        last = Some(due);
                    })
                    .filter(|&due| due >= at(from_ms) && due < at(to_ms))
                    .count()
            })
            .sum()
    }

    #[test]
    fn an_open_loop_sends_rate_times_duration() {
        // a_rate_caps_the_requests_at_its_schedule's run: 2000/s, 200 ms
        // of warmup, 1.5 s measured.
        assert_eq!(sends(2000.0, 5, 1700, 0, 1700), 3400);
        assert_eq!(sends(2000.0, 5, 1700, 200, 1700), 3000);
        assert_eq!(sends(2000.0, 5, 1700, 200, 1200), 2000);
        // Rates that do not divide evenly among the connections.
        assert_eq!(sends(4000.0, 8, 500, 0, 500), 2000);
        assert_eq!(sends(1000.0, 3, 3000, 0, 3000), 3000);
        assert_eq!(sends(10.0, 50, 1000, 0, 1000), 10);
    }

    #[test]
    fn nothing_is_due_before_its_time_or_at_the_end() {
        let start = Instant::now();
        let end = start + Duration::from_millis(10);
        let mut schedule = Schedule::new(1000.0, 2, 1, start, end);
        // Connection 1 of 2 at 1000/s: every 2 ms, from 1 ms.
        assert_eq!(schedule.take_due(start), None);
        let first = start + Duration::from_millis(1);
        assert_eq!(schedule.take_due(first), Some(first));
        assert_eq!(schedule.take_due(first), None);
        assert_eq!(schedule.next(), Some(first + Duration::from_millis(2)));
        let all: Vec<_> = std::iter::from_fn(|| schedule.take_due(end)).collect();
        assert_eq!(all.len(), 4, "3, 5, 7 and 9 ms");
        assert_eq!(schedule.next(), None);
    }

    #[test]
    fn the_send_after_the_due_ones_is_known_before_they_are_taken() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        // One connection at 1000/s: due at 0, 1, 2, ... 9 ms.
        let mut schedule = Schedule::new(1000.0, 1, 0, start, ms(10));
        // At 2.5 ms three sends are due; with room for all, 3 ms is next.
        assert_eq!(
            schedule.next_after(start + Duration::from_micros(2500), 8),
            Some(ms(3))
        );
        // With room for two, the third due one is next.
        assert_eq!(
            schedule.next_after(start + Duration::from_micros(2500), 2),
            Some(ms(2))
        );
        // Nothing due yet: the next one.
        let later = Schedule::new(1000.0, 1, 0, ms(5), ms(10));
        assert_eq!(later.next_after(start, 8), Some(ms(5)));
        // And it is what next() says once they are taken.
        let at = start + Duration::from_micros(2500);
        let expected = schedule.next_after(at, 8);
        while schedule.take_due(at).is_some() {}
        assert_eq!(schedule.next(), expected);
        // None past the end.
        assert_eq!(schedule.next_after(ms(20), 100), None);
    }
}
