//! WAL append + sync and read-back throughput, each beside its floor on the same disk.
//!
//! - `append_sync/<batch>`: one batch = one frame, then one `fdatasync` (the slowest
//!   commit pattern: a group commit per batch).
//!   - `floor_write_fdatasync`: a bare loop of `write_all(batch)` + `fdatasync` appending to
//!     one file (the floor the issue names);
//!   - `wal_append_sync`: `Wal::append` + `Wal::sync` (default config: 64 MiB segments,
//!     no pre-zeroing; rotation, header, crc32c and the segment's `fdatasync` + directory
//!     `fsync` are all inside the measurement);
//!   - `wal_append_with_sync`: the engine's path, the payload encoded (here: copied) into
//!     the WAL's own buffer by `append_with`;
//!   - `floor_overwrite_fdatasync` and `wal_prealloc_append_sync`: the same on blocks
//!     already written (a pre-zeroed file; for the WAL, `preallocate: true`, which
//!     zero-fills each new segment synchronously inside the measurement).
//! - `read/<frame>`: reading back a 256 MiB log from the page cache.
//!   - `floor_pread`: `pread` of the segment files in 4 MiB chunks into one buffer;
//!   - `floor_pread_crc32c`: the same plus crc32c over every chunk (the checks' floor);
//!   - `wal_frames`: `WalReader::frames()` over all frames (every checksum verified).
//! - `interleaved` (printed after criterion, always runs, even with a filter): the floor,
//!   `append`+`sync`, `append_with`+`sync`, the WAL without the checksum overlap, and a
//!   framed floor (block-rounded bytes + crc32c) taking turns in rounds, so a change in
//!   background load hits all alike; prints MiB/s, frames/s, % of the floor and p50/p99
//!   latency per batch size. `cargo bench ... -- interleaved` runs only the setup of the
//!   criterion groups and this table.
//!
//! Run: `flock /tmp/ledger-bench.lock cargo bench -p ledger-wal --bench wal`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ledger_wal::{Wal, WalConfig, WalReader};

const BATCHES: [(&str, usize); 3] = [("4K", 4 << 10), ("64K", 64 << 10), ("1M", 1 << 20)];
const SEGMENT_BYTES: u64 = 64 << 20;

fn configure<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

