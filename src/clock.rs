//! The server's clock: monotonic milliseconds since start, and memcached's
//! exptime rules turned into a [`Deadline`].
//!
//! Tests can hold the clock ([`Clock::held`]) and move it by hand
//! ([`Clock::advance`]), the way mini-redis pauses tokio's clock: TTLs,
//! idle times, `uptime` and the expiry wheel then see exactly the time the
//! test says has passed, and no test sleeps to let time pass.

use crate::storage::{Deadline, Millis};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Exptimes above this many seconds are absolute unix times (30 days), as
/// in memcached.
pub const MAX_RELATIVE_EXPTIME: i64 = 60 * 60 * 24 * 30;

/// A monotonic clock anchored at server start, with the wall-clock time of
/// that start so absolute unix exptimes can be placed on it.
///
/// Every reading goes through [`Clock::now`], so `uptime`, `time`,
/// deadlines, idle times and the expiry ticks all agree, held or not.
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    start_unix: u64,
    /// 0 while the clock follows real time. Otherwise the clock is held
    /// and reads exactly this, until [`Clock::advance`] moves it. Never
    /// written in production: reading it costs one relaxed load of a line
    /// that stays in every core's cache.
    held: AtomicU64,
}

impl Clock {
    /// A clock starting now and following real time.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
            start_unix: unix_time_now(),
            held: AtomicU64::new(0),
        }
    }

    /// A clock starting now and held there: it reads the server's first
    /// millisecond until [`Clock::advance`] moves it. For tests.
    pub fn held() -> Clock {
        Clock {
            held: AtomicU64::new(1),
            ..Clock::new()
        }
    }

    /// Moves a held clock forward by `by` (whole milliseconds). Every
    /// thread sees the new time on its next reading; the expiry ticks keep
    /// running on their real-time interval and reclaim what became due.
    ///
    /// # Panics
    /// If the clock is not held: real time cannot be moved.
    pub fn advance(&self, by: Duration) {
        let by = by.as_millis() as Millis;
        let moved = self
            .held
            .fetch_update(Relaxed, Relaxed, |held| (held != 0).then(|| held + by));
        assert!(
            moved.is_ok(),
            "only a held clock (Clock::held) can be advanced"
        );
    }

    /// Milliseconds since start, plus one: the clock never reads 0, so a
    /// deadline of "now" (a negative exptime) is already due even in the
    /// server's first millisecond, and 0 stays free to mean "never".
    #[inline]
    pub fn now(&self) -> Millis {
        match self.held.load(Relaxed) {
            0 => self.start.elapsed().as_millis() as Millis + 1,
            held => held,
        }
    }

    /// Whole seconds since start (memcached's `uptime`).
    pub fn uptime_secs(&self) -> u64 {
        (self.now() - 1) / 1000
    }

    /// The current unix time in seconds, derived from the server clock so
    /// `stats time` and absolute exptimes agree.
    pub fn unix_now(&self) -> u64 {
        self.start_unix + self.uptime_secs()
    }

    /// The unix time, in seconds, of `at` on the server clock: where an
    /// absolute exptime or an access time is printed (`stats cachedump`,
    /// `lru_crawler metadump`).
    pub fn unix_at(&self, at: Millis) -> u64 {
        self.start_unix + at.saturating_sub(1) / 1000
    }

    /// The unix time of `secs` whole seconds after start (an item's last
    /// access as the shard keeps it).
    pub fn unix_after(&self, secs: u32) -> u64 {
        self.start_unix + u64::from(secs)
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
                Deadline::at((unix - self.start_unix) * 1000 + 1)
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

fn unix_time_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
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
        assert!(
            clock
                .deadline(MAX_RELATIVE_EXPTIME + 1, now)
                .is_expired(now)
        );
        let future = clock.unix_now() as i64 + 100;
        let deadline = clock.deadline(future, now);
        assert!(!deadline.is_expired(now));
        assert!(deadline.is_expired(now + 101_000 + 1000 * clock.uptime_secs()));
    }

    #[test]
    fn a_held_clock_moves_only_when_advanced() {
        let clock = Clock::held();
        assert_eq!(clock.now(), 1);
        // Real time passing is the point here, not a wait for something.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), 1, "real time does not move a held clock");
        assert_eq!(
            (clock.uptime_secs(), clock.unix_now()),
            (0, clock.start_unix)
        );

        // A 1 s TTL set in the first millisecond is due exactly 1000 ms later.
        let deadline = clock.deadline(1, clock.now());
        clock.advance(Duration::from_millis(999));
        assert!(!deadline.is_expired(clock.now()));
        assert_eq!(Clock::remaining_secs(deadline, clock.now()), 1);
        clock.advance(Duration::from_millis(1));
        assert!(deadline.is_expired(clock.now()));
        assert_eq!(Clock::remaining_secs(deadline, clock.now()), 0);

        // uptime and time move in whole seconds with it, and an absolute
        // exptime falls due when `time` reaches it.
        assert_eq!(clock.uptime_secs(), 1);
        let at = clock.unix_now() as i64 + 2;
        let absolute = clock.deadline(at, clock.now());
        clock.advance(Duration::from_millis(1999));
        assert_eq!(clock.unix_now() as i64, at - 1);
        assert!(!absolute.is_expired(clock.now()));
        clock.advance(Duration::from_millis(1));
        assert_eq!(clock.unix_now() as i64, at);
        assert!(absolute.is_expired(clock.now()));
    }

    #[test]
    #[should_panic(expected = "only a held clock")]
    fn a_running_clock_cannot_be_advanced() {
        Clock::new().advance(Duration::from_secs(1));
    }
}
