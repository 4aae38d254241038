//! A simulated disk in memory, for tests: power loss, process crashes and injected faults.
//!
//! [`SimDisk`] keeps, per file, what is durable apart from what was only written (the page
//! cache), and per directory which names are durable. [`SimDisk::storage`] hands out a
//! [`Storage`] for one "process"; [`SimDisk::restart`] ends that process and starts the
//! next, after either
//!
//! - a **process crash** ([`Restart::Crash`], kill -9): the page cache survives, so every
//!   write is still there and still not durable; or
//! - a **power loss** ([`Restart::PowerLoss`]): per file, the unsynced writes are dropped,
//!   or a prefix of them kept, or each 512-byte sector of them kept or dropped at random;
//!   per directory, a prefix of the unsynced creates, renames and deletes is kept (a
//!   journal keeps metadata in order).
//!
//! A process can be stopped at any step ([`SimDisk::halt_at`]): from that operation on,
//! every call of that process fails with `EIO`, as if it had died there. Any call can be
//! made to fail: on a chosen step ([`SimDisk::fail_at`]) or at random ([`FaultRates`]),
//! with `EIO`, `ENOSPC` or a short write; a failed `fdatasync` keeps a random part of what
//! it was writing and loses the rest, which reads still return until
//! [`StorageFile::drop_cache`] (as Linux does). A capacity makes writes past it `ENOSPC`.
//! Latency can be added to syncs.
//!
//! Random decisions come from the seed and the file's path and count of operations, not
//! from the order of calls across threads, so the same seed makes the same decisions for
//! the same per-file sequence of operations. Simplifications: directories are durable once
//! created; a rename is within one directory; `sync_all` of a file does not make its name
//! durable (only [`Storage::sync_dir`] does).

mod file;
mod rng;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use file::SECTOR_BYTES;
use file::{Inode, Tear};
pub use rng::Rng;

use crate::{LockGuard, Mapped, OpenMode, Storage, StorageFile};

/// How a simulated process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// kill -9: the page cache survives.
    Crash,
    /// The plug is pulled: only what was synced survives (and what the tear kept).
    PowerLoss,
}

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `EIO`.
    Io,
    /// `ENOSPC`.
    NoSpace,
    /// A write writes only part of its bytes (and reports how many); other calls `EIO`.
    ShortWrite,
}

/// Chances per million that one call of each kind fails. All zero by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultRates {
    /// `pwritev` and `set_len`: `EIO`, `ENOSPC` or a short write.
    pub write: u32,
    /// `fdatasync` / `fsync` of a file.
    pub sync: u32,
    /// Create, rename, unlink, directory sync.
    pub dir: u32,
    /// `pread`, map, list.
    pub read: u32,
}

/// What happened on a disk so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Operations (every call of every process).
    pub steps: u64,
    /// Calls that failed by injection (chosen, random, or capacity).
    pub faults: u64,
    /// Processes that ended in a crash.
    pub crashes: u64,
    /// Processes that ended in a power loss.
    pub power_losses: u64,
}

/// The kind of one call, for fault rates and for [`SimDisk::fail_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Call {
    Write,
    Sync,
    Dir,
    Read,
    Other,
}

/// A simulated disk, shared by every handle (clone it freely).
#[derive(Debug, Clone)]
pub struct SimDisk {
    shared: Arc<Mutex<Disk>>,
}

#[derive(Debug)]
struct Disk {
    seed: u64,
    generation: u64,
    halt_at: Option<u64>,
    /// Halt at the n-th call (counting from 1) on a path under this prefix.
    halt_under: Option<(PathBuf, u64)>,
    halted: bool,
    stats: SimStats,
    rates: FaultRates,
    chosen: BTreeMap<u64, Fault>,
    capacity: Option<u64>,
    sync_latency: Duration,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    dirs: BTreeMap<PathBuf, Dir>,
    locks: HashMap<PathBuf, u64>,
    /// Per (path, call kind): how many such calls so far; keys the random draws.
    counters: HashMap<(PathBuf, Call), u64>,
}

