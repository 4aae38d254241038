//! Every byte of a small log flipped in turn, and one test per recovery case of the
//! decision table in `docs/wal-format.md`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;

use common::{
    Owned, copy_log, frame_positions, payload, raw_durable_mark, raw_frame, read_all, salt_of,
    segment_files,
};
use ledger_wal::{
    CleanEnd, FrameDefect, FrameKind, SegmentEnd, Wal, WalConfig, WalError, WalReader, fuzzing,
    segment_file_name, verify,
};

/// Two segments, three frames each, synced (so a durable mark ends the second).
fn small_log(dir: &Path) -> Vec<Owned> {
    let cfg = WalConfig::default().with_segment_bytes_max(300);
    let (mut wal, _) = Wal::open(dir, cfg).unwrap();
    let mut expected = Vec::new();
    let mut seq = 5;
    for i in 0..6_u64 {
        let p = payload(i, 20 + i as usize);
        wal.append(seq, seq + i % 2, &p).unwrap();
        expected.push((seq, 1 + (i % 2) as u32, p));
        seq += 1 + i % 2;
    }
    wal.sync().unwrap();
    assert_eq!(wal.segments().len(), 2);
    expected
}

#[test]
fn every_flipped_byte_is_an_error_or_a_truncated_tail_never_different_data() {
    let root = tempfile::tempdir().unwrap();
    let original = root.path().join("original");
    let expected = small_log(&original);
    let positions = frame_positions(&original);
    let (_, last_off, _, last_len) = *positions.last().unwrap();
    // The sync wrote a durable mark after the last frame: everything before it was synced.
    let mark_off = last_off + 40 + last_len as u64;
    let files = segment_files(&original);
    let mut checked = 0;
    for (file_idx, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        let is_last_file = file_idx + 1 == files.len();
        for i in 0..bytes.len() {
            for mask in [0xFF_u8, 0x01] {
                let dir = root.path().join(format!("flip-{file_idx}-{i}-{mask}"));
                copy_log(&original, &dir);
                let target = dir.join(file.file_name().unwrap());
                let mut damaged = bytes.clone();
                damaged[i] ^= mask;
                std::fs::write(&target, &damaged).unwrap();
                assert!(!is_last_file || bytes.len() as u64 == mark_off + 40);
                let in_mark = is_last_file && (i as u64) >= mark_off;

                // Read-only: frames handed out before any error are the original ones.
                let reader_outcome = (|| {
                    let reader = WalReader::open(&dir)?;
                    let mut frames = reader.frames();
                    let mut got = Vec::new();
                    let result = loop {
                        match frames.next_frame() {
                            Ok(Some(f)) if f.kind != FrameKind::Records => {}
                            Ok(Some(f)) => {
                                got.push((f.first_seq, f.record_count, f.payload.to_vec()))
                            }
                            Ok(None) => break Ok(frames.end()),
                            Err(e) => break Err(e),
                        }
                    };
                    assert_eq!(got[..], expected[..got.len()], "flip {file_idx}/{i}");
                    result
                })();

                let opened = Wal::open(&dir, WalConfig::default());
                if in_mark {
                    // The mark, the last frame: a torn tail, cut off; no record is lost.
                    let end = reader_outcome.unwrap();
                    assert!(
                        matches!(end, Some(SegmentEnd::Torn { offset, .. }) if offset == mark_off)
                    );
                    let (_, report) = opened.unwrap();
                    let t = report.truncated.unwrap();
                    assert_eq!(t.offset, mark_off);
                    let (frames, _) = read_all(&dir).unwrap();
                    assert_eq!(frames[..], expected[..]);
                } else {
                    // Anywhere else (synced frames: the mark after them says so): refused
                    // by the reader and by recovery (a flip in an earlier segment is found
                    // by the reader; recovery reads only headers there, so it may open,
                    // but then reading refuses).
                    let err = reader_outcome.unwrap_err();
                    assert!(err.is_corruption(), "flip {file_idx}/{i}: {err}");
                    match opened {
                        Err(e) => assert!(e.is_corruption(), "flip {file_idx}/{i}: {e}"),
                        Ok((_, report)) => {
                            assert!(
                                !is_last_file,
                                "flip {file_idx}/{i} in the last segment opened"
                            );
                            assert_eq!(report.truncated, None);
                            assert!(verify(&dir).unwrap_err().is_corruption());
                        }
                    }
                }
                std::fs::remove_dir_all(&dir).unwrap();
                checked += 1;
            }
        }
    }
    assert!(checked > 500);
}

