//! Every rule and every fail reason of the state machine, through the public API.

use ledger_core::transaction::{
    AMOUNT_MAX, AccountConfig, COMPOSITE_STEPS_MAX, CompositeOperation, Effect, EntryKind,
    FailReason, Operation, Outcome, UserFailCode,
};
use ledger_core::transactor::{
    ACCOUNTS_MAX_LIMIT, ConfigError, ReplayError, Transactor, TransactorConfig,
};

mod common;

use common::*;

#[test]
fn deposit_moves_funds_from_the_system_account() {
    let mut h = Harness::new();
    let (outcome, entries) = h.run(deposit(7, 1000, 0));
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(
        entries,
        vec![
            entry(0, 1000, EntryKind::Credit, -1000),
            entry(7, 1000, EntryKind::Debit, 1000),
        ]
    );
    assert_eq!(h.balance(7), 1000);
    assert_eq!(h.balance(0), -1000);
}

#[test]
fn withdrawal_moves_funds_to_the_system_account() {
    let mut h = Harness::new();
    h.deposit(3, 500);
    let (outcome, entries) = h.run(withdrawal(3, 200));
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(
        entries,
        vec![
            entry(3, 200, EntryKind::Credit, 300),
            entry(0, 200, EntryKind::Debit, -300),
        ]
    );
}

#[test]
fn withdrawal_may_empty_an_account_but_not_overdraw_it() {
    let mut h = Harness::new();
    h.deposit(3, 500);
    h.rejects(withdrawal(3, 501), FailReason::InsufficientFunds);
    assert_eq!(h.outcome(withdrawal(3, 500)), Outcome::Committed);
    assert_eq!(h.balance(3), 0);
    h.rejects(withdrawal(3, 1), FailReason::InsufficientFunds);
}

#[test]
fn transfer_moves_funds_between_accounts() {
    let mut h = Harness::new();
    h.deposit(1, 100);
    let (outcome, entries) = h.run(transfer(1, 2, 60));
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(
        entries,
        vec![
            entry(1, 60, EntryKind::Credit, 40),
            entry(2, 60, EntryKind::Debit, 60),
        ]
    );
    h.rejects(transfer(1, 2, 41), FailReason::InsufficientFunds);
}

#[test]
fn transfer_from_an_untouched_account_is_insufficient_funds() {
    let mut h = Harness::new();
    h.rejects(transfer(5, 6, 1), FailReason::InsufficientFunds);
}

#[test]
fn transfer_to_self_is_a_committed_no_op() {
    let mut h = Harness::new();
    // Even more than the balance: nothing moves, so nothing can be overdrawn.
    let (outcome, entries) = h.run(transfer(4, 4, 10));
    assert_eq!(outcome, Outcome::Committed);
    assert!(entries.is_empty());
    assert_eq!(h.balance(4), 0);
}

#[test]
fn the_system_account_may_go_negative_in_a_transfer() {
    let mut h = Harness::new();
    assert_eq!(h.outcome(transfer(0, 9, 70)), Outcome::Committed);
    assert_eq!(h.balance(0), -70);
    assert_eq!(h.balance(9), 70);
}

#[test]
fn deposit_to_or_withdrawal_from_the_system_account_is_invalid() {
    let mut h = Harness::new();
    h.rejects(deposit(0, 5, 0), FailReason::InvalidOperation);
    h.rejects(withdrawal(0, 5), FailReason::InvalidOperation);
}

#[test]
fn zero_amounts_are_invalid() {
    let mut h = Harness::new();
    h.deposit(1, 10);
    h.rejects(deposit(1, 0, 0), FailReason::InvalidOperation);
    h.rejects(withdrawal(1, 0), FailReason::InvalidOperation);
    h.rejects(transfer(1, 2, 0), FailReason::InvalidOperation);
    h.rejects(
        composite(vec![credit(1, 0), debit(2, 0)], 0),
        FailReason::InvalidOperation,
    );
}

#[test]
fn amounts_above_i64_max_are_invalid() {
    let mut h = Harness::new();
    let too_big = AMOUNT_MAX + 1;
    h.rejects(deposit(1, too_big, 0), FailReason::InvalidOperation);
    h.rejects(deposit(1, u64::MAX, 0), FailReason::InvalidOperation);
    h.rejects(withdrawal(1, too_big), FailReason::InvalidOperation);
    h.rejects(transfer(0, 1, too_big), FailReason::InvalidOperation);
    h.rejects(
        composite(vec![credit(1, too_big), debit(2, too_big)], 0),
        FailReason::InvalidOperation,
    );
    // The largest amount itself is fine.
    h.deposit(1, AMOUNT_MAX);
    assert_eq!(h.balance(1), i64::MAX);
}

#[test]
fn account_ids_at_or_above_max_accounts_are_rejected() {
    let mut h = Harness::new(); // max_accounts = 100
    h.deposit(99, 10);
    h.rejects(deposit(100, 10, 0), FailReason::AccountLimitExceeded);
    h.rejects(deposit(u64::MAX, 10, 0), FailReason::AccountLimitExceeded);
    h.rejects(withdrawal(100, 1), FailReason::AccountLimitExceeded);
    h.rejects(transfer(99, 100, 1), FailReason::AccountLimitExceeded);
    h.rejects(transfer(100, 99, 1), FailReason::AccountLimitExceeded);
    h.rejects(
        composite(vec![credit(99, 1), debit(u64::MAX, 1)], 0),
        FailReason::AccountLimitExceeded,
    );
    assert_eq!(h.transactor.balance(100), None);
}

