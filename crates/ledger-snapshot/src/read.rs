//! Verifying and loading one snapshot file.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use ledger_storage::{Mapped, Storage};
use rkyv::Archive;
use rkyv::api::high::{HighDeserializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;

use crate::error::{SnapshotError, io_err};
use crate::format::{HEADER_BYTES, Header, PAYLOAD_OFFSET, parse_file_name};

/// What verification established about a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The sequence number the snapshot is consistent at.
    pub sequence: u64,
    /// Length of the rkyv payload.
    pub payload_bytes: u64,
    /// Length of the whole file.
    pub file_bytes: u64,
    /// crc32c of the payload (verified).
    pub payload_crc32c: u32,
    /// The writer's number for the payload's type and version (0: files written before
    /// the header had the field, or by [`SnapshotStore::write`](crate::SnapshotStore::write)).
    pub payload_format: u32,
}

/// A snapshot file mapped into memory with its header and payload checksum verified.
struct Verified {
    map: Mapped,
    info: SnapshotInfo,
    payload_len: usize,
}

impl Verified {
    fn payload(&self) -> &[u8] {
        self.map
            .get(HEADER_BYTES..HEADER_BYTES.saturating_add(self.payload_len))
            .unwrap_or_default()
    }
}

/// Maps `path` and checks everything but the archive: header, name, lengths, checksums.
fn map_and_verify(storage: &dyn Storage, path: &Path) -> Result<Verified, SnapshotError> {
    // Complete files are never modified by this crate (they are written under a temporary
    // name and renamed into place): the map stays as verified, unless another program
    // rewrites the file, which the documentation of `Loaded` rules out. Every byte is
    // checked below before anything is interpreted.
    let map = storage.map(path).map_err(io_err(path))?;
    let len_bytes = map.len() as u64;
    if len_bytes < PAYLOAD_OFFSET {
        return Err(SnapshotError::Truncated {
            path: path.to_path_buf(),
            len_bytes,
            expected_min_bytes: PAYLOAD_OFFSET,
        });
    }
    let info = verify_image(path, &map)?;
    let Ok(payload_len) = usize::try_from(info.payload_bytes) else {
        return Err(SnapshotError::TooLarge {
            path: path.to_path_buf(),
            payload_bytes: info.payload_bytes,
        });
    };
    Ok(Verified {
        map,
        info,
        payload_len,
    })
}

/// Checks 1-8 of the format (everything but the archive) on a whole file's bytes.
/// `path` is only used to name the file in errors and to compare the sequence in its
/// name (if it has a snapshot's name) with the header's.
fn verify_image(path: &Path, image: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
    let header = Header::decode(path, image)?;

    if let Some(in_name) = path
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(parse_file_name)
        && in_name != header.sequence
    {
        return Err(SnapshotError::SequenceMismatch {
            path: path.to_path_buf(),
            in_name,
            in_header: header.sequence,
        });
    }

    let actual_len = image.len() as u64;
    let Some(expected_len) = header.file_bytes() else {
        return Err(SnapshotError::BadHeader {
            path: path.to_path_buf(),
            reason: "payload length overflows a file offset",
        });
    };
    if actual_len < expected_len {
        return Err(SnapshotError::Truncated {
            path: path.to_path_buf(),
            len_bytes: actual_len,
            expected_min_bytes: expected_len,
        });
    }
    if actual_len > expected_len {
        return Err(SnapshotError::TrailingBytes {
            path: path.to_path_buf(),
            extra_bytes: actual_len - expected_len,
        });
    }
    // Lengths match exactly, so the payload is everything after the header.
    let payload = image.get(HEADER_BYTES..).unwrap_or_default();
    let actual_crc = crate::crc::crc32c_parallel(payload);
    if actual_crc != header.payload_crc32c {
        return Err(SnapshotError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: header.payload_crc32c,
            actual: actual_crc,
        });
    }
    Ok(SnapshotInfo {
        sequence: header.sequence,
        payload_bytes: header.payload_bytes,
        file_bytes: actual_len,
        payload_crc32c: header.payload_crc32c,
        payload_format: header.payload_format,
    })
}

/// Verifies the bytes of a whole snapshot file held in memory (checks 1-8 of
/// `docs/snapshot-format.md`: everything but archive validation) and returns its info and
/// payload. Errors name the file `<memory>`; no file-name check applies. For offline tools
/// and fuzzing; [`verify_file`] is the same on a file.
pub fn verify_bytes(image: &[u8]) -> Result<(SnapshotInfo, &[u8]), SnapshotError> {
    let info = verify_image(Path::new(MEMORY_PATH), image)?;
    Ok((info, image.get(HEADER_BYTES..).unwrap_or_default()))
}