#[derive(Debug, Default)]
struct Dir {
    current: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    /// Changes of `current` since the last sync, in order.
    pending: Vec<DirChange>,
}

#[derive(Debug, Clone)]
enum DirChange {
    Link(String, u64),
    Unlink(String),
    Rename(String, String, u64),
}

impl Dir {
    fn apply(names: &mut BTreeMap<String, u64>, change: &DirChange) {
        match change {
            DirChange::Link(name, inode) => {
                names.insert(name.clone(), *inode);
            }
            DirChange::Unlink(name) => {
                names.remove(name);
            }
            DirChange::Rename(from, to, inode) => {
                names.remove(from);
                names.insert(to.clone(), *inode);
            }
        }
    }

    fn change(&mut self, change: DirChange) {
        Self::apply(&mut self.current, &change);
        self.pending.push(change);
    }
}

impl SimDisk {
    /// An empty disk whose random decisions follow `seed`.
    #[must_use]
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            shared: Arc::new(Mutex::new(Disk {
                seed,
                generation: 0,
                halt_at: None,
                halt_under: None,
                halted: false,
                stats: SimStats::default(),
                rates: FaultRates::default(),
                chosen: BTreeMap::new(),
                capacity: None,
                sync_latency: Duration::ZERO,
                inodes: HashMap::new(),
                next_inode: 1,
                dirs: BTreeMap::new(),
                locks: HashMap::new(),
                counters: HashMap::new(),
            })),
        }
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic while holding the lock is a bug in a test; its state is still usable.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The storage of the current process.
    #[must_use]
    pub fn storage(&self) -> Arc<dyn Storage> {
        let generation = self.disk().generation;
        Arc::new(SimStorage {
            disk: self.clone(),
            generation,
        })
    }

    /// Ends the current process (its handles fail from now on, its locks are released)
    /// and starts the next one, after a crash or a power loss.
    pub fn restart(&self, how: Restart) {
        let mut disk = self.disk();
        disk.generation += 1;
        disk.halt_at = None;
        disk.halt_under = None;
        disk.halted = false;
        disk.locks.clear();
        match how {
            Restart::Crash => disk.stats.crashes += 1,
            Restart::PowerLoss => {
                disk.stats.power_losses += 1;
                disk.lose_power();
            }
        }
    }

    /// From step `step` on (see [`SimDisk::stats`]), every call of the current process
    /// fails with `EIO`, as if it had died just before it.
    pub fn halt_at(&self, step: u64) {
        let mut disk = self.disk();
        disk.halt_at = Some(step);
        disk.halted = disk.stats.steps >= step;
    }

    /// The `nth` call (from 1) of the current process on a path under `prefix`, and every
    /// call after it, fail with `EIO`: a crash at a point of one file's or directory's
    /// sequence of operations, which (unlike a global step) does not depend on how other
    /// threads' calls interleave.
    pub fn halt_under(&self, prefix: &Path, nth: u64) {
        assert!(nth >= 1, "calls are counted from 1");
        self.disk().halt_under = Some((prefix.to_path_buf(), nth));
    }

    /// Halts the current process now.
    pub fn halt(&self) {
        let mut disk = self.disk();
        disk.halted = true;
    }

    /// Makes the call at step `step` fail with `fault`.
    pub fn fail_at(&self, step: u64, fault: Fault) {
        self.disk().chosen.insert(step, fault);
    }

    /// Takes back every armed fault: chosen steps, random rates, the capacity.
    pub fn clear_faults(&self) {
        let mut disk = self.disk();
        disk.chosen.clear();
        disk.rates = FaultRates::default();
        disk.capacity = None;
    }

    /// Random fault rates from now on.
    pub fn set_fault_rates(&self, rates: FaultRates) {
        self.disk().rates = rates;
    }

    /// The random fault rates in force.
    #[must_use]
    pub fn fault_rates(&self) -> FaultRates {
        self.disk().rates
    }

    /// Writes that would take the disk's files past `bytes` in all fail with `ENOSPC`
    /// (or write what fits). `None`: unbounded.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.disk().capacity = bytes;
    }

    /// Each file sync takes at least this long.
    pub fn set_sync_latency(&self, latency: Duration) {
        self.disk().sync_latency = latency;
    }

    /// Bytes in all files, as the page cache shows them.
    #[must_use]
    pub fn used_bytes(&self) -> u64 {
        self.disk().used_bytes()
    }

    /// What happened so far.
    #[must_use]
    pub fn stats(&self) -> SimStats {
        self.disk().stats
    }

    /// The durable content of `path` (what a power loss now would leave, before tears of
    /// unsynced writes), or `None` if its name is not durable.
    #[must_use]
    pub fn durable_content(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = self.disk();
        let (dir, name) = split(path).ok()?;
        let inode = *disk.dirs.get(dir)?.durable.get(name)?;
        disk.inodes.get(&inode).map(|i| i.durable.clone())
    }
}

