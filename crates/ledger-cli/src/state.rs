//! The state replay rebuilds: the engine's own (`ledger_core::ledger::ReplayState`:
//! balances, chain heads, configured accounts, holds, reversals, the dedup window), on a
//! table that grows as the log names higher accounts (the engine's `max_accounts` is not
//! in the log), up to `--max-accounts`.

use ledger_core::ledger::{LoadedSnapshot, ReplayState};
use ledger_core::record::RecordRef;
use ledger_core::transaction::{Effect, TxId};
use ledger_core::transactor::{ReplayError, TransactorConfig};

/// The table's size before the log names any account.
const FIRST_ACCOUNTS: u64 = 1024;

/// Why a record could not be applied.
#[derive(Debug)]
pub enum ApplyError {
    /// The record disagrees with the state (the engine's own replay check).
    Mismatch(ReplayError),
    /// An account id at or above `--max-accounts`.
    TooManyAccounts { tx_id: TxId, account_id: u64 },
    /// The table could not grow to `accounts` (no memory for it).
    Grow { accounts: u64, reason: String },
}

#[derive(Debug)]
pub struct State {
    replay: ReplayState,
    limit: u64,
}

impl State {
    /// An empty ledger that may grow to `limit` accounts; `config` carries the windows
    /// (dedup, closed holds) the log was written with.
    pub fn new(config: TransactorConfig, limit: u64) -> Result<State, String> {
        let replay = ReplayState::new(first_size(config, limit)).map_err(|e| e.to_string())?;
        Ok(State { replay, limit })
    }

    /// The state `snapshot` holds (checked as the engine's recovery checks it).
    pub fn from_snapshot(
        snapshot: &LoadedSnapshot,
        config: TransactorConfig,
        limit: u64,
    ) -> Result<State, String> {
        let replay = ReplayState::from_snapshot(snapshot, first_size(config, limit))
            .map_err(|e| e.to_string())?;
        let limit = limit.max(replay.accounts());
        Ok(State { replay, limit })
    }

    pub fn replay(&self) -> &ReplayState {
        &self.replay
    }

    /// The balance of `account` (0 for one never touched).
    pub fn balance(&self, account: u64) -> i64 {
        self.replay.transactor().balance(account).unwrap_or(0)
    }

    /// Applies one stored transaction with the checks of the engine's recovery
    /// (`ledger_core::ledger::ReplayState::apply`): every back-link must name the
    /// account's previous transaction, every balance-after must equal the balance before
    /// plus the entry (exact, no wrapping), the entries must net to zero, and the effects
    /// must be possible (a post of an open hold, a parent that makes no cycle...).
    #[inline]
    pub fn apply(&mut self, tx_id: TxId, record: RecordRef<'_>) -> Result<(), ApplyError> {
        let needed = highest_account(&record);
        if needed >= self.replay.accounts() {
            self.grow(tx_id, needed)?;
        }
        self.replay
            .apply(tx_id, record)
            .map_err(ApplyError::Mismatch)
    }

    /// A hint that `entries` will be applied soon: start loading their balances and
    /// chain heads.
    #[inline]
    pub fn prefetch(&self, entries: &[ledger_core::transaction::Entry]) {
        self.replay.prefetch(entries);
    }

    #[cold]
    fn grow(&mut self, tx_id: TxId, account_id: u64) -> Result<(), ApplyError> {
        let too_many = ApplyError::TooManyAccounts { tx_id, account_id };
        let needed = account_id
            .checked_add(1)
            .filter(|&n| n <= self.limit)
            .ok_or(too_many)?;
        // Doubling keeps growth amortised; the limit caps what a bad id can allocate.
        let len = needed
            .max(self.replay.accounts().saturating_mul(2))
            .min(self.limit);
        self.replay.grow(len).map_err(|e| ApplyError::Grow {
            accounts: len,
            reason: e.to_string(),
        })
    }
}

/// `config` with the table's size before the log names any account.
fn first_size(config: TransactorConfig, limit: u64) -> TransactorConfig {
    TransactorConfig {
        max_accounts: FIRST_ACCOUNTS.min(limit).max(1),
        ..config
    }
}

/// The highest account `record` names: its entries', its effect links', and its effects'
/// (a record written before effect links names a configured account or a hold's
/// accounts only there).
#[inline]
fn highest_account(record: &RecordRef<'_>) -> u64 {
    // Plain loops: a chained iterator cost replay several percent.
    let mut highest = 0;
    for entry in record.entries {
        highest = highest.max(entry.account_id);
    }
    for link in record.effect_links {
        highest = highest.max(link.account_id);
    }
    for effect in record.effects {
        match *effect {
            Effect::Configured { account, config } => {
                highest = highest.max(account).max(config.parent);
            }
            Effect::HoldOpened { from, to, .. } => highest = highest.max(from).max(to),
            _ => {}
        }
    }
    highest
}
