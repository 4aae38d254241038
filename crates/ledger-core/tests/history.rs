//! get_transaction, get_account_history and get_balance_at through the public API: the
//! same answers from memory, from disk, and after a restart; across segment rotation and
//! retention; pages contiguous; balances in the past equal a replay stopped there.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use ledger_core::ledger::{
    HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, HistoryEntry, HistoryEvent, Ledger, LedgerConfig,
    LedgerError, LinkKind, StreamFilter, Transaction,
};
use ledger_core::transaction::{
    AccountConfig, CompositeOperation, Effect, EntryKind, FailReason, Operation, Outcome, Step,
    TxId, WaitLevel,
};
use proptest::prelude::*;

const ACCOUNTS: u64 = 12;

fn config(dir: &tempfile::TempDir) -> LedgerConfig {
    let mut config = LedgerConfig::in_dir(dir.path());
    config.max_accounts = 64;
    config.ring_size = 256;
    // Tiny segments and frames: many rotations, many frames per segment.
    config.wal_segment_bytes = 16 << 10;
    config.wal_frame_bytes = 4096;
    // Holds expire only by the workload's ExpireHolds: the ledger's own expiry
    // transactions would come at times of its choosing, after the ids the test checks.
    config.expire_holds = false;
    config
}

fn started(config: LedgerConfig) -> Ledger {
    let mut ledger = Ledger::new(config);
    ledger.start().unwrap();
    ledger
}

fn operation() -> impl Strategy<Value = Operation> {
    let account = 1..ACCOUNTS;
    let amount = 1_u64..500;
    let user_ref = prop_oneof![4 => Just(0_u64), 1 => 1_u64..6];
    prop_oneof![
        3 => (account.clone(), amount.clone(), user_ref.clone())
            .prop_map(|(account, amount, user_ref)| Operation::Deposit { account, amount, user_ref }),
        2 => (account.clone(), amount.clone(), user_ref.clone())
            .prop_map(|(account, amount, user_ref)| Operation::Withdrawal { account, amount, user_ref }),
        4 => (account.clone(), account.clone(), amount.clone(), user_ref.clone())
            .prop_map(|(from, to, amount, user_ref)| Operation::Transfer { from, to, amount, user_ref }),
        1 => (prop::collection::vec((account, amount, any::<bool>()), 1..5), user_ref)
            .prop_map(|(legs, user_ref)| {
                // Balanced: every credit is matched by a debit of the system account.
                let mut steps = Vec::new();
                for (account_id, amount, credit) in legs {
                    if credit {
                        steps.push(Step::Credit { account_id, amount });
                        steps.push(Step::Debit { account_id: 0, amount });
                    } else {
                        steps.push(Step::Credit { account_id: 0, amount });
                        steps.push(Step::Debit { account_id, amount });
                    }
                }
                Operation::Composite(Box::new(CompositeOperation {
                    steps,
                    flags: CompositeOperation::CHECK_NEGATIVE_BALANCE,
                    user_ref,
                }))
            }),
        2 => money_operation(),
    ]
}

/// The money model's operations: configurations, holds placed, posted, voided and
/// expired, reversals (hold and transaction ids are guesses: many are refused).
fn money_operation() -> impl Strategy<Value = Operation> {
    let account = 1..ACCOUNTS;
    let id = 1_u64..400;
    prop_oneof![
        1 => (account.clone(), 0_u64..300).prop_map(|(account, overdraft_limit)| {
            Operation::ConfigureAccount {
                account,
                config: Box::new(AccountConfig {
                    overdraft_limit,
                    ..AccountConfig::default()
                }),
                user_ref: 0,
            }
        }),
        3 => (account.clone(), account, 1_u64..200, prop_oneof![Just(0_u64), 1_u64..2_000])
            .prop_map(|(from, to, amount, timeout)| Operation::hold(from, to, amount, timeout, 0)),
        2 => (id.clone(), 0_u64..150)
            .prop_map(|(hold_id, amount)| Operation::PostHold { hold_id, amount, user_ref: 0 }),
        1 => id.clone().prop_map(|hold_id| Operation::VoidHold { hold_id, user_ref: 0 }),
        1 => Just(Operation::ExpireHolds),
        1 => id.prop_map(|tx_id| Operation::reverse(tx_id, 0)),
    ]
}

