//! Where to cut an input into reads.
//!
//! A parser must give the same requests however its input arrives. The
//! cuts are derived from the input itself (a hash seeds a small generator),
//! so a run is reproducible from the input alone, and each input is tried
//! with several schedules: all at once, two random ones, and one byte at a
//! time when the input is short.

/// Inputs up to this long are also fed one byte at a time (longer ones
/// would make each run slow: every read re-scans the buffer).
const BYTEWISE_MAX: usize = 512;

/// About the most reads a random schedule cuts an input into.
const MAX_READS: usize = 512;

/// Feeds `input` under every schedule (`feed` returns what a connection
/// made of it) and asserts that each run `agree`s with the first, the one
/// that read everything at once.
pub fn check_agreement<R: std::fmt::Debug>(
    input: &[u8],
    feed: impl Fn(&[u8], &[usize]) -> R,
    agree: impl Fn(&R, &R) -> bool,
) {
    let mut runs = schedules(input).into_iter();
    let first = feed(input, &runs.next().expect("at least one schedule"));
    for schedule in runs {
        let run = feed(input, &schedule);
        assert!(
            agree(&first, &run),
            "reads of {schedule:?} gave {run:#?}\nbut one read gave {first:#?}"
        );
    }
}

/// The read sizes to try for `input`, each list adding up to at least its
/// length. The first is the whole input in one read.
pub fn schedules(input: &[u8]) -> Vec<Vec<usize>> {
    let len = input.len().max(1);
    let mut out = vec![vec![len]];
    let mut rng = Rng::new(input);
    for _ in 0..2 {
        // Reads of 1 byte up to a few KiB, the largest read picked per
        // schedule so some cut tokens and some cut whole lines; but at
        // most about `MAX_READS` reads, since each one re-parses the
        // buffer (and a long line is scanned again each time).
        let most = [1, 3, 16, 100, 700, 3000][rng.below(6)].max(2 * len / MAX_READS);
        let mut schedule = Vec::new();
        let mut total = 0;
        while total < len {
            let read = 1 + rng.below(most);
            schedule.push(read);
            total += read;
        }
        out.push(schedule);
    }
    if input.len() <= BYTEWISE_MAX {
        out.push(vec![1; len]);
    }
    out
}

/// xorshift64*, seeded with an FNV-1a hash of the input.
struct Rng(u64);

impl Rng {
    fn new(input: &[u8]) -> Rng {
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        for &b in input {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Rng(hash | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}