#[test]
fn flipped_bytes_of_padded_frames_are_errors_or_a_truncated_tail() {
    let root = tempfile::tempdir().unwrap();
    let original = root.path().join("original");
    let cfg = WalConfig::default().with_align_frames_min_bytes(0);
    let (mut wal, _) = Wal::open(&original, cfg).unwrap();
    let expected: Vec<Owned> = (1..=3_u64).map(|s| (s, 1, payload(s, 30))).collect();
    for (s, _, p) in &expected {
        wal.append(*s, *s, p).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let file = segment_files(&original).pop().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    // Three padded frames, then the durable mark the sync wrote.
    assert_eq!(bytes.len(), 3 * 4096 + 40);
    // Headers, payloads, the mark, and every 31st padding byte of each frame.
    let offsets = (0..bytes.len()).filter(|i| i % 4096 < 64 + 40 + 30 || i.is_multiple_of(31));
    for i in offsets {
        let dir = root.path().join(format!("flip-{i}"));
        copy_log(&original, &dir);
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x20;
        std::fs::write(dir.join(file.file_name().unwrap()), &damaged).unwrap();
        match Wal::open(&dir, cfg) {
            Ok((_, report)) => {
                assert!(i >= 3 * 4096, "flip at {i} in a synced frame opened");
                assert_eq!(report.truncated.map(|t| t.offset), Some(3 * 4096));
                assert_eq!(read_all(&dir).unwrap().0, expected);
            }
            Err(e) => {
                assert!(i < 3 * 4096, "flip at {i} in the mark: {e}");
                assert!(e.is_corruption(), "{e}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn segment_with(dir: &Path, number: u64, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(segment_file_name(number)), bytes).unwrap();
}

fn open_err(dir: &Path) -> WalError {
    Wal::open(dir, WalConfig::default()).unwrap_err()
}

#[test]
fn case_clean_end_of_file() {
    let dir = tempfile::tempdir().unwrap();
    segment_with(
        dir.path(),
        1,
        &fuzzing::build_segment(1, 10, 5, &[b"a", b"bc"]),
    );
    let (_, report) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert!(matches!(
        report.end,
        Some(SegmentEnd::Clean {
            how: CleanEnd::EndOfFile,
            ..
        })
    ));
    assert_eq!(report.next_seq, Some(13));
}

#[test]
fn case_bad_segment_magic() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"a"]);
    seg[0] = b'X';
    segment_with(dir.path(), 1, &seg);
    let e = open_err(dir.path());
    assert!(
        matches!(
            &e,
            WalError::CorruptSegmentHeader {
                reason: "bad magic",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&segment_file_name(1)));
}

#[test]
fn case_segment_header_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"a"]);
    seg[25] ^= 1;
    segment_with(dir.path(), 1, &seg);
    assert!(matches!(
        open_err(dir.path()),
        WalError::CorruptSegmentHeader { .. }
    ));
}

#[test]
fn case_segment_shorter_than_its_header() {
    let dir = tempfile::tempdir().unwrap();
    segment_with(dir.path(), 1, &fuzzing::build_segment(1, 1, 5, &[])[..30]);
    assert!(matches!(
        open_err(dir.path()),
        WalError::CorruptSegmentHeader { .. }
    ));
}

#[test]
fn case_segment_number_differs_from_file_name() {
    let dir = tempfile::tempdir().unwrap();
    segment_with(dir.path(), 2, &fuzzing::build_segment(1, 1, 5, &[b"a"]));
    assert!(matches!(
        open_err(dir.path()),
        WalError::CorruptSegmentHeader { .. }
    ));
}

#[test]
fn case_unknown_segment_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"a"]);
    seg[8..12].copy_from_slice(&2_u32.to_le_bytes());
    segment_with(dir.path(), 1, &seg);
    let e = open_err(dir.path());
    assert!(
        matches!(
            e,
            WalError::UnknownVersion {
                version: 2,
                supported: 1,
                offset: 0,
                ..
            }
        ),
        "{e}"
    );
    assert!(WalReader::open(dir.path()).is_err());
}

#[test]
fn case_unknown_frame_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"a"]);
    seg.extend_from_slice(&raw_frame(2, 1, 1, 2, 5, b"future"));
    segment_with(dir.path(), 1, &seg);
    let e = open_err(dir.path());
    assert!(
        matches!(e, WalError::UnknownVersion { version: 2, .. }),
        "{e}"
    );
}