/// Every transaction, as the ledger returns it.
fn all_transactions(ledger: &Ledger, last: TxId) -> Vec<Transaction> {
    (1..=last)
        .map(|id| ledger.get_transaction(id).unwrap())
        .collect()
}

/// An account's history: its entries and its events, each newest first.
type History = (Vec<HistoryEntry>, Vec<HistoryEvent>);

/// An account's whole history, page by page, checking each page's cursor and size.
fn full_history(ledger: &Ledger, account: u64, limit: usize) -> History {
    let mut out: History = (Vec::new(), Vec::new());
    let mut newest_seen = TxId::MAX;
    let mut from = 0;
    loop {
        let page = ledger.get_account_history(account, from, limit).unwrap();
        let txs: std::collections::BTreeSet<_> = page
            .entries
            .iter()
            .map(|e| e.tx_id)
            .chain(page.events.iter().map(|e| e.tx_id))
            .collect();
        assert!(
            !txs.is_empty() || out.0.is_empty() && out.1.is_empty(),
            "an empty page"
        );
        if let Some(&newest) = txs.last() {
            assert!(newest < newest_seen, "pages overlap or go forward");
            newest_seen = *txs.first().unwrap();
        }
        assert!(
            page.len() <= limit.max(1) || txs.len() == 1,
            "page of {} items in {} transactions",
            page.len(),
            txs.len()
        );
        out.0.extend(page.entries);
        out.1.extend(page.events);
        if page.next_tx_id == 0 {
            return out;
        }
        assert!(newest_seen > page.next_tx_id);
        from = page.next_tx_id;
    }
}

/// Model: each account's entries and events newest first, from the transactions
/// themselves: an event for each effect naming the account (a hold's void or expiry
/// names the accounts of the hold it closes; a post or a reversal, those of its entries).
fn model_history(txs: &[Transaction], account: u64) -> History {
    let mut holds = BTreeMap::new();
    for tx in txs {
        for effect in &tx.effects {
            if let Effect::HoldOpened { from, to, .. } = *effect {
                holds.insert(tx.tx_id, (from, to));
            }
        }
    }
    let names = |tx: &Transaction, effect: &Effect| match *effect {
        Effect::Configured { account: a, .. } => a == account,
        Effect::HoldOpened { from, to, .. } => from == account || to == account,
        Effect::HoldVoided { hold_id } | Effect::HoldExpired { hold_id } => {
            let (from, to) = holds[&hold_id];
            from == account || to == account
        }
        _ => tx.entries.iter().any(|e| e.account_id == account),
    };
    let mut out: History = (Vec::new(), Vec::new());
    for tx in txs.iter().rev() {
        for entry in tx.entries.iter().rev() {
            if entry.account_id == account {
                out.0.push(HistoryEntry {
                    tx_id: tx.tx_id,
                    timestamp_ns: tx.timestamp_ns,
                    entry: *entry,
                });
            }
        }
        for effect in tx.effects.iter().rev() {
            if names(tx, effect) {
                out.1.push(HistoryEvent {
                    tx_id: tx.tx_id,
                    timestamp_ns: tx.timestamp_ns,
                    effect: *effect,
                });
            }
        }
    }
    out
}

