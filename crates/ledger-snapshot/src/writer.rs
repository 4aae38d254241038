//! The streaming payload writer: rkyv serializes into it, it checksums and writes through
//! to the file in bounded chunks, so a payload is never held twice in memory.

use std::io::{self, IoSlice};

use ledger_storage::{StorageFile, write_all_at};

use rkyv::rancor::{self, Source};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Positional, Writer};

/// Size of the staging buffer for small writes, and of the pieces large writes are cut
/// into (small enough that a piece checksummed is still in L2 when it is written).
pub(crate) const CHUNK_BYTES: usize = 256 * 1024;

/// The rkyv serializer a snapshot payload is serialized with.
///
/// A payload type `T` can be written when `T: for<'a, 'w> Serialize<SnapshotSerializer<'a, 'w>>`,
/// which [`SnapshotPayload`] names; `#[derive(rkyv::Archive, rkyv::Serialize)]` types and
/// the standard containers of them qualify.
pub type SnapshotSerializer<'a, 'w> =
    rkyv::api::high::HighSerializer<&'w mut PayloadWriter, ArenaHandle<'a>, rancor::Error>;

/// A value that can be written as a snapshot payload (any type rkyv can serialize with
/// [`SnapshotSerializer`]). Implemented for every such type.
pub trait SnapshotPayload: for<'a, 'w> rkyv::Serialize<SnapshotSerializer<'a, 'w>> {}

impl<T> SnapshotPayload for T where T: for<'a, 'w> rkyv::Serialize<SnapshotSerializer<'a, 'w>> {}

/// The rkyv [`Writer`] behind [`SnapshotSerializer`]: it writes the payload through to the
/// snapshot file, computing its crc32c on the way.
///
/// Positions it reports to rkyv are relative to the payload start, which the file format
/// places at a 16-byte-aligned offset, so alignment inside the archive carries over.
#[derive(Debug)]
pub struct PayloadWriter {
    file: Box<dyn StorageFile>,
    /// Where the next byte goes in the file.
    file_pos: u64,
    staging: Vec<u8>,
    pos: u64,
    crc: u32,
    failed: Option<io::Error>,
}

/// Marker error handed to rkyv when the file write fails; the real [`io::Error`] is kept
/// in the writer and reported as [`SnapshotError::Io`](crate::SnapshotError::Io).
#[derive(Debug, thiserror::Error)]
#[error("writing the snapshot payload to its file failed")]
struct PayloadWriteFailed;

impl PayloadWriter {
    /// A writer writing to `file` from `offset` on.
    pub(crate) fn new(file: Box<dyn StorageFile>, offset: u64) -> Self {
        Self {
            file,
            file_pos: offset,
            staging: Vec::with_capacity(CHUNK_BYTES),
            pos: 0,
            crc: 0,
            failed: None,
        }
    }

    /// Checksums and writes out whatever is staged.
    fn flush_staging(&mut self) -> io::Result<()> {
        if !self.staging.is_empty() {
            self.crc = crc32c::crc32c_append(self.crc, &self.staging);
            write_all_at(
                self.file.as_ref(),
                self.file_pos,
                &mut [IoSlice::new(&self.staging)],
            )?;
            self.file_pos += self.staging.len() as u64;
            self.staging.clear();
        }
        Ok(())
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        let room = CHUNK_BYTES - self.staging.len();
        if bytes.len() <= room {
            self.staging.extend_from_slice(bytes);
            if self.staging.len() == CHUNK_BYTES {
                self.flush_staging()?;
            }
        } else {
            self.flush_staging()?;
            if bytes.len() < CHUNK_BYTES {
                self.staging.extend_from_slice(bytes);
            } else {
                // Large slices (a copy-optimized Vec<i64>) go straight from the caller's
                // memory to the file: no second copy.
                self.write_through(bytes)?;
            }
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Writes a large slice straight to the file. On several cores its crc32c is
    /// computed on a helper thread while this one writes (both only read `bytes`);
    /// otherwise piece by piece, each piece checksummed just before it is written.
    fn write_through(&mut self, bytes: &[u8]) -> io::Result<()> {
        if crate::crc::threads_for(bytes.len()) < 2 {
            for piece in bytes.chunks(CHUNK_BYTES) {
                self.crc = crc32c::crc32c_append(self.crc, piece);
                write_all_at(
                    self.file.as_ref(),
                    self.file_pos,
                    &mut [IoSlice::new(piece)],
                )?;
                self.file_pos += piece.len() as u64;
            }
            return Ok(());
        }
        let file = self.file.as_ref();
        let start = self.file_pos;
        let (bytes_crc, written) = std::thread::scope(|scope| {
            let helper = scope.spawn(|| crc32c::crc32c(bytes));
            let written = bytes
                .chunks(CHUNK_BYTES)
                .zip((start..).step_by(CHUNK_BYTES))
                .try_for_each(|(piece, at)| write_all_at(file, at, &mut [IoSlice::new(piece)]));
            match helper.join() {
                Ok(crc) => (crc, written),
                // A checksum thread cannot panic; if it somehow did, re-raise it here.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        written?;
        self.file_pos += bytes.len() as u64;
        self.crc = crc32c::crc32c_combine(self.crc, bytes_crc, bytes.len());
        Ok(())
    }

    /// Takes the I/O error that made serialization fail, if that is what happened.
    pub(crate) fn take_failure(&mut self) -> Option<io::Error> {
        self.failed.take()
    }

    /// Writes out the rest and returns the file, the payload length and its crc32c.
    pub(crate) fn finish(mut self) -> io::Result<(Box<dyn StorageFile>, u64, u32)> {
        self.flush_staging()?;
        Ok((self.file, self.pos, self.crc))
    }
}

impl Positional for PayloadWriter {
    fn pos(&self) -> usize {
        // `pos` only grows by lengths of in-memory slices, so it always fits.
        usize::try_from(self.pos).unwrap_or(usize::MAX)
    }
}

impl<E: Source> Writer<E> for PayloadWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.write_bytes(bytes).map_err(|error| {
            self.failed = Some(error);
            E::new(PayloadWriteFailed)
        })
    }
}
