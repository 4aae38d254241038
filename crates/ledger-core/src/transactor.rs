//! The deterministic state machine: executes one operation at a time against the live
//! balances. Pure: no I/O, no threads, no clock. The same inputs (transaction ids,
//! timestamps, operations) always give the same outcomes, entries and balances.

use std::alloc::{self, Layout};
use std::collections::HashMap;

use foldhash::fast::RandomState;

use thiserror::Error;

use crate::accounts::{AccountState, Accounts, HierarchyFault};
use crate::dedup::DedupWindow;
use crate::holds::{Hold, HoldFault, HoldId, HoldState, Holds};
use crate::record::AccountLink;
use crate::transaction::{
    AMOUNT_MAX, AccountConfig, AccountId, COMPOSITE_STEPS_MAX, CompositeOperation,
    EXPIRIES_PER_TRANSACTION, Effect, Entry, EntryKind, FailReason, Operation, Outcome, Reversal,
    ReversalTarget, SYSTEM_ACCOUNT, Step, TxId,
};

/// The largest `max_accounts` accepted: 2^32 accounts, a 32 GiB balance table.
pub const ACCOUNTS_MAX_LIMIT: u64 = 1 << 32;

/// How the state machine is sized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactorConfig {
    /// Account ids `0..max_accounts` are valid; the balance table holds this many `i64`s.
    pub max_accounts: u64,
    /// A non-zero `user_ref` committed within this much sequencer time is a duplicate.
    pub dedup_window_ns: u64,
    /// A hold posted, voided or expired is remembered this much sequencer time (a second
    /// post is `HoldClosed`, a read finds it), then forgotten (`HoldNotFound`). Like the
    /// dedup window, every replica and every replay of one log must use the same value.
    pub closed_hold_retention_ns: u64,
    /// At most this many closed holds are remembered: past it, the one that closed first
    /// is forgotten early. What keeps memory and snapshots bounded whatever the rate of
    /// holds (a minute of a million holds a second is 60 million). The same on every
    /// replica and replay, like the retention.
    pub closed_holds_max: usize,
}

/// [`TransactorConfig::closed_hold_retention_ns`] by default: one minute.
pub const CLOSED_HOLD_RETENTION_NS: u64 = 60_000_000_000;

/// [`TransactorConfig::closed_holds_max`] by default: about 64 MiB of hold table in
/// each of the state machine's copies, and 50 MiB in a snapshot.
pub const CLOSED_HOLDS_MAX: usize = 1 << 20;

impl Default for TransactorConfig {
    fn default() -> Self {
        TransactorConfig {
            max_accounts: 1_000_000,
            dedup_window_ns: 10_000_000_000,
            closed_hold_retention_ns: CLOSED_HOLD_RETENTION_NS,
            closed_holds_max: CLOSED_HOLDS_MAX,
        }
    }
}

/// The configuration cannot be used.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("max_accounts must be at least 1 (the system account)")]
    NoAccounts,
    #[error("max_accounts {requested} is above the limit of {limit}")]
    TooManyAccounts { requested: u64, limit: u64 },
    #[error("cannot allocate the balance table of {bytes} bytes")]
    OutOfMemory { bytes: u64 },
}

/// Stored entries do not reproduce the balances they claim: the log or the code is wrong.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("transaction {tx_id}: account {account_id} is outside the balance table")]
    AccountOutOfRange { tx_id: TxId, account_id: AccountId },
    #[error(
        "transaction {tx_id}: account {account_id} would be {computed}, the entry says {recorded}"
    )]
    BalanceMismatch {
        tx_id: TxId,
        account_id: AccountId,
        computed: i128,
        recorded: i64,
    },
    #[error("transaction {tx_id}: entries do not sum to zero")]
    NotZeroSum { tx_id: TxId },
    #[error("transaction {tx_id}: a rejected transaction has entries or effects")]
    RejectedWithEntries { tx_id: TxId },
    #[error("transaction {tx_id}: the system account's balance in currency {currency} overflows")]
    SystemOverflow { tx_id: TxId, currency: u32 },
    #[error("transaction {tx_id}: hold {hold_id} {reason}")]
    BadHold {
        tx_id: TxId,
        hold_id: TxId,
        reason: &'static str,
    },
    #[error("transaction {tx_id} does not follow {last_tx_id}")]
    NotIncreasing { tx_id: TxId, last_tx_id: TxId },
    #[error("transaction {tx_id}: account {account_id}'s parent {reason}")]
    BadParent {
        tx_id: TxId,
        account_id: AccountId,
        reason: &'static str,
    },
    #[error("transaction {tx_id}: the reversal of {original} {reason}")]
    BadReversal {
        tx_id: TxId,
        original: TxId,
        reason: &'static str,
    },
    #[error(
        "transaction {tx_id}: account {account_id}'s back-link says {recorded}, \
         but its previous transaction is {expected}"
    )]
    BrokenLink {
        tx_id: TxId,
        account_id: AccountId,
        recorded: TxId,
        expected: TxId,
    },
    #[error("transaction {tx_id}: its effect links name other accounts than its effects")]
    BadEffectLinks { tx_id: TxId },
}

/// A saved state cannot be restored into a transactor of this configuration.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "account {account_id} holds {balance} but max_accounts is {max_accounts}: \
         raise max_accounts to at least {}", account_id + 1
    )]
    AccountBeyondLimit {
        account_id: AccountId,
        balance: i64,
        max_accounts: u64,
    },
    #[error("the saved balances sum to {sum}, not zero")]
    NotZeroSum { sum: i128 },
    #[error("the saved balances of currency {currency} sum to {sum}, not zero")]
    CurrencyNotZeroSum { currency: u32, sum: i128 },
    #[error("the saved configuration of account {account_id} is not valid here: {reason}")]
    BadAccount {
        account_id: AccountId,
        reason: &'static str,
    },
    #[error("saved hold {hold_id} is not valid here: {reason}")]
    BadHold { hold_id: TxId, reason: &'static str },
    #[error("the saved reversal of transaction {original} by {reversal} is not valid here")]
    BadReversal { original: TxId, reversal: TxId },
    #[error("the saved dedup window is not in commit order at transaction {tx_id}")]
    DedupOutOfOrder { tx_id: TxId },
    #[error("the saved state has format {format}, which this version does not read")]
    UnknownFormat { format: u32 },
    #[error("the saved state is at transaction {state_tx_id}, its file says {file_tx_id}")]
    SequenceMismatch { file_tx_id: TxId, state_tx_id: TxId },
}

/// The state a snapshot saves: everything [`Transactor::restore`] needs to continue
/// exactly where the saved transactor stood.
#[derive(Debug, Clone, Copy)]
pub struct SavedState<'a, D> {
    /// Balances by account id; may be shorter or longer than `max_accounts` (beyond it
    /// every balance must be zero).
    pub balances: &'a [i64],
    /// The last transaction applied.
    pub last_tx_id: TxId,
    /// The latest sequencer time seen.
    pub now_ns: u64,
    /// The live dedup entries `(user_ref, tx_id, timestamp_ns)` in commit order.
    pub dedup: D,
    /// The configured accounts.
    pub accounts: &'a [(AccountId, AccountState)],
    /// The system account's balance per currency, currencies other than 0.
    pub system_balances: &'a [(u32, i64)],
    /// Every hold, open or closed within the retention, by id.
    pub holds: &'a [(TxId, Hold)],
    /// Every reversal: `(original, reversal)`, by original.
    pub reversals: &'a [(TxId, TxId)],
}

/// The executor: sole owner and writer of the live balances.
#[derive(Debug, Clone)]
pub struct Transactor {
    balances: Vec<i64>,
    dedup: DedupWindow,
    /// The latest timestamp seen: time never runs backwards inside the state machine.
    now_ns: u64,
    last_tx_id: TxId,
    /// Balances before each applied composite step, to roll a rejected composite back.
    undo: Vec<(usize, i64)>,
    /// Accounts with a currency or rules of their own.
    accounts: Accounts,
    /// Two-phase transfers.
    holds: Holds,
    /// Reversed transactions: original id to the reversal's.
    reversals: HashMap<TxId, TxId, RandomState>,
    /// The accounts the last executed or replayed transaction's effects touched without
    /// an entry (`record::effect_accounts`), in effect order: the history chains pass
    /// through them too.
    effect_accounts: Vec<AccountId>,
}

