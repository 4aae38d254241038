//! The engine's snapshot payloads inside a snapshot file, as golden fixtures: format 1
//! (`SnapshotStateV1`, before accounts could be configured), format 2
//! (`SnapshotStateV2`, before reversals and hierarchies) and format 3 (`SnapshotState`). Today's writer must produce these bytes, today's reader must load
//! them, and the engine must recover from both (docs/snapshot-format.md, "The ledger's
//! payload").

use std::path::{Path, PathBuf};
use std::time::Duration;

use ledger_core::ledger::{
    CurrencyBalance, DedupEntry, Ledger, LedgerConfig, STATE_FORMAT, STATE_FORMAT_V1,
    STATE_FORMAT_V2, SavedAccount, SavedAccountV2, SavedHold, SavedHoldV2, SavedReversal,
    SnapshotState, SnapshotStateV1, SnapshotStateV2, open_snapshot,
};
use ledger_core::transaction::{
    AccountConfig, Entry, EntryKind, FailReason, Operation, Outcome, Reversal, ReversalTarget,
    WaitLevel,
};
use ledger_core::transactor::TransactorConfig;
use ledger_snapshot::{SnapshotConfig, SnapshotStore, open_file};

const SEQUENCE: u64 = 41;
/// 2026-01-01T00:00:00Z in nanoseconds.
const NOW_NS: u64 = 1_767_225_600_000_000_000;

fn fixture_state() -> SnapshotStateV1 {
    SnapshotStateV1 {
        format: STATE_FORMAT_V1,
        last_tx_id: SEQUENCE,
        now_ns: NOW_NS,
        // Account 0 is the system account: the counterpart of every deposit.
        balances: vec![-1500, 1000, 300, 200],
        dedup: vec![
            DedupEntry {
                user_ref: 7,
                tx_id: 40,
                timestamp_ns: NOW_NS - 1000,
            },
            DedupEntry {
                user_ref: 9,
                tx_id: 41,
                timestamp_ns: NOW_NS,
            },
        ],
        latest: vec![41, 40, 41, 12],
    }
}

/// Format 2: the same ledger, with account 3 configured in currency 978 (its deposits
/// of 200 are the system account's share in that currency), account 1 with an overdraft
/// limit, and two holds.
fn fixture_state_v2() -> SnapshotStateV2 {
    let v1 = fixture_state();
    SnapshotStateV2 {
        format: STATE_FORMAT_V2,
        last_tx_id: v1.last_tx_id,
        now_ns: v1.now_ns,
        balances: v1.balances,
        dedup: v1.dedup,
        latest: v1.latest,
        accounts: vec![
            SavedAccountV2 {
                account_id: 1,
                currency: 0,
                flags: AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
                overdraft_limit: 250,
                max_balance: None,
                moved: true,
            },
            SavedAccountV2 {
                account_id: 3,
                currency: 978,
                flags: AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
                overdraft_limit: 0,
                max_balance: Some(5_000),
                moved: true,
            },
        ],
        system_balances: vec![CurrencyBalance {
            currency: 978,
            balance: -200,
        }],
        // Hold 30 (2 -> 1, 50) was posted for 20; hold 40 (1 -> 2, 100) is open.
        holds: vec![
            SavedHoldV2 {
                hold_id: 30,
                from: 2,
                to: 1,
                amount: 50,
                expires_at_ns: 0,
                state: 1,
                posted: 20,
            },
            SavedHoldV2 {
                hold_id: 40,
                from: 1,
                to: 2,
                amount: 100,
                expires_at_ns: 0,
                state: 0,
                posted: 0,
            },
        ],
    }
}