#[test]
fn composite_applies_every_step_atomically() {
    let mut h = Harness::new();
    h.deposit(1, 1000);
    // A transfer plus its fee, as one transaction.
    let steps = vec![credit(1, 110), debit(2, 100), debit(50, 10)];
    let (outcome, entries) = h.run(composite(steps, CompositeOperation::CHECK_NEGATIVE_BALANCE));
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(
        entries,
        vec![
            entry(1, 110, EntryKind::Credit, 890),
            entry(2, 100, EntryKind::Debit, 100),
            entry(50, 10, EntryKind::Debit, 10),
        ]
    );
}

#[test]
fn composite_may_go_negative_without_the_flag() {
    let mut h = Harness::new();
    assert_eq!(
        h.outcome(composite(vec![credit(1, 30), debit(2, 30)], 0)),
        Outcome::Committed
    );
    assert_eq!(h.balance(1), -30);
}

#[test]
fn composite_with_the_flag_may_not_end_negative() {
    let mut h = Harness::new();
    h.deposit(1, 20);
    h.rejects(
        composite(
            vec![credit(1, 30), debit(2, 30)],
            CompositeOperation::CHECK_NEGATIVE_BALANCE,
        ),
        FailReason::InsufficientFunds,
    );
    // Dipping below zero between steps is fine if the account ends non-negative.
    let steps = vec![credit(1, 30), debit(1, 10), debit(2, 20)];
    assert_eq!(
        h.outcome(composite(steps, CompositeOperation::CHECK_NEGATIVE_BALANCE)),
        Outcome::Committed
    );
    assert_eq!(h.balance(1), 0);
}

#[test]
fn composite_flag_does_not_apply_to_the_system_account() {
    let mut h = Harness::new();
    let steps = vec![credit(0, 5), debit(1, 5)];
    assert_eq!(
        h.outcome(composite(steps, CompositeOperation::CHECK_NEGATIVE_BALANCE)),
        Outcome::Committed
    );
    assert_eq!(h.balance(0), -5);
}

#[test]
fn composite_credits_must_equal_debits() {
    let mut h = Harness::new();
    h.rejects(
        composite(vec![credit(1, 10), debit(2, 9)], 0),
        FailReason::ZeroSumViolation,
    );
    h.rejects(
        composite(vec![debit(2, 9)], 0),
        FailReason::ZeroSumViolation,
    );
}

#[test]
fn composite_sums_of_huge_amounts_do_not_wrap() {
    let mut h = Harness::new();
    // Two credits of i64::MAX sum to more than u64 can hold in i64 terms; the debits
    // match exactly, but applying them would overflow: rejected with a reason.
    let steps = vec![
        credit(1, AMOUNT_MAX),
        credit(1, AMOUNT_MAX),
        debit(2, AMOUNT_MAX),
        debit(3, AMOUNT_MAX),
    ];
    h.rejects(composite(steps, 0), FailReason::BalanceOverflow);
}

#[test]
fn composite_step_limit_is_255() {
    let mut h = Harness::new();
    let mut steps = vec![credit(1, 254)];
    steps.extend((0..254).map(|i| debit(2 + i % 90, 1)));
    assert_eq!(steps.len(), COMPOSITE_STEPS_MAX);
    assert_eq!(h.outcome(composite(steps.clone(), 0)), Outcome::Committed);
    steps[0] = credit(1, 255);
    steps.push(debit(2, 1));
    h.rejects(composite(steps, 0), FailReason::EntryLimitExceeded);
}

#[test]
fn empty_composite_and_unknown_flags_are_invalid() {
    let mut h = Harness::new();
    h.rejects(composite(vec![], 0), FailReason::InvalidOperation);
    for flags in [0x2, 0x80, 0x8000_0000, u32::MAX] {
        h.rejects(
            composite(vec![credit(1, 1), debit(2, 1)], flags),
            FailReason::InvalidOperation,
        );
    }
}

#[test]
fn a_failing_step_rolls_back_the_steps_before_it() {
    let mut h = Harness::new();
    h.deposit(2, AMOUNT_MAX);
    // Steps 1 and 2 apply, step 3 would overflow account 2: all three are undone.
    let steps = vec![credit(1, 7), debit(3, 7), debit(2, 1), credit(4, 1)];
    h.rejects(composite(steps, 0), FailReason::BalanceOverflow);
    assert_eq!(h.balance(1), 0);
    assert_eq!(h.balance(3), 0);
    assert_eq!(h.balance(2), i64::MAX);
}

#[test]
fn balances_that_would_overflow_are_rejected_not_wrapped() {
    let mut h = Harness::new();
    h.deposit(1, AMOUNT_MAX);
    h.rejects(deposit(1, 1, 0), FailReason::BalanceOverflow);
    // The system account is now at -i64::MAX; one more unit fits, then it is full.
    h.deposit(2, 1);
    assert_eq!(h.balance(0), i64::MIN);
    h.rejects(deposit(3, 1, 0), FailReason::BalanceOverflow);
    h.rejects(transfer(0, 3, 1), FailReason::BalanceOverflow);
    // A transfer into a full account.
    h.rejects(transfer(2, 1, 1), FailReason::BalanceOverflow);
}

