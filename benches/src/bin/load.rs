//! The ledger's load generator: drives an embedded `Ledger` and reports committed tx/s,
//! latency percentiles, WAL bytes per transaction, fsyncs, CPU, memory, idle CPU and
//! recovery time. `--help` explains every flag; `docs/benchmarks.md` has the figures.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use ledger_bench::latency::{self, Tracker};
use ledger_bench::process;
use ledger_bench::workload::{Generator, Rng, Workload, preparation};
use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError, PipelineIndex, WaitStrategy};
use ledger_core::transaction::{Operation, WaitLevel};

#[derive(Debug, Parser)]
#[command(
    name = "load",
    about = "Load generator for the ledger engine (embedded)",
    long_about = "Runs an embedded Ledger in a fresh data directory, funds the accounts, \
                  then drives it with producer threads and reports committed tx/s, latency \
                  percentiles, WAL bytes per transaction, fsyncs, CPU, peak memory and, if \
                  asked, idle CPU and recovery time."
)]
struct Args {
    /// What each operation does.
    #[arg(long, value_enum, default_value_t = Workload::Transfer)]
    workload: Workload,
    /// Accounts 1..=N are funded and used (uniformly at random).
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
    /// Producer threads submitting concurrently.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Reader threads running queries beside the load (`get_transaction` of a random
    /// recent id; every --read-history-every-th read a 20-entry history page of a random
    /// account instead).
    #[arg(long, default_value_t = 0)]
    readers: usize,
    /// Reads per second, over all readers (paced open loop).
    #[arg(long, default_value_t = 10_000.0)]
    read_rate: f64,
    /// Readers look up ids among the last this-many committed.
    #[arg(long, default_value_t = 1_000_000)]
    read_recent: u64,
    /// Every this-many-th read is a history page instead (0: none).
    #[arg(long, default_value_t = 10)]
    read_history_every: u64,
    /// Operations per submit call (1: `submit`, more: `submit_batch`).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// How long to run, in seconds (ignored with --ops).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Run exactly this many operations instead of for a duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Offered load in operations per second over all producers (open loop; latency is
    /// measured from when each submit was due). 0: as fast as the ledger takes them.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// The level latency is measured to (and, with --sync, waited for).
    #[arg(long, value_enum, default_value_t = Level::Committed)]
    wait: Level,
    /// Each producer waits for its submit to reach --wait before the next one
    /// (`submit_batch_and_wait`): a closed loop, like unary RPC clients. Without it
    /// producers keep the pipeline full and latency is observed on the side.
    #[arg(long)]
    sync: bool,
    /// Data directory (must not hold a ledger yet). Default: a temporary directory under
    /// the current one (the disk is what is measured: keep it off tmpfs), removed after.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the data directory after the run.
    #[arg(long)]
    keep: bool,
    /// The ring's slots (a power of two).
    #[arg(long, default_value_t = LedgerConfig::default().ring_size)]
    ring_size: usize,
    /// Take a snapshot every N transactions (0: only at stop).
    #[arg(long, default_value_t = LedgerConfig::default().snapshot_interval_tx)]
    snapshot_interval_tx: u64,
    /// WAL segment size in MiB.
    #[arg(long, default_value_t = LedgerConfig::default().wal_segment_bytes >> 20)]
    wal_segment_mib: u64,
    /// WAL frame size in KiB (a group commit is cut into frames of about this size).
    #[arg(long, default_value_t = LedgerConfig::default().wal_frame_bytes >> 10)]
    wal_frame_kib: usize,
    /// How stage threads wait for work.
    #[arg(long, value_enum, default_value_t = Strategy::Default)]
    wait_strategy: Strategy,
    /// How long a closed hold is remembered, in seconds (the ledger's default: 60).
    #[arg(long, default_value_t = LedgerConfig::default().closed_hold_retention.as_secs_f64())]
    closed_hold_retention_secs: f64,
    /// After the load, stay idle this many seconds and report the CPU the idle ledger used.
    #[arg(long, default_value_t = 0.0)]
    idle_secs: f64,
    /// After the load, stop without a final snapshot, restart, and report how long
    /// recovery took (the whole run's WAL after the last periodic snapshot is replayed).
    #[arg(long)]
    recovery: bool,
    /// Seed of the operation stream (producer i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Level {
    Processed,
    Committed,
    Snapshotted,
}

