//! The outcomes of recent transactions, for waiters that want to know how theirs ended.
//!
//! A ring of cells indexed by transaction id, written by the transactor stage only and
//! read by any thread with a per-cell sequence check (no lock). A cell is overwritten
//! `capacity` transactions later; a reader that comes back after that is told so and reads
//! the outcome from the WAL instead.

use std::sync::atomic::Ordering;

// Loom's atomics under `--cfg loom`, for the model checks at the end of this file.
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, fence};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, fence};

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
        // The mask below is only a modulo for powers of two.
        assert!(capacity.is_power_of_two());
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
        // 0 marks a cell being rewritten: a transaction 0 would read as torn forever.
        assert_ne!(tx_id, 0, "transaction ids start at 1");
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
        // A cell never written holds tx 0 "committed": only real ids may be looked up.
        assert_ne!(tx_id, 0, "transaction ids start at 1");
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
        // The sequence check passed, so `code` is one `record` wrote from a `FailReason`:
        // one that does not decode is a bug, not an overwritten cell.
        let reason = u8::try_from(code)
            .ok()
            .and_then(|code| FailReason::from_code(code, original))
            .unwrap_or_else(|| panic!("outcome cell of tx {tx_id} holds fail code {code}"));
        Some(Outcome::Rejected(reason))
    }
}

#[cfg(all(test, not(loom)))]
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

/// Loom models of the seqlock: `RUSTFLAGS="--cfg loom" cargo test -p ledger-core --lib
/// outcomes::loom` (`scripts/loom.sh`). Loom runs every interleaving and lets
/// every load return any value the orderings allow.
#[cfg(all(test, loom))]
mod loom_models {
    use std::sync::Arc;

    use loom::sync::atomic::AtomicU64;
    use loom::thread;

    use super::*;

    fn duplicate_of(original_tx_id: TxId) -> Outcome {
        Outcome::Rejected(FailReason::Duplicate { original_tx_id })
    }

    /// A reader racing the writer's overwrite of a cell (one cell: tx 2 replaces tx 1)
    /// gets each transaction's own outcome or `None`, never a mix of two (tx 1's id with
    /// tx 2's code, a `Duplicate` with the wrong original).
    #[test]
    fn reads_racing_an_overwrite_are_never_torn() {
        loom::model(|| {
            let ring = Arc::new(OutcomeRing::new(1));
            let writer = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    ring.record(1, duplicate_of(7));
                    ring.record(2, Outcome::Committed);
                })
            };
            let first = ring.get(1);
            assert!(
                first.is_none() || first == Some(duplicate_of(7)),
                "{first:?}"
            );
            let second = ring.get(2);
            assert!(
                second.is_none() || second == Some(Outcome::Committed),
                "{second:?}"
            );
            writer.join().expect("writer");
            assert_eq!(ring.get(1), None, "overwritten");
            assert_eq!(ring.get(2), Some(Outcome::Committed));
        });
    }

    /// `Ledger::try_outcome`'s order: the transactor records, then releases its stage
    /// index; a reader that saw the index (`Acquire`) at or past the transaction finds its
    /// outcome (no overwrite here: two cells), never `None` nor a stale one.
    #[test]
    fn a_reader_past_the_stage_index_finds_the_outcome() {
        loom::model(|| {
            let ring = Arc::new(OutcomeRing::new(2));
            let index = Arc::new(AtomicU64::new(0));
            let writer = {
                let ring = Arc::clone(&ring);
                let index = Arc::clone(&index);
                thread::spawn(move || {
                    for (tx_id, outcome) in [(1, duplicate_of(7)), (2, Outcome::Committed)] {
                        ring.record(tx_id, outcome);
                        index.store(tx_id, Ordering::Release);
                    }
                })
            };
            let seen = index.load(Ordering::Acquire);
            if seen >= 1 {
                assert_eq!(ring.get(1), Some(duplicate_of(7)));
            }
            if seen >= 2 {
                assert_eq!(ring.get(2), Some(Outcome::Committed));
            }
            writer.join().expect("writer");
        });
    }
}
