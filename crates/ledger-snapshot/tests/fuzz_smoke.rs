//! The fuzz target's check (`ledger_snapshot::fuzzing::check_image`) on random bytes and
//! on random mutations of valid snapshot images, as part of the normal test suite.

use ledger_snapshot::fuzzing::check_image;
use ledger_snapshot::{SnapshotConfig, SnapshotStore, verify_bytes};
use proptest::prelude::*;

fn valid_image(balances: &[i64], sequence: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SnapshotStore::open(dir.path(), SnapshotConfig::default()).expect("open");
    let report = store.write(sequence, &balances.to_vec()).expect("write");
    std::fs::read(report.path).expect("read")
}

#[test]
fn a_valid_image_passes_the_check() {
    let image = valid_image(&[1, -2, 3], 9);
    let (info, payload) = verify_bytes(&image).expect("valid");
    assert_eq!(info.sequence, 9);
    assert_eq!(payload.len() as u64, info.payload_bytes);
    check_image(&image);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        check_image(&data);
        prop_assert!(verify_bytes(&data).is_err() || data.len() >= 64);
    }

    #[test]
    fn mutated_images_never_panic_and_are_rejected(
        balances in prop::collection::vec(any::<i64>(), 0..64),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1_u8..=255), 1..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut image = valid_image(&balances, 5);
        for (index, mask) in &edits {
            let i = index.index(image.len());
            if let Some(byte) = image.get_mut(i) {
                *byte ^= mask;
            }
        }
        if let Some(cut) = cut {
            image.truncate(cut.index(image.len()));
        }
        check_image(&image);
        // Any change is rejected: magic and version are compared directly, the rest of
        // the header and the payload are under crc32c, a cut fails the length check.
        // (Edits hitting the same byte can cancel out; then the image is unchanged. A
        // multi-byte change escapes a 32-bit CRC with probability 2^-32 per case.)
        let unchanged = image == valid_image(&balances, 5);
        prop_assert!(unchanged || verify_bytes(&image).is_err());
    }
}