/// The name errors from [`verify_bytes`] carry.
const MEMORY_PATH: &str = "<memory>";

/// Verifies one snapshot file without knowing its payload type: header, file name,
/// lengths and both checksums. Does not validate the archive (that needs the type: see
/// [`open_file`]). Reads the whole file.
///
/// Takes no lock and changes nothing, so it is safe to run against a live store's
/// directory (for the offline CLI).
pub fn verify_file(path: impl AsRef<Path>) -> Result<SnapshotInfo, SnapshotError> {
    verify_file_on(&ledger_storage::OsStorage, path.as_ref())
}

/// [`verify_file`] on `storage`.
pub fn verify_file_on(storage: &dyn Storage, path: &Path) -> Result<SnapshotInfo, SnapshotError> {
    map_and_verify(storage, path).map(|verified| verified.info)
}

/// Verifies one snapshot file and validates its payload as an archive of `T`, returning
/// it memory-mapped: nothing is copied.
pub fn open_file<T>(path: impl AsRef<Path>) -> Result<Loaded<T>, SnapshotError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    open_file_on(&ledger_storage::OsStorage, path.as_ref())
}

/// [`open_file`] on `storage`.
pub fn open_file_on<T>(storage: &dyn Storage, path: &Path) -> Result<Loaded<T>, SnapshotError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    let verified = map_and_verify(storage, path)?;
    validate(path, verified)
}

/// Validates a verified file's payload as an archive of `T`.
fn validate<T>(path: &Path, verified: Verified) -> Result<Loaded<T>, SnapshotError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    if let Err(source) = rkyv::access::<T::Archived, rancor::Error>(verified.payload()) {
        return Err(SnapshotError::InvalidArchive {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        verified,
        _payload: PhantomData,
    })
}

/// [`open_file_on`] for a file whose header names `payload_format`: `Ok(None)` (nothing
/// validated) when it names another one, for a reader that knows several payload types.
pub fn open_file_format_on<T>(
    storage: &dyn Storage,
    path: &Path,
    payload_format: u32,
) -> Result<Option<Loaded<T>>, SnapshotError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    let verified = map_and_verify(storage, path)?;
    if verified.info.payload_format != payload_format {
        return Ok(None);
    }
    validate(path, verified).map(Some)
}

/// A verified, validated snapshot, memory-mapped.
///
/// [`Loaded::archived`] borrows the archived value straight from the map (zero-copy).
/// The file must not be modified or truncated by another program while this is alive
/// (this crate itself never modifies a complete snapshot, and retention only unlinks
/// files, which leaves existing maps intact).
pub struct Loaded<T> {
    path: PathBuf,
    verified: Verified,
    _payload: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Loaded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("path", &self.path)
            .field("info", &self.verified.info)
            .finish_non_exhaustive()
    }
}

impl<T> Loaded<T> {
    /// The sequence number the snapshot is consistent at.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.verified.info.sequence
    }

    /// Sizes and checksum of the file.
    #[must_use]
    pub fn info(&self) -> SnapshotInfo {
        self.verified.info
    }

    /// The file it was loaded from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw rkyv payload bytes (16-byte aligned in memory).
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        self.verified.payload()
    }
}

impl<T: Archive> Loaded<T> {
    /// The archived value, borrowed from the memory map.
    #[must_use]
    pub fn archived(&self) -> &T::Archived {
        // SAFETY: a `Loaded<T>` is only built by `open_file::<T>`, after
        // `rkyv::access::<T::Archived, _>` validated exactly these bytes; the map is
        // read-only and owned by `self`, so the bytes are unchanged since.
        unsafe { rkyv::access_unchecked::<T::Archived>(self.verified.payload()) }
    }

    /// Deserializes the archived value into an owned `T` (a full copy).
    pub fn deserialize(&self) -> Result<T, SnapshotError>
    where
        T::Archived: rkyv::Deserialize<T, HighDeserializer<rancor::Error>>,
    {
        rkyv::deserialize::<T, rancor::Error>(self.archived()).map_err(|source| {
            SnapshotError::Deserialize {
                path: self.path.clone(),
                source,
            }
        })
    }
}