impl Transactor {
    /// An empty ledger: every balance zero.
    pub fn new(config: TransactorConfig) -> Result<Transactor, ConfigError> {
        Ok(Transactor {
            balances: zeroed_balances(config.max_accounts)?,
            dedup: DedupWindow::new(config.dedup_window_ns),
            now_ns: 0,
            last_tx_id: 0,
            undo: Vec::with_capacity(COMPOSITE_STEPS_MAX),
            accounts: Accounts::default(),
            holds: Holds::new(config.closed_hold_retention_ns, config.closed_holds_max),
            reversals: HashMap::default(),
            effect_accounts: Vec::new(),
        })
    }

    /// Makes room for accounts `0..max_accounts` (new ones with zero balances); a smaller
    /// `max_accounts` changes nothing. For offline replay, which learns the table's size
    /// from the log: the engine's own table never grows.
    pub(crate) fn grow_accounts(&mut self, max_accounts: u64) -> Result<(), ConfigError> {
        if max_accounts <= self.balances.len() as u64 {
            return Ok(());
        }
        let mut balances = zeroed_balances(max_accounts)?;
        // Before the copy touches any page. Offline replay reads the table at random
        // (the engine's own, sized once, is left as it always was).
        ledger_storage::advise_huge_pages(&balances);
        balances[..self.balances.len()].copy_from_slice(&self.balances);
        self.balances = balances;
        Ok(())
    }

    /// A transactor continuing from a saved state (a snapshot): balances, last id and time,
    /// and the dedup window, checked (zero sum, accounts within `max_accounts`, window in
    /// commit order) before anything is used.
    pub fn restore<D>(
        config: TransactorConfig,
        saved: SavedState<'_, D>,
    ) -> Result<Transactor, RestoreError>
    where
        D: IntoIterator<Item = (u64, TxId, u64)>,
    {
        let mut transactor = Transactor::new(config)?;
        let kept = saved.balances.len().min(transactor.balances.len());
        let (inside, beyond) = saved.balances.split_at(kept);
        if let Some((offset, &balance)) = beyond.iter().enumerate().find(|(_, b)| **b != 0) {
            return Err(RestoreError::AccountBeyondLimit {
                account_id: (kept + offset) as u64,
                balance,
                max_accounts: transactor.balances.len() as u64,
            });
        }
        transactor.balances[..kept].copy_from_slice(inside);
        let sum = transactor.balance_sum();
        if sum != 0 {
            return Err(RestoreError::NotZeroSum { sum });
        }
        transactor.last_tx_id = saved.last_tx_id;
        transactor.now_ns = saved.now_ns;
        let mut previous: Option<(TxId, u64)> = None;
        for (user_ref, tx_id, timestamp_ns) in saved.dedup {
            let ordered = previous.is_none_or(|(t, ts)| t < tx_id && ts <= timestamp_ns);
            if user_ref == 0
                || !ordered
                || tx_id > saved.last_tx_id
                || timestamp_ns > saved.now_ns
                || transactor.dedup.find(user_ref).is_some()
            {
                return Err(RestoreError::DedupOutOfOrder { tx_id });
            }
            previous = Some((tx_id, timestamp_ns));
            transactor.dedup.insert(user_ref, tx_id, timestamp_ns);
        }
        transactor.dedup.expire(transactor.now_ns);
        transactor.restore_accounts(saved.accounts, saved.system_balances)?;
        transactor.restore_holds(saved.holds)?;
        transactor.restore_reversals(saved.reversals)?;
        Ok(transactor)
    }

    fn restore_reversals(&mut self, reversals: &[(TxId, TxId)]) -> Result<(), RestoreError> {
        for &(original, reversal) in reversals {
            let valid = original != 0 && original < reversal && reversal <= self.last_tx_id;
            if !valid || self.reversals.insert(original, reversal).is_some() {
                return Err(RestoreError::BadReversal { original, reversal });
            }
        }
        Ok(())
    }

    fn restore_holds(&mut self, holds: &[(TxId, Hold)]) -> Result<(), RestoreError> {
        for &(hold_id, hold) in holds {
            let bad = |reason| RestoreError::BadHold { hold_id, reason };
            if hold_id == 0 || hold_id > self.last_tx_id {
                return Err(bad("its id is not a transaction of this state"));
            }
            if self.account_index(hold.from).is_err() || self.account_index(hold.to).is_err() {
                return Err(bad("an account is at or above max_accounts"));
            }
            if hold.from == hold.to
                || check_amount(hold.amount).is_err()
                || hold.posted > hold.amount
            {
                return Err(bad("it is malformed"));
            }
            let open = hold.state == HoldState::Open;
            if (open && hold.closed_at_ns != 0) || (!open && hold.closed_at_ns > self.now_ns) {
                return Err(bad("its closing time is not of this state"));
            }
            self.holds.insert(hold_id, hold).map_err(|f| match f {
                HoldFault::Overflow => bad("the reserved sums overflow"),
                _ => bad("it is saved twice or out of id order"),
            })?;
        }
        self.holds.order_closed();
        Ok(())
    }

    fn restore_accounts(
        &mut self,
        accounts: &[(AccountId, AccountState)],
        system: &[(u32, i64)],
    ) -> Result<(), RestoreError> {
        for &(account_id, state) in accounts {
            let bad = |reason| RestoreError::BadAccount { account_id, reason };
            if account_id == SYSTEM_ACCOUNT {
                return Err(bad("the system account cannot be configured"));
            }
            if self.account_index(account_id).is_err() {
                return Err(bad("the id is at or above max_accounts"));
            }
            check_config(&state.config).map_err(|_| bad("its rules are malformed"))?;
            if state.config.parent != 0 && self.account_index(state.config.parent).is_err() {
                return Err(bad("its parent is at or above max_accounts"));
            }
            if self.accounts.get(account_id).is_some() {
                return Err(bad("it is saved twice"));
            }
            self.accounts.restore(account_id, state);
        }
        for &(currency, balance) in system {
            if currency == 0 {
                return Err(RestoreError::BadAccount {
                    account_id: SYSTEM_ACCOUNT,
                    reason: "a separate balance in currency 0",
                });
            }
            self.accounts.restore_system(currency, balance);
        }
        if let Err((account_id, fault)) = self.accounts.rebuild_subtrees(&self.balances) {
            return Err(RestoreError::BadAccount {
                account_id,
                reason: hierarchy_fault(fault),
            });
        }
        match self.accounts.unbalanced_currency(&self.balances) {
            Some((currency, sum)) => Err(RestoreError::CurrencyNotZeroSum { currency, sum }),
            None => Ok(()),
        }
    }

    /// Executes `operation` as transaction `tx_id`, stamped `timestamp_ns` by the sequencer.
    ///
    /// On commit, its entries are appended to `entries` and what else it changed (an
    /// account's configuration) to `effects`; on rejection nothing changes and nothing is
    /// appended. Transaction ids must strictly increase (they come from the sequencer,
    /// never from a user).
    pub fn execute(
        &mut self,
        tx_id: TxId,
        timestamp_ns: u64,
        operation: &Operation,
        entries: &mut Vec<Entry>,
        effects: &mut Vec<Effect>,
    ) -> Outcome {
        self.advance(tx_id, timestamp_ns);
        let user_ref = operation.user_ref();
        let result = match operation {
            Operation::Deposit {
                account, amount, ..
            } => self
                .check_single(*account, *amount, user_ref)
                .and_then(|()| match self.no_rules() {
                    true => self.deposit(*account, *amount, entries),
                    false => self.movement(SYSTEM_ACCOUNT, *account, *amount, entries),
                }),
            Operation::Withdrawal {
                account, amount, ..
            } => self
                .check_single(*account, *amount, user_ref)
                .and_then(|()| match self.no_rules() {
                    true => self.withdraw(*account, *amount, entries),
                    false => self.movement(*account, SYSTEM_ACCOUNT, *amount, entries),
                }),
            Operation::Transfer {
                from, to, amount, ..
            } => self
                .check_transfer(*from, *to, *amount, user_ref)
                .and_then(|()| match self.no_rules() {
                    true => self.transfer(*from, *to, *amount, entries),
                    false => self.movement(*from, *to, *amount, entries),
                }),
            Operation::Composite(composite) => self
                .check_composite(composite)
                .and_then(|()| self.composite(composite, entries)),
            // The money model's operations, out of line: the hot loop stays the size
            // it was for the four above.
            other => self.execute_other(tx_id, other, user_ref, entries, effects),
        };
        match result {
            Ok(()) => {
                if user_ref != 0 {
                    self.dedup.insert(user_ref, tx_id, self.now_ns);
                }
                Outcome::Committed
            }
            Err(reason) => Outcome::Rejected(reason),
        }
    }

