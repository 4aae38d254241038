//! Retention hooks: listing segments with their ranges, deleting segments wholly below a
//! sequence, and reading/reopening afterwards.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::{payload, read_all, segment_files};
use ledger_wal::{Wal, WalConfig, WalError, WalReader};

#[test]
fn segments_wholly_below_a_sequence_are_removed_and_the_rest_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::default().with_segment_bytes_max(400);
    let (mut wal, _) = Wal::open(dir.path(), cfg).unwrap();
    // 3 records per frame, 2 frames per segment (64 + 2 * (40 + 100) = 344 <= 400).
    for i in 0..10_u64 {
        wal.append(1 + 3 * i, 3 + 3 * i, &payload(i, 100)).unwrap();
    }
    wal.sync().unwrap();
    let segs = wal.segments();
    assert_eq!(segs.len(), 5);
    assert_eq!(
        segs.iter()
            .map(|s| (s.number, s.first_seq, s.last_seq()))
            .collect::<Vec<_>>(),
        [
            (1, 1, Some(6)),
            (2, 7, Some(12)),
            (3, 13, Some(18)),
            (4, 19, Some(24)),
            (5, 25, Some(30))
        ]
    );

    // 13 is the first record of segment 3: segments 1 and 2 go.
    assert_eq!(wal.remove_segments_below(12).unwrap().len(), 1);
    let removed = wal.remove_segments_below(13).unwrap();
    assert_eq!(removed.iter().map(|s| s.number).collect::<Vec<_>>(), [2]);
    assert_eq!(segment_files(dir.path()).len(), 3);
    assert!(wal.remove_segments_below(13).unwrap().is_empty());

    // The segment being written is never removed.
    let removed = wal.remove_segments_below(1_000).unwrap();
    assert_eq!(removed.iter().map(|s| s.number).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(wal.segments().len(), 1);
    wal.append(31, 31, b"still appending").unwrap();
    wal.sync().unwrap();
    drop(wal);

    let reader = WalReader::open(dir.path()).unwrap();
    assert_eq!(reader.first_seq(), Some(25));
    assert!(matches!(
        reader.frames_from(24),
        Err(WalError::NotRetained {
            requested: 24,
            first_available: 25
        })
    ));
    let (frames, _) = read_all(dir.path()).unwrap();
    assert_eq!(frames.iter().map(|f| f.0).collect::<Vec<_>>(), [25, 28, 31]);

    // Reopening a log whose first segment is not number 1.
    let (wal, report) = Wal::open(dir.path(), cfg).unwrap();
    assert_eq!(report.next_seq, Some(32));
    assert_eq!(wal.segments()[0].number, 5);
}

#[test]
fn an_empty_last_segment_keeps_the_position() {
    // A crash right after a segment was created, before its first frame landed.
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::default().with_segment_bytes_max(300);
    let (mut wal, _) = Wal::open(dir.path(), cfg).unwrap();
    wal.append(1, 1, &[1; 150]).unwrap();
    wal.append(2, 2, &[2; 150]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let last = segment_files(dir.path()).pop().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(64)
        .unwrap();
    let (mut wal, report) = Wal::open(dir.path(), cfg).unwrap();
    assert_eq!(report.next_seq, Some(2));
    assert_eq!(report.truncated, None);
    wal.append(2, 2, b"again").unwrap();
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(read_all(dir.path()).unwrap().0.len(), 2);
}

#[test]
fn an_empty_directory_and_a_missing_one_are_empty_logs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let reader = WalReader::open(&missing).unwrap();
    assert_eq!(reader.segment_count(), 0);
    assert!(reader.frames().next_frame().unwrap().is_none());
    assert!(!missing.exists(), "a reader creates nothing");
    let v = ledger_wal::verify(&missing).unwrap();
    assert_eq!((v.frames, v.next_seq), (0, None));
}

#[test]
fn a_reset_log_starts_over_at_any_sequence_in_a_segment_numbered_after_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::default().with_segment_bytes_max(400);
    let (mut wal, _) = Wal::open(dir.path(), cfg).unwrap();
    for i in 0..6_u64 {
        wal.append(1 + 3 * i, 3 + 3 * i, &payload(i, 100)).unwrap();
    }
    wal.sync().unwrap();
    assert_eq!(wal.segments().len(), 3);

    let removed = wal.reset(1_000).unwrap();
    assert_eq!(
        removed.iter().map(|s| s.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(wal.next_seq(), Some(1_000));
    // Anything but the announced sequence is refused.
    assert!(matches!(
        wal.append(19, 19, b"old"),
        Err(WalError::OutOfOrder {
            expected: 1_000,
            first_seq: 19
        })
    ));
    wal.append(1_000, 1_001, b"new").unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.segments()[0].number, 4);
    drop(wal);

    let (frames, _) = read_all(dir.path()).unwrap();
    assert_eq!(frames.iter().map(|f| f.0).collect::<Vec<_>>(), [1_000]);
    let (wal, report) = Wal::open(dir.path(), cfg).unwrap();
    assert_eq!(report.next_seq, Some(1_002));
    assert_eq!(wal.segments()[0].number, 4);
}
