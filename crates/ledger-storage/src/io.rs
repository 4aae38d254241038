//! Whole-buffer reads and writes on top of [`StorageFile`]'s single calls.

use std::io::{self, IoSlice};

use crate::StorageFile;

/// Writes all of `bufs` at `offset`, continuing after short writes. A call that writes
/// nothing is `WriteZero`.
///
/// # Errors
/// The first failed write (what was written before it stays written).
pub fn write_all_at(
    file: &dyn StorageFile,
    mut offset: u64,
    bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    let mut slices: &mut [IoSlice<'_>] = bufs;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = file.pwritev(offset, slices)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
        offset += n as u64;
    }
    Ok(())
}

/// Reads from `offset` until `buf` is full or the file ends; returns the bytes read.
///
/// # Errors
/// The first failed read.
pub fn read_full_at(file: &dyn StorageFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(dst) = buf.get_mut(got..) else { break };
        match file.pread(dst, offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The whole file at `path`, read through `storage`.
///
/// # Errors
/// Opening or reading it (`NotFound` for a missing file).
pub fn read_whole(storage: &dyn crate::Storage, path: &std::path::Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, crate::OpenMode::Read)?;
    let len = usize::try_from(file.size()?).map_err(io::Error::other)?;
    let mut bytes = vec![0; len];
    let read = read_full_at(file.as_ref(), &mut bytes, 0)?;
    bytes.truncate(read);
    Ok(bytes)
}

/// Writes `bytes` as `dir/name` durably and atomically: into `dir/name.tmp`, synced, then
/// renamed over `name` and the directory synced ([`crate::AtomicFile`]). A crash leaves
/// the old file or the new one, never a mix.
///
/// # Errors
/// The failed step (the old file, if any, is left as it was).
pub fn write_whole(
    storage: &dyn crate::Storage,
    dir: &std::path::Path,
    name: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let tmp = format!("{name}.tmp");
    let (atomic, file) = crate::AtomicFile::create(storage, dir, &tmp, name).map_err(|(_, e)| e)?;
    write_all_at(file.as_ref(), 0, &mut [IoSlice::new(bytes)])?;
    atomic.commit(file.as_ref()).map_err(|(_, e)| e)
}
