//! The shared state: the slots, the availability array, the claim cursor, the stage
//! cursors and the failure record. `docs/pipeline.md` describes the protocol.
//!
//! Who may touch slot `s & mask`, for a sequence `s`:
//! - the producer that claimed `s`, from its successful claim until it stores `s` into
//!   `available[s & mask]`;
//! - stage 0, from the moment it reads `available[s & mask] == s` until it stores a cursor
//!   `>= s`;
//! - stage `k > 0`, from the moment it reads `cursor[k - 1] >= s` until it stores its own
//!   cursor `>= s`.
//!
//! A producer may claim `s` only once the last stage's cursor is `>= s - capacity`: the
//! previous occupant of the slot (`s - capacity`) has left the last stage. So at any time
//! exactly one of these parties may access a given slot, and each hand-over is a `Release`
//! store read with `Acquire` by the next party.

use std::cell::UnsafeCell;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use crossbeam_utils::CachePadded;

use crate::error::PipelineError;
use crate::sync::{AtomicBool, AtomicU64};
use crate::wait::{Notifier, WaitStrategy};

/// Set in the claim cursor once the pipeline stops accepting publishes. Sequences stay
/// far below it (see [`SEQUENCE_MAX`]).
pub(crate) const CLOSED: u64 = 1 << 63;

/// The largest sequence a pipeline hands out (and the largest initial sequence it accepts).
pub const SEQUENCE_MAX: u64 = (1 << 62) - 1;

/// The largest ring a pipeline accepts.
pub const CAPACITY_MAX: usize = 1 << 30;

/// `available[i]` before any sequence was published into slot `i`: never a sequence.
const NEVER_PUBLISHED: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct StageCell {
    pub(crate) name: String,
    /// The last sequence this stage finished (released to the next stage).
    pub(crate) cursor: CachePadded<AtomicU64>,
    /// Woken when `cursor` advances, and when the stage exits.
    pub(crate) notifier: Notifier,
    /// Set (after the final cursor store) when the stage thread has left its loop.
    pub(crate) exited: AtomicBool,
}

impl StageCell {
    /// Hands `..=last` on (to the next stage; for the last stage, back to the producers)
    /// and wakes whoever sleeps until the cursor reaches `last`.
    #[inline]
    pub(crate) fn release(&self, last: u64) {
        self.cursor.store(last, Ordering::Release);
        self.notifier.advance(last);
    }
}

/// Everything but the slots: what progress readers and waiters need. Not generic.
#[derive(Debug)]
pub(crate) struct Control {
    pub(crate) capacity: u64,
    pub(crate) strategy: WaitStrategy,
    /// The next sequence to claim, with [`CLOSED`] set once closed.
    pub(crate) claim: CachePadded<AtomicU64>,
    /// Set right after [`CLOSED`] is: what waiting stages poll, so that they never read
    /// `claim`'s cache line, which producers write on every claim (a stage spinning on it
    /// made every claim a cross-core miss: 430 ns per item instead of ~30).
    pub(crate) closed: CachePadded<AtomicBool>,
    /// Woken when producers publish (stage 0 sleeps here).
    pub(crate) published: Notifier,
    /// A recent value of the last stage's cursor, shared by producers so that a claim
    /// reads the cursor's cache line (written by the last stage after every batch) only
    /// when this value says the ring may be full. Stored with `Release` after an `Acquire`
    /// read of the cursor, loaded with `Acquire`: a producer trusting it is ordered after
    /// the last stage's release of the slots it covers. It may lag (never lead) the cursor.
    pub(crate) gate_cache: CachePadded<AtomicU64>,
    pub(crate) stages: Box<[StageCell]>,
    /// The first failure, if any. Set once.
    pub(crate) failure: OnceLock<PipelineError>,
}

impl Control {
    pub(crate) fn new(
        capacity: u64,
        strategy: WaitStrategy,
        initial_sequence: u64,
        names: Vec<String>,
    ) -> Self {
        // `start` checks both; cursors start at `initial_sequence - 1`.
        assert!((1..=SEQUENCE_MAX).contains(&initial_sequence));
        assert!(!names.is_empty(), "a pipeline has at least one stage");
        let stages = names
            .into_iter()
            .map(|name| StageCell {
                name,
                cursor: CachePadded::new(AtomicU64::new(initial_sequence - 1)),
                notifier: Notifier::new(),
                exited: AtomicBool::new(false),
            })
            .collect();
        Self {
            capacity,
            strategy,
            claim: CachePadded::new(AtomicU64::new(initial_sequence)),
            closed: CachePadded::new(AtomicBool::new(false)),
            published: Notifier::new(),
            gate_cache: CachePadded::new(AtomicU64::new(initial_sequence - 1)),
            stages,
            failure: OnceLock::new(),
        }
    }

    pub(crate) fn stage(&self, index: usize) -> &StageCell {
        // Stage indices come from `StageId`s this pipeline issued, and a pipeline always
        // has at least one stage.
        &self.stages[index]
    }

