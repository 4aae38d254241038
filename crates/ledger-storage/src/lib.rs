//! The file operations of the ledger's storage layers, behind one small interface.
//!
//! `ledger-wal` and `ledger-snapshot` (and the engine's directory handling) do every file
//! operation through a [`Storage`]: open/create, `pwritev`, `pread`, `fdatasync`,
//! `set_len`, rename, unlink, directory sync, directory lock, listing. Two implementations:
//!
//! - [`OsStorage`] ([`real`]): the file system, one system call per operation.
//! - `sim::SimDisk` (feature `sim`): a disk in memory that keeps, per file, what is durable
//!   apart from what was only written, so a test can pull the plug (drop every unsynced
//!   write, keep a prefix of it, or tear it at sector boundaries), crash the process
//!   (the page cache survives), and make any call fail with `EIO`, `ENOSPC` or a short
//!   write, on a chosen step or at random from a seed.
//!
//! The shared helpers of the layers live here too: [`write_all_at`], [`read_full_at`],
//! [`NumberedName`] (the `prefix-<20 digits>.suffix` file names), [`AtomicFile`] (create
//! under a temporary name, fsync, rename, fsync the directory), and
//! [`advise_huge_pages`] for the large tables read at random.
//!
//! The crate knows nothing of logs, snapshots or money.

mod atomic;
mod huge_pages;
mod io;
mod mapped;
mod names;
mod os;
#[cfg(feature = "sim")]
pub mod sim;

use std::fmt::Debug;
use std::io::IoSlice;
use std::path::Path;
use std::sync::Arc;

pub use atomic::{AtomicFile, PathError};
pub use huge_pages::advise_huge_pages;
pub use io::{read_full_at, read_whole, write_all_at, write_whole};
pub use mapped::Mapped;
pub use names::NumberedName;
pub use os::OsStorage;

/// How [`Storage::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading.
    Read,
    /// An existing file, for reading and writing.
    ReadWrite,
    /// Read and write; created if missing, emptied if present.
    CreateTruncate,
    /// Read and write; created if missing, kept as is if present.
    CreateKeep,
}

/// The file system as the storage layers see it. Paths are the caller's; every method is
/// one operation (one system call on the real file system), so a simulated disk can fail
/// or cut power at any of them.
pub trait Storage: Debug + Send + Sync {
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()>;
    /// The names of the entries of `dir`, sorted. `NotFound` if `dir` does not exist.
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>>;
    /// Opens `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn StorageFile>>;
    /// Renames `from` to `to` (same directory), replacing `to`. Not durable until the
    /// directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Deletes the file `path`. Not durable until the directory is synced.
    fn remove_file(&self, path: &Path) -> std::io::Result<()>;
    /// Makes the creates, renames and deletes in `dir` durable (`fsync` of the directory).
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
    /// Takes an exclusive lock on the file `path` (created if missing), held until the
    /// guard is dropped or the process ends. `WouldBlock` if someone else holds it.
    fn lock(&self, path: &Path) -> std::io::Result<Box<dyn LockGuard>>;
    /// The whole content of `path`, read-only: memory-mapped on the real file system
    /// (zero-copy), a 16-byte-aligned copy on a simulated one.
    fn map(&self, path: &Path) -> std::io::Result<Mapped>;
}

/// An open file.
pub trait StorageFile: Debug + Send + Sync {
    /// Writes `bufs` at `offset` (`pwritev`); may write less than all of them.
    fn pwritev(&self, offset: u64, bufs: &[IoSlice<'_>]) -> std::io::Result<usize>;
    /// Reads into `buf` from `offset` (`pread`); fewer bytes only at the end of the file.
    fn pread(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
    /// Makes the data written so far durable (`fdatasync`).
    fn sync_data(&self) -> std::io::Result<()>;
    /// Makes data and metadata durable (`fsync`).
    fn sync_all(&self) -> std::io::Result<()>;
    /// Truncates or extends the file (`ftruncate`). Not durable until synced.
    fn set_len(&self, len: u64) -> std::io::Result<()>;
    /// The file's current length in bytes.
    fn size(&self) -> std::io::Result<u64>;
    /// Starts writeback of a range without waiting for it (a hint; durability still comes
    /// from a sync). The default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Drops the file's clean cached pages, so the next read comes from the disk. After a
    /// failed `fdatasync` Linux marks the pages it could not write clean: they read back
    /// as if written until they are dropped, so recovery calls this before it reads what
    /// it will report durable.
    fn drop_cache(&self) -> std::io::Result<()>;
}

/// A held lock; dropping it releases the lock.
pub trait LockGuard: Debug + Send + Sync {}

/// The real file system, shared.
#[must_use]
pub fn real() -> Arc<dyn Storage> {
    Arc::new(OsStorage)
}

#[cfg(test)]
mod send_sync {
    const fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    const _: () = assert_send_sync::<dyn crate::Storage>();
    const _: () = assert_send_sync::<dyn crate::StorageFile>();
}