    /// [`execute`](Self::execute) for configurations and holds.
    #[inline(never)]
    fn execute_other(
        &mut self,
        tx_id: TxId,
        operation: &Operation,
        user_ref: u64,
        entries: &mut Vec<Entry>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), FailReason> {
        self.effect_accounts.clear();
        match operation {
            Operation::ConfigureAccount {
                account, config, ..
            } => self
                .check_configure(*account, config, user_ref)
                .and_then(|()| self.configure(*account, **config, effects)),
            Operation::Hold(request) => self
                .check_hold(
                    request.from,
                    request.to,
                    request.amount,
                    request.timeout_ns,
                    user_ref,
                )
                .and_then(|expires_at_ns| {
                    let hold = Hold {
                        from: request.from,
                        to: request.to,
                        amount: request.amount,
                        expires_at_ns,
                        state: HoldState::Open,
                        posted: 0,
                        closed_at_ns: 0,
                    };
                    self.hold(tx_id, hold, effects)
                }),
            Operation::PostHold {
                hold_id, amount, ..
            } => self
                .check_duplicate(user_ref)
                .and_then(|()| self.post(*hold_id, *amount, entries, effects)),
            Operation::VoidHold { hold_id, .. } => self
                .check_duplicate(user_ref)
                .and_then(|()| self.void(*hold_id, effects)),
            Operation::ExpireHolds => {
                self.expire_holds(effects);
                Ok(())
            }
            Operation::Reverse(reversal) => self
                .check_duplicate(user_ref)
                .and_then(|()| self.reverse(tx_id, reversal, entries, effects)),
            Operation::Deposit { .. }
            | Operation::Withdrawal { .. }
            | Operation::Transfer { .. }
            | Operation::Composite(_) => unreachable!("executed in line"),
        }
    }

    /// Hints the CPU to start loading the balances `operation` will touch.
    ///
    /// Executing one operation is two dependent-free random memory accesses plus ~50
    /// instructions of checks; the checks keep the CPU from overlapping the cache misses of
    /// consecutive operations. Called a few operations ahead of [`execute`](Self::execute)
    /// over a batch, the misses overlap again. A hint only: it never changes a result.
    #[inline]
    pub fn prefetch(&self, operation: &Operation) {
        self.for_each_account(operation, |a| self.prefetch_account(a));
    }

    /// Calls `f` with each account `operation` names (the first steps of a composite
    /// only), and for a post or void those of its hold, if the hold is open by now: the
    /// table keeps holds in id order, so finding a recent one costs a few cached reads.
    /// For prefetching: a hint, never a check.
    #[inline]
    pub fn for_each_account(&self, operation: &Operation, mut f: impl FnMut(AccountId)) {
        match operation {
            Operation::PostHold { hold_id, .. } | Operation::VoidHold { hold_id, .. } => {
                if let Some(hold) = self.holds.get(*hold_id) {
                    f(hold.from);
                    f(hold.to);
                }
            }
            _ => operation.for_each_account(PREFETCH_STEPS_MAX, f),
        }
    }

    /// [`prefetch`](Self::prefetch) for a stored transaction: called a few transactions
    /// ahead of [`replay`](Self::replay), for the same reason.
    #[inline]
    pub fn prefetch_entries(&self, entries: &[Entry]) {
        for entry in entries.iter().take(PREFETCH_STEPS_MAX) {
            self.prefetch_account(entry.account_id);
        }
    }

    #[inline]
    fn prefetch_account(&self, account: AccountId) {
        if let Some(balance) = usize::try_from(account)
            .ok()
            .and_then(|index| self.balances.get(index))
        {
            prefetch_read(balance);
        }
    }

    /// What the pipeline's prefetch pass loads beyond balances (asked once per batch).
    #[inline]
    pub(crate) fn prefetch_plan(&self) -> PrefetchPlan {
        PrefetchPlan {
            rules: !self.accounts.is_empty(),
            holds: !self.holds.none_open(),
        }
    }

    /// [`prefetch`](Self::prefetch) for the pipeline, in one pass over the operation's
    /// accounts (a post's hold is found once): each account's balance, its slots in the
    /// side tables `plan` names, and whatever `also` loads (the history links).
    #[inline]
    pub(crate) fn prefetch_with(
        &self,
        operation: &Operation,
        plan: PrefetchPlan,
        mut also: impl FnMut(AccountId),
    ) {
        self.for_each_account(operation, |a| {
            self.prefetch_account(a);
            if plan.rules {
                self.accounts.prefetch(a);
            }
            if plan.holds {
                self.holds.prefetch_account(a);
            }
            also(a);
        });
    }

    /// For a stored transaction (while holds are open): the open-hold slots of its
    /// entries' accounts and of those of a hold it opened.
    #[inline]
    pub(crate) fn prefetch_holds_stored(&self, entries: &[Entry], effects: &[Effect]) {
        for entry in entries.iter().take(PREFETCH_STEPS_MAX) {
            self.holds.prefetch_account(entry.account_id);
        }
        for effect in effects {
            if let Effect::HoldOpened { from, to, .. } = *effect {
                self.holds.prefetch_account(from);
                self.holds.prefetch_account(to);
            }
        }
    }

    /// For a stored transaction (while accounts are configured): its entries' accounts'
    /// configured slots.
    #[inline]
    pub(crate) fn prefetch_rules_entries(&self, entries: &[Entry]) {
        for entry in entries.iter().take(PREFETCH_STEPS_MAX) {
            self.accounts.prefetch(entry.account_id);
        }
    }

    /// Re-applies a stored transaction during recovery: its entries and effects, not its
    /// operation. Checks every entry against the balance it records. After an error the
    /// transactor is in an unspecified state and must be discarded.
    #[inline]
    pub fn replay(
        &mut self,
        tx_id: TxId,
        timestamp_ns: u64,
        user_ref: u64,
        outcome: Outcome,
        entries: &[Entry],
        effects: &[Effect],
    ) -> Result<(), ReplayError> {
        if tx_id <= self.last_tx_id {
            return Err(ReplayError::NotIncreasing {
                tx_id,
                last_tx_id: self.last_tx_id,
            });
        }
        self.advance(tx_id, timestamp_ns);
        match outcome {
            Outcome::Rejected(_) if !entries.is_empty() || !effects.is_empty() => {
                Err(ReplayError::RejectedWithEntries { tx_id })
            }
            Outcome::Rejected(_) => Ok(()),
            Outcome::Committed => {
                if !effects.is_empty() {
                    self.effect_accounts.clear();
                }
                for effect in effects {
                    self.replay_effect(tx_id, effect)?;
                }
                apply_entries(&mut self.balances, tx_id, entries)?;
                self.accounts
                    .settle(entries)
                    .map_err(|o| ReplayError::SystemOverflow {
                        tx_id,
                        currency: o.currency,
                    })?;
                if user_ref != 0 {
                    self.dedup.insert(user_ref, tx_id, self.now_ns);
                }
                Ok(())
            }
        }
    }

