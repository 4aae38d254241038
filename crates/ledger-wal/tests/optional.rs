//! Optional frames of the caller's kinds (`Wal::append_optional`): written with the next
//! sequence, handed out with kind and payload by every reader, counted by `verify`, kept
//! across reopens and rotations; and `FrameCursor::open_across`, which reads a group of
//! frames wherever rotation put them.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Seen, caller_frames_on, on_real_and_simulated, payload, raw_durable_mark, raw_frame};
use ledger_storage::Storage;
use ledger_wal::{
    FrameCursor, FrameKind, FramePosition, SEGMENT_HEADER_BYTES, SegmentEnd, Wal, WalConfig,
    WalError, WalReader, fuzzing, verify_on,
};

const ENTRY_HEADER: u8 = 0x81;

/// Appends records `first..=last` and returns the frame as a reader should see it.
fn records(wal: &mut Wal, first: u64, last: u64, len: usize) -> Seen {
    let p = payload(first, len);
    let position = wal.append(first, last, &p).unwrap();
    Seen {
        position,
        kind: FrameKind::Records,
        first_seq: first,
        record_count: u32::try_from(last - first + 1).unwrap(),
        payload: p,
    }
}

/// Appends an optional frame and returns it as a reader should see it.
fn optional(wal: &mut Wal, kind: u8, p: &[u8]) -> Seen {
    let first_seq = wal.next_seq().unwrap();
    let position = wal.append_optional(kind, p).unwrap();
    Seen {
        position,
        kind: FrameKind::Optional(kind),
        first_seq,
        record_count: 0,
        payload: p.to_vec(),
    }
}

/// Reads every frame from `at` with a cursor (durable marks left out).
fn cursor_frames(storage: &Arc<dyn Storage>, dir: &Path, at: &Seen, across: bool) -> Vec<Seen> {
    let mut cursor = if across {
        FrameCursor::open_across(storage.clone(), dir, at.position, at.first_seq, Vec::new())
    } else {
        FrameCursor::open_on(
            storage.as_ref(),
            dir,
            at.position.segment,
            at.position.offset,
            at.first_seq,
            Vec::new(),
        )
    }
    .unwrap();
    let mut out = Vec::new();
    while let Some(f) = cursor.next_frame().unwrap() {
        if f.kind != FrameKind::Optional(FrameKind::DURABLE_MARK_BYTE) {
            out.push(Seen {
                position: FramePosition {
                    segment: f.segment,
                    offset: f.offset,
                },
                kind: f.kind,
                first_seq: f.first_seq,
                record_count: f.record_count,
                payload: f.payload.to_vec(),
            });
        }
    }
    out
}

#[test]
fn optional_frames_round_trip_with_kind_and_payload() {
    on_real_and_simulated(|storage, dir, _| {
        let (mut wal, _) = Wal::open_on(storage.clone(), dir, WalConfig::default()).unwrap();
        let written = vec![
            records(&mut wal, 1, 3, 10),
            optional(&mut wal, ENTRY_HEADER, b"entry 2"),
            records(&mut wal, 4, 4, 0),
            optional(&mut wal, 0x90, b""),
            // Large enough to be padded to a block boundary.
            optional(&mut wal, 0xFF, &payload(9, 40_000)),
            optional(&mut wal, ENTRY_HEADER, b"entry 3"),
            records(&mut wal, 5, 6, 7),
        ];
        assert_eq!(written[4].first_seq, 5, "optional frames take no sequence");
        assert_eq!(wal.next_seq(), Some(7));
        let durable = wal.sync().unwrap();
        assert_eq!(durable.next_seq, Some(7));
        drop(wal);

        let (frames, end) = caller_frames_on(storage.clone(), dir).unwrap();
        assert_eq!(frames, written);
        assert!(matches!(end, Some(SegmentEnd::Clean { .. })));
        let report = verify_on(storage.clone(), dir).unwrap();
        assert_eq!(report.frames, 3);
        // The caller's four optional frames and the durable mark of the sync.
        assert_eq!(report.optional_frames, 4 + 1);
        assert_eq!(report.next_seq, Some(7));
        for (i, frame) in written.iter().enumerate() {
            assert_eq!(cursor_frames(&storage, dir, frame, false), written[i..]);
        }

        // Reopened: all kept, and the log continues after them.
        let (mut wal, report) = Wal::open_on(storage.clone(), dir, WalConfig::default()).unwrap();
        assert_eq!((report.next_seq, report.truncated), (Some(7), None));
        let more = optional(&mut wal, ENTRY_HEADER, b"entry 4");
        assert_eq!(more.first_seq, 7);
        wal.sync().unwrap();
        drop(wal);
        let (frames, _) = caller_frames_on(storage.clone(), dir).unwrap();
        assert_eq!(frames.last(), Some(&more));
        assert_eq!(frames.len(), written.len() + 1);
    });
}

