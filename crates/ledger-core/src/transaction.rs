//! The vocabulary of the ledger: operations that come in, entries and outcomes that go out.
//!
//! Sign convention (the product's): a **credit** takes funds out of an account (its balance
//! goes down), a **debit** brings funds in (its balance goes up). Every committed transaction
//! has as much credited as debited, so the sum of all balances is always zero.

use std::fmt;

/// An account id. Accounts exist from first use; ids index the dense balance table.
pub type AccountId = u64;

/// A transaction id: the sequence number the sequencer assigned. Monotonic and gap-free.
pub type TxId = u64;

/// The system account: source of deposits, sink of withdrawals. It may go negative.
pub const SYSTEM_ACCOUNT: AccountId = 0;

/// At most this many steps in one composite operation.
pub const COMPOSITE_STEPS_MAX: usize = 255;

/// The largest amount an operation may move (an amount must fit a balance).
pub const AMOUNT_MAX: u64 = i64::MAX as u64;

/// What a caller asks the ledger to do. Amounts are integer minor units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Funds arrive in `account` from the system account.
    Deposit {
        account: AccountId,
        amount: u64,
        user_ref: u64,
    },
    /// Funds leave `account` to the system account; may not overdraw.
    Withdrawal {
        account: AccountId,
        amount: u64,
        user_ref: u64,
    },
    /// Funds move from `from` to `to`; may not overdraw `from`. `from == to` is a no-op.
    Transfer {
        from: AccountId,
        to: AccountId,
        amount: u64,
        user_ref: u64,
    },
    /// Several steps executed atomically: all or nothing.
    Composite(Box<CompositeOperation>),
    /// Sets `account`'s currency and rules (see [`AccountConfig`]); effective from this
    /// transaction on. Logged, replayed and snapshotted like any other transaction.
    /// (Boxed, like a composite's steps: every ring slot holds an `Operation`, and the
    /// common ones fit 32 bytes.)
    ConfigureAccount {
        account: AccountId,
        config: Box<AccountConfig>,
        user_ref: u64,
    },
    /// Reserves funds for a later transfer: see [`HoldRequest`] (boxed for the same
    /// reason).
    Hold(Box<HoldRequest>),
    /// Moves `amount` (0: all) of open hold `hold_id` from its `from` to its `to`, and
    /// releases the rest.
    PostHold {
        hold_id: TxId,
        amount: u64,
        user_ref: u64,
    },
    /// Releases open hold `hold_id`.
    VoidHold { hold_id: TxId, user_ref: u64 },
    /// Releases every open hold whose timeout has passed (at most
    /// [`EXPIRIES_PER_TRANSACTION`]): what the ledger submits by itself, so that holds
    /// expire in the log, on an idle ledger too.
    ExpireHolds,
    /// Undoes a committed transaction: see [`Reversal`] (boxed: it carries the
    /// original's entries).
    Reverse(Box<Reversal>),
}

/// A reversal: commits the exact inverse of committed transaction `tx_id`'s entries (each
/// amount moved back) as a new transaction linked to it, under every account's rules as
/// they are now. A transaction is reversed at most once.
///
/// The ledger reads the original from its log when the reversal is submitted and puts
/// what it found in `target` (whatever the caller put there is replaced): the state
/// machine keeps no past transaction's entries. A caller driving a
/// [`Transactor`](crate::transactor::Transactor) directly resolves `target` itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reversal {
    pub tx_id: TxId,
    pub user_ref: u64,
    pub target: ReversalTarget,
}

/// What a [`Reversal`] found of its original.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ReversalTarget {
    /// Not looked up yet (refused as [`FailReason::InvalidOperation`] if executed so).
    #[default]
    Unresolved,
    /// No transaction has this id: rejected with [`FailReason::TransactionNotFound`].
    NotFound,
    /// The original was rejected, moved no money, or its log segment was deleted:
    /// rejected with [`FailReason::NotReversible`].
    NotReversible,
    /// The original's entries, as its record stores them.
    Entries(Vec<Entry>),
}

/// A hold: reserves `amount` of `from`'s funds for `to` (a card authorisation, an
/// escrow): `from`'s available balance drops, its balance does not. The hold's id is its
/// transaction's id. `timeout_ns` (0: never) after it, in sequencer time, it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldRequest {
    pub from: AccountId,
    pub to: AccountId,
    pub amount: u64,
    pub timeout_ns: u64,
    pub user_ref: u64,
}