    #[inline(never)]
    fn replay_effect(&mut self, tx_id: TxId, effect: &Effect) -> Result<(), ReplayError> {
        let out_of_range = |account_id| ReplayError::AccountOutOfRange { tx_id, account_id };
        let bad = |hold_id, fault| ReplayError::BadHold {
            tx_id,
            hold_id,
            reason: match fault {
                HoldFault::Unknown => "is not a hold",
                HoldFault::Closed => "is not open",
                HoldFault::Overflow => "overflows a reserved sum",
                HoldFault::OutOfOrder => "is not above every hold before it",
            },
        };
        match *effect {
            Effect::Configured { account, config } => {
                if account == SYSTEM_ACCOUNT || self.account_index(account).is_err() {
                    return Err(out_of_range(account));
                }
                if config.parent != 0 {
                    self.account_index(config.parent)
                        .map_err(|_| out_of_range(config.parent))?;
                }
                self.accounts
                    .check_parent(account, &config)
                    .map_err(|fault| ReplayError::BadParent {
                        tx_id,
                        account_id: account,
                        reason: hierarchy_fault(fault),
                    })?;
                let balance = self.balances[account as usize];
                self.accounts.configure(account, config, balance);
                self.effect_accounts.push(account);
            }
            Effect::Reversed { tx_id: original } => {
                if original == 0 || original >= tx_id {
                    return Err(ReplayError::BadReversal {
                        tx_id,
                        original,
                        reason: "is not of an earlier transaction",
                    });
                }
                if self.reversals.insert(original, tx_id).is_some() {
                    return Err(ReplayError::BadReversal {
                        tx_id,
                        original,
                        reason: "comes twice",
                    });
                }
            }
            Effect::HoldOpened {
                from,
                to,
                amount,
                expires_at_ns,
            } => {
                for account in [from, to] {
                    self.account_index(account)
                        .map_err(|_| out_of_range(account))?;
                    self.accounts.note_moved(account);
                }
                let hold = Hold {
                    from,
                    to,
                    amount,
                    expires_at_ns,
                    state: HoldState::Open,
                    posted: 0,
                    closed_at_ns: 0,
                };
                self.holds.insert(tx_id, hold).map_err(|f| bad(tx_id, f))?;
                self.effect_accounts.extend([from, to]);
            }
            Effect::HoldPosted { hold_id, amount } => {
                self.holds
                    .close(hold_id, HoldState::Posted, amount, self.now_ns)
                    .map_err(|f| bad(hold_id, f))?;
            }
            Effect::HoldVoided { hold_id } => {
                let hold = self
                    .holds
                    .close(hold_id, HoldState::Voided, 0, self.now_ns)
                    .map_err(|f| bad(hold_id, f))?;
                self.effect_accounts.extend([hold.from, hold.to]);
            }
            Effect::HoldExpired { hold_id } => {
                let hold = self
                    .holds
                    .close(hold_id, HoldState::Expired, 0, self.now_ns)
                    .map_err(|f| bad(hold_id, f))?;
                self.effect_accounts.extend([hold.from, hold.to]);
            }
        }
        Ok(())
    }

    /// The accounts the effects of the last transaction executed or replayed with
    /// effects touched without an entry, in effect order
    /// ([`record::effect_accounts`](crate::record::effect_accounts) per effect): a
    /// configured account, a hold's `from` and `to`. What the history chains link.
    pub fn effect_accounts(&self) -> &[AccountId] {
        &self.effect_accounts
    }

    /// Checks a stored record's effect links (when it has any: older records have none)
    /// against the accounts its effects, just replayed, touched.
    pub fn check_effect_links(
        &self,
        tx_id: TxId,
        links: &[AccountLink],
    ) -> Result<(), ReplayError> {
        if links.is_empty()
            || links
                .iter()
                .map(|l| l.account_id)
                .eq(self.effect_accounts.iter().copied())
        {
            return Ok(());
        }
        Err(ReplayError::BadEffectLinks { tx_id })
    }

    /// The balance of `account`, or `None` if the id is at or above `max_accounts`.
    pub fn balance(&self, account: AccountId) -> Option<i64> {
        let index = usize::try_from(account).ok()?;
        self.balances.get(index).copied()
    }

    /// Every balance, indexed by account id.
    pub fn balances(&self) -> &[i64] {
        &self.balances
    }

    /// The sum of every balance; zero whenever the ledger is consistent. O(accounts).
    pub fn balance_sum(&self) -> i128 {
        self.balances.iter().map(|&b| b as i128).sum()
    }

    /// The id of the last transaction executed or replayed (0 before the first).
    pub fn last_tx_id(&self) -> TxId {
        self.last_tx_id
    }

    /// The latest sequencer time seen.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The idempotency window.
    pub fn dedup(&self) -> &DedupWindow {
        &self.dedup
    }

    /// The configured accounts and the system account's balance per currency.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The holds (open, or closed within the retention), and what open ones reserve.
    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    /// `account`'s balance less the funds open holds reserve on it, or `None` if the id
    /// is at or above `max_accounts`.
    pub fn available_balance(&self, account: AccountId) -> Option<i128> {
        let balance = self.balance(account)?;
        Some(balance as i128 - self.holds.reserved(account).outgoing as i128)
    }

    /// The transaction that reversed `tx_id`, if one did.
    pub fn reversed_by(&self, tx_id: TxId) -> Option<TxId> {
        self.reversals.get(&tx_id).copied()
    }

