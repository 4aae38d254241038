//! Every call of the `Ledger` API, through the public API, on real files.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError};
use ledger_core::transaction::{
    CompositeOperation, FailReason, Operation, Step, SubmitResult, WaitLevel,
};

fn config(dir: &tempfile::TempDir) -> LedgerConfig {
    let mut config = LedgerConfig::in_dir(dir.path());
    config.max_accounts = 10_000;
    config.ring_size = 1024;
    config
}

fn started(dir: &tempfile::TempDir) -> Ledger {
    let mut ledger = Ledger::new(config(dir));
    ledger.start().expect("start");
    ledger
}

fn deposit(account: u64, amount: u64) -> Operation {
    Operation::Deposit {
        account,
        amount,
        user_ref: 0,
    }
}

fn transfer(from: u64, to: u64, amount: u64, user_ref: u64) -> Operation {
    Operation::Transfer {
        from,
        to,
        amount,
        user_ref,
    }
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the call panics");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn the_product_example_in_a_directory_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    let tx_id = ledger.submit(deposit(1, 1000));
    ledger.wait_for_transaction(tx_id);
    let balance = ledger.get_balance(1);
    assert_eq!(
        format!("Account 1 balance: {balance}"),
        "Account 1 balance: 1000"
    );
    assert_eq!(balance.balance, 1000);
    assert_eq!(balance.last_snapshot_tx_id, tx_id);
}

#[test]
fn submit_and_wait_reports_outcomes_at_every_level() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    for level in [
        WaitLevel::Processed,
        WaitLevel::Committed,
        WaitLevel::Replicated,
        WaitLevel::Snapshotted,
    ] {
        let result = ledger.submit_and_wait(deposit(7, 10), level);
        assert!(result.is_committed(), "{level:?}: {result:?}");
        let index = ledger.pipeline_index();
        match level {
            WaitLevel::Processed => assert!(index.computed >= result.tx_id),
            // A single node: replicated is committed.
            WaitLevel::Committed | WaitLevel::Replicated => {
                assert!(index.committed >= result.tx_id)
            }
            WaitLevel::Snapshotted => assert!(index.snapshot >= result.tx_id),
        }
    }
    let overdraw = ledger.submit_and_wait(transfer(7, 8, 1_000, 0), WaitLevel::Committed);
    assert_eq!(overdraw.fail_reason, Some(FailReason::InsufficientFunds));
    let first = ledger.submit_and_wait(transfer(7, 8, 5, 99), WaitLevel::Processed);
    assert!(first.is_committed());
    let again = ledger.submit_and_wait(transfer(7, 8, 5, 99), WaitLevel::Snapshotted);
    assert_eq!(
        again.fail_reason,
        Some(FailReason::Duplicate {
            original_tx_id: first.tx_id
        })
    );
    let invalid = ledger.submit_and_wait(deposit(0, 5), WaitLevel::Committed);
    assert_eq!(invalid.fail_reason, Some(FailReason::InvalidOperation));
    let beyond = ledger.submit_and_wait(deposit(10_000, 5), WaitLevel::Committed);
    assert_eq!(beyond.fail_reason, Some(FailReason::AccountLimitExceeded));
    // Four deposits of 10 (one per level), 5 moved to account 8.
    assert_eq!(ledger.get_balance(7).balance, 35);
    assert_eq!(ledger.get_balance(8).balance, 5);
    assert_eq!(ledger.get_balance(0).balance, -40);
}

#[test]
fn composite_operations_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    ledger.submit_and_wait(deposit(1, 100), WaitLevel::Committed);
    let fee = |amount: u64| {
        Operation::Composite(Box::new(CompositeOperation {
            steps: vec![
                Step::Credit {
                    account_id: 1,
                    amount: amount + 1,
                },
                Step::Debit {
                    account_id: 2,
                    amount,
                },
                Step::Debit {
                    account_id: 3,
                    amount: 1,
                },
            ],
            flags: CompositeOperation::CHECK_NEGATIVE_BALANCE,
            user_ref: 0,
        }))
    };
    assert!(
        ledger
            .submit_and_wait(fee(50), WaitLevel::Committed)
            .is_committed()
    );
    let rejected = ledger.submit_and_wait(fee(60), WaitLevel::Snapshotted);
    assert_eq!(rejected.fail_reason, Some(FailReason::InsufficientFunds));
    let balances = ledger.get_balances(&[1, 2, 3]);
    assert_eq!(balances.balances, [49, 50, 1]);
    assert_eq!(balances.last_snapshot_tx_id, rejected.tx_id);
}

