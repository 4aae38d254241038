//! The simulated disk behaves as the fault model says (docs/fault-model.md).

use std::io::{ErrorKind, IoSlice};
use std::path::Path;

use ledger_storage::sim::{Fault, FaultRates, Restart, SimDisk};
use ledger_storage::{OpenMode, Storage, read_full_at, write_all_at};

fn write(storage: &dyn Storage, path: &Path, offset: u64, data: &[u8]) {
    let file = storage.open(path, OpenMode::CreateKeep).expect("open");
    write_all_at(file.as_ref(), offset, &mut [IoSlice::new(data)]).expect("write");
}

fn read(storage: &dyn Storage, path: &Path) -> Option<Vec<u8>> {
    let file = match storage.open(path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => panic!("open: {e}"),
    };
    let mut buf = vec![0; usize::try_from(file.size().expect("len")).expect("fits")];
    let n = read_full_at(file.as_ref(), &mut buf, 0).expect("read");
    assert_eq!(n, buf.len());
    Some(buf)
}

/// A disk with `/d` holding `f`: "synced" durable (file and name), then " more" written.
fn disk_with_unsynced_tail(seed: u64) -> SimDisk {
    let disk = SimDisk::new(seed);
    let storage = disk.storage();
    let dir = Path::new("/d");
    storage.create_dir_all(dir).expect("mkdir");
    write(storage.as_ref(), &dir.join("f"), 0, b"synced");
    let file = storage
        .open(&dir.join("f"), OpenMode::ReadWrite)
        .expect("open");
    file.sync_data().expect("sync");
    storage.sync_dir(dir).expect("sync dir");
    write(storage.as_ref(), &dir.join("f"), 6, &[b'x'; 2000]);
    disk
}

#[test]
fn a_crash_keeps_the_page_cache() {
    let disk = disk_with_unsynced_tail(1);
    disk.restart(Restart::Crash);
    let storage = disk.storage();
    let bytes = read(storage.as_ref(), Path::new("/d/f")).expect("file");
    assert_eq!(bytes.len(), 2006);
    assert_eq!(
        disk.durable_content(Path::new("/d/f")).expect("durable"),
        b"synced"
    );
}

#[test]
fn a_power_loss_keeps_what_was_synced_and_some_whole_sectors_of_the_rest() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let disk = disk_with_unsynced_tail(seed);
        disk.restart(Restart::PowerLoss);
        let bytes = read(disk.storage().as_ref(), Path::new("/d/f")).expect("file");
        assert_eq!(&bytes[..6], b"synced", "seed {seed}");
        assert!(
            bytes[6..].iter().all(|&b| b == b'x' || b == 0),
            "seed {seed}"
        );
        outcomes.insert(bytes.len());
    }
    // Dropped entirely, kept entirely, and torn somewhere between.
    assert!(
        outcomes.contains(&6) && outcomes.contains(&2006),
        "{outcomes:?}"
    );
    assert!(outcomes.len() > 2, "{outcomes:?}");
}

#[test]
fn a_name_is_durable_only_after_the_directory_is_synced() {
    let mut lost = 0;
    for seed in 0..100 {
        let disk = SimDisk::new(seed);
        let storage = disk.storage();
        storage.create_dir_all(Path::new("/d")).expect("mkdir");
        write(storage.as_ref(), Path::new("/d/new"), 0, b"data");
        let file = storage
            .open(Path::new("/d/new"), OpenMode::ReadWrite)
            .expect("open");
        file.sync_all().expect("sync");
        disk.restart(Restart::PowerLoss);
        if read(disk.storage().as_ref(), Path::new("/d/new")).is_none() {
            lost += 1;
        }
    }
    assert!(lost > 0 && lost < 100, "{lost}");

    let disk = SimDisk::new(0);
    let storage = disk.storage();
    storage.create_dir_all(Path::new("/d")).expect("mkdir");
    write(storage.as_ref(), Path::new("/d/new"), 0, b"data");
    storage
        .open(Path::new("/d/new"), OpenMode::Read)
        .expect("open")
        .sync_all()
        .expect("sync");
    storage.sync_dir(Path::new("/d")).expect("sync dir");
    disk.restart(Restart::PowerLoss);
    assert_eq!(
        read(disk.storage().as_ref(), Path::new("/d/new")).as_deref(),
        Some(&b"data"[..])
    );
}

