//! Format compatibility: a snapshot written by format version 1 stays readable, and
//! today's writer still produces it byte for byte.
//!
//! Regenerate (only when the format version changes, as a new file beside the old one):
//! `LEDGER_SNAPSHOT_WRITE_FIXTURE=1 cargo test -p ledger-snapshot --test fixture`.

use std::path::PathBuf;

use ledger_snapshot::{FORMAT_VERSION, SnapshotConfig, SnapshotStore, file_name, verify_file};

/// The payload type of the fixture. Do not change it: the file on disk is its archive.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq, Eq)]
struct FixtureV1 {
    balances: Vec<i64>,
    window: Vec<[u64; 3]>,
}

fn fixture_value() -> FixtureV1 {
    FixtureV1 {
        balances: vec![100, -50, 0, i64::MAX],
        window: vec![[7, 41, 1_700_000_000]],
    }
}

const FIXTURE_SEQUENCE: u64 = 42;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1")
        .join(file_name(FIXTURE_SEQUENCE))
}

#[test]
fn version_1_fixture_loads_and_is_reproduced_exactly() {
    let written = {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::open(dir.path(), SnapshotConfig::default()).expect("open");
        let report = store
            .write(FIXTURE_SEQUENCE, &fixture_value())
            .expect("write");
        std::fs::read(report.path).expect("read")
    };
    if std::env::var_os("LEDGER_SNAPSHOT_WRITE_FIXTURE").is_some() {
        let path = fixture_path();
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &written).expect("write fixture");
    }
    assert_eq!(FORMAT_VERSION, 1);

    let path = fixture_path();
    let stored = std::fs::read(&path).expect("fixture present");
    assert_eq!(
        stored, written,
        "today's writer no longer reproduces format version 1"
    );

    let info = verify_file(&path).expect("verifies");
    assert_eq!(info.sequence, FIXTURE_SEQUENCE);
    let loaded = ledger_snapshot::open_file::<FixtureV1>(&path).expect("loads");
    assert_eq!(loaded.deserialize().expect("deserialize"), fixture_value());
}
