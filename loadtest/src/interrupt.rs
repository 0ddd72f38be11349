//! Ctrl-C during a run: the first one ends the load early — the run still waits for what it
//! made, reads it back, deletes its bots and writes its report — and a second one quits at
//! once. Without this a load test cut short left its bots behind (a cron run's still firing)
//! and reported nothing.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether the run was asked to stop its load (checked between requests and waits).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Listens for Ctrl-C (SIGINT) for the rest of the process.
pub fn listen() {
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        REQUESTED.store(true, Ordering::Relaxed);
        eprintln!(
            "\ninterrupted: the load stops; waiting briefly for what the run made, then reporting \
             and deleting its bots. Press Ctrl-C again to quit at once (bots are then left behind)."
        );
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}
