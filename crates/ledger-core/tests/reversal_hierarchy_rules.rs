//! Reversals and account hierarchies in the state machine, through the public API: every
//! rule and every fail reason they add.

mod common;

use common::*;
use ledger_core::transaction::{
    AccountConfig, Effect, Entry, EntryKind, FailReason, HIERARCHY_DEPTH_MAX, Operation, Outcome,
    Reversal, ReversalTarget,
};
use ledger_core::transactor::{ReplayError, TransactorConfig};

/// A reversal of `tx_id` whose original has `entries` (what the ledger reads from its log).
fn reversal(tx_id: u64, entries: &[Entry]) -> Operation {
    reversal_of(tx_id, ReversalTarget::Entries(entries.to_vec()))
}

fn reversal_of(tx_id: u64, target: ReversalTarget) -> Operation {
    Operation::Reverse(Box::new(Reversal {
        tx_id,
        user_ref: 0,
        target,
    }))
}

fn sub_account(parent: u64, currency: u32) -> AccountConfig {
    AccountConfig {
        currency,
        parent,
        ..AccountConfig::default()
    }
}

fn configure(h: &mut Harness, account: u64, config: AccountConfig) -> Outcome {
    h.outcome(Operation::configure(account, config, 0))
}

fn aggregate(h: &Harness, account: u64) -> i128 {
    h.transactor.aggregate_balance(account).unwrap()
}

#[test]
fn a_reversal_moves_every_entry_back_as_a_new_linked_transaction() {
    let mut h = Harness::new();
    h.deposit(1, 100);
    let (outcome, original) = h.run(transfer(1, 2, 30));
    assert_eq!(outcome, Outcome::Committed);
    let (outcome, entries) = h.run(reversal(2, &original));
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(
        entries,
        [
            entry(1, 30, EntryKind::Debit, 100),
            entry(2, 30, EntryKind::Credit, 0)
        ]
    );
    assert_eq!(h.effects, [Effect::Reversed { tx_id: 2 }]);
    assert_eq!(h.transactor.reversed_by(2), Some(3));
    assert_eq!((h.balance(1), h.balance(2)), (100, 0));
}

#[test]
fn a_transaction_is_reversed_at_most_once_but_a_reversal_may_be_reversed() {
    let mut h = Harness::new();
    let (_, original) = h.run(deposit(1, 100, 0));
    let (outcome, reversing) = h.run(reversal(1, &original));
    assert_eq!(outcome, Outcome::Committed);
    h.rejects(reversal(1, &original), FailReason::AlreadyReversed);
    // Reversing the reversal (transaction 2) puts the deposit back.
    assert_eq!(h.outcome(reversal(2, &reversing)), Outcome::Committed);
    assert_eq!(h.balance(1), 100);
    assert_eq!(h.transactor.reversals(), [(1, 2), (2, 4)]);
}

#[test]
fn a_reversal_without_a_reversible_original_is_refused_with_its_reason() {
    let mut h = Harness::new();
    let (_, original) = h.run(deposit(1, 100, 0));
    h.rejects(
        reversal_of(1, ReversalTarget::Unresolved),
        FailReason::InvalidOperation,
    );
    h.rejects(
        reversal_of(99, ReversalTarget::NotFound),
        FailReason::TransactionNotFound,
    );
    h.rejects(
        reversal_of(1, ReversalTarget::NotReversible),
        FailReason::NotReversible,
    );
    // An original at or after the reversal's own id cannot be a committed transaction.
    let own_id = h.next_tx_id;
    h.rejects(reversal(own_id, &original), FailReason::TransactionNotFound);
    h.rejects(reversal(0, &original), FailReason::TransactionNotFound);
    h.rejects(reversal(1, &[]), FailReason::NotReversible);
    // Entries that do not sum to zero are no transaction's.
    h.rejects(reversal(1, &original[..1]), FailReason::ZeroSumViolation);
}

#[test]
fn a_reversal_obeys_the_accounts_rules_as_they_are_now() {
    let mut h = Harness::new();
    let (_, funding) = h.run(deposit(1, 100, 0));
    let (_, spending) = h.run(transfer(1, 2, 100));
    // Account 1 spent the deposit: taking it back would overdraw it.
    h.rejects(reversal(1, &funding), FailReason::InsufficientFunds);
    // A frozen account takes part in no reversal.
    let frozen = AccountConfig {
        flags: AccountConfig::FROZEN | AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
        ..AccountConfig::default()
    };
    assert_eq!(configure(&mut h, 2, frozen), Outcome::Committed);
    h.rejects(reversal(2, &spending), FailReason::AccountFrozen);
    // Thawed, it takes part again.
    assert_eq!(
        configure(&mut h, 2, AccountConfig::default()),
        Outcome::Committed
    );
    assert_eq!(h.outcome(reversal(2, &spending)), Outcome::Committed);
    assert_eq!((h.balance(1), h.balance(2)), (100, 0));
}

