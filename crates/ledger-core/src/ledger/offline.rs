//! The engine's replay for offline tools (`ledger-cli replay`): the state recovery
//! rebuilds, with every check recovery makes, applied one stored record at a time to a
//! balance table that grows as the log names higher accounts (the engine's
//! `max_accounts` is not in the log).

use super::links::AccountLinks;
use super::saved::LoadedSnapshot;
use super::visible::Visible;
use crate::record::RecordRef;
use crate::transaction::{Entry, TxId};
use crate::transactor::{ConfigError, ReplayError, RestoreError, Transactor, TransactorConfig};

/// A ledger's full state (balances, chain heads, configured accounts, holds, reversals,
/// the dedup window) rebuilt from stored records.
#[derive(Debug)]
pub struct ReplayState {
    visible: Visible,
}

impl ReplayState {
    /// An empty ledger. `config.max_accounts` is only the table's first size: see
    /// [`grow`](Self::grow). The dedup window and the closed holds' retention must be the
    /// ones the log was written with for the state to equal the engine's.
    pub fn new(config: TransactorConfig) -> Result<ReplayState, ConfigError> {
        let max_accounts = usize::try_from(config.max_accounts).unwrap_or(usize::MAX);
        Ok(ReplayState {
            visible: Visible {
                state: Transactor::new(config)?,
                links: AccountLinks::new(max_accounts),
            },
        })
    }

    /// The state `snapshot` holds, checked as recovery checks it; the table is at least
    /// as long as the snapshot's.
    pub fn from_snapshot(
        snapshot: &LoadedSnapshot,
        mut config: TransactorConfig,
    ) -> Result<ReplayState, RestoreError> {
        config.max_accounts = config.max_accounts.max(snapshot.balances().len() as u64);
        let max_accounts = usize::try_from(config.max_accounts).unwrap_or(usize::MAX);
        let latest = snapshot.latest().iter().map(|l| l.to_native());
        Ok(ReplayState {
            visible: Visible {
                state: snapshot.restore(config)?,
                links: AccountLinks::restore(max_accounts, latest),
            },
        })
    }

    /// Accounts `0..accounts()` have room in the table.
    pub fn accounts(&self) -> u64 {
        self.visible.state.balances().len() as u64
    }

    /// Makes room for accounts `0..max_accounts` (zero balances, no history).
    pub fn grow(&mut self, max_accounts: u64) -> Result<(), ConfigError> {
        self.visible.state.grow_accounts(max_accounts)?;
        let len = usize::try_from(max_accounts).expect("the transactor's table has this length");
        let bytes = max_accounts.saturating_mul(size_of::<TxId>() as u64);
        (self.visible.links.grow(len)).map_err(|_| ConfigError::OutOfMemory { bytes })
    }

    /// Applies stored transaction `tx_id` as recovery does: its back-links must name each
    /// account's previous transaction, its balances-after must follow, its effects must
    /// be possible. After an error the state is unspecified.
    #[inline]
    pub fn apply(&mut self, tx_id: TxId, record: RecordRef<'_>) -> Result<(), ReplayError> {
        self.visible.apply_stored(tx_id, record)
    }

    /// A hint: `entries` will be applied soon.
    #[inline]
    pub fn prefetch(&self, entries: &[Entry]) {
        self.visible.prefetch(entries);
    }

    /// Balances, configured accounts, holds, reversals, the dedup window.
    pub fn transactor(&self) -> &Transactor {
        &self.visible.state
    }

    /// Each account's last transaction (0: none).
    pub fn latest(&self) -> &[TxId] {
        self.visible.links.as_slice()
    }
}