/// Format 3: the ledger of format 2, with account 2 a sub-account of account 1 (so
/// account 1's aggregate is 1000 + 300), transaction 35 reversed by 38, and the time
/// the posted hold closed.
fn fixture_state_v3() -> SnapshotState {
    let v2 = fixture_state_v2();
    let mut accounts: Vec<SavedAccount> = v2
        .accounts
        .iter()
        .map(|a| SavedAccount {
            account_id: a.account_id,
            currency: a.currency,
            flags: a.flags,
            overdraft_limit: a.overdraft_limit,
            max_balance: a.max_balance,
            moved: a.moved,
            parent: 0,
        })
        .collect();
    accounts.insert(
        1,
        SavedAccount {
            account_id: 2,
            currency: 0,
            flags: AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
            overdraft_limit: 0,
            max_balance: None,
            moved: true,
            parent: 1,
        },
    );
    SnapshotState {
        format: STATE_FORMAT,
        last_tx_id: v2.last_tx_id,
        now_ns: v2.now_ns,
        balances: v2.balances,
        dedup: v2.dedup,
        latest: v2.latest,
        accounts,
        system_balances: v2.system_balances,
        // Hold 30 was posted 500 ns before the snapshot.
        holds: v2
            .holds
            .iter()
            .map(|h| SavedHold {
                hold_id: h.hold_id,
                from: h.from,
                to: h.to,
                amount: h.amount,
                expires_at_ns: h.expires_at_ns,
                state: h.state,
                posted: h.posted,
                closed_at_ns: if h.state == 0 { 0 } else { NOW_NS - 500 },
            })
            .collect(),
        reversals: vec![SavedReversal {
            original: 35,
            reversal: 38,
        }],
    }
}

fn fixture_path(format: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/snapshot-state-v{format}.snap"))
}

/// Compares `bytes` with the committed fixture `format` (writing it first under
/// `SNAPSHOT_FIXTURE_WRITE=1`, only for a new payload format: a released format's bytes
/// never change); returns the fixture.
fn check_fixture(format: u32, bytes: &[u8]) -> Vec<u8> {
    let path = fixture_path(format);
    if std::env::var_os("SNAPSHOT_FIXTURE_WRITE").is_some() {
        std::fs::write(&path, bytes).unwrap();
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    let fixture = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (create it with SNAPSHOT_FIXTURE_WRITE=1, once, and commit it)",
            path.display()
        )
    });
    assert!(
        bytes == fixture,
        "today's snapshot writer differs from fixture {format}"
    );
    fixture
}

/// `SNAPSHOT_FIXTURE_WRITE=1 cargo test -p ledger-core --test snapshot_fixture` writes the
/// fixtures from today's writer. Otherwise the committed files are compared, never
/// rewritten.
#[test]
fn the_fixtures_are_what_the_engine_writes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), SnapshotConfig::default()).unwrap();
    // Format 1 files have payload format 0 in their header.
    let written = store.write(SEQUENCE, &fixture_state()).unwrap();
    let v1 = check_fixture(1, &std::fs::read(&written.path).unwrap());
    let written = store
        .write_format(SEQUENCE, STATE_FORMAT_V2, &fixture_state_v2())
        .unwrap();
    let v2 = check_fixture(2, &std::fs::read(&written.path).unwrap());
    let written = store
        .write_format(SEQUENCE, STATE_FORMAT, &fixture_state_v3())
        .unwrap();
    let v3 = check_fixture(3, &std::fs::read(&written.path).unwrap());

    // The committed files are named by their sequence: load them under that name.
    let named = dir.path().join("named");
    std::fs::create_dir_all(&named).unwrap();
    let copy = named.join(ledger_snapshot::file_name(SEQUENCE));
    std::fs::write(&copy, &v1).unwrap();
    let loaded = open_file::<SnapshotStateV1>(&copy).unwrap();
    assert_eq!(loaded.sequence(), SEQUENCE);
    assert_eq!(loaded.deserialize().unwrap(), fixture_state());
    let either = open_snapshot(&copy).unwrap();
    assert_eq!(
        (either.format(), either.accounts().len()),
        (STATE_FORMAT_V1, 0)
    );

    std::fs::write(&copy, &v3).unwrap();
    let loaded = open_file::<SnapshotState>(&copy).unwrap();
    assert_eq!(loaded.deserialize().unwrap(), fixture_state_v3());
    let any = open_snapshot(&copy).unwrap();
    assert_eq!(any.format(), STATE_FORMAT);
    assert_eq!(any.reversals(), [(35, 38)]);
    assert_eq!(any.accounts()[1].1.config.parent, 1);
    // The restored state machine knows 35 was reversed: a second reversal is refused.
    let mut transactor = any
        .restore(TransactorConfig {
            max_accounts: 4,
            dedup_window_ns: 1,
            ..TransactorConfig::default()
        })
        .unwrap();
    assert_eq!(transactor.reversed_by(35), Some(38));
    let entry = |account_id, kind| Entry {
        account_id,
        amount: 1,
        kind,
        balance_after: 0,
    };
    let again = Operation::Reverse(Box::new(Reversal {
        tx_id: 35,
        user_ref: 0,
        target: ReversalTarget::Entries(vec![
            entry(1, EntryKind::Credit),
            entry(2, EntryKind::Debit),
        ]),
    }));
    let outcome = transactor.execute(
        SEQUENCE + 1,
        NOW_NS,
        &again,
        &mut Vec::new(),
        &mut Vec::new(),
    );
    assert_eq!(outcome, Outcome::Rejected(FailReason::AlreadyReversed));

    std::fs::write(&copy, &v2).unwrap();
    let loaded = open_file::<SnapshotStateV2>(&copy).unwrap();
    assert_eq!(loaded.deserialize().unwrap(), fixture_state_v2());
    let either = open_snapshot(&copy).unwrap();
    assert_eq!(either.format(), STATE_FORMAT_V2);
    assert_eq!(either.system_balances(), [(978, -200)]);
    assert_eq!(
        either
            .accounts()
            .iter()
            .map(|(id, s)| (*id, s.config.currency))
            .collect::<Vec<_>>(),
        [(1, 0), (3, 978)]
    );
}

