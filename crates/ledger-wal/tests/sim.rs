//! The WAL on a simulated disk: crashes, power losses and failed syncs, against a model of
//! what was acknowledged (docs/fault-model.md).
//!
//! A seeded run appends frames, syncs (an acknowledged sync is a promise), and now and then
//! crashes the process, cuts the power or fails a write or a sync. After every reopen:
//! every acknowledged record is there with its bytes, and what the log reports is durable
//! (a power loss right after the reopen takes nothing away).

use ledger_storage::sim::{Fault, FaultRates, Restart, Rng, SimDisk};
use ledger_wal::{Wal, WalConfig, WalError, WalReader};

const DIR: &str = "/wal";

/// The payload of the frame holding `first..=last`: derived from the range, so a read-back
/// is checked byte for byte.
fn payload(first: u64, last: u64) -> Vec<u8> {
    let len = usize::try_from((first * 37 + last * 11) % 700).expect("small") + 1;
    (0..len).map(|i| (first as usize + i * 7) as u8).collect()
}

fn config() -> WalConfig {
    // Small segments: rotation happens often.
    WalConfig::default().with_segment_bytes_max(ledger_wal::SEGMENT_BYTES_MIN.max(8 << 10))
}

/// Reads every record back and checks its frame's bytes; returns the next sequence.
fn read_back(disk: &SimDisk) -> Result<Option<u64>, WalError> {
    let reader = WalReader::open_on(disk.storage(), DIR)?;
    let mut frames = reader.frames();
    while let Some(frame) = frames.next_frame()? {
        let Some(last) = frame.last_seq() else {
            continue; // a durable mark
        };
        assert_eq!(
            frame.payload,
            payload(frame.first_seq, last),
            "frame {}",
            frame.first_seq
        );
    }
    Ok(reader.first_seq().map(|_| frames.next_seq()))
}

#[derive(Debug, Default)]
struct Counts {
    reopens: u64,
    power_losses: u64,
    failed_syncs: u64,
}

fn run(seed: u64, steps: u32, rates: FaultRates, counts: &mut Counts) {
    let disk = SimDisk::new(seed);
    let mut rng = Rng::new(seed ^ 0xA11CE);
    // The last acknowledged sequence (a sync returned Ok covering it).
    let mut acked: Option<u64> = None;
    let mut wal = Some(
        Wal::open_on(disk.storage(), DIR, config())
            .expect("fresh open")
            .0,
    );
    disk.set_fault_rates(rates);
    let mut next = 1_u64;
    for _ in 0..steps {
        let Some(w) = wal.as_mut() else {
            unreachable!("reopened after every restart")
        };
        // Any failed append or sync poisons the writer.
        let mut failed = false;
        match rng.below(100) {
            0..=59 => {
                let last = next + rng.below(5);
                match w.append(next, last, &payload(next, last)) {
                    Ok(_) => next = last + 1,
                    Err(_) => failed = true,
                }
            }
            60..=84 => match w.sync() {
                Ok(durable) => acked = durable.last_seq(),
                Err(_) => failed = true,
            },
            85..=89 => {
                // The next call fails: an append's write or a sync.
                let fault = [Fault::Io, Fault::NoSpace, Fault::ShortWrite][rng.below(3) as usize];
                disk.fail_at(disk.stats().steps, fault);
                if had_unsynced(w) && rng.below(2) == 0 {
                    counts.failed_syncs += 1;
                    assert!(w.sync().is_err(), "seed {seed}: a failed sync is reported");
                    failed = true;
                } else {
                    let last = next + rng.below(5);
                    match w.append(next, last, &payload(next, last)) {
                        Ok(_) => next = last + 1,
                        Err(_) => failed = true,
                    }
                }
            }
            _ => {
                let how = if rng.below(2) == 0 {
                    Restart::Crash
                } else {
                    counts.power_losses += 1;
                    Restart::PowerLoss
                };
                drop(wal.take());
                disk.restart(how);
                wal = Some(reopen(&disk, acked, &mut next, counts, seed));
            }
        }
        if failed {
            // Reopened in-process (no crash): what it reads must be the disk's, not pages
            // a failed sync left looking written in the cache.
            drop(wal.take());
            wal = Some(reopen(&disk, acked, &mut next, counts, seed));
        }
    }
}

/// Whether a writer has appended since its last sync (a sync of nothing cannot fail).
fn had_unsynced(w: &Wal) -> bool {
    w.next_seq() != w.durable().next_seq
}