    /// Every reversal, `(original, reversal)`, in no particular order.
    pub fn reversals_iter(&self) -> impl Iterator<Item = (TxId, TxId)> + '_ {
        self.reversals.iter().map(|(&o, &r)| (o, r))
    }

    /// Every reversal, `(original, reversal)`, by original.
    pub fn reversals(&self) -> Vec<(TxId, TxId)> {
        let mut all: Vec<_> = self.reversals.iter().map(|(&o, &r)| (o, r)).collect();
        all.sort_unstable();
        all
    }

    /// `account`'s aggregate balance: its own plus every descendant's (its balance for
    /// an account without sub-accounts), or `None` if the id is at or above
    /// `max_accounts`.
    pub fn aggregate_balance(&self, account: AccountId) -> Option<i128> {
        let balance = self.balance(account)?;
        Some(balance as i128 + self.accounts.descendants_balance(account))
    }

    /// `account`'s configuration (the default rules if it was never configured), or
    /// `None` if the id is at or above `max_accounts`.
    pub fn account_config(&self, account: AccountId) -> Option<AccountConfig> {
        self.balance(account)?;
        Some(self.accounts.config(account))
    }

    /// The system account's balance in `currency`: minus everything deposited in that
    /// currency plus everything withdrawn.
    pub fn system_balance(&self, currency: u32) -> i128 {
        self.accounts
            .system_balance(currency, self.balances[SYSTEM_ACCOUNT as usize])
    }

    fn advance(&mut self, tx_id: TxId, timestamp_ns: u64) {
        assert!(tx_id > self.last_tx_id, "transaction ids strictly increase");
        self.last_tx_id = tx_id;
        self.now_ns = self.now_ns.max(timestamp_ns);
        // Every transaction, executed or replayed, ages the window and forgets closed
        // holds the same way.
        self.dedup.expire(self.now_ns);
        self.holds.forget_due(self.now_ns);
    }

    fn account_index(&self, account: AccountId) -> Result<usize, FailReason> {
        match usize::try_from(account) {
            Ok(index) if index < self.balances.len() => Ok(index),
            _ => Err(FailReason::AccountLimitExceeded),
        }
    }

    fn check_duplicate(&self, user_ref: u64) -> Result<(), FailReason> {
        if user_ref == 0 {
            return Ok(());
        }
        match self.dedup.find(user_ref) {
            Some(original_tx_id) => Err(FailReason::Duplicate { original_tx_id }),
            None => Ok(()),
        }
    }

    fn check_single(
        &self,
        account: AccountId,
        amount: u64,
        user_ref: u64,
    ) -> Result<(), FailReason> {
        check_amount(amount)?;
        if account == SYSTEM_ACCOUNT {
            return Err(FailReason::InvalidOperation);
        }
        self.account_index(account)?;
        self.check_duplicate(user_ref)
    }

    fn check_transfer(
        &self,
        from: AccountId,
        to: AccountId,
        amount: u64,
        user_ref: u64,
    ) -> Result<(), FailReason> {
        check_amount(amount)?;
        self.account_index(from)?;
        self.account_index(to)?;
        self.check_duplicate(user_ref)
    }

    fn check_composite(&self, composite: &CompositeOperation) -> Result<(), FailReason> {
        if composite.flags & !CompositeOperation::FLAGS_KNOWN != 0 || composite.steps.is_empty() {
            return Err(FailReason::InvalidOperation);
        }
        if composite.steps.len() > COMPOSITE_STEPS_MAX {
            return Err(FailReason::EntryLimitExceeded);
        }
        // At most 255 amounts below 2^63 each: the sums cannot overflow a u128.
        let (mut credited, mut debited) = (0u128, 0u128);
        for step in &composite.steps {
            let (account, amount) = match *step {
                Step::Credit { account_id, amount } => {
                    credited += amount as u128;
                    (account_id, amount)
                }
                Step::Debit { account_id, amount } => {
                    debited += amount as u128;
                    (account_id, amount)
                }
            };
            check_amount(amount)?;
            self.account_index(account)?;
        }
        if credited != debited {
            return Err(FailReason::ZeroSumViolation);
        }
        self.check_duplicate(composite.user_ref)
    }

    #[inline(never)]
    fn check_configure(
        &self,
        account: AccountId,
        config: &AccountConfig,
        user_ref: u64,
    ) -> Result<(), FailReason> {
        if account == SYSTEM_ACCOUNT {
            return Err(FailReason::InvalidOperation);
        }
        self.account_index(account)?;
        check_config(config)?;
        if config.parent != 0 {
            self.account_index(config.parent)?;
        }
        self.check_duplicate(user_ref)
    }

    /// Sets `account`'s configuration. Its currency may change only while it holds
    /// nothing and has moved nothing since it was last configured.
    #[inline(never)]
    fn configure(
        &mut self,
        account: AccountId,
        config: AccountConfig,
        effects: &mut Vec<Effect>,
    ) -> Result<(), FailReason> {
        let index = self.account_index(account)?;
        let current = self.accounts.get(account);
        if config.currency != current.map_or(0, |s| s.config.currency)
            && (self.balances[index] != 0 || current.is_some_and(|s| s.moved))
        {
            return Err(FailReason::CurrencyFixed);
        }
        self.accounts
            .check_parent(account, &config)
            .map_err(|_| FailReason::InvalidHierarchy)?;
        self.accounts
            .configure(account, config, self.balances[index]);
        effects.push(Effect::Configured { account, config });
        self.effect_accounts.push(account);
        Ok(())
    }

    /// No account is configured and no hold is open: every movement takes the fast path.
    /// (Checked before anything else: the hot loop carries only these two loads.)
    #[inline(always)]
    fn no_rules(&self) -> bool {
        self.accounts.is_empty() && self.holds.none_open()
    }

    /// A deposit, withdrawal or transfer in a ledger with configured accounts or open
    /// holds: the fast path still, if neither of its accounts has any.
    #[inline(never)]
    fn movement(
        &mut self,
        from: AccountId,
        to: AccountId,
        amount: u64,
        entries: &mut Vec<Entry>,
    ) -> Result<(), FailReason> {
        match self.ruled_states(from, to) {
            Some(states) => self.ruled_move(from, to, amount, states, entries),
            // A transfer from or to the system account checks and records exactly what
            // a deposit or withdrawal does.
            None => self.transfer(from, to, amount, entries),
        }
    }

    /// `None` when neither account is configured nor has open holds: the default rules
    /// apply, on the fast path. Otherwise the two accounts' configured states (each
    /// looked up once: at a million accounts a lookup is a cache miss), for
    /// [`ruled_move`](Self::ruled_move).
    #[inline]
    fn ruled_states(&self, from: AccountId, to: AccountId) -> Option<MoveStates> {
        if self.accounts.is_empty() && self.holds.none_open() {
            return None;
        }
        let states = (
            self.accounts.get(from).copied(),
            self.accounts.get(to).copied(),
        );
        let holds = self.holds.has_open(from) || self.holds.has_open(to);
        (states.0.is_some() || states.1.is_some() || holds).then_some(states)
    }

    /// Whether `account` needs the ruled path: configured, or with open holds.
    fn ruled_account(&self, account: AccountId) -> bool {
        self.accounts.get(account).is_some() || self.holds.has_open(account)
    }

    /// A deposit, withdrawal or transfer that touches a configured account: the same
    /// movement as a two-step composite under every account's rules.
    #[inline(never)]
    fn ruled_move(
        &mut self,
        from: AccountId,
        to: AccountId,
        amount: u64,
        (from_configured, to_configured): MoveStates,
        entries: &mut Vec<Entry>,
    ) -> Result<(), FailReason> {
        if from == to {
            return Ok(()); // Moving funds to the same account changes nothing.
        }
        // The checks of `ruled` for these two steps, in its order, with each account's
        // state looked up once (a configured account costs a hash-map lookup, a cache
        // miss at a million accounts): the property test holds both to the same model.
        let none = AccountState {
            config: AccountConfig::default(),
            moved: true,
        };
        // `None`: the system account; `Some(None)`: an unconfigured account.
        let state = |a, s| (a != SYSTEM_ACCOUNT).then_some(s);
        let (from_state, to_state) = (state(from, from_configured), state(to, to_configured));
        let config = |s: Option<Option<AccountState>>| s.flatten().unwrap_or(none).config;
        let (from_config, to_config) = (config(from_state), config(to_state));
        let frozen = |s: Option<Option<AccountState>>, c: AccountConfig| {
            s.is_some() && c.has(AccountConfig::FROZEN)
        };
        if frozen(from_state, from_config) || frozen(to_state, to_config) {
            return Err(FailReason::AccountFrozen);
        }
        if from != SYSTEM_ACCOUNT
            && to != SYSTEM_ACCOUNT
            && from_config.currency != to_config.currency
        {
            return Err(FailReason::CurrencyMismatch);
        }
        let currency = if from == SYSTEM_ACCOUNT {
            to_config.currency
        } else {
            from_config.currency
        };
        let (fi, ti) = (from as usize, to as usize);
        let (from_before, to_before) = (self.balances[fi], self.balances[ti]);
        let delta = amount as i64; // amount <= AMOUNT_MAX, checked
        let from_after = from_before
            .checked_sub(delta)
            .ok_or(FailReason::BalanceOverflow)?;
        let to_after = to_before
            .checked_add(delta)
            .ok_or(FailReason::BalanceOverflow)?;
        if from != SYSTEM_ACCOUNT {
            let available = from_after as i128 - self.holds.reserved(from).outgoing as i128;
            let below = match from_state.flatten() {
                Some(s) => s
                    .config
                    .min_balance()
                    .is_some_and(|m| available < m as i128),
                None => available < 0,
            };
            if below {
                return Err(FailReason::InsufficientFunds);
            }
        }
        if to != SYSTEM_ACCOUNT
            && let Some(max) = to_state.flatten().and_then(|s| s.config.max_balance)
            && to_after as i128 + self.holds.reserved(to).incoming as i128 > max as i128
        {
            return Err(FailReason::MaxBalanceExceeded);
        }
        if currency != 0 && (from == SYSTEM_ACCOUNT || to == SYSTEM_ACCOUNT) {
            let net = if from == SYSTEM_ACCOUNT {
                -delta
            } else {
                delta
            };
            self.accounts
                .add_system(currency, net)
                .map_err(|_| FailReason::BalanceOverflow)?;
        }
        for (account, state, change) in [(from, from_state, -delta), (to, to_state, delta)] {
            let Some(state) = state.flatten() else {
                continue;
            };
            if !state.moved {
                self.accounts.note_moved(account);
            }
            if state.config.parent != 0 {
                self.accounts.note_balance_change(account, change.into());
            }
        }
        self.balances[fi] = from_after;
        self.balances[ti] = to_after;
        entries.push(credit(from, amount, from_after));
        entries.push(debit(to, amount, to_after));
        Ok(())
    }

    /// Applies `steps` under the rules of every account they touch, in this order:
    /// frozen accounts (any step on one), one currency (every account but the system
    /// account), then the steps (no balance may leave the `i64` range), then each
    /// account's bounds on its net change (a decrease may not end below its minimum, an
    /// increase above its maximum), then the system account's balance in the currency.
    /// Any failure rolls every step back.
    #[inline(never)]
    fn ruled(
        &mut self,
        steps: &[Step],
        unconfigured: Unconfigured,
        entries: &mut Vec<Entry>,
    ) -> Result<(), FailReason> {
        let accounts = steps.iter().map(|s| step_parts(s).0);
        let configs = || {
            accounts
                .clone()
                .filter(|&a| a != SYSTEM_ACCOUNT)
                .map(|a| self.accounts.config(a))
        };
        if configs().any(|c| c.has(AccountConfig::FROZEN)) {
            return Err(FailReason::AccountFrozen);
        }
        let mut currencies = configs().map(|c| c.currency);
        if let Some(first) = currencies.next()
            && currencies.any(|c| c != first)
        {
            return Err(FailReason::CurrencyMismatch);
        }
        let entries_before = entries.len();
        self.undo.clear();
        let result = self.apply_ruled(steps, unconfigured, entries, entries_before);
        if result.is_err() {
            for &(index, before) in self.undo.iter().rev() {
                self.balances[index] = before;
            }
            entries.truncate(entries_before);
        }
        result
    }

    fn apply_ruled(
        &mut self,
        steps: &[Step],
        unconfigured: Unconfigured,
        entries: &mut Vec<Entry>,
        entries_before: usize,
    ) -> Result<(), FailReason> {
        for step in steps {
            self.apply_step(step, entries)?;
        }
        for (i, &(index, before)) in self.undo.iter().enumerate() {
            let first_touch = !self.undo[..i].iter().any(|&(j, _)| j == index);
            if index == SYSTEM_ACCOUNT as usize || !first_touch {
                continue;
            }
            let account = index as AccountId;
            let after = self.balances[index];
            let reserved = self.holds.reserved(account);
            // Holds count: what is reserved out of the account is not available, what is
            // reserved into it counts against its maximum.
            let available = after as i128 - reserved.outgoing as i128;
            let config = self.accounts.get(account).map(|s| s.config);
            let below = match (config, unconfigured) {
                (Some(c), _) => {
                    after < before && c.min_balance().is_some_and(|m| available < m as i128)
                }
                (None, Unconfigured::NotNegative) => available < 0,
                (None, Unconfigured::DecreaseNotNegative) => after < before && available < 0,
                (None, Unconfigured::Unchecked) => false,
            };
            if below {
                return Err(FailReason::InsufficientFunds);
            }
            let incoming = after as i128 + reserved.incoming as i128;
            if config.is_some_and(|c| {
                after > before && c.max_balance.is_some_and(|m| incoming > m as i128)
            }) {
                return Err(FailReason::MaxBalanceExceeded);
            }
        }
        self.accounts
            .settle(&entries[entries_before..])
            .map_err(|_| FailReason::BalanceOverflow)
    }

    /// Applies one step, noting the balance before it for a rollback.
    fn apply_step(&mut self, step: &Step, entries: &mut Vec<Entry>) -> Result<(), FailReason> {
        let (account_id, amount, kind) = step_parts(step);
        let index = self.account_index(account_id)?;
        let before = self.balances[index];
        let after = match kind {
            EntryKind::Credit => before.checked_sub(amount as i64),
            EntryKind::Debit => before.checked_add(amount as i64),
        }
        .ok_or(FailReason::BalanceOverflow)?;
        self.undo.push((index, before));
        self.balances[index] = after;
        entries.push(Entry {
            account_id,
            amount,
            kind,
            balance_after: after,
        });
        Ok(())
    }

    /// A hold's shape: a valid amount, two different accounts in range, an expiry that
    /// fits; then the duplicate check. Returns the expiry (0: never).
    #[inline(never)]
    fn check_hold(
        &self,
        from: AccountId,
        to: AccountId,
        amount: u64,
        timeout_ns: u64,
        user_ref: u64,
    ) -> Result<u64, FailReason> {
        check_amount(amount)?;
        let expires_at_ns = match timeout_ns {
            0 => 0,
            t => self
                .now_ns
                .checked_add(t)
                .ok_or(FailReason::InvalidOperation)?,
        };
        if from == to {
            return Err(FailReason::InvalidOperation);
        }
        self.account_index(from)?;
        self.account_index(to)?;
        self.check_duplicate(user_ref)?;
        Ok(expires_at_ns)
    }

    /// The rules of the accounts of a movement from `from` to `to`: neither frozen, one
    /// currency (the system account is in every one).
    fn check_pair(&self, from: AccountId, to: AccountId) -> Result<(), FailReason> {
        let others = [from, to].into_iter().filter(|&a| a != SYSTEM_ACCOUNT);
        if others
            .clone()
            .any(|a| self.accounts.config(a).has(AccountConfig::FROZEN))
        {
            return Err(FailReason::AccountFrozen);
        }
        if from != SYSTEM_ACCOUNT
            && to != SYSTEM_ACCOUNT
            && self.accounts.currency(from) != self.accounts.currency(to)
        {
            return Err(FailReason::CurrencyMismatch);
        }
        Ok(())
    }

    /// Opens hold `hold_id` (this transaction): in this order, frozen accounts, one
    /// currency, the reserved sums fit (`BalanceOverflow`), `from`'s available balance
    /// stays within its lower bound (`InsufficientFunds`), `to`'s balance plus what is
    /// reserved into it within its maximum (`MaxBalanceExceeded`).
    #[inline(never)]
    fn hold(
        &mut self,
        hold_id: HoldId,
        hold: Hold,
        effects: &mut Vec<Effect>,
    ) -> Result<(), FailReason> {
        self.check_pair(hold.from, hold.to)?;
        let outgoing = self
            .holds
            .reserved(hold.from)
            .outgoing
            .checked_add(hold.amount);
        let incoming = self
            .holds
            .reserved(hold.to)
            .incoming
            .checked_add(hold.amount);
        let (Some(outgoing), Some(incoming)) = (outgoing, incoming) else {
            return Err(FailReason::BalanceOverflow);
        };
        if hold.from != SYSTEM_ACCOUNT {
            let available = self.balances[hold.from as usize] as i128 - outgoing as i128;
            let min = self.accounts.config(hold.from).min_balance();
            if min.is_some_and(|m| available < m as i128) {
                return Err(FailReason::InsufficientFunds);
            }
        }
        if hold.to != SYSTEM_ACCOUNT
            && let Some(max) = self.accounts.config(hold.to).max_balance
            && self.balances[hold.to as usize] as i128 + incoming as i128 > max as i128
        {
            return Err(FailReason::MaxBalanceExceeded);
        }
        let inserted = self.holds.insert(hold_id, hold);
        assert!(inserted.is_ok(), "a new hold's id is this transaction's");
        self.accounts.note_moved(hold.from);
        self.accounts.note_moved(hold.to);
        effects.push(Effect::HoldOpened {
            from: hold.from,
            to: hold.to,
            amount: hold.amount,
            expires_at_ns: hold.expires_at_ns,
        });
        self.effect_accounts.extend([hold.from, hold.to]);
        Ok(())
    }

    /// The open, unexpired hold `hold_id`.
    fn open_hold(&self, hold_id: HoldId) -> Result<Hold, FailReason> {
        let hold = *self.holds.get(hold_id).ok_or(FailReason::HoldNotFound)?;
        if hold.state != HoldState::Open {
            return Err(FailReason::HoldClosed);
        }
        if hold.is_expired(self.now_ns) {
            return Err(FailReason::HoldExpired);
        }
        Ok(hold)
    }

    /// Posts `amount` (0: all) of hold `hold_id`: in this order, the hold is known, open,
    /// unexpired and holds that much, neither account is frozen, no balance leaves the
    /// `i64` range. The funds were reserved, so no lower or upper bound is checked again.
    #[inline(never)]
    fn post(
        &mut self,
        hold_id: HoldId,
        amount: u64,
        entries: &mut Vec<Entry>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), FailReason> {
        let hold = self.open_hold(hold_id)?;
        let amount = if amount == 0 { hold.amount } else { amount };
        if amount > hold.amount {
            return Err(FailReason::HoldExceeded);
        }
        self.check_pair(hold.from, hold.to)?;
        let steps = [
            Step::Credit {
                account_id: hold.from,
                amount,
            },
            Step::Debit {
                account_id: hold.to,
                amount,
            },
        ];
        let entries_before = entries.len();
        self.undo.clear();
        let result = steps
            .iter()
            .try_for_each(|step| self.apply_step(step, entries))
            .and_then(|()| {
                self.accounts
                    .settle(&entries[entries_before..])
                    .map_err(|_| FailReason::BalanceOverflow)
            });
        if let Err(reason) = result {
            for &(index, before) in self.undo.iter().rev() {
                self.balances[index] = before;
            }
            entries.truncate(entries_before);
            return Err(reason);
        }
        let closed = self
            .holds
            .close(hold_id, HoldState::Posted, amount, self.now_ns);
        assert!(closed.is_ok(), "hold {hold_id} was open");
        effects.push(Effect::HoldPosted { hold_id, amount });
        Ok(())
    }

    /// Voids hold `hold_id`: it must be known, open and unexpired.
    #[inline(never)]
    fn void(&mut self, hold_id: HoldId, effects: &mut Vec<Effect>) -> Result<(), FailReason> {
        let hold = self.open_hold(hold_id)?;
        let closed = self.holds.close(hold_id, HoldState::Voided, 0, self.now_ns);
        assert!(closed.is_ok(), "hold {hold_id} was open");
        effects.push(Effect::HoldVoided { hold_id });
        self.effect_accounts.extend([hold.from, hold.to]);
        Ok(())
    }

    /// Reverses transaction `reversal.tx_id` as transaction `tx_id`: in this order, the
    /// original was found and moved money, it was not reversed before, then its entries
    /// inverted run under every account's rules (as [`ruled`](Self::ruled) orders them;
    /// an account never configured may not be drawn below zero).
    #[inline(never)]
    fn reverse(
        &mut self,
        tx_id: TxId,
        reversal: &Reversal,
        entries: &mut Vec<Entry>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), FailReason> {
        let original = reversal.tx_id;
        let recorded = match &reversal.target {
            ReversalTarget::Entries(recorded) => recorded,
            ReversalTarget::Unresolved => return Err(FailReason::InvalidOperation),
            ReversalTarget::NotFound => return Err(FailReason::TransactionNotFound),
            ReversalTarget::NotReversible => return Err(FailReason::NotReversible),
        };
        if original == 0 || original >= tx_id {
            return Err(FailReason::TransactionNotFound);
        }
        if recorded.is_empty() || recorded.len() > COMPOSITE_STEPS_MAX {
            return Err(FailReason::NotReversible);
        }
        if self.reversals.contains_key(&original) {
            return Err(FailReason::AlreadyReversed);
        }
        let mut net: i128 = 0;
        let mut steps = Vec::with_capacity(recorded.len());
        for entry in recorded {
            check_amount(entry.amount)?;
            net += entry.delta();
            steps.push(match entry.kind {
                EntryKind::Credit => Step::Debit {
                    account_id: entry.account_id,
                    amount: entry.amount,
                },
                EntryKind::Debit => Step::Credit {
                    account_id: entry.account_id,
                    amount: entry.amount,
                },
            });
        }
        if net != 0 {
            return Err(FailReason::ZeroSumViolation);
        }
        self.ruled(&steps, Unconfigured::DecreaseNotNegative, entries)?;
        self.reversals.insert(original, tx_id);
        effects.push(Effect::Reversed { tx_id: original });
        Ok(())
    }

    /// Expires the open holds whose timeout has passed, oldest expiry first, at most
    /// [`EXPIRIES_PER_TRANSACTION`].
    #[inline(never)]
    fn expire_holds(&mut self, effects: &mut Vec<Effect>) {
        let due: Vec<HoldId> = self
            .holds
            .expired(self.now_ns, EXPIRIES_PER_TRANSACTION)
            .collect();
        for hold_id in due {
            let closed = self
                .holds
                .close(hold_id, HoldState::Expired, 0, self.now_ns);
            let Ok(hold) = closed else {
                panic!("an expiring hold is open: {hold_id}");
            };
            effects.push(Effect::HoldExpired { hold_id });
            self.effect_accounts.extend([hold.from, hold.to]);
        }
    }

    fn deposit(
        &mut self,
        account: AccountId,
        amount: u64,
        entries: &mut Vec<Entry>,
    ) -> Result<(), FailReason> {
        let to = self.account_index(account)?;
        let delta = amount as i64; // amount <= AMOUNT_MAX, checked
        let system_after = self.balances[0]
            .checked_sub(delta)
            .ok_or(FailReason::BalanceOverflow)?;
        let to_after = self.balances[to]
            .checked_add(delta)
            .ok_or(FailReason::BalanceOverflow)?;
        self.balances[0] = system_after;
        self.balances[to] = to_after;
        entries.push(credit(SYSTEM_ACCOUNT, amount, system_after));
        entries.push(debit(account, amount, to_after));
        Ok(())
    }

    fn withdraw(
        &mut self,
        account: AccountId,
        amount: u64,
        entries: &mut Vec<Entry>,
    ) -> Result<(), FailReason> {
        let from = self.account_index(account)?;
        let delta = amount as i64;
        if self.balances[from] < delta {
            return Err(FailReason::InsufficientFunds);
        }
        let from_after = self.balances[from] - delta; // >= 0, cannot overflow
        let system_after = self.balances[0]
            .checked_add(delta)
            .ok_or(FailReason::BalanceOverflow)?;
        self.balances[from] = from_after;
        self.balances[0] = system_after;
        entries.push(credit(account, amount, from_after));
        entries.push(debit(SYSTEM_ACCOUNT, amount, system_after));
        Ok(())
    }

    fn transfer(
        &mut self,
        from_account: AccountId,
        to_account: AccountId,
        amount: u64,
        entries: &mut Vec<Entry>,
    ) -> Result<(), FailReason> {
        let from = self.account_index(from_account)?;
        let to = self.account_index(to_account)?;
        if from == to {
            return Ok(()); // Moving funds to the same account changes nothing.
        }
        let delta = amount as i64;
        if from_account != SYSTEM_ACCOUNT && self.balances[from] < delta {
            return Err(FailReason::InsufficientFunds);
        }
        let from_after = self.balances[from]
            .checked_sub(delta)
            .ok_or(FailReason::BalanceOverflow)?;
        let to_after = self.balances[to]
            .checked_add(delta)
            .ok_or(FailReason::BalanceOverflow)?;
        self.balances[from] = from_after;
        self.balances[to] = to_after;
        entries.push(credit(from_account, amount, from_after));
        entries.push(debit(to_account, amount, to_after));
        Ok(())
    }

    /// Applies the steps in order (each intermediate balance must fit an `i64`), then
    /// checks the negative-balance flag; any failure rolls every step back.
    fn composite(
        &mut self,
        composite: &CompositeOperation,
        entries: &mut Vec<Entry>,
    ) -> Result<(), FailReason> {
        let configured = !(self.accounts.is_empty() && self.holds.none_open())
            && composite
                .steps
                .iter()
                .any(|s| self.ruled_account(step_parts(s).0));
        if configured {
            let unconfigured = match composite.flags & CompositeOperation::CHECK_NEGATIVE_BALANCE {
                0 => Unconfigured::Unchecked,
                _ => Unconfigured::NotNegative,
            };
            return self.ruled(&composite.steps, unconfigured, entries);
        }
        let entries_before = entries.len();
        self.undo.clear();
        let result = self.apply_steps(composite, entries);
        if result.is_err() {
            for &(index, before) in self.undo.iter().rev() {
                self.balances[index] = before;
            }
            entries.truncate(entries_before);
        }
        result
    }

    fn apply_steps(
        &mut self,
        composite: &CompositeOperation,
        entries: &mut Vec<Entry>,
    ) -> Result<(), FailReason> {
        for step in &composite.steps {
            self.apply_step(step, entries)?;
        }
        if composite.flags & CompositeOperation::CHECK_NEGATIVE_BALANCE != 0 {
            let overdrawn = self
                .undo
                .iter()
                .any(|&(index, _)| index != SYSTEM_ACCOUNT as usize && self.balances[index] < 0);
            if overdrawn {
                return Err(FailReason::InsufficientFunds);
            }
        }
        Ok(())
    }
}

