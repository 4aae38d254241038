//! Reversals find their original in the log when they are submitted: the state machine
//! keeps no past transaction's entries, so the ledger reads them (durable, never to
//! change) and hands them to the transactor with the operation. Whether the original
//! was already reversed is the transactor's to decide, in id order.

use super::Ledger;
use super::error::LedgerError;
use crate::transaction::{Operation, ReversalTarget, TxId, WaitLevel};

impl Ledger {
    /// Makes `operation` ready for the pipeline: a reversal gets its original's entries
    /// (whatever a caller put in its target is replaced); any other operation stays.
    #[inline]
    pub(super) fn resolve(&self, operation: &mut Operation) -> Result<(), LedgerError> {
        if let Operation::Reverse(reversal) = operation {
            reversal.target = self.reversal_target(reversal.tx_id)?;
        }
        Ok(())
    }

    /// What the log holds of transaction `tx_id`, once it is durable.
    fn reversal_target(&self, tx_id: TxId) -> Result<ReversalTarget, LedgerError> {
        match self.try_wait_for(tx_id, WaitLevel::Committed) {
            Ok(()) => {}
            Err(LedgerError::UnknownTransaction { .. }) => return Ok(ReversalTarget::NotFound),
            Err(e) => return Err(e),
        }
        match self.get_transaction(tx_id) {
            Ok(original) if original.outcome.is_committed() && !original.entries.is_empty() => {
                Ok(ReversalTarget::Entries(original.entries))
            }
            Ok(_) | Err(LedgerError::NotRetained { .. }) => Ok(ReversalTarget::NotReversible),
            Err(LedgerError::UnknownTransaction { .. }) => Ok(ReversalTarget::NotFound),
            Err(e) => Err(e),
        }
    }
}
