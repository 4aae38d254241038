//! Reads about transactions: where a transaction is in the pipeline and what it did.

use super::error::LedgerError;
use super::{Engine, Ledger};
use crate::transaction::{FailReason, Outcome, TxId};

/// How far a transaction has come (`GetTransactionStatus` in the server's API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// Issued (its id was handed out) but not executed yet.
    Pending,
    /// Executed and committed in memory; not yet durable.
    Computed,
    /// Durable in the WAL; not yet visible to balance reads.
    Committed,
    /// Durable and visible to balance reads.
    OnSnapshot,
    /// Executed and rejected (see `fail_reason`): it changed nothing. Reported as soon as
    /// the outcome is known; wait for [`WaitLevel::Committed`](crate::transaction::WaitLevel)
    /// to know the rejection itself is on disk.
    Error,
}

/// A transaction's status, and why it was rejected when it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransactionStatusInfo {
    pub status: TransactionStatus,
    /// `Some` exactly when `status` is [`TransactionStatus::Error`].
    pub fail_reason: Option<FailReason>,
}

impl Ledger {
    /// Where transaction `tx_id` is: pending, computed, committed, visible, or rejected.
    ///
    /// # Errors
    /// [`LedgerError::UnknownTransaction`] for an id never issued (0, or beyond the last
    /// id handed out); [`LedgerError::NotStarted`]; a WAL read error for a rejection too
    /// old to be in memory.
    pub fn get_transaction_status(
        &self,
        tx_id: TxId,
    ) -> Result<TransactionStatusInfo, LedgerError> {
        let engine = self.engine()?;
        status(self, engine, tx_id)
    }

    /// [`get_transaction_status`](Self::get_transaction_status) for many ids, in order;
    /// fails as a whole on the first id that is an error.
    pub fn get_transaction_statuses(
        &self,
        tx_ids: &[TxId],
    ) -> Result<Vec<TransactionStatusInfo>, LedgerError> {
        let engine = self.engine()?;
        tx_ids.iter().map(|&id| status(self, engine, id)).collect()
    }
}

fn status(
    ledger: &Ledger,
    engine: &Engine,
    tx_id: TxId,
) -> Result<TransactionStatusInfo, LedgerError> {
    let claimed = engine.progress.claimed();
    if tx_id == 0 || tx_id > claimed {
        return Err(LedgerError::UnknownTransaction {
            tx_id,
            last_issued: claimed,
        });
    }
    let index = engine.index();
    if tx_id > index.computed {
        return Ok(TransactionStatusInfo {
            status: TransactionStatus::Pending,
            fail_reason: None,
        });
    }
    if let Outcome::Rejected(reason) = ledger.try_outcome(tx_id)? {
        return Ok(TransactionStatusInfo {
            status: TransactionStatus::Error,
            fail_reason: Some(reason),
        });
    }
    let status = if tx_id <= index.snapshot {
        TransactionStatus::OnSnapshot
    } else if tx_id <= index.committed {
        TransactionStatus::Committed
    } else {
        TransactionStatus::Computed
    };
    Ok(TransactionStatusInfo {
        status,
        fail_reason: None,
    })
}
