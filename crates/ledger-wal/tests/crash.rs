//! Crash simulation on real files: the last segment cut (or zeroed, for a pre-zeroed
//! segment) at every byte offset of its last frames; recovery keeps exactly the complete
//! frames and appending continues after them. Also: interrupted segment creation and
//! stale frames of a recycled file.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::fs::OpenOptions;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::Path;

use common::{Owned, copy_log, frame_positions, payload, read_all, salt_of, segment_files};
use ledger_wal::{CleanEnd, FrameDefect, SegmentEnd, Wal, WalConfig};

const SEGMENT_BYTES: u64 = 700;

/// A log of two or more segments whose last segment holds frames of sizes 0, 1, 37, 90
/// (and, for a padded log, 37, 90, 5000, 3).
fn build_log(dir: &Path, cfg: WalConfig) -> Vec<Owned> {
    let (mut wal, _) = Wal::open(dir, cfg).unwrap();
    let mut expected = Vec::new();
    let mut seq = 1;
    let sizes: &[usize] = if cfg.align_frames_min_bytes == 0 {
        &[200, 150, 200, 0, 1, 37, 90, 5000, 3]
    } else {
        &[200, 150, 200, 0, 1, 37, 90]
    };
    for (i, &len) in sizes.iter().enumerate() {
        let count = 1 + (i as u32 % 3);
        let p = payload(i as u64, len);
        wal.append(seq, seq + u64::from(count) - 1, &p).unwrap();
        expected.push((seq, count, p));
        seq += u64::from(count);
    }
    wal.sync().unwrap();
    assert!(wal.segments().len() >= 2, "{:?}", wal.segments());
    expected
}

