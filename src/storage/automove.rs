//! The page rebalancing policy (memcached's slab automove): which class
//! gives a page to which, and when.
//!
//! This module owns only the decision; the shard carries out the move
//! (evicting what the page held, unlinking it from the index and LRU, and
//! recarving the page). The policy, evaluated from `tick` once per
//! [`WINDOW_MS`] window:
//!
//! * a class is *hot* in a window when it had the most evictions of all
//!   classes (at least one); it becomes a **receiver** after being hot for
//!   [`HOT_WINDOWS`] windows in a row;
//! * a class is *quiet* in a window when it evicted nothing; a **donor** is
//!   a class quiet for [`QUIET_WINDOWS`] windows in a row that holds at
//!   least two pages, or any page with no item on it;
//! * while there is a receiver and a donor, one page moves per window, from
//!   the donor whose LRU tail is oldest (its memory is the coldest). The
//!   receiver stays a receiver as long as it stays hot, so a big shift in
//!   value sizes moves a page every window until the evictions stop.
//!
//! `slabs automove <0|1|2>` picks the [`Mode`]: off, the policy above, or
//! an aggressive one that needs a single window of evictions and of quiet
//! (memcached's 2 moves a page on every eviction; one page per window is
//! the closest this policy's bounded, windowed work comes).
//!
//! Two faster paths live in the shard's allocator and need no window: a
//! class that needs a chunk takes a page with no items from any other class
//! at once, and a class that has no page at all (so nothing of its own to
//! evict) takes the coldest page of the class with the most pages.

use super::Millis;

/// Length of an evaluation window.
pub const WINDOW_MS: Millis = 100;
/// Windows a class must top the evictions for before it receives pages.
pub const HOT_WINDOWS: u32 = 3;
/// Windows without evictions before a class may give pages away.
pub const QUIET_WINDOWS: u32 = 3;

/// What the policy sees of one class at the end of a window.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClassView {
    /// Evictions ever counted in the class.
    pub evictions: u64,
    /// Pages the class holds.
    pub pages: usize,
    /// Pages of the class with no item on them.
    pub empty_pages: usize,
    /// Last access time (seconds) of the class's LRU tail, `None` if empty.
    pub tail_time: Option<u32>,
}

/// How eagerly pages move (`slabs automove <0|1|2>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No page moves from the policy (the allocator's own fast paths still
    /// take empty pages, and give a class with no page one).
    Off,
    /// [`HOT_WINDOWS`] windows hot and [`QUIET_WINDOWS`] quiet before a
    /// move (memcached's default, 1).
    #[default]
    Standard,
    /// One window hot and one quiet is enough.
    Aggressive,
}

impl Mode {
    /// The mode memcached numbers `level` (0, 1 or 2), if any.
    pub fn from_level(level: u32) -> Option<Mode> {
        match level {
            0 => Some(Mode::Off),
            1 => Some(Mode::Standard),
            2 => Some(Mode::Aggressive),
            _ => None,
        }
    }

    /// Windows hot and windows quiet a move needs.
    fn windows(self) -> (u32, u32) {
        match self {
            Mode::Off => (u32::MAX, u32::MAX),
            Mode::Standard => (HOT_WINDOWS, QUIET_WINDOWS),
            Mode::Aggressive => (1, 1),
        }
    }
}

/// A page move the shard should make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// Class giving the page.
    pub from: usize,
    /// Class receiving it.
    pub to: usize,
}

/// The automove state of one shard.
#[derive(Debug, Default)]
pub struct Automove {
    mode: Mode,
    window_start: Option<Millis>,
    last_evictions: Vec<u64>,
    hot: Vec<u32>,
    quiet: Vec<u32>,
}

