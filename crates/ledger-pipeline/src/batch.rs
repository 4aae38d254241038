//! What a stage handler sees: a run of contiguous sequences and exclusive access to their
//! slots.

use std::marker::PhantomData;

use crate::error::StageError;
use crate::ring::Ring;

/// A run of contiguous sequences `first_sequence()..=last_sequence()` handed to one stage,
/// with exclusive (`&mut`) access to their slots for the duration of
/// [`Stage::on_batch`].
///
/// Every earlier stage has finished these slots; no later stage sees them before
/// `on_batch` returns. Changes made here are what later stages see.
pub struct Batch<'a, T> {
    ring: &'a Ring<T>,
    first: u64,
    len: usize,
}

impl<T> std::fmt::Debug for Batch<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("first", &self.first)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<'a, T> Batch<'a, T> {
    /// # Safety
    ///
    /// The caller (a stage thread) must have exclusive access to the slots of
    /// `first..first + len` for `'a`, and `1 <= len <= capacity`.
    pub(crate) unsafe fn new(ring: &'a Ring<T>, first: u64, len: usize) -> Self {
        // `as_mut_slices` and `IterMut` rely on it for bounds and for distinct slots.
        assert!(len >= 1 && len <= ring.capacity());
        Self { ring, first, len }
    }

    /// The first sequence of the batch.
    pub fn first_sequence(&self) -> u64 {
        self.first
    }

    /// The last sequence of the batch (inclusive).
    pub fn last_sequence(&self) -> u64 {
        self.first + self.len as u64 - 1
    }

    /// How many slots the batch holds (at least one).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a stage is never handed an empty batch.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot of the `i`-th sequence of the batch, with its sequence.
    pub fn get_mut(&mut self, i: usize) -> Option<(u64, &mut T)> {
        if i >= self.len {
            return None;
        }
        let seq = self.first + i as u64;
        // SAFETY: `seq` is in this batch, whose slots this stage holds exclusively (see
        // `Batch::new`); the `&mut self` borrow prevents a second reference to it.
        Some((seq, unsafe { &mut *self.ring.slot_ptr(seq) }))
    }

    /// `(sequence, slot)` for every sequence of the batch, in order.
    pub fn iter_mut(&mut self) -> IterMut<'_, T> {
        IterMut {
            ring: self.ring,
            next: self.first,
            end: self.first + self.len as u64,
            _borrow: PhantomData,
        }
    }

    /// Calls `f(sequence, slot, end_of_batch)` for every slot in order; `end_of_batch` is
    /// `true` for the last one (where a group write or fsync goes).
    pub fn for_each(&mut self, mut f: impl FnMut(u64, &mut T, bool)) {
        let last = self.last_sequence();
        for (seq, slot) in self.iter_mut() {
            f(seq, slot, seq == last);
        }
    }

    /// The batch's slots as at most two contiguous slices (the run may wrap around the
    /// end of the ring): the first slice holds `first_sequence()` onwards; the second is
    /// empty unless the batch wraps.
    pub fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        let cap = self.ring.capacity();
        let start = (self.first & self.ring.mask) as usize;
        let head_len = self.len.min(cap - start);
        let tail_len = self.len - head_len;
        let base = self.ring.slots_base();
        // SAFETY: `start + head_len <= cap` and `tail_len <= start` (a batch is at most
        // `cap` long), so the two ranges are in bounds and disjoint; they are exactly the
        // slots of this batch, held exclusively by this stage, and `&mut self` prevents
        // any other reference for the slices' lifetime. `UnsafeCell<T>` has `T`'s layout.
        unsafe {
            (
                std::slice::from_raw_parts_mut(base.add(start), head_len),
                std::slice::from_raw_parts_mut(base, tail_len),
            )
        }
    }
}

/// Iterator over a batch's `(sequence, &mut slot)`, from [`Batch::iter_mut`].
pub struct IterMut<'b, T> {
    ring: &'b Ring<T>,
    next: u64,
    end: u64,
    _borrow: PhantomData<&'b mut T>,
}

impl<T> std::fmt::Debug for IterMut<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IterMut")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<'b, T> Iterator for IterMut<'b, T> {
    type Item = (u64, &'b mut T);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let seq = self.next;
        self.next += 1;
        // SAFETY: `seq` is in the batch this iterator mutably borrows; its slots are held
        // exclusively by the stage; each sequence is yielded once and distinct sequences of
        // one batch (at most `capacity` long) are distinct slots, so no two `&mut` alias.
        Some((seq, unsafe { &mut *self.ring.slot_ptr(seq) }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.next) as usize;
        (n, Some(n))
    }
}

impl<T> ExactSizeIterator for IterMut<'_, T> {}

/// A consumer stage: runs on its own thread and is handed batches in sequence order.
///
/// Returning `Err` (or panicking) stops the whole pipeline: producers and waiters get
/// [`PipelineError::StageFailed`](crate::PipelineError::StageFailed).
pub trait Stage<T>: Send + 'static {
    /// Handles one batch. The stage's index advances to `batch.last_sequence()` when this
    /// returns `Ok`.
    fn on_batch(&mut self, batch: &mut Batch<'_, T>) -> Result<(), StageError>;
}

impl<T, S: Stage<T> + ?Sized> Stage<T> for Box<S> {
    fn on_batch(&mut self, batch: &mut Batch<'_, T>) -> Result<(), StageError> {
        (**self).on_batch(batch)
    }
}

/// A stage made of a closure, from [`stage_fn`].
pub struct FnStage<F>(F);

impl<F> std::fmt::Debug for FnStage<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnStage")
    }
}

/// Makes a stage of a closure `|batch| -> Result<(), StageError>`.
pub fn stage_fn<T, F>(f: F) -> FnStage<F>
where
    F: FnMut(&mut Batch<'_, T>) -> Result<(), StageError> + Send + 'static,
{
    FnStage(f)
}

impl<T, F> Stage<T> for FnStage<F>
where
    F: FnMut(&mut Batch<'_, T>) -> Result<(), StageError> + Send + 'static,
{
    fn on_batch(&mut self, batch: &mut Batch<'_, T>) -> Result<(), StageError> {
        (self.0)(batch)
    }
}