/// Cuts the last segment at every offset from the start of its fourth-to-last frame to
/// its end (for a padded log: every offset in headers and around payload ends and frame
/// boundaries, and every 61st elsewhere); `zero_instead` keeps the file length and
/// zeroes the bytes after the cut.
fn cut_everywhere(cfg: WalConfig, zero_instead: bool) {
    let root = tempfile::tempdir().unwrap();
    let original = root.path().join("original");
    let expected = build_log(&original, cfg);
    let positions = frame_positions(&original);
    let last_segment = segment_files(&original).pop().unwrap();
    let last_number = positions.last().unwrap().0;
    // (offset, end) of the frames in the last segment, and how many frames precede them.
    let last_bytes = std::fs::read(&last_segment).unwrap();
    // (offset, end including padding, end of payload)
    let frames_in_last: Vec<(u64, u64, u64)> = positions
        .iter()
        .filter(|p| p.0 == last_number)
        .map(|p| {
            let at = p.1 as usize;
            let padding = u16::from_le_bytes([last_bytes[at + 6], last_bytes[at + 7]]);
            let content_end = p.1 + 40 + p.3 as u64;
            (p.1, content_end + u64::from(padding), content_end)
        })
        .collect();
    let in_last: Vec<(u64, u64)> = frames_in_last.iter().map(|f| (f.0, f.1)).collect();
    let f_unpadded = frames_in_last.iter().all(|f| f.1 == f.2 && f.1 - f.0 < 200);
    let interesting = |cut: u64| {
        frames_in_last.iter().any(|f| {
            (f.0..=f.0 + 48).contains(&cut) || cut.abs_diff(f.2) <= 8 || cut.abs_diff(f.1) <= 1
        }) || cut.is_multiple_of(61)
            || f_unpadded
    };
    assert!(in_last.len() >= 4);
    let before = positions.len() - in_last.len();
    let file_len = std::fs::metadata(&last_segment).unwrap().len();
    let data_end = in_last.last().unwrap().1;
    let first_cut = in_last[in_last.len() - 4].0;

    for cut in (first_cut..=data_end).filter(|&c| interesting(c)) {
        let dir = root.path().join(format!("cut-{cut}"));
        copy_log(&original, &dir);
        let seg = segment_files(&dir).pop().unwrap();
        let mut file = OpenOptions::new().write(true).open(&seg).unwrap();
        if zero_instead {
            file.seek(SeekFrom::Start(cut)).unwrap();
            file.write_all(&vec![0; (file_len - cut) as usize]).unwrap();
        } else {
            file.set_len(cut).unwrap();
        }
        drop(file);

        // Zeros written over padding leave the frame whole.
        let complete = if zero_instead {
            frames_in_last.iter().filter(|f| f.2 <= cut).count()
        } else {
            in_last.iter().filter(|f| f.1 <= cut).count()
        };
        let boundary = in_last[..complete].last().map_or(64, |f| f.1);
        let survivors = &expected[..before + complete];
        let next_seq =
            expected[before + complete - 1].0 + u64::from(expected[before + complete - 1].1);

        // Read-only first: reports the torn tail, changes nothing.
        let (frames, end) = read_all(&dir).unwrap();
        assert_eq!(frames, survivors, "cut at {cut}");
        let on_disk = std::fs::metadata(&seg).unwrap().len();

        let (mut wal, report) = Wal::open(&dir, cfg).unwrap();
        assert_eq!(report.next_seq, Some(next_seq), "cut at {cut}");
        assert_eq!(end, report.end, "reader and recovery agree, cut at {cut}");
        let torn = if zero_instead {
            // Bytes of a partial frame before the zeros are a torn tail; zeros alone are a
            // clean end of a pre-zeroed segment.
            cut > boundary
        } else {
            cut != boundary
        };
        match &report.truncated {
            Some(t) => {
                assert!(torn, "cut at {cut}: unexpected truncation {t:?}");
                assert_eq!(t.offset, boundary);
                assert_eq!(t.bytes_dropped, on_disk - boundary);
                assert_eq!(t.segment, seg);
            }
            None => {
                assert!(!torn, "cut at {cut}: torn tail not reported");
                let how = report.end.map(|e| match e {
                    SegmentEnd::Clean { how, .. } => how,
                    SegmentEnd::Torn { .. } => panic!("torn end without truncation"),
                });
                let want = if zero_instead && boundary < file_len {
                    CleanEnd::ZeroFill
                } else {
                    CleanEnd::EndOfFile
                };
                assert_eq!(how, Some(want), "cut at {cut}");
            }
        }
        if torn {
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), boundary);
        }

        // Appending continues right after the survivors.
        wal.append(next_seq, next_seq + 1, b"after the crash")
            .unwrap();
        assert_eq!(wal.sync().unwrap().last_seq(), Some(next_seq + 1));
        drop(wal);
        let (frames, end) = read_all(&dir).unwrap();
        assert!(matches!(end, Some(SegmentEnd::Clean { .. })));
        assert_eq!(&frames[..survivors.len()], survivors);
        assert_eq!(
            frames[survivors.len()..],
            [(next_seq, 2, b"after the crash".to_vec())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn truncated_last_segment_keeps_exactly_the_complete_frames() {
    cut_everywhere(
        WalConfig::default().with_segment_bytes_max(SEGMENT_BYTES),
        false,
    );
}

#[test]
fn zeroed_tail_of_a_preallocated_segment_keeps_exactly_the_complete_frames() {
    let cfg = WalConfig::default()
        .with_segment_bytes_max(SEGMENT_BYTES)
        .with_preallocate(true);
    cut_everywhere(cfg, true);
}

#[test]
fn padded_frames_cut_anywhere_keep_exactly_the_complete_frames() {
    let cfg = WalConfig::default()
        .with_segment_bytes_max(20 << 10)
        .with_align_frames_min_bytes(0);
    cut_everywhere(cfg, false);
    cut_everywhere(cfg.with_preallocate(true), true);
    // Payload written before the header.
    cut_everywhere(cfg.with_overlap_checksum_min_bytes(0), false);
}

#[test]
fn padding_aligns_large_frames_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    wal.append(1, 1, &[1; 100]).unwrap();
    wal.append(2, 2, &[2; 64 << 10]).unwrap();
    wal.append(3, 3, &[3; 100]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let positions = frame_positions(dir.path());
    let offsets: Vec<u64> = positions.iter().map(|p| p.1).collect();
    // 64 + 140 = 204; the 64 KiB frame ends padded at a multiple of 4096.
    assert_eq!(offsets[..2], [64, 204]);
    assert_eq!(offsets[2] % 4096, 0);
    assert!(offsets[2] >= 204 + 40 + (64 << 10));
    assert_eq!(read_all(dir.path()).unwrap().0[1].2, vec![2; 64 << 10]);
}

#[test]
fn frames_sized_to_the_alignment_unit_land_on_its_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::default()
        .with_frame_align_bytes(1 << 16)
        .with_align_frames_min_bytes(0);
    let (mut wal, _) = Wal::open(dir.path(), cfg).unwrap();
    for s in 1..=4 {
        wal.append(s, s, &vec![s as u8; (1 << 16) - 40]).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let offsets: Vec<u64> = frame_positions(dir.path()).iter().map(|p| p.1).collect();
    assert_eq!(offsets, [64, 2 << 16, 3 << 16, 4 << 16]);
    assert_eq!(read_all(dir.path()).unwrap().0.len(), 4);
    for bad in [0, 100, 256, 3000, 1 << 17] {
        let e = Wal::open(dir.path(), WalConfig::default().with_frame_align_bytes(bad));
        assert!(
            matches!(e, Err(ledger_wal::WalError::InvalidConfig { .. })),
            "{bad}"
        );
    }
}

#[test]
fn a_header_written_without_its_payload_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    wal.append(1, 1, b"kept").unwrap();
    wal.append(2, 2, &[9; 500]).unwrap();
    // Not synced: a crash image of the write in flight (a sync would also add a durable
    // mark, after which damage to frame 2 is corruption, not a torn write).
    drop(wal);
    let seg = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let (_wal, report) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    let t = report.truncated.unwrap();
    assert!(matches!(
        t.defect,
        FrameDefect::Truncated {
            needed_bytes: 540,
            available_bytes: 440
        }
    ));
    assert_eq!(report.next_seq, Some(2));
}

#[test]
fn an_interrupted_segment_creation_is_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    wal.append(1, 1, b"x").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let tmp = dir.path().join("wal-00000000000000000002.seg.tmp");
    std::fs::write(&tmp, b"half a header").unwrap();
    let (mut wal, report) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(report.removed_temp_files, std::slice::from_ref(&tmp));
    assert!(!tmp.exists());
    wal.append(2, 2, b"y").unwrap();
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(read_all(dir.path()).unwrap().0.len(), 2);
}

