//! `Wal::truncate`: cutting the log at a frame position, in the middle of a segment, at a
//! segment's first frame, across segments; appending after it; what a reopen, a power loss
//! or a crash in the middle of it leaves; positions it refuses; and a model check.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Seen, caller_frames_on, on_real_and_simulated, payload};
use ledger_storage::Storage;
use ledger_storage::sim::{Fault, Restart, SimDisk};
use ledger_wal::{
    FrameKind, FramePosition, SEGMENT_HEADER_BYTES, SegmentEnd, Wal, WalConfig, WalError,
    WalReader, verify_on,
};
use proptest::prelude::*;

const ENTRY_HEADER: u8 = 0x81;
const HEADER: u64 = SEGMENT_HEADER_BYTES as u64;

fn small_segments() -> WalConfig {
    WalConfig::default().with_segment_bytes_max(700)
}

/// Appends records `first..=last` (payload from `seed`) and returns the frame as a reader
/// should see it.
fn records(wal: &mut Wal, first: u64, last: u64, seed: u64, len: usize) -> Seen {
    let p = payload(seed, len);
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

/// `n` frames continuing the log: a header frame, then two records frames, repeated.
/// Payloads derive from `seed`, so frames written again after a cut differ from the
/// ones cut.
fn append_frames(wal: &mut Wal, n: usize, seed: u64) -> Vec<Seen> {
    let mut out = Vec::new();
    for i in 0..n {
        let s = seed * 1000 + i as u64;
        let frame = if i % 3 == 0 {
            optional(wal, ENTRY_HEADER, &payload(s, 10 + i % 30))
        } else {
            let first = wal.next_seq().unwrap();
            records(wal, first, first + (i as u64 % 2), s, 40 + (i * 13) % 150)
        };
        out.push(frame);
    }
    out
}

/// The sequence a log whose caller frames are `frames` continues at.
fn next_seq_after(frames: &[Seen], start: u64) -> u64 {
    frames
        .last()
        .map_or(start, |f| f.first_seq + u64::from(f.record_count))
}

/// Opens the log, writes `n` frames from sequence 1, syncs.
fn build(storage: &Arc<dyn Storage>, dir: &Path, cfg: WalConfig, n: usize) -> (Wal, Vec<Seen>) {
    let (mut wal, _) = Wal::open_on(storage.clone(), dir, cfg).unwrap();
    wal.start_at(1).unwrap();
    let frames = append_frames(&mut wal, n, 1);
    wal.sync().unwrap();
    (wal, frames)
}

fn frames_on(storage: &Arc<dyn Storage>, dir: &Path) -> Vec<Seen> {
    caller_frames_on(storage.clone(), dir).unwrap().0
}

/// Truncates at `frames[i]`, appends `more` frames, syncs, reopens: exactly the frames
/// before the cut and the new ones remain, sequences continuing from the cut.
fn cut_append_reopen(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    mut wal: Wal,
    frames: &[Seen],
    i: usize,
) {
    let cfg = small_segments();
    let at = &frames[i];
    let truncated = wal.truncate(at.position).unwrap();
    assert_eq!(truncated.next_seq, at.first_seq);
    assert_eq!(wal.next_seq(), Some(at.first_seq));
    assert_eq!(wal.durable().next_seq, Some(at.first_seq));
    let later: Vec<u64> = frames[i..]
        .iter()
        .map(|f| f.position.segment)
        .filter(|&s| s > at.position.segment)
        .collect();
    assert_eq!(
        truncated.removed_segments.len(),
        later
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    // The cut is what a reader sees at once.
    assert_eq!(frames_on(storage, dir), frames[..i]);
    assert!(matches!(
        wal.append(at.first_seq + 1, at.first_seq + 1, b"x"),
        Err(WalError::OutOfOrder { .. })
    ));

    let new = append_frames(&mut wal, 12, 2);
    assert_eq!(new[0].first_seq, at.first_seq);
    assert_eq!(new[0].position.segment, at.position.segment);
    wal.sync().unwrap();
    let expected: Vec<Seen> = frames[..i].iter().chain(&new).cloned().collect();
    assert_eq!(frames_on(storage, dir), expected);
    let segments = wal.segments();
    drop(wal);

    let report = verify_on(storage.clone(), dir).unwrap();
    assert!(matches!(report.end, Some(SegmentEnd::Clean { .. })));
    let (mut wal, report) = Wal::open_on(storage.clone(), dir, cfg).unwrap();
    assert_eq!(report.truncated, None);
    assert_eq!(report.next_seq, Some(next_seq_after(&expected, 1)));
    assert_eq!(wal.segments(), segments);
    assert_eq!(
        WalReader::open_on(storage.clone(), dir)
            .unwrap()
            .segments()
            .unwrap(),
        segments
    );
    let last = append_frames(&mut wal, 2, 3);
    wal.sync().unwrap();
    drop(wal);
    let all: Vec<Seen> = expected.into_iter().chain(last).collect();
    assert_eq!(frames_on(storage, dir), all);
}

#[test]
fn truncate_in_the_middle_of_a_segment() {
    on_real_and_simulated(|storage, dir, _| {
        let (wal, frames) = build(&storage, dir, small_segments(), 30);
        let last_segment = frames.last().unwrap().position.segment;
        // A frame of an older segment that is neither its first nor its last.
        let i = (1..frames.len() - 1)
            .find(|&i| {
                let p = frames[i].position;
                p.offset > HEADER
                    && p.segment < last_segment
                    && frames[i + 1].position.segment == p.segment
            })
            .unwrap();
        cut_append_reopen(&storage, dir, wal, &frames, i);
    });
}

#[test]
fn truncate_in_the_segment_being_written_including_unsynced_frames() {
    on_real_and_simulated(|storage, dir, _| {
        let (mut wal, mut frames) = build(&storage, dir, small_segments(), 10);
        let synced = frames.len();
        // Unsynced frames until the segment being written holds two of them.
        let i = loop {
            frames.extend(append_frames(&mut wal, 1, 4 + frames.len() as u64));
            let last = frames.last().unwrap().position;
            let second_last = frames[frames.len() - 2].position;
            if frames.len() - synced >= 2 && second_last.segment == last.segment {
                break frames.len() - 2;
            }
        };
        cut_append_reopen(&storage, dir, wal, &frames, i);
    });
}

#[test]
fn truncate_at_a_segments_first_frame_leaves_it_empty() {
    on_real_and_simulated(|storage, dir, _| {
        let (wal, frames) = build(&storage, dir, small_segments(), 30);
        let i = frames
            .iter()
            .position(|f| f.position.segment == 3 && f.position.offset == HEADER)
            .unwrap();
        let mut wal = wal;
        let truncated = wal.truncate(frames[i].position).unwrap();
        assert!(!truncated.removed_segments.is_empty());
        let segments = wal.segments();
        assert_eq!(segments.len(), 3);
        assert_eq!(
            (segments[2].first_seq, segments[2].next_seq),
            (frames[i].first_seq, frames[i].first_seq)
        );
        drop(wal);
        // The empty segment is a valid end of the log.
        let (wal, report) = Wal::open_on(storage.clone(), dir, small_segments()).unwrap();
        assert_eq!(report.next_seq, Some(frames[i].first_seq));
        assert_eq!(frames_on(&storage, dir), frames[..i]);
        cut_append_reopen_at_end(&storage, dir, wal, &frames[..i]);
    });
}

/// Appends after a log of `frames` and reopens.
fn cut_append_reopen_at_end(storage: &Arc<dyn Storage>, dir: &Path, mut wal: Wal, frames: &[Seen]) {
    let new = append_frames(&mut wal, 20, 5);
    wal.sync().unwrap();
    drop(wal);
    let (_wal, report) = Wal::open_on(storage.clone(), dir, small_segments()).unwrap();
    let expected: Vec<Seen> = frames.iter().chain(&new).cloned().collect();
    assert_eq!(report.next_seq, Some(next_seq_after(&expected, 1)));
    assert_eq!(frames_on(storage, dir), expected);
}

#[test]
fn truncate_across_several_segments_then_appends_rotate_again() {
    on_real_and_simulated(|storage, dir, _| {
        let (wal, frames) = build(&storage, dir, small_segments(), 60);
        let last_segment = frames.last().unwrap().position.segment;
        assert!(last_segment >= 6);
        // In the first segment: every later one goes, and appends reuse their numbers.
        let i = 2;
        assert_eq!(frames[i].position.segment, 1);
        cut_append_reopen(&storage, dir, wal, &frames, i);
        // The very first frame: the log keeps its first segment, empty.
        let frames = frames_on(&storage, dir);
        let (mut wal, _) = Wal::open_on(storage.clone(), dir, small_segments()).unwrap();
        wal.truncate(frames[0].position).unwrap();
        assert_eq!(wal.next_seq(), Some(1));
        assert_eq!(wal.segments().len(), 1);
        cut_append_reopen_at_end(&storage, dir, wal, &[]);
    });
}

#[test]
fn truncate_at_a_durable_mark_or_at_an_optional_frame() {
    on_real_and_simulated(|storage, dir, _| {
        let (mut wal, _) = Wal::open_on(storage.clone(), dir, WalConfig::default()).unwrap();
        let a = records(&mut wal, 1, 2, 1, 10);
        let durable = wal.sync().unwrap();
        // The sync wrote a mark at the durable end.
        let mark = FramePosition {
            segment: durable.segment,
            offset: durable.offset,
        };
        let b = optional(&mut wal, ENTRY_HEADER, b"entry");
        assert_eq!(b.position.offset, mark.offset + 40);
        let c = records(&mut wal, 3, 3, 2, 10);
        wal.truncate(b.position).unwrap();
        assert_eq!(frames_on(&storage, dir), std::slice::from_ref(&a));
        assert_eq!(wal.next_seq(), Some(3));
        wal.truncate(mark).unwrap();
        assert_eq!(wal.next_seq(), Some(3));
        let c2 = records(&mut wal, 3, 3, 3, 11);
        assert_ne!(c2, c);
        wal.sync().unwrap();
        drop(wal);
        assert_eq!(frames_on(&storage, dir), [a, c2]);
    });
}

#[test]
fn an_invalid_position_is_refused_and_changes_nothing() {
    on_real_and_simulated(|storage, dir, disk| {
        let (mut wal, frames) = build(&storage, dir, small_segments(), 30);
        let unsynced = append_frames(&mut wal, 1, 6);
        let mut frames = frames;
        frames.extend(unsynced);
        let end = wal.segments();
        let last = frames.last().unwrap();
        let log_end = last.position.offset + 40 + last.payload.len() as u64;
        let first = frames[0].position;
        let inside = frames[4].position;
        let snapshot = |disk: Option<&SimDisk>| match disk {
            None => common::segment_files(dir)
                .iter()
                .map(|p| std::fs::read(p).unwrap())
                .collect::<Vec<_>>(),
            Some(disk) => wal_files(disk, dir),
        };
        let before = snapshot(disk);
        let bad = [
            FramePosition {
                segment: 0,
                offset: HEADER,
            },
            FramePosition {
                segment: end.last().unwrap().number + 1,
                offset: HEADER,
            },
            FramePosition {
                segment: 1,
                offset: 0,
            },
            FramePosition {
                segment: 1,
                offset: HEADER - 1,
            },
            FramePosition {
                offset: inside.offset + 1,
                ..inside
            },
            FramePosition {
                offset: inside.offset + 40,
                ..inside
            },
            FramePosition {
                offset: log_end,
                ..last.position
            },
            FramePosition {
                offset: log_end + 4096,
                ..last.position
            },
            FramePosition {
                offset: u64::MAX,
                ..first
            },
        ];
        for at in bad {
            match wal.truncate(at) {
                Err(WalError::InvalidPosition {
                    segment, offset, ..
                }) => {
                    assert_eq!((segment, offset), (at.segment, at.offset));
                }
                other => panic!("{at:?}: {other:?}"),
            }
            assert_eq!(snapshot(disk), before, "{at:?}");
            assert_eq!(wal.segments(), end);
        }
        // Still usable, nothing lost.
        let more = append_frames(&mut wal, 2, 7);
        wal.sync().unwrap();
        // A segment retention removed is no longer a place to cut.
        let removed = wal.remove_segments_before(2).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(matches!(
            wal.truncate(first),
            Err(WalError::InvalidPosition { .. })
        ));
        drop(wal);
        let kept: Vec<Seen> = frames
            .into_iter()
            .chain(more)
            .filter(|f| f.position.segment >= 2)
            .collect();
        assert_eq!(frames_on(&storage, dir), kept);
    });
}

/// The bytes of every segment file in `dir` as the (simulated) page cache has them.
fn wal_files(disk: &SimDisk, dir: &Path) -> Vec<Vec<u8>> {
    let storage = disk.storage();
    storage
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .map(|n| {
            let file = storage
                .open(&dir.join(n), ledger_storage::OpenMode::Read)
                .unwrap();
            let mut buf = vec![0; usize::try_from(file.size().unwrap()).unwrap()];
            ledger_storage::read_full_at(file.as_ref(), &mut buf, 0).unwrap();
            buf
        })
        .collect()
}

const DIR: &str = "/wal";

#[test]
fn a_truncate_that_returned_survives_a_power_loss() {
    for seed in 0..40 {
        let disk = SimDisk::new(seed);
        let storage = disk.storage();
        let (mut wal, frames) = build(&storage, Path::new(DIR), small_segments(), 40);
        // Some frames appended after the last sync: cut or not, never acknowledged.
        let mut frames = frames;
        frames.extend(append_frames(
            &mut wal,
            usize::try_from(seed % 4).unwrap(),
            8,
        ));
        let i = usize::try_from(seed * 7 % 40).unwrap();
        wal.truncate(frames[i].position).unwrap();
        drop(wal);
        disk.restart(Restart::PowerLoss);
        let storage = disk.storage();
        let (mut wal, report) = Wal::open_on(storage.clone(), DIR, small_segments()).unwrap();
        assert_eq!(
            frames_on(&storage, Path::new(DIR)),
            frames[..i],
            "seed {seed}"
        );
        assert_eq!(report.next_seq, Some(frames[i].first_seq), "seed {seed}");

        // Appends after the cut, synced or not, then a power loss: a prefix of them
        // survives (all if synced), never a frame that was cut.
        let new = append_frames(&mut wal, 15, 9);
        let synced = seed % 2 == 0;
        if synced {
            wal.sync().unwrap();
        }
        drop(wal);
        disk.restart(Restart::PowerLoss);
        let storage = disk.storage();
        let (_wal, _) = Wal::open_on(storage.clone(), DIR, small_segments()).unwrap();
        let got = frames_on(&storage, Path::new(DIR));
        let expected: Vec<Seen> = frames[..i].iter().chain(&new).cloned().collect();
        assert!(expected.starts_with(&got), "seed {seed}");
        assert!(
            got.len() >= if synced { expected.len() } else { i },
            "seed {seed}"
        );
    }
}

#[test]
fn a_crash_at_any_step_of_a_truncate_leaves_the_log_or_a_prefix_of_it() {
    let mut completed = false;
    for k in 0..200_u64 {
        let disk = SimDisk::new(k);
        let storage = disk.storage();
        let (mut wal, frames) = build(&storage, Path::new(DIR), small_segments(), 40);
        let segments = wal.segments().len();
        let i = 5;
        assert!(frames[i].position.segment + 3 < segments as u64);
        disk.halt_at(disk.stats().steps + k);
        let result = wal.truncate(frames[i].position);
        drop(wal);
        disk.restart(if k % 2 == 0 {
            Restart::PowerLoss
        } else {
            Restart::Crash
        });
        let storage = disk.storage();
        let (mut wal, report) = Wal::open_on(storage.clone(), DIR, small_segments())
            .unwrap_or_else(|e| panic!("step {k}: {e}"));
        let got = frames_on(&storage, Path::new(DIR));
        assert!(frames.starts_with(&got), "step {k}");
        assert!(
            got.len() >= i,
            "step {k}: synced frames before the cut were lost"
        );
        assert_eq!(report.next_seq, Some(next_seq_after(&got, 1)), "step {k}");
        // Whatever is left, the writer continues it.
        let new = append_frames(&mut wal, 3, 10);
        wal.sync().unwrap();
        drop(wal);
        let all: Vec<Seen> = got.iter().chain(&new).cloned().collect();
        assert_eq!(frames_on(&storage, Path::new(DIR)), all, "step {k}");
        if result.is_ok() {
            assert_eq!(
                got.len(),
                i,
                "step {k}: a truncate that returned is durable"
            );
            completed = true;
            break;
        }
    }
    assert!(completed, "the truncate finished within the steps tried");
}

#[test]
fn a_failed_call_in_a_truncate_poisons_and_a_reopen_finds_the_log_or_a_prefix_of_it() {
    let mut completed = false;
    for k in 0..200_u64 {
        let disk = SimDisk::new(k);
        let storage = disk.storage();
        let (mut wal, frames) = build(&storage, Path::new(DIR), small_segments(), 40);
        let i = 5;
        disk.fail_at(disk.stats().steps + k, Fault::Io);
        let result = wal.truncate(frames[i].position);
        // A fault armed past the truncate's last call is not this test's.
        disk.clear_faults();
        if result.is_ok() {
            completed = true;
        } else {
            assert!(matches!(
                wal.append(1, 1, b"x"),
                Err(WalError::Poisoned | WalError::OutOfOrder { .. })
            ));
        }
        drop(wal);
        // In the same process: what the reopen reads is the disk's, not the page cache's.
        let (wal, report) = Wal::open_on(storage.clone(), DIR, small_segments())
            .unwrap_or_else(|e| panic!("step {k}: {e}"));
        let got = frames_on(&storage, Path::new(DIR));
        assert!(frames.starts_with(&got), "step {k}");
        assert!(got.len() >= i, "step {k}");
        assert_eq!(report.next_seq, Some(next_seq_after(&got, 1)), "step {k}");
        if result.is_ok() {
            assert_eq!(got.len(), i, "step {k}");
        }
        // What the reopen reported is durable.
        drop(wal);
        disk.restart(Restart::PowerLoss);
        let storage = disk.storage();
        let (_wal, _) = Wal::open_on(storage.clone(), DIR, small_segments()).unwrap();
        assert_eq!(frames_on(&storage, Path::new(DIR)), got, "step {k}");
        if completed {
            break;
        }
    }
    assert!(completed, "the truncate finished within the steps tried");
}

/// One step of the model check.
#[derive(Debug, Clone)]
enum Op {
    Records {
        count: u64,
        len: usize,
    },
    Optional {
        kind: u8,
        len: usize,
    },
    Sync,
    /// At the frame this index picks among the caller's frames.
    Truncate(prop::sample::Index),
    /// Reopen (after a power loss, on the simulated disk).
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1_u64..4, 0_usize..400).prop_map(|(count, len)| Op::Records { count, len }),
        3 => (0x81_u8..=0xFF, 0_usize..400).prop_map(|(kind, len)| Op::Optional { kind, len }),
        2 => Just(Op::Sync),
        1 => any::<prop::sample::Index>().prop_map(Op::Truncate),
        1 => Just(Op::Restart),
    ]
}