#[test]
fn an_empty_log_takes_an_optional_frame_once_it_has_a_start() {
    on_real_and_simulated(|storage, dir, _| {
        let (mut wal, _) = Wal::open_on(storage.clone(), dir, WalConfig::default()).unwrap();
        assert!(matches!(
            wal.append_optional(ENTRY_HEADER, b"x"),
            Err(WalError::NoSequence)
        ));
        // A start that nothing was written after is forgotten by a reopen.
        wal.start_at(50).unwrap();
        drop(wal);
        let (mut wal, report) = Wal::open_on(storage.clone(), dir, WalConfig::default()).unwrap();
        assert_eq!(report.next_seq, None);

        wal.start_at(10).unwrap();
        wal.start_at(10).unwrap();
        assert!(matches!(
            wal.start_at(11),
            Err(WalError::OutOfOrder {
                expected: 10,
                first_seq: 11
            })
        ));
        assert!(matches!(
            wal.append(11, 11, b"x"),
            Err(WalError::OutOfOrder { expected: 10, .. })
        ));
        let first = optional(&mut wal, ENTRY_HEADER, b"first entry, no records");
        assert_eq!(first.first_seq, 10);
        assert_eq!(
            first.position,
            FramePosition {
                segment: 1,
                offset: SEGMENT_HEADER_BYTES as u64
            }
        );
        let second = records(&mut wal, 10, 12, 5);
        wal.sync().unwrap();
        drop(wal);

        let reader = WalReader::open_on(storage.clone(), dir).unwrap();
        assert_eq!(reader.first_seq(), Some(10));
        assert_eq!(
            caller_frames_on(storage.clone(), dir).unwrap().0,
            [first, second]
        );
        let (_wal, report) = Wal::open_on(storage.clone(), dir, WalConfig::default()).unwrap();
        assert_eq!(report.next_seq, Some(13));
    });
}

#[test]
fn kinds_that_are_not_the_callers_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    wal.append(1, 1, b"a").unwrap();
    let bytes = wal.appended_bytes();
    for kind in [0_u8, 1, 2, 0x7F, FrameKind::DURABLE_MARK_BYTE] {
        assert!(
            matches!(
                wal.append_optional(kind, b"x"),
                Err(WalError::InvalidFrameKind { kind: k, .. }) if k == kind
            ),
            "{kind:#x}"
        );
    }
    let too_large = vec![0_u8; ledger_wal::FRAME_PAYLOAD_BYTES_MAX + 1];
    assert!(matches!(
        wal.append_optional(ENTRY_HEADER, &too_large),
        Err(WalError::PayloadTooLarge { .. })
    ));
    assert_eq!(wal.appended_bytes(), bytes);
    wal.append_optional(ENTRY_HEADER, b"still usable").unwrap();
    wal.append(2, 2, b"b").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let report = ledger_wal::verify(dir.path()).unwrap();
    assert_eq!((report.frames, report.next_seq), (2, Some(3)));
}

