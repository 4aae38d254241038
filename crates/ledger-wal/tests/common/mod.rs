//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use std::sync::Arc;

use ledger_storage::Storage;
use ledger_storage::sim::SimDisk;
use ledger_wal::{FrameKind, FramePosition, SegmentEnd, WalReader};

/// One frame as read back: (first_seq, record_count, payload).
pub type Owned = (u64, u32, Vec<u8>);

/// Reads every records frame of the log in `dir` (read-only; optional frames such as
/// durable marks are verified and left out) and how it ends.
pub fn read_all(dir: &Path) -> Result<(Vec<Owned>, Option<SegmentEnd>), ledger_wal::WalError> {
    let reader = WalReader::open(dir)?;
    let mut frames = reader.frames();
    let mut out = Vec::new();
    while let Some(f) = frames.next_frame()? {
        if f.kind == FrameKind::Records {
            out.push((f.first_seq, f.record_count, f.payload.to_vec()));
        }
    }
    Ok((out, frames.end()))
}

/// Records frames with their segment number and offset: (segment, offset, first_seq,
/// payload len).
pub fn frame_positions(dir: &Path) -> Vec<(u64, u64, u64, usize)> {
    let reader = WalReader::open(dir).unwrap();
    let mut frames = reader.frames();
    let mut out = Vec::new();
    while let Some(f) = frames.next_frame().unwrap() {
        if f.kind == FrameKind::Records {
            out.push((f.segment, f.offset, f.first_seq, f.payload.len()));
        }
    }
    out
}

/// A frame the caller wrote (records or its own optional kind), as read back or as a
/// model expects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub position: FramePosition,
    pub kind: FrameKind,
    pub first_seq: u64,
    pub record_count: u32,
    pub payload: Vec<u8>,
}

/// Every frame of the log in `dir` on `storage` except durable marks, and how it ends.
pub fn caller_frames_on(
    storage: Arc<dyn Storage>,
    dir: &Path,
) -> Result<(Vec<Seen>, Option<SegmentEnd>), ledger_wal::WalError> {
    let reader = WalReader::open_on(storage, dir)?;
    let mut frames = reader.frames();
    let mut out = Vec::new();
    while let Some(f) = frames.next_frame()? {
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
    Ok((out, frames.end()))
}

/// Runs `test` on the real file system (a temporary directory) and on a simulated disk.
pub fn on_real_and_simulated(test: impl Fn(Arc<dyn Storage>, &Path, Option<&SimDisk>)) {
    let dir = tempfile::tempdir().unwrap();
    test(ledger_storage::real(), dir.path(), None);
    let disk = SimDisk::new(7);
    test(disk.storage(), Path::new("/wal"), Some(&disk));
}

/// A durable mark (kind 0x80, no payload) of the segment with `salt`, before the records
/// starting at `next_seq`, encoded by hand.
pub fn raw_durable_mark(next_seq: u64, salt: u64) -> Vec<u8> {
    raw_frame(1, 0x80, 0, next_seq, salt, b"")
}

/// Copies the segment files of `src` into a fresh directory under `parent`.
pub fn copy_log(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(".seg")) {
            std::fs::copy(entry.path(), dst.join(name)).unwrap();
        }
    }
}

/// The segment files of `dir`, sorted.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// A payload of `len` bytes derived from `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

/// Encodes a frame header by hand, straight from `docs/wal-format.md` (independent of the
/// crate's encoder).
pub fn raw_frame(
    version: u8,
    kind: u8,
    record_count: u32,
    first_seq: u64,
    salt: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = Vec::with_capacity(40 + payload.len());
    h.extend_from_slice(b"RWFR");
    h.push(version);
    h.push(kind);
    h.extend_from_slice(&0_u16.to_le_bytes());
    h.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    h.extend_from_slice(&record_count.to_le_bytes());
    h.extend_from_slice(&first_seq.to_le_bytes());
    h.extend_from_slice(&salt.to_le_bytes());
    h.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(payload);
    h
}

/// The salt stored in a segment file's header.
pub fn salt_of(segment: &Path) -> u64 {
    let bytes = std::fs::read(segment).unwrap();
    u64::from_le_bytes(bytes[32..40].try_into().unwrap())
}