impl Operation {
    /// [`Operation::Hold`] of these terms.
    pub fn hold(
        from: AccountId,
        to: AccountId,
        amount: u64,
        timeout_ns: u64,
        user_ref: u64,
    ) -> Operation {
        Operation::Hold(Box::new(HoldRequest {
            from,
            to,
            amount,
            timeout_ns,
            user_ref,
        }))
    }

    /// [`Operation::Reverse`] of committed transaction `tx_id` (the ledger finds its
    /// entries).
    pub fn reverse(tx_id: TxId, user_ref: u64) -> Operation {
        Operation::Reverse(Box::new(Reversal {
            tx_id,
            user_ref,
            target: ReversalTarget::Unresolved,
        }))
    }

    /// [`Operation::ConfigureAccount`] of `account` with `config`.
    pub fn configure(account: AccountId, config: AccountConfig, user_ref: u64) -> Operation {
        Operation::ConfigureAccount {
            account,
            config: Box::new(config),
            user_ref,
        }
    }
}

// Every ring slot holds an Operation: the common ones keep it at 40 bytes.
const _: () = assert!(size_of::<Operation>() == 40);

/// At most this many holds expire in one `ExpireHolds` transaction.
pub const EXPIRIES_PER_TRANSACTION: usize = 255;

impl Operation {
    /// Calls `f` with each account the operation names, in order; of a composite, the
    /// accounts of its first `max_steps` steps only (a bound for prefetching).
    #[inline]
    pub fn for_each_account(&self, max_steps: usize, mut f: impl FnMut(AccountId)) {
        match self {
            Operation::Deposit { account, .. } | Operation::Withdrawal { account, .. } => {
                f(*account)
            }
            Operation::Transfer { from, to, .. } => {
                f(*from);
                f(*to);
            }
            Operation::Composite(composite) => {
                for step in composite.steps.iter().take(max_steps) {
                    let (Step::Credit { account_id, .. } | Step::Debit { account_id, .. }) = step;
                    f(*account_id);
                }
            }
            Operation::ConfigureAccount { account, .. } => f(*account),
            Operation::Hold(hold) => {
                f(hold.from);
                f(hold.to);
            }
            // A post or void names its hold, not its accounts (the transactor, which
            // has the holds, finds them). A reversal is rare: its entries are not worth a
            // branch in the hot loop.
            Operation::PostHold { .. }
            | Operation::VoidHold { .. }
            | Operation::ExpireHolds
            | Operation::Reverse(_) => {}
        }
    }

    /// The caller's idempotency reference; 0 means "no deduplication".
    pub fn user_ref(&self) -> u64 {
        match self {
            Operation::Deposit { user_ref, .. }
            | Operation::Withdrawal { user_ref, .. }
            | Operation::Transfer { user_ref, .. }
            | Operation::ConfigureAccount { user_ref, .. }
            | Operation::PostHold { user_ref, .. }
            | Operation::VoidHold { user_ref, .. } => *user_ref,
            Operation::Composite(composite) => composite.user_ref,
            Operation::Hold(hold) => hold.user_ref,
            Operation::Reverse(reversal) => reversal.user_ref,
            Operation::ExpireHolds => 0,
        }
    }
}

/// A multi-leg operation, e.g. a transfer plus its fee, committed as one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CompositeOperation {
    pub steps: Vec<Step>,
    /// Bit set of `CompositeOperation::CHECK_*` flags; unknown bits are rejected.
    pub flags: u32,
    pub user_ref: u64,
}

impl CompositeOperation {
    /// No account touched by the composite (other than the system account) may end negative.
    pub const CHECK_NEGATIVE_BALANCE: u32 = 0x1;
    /// Every flag bit this version understands.
    pub const FLAGS_KNOWN: u32 = Self::CHECK_NEGATIVE_BALANCE;
}

/// One leg of a composite operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Funds leave `account_id` (its balance goes down).
    Credit { account_id: AccountId, amount: u64 },
    /// Funds arrive in `account_id` (its balance goes up).
    Debit { account_id: AccountId, amount: u64 },
}