#[test]
fn withdrawal_into_a_full_system_account_is_an_overflow() {
    let mut h = Harness::new();
    // Fill the system account to i64::MAX with composites (which may overdraw), leaving
    // account 1 with one unit to withdraw.
    let fill = |account| composite(vec![credit(account, AMOUNT_MAX), debit(0, AMOUNT_MAX)], 0);
    assert_eq!(h.outcome(fill(5)), Outcome::Committed);
    h.deposit(1, 1);
    assert_eq!(
        h.outcome(composite(vec![credit(6, 1), debit(0, 1)], 0)),
        Outcome::Committed
    );
    assert_eq!(h.balance(0), i64::MAX);
    h.rejects(withdrawal(1, 1), FailReason::BalanceOverflow);
}

#[test]
fn duplicate_user_ref_within_the_window_is_rejected_with_the_original_id() {
    let mut h = Harness::new();
    assert_eq!(h.outcome(deposit(1, 10, 42)), Outcome::Committed); // tx 1
    h.now_ns += 9 * SECOND;
    h.rejects(
        deposit(1, 10, 42),
        FailReason::Duplicate { original_tx_id: 1 },
    );
    // Any kind of operation with the same reference is the same request.
    h.rejects(
        Operation::Transfer {
            from: 1,
            to: 2,
            amount: 1,
            user_ref: 42,
        },
        FailReason::Duplicate { original_tx_id: 1 },
    );
    h.rejects(
        Operation::Composite(Box::new(CompositeOperation {
            steps: vec![credit(1, 1), debit(2, 1)],
            flags: 0,
            user_ref: 42,
        })),
        FailReason::Duplicate { original_tx_id: 1 },
    );
}

#[test]
fn user_ref_is_forgotten_once_the_window_has_passed() {
    let mut h = Harness::new();
    let start = h.now_ns;
    assert_eq!(h.outcome(deposit(1, 10, 42)), Outcome::Committed);
    h.now_ns = start + 10 * SECOND - 1;
    h.rejects(
        deposit(1, 10, 42),
        FailReason::Duplicate { original_tx_id: 1 },
    );
    h.now_ns = start + 10 * SECOND;
    assert_eq!(h.outcome(deposit(1, 10, 42)), Outcome::Committed);
    assert_eq!(h.balance(1), 20);
}

#[test]
fn user_ref_zero_opts_out_of_deduplication() {
    let mut h = Harness::new();
    for _ in 0..3 {
        assert_eq!(h.outcome(deposit(1, 10, 0)), Outcome::Committed);
    }
    assert_eq!(h.balance(1), 30);
    assert!(h.transactor.dedup().is_empty());
}

#[test]
fn a_rejected_operation_does_not_claim_its_user_ref() {
    let mut h = Harness::new();
    let pay = Operation::Transfer {
        from: 1,
        to: 2,
        amount: 50,
        user_ref: 7,
    };
    h.rejects(pay.clone(), FailReason::InsufficientFunds);
    h.deposit(1, 50);
    // The retry of the failed request is not a duplicate: it executes, once.
    assert_eq!(h.outcome(pay.clone()), Outcome::Committed);
    h.rejects(pay, FailReason::Duplicate { original_tx_id: 3 });
}

#[test]
fn time_never_runs_backwards_inside_the_state_machine() {
    let mut h = Harness::new();
    assert_eq!(h.outcome(deposit(1, 10, 42)), Outcome::Committed);
    h.now_ns += 20 * SECOND;
    assert_eq!(h.outcome(deposit(1, 10, 43)), Outcome::Committed);
    // A late timestamp (producers race to the sequencer) counts as the latest time seen.
    h.now_ns -= 20 * SECOND;
    assert_eq!(h.outcome(deposit(1, 10, 42)), Outcome::Committed);
    h.rejects(
        deposit(1, 10, 43),
        FailReason::Duplicate { original_tx_id: 2 },
    );
}

#[test]
fn fail_reason_codes_are_stable() {
    let standard = [
        (FailReason::InsufficientFunds, 1),
        (FailReason::AccountNotFound, 2),
        (FailReason::ZeroSumViolation, 3),
        (FailReason::EntryLimitExceeded, 4),
        (FailReason::InvalidOperation, 5),
        (FailReason::AccountLimitExceeded, 6),
        (FailReason::Duplicate { original_tx_id: 9 }, 7),
        (FailReason::BalanceOverflow, 8),
        (FailReason::AccountFrozen, 9),
        (FailReason::CurrencyMismatch, 10),
        (FailReason::MaxBalanceExceeded, 11),
        (FailReason::CurrencyFixed, 12),
        (FailReason::HoldNotFound, 13),
        (FailReason::HoldClosed, 14),
        (FailReason::HoldExceeded, 15),
        (FailReason::HoldExpired, 16),
        (FailReason::TransactionNotFound, 17),
        (FailReason::NotReversible, 18),
        (FailReason::AlreadyReversed, 19),
        (FailReason::InvalidHierarchy, 20),
    ];
    for (reason, code) in standard {
        assert_eq!(reason.code(), code);
        assert_eq!(FailReason::from_code(code, 9), Some(reason));
    }
    for code in 128..=255u8 {
        let reason = FailReason::from_code(code, 0).expect("user-defined range");
        assert_eq!(
            reason,
            FailReason::UserDefined(UserFailCode::new(code).unwrap())
        );
        assert_eq!(reason.code(), code);
    }
    for code in (0..1).chain(21..128u8) {
        assert_eq!(
            FailReason::from_code(code, 0),
            None,
            "code {code} is unassigned"
        );
    }
    assert_eq!(UserFailCode::new(127), None);
}

