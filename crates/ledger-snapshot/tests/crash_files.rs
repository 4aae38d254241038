//! What a crash can leave behind, built as real files: temporary files of every length,
//! a complete-but-unrenamed temporary file, a final name holding a half-written or
//! header-less file. None is loaded; temporary files are deleted on open; the previous
//! snapshot still loads.

mod common;

use std::fs;

use common::{load_state, open, open_keep, sequences, small_state, temp_files};
use ledger_snapshot::{SnapshotError, file_name};

#[test]
fn leftover_temp_files_of_any_length_are_ignored_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // What the next write would produce, to cut temp files from.
    let image = {
        let scratch = tempfile::tempdir().expect("tempdir");
        let store = open(scratch.path());
        let report = store.write(2, &small_state(2)).expect("write");
        fs::read(report.path).expect("read")
    };
    let temp = dir.path().join(format!("{}.tmp", file_name(2)));
    for len in (0..=image.len()).step_by(7).chain([image.len()]) {
        {
            let store = open(dir.path());
            if sequences(dir.path()).is_empty() {
                store.write(1, &small_state(1)).expect("write base");
            }
        }
        // The crash: the temporary file of sequence 2 holds `len` bytes of its image.
        fs::write(&temp, image.get(..len).expect("in range")).expect("write temp");

        let store = open(dir.path());
        assert_eq!(
            store.removed_temp_files(),
            std::slice::from_ref(&temp),
            "len {len}"
        );
        assert!(temp_files(dir.path()).is_empty(), "len {len}");
        let outcome = store.load_latest::<common::State>().expect("load");
        assert!(outcome.skipped.is_empty(), "len {len}");
        assert_eq!(outcome.loaded.map(|l| l.sequence()), Some(1), "len {len}");
    }
}

#[test]
fn a_complete_temp_file_is_not_taken_for_a_snapshot() {
    // Crash after fsync, before rename: the bytes are valid but the rename never happened,
    // so the write did not happen.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open_keep(dir.path(), 5);
        store.write(1, &small_state(1)).expect("write");
        let report = store.write(2, &small_state(2)).expect("write");
        fs::rename(
            &report.path,
            dir.path().join(format!("{}.tmp", file_name(2))),
        )
        .expect("un-rename");
        assert_eq!(load_state(&store), Some((1, small_state(1))));
    }
    let store = open(dir.path());
    assert_eq!(store.removed_temp_files().len(), 1);
    assert_eq!(load_state(&store), Some((1, small_state(1))));
}

#[test]
fn half_written_final_files_are_skipped_and_retention_removes_them() {
    // A file system that lost part of a renamed file (or a copy gone wrong): the name is
    // final but the contents are not. It is reported, the previous snapshot is used, and
    // it is deleted once it falls out of retention.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_keep(dir.path(), 2);
    store.write(1, &small_state(1)).expect("write");
    let report = store.write(2, &small_state(2)).expect("write");
    let full = fs::read(&report.path).expect("read");
    fs::write(&report.path, full.get(..full.len() / 2).expect("half")).expect("halve");

    let outcome = store.load_latest::<common::State>().expect("load");
    assert_eq!(outcome.loaded.map(|l| l.sequence()), Some(1));
    assert!(matches!(
        outcome.skipped.first().map(|s| &s.error),
        Some(SnapshotError::Truncated { .. })
    ));

    // A header-less file (crash before the header was written, if a rename had happened).
    let mut headerless = full.clone();
    if let Some(head) = headerless.get_mut(..64) {
        head.fill(0);
    }
    fs::write(dir.path().join(file_name(3)), &headerless).expect("write");
    let outcome = store.load_latest::<common::State>().expect("load");
    assert_eq!(outcome.loaded.map(|l| l.sequence()), Some(1));
    let reasons: Vec<bool> = outcome
        .skipped
        .iter()
        .map(|s| matches!(s.error, SnapshotError::BadMagic { .. }))
        .collect();
    assert_eq!(reasons, [true, false]);

    // The engine, restarted from 1, writes 4: retention (keep 2) removes 1 and 2, then
    // writing 5 removes 3.
    store.write(4, &small_state(4)).expect("write");
    assert_eq!(sequences(dir.path()), [3, 4]);
    store.write(5, &small_state(5)).expect("write");
    assert_eq!(sequences(dir.path()), [4, 5]);
    assert_eq!(load_state(&store), Some((5, small_state(5))));
}
