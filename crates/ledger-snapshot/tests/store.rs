//! Writing, loading, retention, listing, locking: the store's behaviour on real files.

mod common;

use std::fs;
use std::sync::Arc;

use common::{State, WindowEntry, load_state, open, open_keep, sequences, small_state};
use ledger_snapshot::{
    HEADER_BYTES, SnapshotConfig, SnapshotError, SnapshotStore, file_name, list_dir, open_file,
    verify_file,
};
use proptest::prelude::*;

#[test]
fn empty_directory_loads_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let outcome = store.load_latest::<State>().expect("load");
    assert!(outcome.loaded.is_none());
    assert!(outcome.skipped.is_empty());
    assert!(store.list().expect("list").is_empty());
}

#[test]
fn write_then_load_round_trips_zero_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let state = small_state(11);
    let report = store.write(42, &state).expect("write");
    assert_eq!(report.sequence, 42);
    assert_eq!(report.path, dir.path().join(file_name(42)));
    assert_eq!(
        report.file_bytes,
        report.payload_bytes + HEADER_BYTES as u64
    );
    assert_eq!(
        fs::metadata(&report.path).expect("meta").len(),
        report.file_bytes
    );
    assert!(report.removed.is_empty());
    assert_eq!(report.oldest_retained_sequence, 42);

    let outcome = store.load_latest::<State>().expect("load");
    assert!(outcome.skipped.is_empty());
    let loaded = outcome.loaded.expect("a snapshot");
    assert_eq!(loaded.sequence(), 42);
    assert_eq!(loaded.info().payload_bytes, report.payload_bytes);
    // The archive is read in place from the map, 16-byte aligned.
    assert_eq!(loaded.payload().as_ptr() as usize % 16, 0);
    let archived = loaded.archived();
    let balances: Vec<i64> = archived.balances.iter().map(|b| b.to_native()).collect();
    assert_eq!(balances, state.balances);
    assert_eq!(archived.window.len(), 2);
    assert_eq!(archived.note.as_str(), "state 11");
    assert_eq!(loaded.deserialize().expect("deserialize"), state);
}

/// A reader of several payload types picks files by the header's payload format: files
/// of another format are passed over, not reported as damaged.
#[test]
fn payload_formats_are_kept_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.write(10, &small_state(10)).expect("format 0");
    store
        .write_format(20, 7, &small_state(20))
        .expect("format 7");
    assert_eq!(
        verify_file(dir.path().join(file_name(20)))
            .expect("verify")
            .payload_format,
        7
    );
    let seven = store.load_latest_format::<State>(7).expect("load 7");
    assert!(seven.skipped.is_empty());
    assert_eq!(seven.loaded.expect("format 7").sequence(), 20);
    let zero = store.load_latest::<State>().expect("load 0");
    assert!(zero.skipped.is_empty(), "{:?}", zero.skipped);
    assert_eq!(zero.loaded.expect("format 0").sequence(), 10);
    let none = store.load_latest_format::<State>(8).expect("load 8");
    assert!(none.loaded.is_none() && none.skipped.is_empty());
}

#[test]
fn large_payload_streams_across_chunks() {
    // 8 MB of balances (many write-through pieces) followed by many small writes that
    // cross the staging buffer's boundary repeatedly.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let balances: Vec<i64> = (0..1_000_000_i64).map(|i| i * 7 - 3_500_000).collect();
    let window: Vec<WindowEntry> = (0..40_000_u64)
        .map(|i| WindowEntry {
            user_ref: i,
            tx_id: i * 2,
            timestamp: i * 3,
        })
        .collect();
    let state = State {
        balances,
        window,
        note: "x".repeat(1000),
    };
    store.write(1, &state).expect("write");
    let strings: Vec<String> = (0..50_000).map(|i| format!("entry number {i}")).collect();
    store.write(2, &strings).expect("write strings");

    let loaded = open_file::<State>(dir.path().join(file_name(1))).expect("open");
    assert_eq!(loaded.deserialize().expect("deserialize"), state);
    let loaded = open_file::<Vec<String>>(dir.path().join(file_name(2))).expect("open");
    assert_eq!(loaded.deserialize().expect("deserialize"), strings);
}