#[test]
fn a_rename_is_atomic_across_a_power_loss() {
    for seed in 0..100 {
        let disk = SimDisk::new(seed);
        let storage = disk.storage();
        storage.create_dir_all(Path::new("/d")).expect("mkdir");
        write(storage.as_ref(), Path::new("/d/a"), 0, b"old");
        storage.sync_dir(Path::new("/d")).expect("sync dir");
        storage
            .open(Path::new("/d/a"), OpenMode::Read)
            .expect("open")
            .sync_all()
            .expect("s");
        write(storage.as_ref(), Path::new("/d/a.tmp"), 0, b"new");
        storage
            .open(Path::new("/d/a.tmp"), OpenMode::Read)
            .expect("o")
            .sync_all()
            .expect("s");
        storage
            .rename(Path::new("/d/a.tmp"), Path::new("/d/a"))
            .expect("rename");
        disk.restart(Restart::PowerLoss);
        let a = read(disk.storage().as_ref(), Path::new("/d/a")).expect("a survives");
        assert!(a == b"old" || a == b"new", "seed {seed}: {a:?}");
    }
}

#[test]
fn a_failed_sync_loses_data_the_cache_still_shows_until_dropped() {
    // Find a seed where the failed sync dropped the whole tail.
    for seed in 0..50 {
        let disk = disk_with_unsynced_tail(seed);
        let storage = disk.storage();
        let file = storage
            .open(Path::new("/d/f"), OpenMode::ReadWrite)
            .expect("open");
        let step = disk.stats().steps;
        disk.fail_at(step, Fault::Io);
        let err = file.sync_data().expect_err("the sync fails");
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        // Reads still show the tail; a later sync succeeds without writing it.
        assert_eq!(
            read(storage.as_ref(), Path::new("/d/f")).expect("f").len(),
            2006
        );
        file.sync_data().expect("nothing to write");
        let durable = disk.durable_content(Path::new("/d/f")).expect("durable");
        file.drop_cache().expect("drop cache");
        let after = read(storage.as_ref(), Path::new("/d/f")).expect("f");
        assert_eq!(
            after, durable,
            "seed {seed}: after dropping the cache, reads see the disk"
        );
        if durable == b"synced" {
            return;
        }
    }
    panic!("no seed lost the whole tail");
}

#[test]
fn a_halted_process_fails_every_call_and_its_handles_die_with_it() {
    let disk = SimDisk::new(3);
    let storage = disk.storage();
    storage.create_dir_all(Path::new("/d")).expect("mkdir");
    let file = storage
        .open(Path::new("/d/f"), OpenMode::CreateKeep)
        .expect("open");
    disk.halt_at(disk.stats().steps + 1);
    file.size().expect("the step before the halt runs");
    let err = file.pwritev(0, &[IoSlice::new(b"x")]).expect_err("halted");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(storage.list(Path::new("/d")).is_err());
    disk.restart(Restart::Crash);
    assert!(file.size().is_err(), "a handle of the old process");
    let storage = disk.storage();
    assert_eq!(
        storage.list(Path::new("/d")).expect("list"),
        vec!["f".to_owned()]
    );
}

