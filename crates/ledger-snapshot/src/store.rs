//! The snapshot directory: atomic writes, retention, newest-valid lookup, listing.

use std::io::IoSlice;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ledger_storage::{AtomicFile, LockGuard, OpenMode, Storage, StorageFile, write_all_at};

use rkyv::Archive;
use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;

use crate::error::{SnapshotError, io_err};
use crate::format::{
    HEADER_BYTES, Header, file_name, is_temp_file_name, parse_file_name, temp_file_name,
};
use crate::read::{Loaded, SnapshotInfo, open_file_format_on, verify_file_on};
use crate::writer::{PayloadWriter, SnapshotPayload};

/// Name of the lock file that keeps two stores out of one directory.
pub const LOCK_FILE_NAME: &str = "snapshots.lock";

/// How a [`SnapshotStore`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotConfig {
    /// How many snapshots to keep, the newly written one included. Older ones are deleted
    /// once a new one is durable. Keep at least 2 so a corrupt newest one has a fallback.
    pub keep: NonZeroUsize,
}

impl SnapshotConfig {
    /// Default number of snapshots kept.
    pub const KEEP_DEFAULT: NonZeroUsize = NonZeroUsize::new(2).expect("2 is not zero");

    /// A configuration keeping the newest `keep` snapshots.
    #[must_use]
    pub fn with_keep(mut self, keep: NonZeroUsize) -> Self {
        self.keep = keep;
        self
    }
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            keep: Self::KEEP_DEFAULT,
        }
    }
}

/// What [`SnapshotStore::write`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct WriteReport {
    /// The sequence number written.
    pub sequence: u64,
    /// The durable snapshot file.
    pub path: PathBuf,
    /// Length of the rkyv payload.
    pub payload_bytes: u64,
    /// Length of the file (header + payload).
    pub file_bytes: u64,
    /// Older snapshots deleted by retention.
    pub removed: Vec<PathBuf>,
    /// Older snapshots retention tried and failed to delete (they remain on disk; the
    /// next write retries). The new snapshot is durable regardless.
    pub removal_failures: Vec<SnapshotError>,
    /// The smallest sequence number of any snapshot file still on disk, valid or not.
    /// WAL below this sequence is no longer needed by any snapshot that could be loaded.
    pub oldest_retained_sequence: u64,
}

/// A snapshot file that [`SnapshotStore::load_latest`] passed over, and why.
#[derive(Debug)]
pub struct SkippedSnapshot {
    /// The sequence number in its file name.
    pub sequence: u64,
    /// The file.
    pub path: PathBuf,
    /// Why it was not used.
    pub error: SnapshotError,
}

/// The result of [`SnapshotStore::load_latest`].
#[derive(Debug)]
pub struct LoadOutcome<T> {
    /// The newest snapshot that verified and validated, or `None` when there is none
    /// (start from empty and replay the whole WAL).
    pub loaded: Option<Loaded<T>>,
    /// Every newer snapshot that failed verification, newest first.
    pub skipped: Vec<SkippedSnapshot>,
}

/// One entry of [`list_dir`] / [`SnapshotStore::list`].
#[derive(Debug)]
pub struct SnapshotListing {
    /// The sequence number in the file name.
    pub sequence: u64,
    /// The file.
    pub path: PathBuf,
    /// Its length on disk.
    pub file_bytes: u64,
    /// The outcome of [`verify_file`] (checksums; not archive validation).
    pub status: Result<SnapshotInfo, SnapshotError>,
}

/// A directory of snapshots, owned exclusively (a lock file) by this value.
///
/// `SnapshotStore` is `Send + Sync`: [`SnapshotStore::write`] takes `&self` and is meant
/// to run on a background thread from a consistent copy of the state; concurrent writes
/// through one store are serialized.
#[derive(Debug)]
pub struct SnapshotStore {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    config: SnapshotConfig,
    removed_temp_files: Vec<PathBuf>,
    write_lock: Mutex<()>,
    /// Held (`flock`) for the life of the store; released by the OS on exit or crash.
    _lock: Box<dyn LockGuard>,
}