#[test]
fn payloads_checksummed_on_several_threads_round_trip() {
    // 24 MB of balances plus a tail: above the size where writing and verifying spread
    // the crc32c over threads (on a machine with more than one core).
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let state = State {
        balances: (0..3_000_000_i64).map(|i| i ^ (i << 17)).collect(),
        window: vec![WindowEntry {
            user_ref: 1,
            tx_id: 2,
            timestamp: 3,
        }],
        note: "big".to_owned(),
    };
    let report = store.write(7, &state).expect("write");
    let info = verify_file(&report.path).expect("verify");
    let bytes = fs::read(&report.path).expect("read");
    let payload = bytes.get(HEADER_BYTES..).expect("payload");
    assert_eq!(info.payload_crc32c, crc32c::crc32c(payload));
    assert_eq!(load_state(&store), Some((7, state)));
}

#[test]
fn rewriting_a_sequence_replaces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.write(5, &small_state(1)).expect("write");
    store.write(5, &small_state(2)).expect("rewrite");
    assert_eq!(sequences(dir.path()), [5]);
    assert_eq!(load_state(&store), Some((5, small_state(2))));
}

#[test]
fn retention_keeps_the_newest_n() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_keep(dir.path(), 3);
    for seq in 1..=3 {
        let report = store
            .write(seq * 10, &small_state(seq as i64))
            .expect("write");
        assert!(report.removed.is_empty());
        assert_eq!(report.oldest_retained_sequence, 10);
    }
    let report = store.write(40, &small_state(4)).expect("write");
    assert_eq!(report.removed, [dir.path().join(file_name(10))]);
    assert!(report.removal_failures.is_empty());
    assert_eq!(report.oldest_retained_sequence, 20);
    let report = store.write(100, &small_state(5)).expect("write");
    assert_eq!(report.removed, [dir.path().join(file_name(20))]);
    assert_eq!(report.oldest_retained_sequence, 30);
    assert_eq!(sequences(dir.path()), [30, 40, 100]);
    assert_eq!(load_state(&store), Some((100, small_state(5))));
}

#[test]
fn retention_never_touches_newer_snapshots() {
    // After a fallback the engine writes below a newer (bad) file: that file is the
    // operator's evidence, not retention's to delete; older ones still go.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_keep(dir.path(), 1);
    store.write(50, &small_state(50)).expect("write");
    store.write(60, &small_state(60)).expect("write");
    assert_eq!(sequences(dir.path()), [60]);
    store.write(55, &small_state(55)).expect("write");
    assert_eq!(sequences(dir.path()), [55, 60]);
    let report = store.write(58, &small_state(58)).expect("write");
    assert_eq!(report.removed, [dir.path().join(file_name(55))]);
    assert_eq!(sequences(dir.path()), [58, 60]);
}

#[test]
fn keep_one_deletes_everything_older() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_keep(dir.path(), 1);
    for seq in 0..5 {
        let report = store.write(seq, &small_state(seq as i64)).expect("write");
        assert_eq!(report.oldest_retained_sequence, seq);
    }
    assert_eq!(sequences(dir.path()), [4]);
}

#[test]
fn falls_back_to_the_older_snapshot_when_the_newest_is_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_keep(dir.path(), 3);
    store.write(1, &small_state(1)).expect("write");
    store.write(2, &small_state(2)).expect("write");
    let r3 = store.write(3, &small_state(3)).expect("write");
    // Corrupt the newest one's last payload byte.
    let mut bytes = fs::read(&r3.path).expect("read");
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x01;
    }
    fs::write(&r3.path, &bytes).expect("write back");

    let outcome = store.load_latest::<State>().expect("load");
    let loaded = outcome.loaded.expect("fallback");
    assert_eq!(loaded.sequence(), 2);
    assert_eq!(loaded.deserialize().expect("deserialize"), small_state(2));
    assert_eq!(outcome.skipped.len(), 1);
    let skipped = outcome.skipped.first().expect("one");
    assert_eq!(skipped.sequence, 3);
    assert_eq!(skipped.path, r3.path);
    assert!(
        matches!(skipped.error, SnapshotError::ChecksumMismatch { ref path, .. } if *path == r3.path),
        "{:?}",
        skipped.error
    );

    // Unmap before rewriting the file it maps (as the Loaded docs require).
    drop(loaded);

    // Two bad ones: falls back two steps and reports both, newest first.
    fs::write(dir.path().join(file_name(2)), b"garbage").expect("clobber");
    let outcome = store.load_latest::<State>().expect("load");
    assert_eq!(outcome.loaded.map(|l| l.sequence()), Some(1));
    let skipped: Vec<u64> = outcome.skipped.iter().map(|s| s.sequence).collect();
    assert_eq!(skipped, [3, 2]);

    // None valid: a clear "nothing" with every file reported.
    fs::write(dir.path().join(file_name(1)), b"").expect("clobber");
    let outcome = store.load_latest::<State>().expect("load");
    assert!(outcome.loaded.is_none());
    assert_eq!(outcome.skipped.len(), 3);
    assert!(outcome.skipped.iter().all(|s| s.error.is_corruption()));
}