/// Entries of a Raft-like log: an optional header frame, then 0-3 records frames.
fn write_entries(wal: &mut Wal, entries: usize) -> Vec<Vec<Seen>> {
    let mut out = Vec::new();
    let mut seq = wal.next_seq().unwrap_or(1);
    for e in 0..entries {
        let mut entry = vec![optional(wal, ENTRY_HEADER, &payload(e as u64, 30 + e % 50))];
        for r in 0..e % 4 {
            let count = 1 + (r as u64 % 2);
            entry.push(records(wal, seq, seq + count - 1, 20 + (e * 37 + r) % 200));
            seq += count;
        }
        if e % 5 == 0 {
            wal.sync().unwrap();
        }
        out.push(entry);
    }
    wal.sync().unwrap();
    out
}

#[test]
fn optional_frames_open_segments_and_segment_ranges_stay_right() {
    on_real_and_simulated(|storage, dir, _| {
        let cfg = WalConfig::default().with_segment_bytes_max(600);
        let (mut wal, _) = Wal::open_on(storage.clone(), dir, cfg).unwrap();
        wal.start_at(1).unwrap();
        let entries = write_entries(&mut wal, 40);
        let all: Vec<Seen> = entries.iter().flatten().cloned().collect();
        let segments = wal.segments();
        assert!(segments.len() > 5, "{segments:?}");
        // Every segment's header starts at its first frame's sequence, whatever its kind,
        // and its range ends where the next one starts.
        let mut opened_by_optional = 0;
        for (i, seg) in segments.iter().enumerate() {
            let first = all
                .iter()
                .find(|f| f.position.segment == seg.number)
                .unwrap();
            assert_eq!(first.position.offset, SEGMENT_HEADER_BYTES as u64);
            assert_eq!(seg.first_seq, first.first_seq);
            if first.kind != FrameKind::Records {
                opened_by_optional += 1;
            }
            let records_in: u64 = all
                .iter()
                .filter(|f| f.position.segment == seg.number)
                .map(|f| u64::from(f.record_count))
                .sum();
            assert_eq!(seg.next_seq - seg.first_seq, records_in);
            assert_eq!(seg.last_seq().is_none(), records_in == 0);
            if let Some(next) = segments.get(i + 1) {
                assert_eq!(seg.next_seq, next.first_seq);
            }
        }
        assert!(opened_by_optional > 0);
        drop(wal);

        let reader = WalReader::open_on(storage.clone(), dir).unwrap();
        assert_eq!(reader.segments().unwrap(), segments);
        assert_eq!(caller_frames_on(storage.clone(), dir).unwrap().0, all);
        let (mut wal, report) = Wal::open_on(storage.clone(), dir, cfg).unwrap();
        assert_eq!(report.next_seq, segments.last().map(|s| s.next_seq));
        assert_eq!(wal.segments(), segments);

        // Retention by position keeps every frame from the position on; by sequence, an
        // entry header that ends a segment goes with it.
        let keep = &entries[20][0];
        let removed = wal.remove_segments_before(keep.position.segment).unwrap();
        assert_eq!(
            removed.last().map(|s| s.number + 1),
            Some(keep.position.segment)
        );
        let (frames, _) = caller_frames_on(storage.clone(), dir).unwrap();
        let from = all
            .iter()
            .position(|f| f.position.segment == keep.position.segment)
            .unwrap();
        assert_eq!(frames, all[from..]);
    });
}

