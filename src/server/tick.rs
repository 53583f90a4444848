//! The shards' clock tick, the same in both runtimes: expiry and
//! background work every `--ttl-tick`, and the idle-connection sweep.

use super::state::ServerState;
use crate::storage::Millis;
use std::sync::Arc;

/// Calls `tick` with the server clock every `--ttl-tick`, forever: the
/// shards' expiry and background work; and, with `--idle-timeout`, about
/// once a second of the server clock, wakes the idle connections of
/// `thread` (all, if `None`). Both runtimes use it.
pub(crate) async fn tick_every(
    state: Arc<ServerState>,
    thread: Option<usize>,
    mut tick: impl FnMut(Millis),
) {
    const SWEEP_EVERY: Millis = 1000;
    let mut interval = tokio::time::interval(state.config.ttl_tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweeps = !state.config.idle_timeout.is_zero();
    let mut next_sweep = 0;
    loop {
        interval.tick().await;
        let now = state.clock.now();
        tick(now);
        if sweeps && now >= next_sweep {
            state.kick_idle(thread, now);
            next_sweep = now + SWEEP_EVERY;
        }
    }
}
