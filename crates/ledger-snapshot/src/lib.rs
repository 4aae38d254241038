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
//! # Using it from an engine
//!
//! - Write from a background thread: [`SnapshotStore`] is `Send + Sync` and
//!   [`SnapshotStore::write`] takes `&self` and a reference to a consistent copy of the
//!   state; it returns once the snapshot is durable.
//! - WAL below [`WriteReport::oldest_retained_sequence`] is needed by no snapshot on disk;
//!   keep everything from there on, so a fallback to the oldest kept snapshot can still
//!   replay.
//! - On start, [`SnapshotStore::load_latest`] may fall back to an older snapshot (reported
//!   in [`LoadOutcome::skipped`]); the replay must check that the WAL reaches back to the
//!   loaded snapshot's sequence + 1 and refuse to start otherwise.
//! - For a `Vec<i64>`-like payload, [`Loaded::deserialize`] copies the balances out with
//!   a memcpy; [`Loaded::archived`] reads them in place from the memory map.
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

mod crc;
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
pub use read::{
    Loaded, SnapshotInfo, open_file, open_file_format_on, open_file_on, verify_bytes, verify_file,
    verify_file_on,
};
pub use store::{
    LOCK_FILE_NAME, LoadOutcome, SkippedSnapshot, SnapshotConfig, SnapshotListing, SnapshotStore,
    WriteReport, list_dir, newest_sequence,
};
pub use writer::{PayloadWriter, SnapshotPayload, SnapshotSerializer};

/// Entry points for the fuzz target (`crates/ledger-snapshot/fuzz`) and its smoke test
/// (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Arbitrary bytes as a snapshot file: verification must never panic, and anything it
    /// accepts must be self-consistent; a payload that verifies is then validated (never
    /// accessed unvalidated) as a few archive types.
    pub fn check_image(data: &[u8]) {
        let Ok((info, payload)) = crate::verify_bytes(data) else {
            return;
        };
        assert_eq!(info.file_bytes, data.len() as u64);
        assert_eq!(info.payload_bytes, payload.len() as u64);
        assert_eq!(info.payload_crc32c, crc32c::crc32c(payload));
        // The payload slice is 64 bytes into `data`; copy it to an aligned buffer as the
        // memory map would give it.
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(payload);
        if let Ok(balances) =
            rkyv::access::<rkyv::Archived<Vec<i64>>, rkyv::rancor::Error>(&aligned)
        {
            let _ = balances.iter().map(|b| b.to_native()).sum::<i64>();
        }
        if let Ok(strings) =
            rkyv::access::<rkyv::Archived<Vec<String>>, rkyv::rancor::Error>(&aligned)
        {
            let _ = strings.iter().map(|s| s.len()).sum::<usize>();
        }
    }
}

/// Re-exported so callers use the same rkyv this crate was built with.
pub use rkyv;

#[cfg(test)]
mod send_sync {
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<crate::SnapshotStore>();
    const _: () = assert_send_sync::<crate::Loaded<Vec<i64>>>();
}
