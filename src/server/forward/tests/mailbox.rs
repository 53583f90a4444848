//! Unit tests of the mailbox: the sleep/wake protocol, with a stress test
//! of idle/busy transitions.

use super::*;
use std::sync::atomic::AtomicBool;
use std::task::Wake;
use std::time::{Duration, Instant};

/// Wakes a std thread parked in a test's stand-in for a runtime.
struct Unpark {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

fn forward() -> Message {
    Message::Forward(Batch::default())
}

/// The wake protocol under many thousands of idle/busy transitions: an
/// owner that drains, then says it sleeps and parks, against a sender
/// that posts in bursts and pauses, often right as the owner goes to
/// sleep. Every message is taken, no message is ever left pending while
/// the owner sleeps (a park that times out with one pending fails), and
/// every wake the sender sends lands on an owner that had said it
/// sleeps.
#[test]
fn no_message_is_stranded_across_idle_busy_transitions() {
    const MESSAGES: u64 = 100_000;
    let (mut mailboxes, mut inboxes) = mailboxes(1, MESSAGES as usize);
    let (mailbox, inbox) = (mailboxes.remove(0), inboxes.remove(0));
    let sleeps = Arc::new(AtomicU64::new(0));
    let owner_sleeps = sleeps.clone();
    let progress = Arc::new(AtomicU64::new(0));
    let owner_progress = progress.clone();
    let owner = std::thread::spawn(move || {
        let unpark = Arc::new(Unpark {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
        });
        inbox.set_waker(&Waker::from(unpark.clone()));
        let mut taken = 0;
        while taken < MESSAGES {
            while inbox.next().is_some() {
                taken += 1;
            }
            owner_progress.store(taken, Ordering::Release);
            // A runtime does other work between its last look at the
            // mailbox and parking: that is where a post can slip in.
            if taken % 3 == 0 {
                std::thread::yield_now();
            }
            if taken == MESSAGES || !inbox.try_sleep() {
                continue;
            }
            owner_sleeps.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !unpark.woken.swap(false, Ordering::AcqRel) {
                assert!(
                    Instant::now() < deadline,
                    "asleep for 10 s with {} messages pending",
                    inbox.queue.len()
                );
                std::thread::park_timeout(Duration::from_millis(100));
            }
            inbox.awake();
        }
        taken
    });
    let mut wakes = 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut sent = 0;
    while sent < MESSAGES {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Bursts of 1 to 4 messages, posted one or a few at a time.
        let burst = (rng % 4 + 1).min(MESSAGES - sent);
        let together = rng >> 8 & 1 == 0;
        if together {
            wakes += u64::from(mailbox.post((0..burst).map(|_| forward())));
        } else {
            for _ in 0..burst {
                wakes += u64::from(mailbox.post([forward()]));
            }
        }
        sent += burst;
        // Most bursts are followed by a pause that lets the owner go
        // idle: half of them wait until it has taken everything sent
        // (which a stranded message would never let happen) and then
        // until it says it sleeps, so the next burst lands just after.
        let until = Instant::now() + Duration::from_secs(10);
        let wait_taken = || {
            // Yield rather than spin: on a loaded 2-CPU machine a
            // spinning sender can keep the owner off the CPU it needs.
            while progress.load(Ordering::Acquire) < sent {
                assert!(Instant::now() < until, "a message was stranded");
                std::thread::yield_now();
            }
        };
        match rng >> 16 & 3 {
            _ if sent == MESSAGES => {}
            0 => {}
            // Post again the moment the owner has taken everything: on
            // its way to sleep.
            1 => wait_taken(),
            _ => {
                wait_taken();
                while mailbox.state.load(Ordering::Acquire) & SLEEPING == 0
                    && Instant::now() < until
                {
                    std::thread::yield_now();
                }
            }
        }
    }
    assert_eq!(owner.join().expect("the owner never got stuck"), MESSAGES);
    let sleeps = sleeps.load(Ordering::Relaxed);
    println!("{sleeps} sleeps, {wakes} wakes for {MESSAGES} messages");
    assert!(
        sleeps > 10_000,
        "only {sleeps} idle/busy transitions were exercised"
    );
    // A wake is sent only to an owner that said it sleeps, at most once
    // per time it said so.
    assert!(wakes <= sleeps, "{wakes} wakes for {sleeps} sleeps");
    assert!(wakes > 0);
}

#[test]
fn an_awake_owner_is_never_woken_and_a_sleeping_one_once() {
    let (mut mailboxes, mut inboxes) = mailboxes(1, 8);
    let (mailbox, inbox) = (mailboxes.remove(0), inboxes.remove(0));
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    inbox.set_waker(&Waker::from(unpark.clone()));
    assert!(!mailbox.post([forward(), forward()]));
    assert!(inbox.pending());
    // It cannot say it sleeps with messages untaken.
    assert!(!inbox.try_sleep());
    assert!(inbox.next().is_some() && inbox.next().is_some());
    assert!(!inbox.pending());
    assert!(inbox.try_sleep());
    // The first post after that wakes it; the next finds it awake.
    assert!(mailbox.post([forward()]));
    assert!(unpark.woken.load(Ordering::Acquire));
    assert!(!mailbox.post([forward()]));
    inbox.awake();
    assert!(!mailbox.post(std::iter::empty()));
}
