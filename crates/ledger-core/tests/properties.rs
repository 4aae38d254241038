//! Property tests: random, often hostile, operation sequences against the state machine and
//! against a small reference model written independently (i128 arithmetic, a hash map of
//! balances), in the spirit of TigerBeetle's auditor. Accounts are configured now and then
//! (currencies, overdraft limits, maximum balances, frozen, parents), funds are held,
//! posted, voided and expired, and committed transactions are reversed, so every rule
//! meets every operation.

use std::collections::HashMap;

use ledger_core::holds::HoldState;
use ledger_core::transaction::{
    AMOUNT_MAX, AccountConfig, COMPOSITE_STEPS_MAX, CompositeOperation, Effect, Entry, EntryKind,
    FailReason, HIERARCHY_DEPTH_MAX, Operation, Outcome, ReversalTarget, Step,
};
use ledger_core::transactor::{Transactor, TransactorConfig};
use proptest::prelude::*;

const MAX_ACCOUNTS: u64 = 8;
const WINDOW_NS: u64 = 5_000;
/// Short enough that runs forget closed holds, and act on forgotten ones.
const RETENTION_NS: u64 = 3 * WINDOW_NS;
/// Small enough that runs forget closed holds early, by count, often (a larger one is
/// rarely reached within the retention).
const CLOSED_HOLDS_MAX: usize = 1;

fn config() -> TransactorConfig {
    TransactorConfig {
        max_accounts: MAX_ACCOUNTS,
        dedup_window_ns: WINDOW_NS,
        closed_hold_retention_ns: RETENTION_NS,
        closed_holds_max: CLOSED_HOLDS_MAX,
    }
}

fn account() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0..MAX_ACCOUNTS,
        1 => Just(MAX_ACCOUNTS),
        1 => any::<u64>(),
    ]
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        10 => 1..1_000u64,
        1 => Just(0u64),
        1 => Just(AMOUNT_MAX),
        1 => Just(AMOUNT_MAX + 1),
        1 => (AMOUNT_MAX / 2)..=AMOUNT_MAX,
        1 => any::<u64>(),
    ]
}

fn user_ref() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0u64), 2 => 1..5u64]
}

fn step() -> impl Strategy<Value = Step> {
    (any::<bool>(), account(), amount()).prop_map(|(is_credit, account_id, amount)| {
        if is_credit {
            Step::Credit { account_id, amount }
        } else {
            Step::Debit { account_id, amount }
        }
    })
}

/// Mostly balanced composites (pairs of legs), sometimes arbitrary or oversized ones.
fn composite() -> impl Strategy<Value = Operation> {
    let balanced = prop::collection::vec((account(), account(), amount()), 1..5).prop_map(|legs| {
        legs.into_iter()
            .flat_map(|(from, to, amount)| {
                [
                    Step::Credit {
                        account_id: from,
                        amount,
                    },
                    Step::Debit {
                        account_id: to,
                        amount,
                    },
                ]
            })
            .collect::<Vec<_>>()
    });
    let steps = prop_oneof![
        6 => balanced,
        2 => prop::collection::vec(step(), 0..6),
        1 => prop::collection::vec(step(), (COMPOSITE_STEPS_MAX - 2)..(COMPOSITE_STEPS_MAX + 3)),
    ];
    let flags = prop_oneof![4 => Just(0u32), 4 => Just(1u32), 1 => any::<u32>()];
    (steps, flags, user_ref()).prop_map(|(steps, flags, user_ref)| {
        Operation::Composite(Box::new(CompositeOperation {
            steps,
            flags,
            user_ref,
        }))
    })
}

/// Mostly well-formed configurations in a few currencies, sometimes malformed ones.
fn account_config() -> impl Strategy<Value = AccountConfig> {
    let flags = prop_oneof![
        2 => Just(AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS),
        2 => Just(0u32),
        1 => Just(AccountConfig::FROZEN | AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS),
        1 => Just(AccountConfig::FROZEN),
        1 => any::<u32>(),
    ];
    let overdraft = prop_oneof![3 => Just(0u64), 2 => 1..500u64, 1 => Just(AMOUNT_MAX), 1 => Just(AMOUNT_MAX + 1)];
    let max_balance = prop_oneof![
        3 => Just(None),
        2 => (0..2_000i64).prop_map(Some),
        1 => (-500..0i64).prop_map(Some),
        1 => Just(Some(i64::MIN)),
    ];
    let parent = prop_oneof![4 => Just(0u64), 4 => 1..MAX_ACCOUNTS, 1 => Just(MAX_ACCOUNTS)];
    (0..3u32, flags, overdraft, max_balance, parent).prop_map(
        |(currency, flags, overdraft_limit, max_balance, parent)| AccountConfig {
            currency,
            flags,
            overdraft_limit,
            max_balance,
            parent,
        },
    )
}