#[test]
fn config_is_validated() {
    let config = |max_accounts| TransactorConfig {
        max_accounts,
        ..TransactorConfig::default()
    };
    assert_eq!(
        Transactor::new(config(0)).unwrap_err(),
        ConfigError::NoAccounts
    );
    assert_eq!(
        Transactor::new(config(ACCOUNTS_MAX_LIMIT + 1)).unwrap_err(),
        ConfigError::TooManyAccounts {
            requested: ACCOUNTS_MAX_LIMIT + 1,
            limit: ACCOUNTS_MAX_LIMIT
        }
    );
    let defaults = TransactorConfig::default();
    assert_eq!(defaults.max_accounts, 1_000_000);
    assert_eq!(defaults.dedup_window_ns, 10 * SECOND);
}

#[test]
fn one_hundred_million_accounts_work() {
    let mut h = Harness::with(TransactorConfig {
        max_accounts: 100_000_000,
        ..TransactorConfig::default()
    });
    h.deposit(99_999_999, 5);
    assert_eq!(h.outcome(transfer(99_999_999, 1, 5)), Outcome::Committed);
    assert_eq!(h.balance(1), 5);
    h.rejects(deposit(100_000_000, 5, 0), FailReason::AccountLimitExceeded);
}

#[test]
fn replaying_entries_reproduces_the_balances_and_the_window() {
    let mut h = Harness::new();
    let mut log = Vec::new();
    let ops = [
        deposit(1, 100, 1),
        transfer(1, 2, 30),
        withdrawal(2, 50),
        composite(vec![credit(2, 30), debit(3, 20), debit(4, 10)], 0),
        deposit(1, 5, 1),
    ];
    for op in ops {
        let tx_id = h.next_tx_id;
        let (outcome, entries) = h.run(op.clone());
        log.push((
            tx_id,
            h.now_ns,
            op.user_ref(),
            outcome,
            entries,
            h.effects.clone(),
        ));
        h.now_ns += SECOND;
    }
    let mut replica = Transactor::new(TransactorConfig {
        max_accounts: 100,
        dedup_window_ns: 10 * SECOND,
        ..TransactorConfig::default()
    })
    .unwrap();
    for (tx_id, timestamp_ns, user_ref, outcome, entries, effects) in &log {
        replica
            .replay(*tx_id, *timestamp_ns, *user_ref, *outcome, entries, effects)
            .unwrap();
    }
    assert_eq!(replica.balances(), h.transactor.balances());
    assert_eq!(replica.last_tx_id(), h.transactor.last_tx_id());
    assert_eq!(
        replica.dedup().entries().collect::<Vec<_>>(),
        h.transactor.dedup().entries().collect::<Vec<_>>()
    );
    // The rebuilt window still rejects the duplicate.
    let (mut entries, mut effects) = (Vec::new(), Vec::new());
    assert_eq!(
        replica.execute(99, h.now_ns, &deposit(1, 1, 1), &mut entries, &mut effects),
        Outcome::Rejected(FailReason::Duplicate { original_tx_id: 1 })
    );
}

#[test]
fn replay_refuses_entries_that_do_not_add_up() {
    let fresh = || Transactor::new(TransactorConfig::default()).unwrap();
    let good = [
        entry(0, 10, EntryKind::Credit, -10),
        entry(1, 10, EntryKind::Debit, 10),
    ];
    let mut wrong_balance = good;
    wrong_balance[1].balance_after = 11;
    assert_eq!(
        fresh().replay(1, 0, 0, Outcome::Committed, &wrong_balance, &[]),
        Err(ReplayError::BalanceMismatch {
            tx_id: 1,
            account_id: 1,
            computed: 10,
            recorded: 11
        })
    );
    let unbalanced = [entry(1, 10, EntryKind::Debit, 10)];
    assert_eq!(
        fresh().replay(1, 0, 0, Outcome::Committed, &unbalanced, &[]),
        Err(ReplayError::NotZeroSum { tx_id: 1 })
    );
    let out_of_range = [entry(u64::MAX, 10, EntryKind::Debit, 10)];
    assert_eq!(
        fresh().replay(1, 0, 0, Outcome::Committed, &out_of_range, &[]),
        Err(ReplayError::AccountOutOfRange {
            tx_id: 1,
            account_id: u64::MAX
        })
    );
    let rejected = Outcome::Rejected(FailReason::InsufficientFunds);
    assert_eq!(
        fresh().replay(1, 0, 0, rejected, &good, &[]),
        Err(ReplayError::RejectedWithEntries { tx_id: 1 })
    );
    let mut transactor = fresh();
    transactor
        .replay(5, 0, 0, Outcome::Committed, &good, &[])
        .unwrap();
    assert_eq!(
        transactor.replay(5, 0, 0, rejected, &[], &[]),
        Err(ReplayError::NotIncreasing {
            tx_id: 5,
            last_tx_id: 5
        })
    );
}