#[test]
fn a_reversal_of_an_unchecked_composite_may_not_draw_an_account_below_zero() {
    let mut h = Harness::new();
    // A composite without CHECK_NEGATIVE_BALANCE leaves account 1 at -50.
    let (outcome, original) = h.run(composite(vec![credit(1, 50), debit(2, 50)], 0));
    assert_eq!(outcome, Outcome::Committed);
    h.run(transfer(2, 3, 50));
    // Its reversal would take 50 from account 2, which has nothing now.
    h.rejects(reversal(1, &original), FailReason::InsufficientFunds);
    h.run(transfer(3, 2, 50));
    // Account 1 going up from -50 is no decrease: allowed.
    assert_eq!(h.outcome(reversal(1, &original)), Outcome::Committed);
    assert_eq!((h.balance(1), h.balance(2)), (0, 0));
}

#[test]
fn replay_refuses_a_transaction_reversed_twice() {
    let mut replica = Harness::new().transactor;
    let effects = [Effect::Reversed { tx_id: 1 }];
    replica
        .replay(1, 1, 0, Outcome::Committed, &[], &[])
        .unwrap();
    replica
        .replay(2, 2, 0, Outcome::Committed, &[], &effects)
        .unwrap();
    assert!(matches!(
        replica.replay(3, 3, 0, Outcome::Committed, &[], &effects),
        Err(ReplayError::BadReversal {
            tx_id: 3,
            original: 1,
            ..
        })
    ));
}

#[test]
fn aggregates_follow_every_movement_below_a_parent() {
    let mut h = Harness::new();
    assert_eq!(
        configure(&mut h, 1, AccountConfig::default()),
        Outcome::Committed
    );
    assert_eq!(configure(&mut h, 2, sub_account(1, 0)), Outcome::Committed);
    assert_eq!(configure(&mut h, 3, sub_account(2, 0)), Outcome::Committed);
    h.deposit(3, 70);
    h.deposit(1, 5);
    assert_eq!(
        (aggregate(&h, 1), aggregate(&h, 2), aggregate(&h, 3)),
        (75, 70, 70)
    );
    // Out of the tree (to an unconfigured account), by transfer, composite and withdrawal.
    h.run(transfer(3, 9, 20));
    h.run(composite(vec![credit(3, 10), debit(9, 10)], 1));
    h.run(withdrawal(3, 5));
    assert_eq!((aggregate(&h, 1), aggregate(&h, 2)), (40, 35));
    // Within the tree: the parent's aggregate does not change.
    h.run(transfer(3, 2, 35));
    assert_eq!(
        (aggregate(&h, 1), aggregate(&h, 2), aggregate(&h, 3)),
        (40, 35, 0)
    );
    assert_eq!(h.transactor.accounts().children(1), 1);
}

#[test]
fn a_leaf_moving_to_another_parent_takes_its_balance_along() {
    let mut h = Harness::new();
    for root in [1, 2] {
        assert_eq!(
            configure(&mut h, root, AccountConfig::default()),
            Outcome::Committed
        );
    }
    assert_eq!(configure(&mut h, 3, sub_account(1, 0)), Outcome::Committed);
    h.deposit(3, 40);
    assert_eq!(configure(&mut h, 3, sub_account(2, 0)), Outcome::Committed);
    assert_eq!((aggregate(&h, 1), aggregate(&h, 2)), (0, 40));
    assert_eq!(
        configure(&mut h, 3, AccountConfig::default()),
        Outcome::Committed
    );
    assert_eq!(
        (aggregate(&h, 2), h.transactor.accounts().children(2)),
        (0, 0)
    );
}

#[test]
fn a_hierarchy_is_at_most_eight_deep() {
    let mut h = Harness::new();
    assert_eq!(
        configure(&mut h, 1, AccountConfig::default()),
        Outcome::Committed
    );
    let depth = HIERARCHY_DEPTH_MAX as u64;
    for account in 2..=depth {
        let outcome = configure(&mut h, account, sub_account(account - 1, 0));
        assert_eq!(outcome, Outcome::Committed, "account {account}");
    }
    h.rejects(
        Operation::configure(depth + 1, sub_account(depth, 0), 0),
        FailReason::InvalidHierarchy,
    );
    h.deposit(depth, 9);
    assert_eq!(aggregate(&h, 1), 9);
}

