//! Every single-byte and single-bit change and every truncation of a small snapshot is
//! rejected by verification and never loaded.

mod common;

use std::fs;
use std::path::Path;

use common::{State, open, small_state};
use ledger_snapshot::{SnapshotError, SnapshotStore, open_file, verify_file};

/// Asserts that the file at `path` is rejected by every entry point, and returns the error.
fn assert_rejected(store: &SnapshotStore, path: &Path, what: &str) -> SnapshotError {
    let error = match verify_file(path) {
        Ok(info) => panic!("{what}: verify_file accepted {info:?}"),
        Err(error) => error,
    };
    assert!(error.is_corruption(), "{what}: {error}");
    assert!(
        open_file::<State>(path).is_err(),
        "{what}: open_file accepted"
    );
    let outcome = store.load_latest::<State>().expect("load_latest");
    assert!(outcome.loaded.is_none(), "{what}: load_latest loaded it");
    assert_eq!(outcome.skipped.len(), 1, "{what}");
    error
}

#[test]
fn flipping_any_byte_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let report = store.write(77, &small_state(77)).expect("write");
    let good = fs::read(&report.path).expect("read");
    assert!(good.len() > 64 + 32, "payload is not trivially small");

    for index in 0..good.len() {
        for mask in [0xFF_u8, 0x01, 0x80] {
            let mut bad = good.clone();
            if let Some(byte) = bad.get_mut(index) {
                *byte ^= mask;
            }
            fs::write(&report.path, &bad).expect("write corrupted");
            let error = assert_rejected(&store, &report.path, &format!("byte {index} ^ {mask:#x}"));
            // Where the change is decides which check catches it.
            match index {
                0..8 => assert!(matches!(error, SnapshotError::BadMagic { .. }), "{error}"),
                8..12 => assert!(
                    matches!(error, SnapshotError::UnknownVersion { .. }),
                    "{error}"
                ),
                12..64 => assert!(
                    matches!(error, SnapshotError::HeaderChecksumMismatch { .. }),
                    "{error}"
                ),
                _ => assert!(
                    matches!(error, SnapshotError::ChecksumMismatch { .. }),
                    "{error}"
                ),
            }
        }
    }
    fs::write(&report.path, &good).expect("restore");
    assert_eq!(
        store
            .load_latest::<State>()
            .expect("load")
            .loaded
            .map(|l| l.sequence()),
        Some(77)
    );
}

#[test]
fn flipping_any_bit_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let report = store.write(3, &small_state(3)).expect("write");
    let good = fs::read(&report.path).expect("read");
    for index in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            if let Some(byte) = bad.get_mut(index) {
                *byte ^= 1 << bit;
            }
            fs::write(&report.path, &bad).expect("write corrupted");
            let result = verify_file(&report.path);
            assert!(
                result.as_ref().is_err_and(SnapshotError::is_corruption),
                "byte {index} bit {bit}: {result:?}"
            );
        }
    }
}

#[test]
fn truncating_at_any_offset_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let report = store.write(5, &small_state(5)).expect("write");
    let good = fs::read(&report.path).expect("read");
    for len in 0..good.len() {
        let prefix = good.get(..len).expect("len < file length");
        fs::write(&report.path, prefix).expect("write truncated");
        let error = assert_rejected(&store, &report.path, &format!("truncated to {len}"));
        assert!(
            matches!(error, SnapshotError::Truncated { len_bytes, .. } if len_bytes == len as u64),
            "truncated to {len}: {error}"
        );
    }
}

#[test]
fn a_file_of_zeros_or_noise_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let report = store.write(5, &small_state(5)).expect("write");
    let len = fs::metadata(&report.path).expect("meta").len() as usize;
    fs::write(&report.path, vec![0_u8; len]).expect("zeros");
    assert!(matches!(
        assert_rejected(&store, &report.path, "zeros"),
        SnapshotError::BadMagic { .. }
    ));
    // A right magic and version with everything else noise.
    let mut noise: Vec<u8> = (0..len).map(|i| (i * 131 + 7) as u8).collect();
    if let Some(head) = noise.get_mut(..12) {
        head.copy_from_slice(b"RODASNAP\x01\0\0\0");
    }
    fs::write(&report.path, &noise).expect("noise");
    assert!(matches!(
        assert_rejected(&store, &report.path, "noise"),
        SnapshotError::HeaderChecksumMismatch { .. }
    ));
}