/// A data directory holding fixture `format` and a WAL that starts right after it.
fn data_dir_from_fixture(root: &Path, format: u32) -> PathBuf {
    let data = root.join("data");
    let snapshots = data.join("snapshots");
    let wal = data.join("wal");
    std::fs::create_dir_all(&snapshots).unwrap();
    std::fs::create_dir_all(&wal).unwrap();
    std::fs::copy(
        fixture_path(format),
        snapshots.join(ledger_snapshot::file_name(SEQUENCE)),
    )
    .unwrap();
    std::fs::write(
        wal.join(ledger_wal::segment_file_name(1)),
        ledger_wal::fuzzing::build_segment(1, SEQUENCE + 1, 0x5EED, &[]),
    )
    .unwrap();
    data
}

/// A ledger recovered from fixture `format`.
fn recovered(root: &Path, format: u32) -> Ledger {
    let config = LedgerConfig {
        max_accounts: 4,
        // The fixture's idempotency entries are from 2026-01-01: keep them in the window.
        dedup_window: Duration::from_secs(100 * 365 * 24 * 3600),
        ..LedgerConfig::in_dir(data_dir_from_fixture(root, format))
    };
    let mut ledger = Ledger::new(config);
    ledger.start().unwrap();
    ledger
}

/// A ledger upgraded from format 1 starts from its snapshot, with no account configured.
#[test]
fn the_engine_recovers_from_the_format_1_fixture() {
    let root = tempfile::tempdir().unwrap();
    let ledger = recovered(root.path(), 1);
    let report = ledger.recovery_report().unwrap();
    assert_eq!(
        report.snapshot.as_ref().map(|(_, seq)| *seq),
        Some(SEQUENCE)
    );
    assert_eq!((report.replayed, report.last_tx_id), (0, SEQUENCE));
    let balances = ledger.try_get_balances(&[0, 1, 2, 3]).unwrap();
    assert_eq!(balances.balances, fixture_state().balances);
    assert_eq!(balances.last_snapshot_tx_id, SEQUENCE);

    // The idempotency window came back with it; ids continue after the snapshot.
    let duplicate = ledger.submit_and_wait(
        Operation::Deposit {
            account: 2,
            amount: 5,
            user_ref: 9,
        },
        WaitLevel::Committed,
    );
    assert_eq!(duplicate.tx_id, SEQUENCE + 1);
    assert_eq!(
        duplicate.outcome(),
        Outcome::Rejected(FailReason::Duplicate { original_tx_id: 41 })
    );
    let fresh = ledger.submit_and_wait(
        Operation::Deposit {
            account: 2,
            amount: 5,
            user_ref: 10,
        },
        WaitLevel::Committed,
    );
    assert!(fresh.is_committed());
    assert_eq!(ledger.get_balance(2).balance, 305);
    ledger.stop().unwrap();
}