#[test]
fn batches_take_contiguous_ids_and_report_each_result() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    let ids = ledger.submit_batch(vec![deposit(1, 5), deposit(2, 6), deposit(3, 7)]);
    assert_eq!(ids, [1, 2, 3]);
    let results = ledger.submit_batch_and_wait(
        vec![transfer(1, 2, 5, 0), transfer(1, 2, 5, 0), deposit(4, 1)],
        WaitLevel::Committed,
    );
    assert_eq!(
        results,
        [
            SubmitResult {
                tx_id: 4,
                fail_reason: None
            },
            SubmitResult {
                tx_id: 5,
                fail_reason: Some(FailReason::InsufficientFunds)
            },
            SubmitResult {
                tx_id: 6,
                fail_reason: None
            },
        ]
    );
    assert_eq!(ledger.get_balances(&[1, 2, 3, 4]).balances, [0, 11, 7, 1]);
    assert!(matches!(
        ledger.try_submit_batch(Vec::new()),
        Err(LedgerError::InvalidBatch { len: 0, max: 1024 })
    ));
    let too_many = vec![deposit(1, 1); 1025];
    assert!(matches!(
        ledger.try_submit_batch_and_wait(too_many, WaitLevel::Committed),
        Err(LedgerError::InvalidBatch { len: 1025, .. })
    ));
    // The rejected batches took no ids.
    assert_eq!(ledger.submit(deposit(1, 1)), 7);
}

#[test]
fn every_try_call_says_not_started_and_the_plain_calls_panic_pointing_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(config(&dir));
    assert!(matches!(
        ledger.try_submit(deposit(1, 1)),
        Err(LedgerError::NotStarted)
    ));
    assert!(matches!(
        ledger.try_submit_nowait(deposit(1, 1)),
        Err(LedgerError::NotStarted)
    ));
    assert!(matches!(
        ledger.try_submit_if_room(deposit(1, 1)),
        Err(LedgerError::NotStarted)
    ));
    assert!(matches!(
        ledger.try_submit_and_wait(deposit(1, 1), WaitLevel::Committed),
        Err(LedgerError::NotStarted)
    ));
    assert!(matches!(
        ledger.try_submit_batch(vec![deposit(1, 1)]),
        Err(LedgerError::NotStarted)
    ));
    assert!(matches!(
        ledger.try_wait_for(1, WaitLevel::Committed),
        Err(LedgerError::NotStarted)
    ));
    assert!(matches!(
        ledger.try_get_balance(1),
        Err(LedgerError::NotStarted)
    ));
    assert!(matches!(
        ledger.try_get_balances(&[1]),
        Err(LedgerError::NotStarted)
    ));
    assert!(matches!(
        ledger.try_outcome(1),
        Err(LedgerError::NotStarted)
    ));
    assert_eq!(ledger.pipeline_index().committed, 0);
    let message = panic_message(|| {
        ledger.submit(deposit(1, 1));
    });
    assert!(message.contains("not started"), "{message}");
    assert!(message.contains("try_submit"), "{message}");
    let message = panic_message(|| ledger.wait_for_transaction(1));
    assert!(message.contains("try_wait_for_transaction"), "{message}");
    // Nothing was written: the directory is not even created before start().
    assert!(!dir.path().join("wal").exists());
}

#[test]
fn a_stopped_ledger_refuses_work_but_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = started(&dir);
    let tx = ledger.submit(deposit(3, 30));
    ledger.stop().expect("clean stop");
    ledger.stop().expect("stop is idempotent");
    // Everything submitted before stop() was drained: durable and visible.
    assert_eq!(ledger.pipeline_index().snapshot, tx);
    assert_eq!(ledger.get_balance(3).balance, 30);
    assert!(matches!(
        ledger.try_submit(deposit(3, 1)),
        Err(LedgerError::Stopped)
    ));
    assert!(matches!(
        ledger.try_submit_batch_and_wait(vec![deposit(3, 1)], WaitLevel::Committed),
        Err(LedgerError::Stopped)
    ));
    ledger
        .try_wait_for(tx, WaitLevel::Snapshotted)
        .expect("reached before the stop");
    let message = panic_message(|| {
        ledger.submit(deposit(3, 1));
    });
    assert!(
        message.contains("stopped") && message.contains("try_submit"),
        "{message}"
    );
    // Started again, it recovers and continues the ids.
    ledger.start().expect("restart");
    assert!(matches!(ledger.start(), Err(LedgerError::AlreadyStarted)));
    assert_eq!(ledger.get_balance(3).balance, 30);
    assert_eq!(ledger.submit(deposit(3, 1)), tx + 1);
}

