//! [`OsStorage`]: the real file system, one system call per operation.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use crate::{LockGuard, Mapped, OpenMode, Storage, StorageFile};

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsStorage;

impl Storage for OsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            // Names that are not UTF-8 are no file of ours.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::CreateTruncate => {
                options.write(true).create(true).truncate(true);
            }
            OpenMode::CreateKeep => {
                options.write(true).create(true).truncate(false);
            }
        }
        Ok(Box::new(OsFile(options.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(OsLock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn map(&self, path: &Path) -> io::Result<Mapped> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Mapped::empty());
        }
        // SAFETY: the map is read-only (PROT_READ), so this process never writes through
        // it, and `Mapped` owns it, so it outlives every borrow of its bytes. The one
        // hazard is another program truncating or rewriting the file while it is mapped;
        // the layers only map files they never modify after creating them, and check
        // every byte before interpreting it.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }?;
        Ok(Mapped::from_mmap(map))
    }
}

/// A file of [`OsStorage`].
#[derive(Debug)]
struct OsFile(File);

impl StorageFile for OsFile {
    fn pwritev(&self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let count = libc::c_int::try_from(bufs.len()).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (documented by
            // std); the slices and the buffers they point to outlive the call; `count` is
            // at most their number.
            let n = unsafe {
                libc::pwritev(
                    self.0.as_raw_fd(),
                    bufs.as_ptr().cast::<libc::iovec>(),
                    count,
                    off,
                )
            };
            if let Ok(n) = usize::try_from(n) {
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let invalid = |_| io::Error::from(io::ErrorKind::InvalidInput);
        let off = libc::off64_t::try_from(offset).map_err(invalid)?;
        let len = libc::off64_t::try_from(len).map_err(invalid)?;
        // SAFETY: a plain syscall on a descriptor `self` keeps open; no memory is passed.
        let rc = unsafe {
            libc::sync_file_range(self.0.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn drop_cache(&self) -> io::Result<()> {
        // SAFETY: a plain syscall on a descriptor `self` keeps open; no memory is passed.
        let rc =
            unsafe { libc::posix_fadvise(self.0.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        // posix_fadvise returns the error number instead of setting errno.
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }
}

/// A lock of [`OsStorage`]: the open lock file (`flock`, released when closed).
#[derive(Debug)]
struct OsLock(#[allow(dead_code)] File);

impl LockGuard for OsLock {}