/// An account's currency and rules. An account never configured has
/// [`AccountConfig::default`]: currency 0, no negative balance, no maximum (exactly the
/// rules of a ledger without configured accounts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountConfig {
    /// A currency (or asset, or ledger) code. Money moves only between accounts of one
    /// currency; fixed once money has moved.
    pub currency: u32,
    /// Bit set of `AccountConfig::FROZEN` and friends; unknown bits are rejected.
    pub flags: u32,
    /// With [`CREDITS_MUST_NOT_EXCEED_DEBITS`](Self::CREDITS_MUST_NOT_EXCEED_DEBITS): how
    /// far below zero the balance may go (an overdraft or credit line). At most
    /// [`AMOUNT_MAX`]; must be 0 without the flag.
    pub overdraft_limit: u64,
    /// The highest balance the account may reach; `None`: no bound.
    pub max_balance: Option<i64>,
    /// The account this one is a sub-account of (0: none): its balance counts in every
    /// ancestor's aggregate balance. At most [`HIERARCHY_DEPTH_MAX`] accounts from a root
    /// down; a parent is in its sub-accounts' currency.
    pub parent: AccountId,
}

/// The most accounts on a path from a root account down to a sub-account (a root alone
/// is depth 1).
pub const HIERARCHY_DEPTH_MAX: usize = 8;

impl AccountConfig {
    /// No money moves in or out of the account; reads still work.
    pub const FROZEN: u32 = 0x1;
    /// Credits (money out) may not exceed debits (money in) by more than the overdraft
    /// limit: the balance stays at or above `-overdraft_limit`. The rule of every account
    /// never configured; without it a configured account has no lower bound (an account
    /// that issues money, like the system account).
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: u32 = 0x2;
    /// Every flag bit this version understands.
    pub const FLAGS_KNOWN: u32 = Self::FROZEN | Self::CREDITS_MUST_NOT_EXCEED_DEBITS;

    /// Whether `flag` is set.
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// The lowest balance the rules allow; `None`: no bound.
    pub fn min_balance(&self) -> Option<i64> {
        // overdraft_limit <= AMOUNT_MAX = i64::MAX, checked when configured.
        self.has(Self::CREDITS_MUST_NOT_EXCEED_DEBITS)
            .then(|| -(self.overdraft_limit.min(AMOUNT_MAX) as i64))
    }
}

impl AccountConfig {
    /// The rules of an account never configured.
    pub const DEFAULT: AccountConfig = AccountConfig {
        currency: 0,
        flags: Self::CREDITS_MUST_NOT_EXCEED_DEBITS,
        overdraft_limit: 0,
        max_balance: None,
        parent: 0,
    };
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a committed transaction changed besides balances: stored in its record beside
/// the entries, so that recovery and replicas apply it without re-running any rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// `account` has `config` from this transaction on.
    Configured {
        account: AccountId,
        config: AccountConfig,
    },
    /// This transaction opened a hold (its id is the transaction's): `amount` of `from`
    /// reserved for `to` until `expires_at_ns` (0: never).
    HoldOpened {
        from: AccountId,
        to: AccountId,
        amount: u64,
        expires_at_ns: u64,
    },
    /// Hold `hold_id` was posted: `amount` moved (the entries), the rest released.
    HoldPosted { hold_id: TxId, amount: u64 },
    /// Hold `hold_id` was voided: released.
    HoldVoided { hold_id: TxId },
    /// Hold `hold_id` expired: released.
    HoldExpired { hold_id: TxId },
    /// This transaction reverses transaction `tx_id` (its entries are the inverse).
    Reversed { tx_id: TxId },
}

/// Which side of a movement an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// Funds left the account.
    Credit = 0,
    /// Funds arrived in the account.
    Debit = 1,
}

/// One balance change of a committed transaction: the result the WAL stores, so that
/// recovery applies entries and never re-runs business rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub account_id: AccountId,
    /// Always in `1..=AMOUNT_MAX`.
    pub amount: u64,
    pub kind: EntryKind,
    /// The account's balance right after this entry.
    pub balance_after: i64,
}

impl Entry {
    /// The signed change this entry makes to its account's balance.
    pub fn delta(&self) -> i128 {
        match self.kind {
            EntryKind::Credit => -(self.amount as i128),
            EntryKind::Debit => self.amount as i128,
        }
    }
}

