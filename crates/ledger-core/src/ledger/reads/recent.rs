//! The most recent durable frames, kept in memory for reads: a ring of slots the WAL
//! stage fills after each `fdatasync` and readers search without a lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

use super::frame::IndexedFrame;
use crate::transaction::TxId;

/// A frame and its number in the order frames were published.
#[derive(Debug)]
pub(crate) struct Numbered {
    pub number: u64,
    pub frame: IndexedFrame,
}

/// Shared between the WAL stage (the only writer) and any number of readers.
#[derive(Debug)]
pub(crate) struct RecentFrames {
    /// Frame `n` lives in `slots[n % slots.len()]` while `oldest <= n < published`.
    slots: Box<[ArcSwapOption<Numbered>]>,
    published: AtomicU64,
    oldest: AtomicU64,
    /// What the live frames hold (written by the writer, read for metrics).
    bytes: AtomicU64,
}

impl RecentFrames {
    pub fn new(slots: usize) -> Arc<RecentFrames> {
        Arc::new(RecentFrames {
            slots: (0..slots.max(1)).map(|_| ArcSwapOption::empty()).collect(),
            published: AtomicU64::new(0),
            oldest: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    fn slot(&self, number: u64) -> &ArcSwapOption<Numbered> {
        let len = self.slots.len() as u64;
        let i = usize::try_from(number % len).unwrap_or(0);
        // `i < len`: the index is in range.
        &self.slots[i]
    }

    /// Bytes the live frames hold, ring included.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed) as usize
            + self.slots.len() * size_of::<ArcSwapOption<Numbered>>()
    }

    /// The frame holding `tx_id`, if it is still in memory. A frame evicted while the
    /// search runs is a miss (the caller reads the disk), never a wrong frame.
    pub fn find(&self, tx_id: TxId) -> Option<Arc<Numbered>> {
        let mut lo = self.oldest.load(Ordering::Acquire);
        let mut hi = self.published.load(Ordering::Acquire);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let guard = self.slot(mid).load();
            let numbered = guard.as_ref().filter(|n| n.number == mid)?;
            let frame = &numbered.frame;
            if tx_id < frame.first_seq {
                hi = mid;
            } else if frame.contains(tx_id) {
                return Some(Arc::clone(numbered));
            } else {
                lo = mid + 1;
            }
        }
        None
    }
}

/// The WAL stage's handle: publishes frames and evicts the oldest beyond the budget.
#[derive(Debug)]
pub(crate) struct RecentWriter {
    shared: Arc<RecentFrames>,
    /// Bytes of each live frame, oldest first.
    sizes: VecDeque<usize>,
    bytes: usize,
    budget_bytes: usize,
}

impl RecentWriter {
    pub fn new(shared: Arc<RecentFrames>, budget_bytes: usize) -> RecentWriter {
        RecentWriter {
            shared,
            sizes: VecDeque::new(),
            bytes: 0,
            budget_bytes,
        }
    }

    /// Whether frames are kept at all (a zero budget keeps none).
    pub fn enabled(&self) -> bool {
        self.budget_bytes > 0
    }

    /// Publishes a durable frame, first evicting what it would push over the budget or
    /// out of the ring.
    pub fn publish(&mut self, frame: IndexedFrame) {
        let bytes = frame.bytes();
        let shared = &self.shared;
        let capacity = shared.slots.len();
        while !self.sizes.is_empty()
            && (self.bytes + bytes > self.budget_bytes || self.sizes.len() >= capacity)
        {
            let oldest = shared.oldest.load(Ordering::Relaxed);
            // Readers that already hold the evicted frame keep it alive until they drop it.
            shared.oldest.store(oldest + 1, Ordering::Release);
            shared.slot(oldest).store(None);
            self.bytes -= self.sizes.pop_front().unwrap_or(0);
        }
        if bytes > self.budget_bytes {
            shared.bytes.store(self.bytes as u64, Ordering::Relaxed);
            return;
        }
        let number = shared.published.load(Ordering::Relaxed);
        shared
            .slot(number)
            .store(Some(Arc::new(Numbered { number, frame })));
        shared.published.store(number + 1, Ordering::Release);
        self.sizes.push_back(bytes);
        self.bytes += bytes;
        shared.bytes.store(self.bytes as u64, Ordering::Relaxed);
    }
}
