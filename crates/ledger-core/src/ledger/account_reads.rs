//! Reads about accounts beyond their balance: configuration, holds, and the system
//! account's balance per currency. Like balance reads, as of the snapshot index.

use super::Ledger;
use super::error::LedgerError;
use crate::holds::{Hold, HoldId};
use crate::transaction::{AccountConfig, AccountId, TxId};

/// At most this many holds in one page of [`Ledger::get_open_holds`].
pub const HOLDS_PAGE_MAX: usize = 1000;

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
    /// Funds open holds reserve out of the account.
    pub held_outgoing: u64,
    /// Funds open holds reserve into the account (they count against its maximum).
    pub held_incoming: u64,
    /// Its balance plus every descendant's (its parent is `config.parent`): equal to the
    /// balance for an account without sub-accounts. An `i128`: a subtree's sum may leave
    /// the `i64` range.
    pub aggregate_balance: i128,
    /// How many direct sub-accounts it has.
    pub children: u32,
    /// Everything above includes exactly the transactions up to this id.
    pub last_snapshot_tx_id: TxId,
}

impl AccountInfo {
    /// The balance less what open holds reserve out of it.
    pub fn available(&self) -> i128 {
        self.balance as i128 - self.held_outgoing as i128
    }
}

/// One page of an account's open holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldsPage {
    /// By id, each with its hold.
    pub holds: Vec<(HoldId, Hold)>,
    /// The `after` of the next page; 0: this was the last.
    pub next_after: HoldId,
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
        let reserved = state.holds().reserved(account);
        Ok(AccountInfo {
            account,
            config: stored.map(|s| s.config).unwrap_or_default(),
            configured: stored.is_some(),
            moved: stored.is_some_and(|s| s.moved),
            balance,
            held_outgoing: reserved.outgoing,
            held_incoming: reserved.incoming,
            aggregate_balance: balance as i128 + state.accounts().descendants_balance(account),
            children: state.accounts().children(account),
            last_snapshot_tx_id: state.last_tx_id(),
        })
    }

    /// Hold `hold_id` (open or closed) and the id its state is as of; `None` if no
    /// transaction up to then opened a hold with this id.
    ///
    /// # Errors
    /// [`LedgerError::NotStarted`].
    pub fn get_hold(&self, hold_id: HoldId) -> Result<(Option<Hold>, TxId), LedgerError> {
        let engine = self.engine()?;
        engine.catch_up();
        let visible = engine.visible.read().unwrap_or_else(|e| e.into_inner());
        Ok((
            visible.state.holds().get(hold_id).copied(),
            visible.state.last_tx_id(),
        ))
    }

    /// `account`'s open holds (it pays or is paid by them), by id, after hold `after`
    /// (0: from the first), at most `limit` (capped at [`HOLDS_PAGE_MAX`]).
    ///
    /// # Errors
    /// [`LedgerError::AccountOutOfRange`]; [`LedgerError::NotStarted`].
    pub fn get_open_holds(
        &self,
        account: AccountId,
        after: HoldId,
        limit: usize,
    ) -> Result<HoldsPage, LedgerError> {
        let engine = self.engine()?;
        if account >= engine.max_accounts {
            return Err(LedgerError::AccountOutOfRange {
                account,
                max_accounts: engine.max_accounts,
            });
        }
        engine.catch_up();
        let visible = engine.visible.read().unwrap_or_else(|e| e.into_inner());
        let limit = limit.clamp(1, HOLDS_PAGE_MAX);
        let mut holds: Vec<(HoldId, Hold)> = visible
            .state
            .holds()
            .open_of(account, after, limit + 1)
            .map(|(id, h)| (id, *h))
            .collect();
        let next_after = if holds.len() > limit {
            holds.truncate(limit);
            holds.last().map_or(0, |&(id, _)| id)
        } else {
            0
        };
        Ok(HoldsPage {
            holds,
            next_after,
            last_snapshot_tx_id: visible.state.last_tx_id(),
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