fn model_config() -> WalConfig {
    // Small segments (rotation), and padding on frames from 256 bytes.
    WalConfig::default()
        .with_segment_bytes_max(1024)
        .with_align_frames_min_bytes(256)
        .with_frame_align_bytes(512)
}

/// Runs `ops`, comparing the log with a model: the caller's frames in order with their
/// positions, and how many of them are durable (a sync, a truncate or a recovery makes
/// all of them so). A restart on the simulated disk is a power loss: what survives is a
/// prefix of the model at least as long as its durable part.
fn check_model(storage: Arc<dyn Storage>, dir: &Path, disk: Option<&SimDisk>, ops: &[Op]) {
    let open = |storage: &Arc<dyn Storage>| {
        let (mut wal, _) = Wal::open_on(storage.clone(), dir, model_config()).unwrap();
        if wal.next_seq().is_none() {
            wal.start_at(1).unwrap();
        }
        wal
    };
    let mut storage = storage;
    let mut wal = open(&storage);
    let mut model: Vec<Seen> = Vec::new();
    let mut durable = 0;
    for (step, op) in ops.iter().enumerate() {
        let seed = step as u64;
        match op {
            Op::Records { count, len } => {
                let first = wal.next_seq().unwrap();
                model.push(records(&mut wal, first, first + count - 1, seed, *len));
            }
            Op::Optional { kind, len } => {
                model.push(optional(&mut wal, *kind, &payload(seed, *len)));
            }
            Op::Sync => {
                wal.sync().unwrap();
                durable = model.len();
            }
            Op::Truncate(index) => {
                if model.is_empty() {
                    continue;
                }
                let i = index.index(model.len());
                let truncated = wal.truncate(model[i].position).unwrap();
                assert_eq!(truncated.next_seq, model[i].first_seq);
                model.truncate(i);
                durable = i;
            }
            Op::Restart => {
                drop(wal);
                if let Some(disk) = disk {
                    disk.restart(Restart::PowerLoss);
                    storage = disk.storage();
                }
                wal = open(&storage);
                let got = frames_on(&storage, dir);
                assert!(model.starts_with(&got), "step {step}");
                assert!(got.len() >= durable, "step {step}: durable frames lost");
                if disk.is_none() {
                    assert_eq!(got.len(), model.len(), "step {step}");
                }
                model = got;
                durable = model.len();
            }
        }
        assert_eq!(
            wal.next_seq(),
            Some(next_seq_after(&model, 1)),
            "step {step}"
        );
    }
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(frames_on(&storage, dir), model);
    let wal = open(&storage);
    assert_eq!(wal.next_seq(), Some(next_seq_after(&model, 1)));
    drop(wal);
    let report = verify_on(storage.clone(), dir).unwrap();
    let records = model
        .iter()
        .filter(|f| f.kind == FrameKind::Records)
        .count();
    assert_eq!(report.frames, records as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn appends_syncs_truncates_and_power_losses_match_a_model(
        seed in 0_u64..1000,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let disk = SimDisk::new(seed);
        check_model(disk.storage(), Path::new(DIR), Some(&disk), &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn appends_syncs_truncates_and_reopens_on_real_files_match_a_model(
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let dir = tempfile::tempdir().unwrap();
        check_model(ledger_storage::real(), dir.path(), None, &ops);
    }
}