/// Hold ids: mostly ids an operation of the run may have taken.
fn hold_id() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 1..60u64, 1 => Just(0u64), 1 => any::<u64>()]
}

fn hold_operation() -> impl Strategy<Value = Operation> {
    let timeout = prop_oneof![2 => Just(0u64), 3 => 1..(2 * WINDOW_NS), 1 => Just(u64::MAX)];
    prop_oneof![
        3 => (account(), account(), amount(), timeout, user_ref()).prop_map(
            |(from, to, amount, timeout_ns, user_ref)| Operation::hold(from, to, amount, timeout_ns, user_ref)
        ),
        2 => (hold_id(), prop_oneof![Just(0u64), 1..600u64, amount()], user_ref()).prop_map(
            |(hold_id, amount, user_ref)| Operation::PostHold { hold_id, amount, user_ref }
        ),
        1 => (hold_id(), user_ref()).prop_map(|(hold_id, user_ref)| Operation::VoidHold { hold_id, user_ref }),
        1 => Just(Operation::ExpireHolds),
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        4 => hold_operation(),
        2 => (account(), account_config(), user_ref())
            .prop_map(|(account, config, user_ref)| Operation::configure(account, config, user_ref)),
        3 => (account(), amount(), user_ref())
            .prop_map(|(account, amount, user_ref)| Operation::Deposit { account, amount, user_ref }),
        2 => (account(), amount(), user_ref())
            .prop_map(|(account, amount, user_ref)| Operation::Withdrawal { account, amount, user_ref }),
        3 => (account(), account(), amount(), user_ref())
            .prop_map(|(from, to, amount, user_ref)| Operation::Transfer { from, to, amount, user_ref }),
        2 => composite(),
        // Resolved against the run's records before it is executed (see `resolve`).
        2 => (prop_oneof![8 => 0..60u64, 1 => Just(u64::MAX)], user_ref())
            .prop_map(|(tx_id, user_ref)| Operation::reverse(tx_id, user_ref)),
    ]
}

/// What the ledger does before a reversal enters the pipeline: finds its original among
/// the transactions executed so far.
fn resolve(op: &Operation, records: &[Record]) -> Operation {
    let Operation::Reverse(reversal) = op else {
        return op.clone();
    };
    let mut reversal = reversal.clone();
    let found = usize::try_from(reversal.tx_id)
        .ok()
        .and_then(|id| id.checked_sub(1))
        .and_then(|index| records.get(index));
    reversal.target = match found {
        None => ReversalTarget::NotFound,
        Some((_, _, _, Outcome::Committed, entries, _)) if !entries.is_empty() => {
            ReversalTarget::Entries(entries.clone())
        }
        Some(_) => ReversalTarget::NotReversible,
    };
    Operation::Reverse(reversal)
}

/// (time step, operation): time moves forward by up to one window per transaction, and now
/// and then backwards, as racing producers' timestamps can.
fn timed_operations() -> impl Strategy<Value = Vec<(i64, Operation)>> {
    prop::collection::vec(
        (
            prop_oneof![8 => 0..(WINDOW_NS as i64), 1 => -(WINDOW_NS as i64)..0],
            operation(),
        ),
        1..120,
    )
}

/// The reference model: the rules written the plain way.
#[derive(Default)]
struct Model {
    balances: HashMap<u64, i128>,
    seen: HashMap<u64, (u64, u64)>,
    now_ns: u64,
    /// Configured accounts: configuration, and whether money moved since.
    configs: HashMap<u64, (AccountConfig, bool)>,
    /// The system account's balance per currency.
    system: HashMap<u32, i128>,
    /// Every hold: id -> (from, to, amount, expires_at_ns, state code, posted).
    holds: std::collections::BTreeMap<u64, (u64, u64, u64, u64, u8, u64)>,
    /// Reversed transaction -> its reversal.
    reversed: std::collections::BTreeMap<u64, u64>,
    /// The closed holds remembered, in closing order: (when, id).
    closed: std::collections::VecDeque<(u64, u64)>,
}