/// Applies committed entries to a balance table, checking each recorded balance.
/// Recovery relies on this reproducing the executor's balances exactly.
pub fn apply_entries(
    balances: &mut [i64],
    tx_id: TxId,
    entries: &[Entry],
) -> Result<(), ReplayError> {
    let mut net: i128 = 0;
    for entry in entries {
        let slot = usize::try_from(entry.account_id)
            .ok()
            .and_then(|index| balances.get_mut(index))
            .ok_or(ReplayError::AccountOutOfRange {
                tx_id,
                account_id: entry.account_id,
            })?;
        let computed = *slot as i128 + entry.delta();
        if computed != entry.balance_after as i128 {
            return Err(ReplayError::BalanceMismatch {
                tx_id,
                account_id: entry.account_id,
                computed,
                recorded: entry.balance_after,
            });
        }
        *slot = entry.balance_after;
        net += entry.delta();
    }
    if net != 0 {
        return Err(ReplayError::NotZeroSum { tx_id });
    }
    Ok(())
}

/// Recovery's back-link check on a record read from the WAL: each entry's stored link
/// must name its account's previous transaction, `latest[account]` (0: none, also for an
/// account beyond `latest`). Checked against the heads before `tx_id` is linked, so two
/// entries of one account both name the transaction before it. Public so that offline
/// replay (`ledger-cli replay`) checks exactly what recovery checks.
#[inline]
pub fn check_links(
    latest: &[TxId],
    tx_id: TxId,
    entries: &[Entry],
    prev_tx_ids: &[TxId],
    effect_links: &[AccountLink],
) -> Result<(), ReplayError> {
    let check = |account_id: AccountId, recorded: TxId| {
        let expected = usize::try_from(account_id)
            .ok()
            .and_then(|i| latest.get(i))
            .copied()
            .unwrap_or(0);
        if recorded == expected {
            Ok(())
        } else {
            Err(ReplayError::BrokenLink {
                tx_id,
                account_id,
                recorded,
                expected,
            })
        }
    };
    for (entry, &recorded) in entries.iter().zip(prev_tx_ids) {
        check(entry.account_id, recorded)?;
    }
    for link in effect_links {
        check(link.account_id, link.prev_tx_id)?;
    }
    Ok(())
}