    pub(crate) fn last_stage(&self) -> &StageCell {
        self.stage(self.stages.len() - 1)
    }

    /// Whether no more claims succeed, and the end of what was claimed (one past the last
    /// claimed sequence).
    pub(crate) fn claim_state(&self) -> (bool, u64) {
        let c = self.claim.load(Ordering::Acquire);
        (c & CLOSED != 0, c & !CLOSED)
    }

    /// The error a refused producer or an unsatisfied waiter gets once closed.
    pub(crate) fn closed_error(&self) -> PipelineError {
        self.failure
            .get()
            .cloned()
            .unwrap_or(PipelineError::ShutDown)
    }

    /// Stops accepting claims and wakes every sleeper so it re-reads the state.
    pub(crate) fn close(&self) {
        self.claim.fetch_or(CLOSED, Ordering::AcqRel);
        self.closed.store(true, Ordering::Release);
        self.wake_everyone();
    }

    /// Records `error` if it is the first failure, closes and wakes everyone.
    pub(crate) fn fail(&self, error: PipelineError) {
        // Only the first failure is kept; later ones are consequences.
        let _ = self.failure.set(error);
        self.close();
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.failure.get().is_some()
    }

    fn wake_everyone(&self) {
        self.published.wake_all();
        for s in &self.stages {
            s.notifier.wake_all();
        }
    }

    /// `Some` once waiting for `stage` to reach `target` is over: `Ok` if reached, `Err`
    /// if the pipeline failed, or the stage exited below the target.
    pub(crate) fn check_level(
        &self,
        stage: usize,
        target: u64,
    ) -> Option<Result<(), PipelineError>> {
        let cell = self.stage(stage);
        if cell.cursor.load(Ordering::Acquire) >= target {
            return Some(Ok(()));
        }
        if let Some(e) = self.failure.get() {
            return Some(Err(e.clone()));
        }
        if cell.exited.load(Ordering::Acquire) {
            // The final cursor was stored before `exited`: re-read it.
            if cell.cursor.load(Ordering::Acquire) >= target {
                return Some(Ok(()));
            }
            return Some(Err(self.closed_error()));
        }
        None
    }
}

/// The slots and their availability, plus the control block.
pub(crate) struct Ring<T> {
    pub(crate) control: std::sync::Arc<Control>,
    pub(crate) mask: u64,
    slots: Box<[UnsafeCell<T>]>,
    /// `available[i]` is the last sequence published into slot `i`.
    available: Box<[AtomicU64]>,
}

// SAFETY: the ring hands out `&mut T` to one thread at a time per slot (the protocol in the
// module docs), so sharing it between threads needs `T: Send` only, like a `Mutex<T>`.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: the ring owns its `T`s; moving it to another thread moves them.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T> std::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.slots.len())
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl<T> Ring<T> {
    pub(crate) fn new(
        control: std::sync::Arc<Control>,
        capacity: usize,
        factory: &mut dyn FnMut() -> T,
    ) -> Self {
        // The mask, and so every slot index, relies on both.
        assert!(capacity.is_power_of_two() && capacity <= CAPACITY_MAX);
        assert_eq!(capacity as u64, control.capacity);
        Self {
            control,
            mask: capacity as u64 - 1,
            slots: (0..capacity).map(|_| UnsafeCell::new(factory())).collect(),
            available: (0..capacity)
                .map(|_| AtomicU64::new(NEVER_PUBLISHED))
                .collect(),
        }
    }

    #[inline]
    fn index(&self, sequence: u64) -> usize {
        // `mask < capacity <= CAPACITY_MAX`, so the masked value fits any usize >= 32 bits.
        (sequence & self.mask) as usize
    }

    /// A raw pointer to the slot of `sequence`.
    #[inline]
    pub(crate) fn slot_ptr(&self, sequence: u64) -> *mut T {
        self.slots[self.index(sequence)].get()
    }

    /// The start of the slot array: `UnsafeCell<T>` has the layout of `T`.
    #[inline]
    pub(crate) fn slots_base(&self) -> *mut T {
        UnsafeCell::raw_get(self.slots.as_ptr())
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn available_cell(&self, sequence: u64) -> &AtomicU64 {
        &self.available[self.index(sequence)]
    }

    /// Marks `sequence` published: hands its slot to stage 0.
    #[inline]
    pub(crate) fn mark_available(&self, sequence: u64) {
        self.available_cell(sequence)
            .store(sequence, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_available(&self, sequence: u64) -> bool {
        self.available_cell(sequence).load(Ordering::Acquire) == sequence
    }

    /// The highest `h` in `first..first + limit` such that every sequence in `first..=h`
    /// is published. `first` must be published.
    #[inline]
    pub(crate) fn highest_available(&self, first: u64, limit: u64) -> u64 {
        let mut h = first;
        let end = first + limit;
        while h + 1 < end && self.is_available(h + 1) {
            h += 1;
        }
        h
    }
}