#[test]
fn waiting_for_an_id_never_issued_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    assert!(matches!(
        ledger.try_wait_for(1, WaitLevel::Committed),
        Err(LedgerError::UnknownTransaction {
            tx_id: 1,
            last_issued: 0
        })
    ));
    assert!(matches!(
        ledger.try_wait_for(0, WaitLevel::Processed),
        Err(LedgerError::UnknownTransaction { .. })
    ));
    let tx = ledger.submit(deposit(1, 1));
    ledger
        .try_wait_for_timeout(tx, WaitLevel::Snapshotted, Duration::from_secs(30))
        .expect("reached");
    assert!(matches!(
        pollster::block_on(ledger.wait_for_async(tx + 1, WaitLevel::Committed)),
        Err(LedgerError::UnknownTransaction { .. })
    ));
    assert!(matches!(
        ledger.try_outcome(tx + 1),
        Err(LedgerError::UnknownTransaction { .. })
    ));
}

#[test]
fn async_wait_resolves_on_any_executor() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    let ids = ledger.submit_batch((1..=100).map(|a| deposit(a, a)).collect());
    let last = *ids.last().unwrap();
    pollster::block_on(ledger.wait_for_async(last, WaitLevel::Snapshotted)).expect("reached");
    assert_eq!(ledger.get_balance(100).balance, 100);
}

#[test]
fn balances_outside_the_table_read_zero_or_error() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    assert_eq!(ledger.get_balance(10_000).balance, 0);
    assert_eq!(ledger.get_balance(u64::MAX).balance, 0);
    assert!(matches!(
        ledger.try_get_balance(10_000),
        Err(LedgerError::AccountOutOfRange {
            account: 10_000,
            max_accounts: 10_000
        })
    ));
    assert_eq!(ledger.get_balances(&[1, u64::MAX]).balances, [0, 0]);
    assert!(ledger.try_get_balances(&[1, u64::MAX]).is_err());
}

#[test]
fn many_threads_submit_at_once_and_every_id_is_unique() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(started(&dir));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                (0..2_000u64)
                    .map(|i| ledger.submit(deposit(1 + (t * 2_000 + i) % 500, 1)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=8_000).collect::<Vec<_>>());
    ledger.wait_for(8_000, WaitLevel::Snapshotted);
    let accounts: Vec<u64> = (0..=500).collect();
    let balances = ledger.get_balances(&accounts);
    assert_eq!(balances.balances.iter().sum::<i64>(), 0);
    assert_eq!(balances.balances[0], -8_000);
}

/// Funds move between accounts 1..=16 only, so their sum never changes; a read that mixed
/// two points in time would see a transfer half applied.
#[test]
fn get_balances_is_a_consistent_cut_under_concurrent_load() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(started(&dir));
    let accounts: Vec<u64> = (1..=16).collect();
    let funding = accounts.iter().map(|&a| deposit(a, 1_000)).collect();
    ledger.submit_batch_and_wait(funding, WaitLevel::Snapshotted);
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ w;
                for _ in 0..200 {
                    let batch = (0..64)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            transfer(1 + x % 16, 1 + (x >> 8) % 16, 1 + (x >> 16) % 300, 0)
                        })
                        .collect();
                    ledger.submit_batch(batch);
                }
            })
        })
        .collect();
    let reader = {
        let ledger = Arc::clone(&ledger);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut last_seen = 0;
            while !done.load(Ordering::Acquire) || reads < 100 {
                let cut = ledger.get_balances(&accounts);
                assert_eq!(
                    cut.balances.iter().sum::<i64>(),
                    16_000,
                    "at {}",
                    cut.last_snapshot_tx_id
                );
                assert!(
                    cut.last_snapshot_tx_id >= last_seen,
                    "the snapshot index never goes back"
                );
                last_seen = cut.last_snapshot_tx_id;
                reads += 1;
            }
            reads
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    assert!(reader.join().unwrap() >= 100);
}