/// Makes `tx_id` the last transaction of every account in `entries` and `effect_links`
/// (accounts beyond `latest` are not tracked).
#[inline]
pub fn link_entries(
    latest: &mut [TxId],
    tx_id: TxId,
    entries: &[Entry],
    effect_links: &[AccountLink],
) {
    let mut link = |account: AccountId| {
        if let Some(slot) = usize::try_from(account)
            .ok()
            .and_then(|i| latest.get_mut(i))
        {
            *slot = tx_id;
        }
    };
    for entry in entries {
        link(entry.account_id);
    }
    for effect_link in effect_links {
        link(effect_link.account_id);
    }
}

/// Steps of a composite whose balances [`Transactor::prefetch`] requests.
pub(crate) const PREFETCH_STEPS_MAX: usize = 8;

/// Asks the CPU to load the cache line holding `value`. A hint only. Public for the
/// offline tools that walk balances the way the transactor does (`ledger-cli replay`).
#[inline(always)]
pub fn prefetch_read<V>(value: &V) {
    prefetch_ptr(value as *const V);
}

/// [`prefetch_read`] for a pointer that may not be dereferenceable (a vector's buffer
/// whatever its length): the CPU never faults on a prefetch.
#[inline(always)]
pub(crate) fn prefetch_ptr<V>(pointer: *const V) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(pointer.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pointer;
}

