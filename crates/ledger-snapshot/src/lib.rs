//! Atomic, checksummed checkpoint files holding an rkyv archive of the caller's type.
//!
//! A snapshot is one file, `snapshot-<sequence, 20 digits>.snap`: a 64-byte little-endian
//! header (magic, format version, the sequence number the snapshot is consistent at,
//! payload length, crc32c of the payload, crc32c of the header) followed by the rkyv
//! archive. `docs/snapshot-format.md` at the repository root describes it byte by byte.
//!
//! - [`SnapshotStore::write`] streams the payload into a temporary file (no second copy in
//!   memory), `fsync`s, renames into place, `fsync`s the directory, then deletes old
//!   snapshots beyond [`SnapshotConfig::keep`].
//! - [`SnapshotStore::load_latest`] returns the newest snapshot whose checksums verify and
//!   whose archive validates, memory-mapped (zero-copy), and reports every newer one it
//!   skipped; `None` means "no usable snapshot: replay the WAL from the start".
//! - [`SnapshotStore::list`], [`list_dir`], [`verify_file`], [`open_file`] serve offline
//!   tools.
//!
//! The crate knows nothing of money: the payload is any rkyv type.
//!
//! ```
//! # fn main() -> Result<(), ledger_snapshot::SnapshotError> {
//! use ledger_snapshot::{SnapshotConfig, SnapshotStore};
//! let dir = tempfile::tempdir().map_err(|e| ledger_snapshot::SnapshotError::Io {
//!     path: "tempdir".into(),
//!     source: e,
//! })?;
//! let store = SnapshotStore::open(dir.path(), SnapshotConfig::default())?;
//! store.write(7, &vec![10_i64, -3, 42])?;
//! let outcome = store.load_latest::<Vec<i64>>()?;
//! let loaded = outcome.loaded.expect("just written");
//! assert_eq!(loaded.sequence(), 7);
//! let balances: Vec<i64> = loaded.archived().iter().map(|b| b.to_native()).collect();
//! assert_eq!(balances, [10, -3, 42]);
//! # Ok(())
//! # }
//! ```
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod error;
mod format;
mod read;
mod store;
mod writer;

pub use error::SnapshotError;
pub use format::{
    FORMAT_VERSION, HEADER_BYTES, Header, MAGIC, PAYLOAD_ALIGN, PAYLOAD_OFFSET, file_name,
    parse_file_name,
};
pub use read::{Loaded, SnapshotInfo, open_file, verify_file};
pub use store::{
    LOCK_FILE_NAME, LoadOutcome, SkippedSnapshot, SnapshotConfig, SnapshotListing, SnapshotStore,
    WriteReport, list_dir,
};
pub use writer::{PayloadWriter, SnapshotPayload, SnapshotSerializer};

/// Re-exported so callers use the same rkyv this crate was built with.
pub use rkyv;

#[cfg(test)]
mod send_sync {
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<crate::SnapshotStore>();
    const _: () = assert_send_sync::<crate::Loaded<Vec<i64>>>();
}
