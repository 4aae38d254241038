//! The store on a simulated disk (docs/fault-model.md): crashes and power losses during a
//! write never cost the last durable snapshot; a read error is an error, not damage.

use std::path::Path;

use ledger_snapshot::{SnapshotConfig, SnapshotError, SnapshotStore};
use ledger_storage::sim::{Fault, Restart, SimDisk};

const DIR: &str = "/snapshots";

fn store(disk: &SimDisk) -> Result<SnapshotStore, SnapshotError> {
    SnapshotStore::open_on(disk.storage(), DIR, SnapshotConfig::default())
}

fn payload(n: u64) -> Vec<u64> {
    (0..1000).map(|i| i * n).collect()
}

#[test]
fn a_crash_or_power_loss_anywhere_in_a_write_keeps_the_last_durable_snapshot() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..40 {
        for halt_after in 1..20 {
            for how in [Restart::Crash, Restart::PowerLoss] {
                let disk = SimDisk::new(seed);
                store(&disk).unwrap().write(1, &payload(1)).unwrap();
                let store_2 = store(&disk).unwrap();
                disk.halt_under(Path::new(DIR), halt_after);
                let wrote = store_2.write(2, &payload(2)).is_ok();
                drop(store_2);
                disk.restart(how);
                let reopened = store(&disk).unwrap();
                let loaded = reopened.load_latest::<Vec<u64>>().unwrap();
                let seq = loaded.loaded.as_ref().map(|l| l.sequence());
                // The new one if its write returned Ok (durable then), else either.
                match seq {
                    Some(2) => {
                        assert_eq!(loaded.loaded.unwrap().deserialize().unwrap(), payload(2))
                    }
                    Some(1) => assert!(!wrote, "seed {seed}/{halt_after}: snapshot 2 was durable"),
                    other => panic!("seed {seed}/{halt_after}/{how:?}: loaded {other:?}"),
                }
                assert!(
                    loaded.skipped.is_empty(),
                    "a torn file is never a complete name"
                );
                outcomes.insert((seq, wrote));
            }
        }
    }
    assert!(outcomes.contains(&(Some(1), false)) && outcomes.contains(&(Some(2), true)));
}

/// An I/O error reading the newest snapshot used to be reported as a damaged snapshot and
/// passed over: recovery then loaded an older state (or none, and refused for a WAL gap).
#[test]
fn a_read_error_is_an_error_not_a_damaged_snapshot() {
    let disk = SimDisk::new(1);
    let s = store(&disk).unwrap();
    s.write(1, &payload(1)).unwrap();
    s.write(2, &payload(2)).unwrap();
    // load_latest lists the directory, then maps the newest file: fail the map.
    disk.fail_at(disk.stats().steps + 1, Fault::Io);
    match s.load_latest::<Vec<u64>>() {
        Err(SnapshotError::Io { path, source }) => {
            assert!(
                path.ends_with(ledger_snapshot::file_name(2)),
                "{}",
                path.display()
            );
            assert_eq!(source.raw_os_error(), Some(libc::EIO));
        }
        other => panic!("expected the I/O error, got {other:?}"),
    }
    // The disk answers again: the newest one loads.
    let loaded = s.load_latest::<Vec<u64>>().unwrap();
    assert_eq!(loaded.loaded.map(|l| l.sequence()), Some(2));
}