#[test]
fn restart_recovers_from_the_stop_snapshot_or_from_the_wal() {
    for snapshot_on_stop in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dir);
        config.snapshot_on_stop = snapshot_on_stop;
        {
            let mut ledger = Ledger::new(config.clone());
            ledger.start().unwrap();
            let ops = (1..=500).map(|a| deposit(a, a)).collect();
            ledger.submit_batch_and_wait(ops, WaitLevel::Committed);
            ledger.submit_and_wait(transfer(500, 1, 500, 77), WaitLevel::Committed);
        }
        let mut ledger = Ledger::new(config);
        ledger.start().unwrap();
        let report = ledger.recovery_report().unwrap().clone();
        assert_eq!(report.last_tx_id, 501);
        if snapshot_on_stop {
            assert_eq!(report.snapshot.as_ref().map(|s| s.1), Some(501));
            assert_eq!(report.replayed, 0);
        } else {
            assert_eq!(report.snapshot, None);
            assert_eq!(report.replayed, 501);
        }
        assert_eq!(ledger.get_balance(1).balance, 501);
        assert_eq!(ledger.get_balance(500).balance, 0);
        // The dedup window survived the restart.
        let again = ledger.submit_and_wait(transfer(2, 1, 1, 77), WaitLevel::Committed);
        assert_eq!(again.tx_id, 502);
        assert_eq!(
            again.fail_reason,
            Some(FailReason::Duplicate {
                original_tx_id: 501
            })
        );
    }
}

#[test]
fn periodic_snapshots_let_old_wal_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.snapshot_interval_tx = 2_000;
    config.wal_segment_bytes = 64 << 10;
    config.snapshot_on_stop = false;
    config.history_retention_tx = 0;
    let mut last = 0;
    {
        let mut ledger = Ledger::new(config.clone());
        ledger.start().unwrap();
        for round in 0..20u64 {
            let ops = (0..500)
                .map(|i| deposit(1 + (round * 500 + i) % 9_000, 3))
                .collect();
            last = ledger.submit_batch_and_wait(ops, WaitLevel::Snapshotted)[499].tx_id;
        }
        // A snapshot is written in the background; wait for one to land and prune.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while ledger.metrics().wal_segments_removed == 0 && std::time::Instant::now() < deadline {
            ledger.submit_batch_and_wait(vec![deposit(1, 1)], WaitLevel::Snapshotted);
            last += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        let metrics = ledger.metrics();
        assert!(metrics.snapshots_written >= 1, "{metrics:?}");
        assert!(metrics.wal_segments_removed >= 1, "{metrics:?}");
        assert!(metrics.wal_syncs >= 20, "{metrics:?}");
    }
    let mut ledger = Ledger::new(config);
    ledger.start().unwrap();
    let report = ledger.recovery_report().unwrap();
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(report.last_tx_id, last);
    let sum: i64 = ledger
        .get_balances(&(0..10_000).collect::<Vec<_>>())
        .balances
        .iter()
        .sum();
    assert_eq!(sum, 0);
    assert_eq!(
        ledger.get_balance(0).balance,
        -3 * 10_000 - (last as i64 - 10_000)
    );
}

#[test]
fn a_full_ring_is_busy_and_hands_the_operation_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    // Two slots, freed only after an fdatasync: a tight loop of submits fills them.
    config.ring_size = 2;
    let mut ledger = Ledger::new(config);
    ledger.start().unwrap();
    let op = Operation::Composite(Box::new(CompositeOperation {
        steps: vec![
            Step::Credit {
                account_id: 0,
                amount: 5,
            },
            Step::Debit {
                account_id: 3,
                amount: 5,
            },
        ],
        flags: 0,
        user_ref: 0,
    }));
    let mut accepted = 0_i64;
    let mut handed_back = None;
    for _ in 0..1_000_000 {
        match ledger.try_submit_if_room(op.clone()).unwrap() {
            Ok(_) => accepted += 1,
            Err(back) => {
                handed_back = Some(back);
                break;
            }
        }
    }
    assert_eq!(handed_back.as_ref(), Some(&op), "the ring never filled");
    // The operation handed back is submitted as is once there is room.
    let id = ledger.submit(handed_back.unwrap());
    ledger.wait_for(id, WaitLevel::Snapshotted);
    assert_eq!(ledger.get_balance(3).balance, 5 * (accepted + 1));
}

