//! Reads about accounts beyond their balance: configuration, and the system account's
//! balance per currency. Like balance reads, as of the snapshot index.

use super::Ledger;
use super::error::LedgerError;
use crate::transaction::{AccountConfig, AccountId, TxId};

/// An account's configuration and balance, both as of one point of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountInfo {
    pub account: AccountId,
    /// The rules in force: [`AccountConfig::default`] if it was never configured.
    pub config: AccountConfig,
    /// Whether a `ConfigureAccount` ever committed for it.
    pub configured: bool,
    /// Money moved since it was configured: its currency can no longer change.
    pub moved: bool,
    /// In minor units.
    pub balance: i64,
    /// Everything above includes exactly the transactions up to this id.
    pub last_snapshot_tx_id: TxId,
}

/// The system account's balance in one currency: minus everything deposited in it plus
/// everything withdrawn. An `i128`: the currencies' shares of the system account's `i64`
/// may each be larger than it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SystemBalance {
    pub currency: u32,
    pub balance: i128,
    pub last_snapshot_tx_id: TxId,
}

impl Ledger {
    /// `account`'s configuration and balance, as of the snapshot index (after the same
    /// short wait as [`get_balance`](Self::get_balance)).
    ///
    /// # Errors
    /// [`LedgerError::AccountOutOfRange`]; [`LedgerError::NotStarted`].
    pub fn get_account(&self, account: AccountId) -> Result<AccountInfo, LedgerError> {
        let engine = self.engine()?;
        engine.catch_up();
        let visible = engine.visible.read().unwrap_or_else(|e| e.into_inner());
        let state = &visible.state;
        let balance = state
            .balance(account)
            .ok_or(LedgerError::AccountOutOfRange {
                account,
                max_accounts: engine.max_accounts,
            })?;
        let stored = state.accounts().get(account);
        Ok(AccountInfo {
            account,
            config: stored.map(|s| s.config).unwrap_or_default(),
            configured: stored.is_some(),
            moved: stored.is_some_and(|s| s.moved),
            balance,
            last_snapshot_tx_id: state.last_tx_id(),
        })
    }

    /// The system account's balance in `currency`, as of the snapshot index.
    ///
    /// # Errors
    /// [`LedgerError::NotStarted`].
    pub fn get_system_balance(&self, currency: u32) -> Result<SystemBalance, LedgerError> {
        let engine = self.engine()?;
        engine.catch_up();
        let visible = engine.visible.read().unwrap_or_else(|e| e.into_inner());
        Ok(SystemBalance {
            currency,
            balance: visible.state.system_balance(currency),
            last_snapshot_tx_id: visible.state.last_tx_id(),
        })
    }
}
