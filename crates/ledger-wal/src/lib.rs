//! An append-only, checksummed, group-committed write-ahead log of byte frames in numbered
//! segment files.
//!
//! The crate stores byte payloads and knows nothing of what they mean. A log is a directory
//! of segment files `wal-<number, 20 digits>.seg`; each starts with a 64-byte header
//! (magic, version, segment number, first sequence, salt, crc32c) and holds frames: a
//! 40-byte header (magic, version, kind, padding length, payload length, record count,
//! first sequence, the segment's salt, crc32c of the payload, crc32c of the header), the
//! payload and optional zero padding to a block boundary.
//! `docs/wal-format.md` at the repository root describes the layout byte by byte.
//!
//! - [`Wal::open`] recovers: checks every segment header, reads the last segment frame by
//!   frame, truncates a torn tail (reported in [`RecoveryReport`]) and refuses anything
//!   else invalid with an error naming file and offset.
//! - [`Wal::append`] / [`Wal::append_with`] write one frame with one `pwritev` (large
//!   frames: payload first, checksum while the disk writes, header last);
//!   [`Wal::sync`] is one `fdatasync` for everything appended since the last one and
//!   returns the [`Durable`] position.
//! - [`Wal::append_optional`] writes a frame of the caller's own kind (`0x81..=0xFF`) with
//!   no records, at the next sequence ([`Wal::start_at`] gives a new, empty log one);
//!   readers hand it out with its kind and payload.
//! - [`Wal::truncate`] durably removes the frame at a [`FramePosition`] and everything
//!   after it, synced or not; appends continue from that frame's sequence.
//! - [`WalReader`] / [`Frames`] / [`verify`] read without a writer and change nothing; every
//!   checksum is verified before a byte is handed out. [`FrameCursor`] reads from a frame
//!   position, within its segment or on across the following ones.
//! - [`Wal::segments`], [`Wal::remove_segments_below`] and [`Wal::remove_segments_before`]
//!   are the retention hooks.
//!
//! ```
//! # fn main() -> Result<(), ledger_wal::WalError> {
//! use ledger_wal::{Wal, WalConfig, WalReader};
//! let dir = tempfile::tempdir().map_err(|e| ledger_wal::WalError::Io {
//!     path: "tempdir".into(),
//!     source: e,
//! })?;
//! let (mut wal, report) = Wal::open(dir.path(), WalConfig::default())?;
//! assert_eq!(report.next_seq, None); // a fresh log accepts any first sequence
//! wal.append(1, 3, b"three records")?;
//! wal.append_with(4, 4, |buf| buf.extend_from_slice(b"one more"))?;
//! let durable = wal.sync()?;
//! assert_eq!(durable.last_seq(), Some(4));
//!
//! let reader = WalReader::open(dir.path())?;
//! let mut frames = reader.frames_from(4)?;
//! let frame = frames.next_frame()?.expect("one frame holds 4");
//! assert_eq!((frame.first_seq, frame.last_seq()), (4, Some(4)));
//! assert_eq!(frame.payload, b"one more");
//! # Ok(())
//! # }
//! ```
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod dir;
mod error;
mod format;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod reader;
mod scan;
mod writer;

pub use error::{FrameDefect, WalError};
pub use format::{
    BLOCK_BYTES, FORMAT_VERSION, FRAME_ALIGN_BYTES_MAX, FRAME_HEADER_BYTES, FRAME_MAGIC,
    FRAME_PAYLOAD_BYTES_MAX, FrameKind, SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
    SegmentHeader, parse_segment_file_name, segment_file_name,
};
pub use reader::{FrameCursor, Frames, SegmentInfo, VerifyReport, WalReader, verify, verify_on};
pub use scan::{CleanEnd, Frame, SegmentEnd};
pub use writer::{
    Durable, FramePosition, LOCK_FILE_NAME, RecoveryReport, Truncated, TruncatedTail, Wal,
    WalConfig,
};

#[cfg(test)]
mod send_sync {
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<crate::Wal>();
    const _: () = assert_send_sync::<crate::WalReader>();
    const _: () = assert_send_sync::<crate::Frames>();
}