/// Why a transaction was rejected. A rejection is a business outcome, not an error: the
/// transaction keeps its id and changes nothing. Codes are part of the wire API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// An account would go below zero (1).
    InsufficientFunds,
    /// Reserved for wire compatibility (2). Accounts exist from first use, so no rule of
    /// this version produces it.
    AccountNotFound,
    /// A composite's credits and debits differ (3).
    ZeroSumViolation,
    /// A composite has more than [`COMPOSITE_STEPS_MAX`] steps (4).
    EntryLimitExceeded,
    /// Malformed: zero amount, amount above [`AMOUNT_MAX`], unknown flag bits, empty
    /// composite, deposit to or withdrawal from the system account (5).
    InvalidOperation,
    /// An account id at or above the configured `max_accounts` (6).
    AccountLimitExceeded,
    /// The same non-zero `user_ref` committed within the dedup window (7).
    Duplicate {
        /// The transaction that committed with this `user_ref`.
        original_tx_id: TxId,
    },
    /// A balance would leave the `i64` range (8).
    BalanceOverflow,
    /// An account the operation moves money in or out of is frozen (9).
    AccountFrozen,
    /// The accounts of one transaction are in different currencies (10).
    CurrencyMismatch,
    /// A balance would rise above its account's `max_balance` (11).
    MaxBalanceExceeded,
    /// A configuration would change the currency of an account that holds money or has
    /// moved money since it was configured (12).
    CurrencyFixed,
    /// No hold has this id (13).
    HoldNotFound,
    /// The hold was already posted, voided or expired (14).
    HoldClosed,
    /// A post of more than the hold reserved (15).
    HoldExceeded,
    /// The hold's timeout has passed (16).
    HoldExpired,
    /// A reversal names a transaction id never issued (17).
    TransactionNotFound,
    /// A reversal names a transaction that was rejected, moved no money, or is no longer
    /// retained (18).
    NotReversible,
    /// The transaction was already reversed (19).
    AlreadyReversed,
    /// A configuration would make a cycle of parents, a hierarchy deeper than
    /// [`HIERARCHY_DEPTH_MAX`], move an account that has sub-accounts, or name a parent
    /// in another currency (20).
    InvalidHierarchy,
    /// A reason defined by user logic, code 128-255.
    UserDefined(UserFailCode),
}

impl FailReason {
    /// The stable wire code (1-255).
    pub fn code(&self) -> u8 {
        match self {
            FailReason::InsufficientFunds => 1,
            FailReason::AccountNotFound => 2,
            FailReason::ZeroSumViolation => 3,
            FailReason::EntryLimitExceeded => 4,
            FailReason::InvalidOperation => 5,
            FailReason::AccountLimitExceeded => 6,
            FailReason::Duplicate { .. } => 7,
            FailReason::BalanceOverflow => 8,
            FailReason::AccountFrozen => 9,
            FailReason::CurrencyMismatch => 10,
            FailReason::MaxBalanceExceeded => 11,
            FailReason::CurrencyFixed => 12,
            FailReason::HoldNotFound => 13,
            FailReason::HoldClosed => 14,
            FailReason::HoldExceeded => 15,
            FailReason::HoldExpired => 16,
            FailReason::TransactionNotFound => 17,
            FailReason::NotReversible => 18,
            FailReason::AlreadyReversed => 19,
            FailReason::InvalidHierarchy => 20,
            FailReason::UserDefined(code) => code.get(),
        }
    }

