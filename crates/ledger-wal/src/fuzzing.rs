//! The fuzz harness, as a library function so that the normal test suite (a proptest over
//! random bytes) runs the same checks as `cargo +nightly fuzz run reader` in
//! `crates/ledger-wal/fuzz`.

use std::path::PathBuf;

use crate::format::{FrameHeader, SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::scan::{SegmentEnd, SegmentScan, Step, read_segment_header};
use crate::{FrameKind, WalError};

/// A frame as [`scan_segment_bytes`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFrame {
    /// The frame kind.
    pub kind: FrameKind,
    /// Its first sequence.
    pub first_seq: u64,
    /// Its record count.
    pub record_count: u32,
    /// Offset of its header in the segment.
    pub offset: u64,
    /// Zero bytes after its payload.
    pub padding_bytes: usize,
    /// Its payload (copied).
    pub payload: Vec<u8>,
}

/// Reads `bytes` as one whole segment file with the same code the reader and recovery use
/// (header check, then every frame). `is_last` selects the last-segment rule (a torn
/// tail ends the scan instead of being an error).
///
/// # Errors
/// Whatever the reader would report for these bytes.
pub fn scan_segment_bytes(
    bytes: &[u8],
    is_last: bool,
) -> Result<(SegmentHeader, Vec<ScannedFrame>, SegmentEnd), WalError> {
    let path = PathBuf::from("<memory>");
    let header = read_segment_header(&bytes, &path, None)?;
    let mut scan = SegmentScan::new(bytes, path, header, bytes.len() as u64, is_last, Vec::new());
    let mut frames = Vec::new();
    loop {
        match scan.step()? {
            Step::Frame(meta) => frames.push(ScannedFrame {
                kind: meta.kind,
                first_seq: meta.first_seq,
                record_count: meta.record_count,
                offset: meta.offset,
                padding_bytes: meta.padding_bytes,
                payload: scan.payload(&meta).to_vec(),
            }),
            Step::End(end) => return Ok((header, frames, end)),
        }
    }
}

/// Builds the bytes of a valid segment holding `payloads` as consecutive records frames,
/// each with `1 + i % 3` records, starting at `first_seq`.
#[must_use]
pub fn build_segment(number: u64, first_seq: u64, salt: u64, payloads: &[&[u8]]) -> Vec<u8> {
    build_padded_segment(number, first_seq, salt, payloads, 0)
}

/// As [`build_segment`], each frame followed by `padding_bytes` zeros.
#[must_use]
pub fn build_padded_segment(
    number: u64,
    first_seq: u64,
    salt: u64,
    payloads: &[&[u8]],
    padding_bytes: u16,
) -> Vec<u8> {
    let header = SegmentHeader {
        number,
        first_seq,
        salt,
    };
    let mut out = header.encode().to_vec();
    let mut seq = first_seq;
    for (i, p) in payloads.iter().enumerate() {
        let count = 1 + (i % 3) as u32;
        out.extend_from_slice(&FrameHeader::records(seq, count, salt, p, padding_bytes).encode());
        out.extend_from_slice(p);
        out.resize(out.len() + usize::from(padding_bytes), 0);
        seq = seq.saturating_add(u64::from(count));
    }
    out
}

/// The fuzz target: never panics, and whatever the reader accepts is consistent.
///
/// `data[0]` picks the mode: raw bytes as a segment file; a valid segment header followed
/// by raw bytes; or a valid segment built from `data` and then damaged (bytes XORed,
/// truncated) as `data` says, where every frame the reader returns must equal the frame
/// originally written at that offset (never a silently different payload).
///
/// # Panics
/// When the reader breaks one of those rules: that is the bug the fuzzer looks for.
pub fn check_reader(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check_consistent(rest),
        1 => {
            let mut bytes = SegmentHeader {
                number: 1,
                first_seq: 1,
                salt: 7,
            }
            .encode()
            .to_vec();
            bytes.extend_from_slice(rest);
            check_consistent(&bytes);
        }
        _ => check_damaged(rest),
    }
}

fn check_consistent(bytes: &[u8]) {
    for is_last in [true, false] {
        if let Ok((header, frames, end)) = scan_segment_bytes(bytes, is_last) {
            let mut seq = header.first_seq;
            let mut offset = SEGMENT_HEADER_BYTES as u64;
            for f in &frames {
                assert_eq!(f.first_seq, seq, "frames are contiguous");
                assert_eq!(f.offset, offset, "frames are adjacent");
                offset += (crate::FRAME_HEADER_BYTES + f.payload.len() + f.padding_bytes) as u64;
                seq += u64::from(f.record_count);
            }
            assert_eq!(end.offset(), offset, "the end is after the last frame");
            assert!(end.offset() <= bytes.len() as u64);
            if !is_last {
                assert!(!matches!(end, SegmentEnd::Torn { .. }));
            }
        }
    }
}

fn check_damaged(data: &[u8]) {
    // Split: up to 8 payloads from the front, mutations from the back.
    let (body, muts) = data.split_at(data.len() - data.len().min(16));
    let chunks: Vec<&[u8]> = body.chunks(body.len() / 4 + 1).take(8).collect();
    let padding = u16::try_from(body.len() % 37).unwrap_or(0);
    let original = build_padded_segment(3, 100, 0xABCD, &chunks, padding);
    let mut damaged = original.clone();
    let mut it = muts.chunks_exact(3);
    for m in it.by_ref() {
        let (Some(&a), Some(&b), Some(&x)) = (m.first(), m.get(1), m.get(2)) else {
            continue;
        };
        let at = usize::from(u16::from_le_bytes([a, b])) % damaged.len().max(1);
        if let Some(byte) = damaged.get_mut(at) {
            *byte ^= x;
        }
    }
    if let Some(&cut) = it.remainder().first() {
        let keep = damaged.len() - usize::from(cut) % damaged.len().max(1) / 2;
        damaged.truncate(keep);
    }
    let Ok((_, expected, _)) = scan_segment_bytes(&original, true) else {
        panic!("a freshly built segment must read back");
    };
    check_consistent(&damaged);
    if let Ok((_, frames, _)) = scan_segment_bytes(&damaged, true) {
        for (got, want) in frames.iter().zip(&expected) {
            assert_eq!(got, want, "a damaged log never yields a different frame");
        }
        assert!(frames.len() <= expected.len());
    }
}