#[test]
fn stale_frames_of_a_recycled_file_are_a_clean_end_not_data() {
    // Two logs with the same segment number but different salts: the longer one's bytes
    // past the shorter one's end stand for what a recycled file still holds.
    let root = tempfile::tempdir().unwrap();
    let old = root.path().join("old");
    let new = root.path().join("new");
    for (dir, n) in [(&old, 8_u64), (&new, 3)] {
        let (mut wal, _) = Wal::open(dir, WalConfig::default()).unwrap();
        for s in 1..=n {
            // Same sequences, other bytes: a stale frame would continue the new log's
            // sequence, so only the salt tells it apart.
            wal.append(s, s, &payload(s + 100 * n, 50)).unwrap();
        }
        // Not synced: no durable mark, so both logs have frames at the same offsets.
    }
    let old_seg = segment_files(&old).pop().unwrap();
    let new_seg = segment_files(&new).pop().unwrap();
    assert_ne!(salt_of(&old_seg), salt_of(&new_seg));
    let old_bytes = std::fs::read(&old_seg).unwrap();
    let mut spliced = std::fs::read(&new_seg).unwrap();
    let new_len = spliced.len();
    spliced.extend_from_slice(&old_bytes[new_len..]);
    std::fs::write(&new_seg, &spliced).unwrap();

    let (frames, end) = read_all(&new).unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(
        end,
        Some(SegmentEnd::Clean {
            offset: new_len as u64,
            how: CleanEnd::StaleData
        })
    );
    let (mut wal, report) = Wal::open(&new, WalConfig::default()).unwrap();
    assert_eq!(report.truncated, None);
    assert_eq!(report.next_seq, Some(4));
    // The next append overwrites the stale bytes.
    wal.append(4, 4, b"fresh").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (frames, _) = read_all(&new).unwrap();
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[3], (4, 1, b"fresh".to_vec()));

    // Half of a stale frame overwritten by a torn write: still not data, and not an error.
    let mut torn = spliced.clone();
    let at = new_len + 10;
    torn[at..at + 8].copy_from_slice(&[0xEE; 8]);
    std::fs::write(&new_seg, &torn).unwrap();
    let (_, end) = read_all(&new).unwrap();
    assert!(matches!(end, Some(SegmentEnd::Torn { offset, .. }) if offset == new_len as u64));
}

#[test]
fn a_payload_written_before_its_header_is_a_torn_tail() {
    // With the checksum overlapped, the payload is written before the header: a crash in
    // between leaves the header's bytes as they were (zeros here, or stale bytes).
    for prealloc in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WalConfig::default()
            .with_overlap_checksum_min_bytes(0)
            .with_preallocate(prealloc)
            .with_segment_bytes_max(1 << 20);
        let (mut wal, _) = Wal::open(dir.path(), cfg).unwrap();
        wal.append(1, 1, b"durable").unwrap();
        wal.sync().unwrap();
        wal.append(2, 2, &[7; 9000]).unwrap();
        // Frame 2 is not synced: the crash comes before its sync.
        drop(wal);
        let positions = frame_positions(dir.path());
        let at = positions[1].1;
        let seg = segment_files(dir.path()).pop().unwrap();
        let mut file = OpenOptions::new().write(true).open(&seg).unwrap();
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&[0; 40]).unwrap();
        drop(file);
        let (mut wal, report) = Wal::open(dir.path(), cfg).unwrap();
        assert_eq!(report.truncated.map(|t| t.offset), Some(at));
        assert_eq!(report.next_seq, Some(2));
        wal.append(2, 2, b"again").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (frames, _) = read_all(dir.path()).unwrap();
        assert_eq!(frames.len(), 2);
    }
}