#[test]
fn checksums_valid_but_archive_invalid_is_rejected() {
    // A `u8` of 2 is a well-formed file whose payload is not a valid `bool` archive:
    // what a buggy writer or a type mismatch would produce.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let report = store.write(9, &2_u8).expect("write");
    assert!(verify_file(&report.path).is_ok());
    assert!(matches!(
        open_file::<bool>(&report.path),
        Err(SnapshotError::InvalidArchive { .. })
    ));
    let outcome = store.load_latest::<bool>().expect("load");
    assert!(outcome.loaded.is_none());
    assert!(matches!(
        outcome.skipped.first().map(|s| &s.error),
        Some(SnapshotError::InvalidArchive { .. })
    ));
    // The same bytes are fine as the type they were written as.
    let loaded = open_file::<u8>(&report.path).expect("as u8");
    assert_eq!(*loaded.archived(), 2);
}

#[test]
fn a_renamed_file_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let report = store.write(5, &small_state(5)).expect("write");
    let renamed = dir.path().join(file_name(6));
    fs::rename(&report.path, &renamed).expect("rename");
    assert!(matches!(
        verify_file(&renamed),
        Err(SnapshotError::SequenceMismatch {
            in_name: 6,
            in_header: 5,
            ..
        })
    ));
    assert!(store.load_latest::<State>().expect("load").loaded.is_none());
}

#[test]
fn trailing_bytes_and_unknown_version_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let report = store.write(5, &small_state(5)).expect("write");
    let good = fs::read(&report.path).expect("read");

    let mut longer = good.clone();
    longer.push(0);
    fs::write(&report.path, &longer).expect("write");
    assert!(matches!(
        verify_file(&report.path),
        Err(SnapshotError::TrailingBytes { extra_bytes: 1, .. })
    ));

    let mut v2 = good.clone();
    if let Some(byte) = v2.get_mut(8) {
        *byte = 2;
    }
    fs::write(&report.path, &v2).expect("write");
    assert!(matches!(
        verify_file(&report.path),
        Err(SnapshotError::UnknownVersion {
            version: 2,
            supported: 1,
            ..
        })
    ));

    fs::write(&report.path, &good).expect("restore");
    assert!(verify_file(&report.path).is_ok());
}

#[test]
fn list_reports_every_file_with_its_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_keep(dir.path(), 5);
    store.write(1, &small_state(1)).expect("write");
    let r2 = store.write(2, &small_state(2)).expect("write");
    fs::write(dir.path().join("unrelated.txt"), b"not a snapshot").expect("write");
    let truncated = fs::read(&r2.path).expect("read");
    fs::write(&r2.path, truncated.get(..100).expect("long enough")).expect("truncate");

    let listing = store.list().expect("list");
    assert_eq!(listing.len(), 2);
    let first = listing.first().expect("first");
    assert_eq!(first.sequence, 1);
    let info = first.status.as_ref().expect("valid");
    assert_eq!(info.sequence, 1);
    assert_eq!(info.file_bytes, first.file_bytes);
    let second = listing.get(1).expect("second");
    assert_eq!(second.sequence, 2);
    assert_eq!(second.file_bytes, 100);
    assert!(matches!(
        second.status,
        Err(SnapshotError::Truncated { len_bytes: 100, .. })
    ));
    // The free function sees the same while the store is open (no lock needed).
    assert_eq!(list_dir(dir.path()).expect("list_dir").len(), 2);
}

#[test]
fn a_directory_has_one_store_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert!(matches!(
        SnapshotStore::open(dir.path(), SnapshotConfig::default()),
        Err(SnapshotError::Locked { .. })
    ));
    drop(store);
    let again = open(dir.path());
    assert_eq!(again.dir(), dir.path());
}