#[test]
fn a_halt_under_a_prefix_counts_only_the_calls_there() {
    let disk = SimDisk::new(6);
    let storage = disk.storage();
    storage.create_dir_all(Path::new("/d/a")).expect("mkdir");
    storage.create_dir_all(Path::new("/d/b")).expect("mkdir");
    disk.halt_under(Path::new("/d/a"), 2);
    storage
        .list(Path::new("/d/a"))
        .expect("first call under /d/a");
    for _ in 0..5 {
        storage
            .list(Path::new("/d/b"))
            .expect("calls elsewhere are not counted");
    }
    assert!(
        storage.list(Path::new("/d/a")).is_err(),
        "the second call halts"
    );
    assert!(
        storage.list(Path::new("/d/b")).is_err(),
        "and so does every call after it"
    );
}

#[test]
fn a_lock_is_exclusive_and_released_by_drop_or_restart() {
    let disk = SimDisk::new(4);
    let storage = disk.storage();
    storage.create_dir_all(Path::new("/d")).expect("mkdir");
    let lock = storage.lock(Path::new("/d/lock")).expect("lock");
    let err = storage.lock(Path::new("/d/lock")).expect_err("held");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    drop(lock);
    let _held = storage
        .lock(Path::new("/d/lock"))
        .expect("released by drop");
    disk.restart(Restart::Crash);
    let _again = disk
        .storage()
        .lock(Path::new("/d/lock"))
        .expect("released by restart");
}

#[test]
fn a_full_disk_writes_what_fits_then_refuses() {
    let disk = SimDisk::new(5);
    let storage = disk.storage();
    storage.create_dir_all(Path::new("/d")).expect("mkdir");
    disk.set_capacity(Some(10));
    let file = storage
        .open(Path::new("/d/f"), OpenMode::CreateKeep)
        .expect("open");
    assert_eq!(file.pwritev(0, &[IoSlice::new(&[1; 8])]).expect("fits"), 8);
    assert_eq!(file.pwritev(8, &[IoSlice::new(&[1; 8])]).expect("short"), 2);
    let err = file
        .pwritev(10, &[IoSlice::new(&[1; 8])])
        .expect_err("full");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    // Overwriting inside the file needs no room.
    assert_eq!(
        file.pwritev(0, &[IoSlice::new(&[2; 10])])
            .expect("overwrite"),
        10
    );
}

#[test]
fn random_faults_follow_the_seed_not_the_order_of_calls() {
    let run = |seed: u64, order: bool| {
        let disk = SimDisk::new(seed);
        let storage = disk.storage();
        storage.create_dir_all(Path::new("/d")).expect("mkdir");
        disk.set_fault_rates(FaultRates {
            write: 300_000,
            ..FaultRates::default()
        });
        let names = if order {
            ["/d/a", "/d/b"]
        } else {
            ["/d/b", "/d/a"]
        };
        let files: Vec<_> = names
            .iter()
            .map(|n| {
                (
                    n,
                    storage
                        .open(Path::new(n), OpenMode::CreateKeep)
                        .expect("open"),
                )
            })
            .collect();
        let mut results = std::collections::BTreeMap::new();
        for i in 0..20_u64 {
            for (name, file) in &files {
                let r = file
                    .pwritev(i, &[IoSlice::new(b"ab")])
                    .map_err(|e| e.raw_os_error());
                results.insert((name.to_string(), i), r);
            }
        }
        results
    };
    assert_eq!(run(9, true), run(9, false));
    assert_ne!(run(9, true), run(10, true));
}

#[test]
fn a_sync_takes_at_least_the_latency_set() {
    let disk = SimDisk::new(7);
    let storage = disk.storage();
    storage.create_dir_all(Path::new("/d")).expect("mkdir");
    let file = storage
        .open(Path::new("/d/f"), OpenMode::CreateKeep)
        .expect("open");
    disk.set_sync_latency(std::time::Duration::from_millis(20));
    let started = std::time::Instant::now();
    file.sync_data().expect("sync");
    // A sleep never ends early: a lower bound only, whatever the machine's load.
    assert!(started.elapsed() >= std::time::Duration::from_millis(20));
}
