//! The engine's snapshot payload (`SnapshotState`, format 1) inside a snapshot file, as a
//! golden fixture: today's writer must produce these bytes, today's reader must load
//! them, and the engine must recover from them (docs/snapshot-format.md, "The ledger's
//! payload").

use std::path::{Path, PathBuf};
use std::time::Duration;

use ledger_core::ledger::{DedupEntry, Ledger, LedgerConfig, STATE_FORMAT, SnapshotState};
use ledger_core::transaction::{FailReason, Operation, Outcome, WaitLevel};
use ledger_snapshot::{SnapshotConfig, SnapshotStore, open_file};

const SEQUENCE: u64 = 41;
/// 2026-01-01T00:00:00Z in nanoseconds.
const NOW_NS: u64 = 1_767_225_600_000_000_000;

fn fixture_state() -> SnapshotState {
    SnapshotState {
        format: STATE_FORMAT,
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

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot-state-v1.snap")
}

/// `SNAPSHOT_FIXTURE_WRITE=1 cargo test -p ledger-core --test snapshot_fixture` writes the
/// fixture from today's writer (only for a new payload format: format 1's bytes never
/// change). Otherwise the committed file is compared, never rewritten.
#[test]
fn the_fixture_is_what_the_engine_writes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), SnapshotConfig::default()).unwrap();
    let written = store.write(SEQUENCE, &fixture_state()).unwrap();
    let bytes = std::fs::read(&written.path).unwrap();
    let path = fixture_path();
    if std::env::var_os("SNAPSHOT_FIXTURE_WRITE").is_some() {
        std::fs::write(&path, &bytes).unwrap();
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
        "today's snapshot writer differs from the fixture"
    );

    // The committed file is named by its sequence: load it under that name.
    let named = dir.path().join("named");
    std::fs::create_dir_all(&named).unwrap();
    let copy = named.join(ledger_snapshot::file_name(SEQUENCE));
    std::fs::write(&copy, &fixture).unwrap();
    let loaded = open_file::<SnapshotState>(&copy).unwrap();
    assert_eq!(loaded.sequence(), SEQUENCE);
    assert_eq!(loaded.deserialize().unwrap(), fixture_state());
}

/// A data directory holding the fixture and a WAL that starts right after it.
fn data_dir_from_fixture(root: &Path) -> PathBuf {
    let data = root.join("data");
    let snapshots = data.join("snapshots");
    let wal = data.join("wal");
    std::fs::create_dir_all(&snapshots).unwrap();
    std::fs::create_dir_all(&wal).unwrap();
    std::fs::copy(
        fixture_path(),
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

#[test]
fn the_engine_recovers_from_the_fixture() {
    let root = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        max_accounts: 4,
        // The fixture's idempotency entries are from 2026-01-01: keep them in the window.
        dedup_window: Duration::from_secs(100 * 365 * 24 * 3600),
        ..LedgerConfig::in_dir(data_dir_from_fixture(root.path()))
    };
    let mut ledger = Ledger::new(config);
    ledger.start().unwrap();
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
