//! Property tests: random, often hostile, operation sequences against the state machine and
//! against a small reference model written independently (i128 arithmetic, a hash map of
//! balances), in the spirit of TigerBeetle's auditor.

use std::collections::HashMap;

use ledger_core::transaction::{
    AMOUNT_MAX, COMPOSITE_STEPS_MAX, CompositeOperation, Entry, FailReason, Operation, Outcome,
    Step,
};
use ledger_core::transactor::{Transactor, TransactorConfig};
use proptest::prelude::*;

const MAX_ACCOUNTS: u64 = 8;
const WINDOW_NS: u64 = 5_000;

fn config() -> TransactorConfig {
    TransactorConfig {
        max_accounts: MAX_ACCOUNTS,
        dedup_window_ns: WINDOW_NS,
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

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        3 => (account(), amount(), user_ref())
            .prop_map(|(account, amount, user_ref)| Operation::Deposit { account, amount, user_ref }),
        2 => (account(), amount(), user_ref())
            .prop_map(|(account, amount, user_ref)| Operation::Withdrawal { account, amount, user_ref }),
        3 => (account(), account(), amount(), user_ref())
            .prop_map(|(from, to, amount, user_ref)| Operation::Transfer { from, to, amount, user_ref }),
        2 => composite(),
    ]
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
}

impl Model {
    fn balance(&self, account: u64) -> i128 {
        self.balances.get(&account).copied().unwrap_or(0)
    }

    fn execute(&mut self, tx_id: u64, timestamp_ns: u64, op: &Operation) -> Outcome {
        self.now_ns = self.now_ns.max(timestamp_ns);
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
        for &(account, delta) in &legs {
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
        if user_ref != 0 {
            self.seen.insert(user_ref, (tx_id, self.now_ns));
        }
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
        }
    }
}

/// One executed transaction as the WAL will hold it.
type Record = (u64, u64, u64, Outcome, Vec<Entry>);

fn run(ops: &[(i64, Operation)]) -> (Transactor, Vec<Record>) {
    let mut transactor = Transactor::new(config()).unwrap();
    let mut records = Vec::new();
    let mut now: i64 = 1_000_000;
    for (tx_id, (step, op)) in (1u64..).zip(ops) {
        now = (now + step).max(0);
        let mut entries = Vec::new();
        let outcome = transactor.execute(tx_id, now as u64, op, &mut entries);
        records.push((tx_id, now as u64, op.user_ref(), outcome, entries));
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
        let mut entries = Vec::new();
        for (tx_id, (step, op)) in (1u64..).zip(&ops) {
            now = (now + step).max(0);
            let before = transactor.balances().to_vec();
            let window_before = transactor.dedup().len();
            entries.clear();
            let outcome = transactor.execute(tx_id, now as u64, op, &mut entries);
            prop_assert_eq!(outcome, model.execute(tx_id, now as u64, op), "tx {} {:?}", tx_id, op);
            prop_assert_eq!(transactor.balance_sum(), 0);
            for account in 0..MAX_ACCOUNTS {
                prop_assert_eq!(transactor.balance(account).unwrap() as i128, model.balance(account));
            }
            match outcome {
                Outcome::Rejected(_) => {
                    prop_assert!(entries.is_empty());
                    prop_assert_eq!(transactor.balances(), &before[..]);
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
        for (tx_id, timestamp_ns, user_ref, outcome, entries) in &records {
            replica.replay(*tx_id, *timestamp_ns, *user_ref, *outcome, entries).unwrap();
        }
        prop_assert_eq!(replica.balances(), live.balances());
        prop_assert_eq!(replica.last_tx_id(), live.last_tx_id());
        prop_assert_eq!(
            replica.dedup().entries().collect::<Vec<_>>(),
            live.dedup().entries().collect::<Vec<_>>()
        );
    }
}
