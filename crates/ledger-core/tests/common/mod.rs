//! The state machine's test harness, shared by the rules tests: a transactor plus the
//! bookkeeping every test repeats, and builders for operations, steps and entries.
// Each test binary uses a part of it.
#![allow(dead_code)]

use ledger_core::transaction::{
    CompositeOperation, Effect, Entry, EntryKind, FailReason, Operation, Outcome, Step,
};
use ledger_core::transactor::{Transactor, TransactorConfig};

pub const SECOND: u64 = 1_000_000_000;

/// A transactor plus the bookkeeping every test repeats: the next id and time, the entries.
pub struct Harness {
    pub transactor: Transactor,
    pub next_tx_id: u64,
    pub now_ns: u64,
    pub entries: Vec<Entry>,
    pub effects: Vec<Effect>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(TransactorConfig {
            max_accounts: 100,
            dedup_window_ns: 10 * SECOND,
            ..TransactorConfig::default()
        })
    }

    pub fn with(config: TransactorConfig) -> Harness {
        Harness {
            transactor: Transactor::new(config).expect("valid config"),
            next_tx_id: 1,
            now_ns: 1_000 * SECOND,
            entries: Vec::new(),
            effects: Vec::new(),
        }
    }

    /// Executes at the current time; returns the outcome and this transaction's entries.
    pub fn run(&mut self, operation: Operation) -> (Outcome, Vec<Entry>) {
        self.entries.clear();
        self.effects.clear();
        let tx_id = self.next_tx_id;
        self.next_tx_id += 1;
        let outcome = self.transactor.execute(
            tx_id,
            self.now_ns,
            &operation,
            &mut self.entries,
            &mut self.effects,
        );
        assert_eq!(
            self.transactor
                .accounts()
                .unbalanced_currency(self.transactor.balances()),
            None,
            "zero-sum per currency after tx {tx_id}"
        );
        assert_eq!(
            self.transactor.balance_sum(),
            0,
            "zero-sum after tx {tx_id}"
        );
        (outcome, self.entries.clone())
    }

    pub fn outcome(&mut self, operation: Operation) -> Outcome {
        self.run(operation).0
    }

    pub fn rejects(&mut self, operation: Operation, reason: FailReason) {
        let before = self.transactor.balances().to_vec();
        let accounts_before = self.transactor.accounts().sorted();
        let (outcome, entries) = self.run(operation);
        assert_eq!(outcome, Outcome::Rejected(reason));
        assert!(entries.is_empty(), "a rejection appends no entries");
        assert!(self.effects.is_empty(), "a rejection has no effects");
        assert_eq!(self.transactor.accounts().sorted(), accounts_before);
        assert_eq!(
            self.transactor.balances(),
            &before[..],
            "a rejection changes nothing"
        );
    }

    pub fn balance(&self, account: u64) -> i64 {
        self.transactor.balance(account).expect("account in range")
    }

    pub fn deposit(&mut self, account: u64, amount: u64) {
        let outcome = self.outcome(deposit(account, amount, 0));
        assert_eq!(outcome, Outcome::Committed);
    }
}

pub fn deposit(account: u64, amount: u64, user_ref: u64) -> Operation {
    Operation::Deposit {
        account,
        amount,
        user_ref,
    }
}

pub fn withdrawal(account: u64, amount: u64) -> Operation {
    Operation::Withdrawal {
        account,
        amount,
        user_ref: 0,
    }
}

pub fn transfer(from: u64, to: u64, amount: u64) -> Operation {
    Operation::Transfer {
        from,
        to,
        amount,
        user_ref: 0,
    }
}

pub fn composite(steps: Vec<Step>, flags: u32) -> Operation {
    Operation::Composite(Box::new(CompositeOperation {
        steps,
        flags,
        user_ref: 0,
    }))
}

pub fn credit(account_id: u64, amount: u64) -> Step {
    Step::Credit { account_id, amount }
}

pub fn debit(account_id: u64, amount: u64) -> Step {
    Step::Debit { account_id, amount }
}

pub fn entry(account_id: u64, amount: u64, kind: EntryKind, balance_after: i64) -> Entry {
    Entry {
        account_id,
        amount,
        kind,
        balance_after,
    }
}