#[test]
fn no_cycle_no_self_parent_and_an_account_with_sub_accounts_stays_put() {
    let mut h = Harness::new();
    assert_eq!(configure(&mut h, 2, sub_account(1, 0)), Outcome::Committed);
    h.rejects(
        Operation::configure(1, sub_account(2, 0), 0),
        FailReason::InvalidHierarchy,
    );
    h.rejects(
        Operation::configure(3, sub_account(3, 0), 0),
        FailReason::InvalidHierarchy,
    );
    // Account 1 (unconfigured until now) has a sub-account: its other rules may change,
    // its parent and currency may not.
    let limited = AccountConfig {
        overdraft_limit: 10,
        ..AccountConfig::default()
    };
    assert_eq!(configure(&mut h, 1, limited), Outcome::Committed);
    h.rejects(
        Operation::configure(1, sub_account(4, 0), 0),
        FailReason::InvalidHierarchy,
    );
    h.rejects(
        Operation::configure(1, sub_account(0, 5), 0),
        FailReason::InvalidHierarchy,
    );
}

#[test]
fn a_sub_account_is_in_its_parents_currency() {
    let mut h = Harness::new();
    assert_eq!(
        configure(&mut h, 1, sub_account(0, 840)),
        Outcome::Committed
    );
    h.rejects(
        Operation::configure(2, sub_account(1, 978), 0),
        FailReason::InvalidHierarchy,
    );
    assert_eq!(
        configure(&mut h, 2, sub_account(1, 840)),
        Outcome::Committed
    );
    // Nor may it leave the currency while it stays under the parent.
    h.rejects(
        Operation::configure(2, sub_account(1, 978), 0),
        FailReason::InvalidHierarchy,
    );
}

#[test]
fn a_parent_beyond_max_accounts_is_refused() {
    let mut h = Harness::new();
    h.rejects(
        Operation::configure(1, sub_account(100, 0), 0),
        FailReason::AccountLimitExceeded,
    );
}

#[test]
fn a_closed_hold_is_forgotten_once_its_retention_has_passed() {
    let retention = 60 * SECOND;
    let mut h = Harness::with(TransactorConfig {
        max_accounts: 100,
        dedup_window_ns: 10 * SECOND,
        closed_hold_retention_ns: retention,
        closed_holds_max: 10,
    });
    h.deposit(1, 100);
    let hold_id = h.next_tx_id;
    assert_eq!(
        h.outcome(Operation::hold(1, 2, 40, 0, 0)),
        Outcome::Committed
    );
    let post = || Operation::PostHold {
        hold_id,
        amount: 0,
        user_ref: 0,
    };
    assert_eq!(h.outcome(post()), Outcome::Committed);
    let closed_at = h.now_ns;
    // Within the retention a second post is refused as closed, and the hold is readable.
    h.now_ns = closed_at + retention - 1;
    h.rejects(post(), FailReason::HoldClosed);
    assert!(h.transactor.holds().get(hold_id).is_some());
    // From the end of the retention on it is forgotten: not found.
    h.now_ns = closed_at + retention;
    h.rejects(post(), FailReason::HoldNotFound);
    assert!(h.transactor.holds().get(hold_id).is_none());
    assert_eq!(h.transactor.holds().closed_len(), 0);
    // An open hold is never forgotten, however old.
    let open_id = h.next_tx_id;
    assert_eq!(
        h.outcome(Operation::hold(1, 2, 10, 0, 0)),
        Outcome::Committed
    );
    h.now_ns += 100 * retention;
    h.deposit(3, 1);
    assert!(h.transactor.holds().get(open_id).is_some());
}

#[test]
fn past_the_maximum_the_first_closed_hold_is_forgotten_early() {
    let mut h = Harness::with(TransactorConfig {
        max_accounts: 100,
        closed_holds_max: 2,
        ..TransactorConfig::default()
    });
    h.deposit(1, 100);
    let ids: Vec<u64> = (0..3)
        .map(|_| {
            let id = h.next_tx_id;
            assert_eq!(
                h.outcome(Operation::hold(1, 2, 10, 0, 0)),
                Outcome::Committed
            );
            id
        })
        .collect();
    let post = |hold_id| Operation::PostHold {
        hold_id,
        amount: 0,
        user_ref: 0,
    };
    // The third is voided after the first two are posted: the first closed goes.
    assert_eq!(h.outcome(post(ids[0])), Outcome::Committed);
    assert_eq!(h.outcome(post(ids[1])), Outcome::Committed);
    let void = Operation::VoidHold {
        hold_id: ids[2],
        user_ref: 0,
    };
    assert_eq!(h.outcome(void), Outcome::Committed);
    h.rejects(post(ids[0]), FailReason::HoldNotFound);
    h.rejects(post(ids[1]), FailReason::HoldClosed);
    h.rejects(post(ids[2]), FailReason::HoldClosed);
    assert!(h.transactor.holds().get(ids[0]).is_none());
    assert_eq!(h.transactor.holds().closed_len(), 2);
    // An open hold never counts: a fourth, open, is kept beside the two closed.
    let open = h.next_tx_id;
    assert_eq!(
        h.outcome(Operation::hold(1, 2, 10, 0, 0)),
        Outcome::Committed
    );
    assert!(h.transactor.holds().get(open).is_some());
    assert_eq!(h.transactor.holds().closed_len(), 2);
}