const OPEN: u8 = 0;

impl Model {
    fn balance(&self, account: u64) -> i128 {
        self.balances.get(&account).copied().unwrap_or(0)
    }

    fn currency(&self, account: u64) -> u32 {
        self.configs.get(&account).map_or(0, |(c, _)| c.currency)
    }

    fn parent(&self, account: u64) -> u64 {
        self.configs.get(&account).map_or(0, |(c, _)| c.parent)
    }

    /// `account`'s balance plus the balance of every account below it.
    fn aggregate(&self, account: u64) -> i128 {
        (0..MAX_ACCOUNTS)
            .filter(|&a| {
                let mut at = a;
                for _ in 0..=HIERARCHY_DEPTH_MAX {
                    if at == account {
                        return true;
                    }
                    at = self.parent(at);
                    if at == 0 {
                        break;
                    }
                }
                false
            })
            .map(|a| self.balance(a))
            .sum()
    }

    /// The hierarchy's rules for a new configuration of `account`.
    fn check_parent(&self, account: u64, config: &AccountConfig) -> Result<(), FailReason> {
        let current = self
            .configs
            .get(&account)
            .map(|(c, _)| *c)
            .unwrap_or_default();
        let has_children = self.configs.values().any(|(c, _)| c.parent == account);
        let invalid = Err(FailReason::InvalidHierarchy);
        if has_children && (current.parent != config.parent || current.currency != config.currency)
        {
            return invalid;
        }
        if config.parent == 0 {
            return Ok(());
        }
        if config.parent == account || self.currency(config.parent) != config.currency {
            return invalid;
        }
        if config.parent == current.parent {
            return Ok(());
        }
        let mut depth = 1; // the parent
        let mut at = config.parent;
        while self.parent(at) != 0 {
            depth += 1;
            at = self.parent(at);
        }
        if depth + 1 > HIERARCHY_DEPTH_MAX {
            return invalid;
        }
        Ok(())
    }

    /// The system account's balance in `currency`.
    fn system_balance(&self, currency: u32) -> i128 {
        self.system.get(&currency).copied().unwrap_or(0)
    }

    /// What open holds reserve out of and into `account`.
    fn reserved(&self, account: u64) -> (i128, i128) {
        let open = self.holds.values().filter(|h| h.4 == OPEN);
        let out = open
            .clone()
            .filter(|h| h.0 == account)
            .map(|h| h.2 as i128)
            .sum();
        let inbound = open.filter(|h| h.1 == account).map(|h| h.2 as i128).sum();
        (out, inbound)
    }

    fn has_open_hold(&self, account: u64) -> bool {
        self.holds
            .values()
            .any(|h| h.4 == OPEN && (h.0 == account || h.1 == account))
    }

    fn frozen(&self, account: u64) -> bool {
        account != 0
            && self
                .configs
                .get(&account)
                .is_some_and(|(c, _)| c.flags & AccountConfig::FROZEN != 0)
    }

    fn note_moved(&mut self, account: u64) {
        if let Some((_, moved)) = self.configs.get_mut(&account) {
            *moved = true;
        }
    }

    /// Frozen accounts, then one currency (the system account is in every one).
    fn check_pair(&self, from: u64, to: u64) -> Result<(), FailReason> {
        if self.frozen(from) || self.frozen(to) {
            return Err(FailReason::AccountFrozen);
        }
        if from != 0 && to != 0 && self.currency(from) != self.currency(to) {
            return Err(FailReason::CurrencyMismatch);
        }
        Ok(())
    }

    fn hold(&mut self, tx_id: u64, op: &Operation) -> Result<(), FailReason> {
        let Operation::Hold(ref request) = *op else {
            unreachable!()
        };
        let (from, to, amount) = (request.from, request.to, request.amount);
        let expires_at = self.hold_expiry(op).unwrap_or(0);
        self.check_pair(from, to)?;
        let (from_out, _) = self.reserved(from);
        let (_, to_in) = self.reserved(to);
        if from_out + amount as i128 > u64::MAX as i128 || to_in + amount as i128 > u64::MAX as i128
        {
            return Err(FailReason::BalanceOverflow);
        }
        if from != 0 {
            let config = self.configs.get(&from).map(|(c, _)| *c).unwrap_or_default();
            let min = (config.flags & AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS != 0)
                .then(|| -(config.overdraft_limit as i128));
            if min.is_some_and(|m| self.balance(from) - from_out - (amount as i128) < m) {
                return Err(FailReason::InsufficientFunds);
            }
        }
        if to != 0
            && let Some(max) = self.configs.get(&to).and_then(|(c, _)| c.max_balance)
            && self.balance(to) + to_in + amount as i128 > max as i128
        {
            return Err(FailReason::MaxBalanceExceeded);
        }
        self.holds
            .insert(tx_id, (from, to, amount, expires_at, OPEN, 0));
        self.note_moved(from);
        self.note_moved(to);
        Ok(())
    }

