//! Random batches of random payloads, written (with syncs and reopenings in between),
//! read back equal.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::{Owned, read_all};
use ledger_wal::{CleanEnd, SEGMENT_BYTES_MIN, SegmentEnd, Wal, WalConfig, WalReader, verify};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Batch {
    count: u32,
    payload: Vec<u8>,
    sync_after: bool,
    reopen_after: bool,
    use_closure: bool,
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        1_u32..5,
        prop::collection::vec(any::<u8>(), 0..400),
        any::<bool>(),
        prop::bool::weighted(0.1),
        any::<bool>(),
    )
        .prop_map(
            |(count, payload, sync_after, reopen_after, use_closure)| Batch {
                count,
                payload,
                sync_after,
                reopen_after,
                use_closure,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn written_batches_read_back_equal(
        batches in prop::collection::vec(batch(), 1..30),
        start in 0_u64..1_000_000,
        segment_bytes_max in prop::sample::select(vec![SEGMENT_BYTES_MIN, 600, 4096, 1 << 20]),
        preallocate in any::<bool>(),
        align_frames_min_bytes in prop::sample::select(vec![0, 300, u64::MAX]),
        overlap_checksum_min_bytes in prop::sample::select(vec![0, 200, u64::MAX]),
        frame_align_bytes in prop::sample::select(vec![512_u64, 4096]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WalConfig::default()
            .with_segment_bytes_max(segment_bytes_max)
            .with_preallocate(preallocate)
            .with_align_frames_min_bytes(align_frames_min_bytes)
            .with_overlap_checksum_min_bytes(overlap_checksum_min_bytes)
            .with_frame_align_bytes(frame_align_bytes);
        let (mut wal, report) = Wal::open(dir.path(), cfg).unwrap();
        prop_assert_eq!(report.next_seq, None);
        let mut expected: Vec<Owned> = Vec::new();
        let mut seq = start;
        for b in &batches {
            let last = seq + u64::from(b.count) - 1;
            if b.use_closure {
                let n = wal.append_with(seq, last, |buf| {
                    prop_assert!(buf.is_empty());
                    buf.extend_from_slice(&b.payload);
                    Ok(buf.len())
                }).unwrap()?;
                prop_assert_eq!(n, b.payload.len());
            } else {
                wal.append(seq, last, &b.payload).unwrap();
            }
            expected.push((seq, b.count, b.payload.clone()));
            seq = last + 1;
            if b.sync_after || b.reopen_after {
                let durable = wal.sync().unwrap();
                prop_assert_eq!(durable.last_seq(), Some(last));
            }
            if b.reopen_after {
                drop(wal);
                let (w, report) = Wal::open(dir.path(), cfg).unwrap();
                prop_assert_eq!(&report.truncated, &None);
                prop_assert_eq!(report.next_seq, Some(seq));
                wal = w;
            }
        }
        wal.sync().unwrap();
        let segments = wal.segments();
        drop(wal);

        // Reopen: nothing to repair, resumes after the last record.
        let (wal, report) = Wal::open(dir.path(), cfg).unwrap();
        prop_assert_eq!(&report.truncated, &None);
        prop_assert_eq!(report.next_seq, Some(seq));
        prop_assert_eq!(report.last_seq(), Some(seq - 1));
        let expected_end = if preallocate { CleanEnd::ZeroFill } else { CleanEnd::EndOfFile };
        match report.end {
            Some(SegmentEnd::Clean { how, .. }) => {
                // A segment filled exactly to its size ends at the end of the file.
                prop_assert!(how == expected_end || how == CleanEnd::EndOfFile);
            }
            other => prop_assert!(false, "unexpected end {:?}", other),
        }
        prop_assert_eq!(wal.segments(), segments.clone());
        drop(wal);

        let (frames, _) = read_all(dir.path()).unwrap();
        prop_assert_eq!(&frames, &expected);

        let v = verify(dir.path()).unwrap();
        prop_assert_eq!(v.frames, expected.len() as u64);
        prop_assert_eq!(v.next_seq, Some(seq));
        prop_assert_eq!(v.segments, segments.len());

        // The reader's segment listing agrees with the writer's.
        prop_assert_eq!(WalReader::open(dir.path()).unwrap().segments().unwrap(), segments);

        // Reading from any sequence starts at the frame holding it.
        for probe in [start, start + (seq - start) / 2, seq - 1, seq] {
            let reader = WalReader::open(dir.path()).unwrap();
            let mut it = reader.frames_from(probe).unwrap();
            let want: Vec<&Owned> = expected
                .iter()
                .filter(|(f, c, _)| f + u64::from(*c) > probe)
                .collect();
            let mut got = Vec::new();
            while let Some(f) = it.next_frame().unwrap() {
                if f.kind == ledger_wal::FrameKind::Records {
                    got.push((f.first_seq, f.record_count, f.payload.to_vec()));
                }
            }
            prop_assert_eq!(got.iter().collect::<Vec<_>>(), want);
        }
    }
}

#[test]
fn a_large_frame_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::default().with_segment_bytes_max(4096);
    let (mut wal, _) = Wal::open(dir.path(), cfg).unwrap();
    wal.append(1, 1, &[1; 100]).unwrap();
    wal.append(2, 2, &[2; 10_000]).unwrap();
    wal.append(3, 3, &[3; 100]).unwrap();
    wal.sync().unwrap();
    let segs = wal.segments();
    assert_eq!(segs.len(), 3);
    assert_eq!(
        segs.iter()
            .map(|s| (s.first_seq, s.next_seq))
            .collect::<Vec<_>>(),
        [(1, 2), (2, 3), (3, 4)]
    );
    drop(wal);
    let (frames, _) = read_all(dir.path()).unwrap();
    assert_eq!(frames[1], (2, 1, vec![2; 10_000]));
}

#[test]
fn sync_without_appends_reports_the_same_position() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(wal.sync().unwrap().last_seq(), None);
    wal.append(10, 19, b"x").unwrap();
    let d = wal.sync().unwrap();
    assert_eq!(d.last_seq(), Some(19));
    assert_eq!(wal.sync().unwrap(), d);
    assert_eq!(wal.durable(), d);
    assert_eq!(wal.next_seq(), Some(20));
}
