//! A hierarchical timing wheel of item expiries.
//!
//! This module owns the schedule, not the items. It has [`LEVELS`] levels of
//! 64 slots; a level-0 slot spans [`TICK_MS`] milliseconds and each level
//! up spans 64 times more (six levels reach past a century; anything later
//! is parked in the farthest slot and re-examined when it cascades). An
//! entry is 8 bytes: the chunk id and a 32-bit check derived from the
//! item's CAS and deadline ([`check`]). The wheel never decides anything
//! about items itself: every entry that comes due, either because its slot
//! was reached or because a higher-level slot cascades, is handed to the
//! caller's visitor, which answers with the item's current deadline if the
//! entry is still current and the item is not yet expired (the wheel then
//! reschedules it) or `None` (stale entry, or the caller reclaimed the
//! item). So a stale entry (item overwritten, deleted, re-timed, or its page
//! moved) costs one check and is dropped, and can never remove the wrong
//! item: the caller only reclaims items that are really expired.
//!
//! Work per [`Wheel::advance`] is bounded by a budget; entries not visited
//! yet stay queued and the wheel's clock does not move past them, so the
//! next call carries on. The clock jumps straight to the next occupied
//! slot (found from per-level occupancy bitmaps), so idle time costs
//! nothing however long it is.

use super::Millis;

/// Milliseconds per level-0 slot.
pub const TICK_MS: Millis = 64;
/// Levels of 64 slots.
pub const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;

/// One scheduled expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The chunk the item lived in when scheduled.
    pub chunk: u32,
    /// [`check`] of the item's CAS and deadline when scheduled.
    pub check: u32,
}