    /// A hold's expiry (0: never), or `None` if it does not fit a u64.
    fn hold_expiry(&self, op: &Operation) -> Option<u64> {
        match *op {
            Operation::Hold(ref h) if h.timeout_ns == 0 => Some(0),
            Operation::Hold(ref h) => self.now_ns.checked_add(h.timeout_ns),
            _ => unreachable!(),
        }
    }

    /// The open, unexpired hold `id`.
    fn open_hold(&self, id: u64) -> Result<(u64, u64, u64, u64, u8, u64), FailReason> {
        let hold = *self.holds.get(&id).ok_or(FailReason::HoldNotFound)?;
        if hold.4 != OPEN {
            return Err(FailReason::HoldClosed);
        }
        if hold.3 != 0 && self.now_ns >= hold.3 {
            return Err(FailReason::HoldExpired);
        }
        Ok(hold)
    }

    fn post(&mut self, id: u64, amount: u64) -> Result<(), FailReason> {
        let (from, to, held, ..) = self.open_hold(id)?;
        let amount = if amount == 0 { held } else { amount };
        if amount > held {
            return Err(FailReason::HoldExceeded);
        }
        self.check_pair(from, to)?;
        let (from_after, to_after) = (
            self.balance(from) - amount as i128,
            self.balance(to) + amount as i128,
        );
        let fits = |b: i128| b >= i64::MIN as i128 && b <= i64::MAX as i128;
        if !fits(from_after) || !fits(to_after) {
            return Err(FailReason::BalanceOverflow);
        }
        let currency = if from != 0 {
            self.currency(from)
        } else {
            self.currency(to)
        };
        let system_delta = if from == 0 {
            -(amount as i128)
        } else if to == 0 {
            amount as i128
        } else {
            0
        };
        let system_after = self.system_balance(currency) + system_delta;
        if currency != 0 && !fits(system_after) {
            return Err(FailReason::BalanceOverflow);
        }
        self.system.insert(currency, system_after);
        self.balances.insert(from, from_after);
        self.balances.insert(to, to_after);
        self.note_moved(from);
        self.note_moved(to);
        self.holds.get_mut(&id).unwrap().5 = amount;
        self.close(id, 1);
        Ok(())
    }

    /// A reversal: the target, not reversed before, then its inverse legs under every
    /// account's rules (a decrease of an unconfigured account may not end below zero).
    fn reverse(
        &mut self,
        tx_id: u64,
        original: u64,
        target: &ReversalTarget,
        op: &Operation,
    ) -> Result<(), FailReason> {
        let entries = match target {
            ReversalTarget::Entries(entries) => entries,
            ReversalTarget::Unresolved => return Err(FailReason::InvalidOperation),
            ReversalTarget::NotFound => return Err(FailReason::TransactionNotFound),
            ReversalTarget::NotReversible => return Err(FailReason::NotReversible),
        };
        if original == 0 || original >= tx_id {
            return Err(FailReason::TransactionNotFound);
        }
        if self.reversed.contains_key(&original) {
            return Err(FailReason::AlreadyReversed);
        }
        let legs: Vec<(u64, i128)> = entries
            .iter()
            .map(|e| {
                let sign = if e.kind == EntryKind::Credit { 1 } else { -1 };
                (e.account_id, sign * e.amount as i128)
            })
            .collect();
        self.ruled(op, &legs)?;
        self.reversed.insert(original, tx_id);
        Ok(())
    }

    fn expire(&mut self) {
        let mut due: Vec<(u64, u64)> = self
            .holds
            .iter()
            .filter(|(_, h)| h.4 == OPEN && h.3 != 0 && h.3 <= self.now_ns)
            .map(|(&id, h)| (h.3, id))
            .collect();
        due.sort_unstable();
        for (_, id) in due.into_iter().take(255) {
            self.close(id, 3);
        }
    }

