//! Starting the thread-per-core threads: one per core, each pinned to its
//! CPU before any of them serves, so a `--cpus` that cannot be honoured
//! fails start-up cleanly instead of leaving some cores running.

use super::StartError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Pins the calling thread to `cpu`; false if the OS refused.
pub(crate) fn pin_current_thread(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// Starts one thread per item of `work`, named `corecache-<index>`. Item
/// `index` runs `run(item)` on a thread pinned to `cpu(index)` (none: not
/// pinned). Every thread pins itself and reports; then all run, or all
/// exit without running if any could not pin.
pub(super) fn start_all<W: Send + 'static>(
    work: Vec<W>,
    cpu: impl Fn(usize) -> Option<usize>,
    run: fn(W) -> std::io::Result<()>,
) -> Result<Vec<JoinHandle<std::io::Result<()>>>, StartError> {
    let count = work.len();
    let mut threads = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let gate = Arc::new((std::sync::Barrier::new(count + 1), AtomicBool::new(false)));
    for (index, work) in work.into_iter().enumerate() {
        let cpu = cpu(index);
        let ready = ready_tx.clone();
        let gate = gate.clone();
        let thread = std::thread::Builder::new()
            .name(format!("corecache-{index}"))
            .spawn(move || {
                let pinned = cpu.is_none_or(pin_current_thread);
                let _ = ready.send((cpu, pinned));
                gate.0.wait();
                if !gate.1.load(Ordering::Acquire) {
                    return Ok(());
                }
                run(work)
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        threads.push(thread);
    }
    drop(ready_tx);
    // Exactly one report per thread (the threads keep their senders).
    let failed = ready_rx
        .iter()
        .take(count)
        .fold(None, |failed, (cpu, pinned)| {
            failed.or((!pinned).then_some(cpu))
        });
    gate.1.store(failed.is_none(), Ordering::Release);
    gate.0.wait();
    if let Some(cpu) = failed {
        for thread in threads {
            let _ = thread.join();
        }
        return Err(StartError::Thread(format!(
            "could not pin a thread to CPU {}",
            cpu.unwrap_or_default()
        )));
    }
    Ok(threads)
}