/// The check that ties an entry to one version of one item: it changes
/// when the item is replaced (new CAS) or re-timed (new deadline).
pub fn check(cas: u64, deadline: Millis) -> u32 {
    let mixed =
        (cas ^ deadline.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    (mixed >> 32) as u32
}

/// The timing wheel of one shard.
pub struct Wheel {
    slots: Vec<Vec<Entry>>,
    occupied: [u64; LEVELS],
    /// Ticks processed: every slot for ticks up to this one has been moved
    /// to `due`.
    now: u64,
    /// Entries waiting to be visited.
    due: Vec<Entry>,
    len: usize,
    /// Next slot [`Wheel::compact`] looks at.
    compact_cursor: usize,
}

impl Wheel {
    /// An empty wheel whose clock starts at `now`.
    pub fn new(now: Millis) -> Wheel {
        Wheel {
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; LEVELS],
            now: now / TICK_MS,
            due: Vec::new(),
            len: 0,
            compact_cursor: 0,
        }
    }

    /// Entries scheduled (current or stale) and not yet visited.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `entry` for `deadline`.
    pub fn schedule(&mut self, entry: Entry, deadline: Millis) {
        self.len += 1;
        // The first tick at or after the deadline.
        let mut tick = deadline.div_ceil(TICK_MS);
        if tick <= self.now {
            self.due.push(entry);
            return;
        }
        let mut level = ((63 - (tick ^ self.now).leading_zeros()) / SLOT_BITS) as usize;
        if level >= LEVELS {
            // Beyond the wheel's reach: park in the top level's current slot,
            // which is taken after a full turn; the visitor reschedules it.
            level = LEVELS - 1;
            tick = self.now;
        }
        let slot = ((tick >> (SLOT_BITS * level as u32)) as usize) & (SLOTS - 1);
        self.slots[level * SLOTS + slot].push(entry);
        self.occupied[level] |= 1 << slot;
    }

    fn take_slot(&mut self, level: usize, slot: usize) {
        if self.occupied[level] & (1 << slot) != 0 {
            self.occupied[level] &= !(1 << slot);
            let s = &mut self.slots[level * SLOTS + slot];
            if self.due.is_empty() {
                // O(1) however full the slot is; the slot keeps `due`'s old
                // buffer for reuse.
                std::mem::swap(&mut self.due, s);
            } else {
                self.due.append(s);
            }
        }
    }

    /// Drops entries for which `keep` is false, going through whole slots
    /// from where the last call stopped until about `budget` entries were
    /// looked at. Returns true when a full pass over the wheel has ended.
    ///
    /// Stale entries of far deadlines would otherwise sit in the wheel until
    /// their slot is reached (a key overwritten with a 30-day TTL leaves one
    /// behind per store); the shard calls this when stale entries outnumber
    /// current ones, which keeps the cost amortized O(1) per schedule.
    pub fn compact(&mut self, budget: usize, mut keep: impl FnMut(Entry) -> bool) -> bool {
        let mut seen = 0;
        while seen < budget {
            let i = self.compact_cursor;
            if i == self.slots.len() {
                self.compact_cursor = 0;
                return true;
            }
            self.compact_cursor += 1;
            let slot = &mut self.slots[i];
            if slot.is_empty() {
                continue;
            }
            seen += slot.len();
            let before = slot.len();
            slot.retain(|&e| keep(e));
            self.len -= before - slot.len();
            if slot.is_empty() {
                self.occupied[i / SLOTS] &= !(1 << (i % SLOTS));
            }
        }
        false
    }

    /// Moves the wheel's clock towards `now`, handing every entry that
    /// comes due (or cascades) to `visit`, at most `budget` of them. `visit`
    /// returns the item's deadline to keep it scheduled, or `None` to drop
    /// the entry. Returns the number of entries visited.
    pub fn advance(
        &mut self,
        now: Millis,
        budget: usize,
        mut visit: impl FnMut(Entry) -> Option<Millis>,
    ) -> usize {
        let target = now / TICK_MS;
        let mut visited = 0;
        loop {
            while let Some(entry) = self.due.pop() {
                if visited == budget {
                    self.due.push(entry);
                    return visited;
                }
                visited += 1;
                self.len -= 1;
                if let Some(deadline) = visit(entry) {
                    debug_assert!(deadline > now, "visitor kept an expired item");
                    self.schedule(entry, deadline);
                }
            }
            if self.now >= target {
                return visited;
            }
            let Some(t) = self.next_event() else {
                self.now = target;
                return visited;
            };
            if t > target {
                self.now = target;
                return visited;
            }
            self.now = t;
            for level in (1..LEVELS).rev() {
                let shift = SLOT_BITS * level as u32;
                if t & ((1u64 << shift) - 1) == 0 {
                    self.take_slot(level, ((t >> shift) as usize) & (SLOTS - 1));
                }
            }
            self.take_slot(0, (t as usize) & (SLOTS - 1));
        }
    }

    /// The first tick after `now` at which an occupied slot is taken (a
    /// level-0 slot comes due or a higher slot cascades).
    fn next_event(&self) -> Option<u64> {
        let mut best: Option<u64> = None;
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let shift = SLOT_BITS * level as u32;
            let digit = (self.now >> shift) & (SLOTS as u64 - 1);
            let block = SLOT_BITS * (level as u32 + 1);
            let base = self.now >> block << block;
            let later = if digit == SLOTS as u64 - 1 {
                0
            } else {
                occupied & (!0u64 << (digit + 1))
            };
            let tick = if later != 0 {
                base + (u64::from(later.trailing_zeros()) << shift)
            } else {
                base + (u64::from(occupied.trailing_zeros()) << shift) + (1u64 << block)
            };
            best = Some(best.map_or(tick, |b| b.min(tick)));
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(chunk: u32) -> Entry {
        Entry { chunk, check: 0 }
    }

    /// Runs the wheel to `now`, expiring everything due per `deadlines`.
    fn run(wheel: &mut Wheel, deadlines: &[Millis], now: Millis, fired: &mut Vec<(u32, Millis)>) {
        wheel.advance(now, usize::MAX, |e| {
            let d = deadlines[e.chunk as usize];
            if d <= now {
                fired.push((e.chunk, now));
                None
            } else {
                Some(d)
            }
        });
    }

    #[test]
    fn entries_fire_after_their_deadline_and_not_before() {
        let deadlines: Vec<Millis> =
            vec![10, 64, 65, 1000, 5000, 70_000, 3_600_000, 40 * 86_400_000];
        let mut wheel = Wheel::new(0);
        for (i, &d) in deadlines.iter().enumerate() {
            wheel.schedule(entry(i as u32), d);
        }
        let mut fired = Vec::new();
        let mut now = 0;
        while now <= 41 * 86_400_000 {
            run(&mut wheel, &deadlines, now, &mut fired);
            now += if now < 4_000_000 { 100 } else { 60_000 };
        }
        assert_eq!(fired.len(), deadlines.len());
        assert!(wheel.is_empty());
        for &(chunk, at) in &fired {
            let d = deadlines[chunk as usize];
            assert!(at >= d, "chunk {chunk} fired at {at} before {d}");
            // Fired within a tick period plus one slot of the deadline.
            let period = if d < 4_000_000 { 100 } else { 60_000 };
            assert!(
                at < d + period + TICK_MS,
                "chunk {chunk} fired late at {at}"
            );
        }
    }

    #[test]
    fn stale_entries_are_dropped() {
        // Ten items due at 1000. Items 0..4 are then re-timed to 3000 (a new
        // entry each, so their first entries go stale) and item 7 is
        // deleted (its entry is stale too). The visitor, like the shard's,
        // tells a current entry by its check.
        let mut wheel = Wheel::new(0);
        let mut current: Vec<Option<(u32, Millis)>> = (0..10).map(|_| Some((1, 1000))).collect();
        for chunk in 0..10 {
            wheel.schedule(Entry { chunk, check: 1 }, 1000);
        }
        for chunk in 0..4 {
            wheel.schedule(Entry { chunk, check: 2 }, 3000);
            current[chunk as usize] = Some((2, 3000));
        }
        current[7] = None;
        assert_eq!(wheel.len(), 14);
        // Visits what is due at `now`, sorting entries into stale and fired.
        fn visit(
            wheel: &mut Wheel,
            current: &[Option<(u32, Millis)>],
            now: Millis,
            stale: &mut Vec<u32>,
            fired: &mut Vec<u32>,
        ) {
            wheel.advance(now, usize::MAX, |e| match current[e.chunk as usize] {
                Some((check, deadline)) if check == e.check => {
                    if deadline <= now {
                        fired.push(e.chunk);
                        None
                    } else {
                        Some(deadline)
                    }
                }
                _ => {
                    stale.push(e.chunk);
                    None
                }
            });
        }
        let (mut stale, mut fired) = (Vec::new(), Vec::new());
        visit(&mut wheel, &current, 2000, &mut stale, &mut fired);
        stale.sort();
        assert_eq!(stale, vec![0, 1, 2, 3, 7], "the five stale entries went");
        assert_eq!(wheel.len(), 4, "only the re-timed entries are left");
        visit(&mut wheel, &current, 3100, &mut stale, &mut fired);
        assert_eq!(stale.len(), 5, "no current entry was taken for stale");
        fired.sort();
        assert_eq!(fired, vec![0, 1, 2, 3, 4, 5, 6, 8, 9]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn an_entry_kept_by_the_visitor_fires_at_its_new_deadline() {
        let mut wheel = Wheel::new(0);
        wheel.schedule(entry(0), 1000);
        wheel.schedule(entry(1), 1000);
        // Item 0's deadline moved to 5000 after it was scheduled, without a
        // new entry: the visitor keeps the entry (returns 5000).
        let deadlines = vec![5000, 1000];
        let mut fired = Vec::new();
        run(&mut wheel, &deadlines, 2000, &mut fired);
        assert_eq!(fired, vec![(1, 2000)]);
        assert_eq!(wheel.len(), 1);
        run(&mut wheel, &deadlines, 4900, &mut fired);
        assert_eq!(fired, vec![(1, 2000)], "not before its new deadline");
        run(&mut wheel, &deadlines, 5100, &mut fired);
        assert_eq!(fired, vec![(1, 2000), (0, 5100)]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn budget_carries_work_over_without_losing_entries() {
        let mut wheel = Wheel::new(0);
        for i in 0..1000 {
            wheel.schedule(entry(i), 500);
        }
        let mut seen = 0;
        let mut calls = 0;
        while !wheel.is_empty() {
            let n = wheel.advance(1000, 64, |_| None);
            assert!(n <= 64);
            seen += n;
            calls += 1;
        }
        assert_eq!(seen, 1000);
        assert_eq!(calls, 1000usize.div_ceil(64));
    }

    #[test]
    fn scheduling_in_the_past_is_due_at_once() {
        let mut wheel = Wheel::new(10_000);
        wheel.schedule(entry(7), 5);
        let mut got = Vec::new();
        wheel.advance(10_000, 10, |e| {
            got.push(e.chunk);
            None
        });
        assert_eq!(got, vec![7]);
    }

    #[test]
    fn far_future_is_parked_and_kept() {
        let mut wheel = Wheel::new(0);
        let far = Millis::MAX / 2;
        wheel.schedule(entry(0), far);
        let mut visits = 0;
        wheel.advance(100 * 365 * 86_400_000, usize::MAX, |_| {
            visits += 1;
            Some(far)
        });
        assert_eq!(wheel.len(), 1);
        assert!(visits <= LEVELS * 2);
    }

    #[test]
    fn compaction_drops_only_what_it_is_told_to() {
        let mut wheel = Wheel::new(0);
        for i in 0..1000u32 {
            wheel.schedule(entry(i), 1 + u64::from(i) * 997);
        }
        let mut passes = 0;
        while !wheel.compact(100, |e| e.chunk % 2 == 0) {
            passes += 1;
        }
        assert!(passes > 1, "the work was split");
        assert_eq!(wheel.len(), 500);
        let mut fired = Vec::new();
        wheel.advance(1000 * 997 + 1, usize::MAX, |e| {
            fired.push(e.chunk);
            None
        });
        fired.sort();
        assert_eq!(fired, (0..1000).step_by(2).collect::<Vec<u32>>());
    }

    #[test]
    fn check_changes_with_cas_and_deadline() {
        assert_ne!(check(1, 100), check(2, 100));
        assert_ne!(check(1, 100), check(1, 101));
        assert_eq!(check(5, 5), check(5, 5));
    }
}