    fn configure(&mut self, account: u64, config: AccountConfig) -> Outcome {
        let (current, moved) = self
            .configs
            .get(&account)
            .map_or((0, false), |(c, m)| (c.currency, *m));
        if config.currency != current && (self.balance(account) != 0 || moved) {
            return Outcome::Rejected(FailReason::CurrencyFixed);
        }
        if let Err(reason) = self.check_parent(account, &config) {
            return Outcome::Rejected(reason);
        }
        let moved = moved && config.currency == current;
        self.configs.insert(account, (config, moved));
        Outcome::Committed
    }

    /// A movement touching a configured account: frozen, currency, overflow, each
    /// account's bounds on its net change in first-touch order, then the system
    /// account's balance in the currency.
    fn ruled(&mut self, op: &Operation, legs: &[(u64, i128)]) -> Result<(), FailReason> {
        let others: Vec<u64> = legs.iter().map(|&(a, _)| a).filter(|&a| a != 0).collect();
        let frozen = |a: &u64| {
            self.configs
                .get(a)
                .is_some_and(|(c, _)| c.flags & AccountConfig::FROZEN != 0)
        };
        if others.iter().any(frozen) {
            return Err(FailReason::AccountFrozen);
        }
        let currency = others.first().map_or(0, |&a| self.currency(a));
        if others.iter().any(|&a| self.currency(a) != currency) {
            return Err(FailReason::CurrencyMismatch);
        }
        let mut next = self.balances.clone();
        for &(account, delta) in legs {
            let balance = next.entry(account).or_insert(0);
            *balance += delta;
            if *balance > i64::MAX as i128 || *balance < i64::MIN as i128 {
                return Err(FailReason::BalanceOverflow);
            }
        }
        let mut seen = Vec::new();
        for &a in &others {
            if seen.contains(&a) {
                continue;
            }
            seen.push(a);
            let (before, after) = (self.balance(a), next[&a]);
            let (out, inbound) = self.reserved(a);
            let available = after - out;
            match self.configs.get(&a) {
                Some((c, _)) => {
                    let min = (c.flags & AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS != 0)
                        .then(|| -(c.overdraft_limit as i128));
                    if after < before && min.is_some_and(|m| available < m) {
                        return Err(FailReason::InsufficientFunds);
                    }
                    if after > before && c.max_balance.is_some_and(|m| after + inbound > m as i128)
                    {
                        return Err(FailReason::MaxBalanceExceeded);
                    }
                }
                None => {
                    let below = match op {
                        Operation::Composite(c) => {
                            c.flags & CompositeOperation::CHECK_NEGATIVE_BALANCE != 0
                                && available < 0
                        }
                        _ => after < before && available < 0,
                    };
                    if below {
                        return Err(FailReason::InsufficientFunds);
                    }
                }
            }
        }
        let system_delta: i128 = legs.iter().filter(|&&(a, _)| a == 0).map(|&(_, d)| d).sum();
        let system_after = self.system_balance(currency) + system_delta;
        if currency != 0 && (system_after > i64::MAX as i128 || system_after < i64::MIN as i128) {
            return Err(FailReason::BalanceOverflow);
        }
        self.system.insert(currency, system_after);
        self.balances = next;
        for a in others {
            if let Some((_, moved)) = self.configs.get_mut(&a) {
                *moved = true;
            }
        }
        Ok(())
    }

    /// Records that hold `id` closed now, as `state`.
    fn close(&mut self, id: u64, state: u8) {
        self.holds.get_mut(&id).unwrap().4 = state;
        self.closed.push_back((self.now_ns, id));
        // Beyond the maximum, the first closed is forgotten.
        if self.closed.len() > CLOSED_HOLDS_MAX {
            let (_, first) = self.closed.pop_front().unwrap();
            self.holds.remove(&first);
        }
    }

    fn execute(&mut self, tx_id: u64, timestamp_ns: u64, op: &Operation) -> Outcome {
        self.now_ns = self.now_ns.max(timestamp_ns);
        // Closed holds are forgotten once their retention has passed.
        if let Some(up_to) = self.now_ns.checked_sub(RETENTION_NS) {
            while let Some(&(at, id)) = self.closed.front()
                && at <= up_to
            {
                self.closed.pop_front();
                self.holds.remove(&id);
            }
        }
        let legs = match self.check(op) {
            Ok(legs) => legs,
            Err(reason) => return Outcome::Rejected(reason),
        };
        let user_ref = op.user_ref();
        if let Some(&(original, at)) = self.seen.get(&user_ref)
            && user_ref != 0
            && self.now_ns - at < WINDOW_NS
        {
            return Outcome::Rejected(FailReason::Duplicate {
                original_tx_id: original,
            });
        }
        let outcome = self.execute_checked(tx_id, op, &legs);
        if outcome.is_committed() && user_ref != 0 {
            self.seen.insert(user_ref, (tx_id, self.now_ns));
        }
        outcome
    }