impl Disk {
    /// Counts one call and decides whether it fails. `Err` for a halted process or an
    /// injected fault (returned as the error to give).
    fn step(&mut self, generation: u64, key: &Path, call: Call) -> Result<(), Fault> {
        let step = self.stats.steps;
        self.stats.steps += 1;
        if generation != self.generation {
            return Err(Fault::Io); // a handle of a process that has ended
        }
        if self.halt_at.is_some_and(|h| step >= h) {
            self.halted = true;
        }
        if let Some((prefix, left)) = &mut self.halt_under
            && key.starts_with(prefix.as_path())
        {
            *left -= 1;
            if *left == 0 {
                self.halted = true;
                self.halt_under = None;
            }
        }
        if self.halted {
            return Err(Fault::Io);
        }
        if let Some(fault) = self.chosen.remove(&step) {
            self.stats.faults += 1;
            return Err(fault);
        }
        let rate = match call {
            Call::Write => self.rates.write,
            Call::Sync => self.rates.sync,
            Call::Dir => self.rates.dir,
            Call::Read => self.rates.read,
            Call::Other => 0,
        };
        if rate == 0 {
            return Ok(());
        }
        let mut rng = self.rng_for(key, call);
        if !rng.chance(rate) {
            return Ok(());
        }
        self.stats.faults += 1;
        Err(match (call, rng.below(3)) {
            (Call::Write, 0) => Fault::ShortWrite,
            (Call::Write | Call::Dir, 1) => Fault::NoSpace,
            _ => Fault::Io,
        })
    }

    /// A generator for the next call of kind `call` on `key`: the same for the same seed,
    /// path and count, whatever other threads did meanwhile.
    fn rng_for(&mut self, key: &Path, call: Call) -> Rng {
        let count = self.counters.entry((key.to_path_buf(), call)).or_insert(0);
        *count += 1;
        let mut h = rng::mix(self.seed ^ 0x5EED);
        for byte in key.as_os_str().as_encoded_bytes() {
            h = rng::mix(h ^ u64::from(*byte));
        }
        h = rng::mix(h ^ (call as u64) ^ (*count << 8) ^ (self.generation << 40));
        Rng::new(h)
    }

