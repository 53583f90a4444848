//! The server's clock: monotonic milliseconds since start, and memcached's
//! exptime rules turned into a [`Deadline`].

use crate::storage::{Deadline, Millis};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Exptimes above this many seconds are absolute unix times (30 days), as
/// in memcached.
pub const MAX_RELATIVE_EXPTIME: i64 = 60 * 60 * 24 * 30;

/// A monotonic clock anchored at server start, with the wall-clock time of
/// that start so absolute unix exptimes can be placed on it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    start_unix: u64,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        let start_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        Clock {
            start: Instant::now(),
            start_unix,
        }
    }

    /// Milliseconds since start.
    pub fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// Seconds since start (memcached's `uptime`).
    pub fn uptime_secs(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// The current unix time in seconds, derived from the monotonic clock so
    /// `stats time` and exptimes agree.
    pub fn unix_now(&self) -> u64 {
        self.start_unix + self.uptime_secs()
    }

    /// Turns a protocol exptime into a deadline, memcached's way: 0 never
    /// expires, up to 30 days is relative seconds, more is an absolute unix
    /// time, and a negative value is already expired.
    pub fn deadline(&self, exptime: i64, now: Millis) -> Deadline {
        if exptime == 0 {
            Deadline::NEVER
        } else if exptime < 0 {
            Deadline::at(now)
        } else if exptime <= MAX_RELATIVE_EXPTIME {
            Deadline::at(now + exptime as u64 * 1000)
        } else {
            let unix = exptime as u64;
            if unix <= self.start_unix {
                // Already in the past (before this server even started).
                Deadline::at(now)
            } else {
                Deadline::at((unix - self.start_unix) * 1000)
            }
        }
    }

    /// Seconds until `deadline` from `now`, rounded up; -1 for never (the
    /// meta protocol's `t` flag), 0 if already due.
    pub fn remaining_secs(deadline: Deadline, now: Millis) -> i64 {
        match deadline.millis() {
            None => -1,
            Some(at) => at.saturating_sub(now).div_ceil(1000) as i64,
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_rules() {
        let clock = Clock::new();
        let now = 5_000;
        assert_eq!(clock.deadline(0, now), Deadline::NEVER);
        assert!(clock.deadline(-1, now).is_expired(now));
        assert_eq!(clock.deadline(10, now), Deadline::at(15_000));
        assert_eq!(
            clock.deadline(MAX_RELATIVE_EXPTIME, now).millis(),
            Some(now + MAX_RELATIVE_EXPTIME as u64 * 1000)
        );
        // An absolute time in the past is expired; one in the future is not.
        assert!(clock.deadline(MAX_RELATIVE_EXPTIME + 1, now).is_expired(now));
        let future = clock.unix_now() as i64 + 100;
        let deadline = clock.deadline(future, now);
        assert!(!deadline.is_expired(now));
        assert!(deadline.is_expired(now + 101_000 + 1000 * clock.uptime_secs()));
    }
}