    /// An operation past the shape and duplicate checks.
    fn execute_checked(&mut self, tx_id: u64, op: &Operation, legs: &[(u64, i128)]) -> Outcome {
        let result = match *op {
            Operation::ConfigureAccount {
                account,
                ref config,
                ..
            } => return self.configure(account, **config),
            Operation::Hold(_) => Some(self.hold(tx_id, op)),
            Operation::PostHold {
                hold_id, amount, ..
            } => Some(self.post(hold_id, amount)),
            Operation::VoidHold { hold_id, .. } => {
                Some(self.open_hold(hold_id).map(|_| self.close(hold_id, 2)))
            }
            Operation::ExpireHolds => {
                self.expire();
                Some(Ok(()))
            }
            Operation::Reverse(ref r) => Some(self.reverse(tx_id, r.tx_id, &r.target, op)),
            _ => None,
        };
        if let Some(result) = result {
            return match result {
                Ok(()) => Outcome::Committed,
                Err(reason) => Outcome::Rejected(reason),
            };
        }
        let ruled = |m: &Model, a: &u64| m.configs.contains_key(a) || m.has_open_hold(*a);
        let configured = match *op {
            Operation::Transfer { from, to, .. } => ruled(self, &from) || ruled(self, &to),
            _ => legs.iter().any(|(a, _)| ruled(self, a)),
        };
        if configured {
            return match self.ruled(op, legs) {
                Ok(()) => Outcome::Committed,
                Err(reason) => Outcome::Rejected(reason),
            };
        }
        // Funds checks for the simple operations.
        let insufficient = match *op {
            Operation::Withdrawal {
                account, amount, ..
            } => self.balance(account) < amount as i128,
            Operation::Transfer {
                from, to, amount, ..
            } => from != 0 && from != to && self.balance(from) < amount as i128,
            _ => false,
        };
        if insufficient {
            return Outcome::Rejected(FailReason::InsufficientFunds);
        }
        // Apply leg by leg; every intermediate balance must fit an i64.
        let mut next = self.balances.clone();
        for &(account, delta) in legs {
            let balance = next.entry(account).or_insert(0);
            *balance += delta;
            if *balance > i64::MAX as i128 || *balance < i64::MIN as i128 {
                return Outcome::Rejected(FailReason::BalanceOverflow);
            }
        }
        if let Operation::Composite(c) = op {
            let checked = c.flags & CompositeOperation::CHECK_NEGATIVE_BALANCE != 0;
            if checked && legs.iter().any(|&(a, _)| a != 0 && next[&a] < 0) {
                return Outcome::Rejected(FailReason::InsufficientFunds);
            }
        }
        self.balances = next;
        Outcome::Committed
    }