impl SnapshotStore {
    /// Opens (creating if needed) the snapshot directory `dir`, takes its lock, deletes
    /// temporary files left by an interrupted write, and syncs the directory (a snapshot
    /// renamed into place by a process that died before syncing it is durable before it
    /// is loaded).
    pub fn open(dir: impl Into<PathBuf>, config: SnapshotConfig) -> Result<Self, SnapshotError> {
        Self::open_on(ledger_storage::real(), dir, config)
    }

    /// [`SnapshotStore::open`] on `storage`.
    pub fn open_on(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        config: SnapshotConfig,
    ) -> Result<Self, SnapshotError> {
        let dir = dir.into();
        storage.create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join(LOCK_FILE_NAME);
        let lock = match storage.lock(&lock_path) {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(SnapshotError::Locked { path: lock_path });
            }
            Err(source) => {
                return Err(SnapshotError::Io {
                    path: lock_path,
                    source,
                });
            }
        };

        let mut removed_temp_files = Vec::new();
        for name in storage.list(&dir).map_err(io_err(&dir))? {
            if is_temp_file_name(&name) {
                let path = dir.join(name);
                storage.remove_file(&path).map_err(io_err(&path))?;
                removed_temp_files.push(path);
            }
        }
        storage.sync_dir(&dir).map_err(io_err(&dir))?;
        Ok(Self {
            storage,
            dir,
            config,
            removed_temp_files,
            write_lock: Mutex::new(()),
            _lock: lock,
        })
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> SnapshotConfig {
        self.config
    }

    /// Temporary files of interrupted writes that [`SnapshotStore::open`] deleted.
    #[must_use]
    pub fn removed_temp_files(&self) -> &[PathBuf] {
        &self.removed_temp_files
    }

    /// Writes `value` as the snapshot consistent at `sequence`, durably and atomically,
    /// then applies retention.
    ///
    /// Steps: serialize straight into `snapshot-<seq>.snap.tmp` (checksumming on the way,
    /// no in-memory copy of the payload), write the header at offset 0, `fsync` the file,
    /// rename it to `snapshot-<seq>.snap`, `fsync` the directory, then delete all but the
    /// newest `keep` snapshots below `sequence` (`keep - 1` of them) and `fsync` the
    /// directory again. A crash at any point leaves the old snapshots intact and at most a
    /// temporary file, which is never loaded and is deleted by the next `open`. A snapshot
    /// already at `sequence` is replaced atomically.
    ///
    /// Snapshots with a sequence above `sequence` are left alone by retention.
    pub fn write<T>(&self, sequence: u64, value: &T) -> Result<WriteReport, SnapshotError>
    where
        T: SnapshotPayload,
    {
        self.write_format(sequence, 0, value)
    }

    /// [`write`](Self::write) that records `payload_format` in the header: the caller's
    /// number for the payload's type and version, which readers of several types
    /// ([`load_latest_format`](Self::load_latest_format)) choose by.
    pub fn write_format<T>(
        &self,
        sequence: u64,
        payload_format: u32,
        value: &T,
    ) -> Result<WriteReport, SnapshotError>
    where
        T: SnapshotPayload,
    {
        self.place(sequence, |file, temp_path| {
            write_temp(file, temp_path, sequence, payload_format, value)
        })
    }

    /// Installs `image`, a whole snapshot file made elsewhere (a cluster peer's), as the
    /// snapshot at its own sequence: verified (header, lengths, payload checksum) first,
    /// then written and renamed into place durably and atomically as [`write`] does,
    /// then retention. Not validated as an archive: loading does that.
    ///
    /// [`write`]: SnapshotStore::write
    ///
    /// # Errors
    /// The corruption variants for an image that does not verify (nothing written); I/O
    /// errors.
    pub fn install(&self, image: &[u8]) -> Result<WriteReport, SnapshotError> {
        let (info, _) = crate::read::verify_bytes(image)?;
        self.place(info.sequence, |file, temp_path| {
            write_all_at(file.as_ref(), 0, &mut [IoSlice::new(image)])
                .map_err(io_err(temp_path))?;
            Ok((file, info.payload_bytes, info.file_bytes))
        })
    }