// Found by proptest: a rejected transaction must age the window exactly as its replay does,
// or a recovered window differs from the live one.
#[test]
fn every_transaction_ages_the_window_live_and_in_replay() {
    let mut h = Harness::new();
    assert_eq!(h.outcome(deposit(1, 10, 1)), Outcome::Committed);
    h.now_ns += 10 * SECOND;
    h.rejects(deposit(0, 10, 2), FailReason::InvalidOperation);
    assert!(
        h.transactor.dedup().is_empty(),
        "expired by the rejected transaction"
    );

    let mut replica = Transactor::new(TransactorConfig {
        max_accounts: 100,
        dedup_window_ns: 10 * SECOND,
        ..TransactorConfig::default()
    })
    .unwrap();
    let deposit_entries = [
        entry(0, 10, EntryKind::Credit, -10),
        entry(1, 10, EntryKind::Debit, 10),
    ];
    let start = h.now_ns - 10 * SECOND;
    replica
        .replay(1, start, 1, Outcome::Committed, &deposit_entries, &[])
        .unwrap();
    let rejected = Outcome::Rejected(FailReason::InvalidOperation);
    replica.replay(2, h.now_ns, 2, rejected, &[], &[]).unwrap();
    assert!(replica.dedup().is_empty());
}

#[test]
fn prefetch_is_only_a_hint_for_any_operation() {
    let mut h = Harness::new();
    h.deposit(1, 10);
    let hostile = [
        deposit(u64::MAX, 1, 0),
        transfer(1, u64::MAX, 5),
        transfer(u64::MAX, 1, 5),
        composite(vec![credit(u64::MAX, 1); 300], u32::MAX),
        composite(vec![], 0),
    ];
    for op in &hostile {
        h.transactor.prefetch(op);
    }
    assert_eq!(h.balance(1), 10);
    h.transactor.prefetch(&transfer(1, 2, 5));
    assert_eq!(h.outcome(transfer(1, 2, 5)), Outcome::Committed);
}

// ---- Configured accounts: currencies, limits, frozen ----

fn configure(account: u64, config: AccountConfig) -> Operation {
    Operation::configure(account, config, 0)
}

/// Currency `currency` under the default rules (no negative balance).
fn in_currency(currency: u32) -> AccountConfig {
    AccountConfig {
        currency,
        ..AccountConfig::default()
    }
}

impl Harness {
    fn configure(&mut self, account: u64, config: AccountConfig) {
        assert_eq!(self.outcome(configure(account, config)), Outcome::Committed);
        assert_eq!(self.effects, [Effect::Configured { account, config }]);
        assert!(self.entries.is_empty(), "a configuration moves no money");
    }
}

#[test]
fn an_unconfigured_account_has_the_default_rules() {
    let h = Harness::new();
    let config = h.transactor.account_config(7).unwrap();
    assert_eq!(config, AccountConfig::default());
    assert_eq!(config.currency, 0);
    assert_eq!(config.min_balance(), Some(0));
    assert_eq!(config.max_balance, None);
    assert_eq!(
        h.transactor.account_config(100),
        None,
        "beyond max_accounts"
    );
    assert!(h.transactor.accounts().is_empty());
}

#[test]
fn a_configuration_is_checked_before_it_is_taken() {
    let mut h = Harness::new();
    let bad = [
        (0, AccountConfig::default()),
        (
            1,
            AccountConfig {
                flags: 0x80,
                ..AccountConfig::default()
            },
        ),
        (
            1,
            AccountConfig {
                overdraft_limit: AMOUNT_MAX + 1,
                ..AccountConfig::default()
            },
        ),
        (
            1,
            AccountConfig {
                flags: 0,
                overdraft_limit: 5,
                ..AccountConfig::default()
            },
        ),
        (
            1,
            AccountConfig {
                overdraft_limit: 10,
                max_balance: Some(-11),
                ..AccountConfig::default()
            },
        ),
    ];
    for (account, config) in bad {
        h.rejects(configure(account, config), FailReason::InvalidOperation);
    }
    h.rejects(
        configure(100, AccountConfig::default()),
        FailReason::AccountLimitExceeded,
    );
    assert!(h.transactor.accounts().is_empty());
}

#[test]
fn money_moves_only_within_one_currency() {
    let mut h = Harness::new();
    h.configure(1, in_currency(840));
    h.configure(2, in_currency(840));
    h.configure(3, in_currency(978));
    h.deposit(1, 100);
    h.deposit(3, 50);
    assert_eq!(h.outcome(transfer(1, 2, 30)), Outcome::Committed);
    h.rejects(transfer(1, 3, 10), FailReason::CurrencyMismatch);
    // An unconfigured account is in currency 0.
    h.rejects(transfer(1, 4, 10), FailReason::CurrencyMismatch);
    h.rejects(
        composite(vec![credit(1, 10), debit(2, 5), debit(3, 5)], 0),
        FailReason::CurrencyMismatch,
    );
    // The system account is the counterpart in every currency, each kept apart.
    assert_eq!(h.transactor.system_balance(840), -100);
    assert_eq!(h.transactor.system_balance(978), -50);
    assert_eq!(h.transactor.system_balance(0), 0);
    h.deposit(5, 7);
    assert_eq!(h.transactor.system_balance(0), -7);
    assert_eq!(h.outcome(withdrawal(2, 30)), Outcome::Committed);
    assert_eq!(h.transactor.system_balance(840), -70);
    assert_eq!(
        h.transactor.balance(0),
        Some(-127),
        "all currencies together"
    );
}