    /// The shape checks, in the documented order; on success, the signed legs.
    fn check(&self, op: &Operation) -> Result<Vec<(u64, i128)>, FailReason> {
        let valid_amount = |amount: u64| (1..=AMOUNT_MAX).contains(&amount);
        let in_range = |account: u64| {
            if account < MAX_ACCOUNTS {
                Ok(())
            } else {
                Err(FailReason::AccountLimitExceeded)
            }
        };
        match *op {
            Operation::Deposit {
                account, amount, ..
            }
            | Operation::Withdrawal {
                account, amount, ..
            } => {
                if !valid_amount(amount) || account == 0 {
                    return Err(FailReason::InvalidOperation);
                }
                in_range(account)?;
                let a = amount as i128;
                Ok(if matches!(op, Operation::Deposit { .. }) {
                    vec![(0, -a), (account, a)]
                } else {
                    vec![(account, -a), (0, a)]
                })
            }
            Operation::Transfer {
                from, to, amount, ..
            } => {
                if !valid_amount(amount) {
                    return Err(FailReason::InvalidOperation);
                }
                in_range(from)?;
                in_range(to)?;
                let a = amount as i128;
                Ok(if from == to {
                    vec![]
                } else {
                    vec![(from, -a), (to, a)]
                })
            }
            Operation::Composite(ref c) => {
                if c.flags & !1 != 0 || c.steps.is_empty() {
                    return Err(FailReason::InvalidOperation);
                }
                if c.steps.len() > COMPOSITE_STEPS_MAX {
                    return Err(FailReason::EntryLimitExceeded);
                }
                let mut legs = Vec::new();
                for s in &c.steps {
                    let (account, amount, sign) = match *s {
                        Step::Credit { account_id, amount } => (account_id, amount, -1),
                        Step::Debit { account_id, amount } => (account_id, amount, 1),
                    };
                    if !valid_amount(amount) {
                        return Err(FailReason::InvalidOperation);
                    }
                    in_range(account)?;
                    legs.push((account, sign * amount as i128));
                }
                if legs.iter().map(|&(_, d)| d).sum::<i128>() != 0 {
                    return Err(FailReason::ZeroSumViolation);
                }
                Ok(legs)
            }
            Operation::ConfigureAccount {
                account,
                ref config,
                ..
            } => {
                if account == 0 {
                    return Err(FailReason::InvalidOperation);
                }
                in_range(account)?;
                let bounded = config.flags & AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS != 0;
                let min = if bounded {
                    -(config.overdraft_limit as i128)
                } else {
                    i128::MIN
                };
                if config.flags & !3 != 0
                    || config.overdraft_limit > AMOUNT_MAX
                    || (!bounded && config.overdraft_limit != 0)
                    || config.max_balance.is_some_and(|m| (m as i128) < min)
                {
                    return Err(FailReason::InvalidOperation);
                }
                if config.parent != 0 {
                    in_range(config.parent)?;
                }
                Ok(Vec::new())
            }
            Operation::Hold(ref h) => {
                let (from, to) = (h.from, h.to);
                if !valid_amount(h.amount) || self.hold_expiry(op).is_none() || from == to {
                    return Err(FailReason::InvalidOperation);
                }
                in_range(from)?;
                in_range(to)?;
                Ok(Vec::new())
            }
            Operation::PostHold { .. }
            | Operation::VoidHold { .. }
            | Operation::ExpireHolds
            | Operation::Reverse(_) => Ok(Vec::new()),
        }
    }
}

/// One executed transaction as the WAL will hold it.
type Record = (u64, u64, u64, Outcome, Vec<Entry>, Vec<Effect>);