/// What the pipeline's prefetch pass loads beyond balances, for each account an
/// operation touches: asked once per batch, so the plain path's loop carries only two
/// well-predicted branches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PrefetchPlan {
    /// Some account is configured: the account's slot in the configured accounts' table.
    pub rules: bool,
    /// Some hold is open: the account's slot in the table of accounts with open holds.
    pub holds: bool,
}

/// The configured states of a movement's two accounts (`None`: not configured).
type MoveStates = (Option<AccountState>, Option<AccountState>);

/// What the rules ask of an account that was never configured, in a composite on the
/// ruled path (a deposit, withdrawal or transfer: `ruled_move`, no decrease below zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unconfigured {
    /// A composite with `CHECK_NEGATIVE_BALANCE`: it may not end below zero.
    NotNegative,
    /// A composite without it: no bound.
    Unchecked,
    /// A reversal, like a transfer: a decrease may not end below zero.
    DecreaseNotNegative,
}

/// What a [`HierarchyFault`] says in a restore or replay error.
fn hierarchy_fault(fault: HierarchyFault) -> &'static str {
    match fault {
        HierarchyFault::Cycle => "makes a cycle",
        HierarchyFault::TooDeep => "makes a hierarchy too deep (or a cycle)",
        HierarchyFault::HasChildren => "changes under an account with sub-accounts",
        HierarchyFault::Currency => "is in another currency",
    }
}

fn step_parts(step: &Step) -> (AccountId, u64, EntryKind) {
    match *step {
        Step::Credit { account_id, amount } => (account_id, amount, EntryKind::Credit),
        Step::Debit { account_id, amount } => (account_id, amount, EntryKind::Debit),
    }
}

/// An account configuration is well formed: known flags, an overdraft limit only with
/// the rule it loosens and within an amount's range, a maximum not below the minimum.
fn check_config(config: &AccountConfig) -> Result<(), FailReason> {
    let bounded = config.has(AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS);
    let malformed = config.flags & !AccountConfig::FLAGS_KNOWN != 0
        || config.overdraft_limit > AMOUNT_MAX
        || (!bounded && config.overdraft_limit != 0)
        || matches!((config.min_balance(), config.max_balance), (Some(min), Some(max)) if max < min);
    if malformed {
        return Err(FailReason::InvalidOperation);
    }
    Ok(())
}

fn check_amount(amount: u64) -> Result<(), FailReason> {
    if amount == 0 || amount > AMOUNT_MAX {
        return Err(FailReason::InvalidOperation);
    }
    Ok(())
}

fn credit(account_id: AccountId, amount: u64, balance_after: i64) -> Entry {
    Entry {
        account_id,
        amount,
        kind: EntryKind::Credit,
        balance_after,
    }
}

fn debit(account_id: AccountId, amount: u64, balance_after: i64) -> Entry {
    Entry {
        account_id,
        amount,
        kind: EntryKind::Debit,
        balance_after,
    }
}

/// A zeroed table from the allocator's zeroed pages: at 100M accounts (800 MB) nothing is
/// touched until used, and an impossible size is an error, not an abort.
fn zeroed_balances(max_accounts: u64) -> Result<Vec<i64>, ConfigError> {
    if max_accounts == 0 {
        return Err(ConfigError::NoAccounts);
    }
    if max_accounts > ACCOUNTS_MAX_LIMIT {
        return Err(ConfigError::TooManyAccounts {
            requested: max_accounts,
            limit: ACCOUNTS_MAX_LIMIT,
        });
    }
    let bytes = max_accounts * size_of::<i64>() as u64;
    let out_of_memory = ConfigError::OutOfMemory { bytes };
    let len = usize::try_from(max_accounts).map_err(|_| out_of_memory.clone())?;
    let layout = Layout::array::<i64>(len).map_err(|_| out_of_memory.clone())?;
    // SAFETY: `layout` has a non-zero size (len >= 1) and i64's alignment.
    let ptr = unsafe { alloc::alloc_zeroed(layout) }.cast::<i64>();
    if ptr.is_null() {
        return Err(out_of_memory);
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `[i64; len]`,
    // all of its bytes are zero (a valid i64), and capacity == len matches that layout.
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}