#[test]
fn a_currency_is_fixed_once_money_has_moved() {
    let mut h = Harness::new();
    h.deposit(1, 10);
    h.rejects(configure(1, in_currency(5)), FailReason::CurrencyFixed);
    // Rules may change at any time: only the currency is fixed.
    h.configure(
        1,
        AccountConfig {
            overdraft_limit: 10,
            ..AccountConfig::default()
        },
    );
    h.configure(2, in_currency(5));
    h.configure(2, in_currency(6)); // nothing moved yet
    h.deposit(2, 10);
    assert_eq!(h.outcome(withdrawal(2, 10)), Outcome::Committed);
    assert_eq!(h.balance(2), 0);
    // Empty again, but money moved in currency 6 since it was configured.
    h.rejects(configure(2, in_currency(7)), FailReason::CurrencyFixed);
    h.configure(
        2,
        AccountConfig {
            max_balance: Some(5),
            ..in_currency(6)
        },
    );
}

#[test]
fn an_overdraft_limit_lets_a_balance_go_that_far_below_zero() {
    let mut h = Harness::new();
    h.configure(
        1,
        AccountConfig {
            overdraft_limit: 100,
            ..AccountConfig::default()
        },
    );
    h.deposit(2, 500);
    assert_eq!(h.outcome(transfer(1, 2, 60)), Outcome::Committed);
    assert_eq!(h.outcome(withdrawal(1, 40)), Outcome::Committed);
    assert_eq!(h.balance(1), -100);
    h.rejects(transfer(1, 2, 1), FailReason::InsufficientFunds);
    // Money in is always welcome below the bound.
    assert_eq!(h.outcome(transfer(2, 1, 10)), Outcome::Committed);
    // Lowering the limit below the balance: it may only go up from here.
    h.configure(1, AccountConfig::default());
    h.rejects(transfer(1, 2, 1), FailReason::InsufficientFunds);
    h.deposit(1, 1);
    assert_eq!(h.balance(1), -89);
}

#[test]
fn without_the_debit_rule_an_account_has_no_lower_bound() {
    let mut h = Harness::new();
    h.configure(
        1,
        AccountConfig {
            flags: 0,
            ..AccountConfig::default()
        },
    );
    assert_eq!(h.outcome(transfer(1, 2, 1_000)), Outcome::Committed);
    assert_eq!(h.balance(1), -1_000);
    // Still no wrap: the i64 range is the bound.
    h.rejects(transfer(1, 2, AMOUNT_MAX), FailReason::BalanceOverflow);
}

#[test]
fn a_maximum_balance_bounds_what_comes_in() {
    let mut h = Harness::new();
    h.configure(
        1,
        AccountConfig {
            max_balance: Some(100),
            ..AccountConfig::default()
        },
    );
    h.deposit(1, 100);
    h.rejects(deposit(1, 1, 0), FailReason::MaxBalanceExceeded);
    h.deposit(2, 50);
    h.rejects(transfer(2, 1, 1), FailReason::MaxBalanceExceeded);
    assert_eq!(h.outcome(transfer(1, 2, 30)), Outcome::Committed);
    assert_eq!(h.outcome(transfer(2, 1, 30)), Outcome::Committed);
    assert_eq!(h.balance(1), 100);
}

#[test]
fn a_frozen_account_moves_nothing_but_is_still_read() {
    let mut h = Harness::new();
    h.deposit(1, 100);
    h.deposit(2, 100);
    h.configure(
        1,
        AccountConfig {
            flags: AccountConfig::FROZEN | AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
            ..AccountConfig::default()
        },
    );
    h.rejects(deposit(1, 1, 0), FailReason::AccountFrozen);
    h.rejects(withdrawal(1, 1), FailReason::AccountFrozen);
    h.rejects(transfer(1, 2, 1), FailReason::AccountFrozen);
    h.rejects(transfer(2, 1, 1), FailReason::AccountFrozen);
    h.rejects(
        composite(vec![credit(2, 1), debit(1, 1)], 0),
        FailReason::AccountFrozen,
    );
    assert_eq!(h.balance(1), 100);
    h.configure(1, AccountConfig::default());
    assert_eq!(h.outcome(transfer(1, 2, 100)), Outcome::Committed);
}

#[test]
fn a_composite_obeys_every_configured_account_on_its_net_change() {
    let mut h = Harness::new();
    h.configure(
        1,
        AccountConfig {
            overdraft_limit: 10,
            ..in_currency(3)
        },
    );
    h.configure(
        2,
        AccountConfig {
            max_balance: Some(15),
            ..in_currency(3)
        },
    );
    // Account 1 dips to -20 within the composite but ends at -5: allowed.
    let dip = composite(
        vec![credit(1, 20), debit(2, 20), credit(2, 15), debit(1, 15)],
        0,
    );
    assert_eq!(h.outcome(dip), Outcome::Committed);
    assert_eq!((h.balance(1), h.balance(2)), (-5, 5));
    h.rejects(
        composite(vec![credit(1, 6), debit(2, 6)], 0),
        FailReason::InsufficientFunds,
    );
    h.rejects(
        composite(vec![credit(0, 11), debit(2, 11)], 0),
        FailReason::MaxBalanceExceeded,
    );
    // The system account's share lands in currency 3.
    assert_eq!(
        h.outcome(composite(vec![credit(0, 10), debit(2, 10)], 0)),
        Outcome::Committed
    );
    assert_eq!(h.transactor.system_balance(3), -10);
}