fn run(ops: &[(i64, Operation)]) -> (Transactor, Vec<Record>) {
    let mut transactor = Transactor::new(config()).unwrap();
    let mut records = Vec::new();
    let mut now: i64 = 1_000_000;
    for (tx_id, (step, op)) in (1u64..).zip(ops) {
        now = (now + step).max(0);
        let (mut entries, mut effects) = (Vec::new(), Vec::new());
        let op = resolve(op, &records);
        let outcome = transactor.execute(tx_id, now as u64, &op, &mut entries, &mut effects);
        records.push((tx_id, now as u64, op.user_ref(), outcome, entries, effects));
    }
    (transactor, records)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_the_model_and_keeps_zero_sum(ops in timed_operations()) {
        let mut transactor = Transactor::new(config()).unwrap();
        let mut model = Model::default();
        let mut now: i64 = 1_000_000;
        let (mut entries, mut effects) = (Vec::new(), Vec::new());
        let mut records: Vec<Record> = Vec::new();
        for (tx_id, (step, op)) in (1u64..).zip(&ops) {
            now = (now + step).max(0);
            let op = &resolve(op, &records);
            let before = transactor.balances().to_vec();
            let accounts_before = transactor.accounts().sorted();
            let holds_before = transactor.holds().sorted();
            let window_before = transactor.dedup().len();
            entries.clear();
            effects.clear();
            let outcome = transactor.execute(tx_id, now as u64, op, &mut entries, &mut effects);
            prop_assert_eq!(outcome, model.execute(tx_id, now as u64, op), "tx {} {:?}", tx_id, op);
            records.push((tx_id, now as u64, op.user_ref(), outcome, entries.clone(), effects.clone()));
            prop_assert_eq!(
                transactor.reversals(),
                model.reversed.iter().map(|(&o, &r)| (o, r)).collect::<Vec<_>>()
            );
            for account in 0..MAX_ACCOUNTS {
                prop_assert_eq!(
                    transactor.aggregate_balance(account).unwrap(),
                    model.aggregate(account),
                    "aggregate of {}", account
                );
            }
            prop_assert_eq!(transactor.balance_sum(), 0);
            prop_assert_eq!(transactor.accounts().unbalanced_currency(transactor.balances()), None);
            let unmoved = transactor.accounts().sorted().iter().filter(|(_, s)| !s.moved).count();
            prop_assert_eq!(transactor.accounts().unmoved(), unmoved);
            for account in 0..MAX_ACCOUNTS {
                prop_assert_eq!(transactor.balance(account).unwrap() as i128, model.balance(account));
                let config = model.configs.get(&account).map(|(c, _)| *c).unwrap_or_default();
                prop_assert_eq!(transactor.account_config(account), Some(config));
            }
            for currency in 1..3 {
                prop_assert_eq!(transactor.system_balance(currency), model.system_balance(currency));
            }
            let holds: Vec<_> = transactor
                .holds()
                .sorted()
                .into_iter()
                .map(|(id, h)| (id, (h.from, h.to, h.amount, h.expires_at_ns, h.state.code(), h.posted)))
                .collect();
            prop_assert_eq!(holds, model.holds.iter().map(|(&id, &h)| (id, h)).collect::<Vec<_>>());
            for account in 0..MAX_ACCOUNTS {
                let (out, inbound) = model.reserved(account);
                let reserved = transactor.holds().reserved(account);
                prop_assert_eq!((reserved.outgoing as i128, reserved.incoming as i128), (out, inbound));
                let listed: Vec<u64> = transactor.holds().open_of(account, 0, usize::MAX).map(|(id, _)| id).collect();
                let open: Vec<u64> = model
                    .holds
                    .iter()
                    .filter(|(_, h)| h.4 == OPEN && (h.0 == account || h.1 == account))
                    .map(|(&id, _)| id)
                    .collect();
                prop_assert_eq!(listed, open, "open holds of {}", account);
            }
            match outcome {
                Outcome::Rejected(_) => {
                    prop_assert!(entries.is_empty() && effects.is_empty());
                    prop_assert_eq!(transactor.balances(), &before[..]);
                    prop_assert_eq!(transactor.accounts().sorted(), accounts_before);
                    // Nothing changes but what time does: forgetting closed holds.
                    let kept: Vec<_> = holds_before
                        .iter()
                        .filter(|(id, h)| {
                            h.state == HoldState::Open || transactor.holds().get(*id).is_some()
                        })
                        .copied()
                        .collect();
                    prop_assert_eq!(transactor.holds().sorted(), kept);
                    prop_assert!(transactor.dedup().len() <= window_before);
                }
                Outcome::Committed => {
                    prop_assert_eq!(entries.iter().map(Entry::delta).sum::<i128>(), 0);
                }
            }
        }
    }

    #[test]
    fn same_inputs_give_identical_outputs(ops in timed_operations()) {
        let (a, records_a) = run(&ops);
        let (b, records_b) = run(&ops);
        prop_assert_eq!(records_a, records_b);
        prop_assert_eq!(a.balances(), b.balances());
    }

    #[test]
    fn replaying_entries_reproduces_the_state(ops in timed_operations()) {
        let (live, records) = run(&ops);
        let mut replica = Transactor::new(config()).unwrap();
        for (tx_id, timestamp_ns, user_ref, outcome, entries, effects) in &records {
            replica.replay(*tx_id, *timestamp_ns, *user_ref, *outcome, entries, effects).unwrap();
        }
        prop_assert_eq!(replica.balances(), live.balances());
        prop_assert_eq!(replica.accounts().sorted(), live.accounts().sorted());
        prop_assert_eq!(replica.holds().sorted(), live.holds().sorted());
        prop_assert_eq!(replica.reversals(), live.reversals());
        prop_assert_eq!(replica.accounts().unmoved(), live.accounts().unmoved());
        for account in 0..MAX_ACCOUNTS {
            prop_assert_eq!(replica.aggregate_balance(account), live.aggregate_balance(account));
        }
        prop_assert_eq!(
            replica.accounts().system_balances().collect::<Vec<_>>(),
            live.accounts().system_balances().collect::<Vec<_>>()
        );
        prop_assert_eq!(replica.last_tx_id(), live.last_tx_id());
        prop_assert_eq!(
            replica.dedup().entries().collect::<Vec<_>>(),
            live.dedup().entries().collect::<Vec<_>>()
        );
    }
}