impl Level {
    fn wait_level(self) -> WaitLevel {
        match self {
            Level::Processed => WaitLevel::Processed,
            Level::Committed => WaitLevel::Committed,
            Level::Snapshotted => WaitLevel::Snapshotted,
        }
    }

    fn index(self, index: PipelineIndex) -> u64 {
        match self {
            Level::Processed => index.computed,
            Level::Committed => index.committed,
            Level::Snapshotted => index.snapshot,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Strategy {
    Default,
    LowCpu,
    BusySpin,
}

impl Strategy {
    fn strategy(self) -> WaitStrategy {
        match self {
            Strategy::Default => WaitStrategy::DEFAULT,
            Strategy::LowCpu => WaitStrategy::LowCpu,
            Strategy::BusySpin => WaitStrategy::BusySpin,
        }
    }
}

/// What one producer did.
struct ProducerReport {
    ops: u64,
    hist: Histogram<u64>,
}

fn main() {
    let args = Args::parse();
    if let Err(message) = run(&args) {
        eprintln!("load: {message}");
        std::process::exit(2);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.producers == 0 || args.batch == 0 || args.accounts < 2 {
        return Err("--producers and --batch must be >= 1, --accounts >= 2".into());
    }
    let (data_dir, temp) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("ledger-load-")
                .tempdir_in(".")
                .map_err(|e| format!("temporary data directory: {e}"))?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    // Dropping the guard removes the temporary directory, unless asked to keep it.
    let _guard = match temp {
        Some(temp) if args.keep => {
            let _ = temp.keep();
            None
        }
        other => other,
    };
    let config = LedgerConfig {
        max_accounts: args.accounts + 1,
        ring_size: args.ring_size,
        snapshot_interval_tx: if args.snapshot_interval_tx == 0 {
            u64::MAX
        } else {
            args.snapshot_interval_tx
        },
        wal_segment_bytes: args.wal_segment_mib << 20,
        wal_frame_bytes: args.wal_frame_kib << 10,
        wait_strategy: args.wait_strategy.strategy(),
        closed_hold_retention: Duration::from_secs_f64(args.closed_hold_retention_secs),
        ..LedgerConfig::in_dir(&data_dir)
    };
    print_machine();
    println!("data dir: {}", data_dir.display());

    // With --recovery the run ends like a crash as far as snapshots go: no final one.
    let mut ledger = Ledger::new(LedgerConfig {
        snapshot_on_stop: !args.recovery,
        ..config.clone()
    });
    ledger.start().map_err(|e| format!("start: {e}"))?;
    fund(&ledger, args.workload, args.accounts)?;

    let metrics_before = ledger.metrics();
    let index_before = ledger.pipeline_index();
    let usage_before = process::usage();
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let submitted = AtomicU64::new(0);
    let reports = std::thread::scope(|scope| {
        let producers: Vec<_> = (0..args.producers)
            .map(|i| {
                let (ledger, done, submitted) = (&ledger, &done, &submitted);
                scope.spawn(move || produce(args, i, ledger, done, submitted, started))
            })
            .collect();
        scope.spawn(|| progress(&ledger, &done, started, index_before));
        let readers: Vec<_> = (0..args.readers)
            .map(|i| {
                let (ledger, done) = (&ledger, &done);
                scope.spawn(move || read(args, i, ledger, done))
            })
            .collect();
        let reports: Vec<_> = producers
            .into_iter()
            .map(|p| p.join().expect("producer thread"))
            .collect();
        done.store(true, Ordering::Release);
        let reads: Vec<_> = readers
            .into_iter()
            .map(|r| r.join().expect("reader thread"))
            .collect();
        (reports, reads)
    });
    let (reports, reads) = reports;
    let elapsed = started.elapsed();
    let usage_after = process::usage();
    let reports: Vec<ProducerReport> = reports.into_iter().collect::<Result<_, _>>()?;
    let metrics = ledger.metrics();
    let index = ledger.pipeline_index();

    let ops: u64 = reports.iter().map(|r| r.ops).sum();
    check_outcomes(&ledger, index.committed)?;
    let mut hist = latency::histogram();
    for r in &reports {
        hist.add(&r.hist).expect("same bounds");
    }
    let committed = index.committed - index_before.committed;
    let secs = elapsed.as_secs_f64();
    let wal_bytes = metrics.wal_bytes - metrics_before.wal_bytes;
    let syncs = metrics.wal_syncs - metrics_before.wal_syncs;
    let frames = metrics.wal_frames - metrics_before.wal_frames;
    let cpu = (usage_after.cpu - usage_before.cpu).as_secs_f64();
    println!("== result");
    println!(
        "workload {:?}, {} accounts, {} producer(s), batch {}, {}, wait {:?}{}",
        args.workload,
        args.accounts,
        args.producers,
        args.batch,
        if args.rate > 0.0 {
            format!("offered {:.0} ops/s", args.rate)
        } else {
            "closed loop".to_owned()
        },
        args.wait,
        if args.sync { " (sync)" } else { "" }
    );
    println!(
        "committed: {committed} tx in {secs:.2} s = {:.0} tx/s (submitted {ops})",
        committed as f64 / secs
    );
    println!(
        "wal: {:.2} bytes/tx on disk (headers included), {:.1} MiB/s, {} frames, {:.0} fsync/s, {:.0} tx/fsync",
        wal_bytes as f64 / committed.max(1) as f64,
        wal_bytes as f64 / secs / f64::from(1 << 20),
        frames,
        syncs as f64 / secs,
        committed as f64 / syncs.max(1) as f64
    );
    println!(
        "latency to {:?} (us): p50 {} p99 {} p99.9 {} max {} (n = {})",
        args.wait,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
        hist.len()
    );
    println!(
        "process: {:.2} cores busy on average, peak RSS {:.1} MiB",
        cpu / secs,
        usage_after.peak_rss_bytes as f64 / f64::from(1 << 20),
    );
    println!(
        "snapshots: {} written; the last one took {:.1} ms to copy (in the pipeline), {:.1} ms to write (beside it)",
        metrics.snapshots_written - metrics_before.snapshots_written,
        metrics.last_snapshot_copy_us as f64 / 1e3,
        metrics.last_snapshot_write_us as f64 / 1e3
    );

    if args.readers > 0 {
        let mut hist = latency::histogram();
        let mut errors = 0;
        for (h, e) in &reads {
            hist.add(h).expect("same bounds");
            errors += e;
        }
        println!(
            "reads: {} in {secs:.2} s = {:.0}/s from {} thread(s), {errors} errors; latency (us) p50 {} p99 {} p99.9 {} max {}",
            hist.len(),
            hist.len() as f64 / secs,
            args.readers,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max()
        );
    }

    if args.idle_secs > 0.0 {
        let before = process::usage();
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(args.idle_secs));
        let idle_cpu = (process::usage().cpu - before.cpu).as_secs_f64();
        println!(
            "idle: {:.3}% of one core over {:.1} s",
            100.0 * idle_cpu / t.elapsed().as_secs_f64(),
            args.idle_secs
        );
    }

    if args.recovery {
        drop(ledger);
        let mut config = config;
        config.snapshot_on_stop = true;
        let mut reopened = Ledger::new(config);
        let t = Instant::now();
        reopened
            .start()
            .map_err(|e| format!("restart after the run: {e}"))?;
        let took = t.elapsed();
        let report = reopened.recovery_report().expect("started");
        println!(
            "recovery: {:.3} s to start; snapshot at {:?}, replayed {} tx ({:.0} tx/s), last id {}",
            took.as_secs_f64(),
            report.snapshot.as_ref().map(|(_, id)| *id),
            report.replayed,
            report.replayed as f64 / report.elapsed.as_secs_f64().max(1e-9),
            report.last_tx_id
        );
        if report.last_tx_id != index.committed {
            return Err(format!(
                "recovered to {} but {} was committed",
                report.last_tx_id, index.committed
            ));
        }
    } else {
        ledger.stop().map_err(|e| format!("stop: {e}"))?;
    }
    Ok(())
}

/// Configures and funds every account ([`preparation`]), durably, and checks it worked.
fn fund(ledger: &Ledger, workload: Workload, accounts: u64) -> Result<(), String> {
    let t = Instant::now();
    let mut ops: Vec<Operation> = Vec::with_capacity(2048);
    let mut deposits = preparation(workload, accounts).peekable();
    let mut last = 0;
    while deposits.peek().is_some() {
        ops.clear();
        ops.extend(deposits.by_ref().take(2048));
        let ids = ledger
            .try_submit_batch(std::mem::take(&mut ops))
            .map_err(|e| format!("funding: {e}"))?;
        last = ids.last().copied().unwrap_or(last);
    }
    ledger
        .try_wait_for(last, WaitLevel::Snapshotted)
        .map_err(|e| format!("funding: {e}"))?;
    check_outcomes(ledger, last)?;
    println!(
        "funded {accounts} accounts in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The figures mean nothing if the workload was rejected: checks the most recent
/// transactions (their outcomes are still in memory) all committed.
fn check_outcomes(ledger: &Ledger, last: u64) -> Result<(), String> {
    let first = last.saturating_sub(10_000).max(1);
    let mut rejected = 0;
    let mut example = None;
    for id in first..=last {
        match ledger.try_outcome(id) {
            Ok(o) if o.is_committed() => {}
            other => {
                rejected += 1;
                example.get_or_insert((id, other));
            }
        }
    }
    if let Some((id, outcome)) = example {
        return Err(format!(
            "{rejected} of the last {} transactions did not commit (tx {id}: {outcome:?}): \
             the workload is wrong",
            last - first + 1
        ));
    }
    Ok(())
}

/// One reader's loop: paced reads until the producers are done. Returns the latency
/// histogram and the number of failed reads.
fn read(args: &Args, reader: usize, ledger: &Ledger, done: &AtomicBool) -> (Histogram<u64>, u64) {
    let mut hist = latency::histogram();
    let mut errors = 0;
    let mut rng = Rng::new(args.seed ^ 0xA5A5 ^ reader as u64);
    let interval = Duration::from_secs_f64(args.readers as f64 / args.read_rate.max(1.0));
    let mut due = Instant::now();
    let mut n = 0_u64;
    while !done.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        let committed = ledger.pipeline_index().committed;
        if committed == 0 {
            due += interval;
            continue;
        }
        let t = Instant::now();
        let ok = if args.read_history_every > 0 && n.is_multiple_of(args.read_history_every) {
            let account = 1 + rng.below(args.accounts);
            ledger.get_account_history(account, 0, 20).is_ok()
        } else {
            let window = args.read_recent.clamp(1, committed);
            ledger
                .get_transaction(committed - rng.below(window))
                .is_ok()
        };
        latency::record(&mut hist, t.elapsed(), 1);
        errors += u64::from(!ok);
        n += 1;
        due += interval;
    }
    (hist, errors)
}

/// One producer's loop.
fn produce(
    args: &Args,
    producer: usize,
    ledger: &Ledger,
    done: &AtomicBool,
    submitted: &AtomicU64,
    started: Instant,
) -> Result<ProducerReport, String> {
    let fail = |e: LedgerError| format!("producer {producer}: {e}");
    let mut generator = Generator::new(args.workload, args.accounts, args.seed + producer as u64);
    let quota = args.ops.map(|ops| {
        let share = ops / args.producers as u64;
        share + u64::from((producer as u64) < ops % args.producers as u64)
    });
    let deadline = started + Duration::from_secs_f64(args.duration);
    // Open loop: this producer's submit k is due at started + k * interval.
    let interval = (args.rate > 0.0)
        .then(|| Duration::from_secs_f64(args.batch as f64 * args.producers as f64 / args.rate));
    let level = args.wait;
    let mut tracker = Tracker::default();
    let mut sync_hist = latency::histogram();
    let mut ops = Vec::with_capacity(args.batch);
    let mut sent: u64 = 0;
    let mut k: u32 = 0;
    loop {
        let n = match quota {
            Some(q) if sent >= q => break,
            Some(q) => (q - sent).min(args.batch as u64) as usize,
            None if Instant::now() >= deadline || done.load(Ordering::Relaxed) => break,
            None => args.batch,
        };
        let due = match interval {
            Some(interval) => {
                let due = started + interval * k;
                wait_until(ledger, &mut tracker, level, due);
                due
            }
            None => Instant::now(),
        };
        k = k.wrapping_add(1);
        generator.fill(&mut ops, n);
        if args.sync {
            let results = if n == 1 {
                let op = ops.pop().expect("one operation");
                vec![
                    ledger
                        .try_submit_and_wait(op, level.wait_level())
                        .map_err(fail)?,
                ]
            } else {
                ledger
                    .try_submit_batch_and_wait(std::mem::take(&mut ops), level.wait_level())
                    .map_err(fail)?
            };
            if generator.needs_ids() {
                let ids: Vec<u64> = results.iter().map(|r| r.tx_id).collect();
                generator.placed(&ids);
            }
            latency::record(&mut sync_hist, due.elapsed(), results.len() as u64);
        } else {
            let last = if n == 1 {
                let id = ledger
                    .try_submit(ops.pop().expect("one operation"))
                    .map_err(fail)?;
                generator.placed(&[id]);
                id
            } else {
                let ids = ledger
                    .try_submit_batch(std::mem::take(&mut ops))
                    .map_err(fail)?;
                generator.placed(&ids);
                *ids.last().expect("a non-empty batch")
            };
            tracker.submitted(last, due, n as u64);
            tracker.observe(level.index(ledger.pipeline_index()), Instant::now());
        }
        sent += n as u64;
        submitted.fetch_add(n as u64, Ordering::Relaxed);
    }
    // Everything submitted reaches the level before the producer reports.
    while let Some(oldest) = tracker.oldest_pending() {
        ledger
            .try_wait_for(oldest, level.wait_level())
            .map_err(fail)?;
        tracker.observe(level.index(ledger.pipeline_index()), Instant::now());
    }
    let hist = if args.sync {
        sync_hist
    } else {
        tracker.into_histogram()
    };
    Ok(ProducerReport { ops: sent, hist })
}

/// Sleeps until `due`, recording latencies of pending submits as they reach the level.
fn wait_until(ledger: &Ledger, tracker: &mut Tracker, level: Level, due: Instant) {
    loop {
        let now = Instant::now();
        tracker.observe(level.index(ledger.pipeline_index()), now);
        let Some(left) = due.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            return;
        };
        match tracker.oldest_pending() {
            // Wake when the oldest pending submit is done or when the next one is due.
            Some(oldest) => {
                let _ = ledger.try_wait_for_timeout(oldest, level.wait_level(), left);
            }
            None => std::thread::sleep(left),
        }
    }
}

/// One line per second: what the ledger committed in that second and how far behind each
/// stage is.
fn progress(ledger: &Ledger, done: &AtomicBool, started: Instant, before: PipelineIndex) {
    let mut last = before;
    let mut last_t = started;
    let mut tick = 1u32;
    while !done.load(Ordering::Acquire) {
        let next = started + Duration::from_secs(u64::from(tick));
        while Instant::now() < next {
            if done.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20).min(next - Instant::now()));
        }
        let now = Instant::now();
        let index = ledger.pipeline_index();
        let secs = now.duration_since(last_t).as_secs_f64();
        eprintln!(
            "[{tick:>4} s] committed {:>10.0} tx/s   computed-committed {:>6}   committed-snapshot {:>6}",
            (index.committed - last.committed) as f64 / secs,
            index.computed - index.committed,
            index.committed - index.snapshot
        );
        last = index;
        last_t = now;
        tick += 1;
    }
}

/// The machine the figures come from: CPU model, core count and load average.
fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!("machine: {cpu}, {cores} cores, load average {load}");
}