#[test]
fn replaying_configurations_reproduces_the_accounts() {
    let mut h = Harness::new();
    let mut log = Vec::new();
    let ops = [
        configure(1, in_currency(9)),
        deposit(1, 100, 0),
        configure(2, in_currency(9)),
        transfer(1, 2, 40),
        configure(3, in_currency(4)),
        configure(3, in_currency(5)),
    ];
    for op in ops {
        let tx_id = h.next_tx_id;
        let (outcome, entries) = h.run(op);
        log.push((tx_id, outcome, entries, h.effects.clone()));
    }
    let mut replica = Transactor::new(TransactorConfig {
        max_accounts: 100,
        dedup_window_ns: SECOND,
        ..TransactorConfig::default()
    })
    .unwrap();
    for (tx_id, outcome, entries, effects) in &log {
        replica
            .replay(*tx_id, 0, 0, *outcome, entries, effects)
            .unwrap();
    }
    assert_eq!(
        replica.accounts().sorted(),
        h.transactor.accounts().sorted()
    );
    assert_eq!(replica.system_balance(9), -100);
    // A rejected record with effects is damage.
    let config = Effect::Configured {
        account: 4,
        config: AccountConfig::default(),
    };
    assert_eq!(
        replica.replay(
            99,
            0,
            0,
            Outcome::Rejected(FailReason::InvalidOperation),
            &[],
            &[config]
        ),
        Err(ReplayError::RejectedWithEntries { tx_id: 99 })
    );
}

// ---- Two-phase transfers: holds, posts, voids, expiries ----

fn hold(from: u64, to: u64, amount: u64, timeout_ns: u64) -> Operation {
    Operation::hold(from, to, amount, timeout_ns, 0)
}

fn post(hold_id: u64, amount: u64) -> Operation {
    Operation::PostHold {
        hold_id,
        amount,
        user_ref: 0,
    }
}

fn void(hold_id: u64) -> Operation {
    Operation::VoidHold {
        hold_id,
        user_ref: 0,
    }
}

impl Harness {
    /// Places a hold; returns its id.
    fn hold(&mut self, from: u64, to: u64, amount: u64, timeout_ns: u64) -> u64 {
        let id = self.next_tx_id;
        assert_eq!(
            self.outcome(hold(from, to, amount, timeout_ns)),
            Outcome::Committed
        );
        assert!(self.entries.is_empty(), "a hold moves no money");
        id
    }

    fn available(&self, account: u64) -> i128 {
        self.transactor.available_balance(account).unwrap()
    }

    fn hold_state(&self, id: u64) -> ledger_core::holds::HoldState {
        self.transactor.holds().get(id).unwrap().state
    }
}

#[test]
fn a_hold_reserves_funds_and_a_post_moves_them() {
    use ledger_core::holds::HoldState;
    let mut h = Harness::new();
    h.deposit(1, 100);
    let id = h.hold(1, 2, 70, 0);
    assert_eq!((h.balance(1), h.available(1)), (100, 30));
    // What is held is not available to anything else.
    h.rejects(transfer(1, 3, 31), FailReason::InsufficientFunds);
    h.rejects(hold(1, 3, 31, 0), FailReason::InsufficientFunds);
    assert_eq!(h.outcome(transfer(1, 3, 30)), Outcome::Committed);
    // A partial post moves 50 and releases the other 20.
    let (outcome, entries) = h.run(post(id, 50));
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(entries.len(), 2);
    assert_eq!(
        h.effects,
        [Effect::HoldPosted {
            hold_id: id,
            amount: 50
        }]
    );
    assert_eq!((h.balance(1), h.balance(2), h.available(1)), (20, 50, 20));
    assert_eq!(h.hold_state(id), HoldState::Posted);
    // Twice is refused, with its own reason; so is a void after it.
    h.rejects(post(id, 0), FailReason::HoldClosed);
    h.rejects(void(id), FailReason::HoldClosed);
    h.rejects(post(999, 0), FailReason::HoldNotFound);
}

#[test]
fn a_post_is_at_most_what_was_held_and_a_void_releases_it_all() {
    use ledger_core::holds::HoldState;
    let mut h = Harness::new();
    h.deposit(1, 100);
    let id = h.hold(1, 2, 40, 0);
    h.rejects(post(id, 41), FailReason::HoldExceeded);
    assert_eq!(h.outcome(void(id)), Outcome::Committed);
    assert_eq!(h.effects, [Effect::HoldVoided { hold_id: id }]);
    assert_eq!((h.balance(1), h.available(1), h.balance(2)), (100, 100, 0));
    assert_eq!(h.hold_state(id), HoldState::Voided);
    h.rejects(void(id), FailReason::HoldClosed);
    // A whole post (amount 0) moves everything held.
    let id = h.hold(1, 2, 40, 0);
    assert_eq!(h.outcome(post(id, 0)), Outcome::Committed);
    assert_eq!((h.balance(1), h.balance(2)), (60, 40));
}

