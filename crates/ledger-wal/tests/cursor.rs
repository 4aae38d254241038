//! Random access: every position `append` returned reads back its own frame, then the
//! frames after it in the segment; a deleted segment is `NotFound`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use ledger_wal::{
    FrameCursor, FrameKind, FramePosition, SEGMENT_BYTES_MIN, Wal, WalConfig, WalError,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_appended_position_reads_back_its_frame(
        sizes in prop::collection::vec(0_usize..3000, 1..60),
        align_min in prop::sample::select(vec![64_u64, 32 << 10, u64::MAX]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WalConfig::default()
            .with_segment_bytes_max(SEGMENT_BYTES_MIN.max(16 << 10))
            .with_align_frames_min_bytes(align_min);
        let (mut wal, _) = Wal::open(dir.path(), cfg).unwrap();
        let mut written: Vec<(FramePosition, u64, Vec<u8>)> = Vec::new();
        let mut seq = 1;
        for (i, &size) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..size).map(|b| (b ^ i) as u8).collect();
            let count = (i % 3) as u64 + 1;
            let pos = wal.append(seq, seq + count - 1, &payload).unwrap();
            written.push((pos, seq, payload));
            seq += count;
            if i % 7 == 0 {
                wal.sync().unwrap();
            }
        }
        wal.sync().unwrap();
        for (i, (pos, first_seq, payload)) in written.iter().enumerate() {
            let mut cursor =
                FrameCursor::open(dir.path(), pos.segment, pos.offset, *first_seq, Vec::new())
                    .unwrap();
            let frame = cursor.next_frame().unwrap().unwrap();
            prop_assert_eq!(frame.first_seq, *first_seq);
            prop_assert_eq!(frame.offset, pos.offset);
            prop_assert_eq!(frame.segment, pos.segment);
            prop_assert_eq!(frame.payload, payload.as_slice());
            // The next records frame of the same segment follows (durable marks are
            // skipped), or the segment ends.
            let next = loop {
                match cursor.next_frame().unwrap() {
                    Some(f) if f.kind != FrameKind::Records => {}
                    other => break other.map(|f| (f.segment, f.first_seq)),
                }
            };
            let expected = written
                .get(i + 1)
                .filter(|(p, _, _)| p.segment == pos.segment)
                .map(|(p, s, _)| (p.segment, *s));
            prop_assert_eq!(next, expected);
        }
    }
}

#[test]
fn a_removed_segment_is_not_found_and_a_wrong_position_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::default().with_segment_bytes_max(SEGMENT_BYTES_MIN.max(4096));
    let (mut wal, _) = Wal::open(dir.path(), cfg).unwrap();
    let mut positions = Vec::new();
    for seq in 1..=40 {
        positions.push(wal.append(seq, seq, &[7_u8; 500]).unwrap());
    }
    wal.sync().unwrap();
    let first = positions[0];
    let last_segment = positions.last().unwrap().segment;
    assert!(
        last_segment > first.segment,
        "the test needs several segments"
    );
    // A position inside a frame is not a frame: an error, never a wrong frame.
    let mut cursor =
        FrameCursor::open(dir.path(), first.segment, first.offset + 8, 1, Vec::new()).unwrap();
    assert!(cursor.next_frame().is_err());
    // A wrong sequence for a true position is a sequence gap.
    let mut cursor =
        FrameCursor::open(dir.path(), first.segment, first.offset, 2, Vec::new()).unwrap();
    assert!(matches!(
        cursor.next_frame(),
        Err(WalError::SequenceGap { .. })
    ));

    wal.remove_segments_below(30).unwrap();
    match FrameCursor::open(dir.path(), first.segment, first.offset, 1, Vec::new()) {
        Err(WalError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}