/// Holds through the embedded ledger: reads of a hold and of an account's open holds,
/// an expiry recorded by the ledger itself on an idle ledger, all of it back after a
/// restart (replayed from the WAL, then from a snapshot).
#[test]
fn holds_expire_on_an_idle_ledger_and_survive_restarts() {
    use ledger_core::holds::HoldState;
    let dir = tempfile::tempdir().unwrap();
    // No snapshot on stop: the first restart replays the WAL.
    let wal_only = LedgerConfig {
        snapshot_on_stop: false,
        ..config(&dir)
    };
    let mut ledger = Ledger::new(wal_only.clone());
    ledger.start().unwrap();
    let committed = |r: SubmitResult| {
        assert!(r.is_committed(), "{r:?}");
        r.tx_id
    };
    let hold = |from, to, amount, timeout_ns| Operation::hold(from, to, amount, timeout_ns, 0);
    committed(ledger.submit_and_wait(deposit(1, 1_000), WaitLevel::Committed));
    let kept = committed(ledger.submit_and_wait(hold(1, 2, 100, 0), WaitLevel::Committed));
    let second = committed(ledger.submit_and_wait(hold(1, 3, 200, 0), WaitLevel::Committed));
    // 1 ms: it expires whatever this test does next.
    let brief = committed(ledger.submit_and_wait(hold(1, 4, 300, 1_000_000), WaitLevel::Committed));
    let page = ledger.get_open_holds(1, 0, 2).unwrap();
    assert_eq!(
        page.holds.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [kept, second]
    );
    assert_eq!(page.next_after, second);
    assert!(ledger.get_open_holds(1, second, 2).unwrap().holds.len() <= 1);
    assert_eq!(ledger.get_open_holds(2, 0, 10).unwrap().holds.len(), 1);
    assert!(matches!(
        ledger.get_open_holds(10_000, 0, 10),
        Err(LedgerError::AccountOutOfRange { .. })
    ));

    // Nothing else is submitted: the ledger's own ExpireHolds releases the brief hold.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ledger.get_hold(brief).unwrap().0.unwrap().state != HoldState::Expired {
        assert!(
            std::time::Instant::now() < deadline,
            "the hold never expired"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let account = ledger.get_account(1).unwrap();
    assert_eq!((account.held_outgoing, account.available()), (300, 700));
    let voided = ledger.submit_and_wait(
        Operation::VoidHold {
            hold_id: second,
            user_ref: 0,
        },
        WaitLevel::Committed,
    );
    committed(voided);
    assert_eq!(ledger.get_hold(999_999).unwrap().0, None);

    let check = |ledger: &Ledger| {
        let state = |id| ledger.get_hold(id).unwrap().0.unwrap().state;
        assert_eq!(state(kept), HoldState::Open);
        assert_eq!(state(second), HoldState::Voided);
        assert_eq!(state(brief), HoldState::Expired);
        assert_eq!(ledger.get_account(1).unwrap().held_outgoing, 100);
        assert_eq!(ledger.get_account(2).unwrap().held_incoming, 100);
    };
    check(&ledger);
    // From the WAL (no snapshot on stop), then from a snapshot.
    ledger.stop().unwrap();
    drop(ledger);
    let mut ledger = Ledger::new(wal_only);
    ledger.start().unwrap();
    assert!(ledger.recovery_report().unwrap().snapshot.is_none());
    check(&ledger);
    ledger.stop().unwrap();
    drop(ledger);
    // Now with a snapshot written at stop, and read at the next start.
    let ledger = started(&dir);
    ledger.stop().unwrap();
    drop(ledger);
    let ledger = started(&dir);
    assert!(ledger.recovery_report().unwrap().snapshot.is_some());
    check(&ledger);
}

/// `LedgerConfig::closed_hold_retention` reaches the state machine: a posted hold is
/// forgotten once it has passed (a second post is then HoldNotFound), and a restart that
/// replays the WAL forgets it the same way.
#[test]
fn a_closed_hold_is_forgotten_after_the_configured_retention_and_stays_so() {
    let dir = tempfile::tempdir().unwrap();
    let brief = LedgerConfig {
        closed_hold_retention: Duration::from_millis(5),
        snapshot_on_stop: false,
        ..config(&dir)
    };
    let mut ledger = Ledger::new(brief.clone());
    ledger.start().unwrap();
    let level = WaitLevel::Snapshotted;
    assert!(
        ledger
            .submit_and_wait(deposit(1, 100), level)
            .is_committed()
    );
    let hold = ledger.submit_and_wait(Operation::hold(1, 2, 40, 0, 0), level);
    let post = Operation::PostHold {
        hold_id: hold.tx_id,
        amount: 0,
        user_ref: 0,
    };
    assert!(ledger.submit_and_wait(post.clone(), level).is_committed());
    // Sequencer time only moves forward: after this sleep, the next transaction is more
    // than 5 ms past the post.
    std::thread::sleep(Duration::from_millis(20));
    let again = ledger.submit_and_wait(post.clone(), level);
    assert_eq!(again.fail_reason, Some(FailReason::HoldNotFound));
    assert_eq!(ledger.get_hold(hold.tx_id).unwrap().0, None);
    assert_eq!(ledger.get_balance(2).balance, 40);
    ledger.stop().unwrap();
    drop(ledger);

    let mut ledger = Ledger::new(brief);
    ledger.start().unwrap();
    assert!(ledger.recovery_report().unwrap().snapshot.is_none());
    assert_eq!(ledger.get_hold(hold.tx_id).unwrap().0, None);
    let after_restart = ledger.submit_and_wait(post, WaitLevel::Committed);
    assert_eq!(after_restart.fail_reason, Some(FailReason::HoldNotFound));
    ledger.stop().unwrap();
}

/// A reversal inside a batch is resolved like one submitted alone (the batch path scans
/// for reversals before it claims slots); one naming an id of its own batch is not yet
/// issued when the batch is resolved: TransactionNotFound.
#[test]
fn a_reversal_in_a_batch_finds_its_original() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    let paid = ledger.submit_and_wait(deposit(1, 100), WaitLevel::Committed);
    let results = ledger.submit_batch_and_wait(
        vec![
            deposit(2, 5),
            Operation::reverse(paid.tx_id, 0),
            Operation::reverse(paid.tx_id + 1, 0),
        ],
        WaitLevel::Snapshotted,
    );
    assert!(results[0].is_committed() && results[1].is_committed());
    assert_eq!(
        results[2].fail_reason,
        Some(FailReason::TransactionNotFound)
    );
    assert_eq!(ledger.get_balance(1).balance, 0);
}