#[test]
fn a_hold_expires_at_its_timeout_in_sequencer_time() {
    use ledger_core::holds::HoldState;
    let mut h = Harness::new();
    h.deposit(1, 100);
    let id = h.hold(1, 2, 10, 5 * SECOND);
    let expires_at = h.transactor.holds().get(id).unwrap().expires_at_ns;
    assert_eq!(expires_at, h.now_ns + 5 * SECOND);
    assert_eq!(h.transactor.holds().next_expiry(), Some(expires_at));
    // One nanosecond before: still open.
    h.now_ns = expires_at - 1;
    h.rejects(post(id, 11), FailReason::HoldExceeded);
    // From its expiry on it can be neither posted nor voided, even before an
    // ExpireHolds records it; and it still reserves the funds until then.
    h.now_ns = expires_at;
    h.rejects(post(id, 0), FailReason::HoldExpired);
    h.rejects(void(id), FailReason::HoldExpired);
    assert_eq!(h.available(1), 90);
    assert_eq!(h.outcome(Operation::ExpireHolds), Outcome::Committed);
    assert_eq!(h.effects, [Effect::HoldExpired { hold_id: id }]);
    assert_eq!(h.hold_state(id), HoldState::Expired);
    assert_eq!(h.available(1), 100);
    assert_eq!(h.transactor.holds().next_expiry(), None);
    h.rejects(post(id, 0), FailReason::HoldClosed);
    // Nothing due: an empty commit.
    assert_eq!(h.outcome(Operation::ExpireHolds), Outcome::Committed);
    assert!(h.effects.is_empty());
}

#[test]
fn holds_count_against_every_limit() {
    let mut h = Harness::new();
    h.configure(
        1,
        AccountConfig {
            overdraft_limit: 50,
            ..in_currency(7)
        },
    );
    h.configure(
        2,
        AccountConfig {
            max_balance: Some(100),
            ..in_currency(7)
        },
    );
    h.configure(3, in_currency(8));
    // The overdraft covers a hold too; then nothing more can leave.
    let id = h.hold(1, 2, 50, 0);
    h.rejects(transfer(1, 2, 1), FailReason::InsufficientFunds);
    // Incoming holds count against the maximum.
    h.deposit(2, 50);
    h.rejects(deposit(2, 1, 0), FailReason::MaxBalanceExceeded);
    h.rejects(hold(0, 2, 1, 0), FailReason::MaxBalanceExceeded);
    // A hold obeys currencies and frozen accounts.
    h.rejects(hold(2, 3, 1, 0), FailReason::CurrencyMismatch);
    h.rejects(hold(1, 1, 1, 0), FailReason::InvalidOperation);
    assert_eq!(h.outcome(post(id, 0)), Outcome::Committed);
    assert_eq!((h.balance(1), h.balance(2)), (-50, 100));
    assert_eq!(h.transactor.system_balance(7), -50);
    // An unconfigured account with an open hold leaves the fast path: its rules count it.
    h.deposit(5, 10);
    let id = h.hold(5, 6, 10, 0);
    h.rejects(withdrawal(5, 1), FailReason::InsufficientFunds);
    h.rejects(
        composite(
            vec![credit(5, 1), debit(6, 1)],
            CompositeOperation::CHECK_NEGATIVE_BALANCE,
        ),
        FailReason::InsufficientFunds,
    );
    h.configure(
        5,
        AccountConfig {
            flags: AccountConfig::FROZEN | AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
            ..AccountConfig::default()
        },
    );
    h.rejects(post(id, 0), FailReason::AccountFrozen);
}

#[test]
fn execution_and_replay_name_the_accounts_effects_touch_and_replay_checks_the_links() {
    use ledger_core::record::AccountLink;
    let link = |account_id, prev_tx_id| AccountLink {
        account_id,
        prev_tx_id,
    };
    // Executed: a hold names its two accounts, a void the hold's, a configuration its own.
    let mut h = Harness::new();
    h.run(deposit(1, 100, 0));
    let (mut entries, mut effects) = (Vec::new(), Vec::new());
    let mut execute = |h: &mut Harness, id, op: &Operation| {
        entries.clear();
        effects.clear();
        let outcome = h
            .transactor
            .execute(id, h.now_ns, op, &mut entries, &mut effects);
        assert_eq!(outcome, Outcome::Committed, "{op:?}");
        (effects.clone(), h.transactor.effect_accounts().to_vec())
    };
    let (opened, accounts) = execute(&mut h, 10, &Operation::hold(1, 2, 30, 0, 0));
    assert_eq!(accounts, [1, 2]);
    let (voided, accounts) = execute(
        &mut h,
        11,
        &Operation::VoidHold {
            hold_id: 10,
            user_ref: 0,
        },
    );
    assert_eq!(accounts, [1, 2]);
    let configure = Operation::ConfigureAccount {
        account: 3,
        config: Box::new(AccountConfig::default()),
        user_ref: 0,
    };
    assert_eq!(execute(&mut h, 12, &configure).1, [3]);
    // Replayed: the same accounts, and a record's links must name them.
    let mut replica = Transactor::new(TransactorConfig::default()).unwrap();
    replica
        .replay(10, 1, 0, Outcome::Committed, &[], &opened)
        .unwrap();
    assert_eq!(replica.effect_accounts(), [1, 2]);
    replica
        .replay(11, 2, 0, Outcome::Committed, &[], &voided)
        .unwrap();
    assert_eq!(replica.effect_accounts(), [1, 2]);
    assert_eq!(
        replica.check_effect_links(11, &[link(1, 10), link(2, 10)]),
        Ok(())
    );
    // A record written before effect links has none: nothing to check.
    assert_eq!(replica.check_effect_links(11, &[]), Ok(()));
    for wrong in [
        vec![link(2, 10), link(1, 10)],
        vec![link(1, 10)],
        vec![link(1, 10), link(3, 10)],
    ] {
        assert_eq!(
            replica.check_effect_links(11, &wrong),
            Err(ReplayError::BadEffectLinks { tx_id: 11 }),
            "{wrong:?}"
        );
    }
}