#[test]
fn a_cursor_across_segments_reads_each_entry_wherever_rotation_put_it() {
    on_real_and_simulated(|storage, dir, _| {
        let cfg = WalConfig::default().with_segment_bytes_max(500);
        let (mut wal, _) = Wal::open_on(storage.clone(), dir, cfg).unwrap();
        wal.start_at(1).unwrap();
        let entries = write_entries(&mut wal, 30);
        let all: Vec<Seen> = entries.iter().flatten().cloned().collect();
        let mut split = 0;
        for (i, entry) in entries.iter().enumerate() {
            let header = &entry[0];
            let from = all.iter().position(|f| f == header).unwrap();
            // To the end of the log, across every later segment.
            assert_eq!(cursor_frames(&storage, dir, header, true), all[from..]);
            // Read the entry: its header, then frames up to the next header.
            let mut cursor = FrameCursor::open_across(
                storage.clone(),
                dir,
                header.position,
                header.first_seq,
                Vec::new(),
            )
            .unwrap();
            let mut read = Vec::new();
            while let Some(f) = cursor.next_frame().unwrap() {
                if f.kind == FrameKind::Optional(ENTRY_HEADER) && !read.is_empty() {
                    break;
                }
                if f.kind != FrameKind::Optional(FrameKind::DURABLE_MARK_BYTE) {
                    read.push((f.segment, f.first_seq, f.payload.to_vec()));
                }
            }
            let expected: Vec<_> = entry
                .iter()
                .map(|f| (f.position.segment, f.first_seq, f.payload.clone()))
                .collect();
            assert_eq!(read, expected, "entry {i}");
            if entry
                .iter()
                .any(|f| f.position.segment != header.position.segment)
            {
                split += 1;
            }
            // The plain cursor stops at the end of the segment.
            let in_segment: Vec<Seen> = all[from..]
                .iter()
                .filter(|f| f.position.segment == header.position.segment)
                .cloned()
                .collect();
            assert_eq!(cursor_frames(&storage, dir, header, false), in_segment);
        }
        assert!(split > 0, "some entry spans two segments");
    });
}

#[test]
fn a_cursor_across_segments_refuses_a_sequence_gap_between_them() {
    let dir = tempfile::tempdir().unwrap();
    // Segment 1 ends at sequence 3, segment 2 claims to start at 5.
    let seg1 = fuzzing::build_segment(1, 1, 5, &[b"a", b"b"]);
    let seg2 = fuzzing::build_segment(2, 5, 6, &[b"c"]);
    std::fs::write(dir.path().join(ledger_wal::segment_file_name(1)), &seg1).unwrap();
    std::fs::write(dir.path().join(ledger_wal::segment_file_name(2)), &seg2).unwrap();
    let at = FramePosition {
        segment: 1,
        offset: SEGMENT_HEADER_BYTES as u64,
    };
    let mut cursor =
        FrameCursor::open_across(ledger_storage::real(), dir.path(), at, 1, Vec::new()).unwrap();
    assert!(cursor.next_frame().unwrap().is_some());
    assert!(cursor.next_frame().unwrap().is_some());
    assert!(matches!(
        cursor.next_frame(),
        Err(WalError::SequenceGap {
            expected: 4,
            found: 5,
            offset: 0,
            ..
        })
    ));
}

/// Only a durable mark (kind 0x80) after damage proves the damage was synced: a caller's
/// optional frame there is a write like any other, so the damage is a torn tail.
#[test]
fn a_callers_optional_frame_after_damage_is_not_a_durable_mark() {
    for (after, corrupt) in [
        (raw_frame(1, ENTRY_HEADER, 0, 3, 5, b"entry"), false),
        (raw_durable_mark(3, 5), true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = fuzzing::build_segment(1, 1, 5, &[b"first"]);
        let damaged = seg.len();
        seg.extend_from_slice(&raw_frame(1, 1, 1, 2, 5, b"second"));
        seg.extend_from_slice(&after);
        seg[damaged + 41] ^= 1;
        std::fs::write(dir.path().join(ledger_wal::segment_file_name(1)), &seg).unwrap();
        match Wal::open(dir.path(), WalConfig::default()) {
            Ok((_, report)) => {
                assert!(!corrupt);
                assert_eq!(report.truncated.map(|t| t.offset), Some(damaged as u64));
                assert_eq!(report.next_seq, Some(2));
            }
            Err(e) => {
                assert!(corrupt, "{e}");
                assert!(matches!(e, WalError::CorruptFrame { .. }), "{e}");
            }
        }
    }
}