#[test]
fn case_gap_in_segment_numbers() {
    let dir = tempfile::tempdir().unwrap();
    segment_with(dir.path(), 1, &fuzzing::build_segment(1, 1, 5, &[b"a"]));
    segment_with(dir.path(), 3, &fuzzing::build_segment(3, 2, 6, &[b"b"]));
    let e = open_err(dir.path());
    assert!(matches!(e, WalError::SegmentGap { .. }), "{e}");
    assert!(matches!(
        WalReader::open(dir.path()),
        Err(WalError::SegmentGap { .. })
    ));
}

#[test]
fn case_sequence_gap_between_segments() {
    let dir = tempfile::tempdir().unwrap();
    segment_with(dir.path(), 1, &fuzzing::build_segment(1, 1, 5, &[b"a"]));
    segment_with(dir.path(), 2, &fuzzing::build_segment(2, 5, 6, &[b"b"]));
    // Recovery reads the last segment only; the reader walks across and finds the gap.
    let e = read_all(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            WalError::SequenceGap {
                expected: 2,
                found: 5,
                offset: 0,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn case_segment_first_sequence_goes_backwards() {
    let dir = tempfile::tempdir().unwrap();
    segment_with(dir.path(), 1, &fuzzing::build_segment(1, 10, 5, &[b"a"]));
    segment_with(dir.path(), 2, &fuzzing::build_segment(2, 3, 6, &[b"b"]));
    assert!(matches!(open_err(dir.path()), WalError::SequenceGap { .. }));
}

#[test]
fn case_sequence_gap_inside_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"a"]);
    seg.extend_from_slice(&raw_frame(1, 1, 1, 7, 5, b"skips"));
    segment_with(dir.path(), 1, &seg);
    let e = open_err(dir.path());
    assert!(
        matches!(
            e,
            WalError::SequenceGap {
                expected: 2,
                found: 7,
                offset: 105,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn case_bad_frame_followed_by_a_valid_one_and_a_durable_mark() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"first", b"second", b"third"]);
    seg.extend_from_slice(&raw_durable_mark(7, 5));
    let second = 64 + 40 + 5;
    seg[second + 40] ^= 0x10; // payload byte of the second frame
    segment_with(dir.path(), 1, &seg);
    let e = open_err(dir.path());
    match e {
        WalError::CorruptFrame {
            offset,
            defect: FrameDefect::PayloadChecksum { .. },
            next_valid_offset: Some(next),
            ..
        } => {
            assert_eq!(offset, second as u64);
            assert_eq!(next, (second + 40 + 6) as u64);
        }
        other => panic!("{other}"),
    }
}

/// Unsynced frames reach the disk in any order: a whole frame after a torn one, with no
/// durable mark after the damage, is an unacknowledged write, cut off with the tail.
#[test]
fn case_bad_frame_followed_by_a_valid_one_without_a_mark_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"first", b"second", b"third"]);
    let second = 64 + 40 + 5;
    seg[second + 40] ^= 0x10;
    // A mark *before* the damage proves nothing about it.
    let mut marked = seg[..second].to_vec();
    marked.extend_from_slice(&raw_durable_mark(2, 5));
    marked.extend_from_slice(&seg[second..]);
    for bytes in [&seg, &marked] {
        segment_with(dir.path(), 1, bytes);
        let (_, report) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        let torn = report.truncated.unwrap();
        assert!(torn.offset == second as u64 || torn.offset == (second + 40) as u64);
        assert_eq!(read_all(dir.path()).unwrap().0.len(), 1);
    }
    // In a segment that is not the last, the same bytes are corruption.
    segment_with(dir.path(), 1, &seg);
    segment_with(dir.path(), 2, &fuzzing::build_segment(2, 7, 6, &[b"b"]));
    assert!(read_all(dir.path()).unwrap_err().is_corruption());
}

#[test]
fn case_zeros_then_a_valid_frame_and_a_mark_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"first"]);
    seg.extend_from_slice(&[0; 100]);
    seg.extend_from_slice(&raw_frame(1, 1, 1, 2, 5, b"lost?"));
    seg.extend_from_slice(&raw_durable_mark(3, 5));
    segment_with(dir.path(), 1, &seg);
    assert!(matches!(
        open_err(dir.path()),
        WalError::CorruptFrame {
            next_valid_offset: Some(209),
            ..
        }
    ));
}