fn reopen(
    disk: &SimDisk,
    acked: Option<u64>,
    next: &mut u64,
    counts: &mut Counts,
    seed: u64,
) -> Wal {
    counts.reopens += 1;
    // Recovery itself runs on a healthy disk here (the engine's simulator fails it too).
    let rates = disk.fault_rates();
    disk.set_fault_rates(FaultRates::default());
    let (wal, report) = match Wal::open_on(disk.storage(), DIR, config()) {
        Ok(opened) => opened,
        Err(e) => {
            panic!("seed {seed}: recovery refused a log whose acknowledged data is intact: {e}")
        }
    };
    let recovered = report.last_seq();
    assert!(
        recovered >= acked,
        "seed {seed}: acknowledged up to {acked:?}, recovered up to {recovered:?}"
    );
    assert_eq!(
        read_back(disk).expect("read back"),
        report.next_seq,
        "seed {seed}"
    );
    // What was reported is durable: a power loss now takes none of it away.
    drop(wal);
    disk.restart(Restart::PowerLoss);
    counts.power_losses += 1;
    let (wal, again) =
        Wal::open_on(disk.storage(), DIR, config()).expect("reopen after power loss");
    assert_eq!(
        again.last_seq(),
        recovered,
        "seed {seed}: reported but not durable"
    );
    *next = again.next_seq.unwrap_or(1);
    disk.set_fault_rates(rates);
    wal
}

#[test]
fn acknowledged_frames_survive_crashes_power_losses_and_failed_syncs() {
    let mut counts = Counts::default();
    for seed in 0..300 {
        run(seed, 200, FaultRates::default(), &mut counts);
    }
    assert!(
        counts.reopens > 1000 && counts.power_losses > 1000,
        "{counts:?}"
    );
}

/// Issue 18: a restart after kill -9 between `pwritev` and `fdatasync` replayed frames that
/// were only in the page cache and reported them committed; a power loss then took them.
#[test]
fn frames_a_killed_writer_left_unsynced_are_made_durable_before_they_are_reported() {
    for seed in 0..20 {
        let disk = SimDisk::new(seed);
        let (mut wal, _) = Wal::open_on(disk.storage(), DIR, config()).expect("open");
        wal.append(1, 3, &payload(1, 3)).expect("append");
        wal.sync().expect("sync");
        wal.append(4, 5, &payload(4, 5))
            .expect("append, never synced");
        drop(wal);
        disk.restart(Restart::Crash);
        let (wal, report) = Wal::open_on(disk.storage(), DIR, config()).expect("reopen");
        assert_eq!(
            report.last_seq(),
            Some(5),
            "the page cache still holds 4..=5"
        );
        drop(wal);
        disk.restart(Restart::PowerLoss);
        let (_wal, report) = Wal::open_on(disk.storage(), DIR, config()).expect("reopen");
        assert_eq!(
            report.last_seq(),
            Some(5),
            "seed {seed}: reported at open, so durable"
        );
    }
}

/// Issue 18: after a failed fdatasync, reopening in the same process read the page cache,
/// whose pages Linux had marked clean: frames the disk never got were reported.
#[test]
fn after_a_failed_sync_a_reopen_reads_what_the_disk_has() {
    let mut lost_whole_tail = false;
    for seed in 0..40 {
        let disk = SimDisk::new(seed);
        let (mut wal, _) = Wal::open_on(disk.storage(), DIR, config()).expect("open");
        wal.append(1, 3, &payload(1, 3)).expect("append");
        wal.sync().expect("sync");
        wal.append(4, 5, &payload(4, 5)).expect("append");
        disk.fail_at(disk.stats().steps, Fault::Io);
        assert!(wal.sync().is_err());
        drop(wal);
        let (wal, report) = Wal::open_on(disk.storage(), DIR, config()).expect("reopen");
        drop(wal);
        // Whatever the reopen reported is what a power loss leaves.
        disk.restart(Restart::PowerLoss);
        let (_wal, after) = Wal::open_on(disk.storage(), DIR, config()).expect("reopen");
        assert_eq!(report.last_seq(), after.last_seq(), "seed {seed}");
        if report.last_seq() == Some(3) {
            lost_whole_tail = true;
        }
    }
    assert!(lost_whole_tail, "some seed's failed sync lost frames 4..=5");
}

#[test]
fn random_write_sync_and_directory_faults_never_lose_an_acknowledged_frame() {
    let mut counts = Counts::default();
    let rates = FaultRates {
        write: 20_000,
        sync: 20_000,
        dir: 20_000,
        read: 0,
    };
    for seed in 1000..1200 {
        run(seed, 200, rates, &mut counts);
    }
    assert!(counts.reopens > 500, "{counts:?}");
}
