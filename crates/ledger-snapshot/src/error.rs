//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong writing, finding, verifying or loading a snapshot.
///
/// Every variant names the file it is about. Variants describing a file that fails
/// verification ([`SnapshotError::is_corruption`]) never come with data: a snapshot that
/// fails any check is never handed to the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// An operating-system call on `path` failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The file is shorter than its header says it must be (or shorter than a header).
    #[error("{path} is truncated: {len_bytes} bytes, at least {expected_min_bytes} expected")]
    Truncated {
        /// The snapshot file.
        path: PathBuf,
        /// Its length on disk.
        len_bytes: u64,
        /// The length its header (or the format) requires.
        expected_min_bytes: u64,
    },

    /// The file is longer than header plus payload: something was appended.
    #[error("{path} has {extra_bytes} bytes after the payload its header describes")]
    TrailingBytes {
        /// The snapshot file.
        path: PathBuf,
        /// How many bytes follow the payload.
        extra_bytes: u64,
    },

    /// The first eight bytes are not the snapshot magic.
    #[error("{path} is not a snapshot: magic {found:02x?}")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The eight bytes found where the magic belongs.
        found: [u8; 8],
    },

    /// The file is a snapshot of a format version this build does not read.
    #[error("{path} has snapshot format version {version}, this build reads version {supported}")]
    UnknownVersion {
        /// The snapshot file.
        path: PathBuf,
        /// The version found in the header.
        version: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The header's own checksum does not match the header bytes.
    #[error("{path}: header checksum mismatch (stored {expected:#010x}, computed {actual:#010x})")]
    HeaderChecksumMismatch {
        /// The snapshot file.
        path: PathBuf,
        /// The crc32c stored in the header.
        expected: u32,
        /// The crc32c computed over the header bytes.
        actual: u32,
    },

    /// The header checksum verifies but a field holds a value no writer produces.
    #[error("{path}: malformed header: {reason}")]
    BadHeader {
        /// The snapshot file.
        path: PathBuf,
        /// Which field is wrong.
        reason: &'static str,
    },

    /// The payload's checksum does not match the one in the header.
    #[error("{path}: payload checksum mismatch (stored {expected:#010x}, computed {actual:#010x})")]
    ChecksumMismatch {
        /// The snapshot file.
        path: PathBuf,
        /// The crc32c stored in the header.
        expected: u32,
        /// The crc32c computed over the payload on disk.
        actual: u32,
    },

    /// The file name says one sequence number and the header another.
    #[error("{path}: file name says sequence {in_name}, header says {in_header}")]
    SequenceMismatch {
        /// The snapshot file.
        path: PathBuf,
        /// The sequence number parsed from the file name.
        in_name: u64,
        /// The sequence number stored in the header.
        in_header: u64,
    },

    /// The checksums verify but the payload is not a valid archive of the requested type
    /// (rkyv/bytecheck validation failed): a writer bug or a type mismatch.
    #[error("{path}: payload is not a valid archive of the requested type: {source}")]
    InvalidArchive {
        /// The snapshot file.
        path: PathBuf,
        /// What the validator reported.
        #[source]
        source: rkyv::rancor::Error,
    },

    /// Serializing the caller's value failed (not an I/O error: those are [`SnapshotError::Io`]).
    #[error("serializing the snapshot for {path} failed: {source}")]
    Serialize {
        /// The temporary file being written.
        path: PathBuf,
        /// What the serializer reported.
        #[source]
        source: rkyv::rancor::Error,
    },

    /// Deserializing a validated archive into an owned value failed.
    #[error("deserializing {path} failed: {source}")]
    Deserialize {
        /// The snapshot file.
        path: PathBuf,
        /// What the deserializer reported.
        #[source]
        source: rkyv::rancor::Error,
    },

    /// The payload is larger than this platform can address.
    #[error("{path}: payload of {payload_bytes} bytes does not fit in memory on this platform")]
    TooLarge {
        /// The snapshot file.
        path: PathBuf,
        /// The payload length from the header.
        payload_bytes: u64,
    },

    /// Another [`SnapshotStore`](crate::SnapshotStore) (in this or another process) holds
    /// the directory.
    #[error("snapshot directory is in use by another store (lock file {path})")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

impl SnapshotError {
    /// True when the error says the file's bytes are wrong (as opposed to an I/O failure,
    /// a serialization failure of a value being written, or a locked directory).
    #[must_use]
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::Truncated { .. }
                | Self::TrailingBytes { .. }
                | Self::BadMagic { .. }
                | Self::UnknownVersion { .. }
                | Self::HeaderChecksumMismatch { .. }
                | Self::BadHeader { .. }
                | Self::ChecksumMismatch { .. }
                | Self::SequenceMismatch { .. }
                | Self::InvalidArchive { .. }
                | Self::TooLarge { .. }
        )
    }
}

/// Shorthand for attaching a path to an [`io::Error`].
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.into();
    move |source| SnapshotError::Io { path, source }
}