#[test]
fn the_engine_recovers_accounts_from_the_format_2_fixture() {
    let root = tempfile::tempdir().unwrap();
    let ledger = recovered(root.path(), 2);
    let report = ledger.recovery_report().unwrap();
    assert_eq!((report.replayed, report.last_tx_id), (0, SEQUENCE));
    let three = ledger.get_account(3).unwrap();
    assert!(three.configured && three.moved);
    assert_eq!(
        (
            three.config.currency,
            three.config.max_balance,
            three.balance
        ),
        (978, Some(5_000), 200)
    );
    assert_eq!(ledger.get_system_balance(978).unwrap().balance, -200);
    assert_eq!(ledger.get_system_balance(0).unwrap().balance, -1300);
    // The rules came back too: account 1 may go 250 below zero, in currency 0 only.
    let transfer = |from, to, amount| Operation::Transfer {
        from,
        to,
        amount,
        user_ref: 0,
    };
    let across = ledger.submit_and_wait(transfer(1, 3, 1), WaitLevel::Committed);
    assert_eq!(
        across.outcome(),
        Outcome::Rejected(FailReason::CurrencyMismatch)
    );
    // Hold 40 reserves 100 of account 1's 1000: 1150 more would pass the overdraft.
    let one = ledger.get_account(1).unwrap();
    assert_eq!((one.held_outgoing, one.available()), (100, 900));
    let (hold, _) = ledger.get_hold(40).unwrap();
    assert_eq!(hold.map(|h| (h.to, h.amount)), Some((2, 100)));
    let too_far = ledger.submit_and_wait(transfer(1, 2, 1_151), WaitLevel::Committed);
    assert_eq!(
        too_far.outcome(),
        Outcome::Rejected(FailReason::InsufficientFunds)
    );
    let overdraft = ledger.submit_and_wait(transfer(1, 2, 1_150), WaitLevel::Committed);
    assert!(overdraft.is_committed());
    assert_eq!(ledger.get_balance(1).balance, -150);
    // The posted hold counts as closed at the snapshot's time (format 2 has no closing
    // times), months before the ledger's clock: past its retention, it was forgotten.
    // The open one can be posted.
    let post = |hold_id| Operation::PostHold {
        hold_id,
        amount: 0,
        user_ref: 0,
    };
    let again = ledger.submit_and_wait(post(30), WaitLevel::Committed);
    assert_eq!(again.outcome(), Outcome::Rejected(FailReason::HoldNotFound));
    assert!(
        ledger
            .submit_and_wait(post(40), WaitLevel::Committed)
            .is_committed()
    );
    assert_eq!(ledger.get_balance(1).balance, -250);
    ledger.stop().unwrap();
}

#[test]
fn the_engine_recovers_hierarchies_and_reversals_from_the_format_3_fixture() {
    let root = tempfile::tempdir().unwrap();
    let ledger = recovered(root.path(), 3);
    let report = ledger.recovery_report().unwrap();
    assert_eq!((report.replayed, report.last_tx_id), (0, SEQUENCE));
    // The aggregate is rebuilt from the parents and balances.
    let one = ledger.get_account(1).unwrap();
    assert_eq!((one.children, one.aggregate_balance), (1, 1300));
    let two = ledger.get_account(2).unwrap();
    assert_eq!((two.config.parent, two.aggregate_balance), (1, 300));
    // The posted hold 30 closed 500 ns before the snapshot: it is remembered until its
    // retention (60 s by default) passes; the ledger's clock is far past that, so the
    // first transaction forgets it.
    assert!(ledger.get_hold(30).unwrap().0.is_some());
    // A sub-account's movement reaches its parent's aggregate.
    let moved = ledger.submit_and_wait(
        Operation::Transfer {
            from: 2,
            to: 0,
            amount: 100,
            user_ref: 0,
        },
        WaitLevel::Snapshotted,
    );
    assert!(moved.is_committed());
    assert_eq!(ledger.get_account(1).unwrap().aggregate_balance, 1200);
    assert_eq!(ledger.get_hold(30).unwrap().0, None, "forgotten");
    assert!(ledger.get_hold(40).unwrap().0.is_some(), "open: kept");
    ledger.stop().unwrap();
}
