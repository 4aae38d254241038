//! The outcomes of recent transactions, for waiters that want to know how theirs ended.
//!
//! A ring of cells indexed by transaction id, written by the transactor stage only and
//! read by any thread with a per-cell sequence check (no lock). A cell is overwritten
//! `capacity` transactions later; a reader that comes back after that is told so and reads
//! the outcome from the WAL instead.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::transaction::{FailReason, Outcome, TxId};

/// Outcome code of a committed transaction in a cell.
const COMMITTED: u64 = 0;

#[derive(Debug, Default)]
struct Cell {
    /// The transaction the cell holds, 0 while it is being rewritten.
    tx_id: AtomicU64,
    /// 0 committed, else the fail code.
    code: AtomicU64,
    /// The original transaction of a `Duplicate`.
    original: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct OutcomeRing {
    cells: Box<[Cell]>,
    mask: u64,
}

impl OutcomeRing {
    /// A ring of `capacity` cells (a power of two).
    pub fn new(capacity: usize) -> OutcomeRing {
        debug_assert!(capacity.is_power_of_two());
        OutcomeRing {
            cells: (0..capacity).map(|_| Cell::default()).collect(),
            mask: capacity as u64 - 1,
        }
    }

    fn cell(&self, tx_id: TxId) -> &Cell {
        // The mask keeps the index below `cells.len()`.
        &self.cells[(tx_id & self.mask) as usize]
    }

    /// Records `tx_id`'s outcome. Single writer: the transactor stage.
    #[inline]
    pub fn record(&self, tx_id: TxId, outcome: Outcome) {
        let cell = self.cell(tx_id);
        let (code, original) = match outcome {
            Outcome::Committed => (COMMITTED, 0),
            Outcome::Rejected(reason) => (
                u64::from(reason.code()),
                match reason {
                    FailReason::Duplicate { original_tx_id } => original_tx_id,
                    _ => 0,
                },
            ),
        };
        cell.tx_id.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        cell.code.store(code, Ordering::Relaxed);
        cell.original.store(original, Ordering::Relaxed);
        cell.tx_id.store(tx_id, Ordering::Release);
    }

    /// `tx_id`'s outcome if its cell still holds it (`None`: overwritten, or not yet
    /// executed).
    pub fn get(&self, tx_id: TxId) -> Option<Outcome> {
        let cell = self.cell(tx_id);
        if cell.tx_id.load(Ordering::Acquire) != tx_id {
            return None;
        }
        let code = cell.code.load(Ordering::Relaxed);
        let original = cell.original.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if cell.tx_id.load(Ordering::Relaxed) != tx_id {
            return None;
        }
        if code == COMMITTED {
            return Some(Outcome::Committed);
        }
        let reason = FailReason::from_code(u8::try_from(code).ok()?, original)?;
        Some(Outcome::Rejected(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_capacity_outcomes() {
        let ring = OutcomeRing::new(4);
        ring.record(1, Outcome::Committed);
        ring.record(
            2,
            Outcome::Rejected(FailReason::Duplicate { original_tx_id: 1 }),
        );
        assert_eq!(ring.get(1), Some(Outcome::Committed));
        assert_eq!(
            ring.get(2),
            Some(Outcome::Rejected(FailReason::Duplicate {
                original_tx_id: 1
            }))
        );
        assert_eq!(ring.get(3), None);
        ring.record(5, Outcome::Rejected(FailReason::InsufficientFunds));
        assert_eq!(ring.get(1), None, "overwritten by 5");
        assert_eq!(
            ring.get(5),
            Some(Outcome::Rejected(FailReason::InsufficientFunds))
        );
    }
}
