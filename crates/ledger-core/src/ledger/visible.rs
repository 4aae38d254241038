//! What balance and history reads see: the state as of the snapshot index.

use super::links::AccountLinks;
use crate::record::RecordRef;
use crate::transaction::{Entry, TxId};
use crate::transactor::{ReplayError, Transactor, check_links};

/// The readers' state, written by the snapshot stage a batch at a time under a write
/// lock and read under the read lock: every read is one consistent cut.
#[derive(Clone, Debug)]
pub(crate) struct Visible {
    /// Balances, dedup window, last id and time, as of `state.last_tx_id()`.
    pub state: Transactor,
    /// The last transaction of each account, as of the same id.
    pub links: AccountLinks,
}

impl Visible {
    /// Applies one committed (durable) transaction's result as the transactor stage
    /// produced it: re-applying it checks every balance the transactor claims.
    #[inline]
    pub fn apply(&mut self, tx_id: TxId, record: RecordRef<'_>) -> Result<(), ReplayError> {
        self.replay(tx_id, record)?;
        self.links.apply(tx_id, record.entries, record.effect_links);
        Ok(())
    }

    /// [`apply`](Self::apply) for a record read back from the WAL, which also checks the
    /// record's back-links against the chains, and that its effect links name the
    /// accounts its effects touched (a mismatch is damage, not a crash).
    #[inline]
    pub fn apply_stored(&mut self, tx_id: TxId, record: RecordRef<'_>) -> Result<(), ReplayError> {
        check_links(
            self.links.as_slice(),
            tx_id,
            record.entries,
            record.prev_tx_ids,
            record.effect_links,
        )?;
        self.replay(tx_id, record)?;
        self.state.check_effect_links(tx_id, record.effect_links)?;
        self.links.apply(tx_id, record.entries, record.effect_links);
        Ok(())
    }

    #[inline]
    fn replay(&mut self, tx_id: TxId, record: RecordRef<'_>) -> Result<(), ReplayError> {
        self.state.replay(
            tx_id,
            record.timestamp_ns,
            record.user_ref,
            record.outcome,
            record.entries,
            record.effects,
        )
    }

    /// A hint: `entries` will be applied soon.
    #[inline]
    pub fn prefetch(&self, entries: &[Entry]) {
        self.state.prefetch_entries(entries);
        self.links.prefetch(entries);
    }
}
