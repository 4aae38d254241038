//! The fuzz harness (`ledger_wal::fuzzing::check_reader`, also run by
//! `cargo +nightly fuzz run reader`) over random bytes, so CI exercises it on stable.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use ledger_wal::fuzzing::{build_segment, check_reader, scan_segment_bytes};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn reader_never_panics_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        check_reader(&data);
    }

    #[test]
    fn damaged_logs_never_yield_different_frames(
        mode in 0_u8..3,
        data in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut input = vec![mode];
        input.extend_from_slice(&data);
        check_reader(&input);
    }

    #[test]
    fn random_tail_after_valid_frames(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 0..5),
        garbage in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut seg = build_segment(1, 1, 9, &refs);
        let clean_len = seg.len();
        seg.extend_from_slice(&garbage);
        // Garbage after valid frames: never an error unless it contains a valid frame of
        // this segment (practically impossible by chance), and the valid frames survive.
        let (_, frames, end) = scan_segment_bytes(&seg, true).unwrap();
        prop_assert_eq!(frames.len(), payloads.len());
        prop_assert_eq!(end.offset(), clean_len as u64);
    }
}

#[test]
fn every_prefix_of_a_segment_reads_consistently() {
    let seg = build_segment(1, 1, 9, &[b"one", b"", b"three", &[7; 300]]);
    for cut in 0..=seg.len() {
        let mut input = vec![0];
        input.extend_from_slice(&seg[..cut]);
        check_reader(&input);
    }
}
