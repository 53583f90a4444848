//! Unit tests of the thread-per-core runtime: how a batch is split into
//! waves so a connection's writes stay in order.

use super::*;
use crate::config::Config;
use crate::protocol::StoreKind;
use crate::server::op::{OpKind, Span, Wire};
use crate::server::{Router, state::ServerState};

/// Core `index` of `threads`, with its shards, off any runtime.
fn core(threads: usize, index: usize) -> Rc<Core> {
    let mut config = Config::defaults(&[0]);
    config.threads = threads;
    config.shards = threads;
    config.pin = false;
    let state = Arc::new(ServerState::for_tests(config));
    let (mailboxes, inboxes) = forward::mailboxes(threads, 8);
    let inbox = inboxes.into_iter().nth(index).unwrap();
    Rc::new(Core {
        index,
        shards: RefCell::new(vec![Shard::new(&state.config.shard_config(index))]),
        mailboxes,
        inbox,
        outbox: Outbox::new(threads),
        waiting: WaitList::default(),
        mail_waker: RefCell::new(None),
        mail_woken: Cell::new(false),
        spin: SpinWindow::new(Duration::ZERO),
        spinning: Cell::new(Spin::Idle),
        state,
    })
}

/// A key that `router` places on `thread`.
fn key_on(router: &Router, thread: usize, seed: usize) -> String {
    (seed..)
        .map(|i| format!("k{i}"))
        .find(|k| router.owner(router.shard(Router::hash(k.as_bytes()))) == thread)
        .unwrap()
}

/// Steps for `(write?, thread)` pairs, keys in `base`.
fn plan(router: &Router, ops: &[(bool, usize)], base: &mut Vec<u8>) -> Vec<Step> {
    ops.iter()
        .enumerate()
        .map(|(i, &(write, thread))| {
            let key = key_on(router, thread, i * 100);
            let start = base.len() as u32;
            base.extend_from_slice(key.as_bytes());
            let kind = if write {
                OpKind::Store(StoreKind::Set)
            } else {
                OpKind::Get {
                    cas: false,
                    touch: false,
                }
            };
            Step::Op(Op {
                kind,
                hash: Router::hash(key.as_bytes()),
                key: Span {
                    start,
                    len: key.len() as u32,
                },
                data: Span::default(),
                flags: 0,
                exptime: 0,
                number: 0,
                noreply: true,
                wire: Wire::Classic,
                tokens: Span::default(),
            })
        })
        .collect()
}

/// How many steps of `ops` the first wave takes, on core 0 of
/// `threads`, and to how many owners it forwards.
fn first_wave(threads: usize, ops: &[(bool, usize)]) -> (usize, usize) {
    let core = core(threads, 0);
    let router = core.state.router;
    let mut base = Vec::new();
    let steps = plan(&router, ops, &mut base);
    let mut dispatch = CoreDispatch::new(core);
    dispatch.wave(&steps, &base, &mut Vec::new())
}

/// A forwarded write waits only for an earlier forwarded write of the
/// batch to another owner; local writes, reads and writes to the same
/// owner never wait.
#[test]
fn only_forwarded_writes_to_two_owners_split_a_batch() {
    const W: bool = true;
    const R: bool = false;
    // Two threads: there is one other owner, nothing ever waits.
    assert_eq!(
        first_wave(2, &[(W, 1), (W, 0), (W, 1), (R, 1), (W, 0)]),
        (5, 1)
    );
    // Three threads.
    assert_eq!(first_wave(3, &[(W, 1), (W, 2)]), (1, 1));
    assert_eq!(
        first_wave(3, &[(W, 1), (W, 1), (W, 0), (R, 2), (W, 1)]),
        (5, 2)
    );
    assert_eq!(
        first_wave(3, &[(R, 2), (W, 1), (R, 2), (W, 0), (W, 2)]),
        (4, 2)
    );
    assert_eq!(
        first_wave(3, &[(W, 0), (W, 2), (W, 0), (W, 1), (W, 2)]),
        (3, 1)
    );
}