#[test]
fn writes_from_a_background_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open_keep(dir.path(), 2));
    let handles: Vec<_> = (1..=4_u64)
        .map(|seq| {
            let store = Arc::clone(&store);
            let state = small_state(seq as i64);
            std::thread::spawn(move || store.write(seq, &state).map(|r| r.sequence))
        })
        .collect();
    let mut written: Vec<u64> = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("write"))
        .collect();
    written.sort_unstable();
    assert_eq!(written, [1, 2, 3, 4]);
    // Whatever order the writes ran in, the newest is there and loads.
    assert!(sequences(dir.path()).contains(&4));
    assert_eq!(load_state(&store), Some((4, small_state(4))));
    assert!(common::temp_files(dir.path()).is_empty());
}

#[test]
fn serialization_failure_leaves_no_temp_file() {
    // A value whose serialization fails part-way: the temporary file is removed and the
    // error says it was serialization, not I/O.
    #[derive(Debug)]
    struct Failing;
    #[derive(Debug, thiserror::Error)]
    #[error("refused")]
    struct Refused;
    impl rkyv::Archive for Failing {
        type Archived = ();
        type Resolver = ();
        fn resolve(&self, (): (), _: rkyv::Place<()>) {}
    }
    impl<S: rkyv::rancor::Fallible + ?Sized> rkyv::Serialize<S> for Failing
    where
        S::Error: rkyv::rancor::Source,
    {
        fn serialize(&self, _: &mut S) -> Result<(), S::Error> {
            Err(<S::Error as rkyv::rancor::Source>::new(Refused))
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.write(1, &small_state(1)).expect("write");
    let value = (vec![1_i64; 100_000], Failing);
    assert!(matches!(
        store.write(2, &value),
        Err(SnapshotError::Serialize { .. })
    ));
    assert!(common::temp_files(dir.path()).is_empty());
    assert_eq!(sequences(dir.path()), [1]);
    assert_eq!(load_state(&store), Some((1, small_state(1))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_random_payloads(
        sequence in any::<u64>(),
        balances in prop::collection::vec(any::<i64>(), 0..3000),
        window in prop::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..50),
        note in ".{0,40}",
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let state = State {
            balances,
            window: window
                .into_iter()
                .map(|(user_ref, tx_id, timestamp)| WindowEntry { user_ref, tx_id, timestamp })
                .collect(),
            note,
        };
        let report = store.write(sequence, &state).expect("write");
        prop_assert_eq!(report.sequence, sequence);
        let info = verify_file(&report.path).expect("verify");
        prop_assert_eq!(info.sequence, sequence);
        prop_assert_eq!(info.payload_bytes, report.payload_bytes);
        let outcome = store.load_latest::<State>().expect("load");
        prop_assert!(outcome.skipped.is_empty());
        let loaded = outcome.loaded.expect("loaded");
        prop_assert_eq!(loaded.sequence(), sequence);
        prop_assert_eq!(loaded.deserialize().expect("deserialize"), state);
    }
}

#[test]
fn an_image_from_another_store_installs_at_its_sequence_and_a_damaged_one_is_refused() {
    let from = tempfile::tempdir().expect("tempdir");
    let to = tempfile::tempdir().expect("tempdir");
    let source = open(from.path());
    let state = small_state(7);
    let written = source.write(90, &state).expect("write");
    let image = fs::read(&written.path).expect("read image");

    let target = open(to.path());
    target.write(10, &small_state(1)).expect("older");
    let mut damaged = image.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    assert!(
        target
            .install(&damaged)
            .expect_err("damaged")
            .is_corruption()
    );
    assert_eq!(sequences(to.path()), [10]);

    let report = target.install(&image).expect("install");
    assert_eq!(report.sequence, 90);
    assert_eq!(report.file_bytes, image.len() as u64);
    assert_eq!(fs::read(&report.path).expect("installed"), image);
    let loaded = load_state(&target);
    assert_eq!(loaded, Some((90, state)));

    // The newest by name, whether it verifies or not (loading passes over a damaged one).
    fs::write(to.path().join(file_name(95)), &damaged).expect("damaged newer");
    let storage = ledger_storage::real();
    let newest = ledger_snapshot::newest_sequence(storage.as_ref(), to.path()).expect("names");
    assert_eq!(newest, Some(95));
}