/// Every snapshot the engine writes lists accounts, holds and reversals in id order,
/// whichever writer made it (the background writer sorts what the pipeline copied in
/// table order; the one at stop sorts as it copies).
#[test]
fn snapshots_list_accounts_holds_and_reversals_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let often = LedgerConfig {
        snapshot_interval_tx: 64,
        ..config(&dir)
    };
    let mut ledger = Ledger::new(often);
    ledger.start().unwrap();
    let mut ops = Vec::new();
    for account in (1..=100u64).rev() {
        ops.push(Operation::configure(
            account,
            ledger_core::transaction::AccountConfig::default(),
            0,
        ));
        ops.push(deposit(account, 10));
        ops.push(deposit(account, 5));
        ops.push(Operation::hold(account, account % 100 + 1, 1, 0, 0));
    }
    let results = ledger.submit_batch_and_wait(ops, WaitLevel::Snapshotted);
    assert!(results.iter().all(|r| r.is_committed()));
    let deposits: Vec<_> = results.iter().skip(2).step_by(4).map(|r| r.tx_id).collect();
    for tx_id in deposits.iter().rev().take(20) {
        let reversed =
            ledger.submit_and_wait(Operation::reverse(*tx_id, 0), WaitLevel::Snapshotted);
        assert!(reversed.is_committed(), "{reversed:?}");
    }
    ledger.stop().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "a background snapshot and the one at stop"
    );
    let ascending = |ids: &[u64]| ids.windows(2).all(|w| w[0] < w[1]);
    for file in files {
        let snapshot = ledger_core::ledger::open_snapshot(&file).unwrap();
        let accounts: Vec<u64> = snapshot.accounts().iter().map(|(id, _)| *id).collect();
        let holds: Vec<u64> = snapshot
            .holds()
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect();
        let reversals: Vec<u64> = snapshot.reversals().iter().map(|(o, _)| *o).collect();
        assert!(!accounts.is_empty(), "{}", file.display());
        assert!(ascending(&accounts), "{}", file.display());
        assert!(ascending(&holds), "{}", file.display());
        assert!(ascending(&reversals), "{}", file.display());
    }
}
