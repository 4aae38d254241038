//! The one error type of this crate.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What is wrong with the bytes at a frame position that is not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameDefect {
    /// The four bytes where a frame header starts are not the frame magic.
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// The header's own crc32c does not match the header bytes.
    HeaderChecksum {
        /// The crc32c stored in the header.
        stored: u32,
        /// The crc32c computed over the header bytes.
        computed: u32,
    },
    /// The payload's crc32c does not match the one in the (valid) header.
    PayloadChecksum {
        /// The crc32c stored in the header.
        stored: u32,
        /// The crc32c computed over the payload bytes.
        computed: u32,
    },
    /// A frame whose checksums verify but which belongs to an earlier use of the file
    /// (another segment salt).
    StaleFrame {
        /// The salt found in the frame header.
        salt: u64,
    },
    /// The padding after a valid payload holds a non-zero byte.
    NonZeroPadding,
    /// The file ends inside the frame.
    Truncated {
        /// Bytes the frame needs from its offset (header, or header + payload).
        needed_bytes: u64,
        /// Bytes the file has from that offset.
        available_bytes: u64,
    },
}

impl fmt::Display for FrameDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { found } => write!(f, "bad frame magic {found:02x?}"),
            Self::HeaderChecksum { stored, computed } => write!(
                f,
                "frame header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::PayloadChecksum { stored, computed } => write!(
                f,
                "payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::NonZeroPadding => write!(f, "non-zero byte in the padding after the payload"),
            Self::StaleFrame { salt } => write!(f, "stale frame (salt {salt:#018x})"),
            Self::Truncated {
                needed_bytes,
                available_bytes,
            } => write!(
                f,
                "frame truncated ({available_bytes} of {needed_bytes} bytes present)"
            ),
        }
    }
}

/// Everything that can go wrong opening, appending to, reading or pruning a WAL.
///
/// Variants about bytes on disk ([`WalError::is_corruption`]) name the segment file and the
/// byte offset inside it. No data that failed a check is ever handed to the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An operating-system call on `path` failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The configuration cannot work.
    #[error("invalid WAL configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: &'static str,
    },

    /// Another writer (in this or another process) holds the directory.
    #[error("WAL directory is in use by another writer (lock file {path})")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// A segment file's header is not a valid header (magic, checksum, a field, or the
    /// segment number in the file name).
    #[error("{segment}: corrupt segment header: {reason}")]
    CorruptSegmentHeader {
        /// The segment file.
        segment: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },

    /// A segment (header) or frame is of a format version this build does not read.
    #[error("{segment} offset {offset}: format version {version}, this build reads {supported}")]
    UnknownVersion {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the header carrying the version.
        offset: u64,
        /// The version found.
        version: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// Segment numbers in the directory are not consecutive.
    #[error("segment gap: {previous} is followed by {next}")]
    SegmentGap {
        /// The segment before the gap.
        previous: PathBuf,
        /// The segment after the gap.
        next: PathBuf,
    },

    /// Bytes that are not a valid frame, where the log cannot end: either a valid frame of
    /// this segment follows them, or they are at the end of a segment that is not the last.
    #[error(
        "{segment} offset {offset}: {defect}{}",
        match next_valid_offset {
            Some(next) => format!(", followed by a valid frame at offset {next}"),
            None => ", in a segment that is not the last".to_owned(),
        }
    )]
    CorruptFrame {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the bad frame in the segment file.
        offset: u64,
        /// What is wrong at that offset.
        defect: FrameDefect,
        /// Offset of the valid frame found after it, if that is why this is not a torn tail.
        next_valid_offset: Option<u64>,
    },

    /// A frame whose checksums verify holds a field value no writer produces.
    #[error("{segment} offset {offset}: malformed frame: {reason}")]
    MalformedFrame {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// Which field is wrong.
        reason: &'static str,
    },

    /// A frame of a kind this build must understand but does not know.
    #[error("{segment} offset {offset}: unknown frame kind {kind:#04x}")]
    UnknownFrameKind {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// The kind byte.
        kind: u8,
    },

    /// Sequences on disk are not contiguous: a frame (or a segment header, at offset 0)
    /// does not start where the previous frame ended.
    #[error("{segment} offset {offset}: sequence gap, expected {expected}, found {found}")]
    SequenceGap {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the frame or header (0).
        offset: u64,
        /// The sequence the previous frame implies.
        expected: u64,
        /// The sequence found.
        found: u64,
    },

    /// `append` was called with a sequence range that does not continue the log.
    #[error("append out of order: the log expects sequence {expected}, got {first_seq}")]
    OutOfOrder {
        /// The next sequence the log expects.
        expected: u64,
        /// The first sequence passed to `append`.
        first_seq: u64,
    },

    /// `append` was called with an empty, reversed or oversized range.
    #[error("invalid sequence range {first_seq}..={last_seq}: {reason}")]
    InvalidRange {
        /// First sequence passed.
        first_seq: u64,
        /// Last sequence passed.
        last_seq: u64,
        /// What is wrong.
        reason: &'static str,
    },

    /// The payload is larger than a frame can hold.
    #[error("payload of {payload_bytes} bytes exceeds the frame limit of {max_bytes}")]
    PayloadTooLarge {
        /// Length of the payload.
        payload_bytes: u64,
        /// [`crate::FRAME_PAYLOAD_BYTES_MAX`].
        max_bytes: u64,
    },

    /// `append_optional` was called with a kind a caller may not write: not an optional
    /// kind (below [`crate::FrameKind::OPTIONAL_MIN`]), or the durable mark the writer
    /// writes itself ([`crate::FrameKind::DURABLE_MARK_BYTE`]).
    #[error("frame kind {kind:#04x} cannot be appended: {reason}")]
    InvalidFrameKind {
        /// The kind byte passed.
        kind: u8,
        /// What is wrong.
        reason: &'static str,
    },

    /// A frame without records was appended to a log that has no sequence yet (a new,
    /// empty log): its `first_seq` would be undefined. Call `Wal::start_at` first.
    #[error("the log has no sequence yet: append a records frame or call start_at first")]
    NoSequence,

    /// `truncate` was given a position that is not the start of a frame of this log; nothing
    /// was changed.
    #[error("segment {segment} offset {offset}: not a frame position of this log: {reason}")]
    InvalidPosition {
        /// The segment number passed.
        segment: u64,
        /// The offset passed.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },

    /// A read asked for sequences that retention has already removed.
    #[error("sequence {requested} is not retained; the oldest segment starts at {first_available}")]
    NotRetained {
        /// The sequence asked for.
        requested: u64,
        /// The first sequence still on disk.
        first_available: u64,
    },

    /// An earlier write or sync failed; the writer refuses further work. Reopen the WAL:
    /// recovery truncates whatever partial frame the failure left.
    #[error("the WAL writer failed earlier and must be reopened")]
    Poisoned,
}

impl WalError {
    /// True when the error says bytes on disk are wrong (as opposed to an I/O failure,
    /// a caller error or a locked directory).
    #[must_use]
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::CorruptSegmentHeader { .. }
                | Self::UnknownVersion { .. }
                | Self::SegmentGap { .. }
                | Self::CorruptFrame { .. }
                | Self::MalformedFrame { .. }
                | Self::UnknownFrameKind { .. }
                | Self::SequenceGap { .. }
        )
    }
}

/// Shorthand for attaching a path to an [`io::Error`].
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> WalError {
    let path = path.into();
    move |source| WalError::Io { path, source }
}