#[test]
fn case_torn_tail_in_a_segment_that_is_not_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"first", b"second"]);
    seg.truncate(seg.len() - 2);
    segment_with(dir.path(), 1, &seg);
    segment_with(dir.path(), 2, &fuzzing::build_segment(2, 2, 6, &[b"b"]));
    let e = read_all(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            WalError::CorruptFrame {
                next_valid_offset: None,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("not the last"));
}

#[test]
fn case_unknown_must_understand_kind_is_refused_optional_kind_is_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"a"]);
    seg.extend_from_slice(&raw_frame(1, 0x81, 0, 2, 5, b"digest"));
    seg.extend_from_slice(&raw_frame(1, 1, 3, 2, 5, b"more"));
    segment_with(dir.path(), 1, &seg);
    let reader = WalReader::open(dir.path()).unwrap();
    let mut frames = reader.frames();
    let mut kinds = Vec::new();
    while let Some(f) = frames.next_frame().unwrap() {
        kinds.push((f.kind, f.first_seq, f.last_seq()));
    }
    assert_eq!(
        kinds,
        [
            (FrameKind::Records, 1, Some(1)),
            (FrameKind::Optional(0x81), 2, None),
            (FrameKind::Records, 2, Some(4)),
        ]
    );
    let (_, report) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(report.next_seq, Some(5));

    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"a"]);
    seg.extend_from_slice(&raw_frame(1, 0x02, 1, 2, 5, b"must understand"));
    segment_with(dir.path(), 1, &seg);
    assert!(matches!(
        open_err(dir.path()),
        WalError::UnknownFrameKind {
            kind: 2,
            offset: 105,
            ..
        }
    ));
}

#[test]
fn case_malformed_fields_under_valid_checksums() {
    for (kind, count) in [(1_u8, 0_u32), (0x81, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = fuzzing::build_segment(1, 1, 5, &[]);
        seg.extend_from_slice(&raw_frame(1, kind, count, 1, 5, b"x"));
        segment_with(dir.path(), 1, &seg);
        assert!(matches!(
            open_err(dir.path()),
            WalError::MalformedFrame { .. }
        ));
    }
}

#[test]
fn errors_name_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = fuzzing::build_segment(1, 1, 5, &[b"first", b"second"]);
    seg.extend_from_slice(&raw_durable_mark(4, 5));
    seg[64 + 41] ^= 1;
    segment_with(dir.path(), 1, &seg);
    let msg = open_err(dir.path()).to_string();
    assert!(msg.contains(&segment_file_name(1)), "{msg}");
    assert!(msg.contains("offset 64"), "{msg}");
}

#[test]
fn appends_that_do_not_continue_the_log_are_refused_and_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    wal.append(1, 2, b"a").unwrap();
    assert!(matches!(
        wal.append(4, 4, b"b"),
        Err(WalError::OutOfOrder {
            expected: 3,
            first_seq: 4
        })
    ));
    assert!(matches!(
        wal.append(3, 2, b"b"),
        Err(WalError::InvalidRange { .. })
    ));
    assert!(matches!(
        wal.append(3, u64::MAX, b"b"),
        Err(WalError::InvalidRange { .. })
    ));
    assert!(matches!(
        wal.append(3, 3 + u64::from(u32::MAX), b"b"),
        Err(WalError::InvalidRange { .. })
    ));
    let ran = std::cell::Cell::new(false);
    assert!(wal.append_with(9, 9, |_| ran.set(true)).is_err());
    assert!(!ran.get(), "the encoder does not run for a refused range");
    wal.append(3, 3, b"c").unwrap();
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(read_all(dir.path()).unwrap().0.len(), 2);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert!(matches!(open_err(dir.path()), WalError::Locked { .. }));
    // Readers need no lock.
    assert!(verify(dir.path()).is_ok());
}

#[test]
fn a_too_small_segment_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Wal::open(dir.path(), WalConfig::default().with_segment_bytes_max(10)),
        Err(WalError::InvalidConfig { .. })
    ));
}

#[test]
fn salt_is_per_segment() {
    let dir = tempfile::tempdir().unwrap();
    small_log(dir.path());
    let files = segment_files(dir.path());
    assert_ne!(salt_of(&files[0]), salt_of(&files[1]));
}
