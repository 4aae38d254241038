//! Recovery: snapshot + tail replay == full replay == the state before shutdown, and what
//! start() does with damaged files.

use std::fs;
use std::path::{Path, PathBuf};

use ledger_core::ledger::{AccountInfo, Ledger, LedgerConfig, LedgerError, LinkKind};
use ledger_core::transaction::{AccountConfig, Operation, SubmitResult, TxId, WaitLevel};
use proptest::prelude::*;

const ACCOUNTS: u64 = 64;

fn config(dir: &Path) -> LedgerConfig {
    let mut config = LedgerConfig::in_dir(dir);
    config.max_accounts = ACCOUNTS;
    config.ring_size = 256;
    config.wal_segment_bytes = 4096;
    config.snapshot_on_stop = false;
    config.wal_keep_all = true;
    config
}

fn start(config: LedgerConfig) -> Ledger {
    let mut ledger = Ledger::new(config);
    ledger.start().expect("start");
    ledger
}

fn all_balances(ledger: &Ledger) -> Vec<i64> {
    ledger
        .get_balances(&(0..ACCOUNTS).collect::<Vec<_>>())
        .balances
}

/// Every account's configuration (with its parent and aggregate), the system account's
/// balance per currency, and which transactions were reversed by which.
fn all_accounts(ledger: &Ledger) -> (Vec<AccountInfo>, Vec<i128>, Vec<(TxId, TxId)>) {
    let accounts = (0..ACCOUNTS)
        .map(|a| ledger.get_account(a).unwrap())
        .collect();
    let system = (0..2)
        .map(|c| ledger.get_system_balance(c).unwrap().balance)
        .collect();
    let last = ledger.pipeline_index().snapshot;
    let reversed = (1..=last)
        .flat_map(|tx_id| {
            let links = ledger.get_transaction(tx_id).unwrap().links;
            links
                .into_iter()
                .filter(|l| l.kind == LinkKind::ReversedBy)
                .map(move |l| (tx_id, l.to_tx_id))
        })
        .collect();
    (accounts, system, reversed)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if !entry.file_name().to_string_lossy().ends_with(".lock") {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn op_strategy() -> impl Strategy<Value = Operation> {
    let account = 0..ACCOUNTS + 2; // a few out of range
    let amount = prop_oneof![1..2_000u64, Just(0u64), Just(u64::MAX)];
    let user_ref = prop_oneof![3 => Just(0u64), 1 => 1..20u64];
    prop_oneof![
        (account.clone(), amount.clone(), user_ref.clone()).prop_map(
            |(account, amount, user_ref)| Operation::Deposit {
                account,
                amount,
                user_ref
            }
        ),
        (account.clone(), amount.clone(), user_ref.clone()).prop_map(
            |(account, amount, user_ref)| Operation::Withdrawal {
                account,
                amount,
                user_ref
            }
        ),
        (account.clone(), account.clone(), amount, user_ref.clone()).prop_map(
            |(from, to, amount, user_ref)| {
                Operation::Transfer {
                    from,
                    to,
                    amount,
                    user_ref,
                }
            }
        ),
        // Reversals of earlier transactions (or of ids not issued yet).
        (1..300u64, user_ref.clone())
            .prop_map(|(tx_id, user_ref)| Operation::reverse(tx_id, user_ref)),
        // Configured accounts: a currency, an overdraft limit, a maximum, frozen, a parent.
        (
            account,
            0..2u32,
            0..3u64,
            any::<bool>(),
            prop_oneof![3 => Just(0u64), 1 => 1..6u64],
            user_ref
        )
            .prop_map(|(account, currency, limit, frozen, parent, user_ref)| {
                Operation::ConfigureAccount {
                    account,
                    config: Box::new(AccountConfig {
                        currency,
                        flags: AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS
                            | if frozen { AccountConfig::FROZEN } else { 0 },
                        overdraft_limit: limit * 500,
                        max_balance: (limit == 2).then_some(3_000),
                        parent,
                    }),
                    user_ref,
                }
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// State after snapshot + tail replay == state after a full replay == state before
    /// shutdown, including the dedup window (the same probes get the same outcomes).
    #[test]
    fn snapshot_plus_tail_equals_full_replay_equals_before(
        ops in prop::collection::vec(op_strategy(), 1..300),
        batch in 1usize..64,
        snapshot_every in 1u64..150,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let mut cfg = config(&live);
        cfg.snapshot_interval_tx = snapshot_every;
        let (before, accounts_before) = {
            let ledger = start(cfg.clone());
            for chunk in ops.chunks(batch) {
                ledger.submit_batch_and_wait(chunk.to_vec(), WaitLevel::Snapshotted);
            }
            (all_balances(&ledger), all_accounts(&ledger))
        };
        prop_assert_eq!(before.iter().sum::<i64>(), 0);
        let full = dir.path().join("full");
        copy_dir(&live, &full);
        fs::remove_dir_all(full.join("snapshots")).unwrap();

        let from_snapshot = start(cfg.clone());
        let full_replay = start(config(&full));
        let report = full_replay.recovery_report().unwrap();
        prop_assert!(report.snapshot.is_none());
        prop_assert_eq!(report.replayed, ops.len() as u64);
        let report = from_snapshot.recovery_report().unwrap();
        prop_assert_eq!(report.last_tx_id, ops.len() as u64);
        prop_assert_eq!(
            report.replayed + report.snapshot.as_ref().map_or(0, |s| s.1),
            ops.len() as u64
        );
        prop_assert_eq!(&all_balances(&from_snapshot), &before);
        prop_assert_eq!(&all_balances(&full_replay), &before);
        prop_assert_eq!(&all_accounts(&from_snapshot), &accounts_before);
        prop_assert_eq!(&all_accounts(&full_replay), &accounts_before);

        let probes: Vec<Operation> = ops.iter().rev().take(20).cloned().collect();
        let a: Vec<SubmitResult> =
            from_snapshot.submit_batch_and_wait(probes.clone(), WaitLevel::Snapshotted);
        let b: Vec<SubmitResult> = full_replay.submit_batch_and_wait(probes, WaitLevel::Snapshotted);
        prop_assert_eq!(a, b);
        prop_assert_eq!(all_balances(&from_snapshot), all_balances(&full_replay));
    }
}

fn seeded(dir: &Path, cfg: LedgerConfig, n: u64) -> Vec<i64> {
    let _ = dir;
    let ledger = start(cfg);
    for i in 0..n {
        let op = if i % 3 == 0 {
            Operation::Deposit {
                account: 1 + i % (ACCOUNTS - 1),
                amount: 100,
                user_ref: 0,
            }
        } else {
            Operation::Transfer {
                from: 1 + i % (ACCOUNTS - 1),
                to: 1 + (i * 7) % (ACCOUNTS - 1),
                amount: 30,
                user_ref: 0,
            }
        };
        if i % 50 == 49 {
            ledger.submit_and_wait(op, WaitLevel::Committed);
        } else {
            ledger.submit(op);
        }
    }
    ledger.wait_for(n, WaitLevel::Snapshotted);
    all_balances(&ledger)
}

#[test]
fn a_torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let before = seeded(dir.path(), config(dir.path()), 500);
    let last = files(&dir.path().join("wal"), ".seg").pop().unwrap();
    // Half a frame header: what a crash in the middle of an append leaves.
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(b"RWFR\x01\x01\x00\x00\x10\x00");
    fs::write(&last, &bytes).unwrap();
    let ledger = start(config(dir.path()));
    let report = ledger.recovery_report().unwrap();
    let torn = report.wal_truncated.as_ref().expect("reported");
    assert_eq!(torn.segment, last);
    assert_eq!(torn.bytes_dropped, 10);
    assert_eq!(report.last_tx_id, 500);
    assert_eq!(all_balances(&ledger), before);
}

#[test]
fn damage_inside_the_wal_refuses_to_start_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path(), config(dir.path()), 2_000);
    let segments = files(&dir.path().join("wal"), ".seg");
    assert!(segments.len() >= 3, "{segments:?}");
    let victim = &segments[1];
    let mut bytes = fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(victim, &bytes).unwrap();
    let mut ledger = Ledger::new(config(dir.path()));
    let error = ledger
        .start()
        .expect_err("a checksum error is not a torn tail");
    assert!(error.is_data_loss(), "{error:?}");
    let message = error.to_string();
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(message.contains(&name), "{message}");
    assert!(message.contains("offset"), "{message}");
    assert!(matches!(
        ledger.try_submit(Operation::Deposit {
            account: 1,
            amount: 1,
            user_ref: 0
        }),
        Err(LedgerError::NotStarted)
    ));
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.snapshot_on_stop = true;
    // Two snapshots: one at the first stop, one at the second.
    seeded(dir.path(), cfg.clone(), 300);
    let before = {
        let ledger = start(cfg.clone());
        ledger.submit_and_wait(
            Operation::Deposit {
                account: 5,
                amount: 5,
                user_ref: 0,
            },
            WaitLevel::Committed,
        );
        all_balances(&ledger)
    };
    let snapshots = files(&dir.path().join("snapshots"), ".snap");
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let newest = &snapshots[1];
    let mut bytes = fs::read(newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(newest, &bytes).unwrap();
    let ledger = start(cfg);
    let report = ledger.recovery_report().unwrap();
    assert_eq!(report.skipped_snapshots.len(), 1, "{report:?}");
    assert_eq!(&report.skipped_snapshots[0].0, newest);
    assert_eq!(report.snapshot.as_ref().map(|s| s.1), Some(300));
    assert_eq!(report.replayed, 1);
    assert_eq!(all_balances(&ledger), before);
}

#[test]
fn a_wal_that_does_not_reach_the_snapshot_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.snapshot_on_stop = true;
    seeded(dir.path(), cfg.clone(), 100);
    fs::remove_dir_all(dir.path().join("wal")).unwrap();
    let mut ledger = Ledger::new(cfg);
    match ledger.start() {
        Err(LedgerError::WalGap {
            snapshot_tx_id: 100,
            wal_first_tx_id: None,
            ..
        }) => {}
        other => panic!("expected WalGap, got {other:?}"),
    }
}

#[test]
fn a_bad_configuration_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for change in [
        (|c: &mut LedgerConfig| c.ring_size = 1000) as fn(&mut LedgerConfig),
        |c| c.max_accounts = 0,
        |c| c.max_accounts = u64::MAX,
        // One more than a snapshot payload can address: a clear limit, not a failed
        // snapshot an hour later.
        |c| c.max_accounts = ledger_core::ledger::ACCOUNTS_MAX + 1,
        |c| c.snapshot_interval_tx = 0,
        |c| c.wal_frame_bytes = 1,
    ] {
        let mut cfg = config(dir.path());
        change(&mut cfg);
        let mut ledger = Ledger::new(cfg);
        assert!(matches!(ledger.start(), Err(LedgerError::Config { .. })));
    }
}

#[test]
fn a_second_ledger_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = start(config(dir.path()));
    let mut second = Ledger::new(config(dir.path()));
    let error = second.start().expect_err("locked");
    assert!(error.to_string().contains("lock"), "{error}");
}

/// Found by the crash matrix (issue 18): the snapshot interval was counted from each
/// restart, so a ledger restarted more often than it committed `snapshot_interval_tx`
/// transactions never wrote a snapshot, and every start replayed the whole log.
#[test]
fn the_snapshot_interval_counts_from_the_last_snapshot_not_from_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        max_accounts: 100,
        snapshot_interval_tx: 100,
        snapshot_interval: std::time::Duration::from_secs(3600),
        snapshot_on_stop: false,
        ..LedgerConfig::in_dir(dir.path())
    };
    let mut written_in_round = None;
    for round in 1..=3 {
        let ledger = start(config.clone());
        let deposits = (0..60)
            .map(|i| Operation::Deposit {
                account: 1 + i % 10,
                amount: 5,
                user_ref: 0,
            })
            .collect();
        ledger.submit_batch_and_wait(deposits, WaitLevel::Snapshotted);
        ledger.stop().unwrap();
        drop(ledger);
        if written_in_round.is_none() && !files(&config.snapshot_dir(), ".snap").is_empty() {
            written_in_round = Some(round);
        }
    }
    // 120 transactions since the last snapshot (none) by the end of round 2.
    assert_eq!(written_in_round, Some(2));
}