impl Automove {
    /// A policy with no history.
    pub fn new() -> Automove {
        Automove::default()
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Switches mode; the history starts again, so a policy switched on
    /// first watches as many windows as at start.
    pub fn set_mode(&mut self, mode: Mode) {
        *self = Automove {
            mode,
            ..Automove::default()
        };
    }

    /// Called from every tick; at the end of a window returns the move to
    /// make, if any.
    pub fn evaluate(&mut self, now: Millis, classes: &[ClassView]) -> Option<Move> {
        if self.mode == Mode::Off {
            return None;
        }
        let (hot_windows, quiet_windows) = self.mode.windows();
        let n = classes.len();
        if self.last_evictions.len() != n {
            self.last_evictions = classes.iter().map(|c| c.evictions).collect();
            self.hot = vec![0; n];
            self.quiet = vec![0; n];
            self.window_start = Some(now);
            return None;
        }
        match self.window_start {
            Some(start) if now.saturating_sub(start) < WINDOW_MS => return None,
            _ => self.window_start = Some(now),
        }
        let deltas: Vec<u64> = classes
            .iter()
            .zip(&self.last_evictions)
            .map(|(c, &last)| c.evictions.saturating_sub(last))
            .collect();
        for (last, c) in self.last_evictions.iter_mut().zip(classes) {
            *last = c.evictions;
        }
        let hottest = deltas
            .iter()
            .enumerate()
            .filter(|&(_, &d)| d > 0)
            .max_by_key(|&(i, &d)| (d, std::cmp::Reverse(i)))
            .map(|(i, _)| i);
        for (i, (hot, quiet)) in self.hot.iter_mut().zip(&mut self.quiet).enumerate() {
            *hot = if Some(i) == hottest {
                hot.saturating_add(1)
            } else {
                0
            };
            *quiet = if deltas[i] == 0 {
                quiet.saturating_add(1)
            } else {
                0
            };
        }
        let to = hottest.filter(|&r| self.hot[r] >= hot_windows)?;
        let from = (0..n)
            .filter(|&d| d != to && self.quiet[d] >= quiet_windows)
            .filter(|&d| classes[d].pages >= 2 || classes[d].empty_pages > 0)
            .min_by_key(|&d| (classes[d].empty_pages == 0, classes[d].tail_time))?;
        Some(Move { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(evictions: u64, pages: usize, tail_time: u32) -> ClassView {
        ClassView {
            evictions,
            pages,
            empty_pages: 0,
            tail_time: Some(tail_time),
        }
    }

    #[test]
    fn moves_from_quiet_cold_class_to_steadily_hot_class() {
        let mut policy = Automove::new();
        let mut now = 0;
        let mut evictions = 0;
        let mut moves = Vec::new();
        for _ in 0..8 {
            let classes = [view(0, 10, 5), view(evictions, 1, 100), view(0, 10, 50)];
            if let Some(m) = policy.evaluate(now, &classes) {
                moves.push(m);
            }
            evictions += 50;
            now += WINDOW_MS;
        }
        // The first call starts a window; seven windows end after it. Class 1
        // tops the evictions in each and receives from its HOT_WINDOWS-th
        // on, one page per window, always from the class with the oldest
        // tail (class 0).
        let windows = 7;
        assert_eq!(
            moves,
            vec![Move { from: 0, to: 1 }; windows - HOT_WINDOWS as usize + 1]
        );
    }

    #[test]
    fn no_move_when_every_class_evicts_or_has_one_page() {
        let mut policy = Automove::new();
        let mut now = 0;
        for round in 1..10u64 {
            let classes = [
                view(round * 10, 10, 5),
                view(round * 20, 10, 100),
                view(0, 1, 1),
            ];
            assert_eq!(policy.evaluate(now, &classes), None);
            now += WINDOW_MS;
        }
    }

    #[test]
    fn off_never_moves_and_aggressive_moves_from_the_first_window() {
        let run = |mode| {
            let mut policy = Automove::new();
            policy.set_mode(mode);
            let mut moves = 0;
            for window in 0..8u64 {
                let classes = [view(0, 10, 5), view(window * 50, 1, 100)];
                moves += usize::from(policy.evaluate(window * WINDOW_MS, &classes).is_some());
            }
            moves
        };
        // Seven windows end after the first call.
        assert_eq!(run(Mode::Off), 0);
        assert_eq!(run(Mode::Standard), 7 - HOT_WINDOWS as usize + 1);
        assert_eq!(run(Mode::Aggressive), 7);
        assert_eq!(Mode::from_level(2), Some(Mode::Aggressive));
        assert_eq!(Mode::from_level(3), None);
    }

    #[test]
    fn evaluates_once_per_window() {
        let mut policy = Automove::new();
        let mut moves = 0;
        for step in 0..100 {
            // Ticks every 10 ms: ten per window, one eviction per tick.
            let classes = [view(0, 10, 0), view(step, 1, 9)];
            moves += usize::from(policy.evaluate(step * 10, &classes).is_some());
        }
        // Windows end at 100, 200, ... 900 ms: nine evaluations, and one
        // move in each from the HOT_WINDOWS-th on, not one per tick.
        let windows = 900 / WINDOW_MS as usize;
        assert_eq!(moves, windows - HOT_WINDOWS as usize + 1);
    }
}