    fn lose_power(&mut self) {
        let mut rng = Rng::new(rng::mix(self.seed ^ self.generation.rotate_left(32)));
        let mut ids: Vec<u64> = self.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let inode = self.inode_mut(id);
            let tear = Tear::pick(&mut rng, inode.pending.len());
            inode.lose_power(tear, &mut rng);
        }
        for dir in self.dirs.values_mut() {
            let kept = usize::try_from(rng.below(dir.pending.len() as u64 + 1)).unwrap_or(0);
            for change in dir.pending.drain(..).take(kept) {
                Dir::apply(&mut dir.durable, &change);
            }
            dir.current = dir.durable.clone();
        }
        // Files with no durable name are gone.
        let linked: std::collections::HashSet<u64> = self
            .dirs
            .values()
            .flat_map(|d| d.current.values().copied())
            .collect();
        self.inodes.retain(|id, _| linked.contains(id));
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(dir)
            .and_then(|d| d.current.get(name))
            .copied()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs
            .get_mut(dir)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn inode_mut(&mut self, id: u64) -> &mut Inode {
        self.inodes.entry(id).or_default()
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.cached.len() as u64).sum()
    }

    /// Opens `path`, creating it if `create`; returns its inode.
    fn open(&mut self, path: &Path, create: bool) -> io::Result<u64> {
        if let Ok(inode) = self.lookup(path) {
            return Ok(inode);
        }
        if !create {
            return Err(io::ErrorKind::NotFound.into());
        }
        let (dir, name) = split(path)?;
        let inode = self.next_inode;
        self.dir_mut(dir)?
            .change(DirChange::Link(name.to_owned(), inode));
        self.next_inode += 1;
        self.inodes.insert(inode, Inode::default());
        Ok(inode)
    }
}

fn split(path: &Path) -> io::Result<(&Path, &str)> {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io::ErrorKind::InvalidInput.into()),
    }
}

fn fault_error(fault: Fault) -> io::Error {
    match fault {
        Fault::NoSpace => io::Error::from_raw_os_error(libc::ENOSPC),
        Fault::Io | Fault::ShortWrite => io::Error::from_raw_os_error(libc::EIO),
    }
}

/// One process's view of a [`SimDisk`].
#[derive(Debug)]
struct SimStorage {
    disk: SimDisk,
    generation: u64,
}