/// Replays entries up to `until`, checking every balance-after and the zero sum.
fn replay(txs: &[Transaction], until: TxId) -> BTreeMap<u64, i64> {
    let mut balances = BTreeMap::new();
    for tx in txs.iter().take_while(|t| t.tx_id <= until) {
        let mut sum = 0_i64;
        for entry in &tx.entries {
            let delta = match entry.kind {
                EntryKind::Credit => -(entry.amount as i64),
                EntryKind::Debit => entry.amount as i64,
            };
            sum += delta;
            let balance = balances.entry(entry.account_id).or_insert(0_i64);
            *balance += delta;
            assert_eq!(
                *balance, entry.balance_after,
                "tx {} balance after",
                tx.tx_id
            );
        }
        assert_eq!(sum, 0, "tx {} does not net to zero", tx.tx_id);
    }
    balances
}

fn check_everything(
    ledger: &Ledger,
    ops: &[Operation],
    reasons: &[Option<FailReason>],
    last: TxId,
) -> Vec<Transaction> {
    let txs = all_transactions(ledger, last);
    for (i, tx) in txs.iter().enumerate() {
        assert_eq!(tx.tx_id, i as u64 + 1);
        assert_eq!(tx.user_ref, ops[i].user_ref());
        match (tx.outcome, reasons[i]) {
            (Outcome::Committed, None) => {
                assert!(tx.links.iter().all(|l| l.kind != LinkKind::Duplicate))
            }
            (Outcome::Rejected(r), Some(expected)) => {
                assert_eq!(r, expected);
                assert!(tx.entries.is_empty());
                if let FailReason::Duplicate { original_tx_id } = r {
                    assert_eq!(tx.links.len(), 1);
                    assert_eq!(tx.links[0].to_tx_id, original_tx_id);
                    assert_eq!(tx.links[0].kind, LinkKind::Duplicate);
                }
            }
            (got, want) => panic!("tx {}: {got:?} but the submit said {want:?}", tx.tx_id),
        }
    }
    // The change stream's read: every transaction in order, in chunks of any size, as
    // get_transaction returns it but for a later reversal's link.
    let streamed: Vec<Transaction> = txs
        .iter()
        .map(|t| Transaction {
            links: t
                .links
                .iter()
                .filter(|l| l.kind != LinkKind::ReversedBy)
                .copied()
                .collect(),
            ..t.clone()
        })
        .collect();
    let all = StreamFilter {
        include_rejected: true,
        ..StreamFilter::default()
    };
    for max in [1, 7, 1000] {
        let mut read = Vec::new();
        let mut from = 1;
        while from <= last {
            let page = ledger.read_transactions(from, max, &all).unwrap();
            assert!(!page.transactions.is_empty() && page.transactions.len() <= max);
            assert_eq!(page.next_tx_id, page.transactions.last().unwrap().tx_id + 1);
            read.extend(page.transactions);
            from = page.next_tx_id;
        }
        assert_eq!(read, streamed, "max {max}");
    }
    let beyond = ledger.read_transactions(last + 1, 10, &all).unwrap();
    assert_eq!(
        (beyond.transactions.len(), beyond.next_tx_id),
        (0, last + 1)
    );
    // Filtered: committed ones only, or those naming an account (as its history does).
    let committed = ledger
        .read_transactions(1, usize::MAX, &StreamFilter::default())
        .unwrap();
    let want: Vec<_> = streamed
        .iter()
        .filter(|t| t.outcome.is_committed())
        .cloned()
        .collect();
    assert_eq!(
        (committed.transactions, committed.next_tx_id),
        (want, last + 1)
    );
    for account in [1, 5] {
        let filter = StreamFilter {
            accounts: vec![account],
            ..StreamFilter::default()
        };
        let ids: Vec<TxId> = ledger
            .read_transactions(1, usize::MAX, &filter)
            .unwrap()
            .transactions
            .iter()
            .map(|t| t.tx_id)
            .collect();
        let (entries, events) = model_history(&txs, account);
        let mut want: Vec<TxId> = entries
            .iter()
            .map(|e| e.tx_id)
            .chain(events.iter().map(|e| e.tx_id))
            .collect();
        want.sort_unstable();
        want.dedup();
        assert_eq!(ids, want, "account {account}");
    }
    let final_balances = replay(&txs, last);
    let mut events = 0;
    for account in 0..ACCOUNTS {
        let expected = model_history(&txs, account);
        events += expected.1.len();
        for limit in [1, 3, HISTORY_LIMIT_DEFAULT] {
            assert_eq!(
                full_history(ledger, account, limit),
                expected,
                "account {account}, limit {limit}"
            );
        }
        let balance = ledger.get_balance(account).balance;
        assert_eq!(balance, final_balances.get(&account).copied().unwrap_or(0));
    }
    eprintln!("{} transactions, {events} events", txs.len());
    txs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The answers from memory, from disk (no read cache), and after a restart (index
    /// rebuilt, cache cold) are identical and agree with the model.
    #[test]
    fn memory_disk_and_restart_give_the_same_answers(
        ops in prop::collection::vec(operation(), 1..400),
        batch in 1_usize..40,
        probes in prop::collection::vec((0..ACCOUNTS, any::<prop::sample::Index>()), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut reasons = Vec::new();
        let from_memory;
        let last;
        {
            let ledger = started(config(&dir));
            for chunk in ops.chunks(batch) {
                for r in ledger.submit_batch_and_wait(chunk.to_vec(), WaitLevel::Committed) {
                    reasons.push(r.fail_reason);
                }
            }
            last = ops.len() as TxId;
            from_memory = check_everything(&ledger, &ops, &reasons, last);
            let m = ledger.metrics();
            prop_assert!(m.records_read_memory > 0, "{m:?}");
            // get_balance_at agrees with a replay stopped at that id.
            for (account, at) in &probes {
                let at = at.index(ops.len()) as TxId + 1;
                let expected = replay(&from_memory, at).get(account).copied().unwrap_or(0);
                let got = ledger.get_balance_at(*account, at).unwrap();
                prop_assert_eq!(got.balance, expected, "account {} at {}", account, at);
                prop_assert_eq!(got.last_snapshot_tx_id, at);
            }
        }
        {
            let mut cold = config(&dir);
            cold.read_cache_bytes = 0;
            let ledger = started(cold);
            let from_disk = check_everything(&ledger, &ops, &reasons, last);
            prop_assert_eq!(&from_disk, &from_memory);
            let m = ledger.metrics();
            prop_assert_eq!(m.records_read_memory, 0);
            prop_assert!(m.records_read_disk > 0);
            for (account, at) in &probes {
                let at = at.index(ops.len()) as TxId + 1;
                let expected = replay(&from_memory, at).get(account).copied().unwrap_or(0);
                prop_assert_eq!(ledger.get_balance_at(*account, at).unwrap().balance, expected);
            }
        }
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(config(&dir));
    let r = ledger.submit_and_wait(
        Operation::Deposit {
            account: 3,
            amount: 10,
            user_ref: 0,
        },
        WaitLevel::Committed,
    );
    assert!(matches!(
        ledger.get_transaction(0),
        Err(LedgerError::UnknownTransaction { tx_id: 0, .. })
    ));
    assert!(matches!(
        ledger.get_transaction(r.tx_id + 1),
        Err(LedgerError::UnknownTransaction { .. })
    ));
    assert!(matches!(
        ledger.get_account_history(64, 0, 10),
        Err(LedgerError::AccountOutOfRange { account: 64, .. })
    ));
    assert!(matches!(
        ledger.get_balance_at(u64::MAX, 1),
        Err(LedgerError::AccountOutOfRange { .. })
    ));
    assert!(matches!(
        ledger.get_balance_at(3, 0),
        Err(LedgerError::UnknownTransaction { .. })
    ));
    // An account never used has an empty history and a zero past.
    let empty = ledger.get_account_history(9, 0, 0).unwrap();
    assert!(empty.entries.is_empty());
    assert_eq!(empty.next_tx_id, 0);
    assert_eq!(ledger.get_balance_at(9, r.tx_id).unwrap().balance, 0);
    let before_start = Ledger::new(config(&dir));
    assert!(matches!(
        before_start.get_transaction(1),
        Err(LedgerError::NotStarted)
    ));
}

#[test]
fn limits_are_defaulted_and_clamped_and_any_from_id_works() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(config(&dir));
    let mut ops = Vec::new();
    for i in 0..1500_u64 {
        ops.push(Operation::Deposit {
            account: 1,
            amount: 1 + i % 7,
            user_ref: 0,
        });
        ops.push(Operation::Deposit {
            account: 2,
            amount: 1,
            user_ref: 0,
        });
    }
    let results: Vec<_> = ops
        .chunks(200)
        .flat_map(|c| ledger.submit_batch_and_wait(c.to_vec(), WaitLevel::Committed))
        .collect();
    let page = ledger.get_account_history(1, 0, 0).unwrap();
    assert_eq!(page.entries.len(), HISTORY_LIMIT_DEFAULT);
    let page = ledger.get_account_history(1, 0, 5_000).unwrap();
    assert_eq!(page.entries.len(), HISTORY_LIMIT_MAX);
    // Account 1 moved in odd ids; from an even id (account 2's) the page starts at
    // account 1's latest before it.
    let even = results[101].tx_id;
    let page = ledger.get_account_history(1, even, 3).unwrap();
    let ids: Vec<_> = page.entries.iter().map(|e| e.tx_id).collect();
    assert_eq!(ids, vec![even - 1, even - 3, even - 5]);
    assert_eq!(page.next_tx_id, even - 7);
    // Past the last id: the latest.
    let page = ledger.get_account_history(1, u64::MAX, 1).unwrap();
    assert_eq!(page.entries[0].tx_id, results[2998].tx_id);
}

#[test]
fn retention_makes_old_transactions_not_retained_and_keeps_recent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.history_retention_tx = 200;
    config.snapshot_interval_tx = 300;
    config.read_cache_bytes = 0;
    let ledger = started(config);
    let mut last = 0;
    for round in 0..40_u64 {
        let ops = (0..100)
            .map(|i| Operation::Deposit {
                account: 1 + (round + i) % 5,
                amount: 2,
                user_ref: 0,
            })
            .collect();
        last = ledger.submit_batch_and_wait(ops, WaitLevel::Snapshotted)[99].tx_id;
        if ledger.metrics().wal_segments_removed > 0 && round > 20 {
            break;
        }
    }
    // Snapshots are written in the background; keep committing until retention ran.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ledger.metrics().wal_segments_removed == 0 && std::time::Instant::now() < deadline {
        last = ledger
            .submit_and_wait(
                Operation::Deposit {
                    account: 1,
                    amount: 1,
                    user_ref: 0,
                },
                WaitLevel::Snapshotted,
            )
            .tx_id;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(ledger.metrics().wal_segments_removed > 0);
    match ledger.get_transaction(1) {
        Err(LedgerError::NotRetained {
            tx_id: 1,
            first_retained,
        }) => {
            assert!(first_retained > 1 && first_retained <= last - 199);
        }
        other => panic!("expected NotRetained, got {other:?}"),
    }
    for id in last - 199..=last {
        ledger.get_transaction(id).unwrap();
    }
    let all = StreamFilter::default();
    assert!(matches!(
        ledger.read_transactions(1, 10, &all),
        Err(LedgerError::NotRetained { tx_id: 1, .. })
    ));
    let tail = ledger.read_transactions(last - 199, 500, &all).unwrap();
    assert_eq!(tail.transactions.len(), 200);
    assert_eq!(tail.transactions[0].tx_id, last - 199);
    // A full history reaches the retention horizon and says so, never a wrong answer.
    let mut from = 0;
    let err = loop {
        match ledger.get_account_history(1, from, 50) {
            Ok(page) if page.next_tx_id != 0 => from = page.next_tx_id,
            Ok(page) => panic!("history ended at {page:?} without reaching deleted segments"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, LedgerError::NotRetained { .. }), "{err:?}");
}