    /// Rebuilds a reason from its code; `duplicate_of` is used for code 7 only.
    /// Returns `None` for 0 and for unassigned standard codes (21-127).
    pub fn from_code(code: u8, duplicate_of: TxId) -> Option<FailReason> {
        Some(match code {
            1 => FailReason::InsufficientFunds,
            2 => FailReason::AccountNotFound,
            3 => FailReason::ZeroSumViolation,
            4 => FailReason::EntryLimitExceeded,
            5 => FailReason::InvalidOperation,
            6 => FailReason::AccountLimitExceeded,
            7 => FailReason::Duplicate {
                original_tx_id: duplicate_of,
            },
            8 => FailReason::BalanceOverflow,
            9 => FailReason::AccountFrozen,
            10 => FailReason::CurrencyMismatch,
            11 => FailReason::MaxBalanceExceeded,
            12 => FailReason::CurrencyFixed,
            13 => FailReason::HoldNotFound,
            14 => FailReason::HoldClosed,
            15 => FailReason::HoldExceeded,
            16 => FailReason::HoldExpired,
            17 => FailReason::TransactionNotFound,
            18 => FailReason::NotReversible,
            19 => FailReason::AlreadyReversed,
            20 => FailReason::InvalidHierarchy,
            _ => FailReason::UserDefined(UserFailCode::new(code)?),
        })
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::InsufficientFunds => f.write_str("insufficient funds"),
            FailReason::AccountNotFound => f.write_str("account not found"),
            FailReason::ZeroSumViolation => f.write_str("credits and debits do not sum to zero"),
            FailReason::EntryLimitExceeded => write!(f, "more than {COMPOSITE_STEPS_MAX} steps"),
            FailReason::InvalidOperation => f.write_str("invalid operation"),
            FailReason::AccountLimitExceeded => {
                f.write_str("account id above the configured limit")
            }
            FailReason::Duplicate { original_tx_id } => {
                write!(f, "duplicate of transaction {original_tx_id}")
            }
            FailReason::BalanceOverflow => f.write_str("balance would overflow"),
            FailReason::AccountFrozen => f.write_str("account is frozen"),
            FailReason::CurrencyMismatch => f.write_str("accounts are in different currencies"),
            FailReason::MaxBalanceExceeded => f.write_str("balance would exceed its maximum"),
            FailReason::CurrencyFixed => {
                f.write_str("the account's currency is fixed once money has moved")
            }
            FailReason::HoldNotFound => f.write_str("no hold has this id"),
            FailReason::HoldClosed => f.write_str("the hold was already posted, voided or expired"),
            FailReason::HoldExceeded => f.write_str("the post is more than the hold reserved"),
            FailReason::HoldExpired => f.write_str("the hold has expired"),
            FailReason::TransactionNotFound => f.write_str("no transaction has this id"),
            FailReason::NotReversible => {
                f.write_str("the transaction moved no money or is no longer retained")
            }
            FailReason::AlreadyReversed => f.write_str("the transaction was already reversed"),
            FailReason::InvalidHierarchy => f.write_str(
                "the parent would make a cycle, a hierarchy too deep, move an account with \
                 sub-accounts, or is in another currency",
            ),
            FailReason::UserDefined(code) => write!(f, "user-defined reason {}", code.get()),
        }
    }
}

/// A user-defined fail code: always in 128-255.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserFailCode(u8);

impl UserFailCode {
    /// The first code reserved for user logic.
    pub const MIN: u8 = 128;

    /// `None` unless `code >= 128`.
    pub fn new(code: u8) -> Option<UserFailCode> {
        (code >= Self::MIN).then_some(UserFailCode(code))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// What executing one operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Applied; its entries were appended to the caller's buffer.
    Committed,
    /// Nothing changed; no entries were appended.
    Rejected(FailReason),
}

impl Outcome {
    pub fn is_committed(&self) -> bool {
        matches!(self, Outcome::Committed)
    }
}

/// How far along the pipeline a caller waits for a transaction to get.
///
/// Each level implies the ones before it: a transaction visible to balance reads is
/// durable, and a durable one has been executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum WaitLevel {
    /// Executed by the transactor: its outcome is known, it may not be durable yet.
    Processed,
    /// Durable in the write-ahead log (`fdatasync` returned): it survives a crash.
    #[default]
    Committed,
    /// Applied to the balances that reads see (and to the next snapshot).
    Snapshotted,
    /// Durable (`fdatasync`'d) on a majority of the cluster's nodes: it survives the loss
    /// of any minority of machines. On a single node the same as `Committed`; in a cluster
    /// `Committed` waits for the majority too.
    Replicated,
}

/// What [`Ledger::submit_and_wait`](crate::ledger::Ledger::submit_and_wait) reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubmitResult {
    /// The id the sequencer assigned.
    pub tx_id: TxId,
    /// `None` if the transaction committed, else why it was rejected.
    pub fail_reason: Option<FailReason>,
}

impl SubmitResult {
    /// The result of transaction `tx_id` with `outcome`.
    pub fn new(tx_id: TxId, outcome: Outcome) -> SubmitResult {
        let fail_reason = match outcome {
            Outcome::Committed => None,
            Outcome::Rejected(reason) => Some(reason),
        };
        SubmitResult { tx_id, fail_reason }
    }

    pub fn is_committed(&self) -> bool {
        self.fail_reason.is_none()
    }

    /// The outcome this result reports.
    pub fn outcome(&self) -> Outcome {
        match self.fail_reason {
            None => Outcome::Committed,
            Some(reason) => Outcome::Rejected(reason),
        }
    }
}
