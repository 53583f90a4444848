//! A microsecond-precise async timer for the open-loop schedule.
//!
//! tokio's timer wheel has a 1 ms resolution, and open-loop latency is
//! measured from the *intended* send time, so each millisecond of timer
//! lateness would be counted as server latency. A Linux `timerfd` (an
//! hrtimer) registered with the runtime's epoll wakes the task on time
//! without spinning.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

/// One-shot timer backed by a non-blocking `timerfd`.
pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
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
        Ok(PreciseTimer { fd })
    }

    /// Waits until `at` (returns at once when it has passed). Cancel-safe:
    /// dropping the future leaves at worst an armed timer, which the next
    /// call re-arms.
    pub async fn sleep_until(&self, at: Instant) -> io::Result<()> {
        let d = at.saturating_duration_since(Instant::now());
        if d.is_zero() {
            return Ok(());
        }
        self.arm(d)?;
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
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
            guard.clear_ready();
        }
    }

    fn arm(&self, d: Duration) -> io::Result<()> {
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
