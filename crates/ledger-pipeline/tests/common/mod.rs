//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::mpsc::{Receiver, Sender, channel};

use ledger_pipeline::{Batch, Stage, stage_fn};

/// A stage that takes one permit per slot from a channel before finishing it: the test
/// decides exactly how far the stage (and everything after it) may go. Add it with
/// `StageOptions::default().batch_size_max(1)` to release slot by slot.
pub fn gate<T: 'static>() -> (Sender<()>, impl Stage<T>) {
    let (tx, rx): (Sender<()>, Receiver<()>) = channel();
    let stage = stage_fn(move |batch: &mut Batch<'_, T>| {
        for _ in 0..batch.len() {
            rx.recv().map_err(|_| "gate closed")?;
        }
        Ok(())
    });
    (tx, stage)
}

/// A stage that does nothing.
pub fn noop<T: 'static>() -> impl Stage<T> {
    stage_fn(|_: &mut Batch<'_, T>| Ok(()))
}

/// Generous bound for waits that must succeed: a bug fails the test instead of hanging it.
pub const MUST_HAPPEN: std::time::Duration = std::time::Duration::from_secs(30);
