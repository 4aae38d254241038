//! The hex example of `docs/wal-format.md`, byte for byte: today's writer must produce it
//! and today's reader must read it (a compatibility fixture for format version 1).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use ledger_wal::fuzzing::{build_segment, scan_segment_bytes};
use ledger_wal::{CleanEnd, FrameKind, SegmentEnd};

/// Segment 1, first sequence 1, salt 0x0123456789abcdef, one records frame holding
/// sequence 1 with payload "hello" (the same as in docs/wal-format.md).
const FIXTURE_HEX: &str = concat!(
    "52 4f 44 41 57 41 4c 00 01 00 00 00 40 00 00 00 ",
    "01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 ",
    "ef cd ab 89 67 45 23 01 00 00 00 00 00 00 00 00 ",
    "00 00 00 00 00 00 00 00 00 00 00 00 5f bb bf 07 ",
    "52 57 46 52 01 01 00 00 05 00 00 00 01 00 00 00 ",
    "01 00 00 00 00 00 00 00 ef cd ab 89 67 45 23 01 ",
    "4c bb 71 9a ff b4 45 b8 68 65 6c 6c 6f ",
);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_documented_example_is_what_the_writer_produces_and_the_reader_reads() {
    let bytes = build_segment(1, 1, 0x0123_4567_89ab_cdef, &[b"hello"]);
    assert_eq!(hex(&bytes), FIXTURE_HEX.replace(' ', ""));
    let (header, frames, end) = scan_segment_bytes(&bytes, true).unwrap();
    assert_eq!(
        (header.number, header.first_seq, header.salt),
        (1, 1, 0x0123_4567_89ab_cdef)
    );
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].kind, FrameKind::Records);
    assert_eq!((frames[0].first_seq, frames[0].record_count), (1, 1));
    assert_eq!(frames[0].payload, b"hello");
    assert_eq!(
        end,
        SegmentEnd::Clean {
            offset: 109,
            how: CleanEnd::EndOfFile
        }
    );
}
