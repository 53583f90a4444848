//! How long a thread-per-core core whose connections await forwarded
//! replies polls its mailbox before it sleeps: `--spin` at most, less
//! while spinning does not pay.
//!
//! A spin pays when the replies come while it lasts: the owner is spared
//! a wake of this core (~12 µs of its CPU here) and the clients the wake's
//! latency. It is waste when they come later, as on a machine whose CPUs
//! are shared with busy processes: there the owner itself is often
//! waiting for a CPU, and every spun microsecond is taken from whoever
//! else could have run. So the window adapts, as adaptive mutexes do:
//!
//! - a spin that ends with mail restores the full window;
//! - a spin that runs out halves it, down to none after five in a row;
//! - a core that slept while replies were due and was woken by mail
//!   within `--spin` of going to sleep (a spin would have caught it)
//!   doubles it again, from twice [`MIN_WINDOW`] up to `--spin`.
//!
//! So spinning stops only where it keeps missing. Where it catches
//! replies now and then it goes on at full length: that is the latency
//! `--spin` asks for, and on cores the server has to itself the spun time
//! would be idle anyway. (A window that halved and doubled symmetrically
//! saved more CPU on this 2-CPU machine at pipeline 16, but doubled the
//! median latency of a lightly loaded open loop; docs/performance.md has
//! both.) The last rule is what lets the window grow back from none
//! without speculative spinning: sleeps tell it how long replies take.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Shortest window worth spinning for; a halved window below it is none.
/// A window that grows back starts from twice this.
pub(super) const MIN_WINDOW: Duration = Duration::from_micros(2);

/// One core's spin window. Only the core's own thread touches it.
pub(super) struct SpinWindow {
    /// `--spin`: the longest window (zero: never spin).
    max: Duration,
    /// The window the next spin gets.
    window: Cell<Duration>,
    /// When the core last went to sleep with replies due, until the next
    /// mailbox run after it.
    slept: Cell<Option<Instant>>,
}

impl SpinWindow {
    /// A window that starts at, and never exceeds, `max`.
    pub fn new(max: Duration) -> SpinWindow {
        SpinWindow {
            max,
            window: Cell::new(max),
            slept: Cell::new(None),
        }
    }

    /// How long the next spin may last (zero: do not spin).
    pub fn window(&self) -> Duration {
        self.window.get()
    }

    /// A spin ended because mail came: spinning pays, at full length.
    pub fn hit(&self) {
        self.window.set(self.max);
    }

    /// A spin ran out without mail: halve the window.
    pub fn missed(&self) {
        let half = self.window.get() / 2;
        self.window.set(if half < MIN_WINDOW {
            Duration::ZERO
        } else {
            half
        });
    }

    /// The core goes to sleep at `now` with replies due.
    pub fn sleeping(&self, now: Instant) {
        if !self.max.is_zero() {
            self.slept.set(Some(now));
        }
    }

    /// The core's first mailbox run since it last slept with replies due:
    /// `mail` says whether it found messages, `now` reads the time (only
    /// called after such a sleep). Mail that came within `--spin` of the
    /// sleep would have ended a spin: double the window.
    pub fn woke(&self, mail: bool, now: impl FnOnce() -> Instant) {
        let Some(slept) = self.slept.take() else {
            return;
        };
        if mail && now().saturating_duration_since(slept) < self.max {
            let grown = (self.window.get() * 2).max(MIN_WINDOW * 2);
            self.window.set(grown.min(self.max));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPIN: Duration = Duration::from_micros(50);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn misses_halve_the_window_down_to_none() {
        let spin = SpinWindow::new(SPIN);
        let mut seen = vec![spin.window()];
        for _ in 0..6 {
            spin.missed();
            seen.push(spin.window());
        }
        let expected = [50_000, 25_000, 12_500, 6_250, 3_125, 0, 0];
        let nanos: Vec<u64> = seen.iter().map(|d| d.as_nanos() as u64).collect();
        assert_eq!(nanos, expected);
    }

    #[test]
    fn a_hit_restores_the_full_window() {
        let spin = SpinWindow::new(SPIN);
        spin.missed();
        spin.missed();
        spin.hit();
        assert_eq!(spin.window(), SPIN);
    }

    #[test]
    fn mail_soon_after_a_sleep_grows_the_window_back_from_none() {
        let spin = spent();
        assert_eq!(spin.window(), Duration::ZERO);
        let t0 = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..6 {
            spin.sleeping(t0);
            spin.woke(true, || t0 + us(20));
            seen.push(spin.window());
        }
        assert_eq!(seen, [us(4), us(8), us(16), us(32), us(50), us(50)]);
    }

    /// A window run down to none.
    fn spent() -> SpinWindow {
        let spin = SpinWindow::new(SPIN);
        for _ in 0..8 {
            spin.missed();
        }
        spin
    }

    #[test]
    fn a_sleep_that_a_spin_would_not_have_bridged_does_not_start_one() {
        let spin = spent();
        let t0 = Instant::now();
        // Mail, but later than the longest spin.
        spin.sleeping(t0);
        spin.woke(true, || t0 + us(80));
        assert_eq!(spin.window(), Duration::ZERO);
        // Woken soon, but not by mail.
        spin.sleeping(t0);
        spin.woke(false, || t0 + us(5));
        assert_eq!(spin.window(), Duration::ZERO);
    }

    #[test]
    fn only_the_first_run_after_a_sleep_counts() {
        let spin = spent();
        let t0 = Instant::now();
        spin.sleeping(t0);
        spin.woke(false, || t0 + us(5));
        // Later mail is not news of how long that sleep was, and the time
        // is not even read.
        spin.woke(true, || unreachable!("no sleep to measure"));
        assert_eq!(spin.window(), Duration::ZERO);
    }

    #[test]
    fn a_zero_spin_never_spins() {
        let spin = SpinWindow::new(Duration::ZERO);
        let t0 = Instant::now();
        spin.sleeping(t0);
        spin.woke(true, || t0 + us(1));
        spin.hit();
        assert_eq!(spin.window(), Duration::ZERO);
    }
}