    /// Creates `snapshot-<sequence>.snap.tmp`, has `fill` write it whole (returning the
    /// file and its payload and file lengths), syncs and renames it into place, syncs the
    /// directory, then applies retention. One write at a time.
    fn place(
        &self,
        sequence: u64,
        fill: impl FnOnce(
            Box<dyn StorageFile>,
            &Path,
        ) -> Result<(Box<dyn StorageFile>, u64, u64), SnapshotError>,
    ) -> Result<WriteReport, SnapshotError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let path_err = |(path, source)| SnapshotError::Io { path, source };
        let (created, file) = AtomicFile::create(
            self.storage.as_ref(),
            &self.dir,
            &temp_file_name(sequence),
            &file_name(sequence),
        )
        .map_err(path_err)?;
        // On an error `created` is dropped, which deletes the temporary file.
        let (file, payload_bytes, file_bytes) = fill(file, created.temp_path())?;
        let final_path = created.path().to_path_buf();
        created.commit(file.as_ref()).map_err(path_err)?;

        let (removed, removal_failures, oldest_retained_sequence) = self.retain(sequence)?;
        Ok(WriteReport {
            sequence,
            path: final_path,
            payload_bytes,
            file_bytes,
            removed,
            removal_failures,
            oldest_retained_sequence,
        })
    }

    /// Deletes all but the newest `keep - 1` snapshots below `newest`.
    fn retain(
        &self,
        newest: u64,
    ) -> Result<(Vec<PathBuf>, Vec<SnapshotError>, u64), SnapshotError> {
        let all = snapshot_files(self.storage.as_ref(), &self.dir)?;
        let older_kept_max = self.config.keep.get() - 1;
        let mut older: Vec<(u64, PathBuf)> = all.into_iter().filter(|(s, _)| *s < newest).collect();
        // Ascending by sequence: the ones to delete are at the front.
        let delete_count = older.len().saturating_sub(older_kept_max);
        let kept = older.split_off(delete_count);
        let mut removed = Vec::new();
        let mut failures = Vec::new();
        for (_, path) in older {
            match self.storage.remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(source) => failures.push(SnapshotError::Io { path, source }),
            }
        }
        if !removed.is_empty() {
            self.storage
                .sync_dir(&self.dir)
                .map_err(io_err(&self.dir))?;
        }
        let oldest_failed = failures
            .iter()
            .filter_map(|error| match error {
                SnapshotError::Io { path, .. } => path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(parse_file_name),
                _ => None,
            })
            .min();
        let oldest_kept = kept.first().map(|(s, _)| *s);
        let oldest = [oldest_failed, oldest_kept, Some(newest)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(newest);
        Ok((removed, failures, oldest))
    }

    /// Finds the newest snapshot that verifies (header, lengths, checksums) and validates
    /// as an archive of `T`, newest first; every newer one that fails is reported in
    /// [`LoadOutcome::skipped`] and never used. `loaded` is `None` when none is usable.
    ///
    /// An I/O error (listing the directory, reading a file) is an `Err`, never a skip: a
    /// disk that cannot be read says nothing about the snapshot, and passing over it
    /// would load an older state or none (and then refuse for a WAL gap) for no reason.
    pub fn load_latest<T>(&self) -> Result<LoadOutcome<T>, SnapshotError>
    where
        T: Archive,
        T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    {
        self.load_latest_format(0)
    }

    /// [`load_latest`](Self::load_latest) among the snapshots whose header names
    /// `payload_format` (see [`write_format`](Self::write_format)); files of other formats
    /// are passed over, not reported as damaged.
    pub fn load_latest_format<T>(
        &self,
        payload_format: u32,
    ) -> Result<LoadOutcome<T>, SnapshotError>
    where
        T: Archive,
        T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    {
        let mut files = snapshot_files(self.storage.as_ref(), &self.dir)?;
        files.reverse();
        let mut skipped = Vec::new();
        for (sequence, path) in files {
            match open_file_format_on::<T>(self.storage.as_ref(), &path, payload_format) {
                Ok(None) => {}
                Ok(Some(loaded)) => {
                    return Ok(LoadOutcome {
                        loaded: Some(loaded),
                        skipped,
                    });
                }
                Err(error) if !error.is_corruption() => return Err(error),
                Err(error) => skipped.push(SkippedSnapshot {
                    sequence,
                    path,
                    error,
                }),
            }
        }
        Ok(LoadOutcome {
            loaded: None,
            skipped,
        })
    }

    /// Every snapshot file in the directory, oldest first, each verified (reads them all).
    pub fn list(&self) -> Result<Vec<SnapshotListing>, SnapshotError> {
        list_dir_on(self.storage.as_ref(), &self.dir)
    }
}

