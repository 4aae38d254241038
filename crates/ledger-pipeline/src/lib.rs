//! A Disruptor-style staged runtime: a ring of pre-allocated slots, multi-producer
//! sequencing, a chain of consumer stages on their own threads, and waiters.
//!
//! - Producers ([`Producer`], any number of threads) claim the next sequence number (or a
//!   run of them), fill the slot in place and publish. Sequences are monotonic and
//!   gap-free from a configurable first one: they are the ids the caller hands out. A full
//!   ring makes `publish` wait and `try_publish` return [`PipelineError::Full`].
//! - Stages ([`Stage`]) run in order, each on its own thread, each gated on the one before
//!   it (the first on the producers). A stage receives [`Batch`]es of contiguous published
//!   slots with `&mut` access, so one wake-up, one write or one fsync covers many; when a
//!   batch returns, the stage's index (a cache-padded atomic) advances past it.
//! - [`Progress`] reads any stage's index and waits for it to reach a sequence: `wait`,
//!   `wait_timeout` from threads, `wait_async` from any async runtime. Sleepers are woken in
//!   groups by whoever advances the index, and only when someone sleeps.
//! - [`WaitStrategy`]: busy-spin, spin-then-yield-then-park (default), or low-CPU.
//! - A stage that returns `Err` or panics (or a producer whose fill closure panics) stops
//!   the pipeline: every blocked producer and waiter gets the error, nothing hangs.
//!   [`Pipeline::shutdown`] refuses new publishes, drains what was claimed, joins.
//!
//! The crate knows nothing of what the slots hold. `docs/pipeline.md` at the repository
//! root describes the protocol: cursors, gating, availability, waiting, failure.
//!
//! ```
//! use ledger_pipeline::{Pipeline, PipelineError, stage_fn};
//!
//! # fn main() -> Result<(), PipelineError> {
//! #[derive(Default)]
//! struct Slot { id: u64, amount: u64, doubled: u64 }
//!
//! let mut builder = Pipeline::builder(1024, Slot::default).initial_sequence(1);
//! let _execute = builder.add_stage("execute", stage_fn(|batch: &mut ledger_pipeline::Batch<'_, Slot>| {
//!     for (_seq, slot) in batch.iter_mut() {
//!         slot.doubled = slot.amount * 2;
//!     }
//!     Ok(())
//! }));
//! let commit = builder.add_stage("commit", stage_fn(|batch: &mut ledger_pipeline::Batch<'_, Slot>| {
//!     // One write + one fsync for the whole batch would go here.
//!     let _bytes: u64 = batch.iter_mut().map(|(_, slot)| slot.doubled).sum();
//!     Ok(())
//! }));
//! let pipeline = builder.start()?;
//! let producer = pipeline.producer();
//! let progress = pipeline.progress();
//!
//! let id = producer.publish(|seq, slot| {
//!     slot.id = seq;
//!     slot.amount = 21;
//! })?;
//! assert_eq!(id, 1);
//! progress.wait(commit, id)?;
//! assert!(progress.index(commit) >= 1);
//! pipeline.shutdown()?;
//! # Ok(())
//! # }
//! ```

mod affinity;
mod batch;
mod error;
#[cfg(all(test, loom))]
mod loom_models;
mod pipeline;
mod ring;
mod sync;
mod wait;

pub use affinity::Pinning;
pub use batch::{Batch, FnStage, IterMut, Stage, stage_fn};
pub use error::{PipelineError, SharedStageError, StageError};
pub use pipeline::{
    Pipeline, PipelineBuilder, Producer, Progress, StageId, StageOptions, WaitFuture,
};
pub use ring::{CAPACITY_MAX, SEQUENCE_MAX};
pub use wait::{PARK_SAFETY_NET, SPINS_DEFAULT, SPINS_LOW_CPU, WaitStrategy, YIELDS_DEFAULT};

#[cfg(test)]
mod send_sync {
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<crate::Producer<Vec<u8>>>();
    const _: () = assert_send_sync::<crate::Progress>();
    const _: () = assert_send_sync::<crate::WaitFuture>();
    const _: () = assert_send_sync::<crate::Pipeline<Vec<u8>>>();
}