impl SimStorage {
    /// Runs one call: counts it, injects a fault or runs `op` on the disk.
    fn call<T>(
        &self,
        key: &Path,
        call: Call,
        op: impl FnOnce(&mut Disk) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut disk = self.disk.disk();
        disk.step(self.generation, key, call).map_err(fault_error)?;
        op(&mut disk)
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.call(dir, Call::Other, |disk| {
            for ancestor in dir.ancestors() {
                disk.dirs.entry(ancestor.to_path_buf()).or_default();
            }
            Ok(())
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.call(dir, Call::Read, |disk| {
            let d = disk.dir_mut(dir)?;
            Ok(d.current.keys().cloned().collect())
        })
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let create = matches!(mode, OpenMode::CreateTruncate | OpenMode::CreateKeep);
        let call = if create { Call::Dir } else { Call::Other };
        let inode = self.call(path, call, |disk| {
            let inode = disk.open(path, create)?;
            if mode == OpenMode::CreateTruncate {
                disk.inode_mut(inode).set_len(0);
            }
            Ok(inode)
        })?;
        Ok(Box::new(SimFile {
            disk: self.disk.clone(),
            generation: self.generation,
            path: path.to_path_buf(),
            inode,
            writable: mode != OpenMode::Read,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.call(to, Call::Dir, |disk| {
            let (dir, from_name) = split(from)?;
            let (to_dir, to_name) = split(to)?;
            if dir != to_dir {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
            let inode = disk.lookup(from)?;
            disk.dir_mut(dir)?.change(DirChange::Rename(
                from_name.to_owned(),
                to_name.to_owned(),
                inode,
            ));
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.call(path, Call::Dir, |disk| {
            disk.lookup(path)?;
            let (dir, name) = split(path)?;
            disk.dir_mut(dir)?
                .change(DirChange::Unlink(name.to_owned()));
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.call(dir, Call::Dir, |disk| {
            let d = disk.dir_mut(dir)?;
            d.pending.clear();
            d.durable = d.current.clone();
            Ok(())
        })
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.call(path, Call::Other, |disk| {
            disk.open(path, true)?;
            if disk.locks.contains_key(path) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            disk.locks.insert(path.to_path_buf(), self.generation);
            Ok(())
        })?;
        Ok(Box::new(SimLock {
            disk: self.disk.clone(),
            path: path.to_path_buf(),
            generation: self.generation,
        }))
    }

    fn map(&self, path: &Path) -> io::Result<Mapped> {
        self.call(path, Call::Read, |disk| {
            let inode = disk.lookup(path)?;
            Ok(Mapped::copy_of(&disk.inode_mut(inode).cached))
        })
    }
}

/// An open file of a [`SimDisk`].
#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    generation: u64,
    path: PathBuf,
    inode: u64,
    writable: bool,
}

impl SimFile {
    fn call<T>(&self, call: Call, op: impl FnOnce(&mut Disk) -> io::Result<T>) -> io::Result<T> {
        let mut disk = self.disk.disk();
        disk.step(self.generation, &self.path, call)
            .map_err(fault_error)?;
        op(&mut disk)
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EBADF))
        }
    }
}

impl StorageFile for SimFile {
    fn pwritev(&self, offset: u64, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.check_writable()?;
        let data: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let mut disk = self.disk.disk();
        let short = match disk.step(self.generation, &self.path, Call::Write) {
            Ok(()) => false,
            Err(Fault::ShortWrite) if data.len() >= 2 => true,
            Err(fault) => return Err(fault_error(fault)),
        };
        let mut len = data.len();
        if short {
            let mut rng = disk.rng_for(&self.path, Call::Other);
            len = 1 + usize::try_from(rng.below(data.len() as u64 - 1)).unwrap_or(0);
        }
        if let Some(capacity) = disk.capacity {
            let used = disk.used_bytes();
            let size = disk.inode_mut(self.inode).cached.len() as u64;
            let growth = (offset + len as u64).saturating_sub(size);
            let room = capacity.saturating_sub(used);
            if growth > room {
                let fits = usize::try_from(size.saturating_add(room).saturating_sub(offset))
                    .unwrap_or(0)
                    .min(len);
                if fits == 0 {
                    disk.stats.faults += 1;
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                len = fits;
            }
        }
        disk.inode_mut(self.inode).write(offset, &data[..len]);
        Ok(len)
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.call(Call::Read, |disk| {
            let bytes = &disk.inode_mut(self.inode).cached;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let n = (bytes.len() - start).min(buf.len());
            buf[..n].copy_from_slice(&bytes[start..start + n]);
            Ok(n)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        let latency = self.disk.disk().sync_latency;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        let mut disk = self.disk.disk();
        match disk.step(self.generation, &self.path, Call::Sync) {
            Ok(()) => {
                disk.inode_mut(self.inode).sync();
                Ok(())
            }
            Err(fault) => {
                if disk.generation == self.generation && !disk.halted {
                    // A sync the disk failed: part of the data may be written, the rest
                    // lost while the cache still shows it.
                    let mut rng = disk.rng_for(&self.path, Call::Other);
                    let inode = disk.inode_mut(self.inode);
                    let tear = Tear::pick(&mut rng, inode.pending.len());
                    inode.fail_sync(tear, &mut rng);
                }
                Err(fault_error(fault))
            }
        }
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.call(Call::Write, |disk| {
            disk.inode_mut(self.inode).set_len(len);
            Ok(())
        })
    }

    fn size(&self) -> io::Result<u64> {
        self.call(Call::Other, |disk| {
            Ok(disk.inode_mut(self.inode).cached.len() as u64)
        })
    }

    fn drop_cache(&self) -> io::Result<()> {
        self.call(Call::Other, |disk| {
            disk.inode_mut(self.inode).drop_cache();
            Ok(())
        })
    }
}

/// A lock held on a [`SimDisk`], released when dropped or when its process ends.
#[derive(Debug)]
struct SimLock {
    disk: SimDisk,
    path: PathBuf,
    generation: u64,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut disk = self.disk.disk();
        if disk.locks.get(&self.path) == Some(&self.generation) {
            disk.locks.remove(&self.path);
        }
    }
}