fn batch(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A file of `bytes` zeros, made durable, for the overwrite floor.
fn zeroed_file(path: &Path, bytes: u64) -> File {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let zeros = vec![0_u8; 1 << 20];
    for _ in 0..bytes / zeros.len() as u64 {
        f.write_all(&zeros).unwrap();
    }
    f.sync_all().unwrap();
    f
}

fn bench_append_sync(c: &mut Criterion) {
    for (label, len) in BATCHES {
        let data = batch(len);
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut group = configure(c, &format!("append_sync/{label}"));
        group.throughput(Throughput::Bytes(len as u64));

        let mut floor = File::create(dir.path().join("floor.bin")).unwrap();
        group.bench_function(BenchmarkId::from_parameter("floor_write_fdatasync"), |b| {
            b.iter(|| {
                floor.write_all(black_box(&data)).unwrap();
                floor.sync_data().unwrap();
            });
        });
        drop(floor);
        std::fs::remove_file(dir.path().join("floor.bin")).unwrap();

        let cfg = WalConfig::default().with_segment_bytes_max(SEGMENT_BYTES);
        let (mut wal, _) = Wal::open(dir.path().join("wal"), cfg).unwrap();
        let mut seq = 1_u64;
        group.bench_function(BenchmarkId::from_parameter("wal_append_sync"), |b| {
            b.iter(|| {
                wal.append(seq, seq, black_box(&data)).unwrap();
                seq += 1;
                wal.sync().unwrap()
            });
        });
        group.bench_function(BenchmarkId::from_parameter("wal_append_with_sync"), |b| {
            b.iter(|| {
                wal.append_with(seq, seq, |buf| buf.extend_from_slice(black_box(&data)))
                    .unwrap();
                seq += 1;
                wal.sync().unwrap()
            });
        });
        drop(wal);
        std::fs::remove_dir_all(dir.path().join("wal")).unwrap();

        let mut over = zeroed_file(&dir.path().join("over.bin"), SEGMENT_BYTES);
        let mut pos = 0_u64;
        group.bench_function(
            BenchmarkId::from_parameter("floor_overwrite_fdatasync"),
            |b| {
                b.iter(|| {
                    if pos + len as u64 > SEGMENT_BYTES {
                        pos = 0;
                        over.seek(SeekFrom::Start(0)).unwrap();
                    }
                    over.write_all(black_box(&data)).unwrap();
                    over.sync_data().unwrap();
                    pos += len as u64;
                });
            },
        );
        drop(over);

        let cfg = cfg.with_preallocate(true);
        let (mut wal, _) = Wal::open(dir.path().join("wal-pre"), cfg).unwrap();
        let mut seq = 1_u64;
        group.bench_function(
            BenchmarkId::from_parameter("wal_prealloc_append_sync"),
            |b| {
                b.iter(|| {
                    wal.append(seq, seq, black_box(&data)).unwrap();
                    seq += 1;
                    wal.sync().unwrap()
                });
            },
        );
        group.finish();
    }
}

fn bench_read(c: &mut Criterion) {
    const LOG_BYTES: usize = 256 << 20;
    for (label, len) in [("4K", 4 << 10), ("64K", 64 << 10)] {
        let data = batch(len);
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        for i in 0..(LOG_BYTES / len) as u64 {
            wal.append(i + 1, i + 1, &data).unwrap();
        }
        wal.sync().unwrap();
        let files: Vec<_> = wal.segments().into_iter().map(|s| s.path).collect();
        drop(wal);

        let mut group = configure(c, &format!("read/{label}"));
        group.throughput(Throughput::Bytes(LOG_BYTES as u64));
        let mut buf = vec![0_u8; 4 << 20];
        group.bench_function(BenchmarkId::from_parameter("floor_pread"), |b| {
            b.iter(|| {
                let mut total = 0_u64;
                for path in &files {
                    let f = File::open(path).unwrap();
                    let mut off = 0;
                    loop {
                        let n = f.read_at(&mut buf, off).unwrap();
                        if n == 0 {
                            break;
                        }
                        off += n as u64;
                        total += u64::from(buf[n - 1]);
                    }
                }
                total
            });
        });
        group.bench_function(BenchmarkId::from_parameter("floor_pread_crc32c"), |b| {
            b.iter(|| {
                let mut total = 0_u32;
                for path in &files {
                    let f = File::open(path).unwrap();
                    let mut off = 0;
                    loop {
                        let n = f.read_at(&mut buf, off).unwrap();
                        if n == 0 {
                            break;
                        }
                        off += n as u64;
                        total ^= crc32c::crc32c(&buf[..n]);
                    }
                }
                total
            });
        });
        group.bench_function(BenchmarkId::from_parameter("wal_frames"), |b| {
            b.iter(|| {
                let reader = WalReader::open(dir.path()).unwrap();
                let mut frames = reader.frames();
                let mut total = 0_u64;
                while let Some(f) = frames.next_frame().unwrap() {
                    total += f.payload.len() as u64;
                }
                assert_eq!(total, LOG_BYTES as u64);
                total
            });
        });
        group.finish();
    }
}

/// The floor and the WAL interleaved in rounds (so all see the same background load, which
/// on this shared 2-core machine moves a lot): bandwidth, frames/s, the ratio to the floor
/// and latency percentiles of one append+sync, per batch size.
///
/// Contenders: `floor_write_fdatasync` (the bare loop); `wal_append_sync` and
/// `wal_append_with_sync` (default config); `wal_no_overlap` (checksum before the write,
/// one `pwritev`, to show what the overlap buys); `floor_framed_crc32c` (what any framed,
/// checksummed log pays at least: the bare loop writing the same block-rounded byte count
/// as a padded frame, plus crc32c of the payload before each write); `wal_sized_frames`
/// (a caller that sizes each frame to the batch size exactly, payload = batch - 40 bytes,
/// with frames aligned to min(batch, 64 KiB): every commit is one aligned write of the
/// batch size, like the floor's; MiB/s counted as full batches).
fn interleaved(_: &mut Criterion) {
    const ROUNDS: usize = 24;
    const NAMES: [&str; 6] = [
        "floor_write_fdatasync",
        "wal_append_sync",
        "wal_append_with_sync",
        "wal_no_overlap",
        "floor_framed_crc32c",
        "wal_sized_frames",
    ];
    println!();
    println!("interleaved, {ROUNDS} rounds           MiB/s   frames/s  vs floor   p50 us   p99 us");
    for (label, len) in BATCHES {
        let per_round = ((4 << 20) / len).clamp(8, 64);
        let data = batch(len);
        let framed = batch((len + 40).div_ceil(4096) * 4096);
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut floor = File::create(dir.path().join("floor.bin")).unwrap();
        let mut floor_framed = File::create(dir.path().join("floor-framed.bin")).unwrap();
        let cfg = WalConfig::default().with_segment_bytes_max(SEGMENT_BYTES);
        let (mut wal, _) = Wal::open(dir.path().join("wal"), cfg).unwrap();
        let no_overlap = cfg.with_overlap_checksum_min_bytes(u64::MAX);
        let (mut wal_plain, _) = Wal::open(dir.path().join("wal-plain"), no_overlap).unwrap();
        let sized = cfg
            .with_frame_align_bytes((len as u64).min(1 << 16))
            .with_align_frames_min_bytes(0);
        let (mut wal_sized, _) = Wal::open(dir.path().join("wal-sized"), sized).unwrap();
        let data_sized = batch(len - 40);
        let (mut seq, mut seq_plain, mut seq_sized) = (1_u64, 1_u64, 1_u64);
        let mut hist: Vec<_> = NAMES
            .iter()
            .map(|_| hdrhistogram::Histogram::<u64>::new(3).unwrap())
            .collect();
        let mut total = [Duration::ZERO; NAMES.len()];
        for round in 0..ROUNDS {
            for k in 0..NAMES.len() {
                let who = (k + round) % NAMES.len();
                let started = Instant::now();
                for _ in 0..per_round {
                    let t = Instant::now();
                    match who {
                        0 => {
                            floor.write_all(&data).unwrap();
                            floor.sync_data().unwrap();
                        }
                        1 => {
                            wal.append(seq, seq, &data).unwrap();
                            seq += 1;
                            wal.sync().unwrap();
                        }
                        2 => {
                            wal.append_with(seq, seq, |buf| buf.extend_from_slice(&data))
                                .unwrap();
                            seq += 1;
                            wal.sync().unwrap();
                        }
                        3 => {
                            wal_plain.append(seq_plain, seq_plain, &data).unwrap();
                            seq_plain += 1;
                            wal_plain.sync().unwrap();
                        }
                        5 => {
                            wal_sized.append(seq_sized, seq_sized, &data_sized).unwrap();
                            seq_sized += 1;
                            wal_sized.sync().unwrap();
                        }
                        _ => {
                            black_box(crc32c::crc32c(black_box(&data)));
                            floor_framed.write_all(&framed).unwrap();
                            floor_framed.sync_data().unwrap();
                        }
                    }
                    hist[who].record(t.elapsed().as_micros() as u64).unwrap();
                }
                total[who] += started.elapsed();
            }
        }
        let frames = (ROUNDS * per_round) as f64;
        let floor_rate = frames / total[0].as_secs_f64();
        for (i, name) in NAMES.iter().enumerate() {
            let rate = frames / total[i].as_secs_f64();
            println!(
                "{label:>3} {name:<24} {:>9.1} {:>10.0} {:>8.1}% {:>8} {:>8}",
                rate * len as f64 / f64::from(1 << 20),
                rate,
                100.0 * rate / floor_rate,
                hist[i].value_at_quantile(0.5),
                hist[i].value_at_quantile(0.99),
            );
        }
    }
}

criterion_group!(benches, bench_append_sync, bench_read, interleaved);
criterion_main!(benches);