/// Every snapshot file in `dir`, oldest first, each verified with [`verify_file`] (which
/// reads each file in full). Temporary files and other names are not listed. Takes no
/// lock and changes nothing: usable on a live store's directory.
pub fn list_dir(dir: impl AsRef<Path>) -> Result<Vec<SnapshotListing>, SnapshotError> {
    list_dir_on(&ledger_storage::OsStorage, dir.as_ref())
}

fn list_dir_on(storage: &dyn Storage, dir: &Path) -> Result<Vec<SnapshotListing>, SnapshotError> {
    snapshot_files(storage, dir)?
        .into_iter()
        .map(|(sequence, path)| {
            let file_bytes = storage
                .open(&path, OpenMode::Read)
                .and_then(|file| file.size())
                .map_err(io_err(&path))?;
            let status = verify_file_on(storage, &path);
            Ok(SnapshotListing {
                sequence,
                path,
                file_bytes,
                status,
            })
        })
        .collect()
}

/// The newest sequence among the complete-snapshot names in `dir` (not verified).
///
/// # Errors
/// I/O errors listing the directory.
pub fn newest_sequence(storage: &dyn Storage, dir: &Path) -> Result<Option<u64>, SnapshotError> {
    Ok(snapshot_files(storage, dir)?.last().map(|(s, _)| *s))
}

/// `(sequence, path)` of every complete-snapshot name in `dir`, ascending.
fn snapshot_files(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
    let mut files: Vec<(u64, PathBuf)> = storage
        .list(dir)
        .map_err(io_err(dir))?
        .into_iter()
        .filter_map(|name| parse_file_name(&name).map(|sequence| (sequence, dir.join(name))))
        .collect();
    files.sort_unstable_by_key(|(sequence, _)| *sequence);
    Ok(files)
}

/// Writes the complete temporary file (not yet synced). Returns the file and the
/// (payload, file) lengths.
fn write_temp<T>(
    file: Box<dyn StorageFile>,
    path: &Path,
    sequence: u64,
    payload_format: u32,
    value: &T,
) -> Result<(Box<dyn StorageFile>, u64, u64), SnapshotError>
where
    T: SnapshotPayload,
{
    // Zeros until the payload is complete: a crash before the real header is written
    // leaves a file with no magic, which no reader accepts.
    write_all_at(file.as_ref(), 0, &mut [IoSlice::new(&[0u8; HEADER_BYTES])])
        .map_err(io_err(path))?;

    let mut writer = PayloadWriter::new(file, HEADER_BYTES as u64);
    if let Err(source) = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, &mut writer) {
        return Err(match writer.take_failure() {
            Some(source) => SnapshotError::Io {
                path: path.to_path_buf(),
                source,
            },
            None => SnapshotError::Serialize {
                path: path.to_path_buf(),
                source,
            },
        });
    }
    let (file, payload_bytes, payload_crc32c) = writer.finish().map_err(io_err(path))?;
    let header = Header {
        sequence,
        payload_bytes,
        payload_crc32c,
        payload_format,
    };
    let Some(file_bytes) = header.file_bytes() else {
        return Err(SnapshotError::TooLarge {
            path: path.to_path_buf(),
            payload_bytes,
        });
    };
    write_all_at(file.as_ref(), 0, &mut [IoSlice::new(&header.encode())]).map_err(io_err(path))?;
    Ok((file, payload_bytes, file_bytes))
}
