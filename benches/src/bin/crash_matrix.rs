//! The crash matrix, long run: a real `ledger-server` (the one beside this binary, or
//! `$LEDGER_SERVER_BIN`) killed and restarted many times per scenario, every
//! acknowledgement checked after every restart (see `ledger_bench::crash`).
//! `cargo run --release -p ledger-bench --bin crash-matrix -- --help`.

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use ledger_bench::crash::{self, Harness, args};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Kill9,
    Snapshot,
    Rotation,
    Recovery,
    Oom,
}

#[derive(Parser, Debug)]
#[command(
    name = "crash-matrix",
    about = "Kills a real ledger-server in many ways under committed load and checks every acknowledgement after each restart"
)]
struct Args {
    /// Scenarios to run (all by default).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// SIGKILL-at-a-random-moment cycles.
    #[arg(long, default_value_t = 1000)]
    cycles: u64,
    /// Latest kill after the load starts, in ms (kill9 and rotation scenarios).
    #[arg(long, default_value_t = 1000)]
    max_delay_ms: u64,
    /// Kills during a snapshot write.
    #[arg(long, default_value_t = 50)]
    snapshot_cycles: u64,
    /// Kills with tiny WAL segments (every other one during a segment creation).
    #[arg(long, default_value_t = 50)]
    rotation_cycles: u64,
    /// Recovery rounds: each kills `--recovery-kills` starts in a row before they serve.
    #[arg(long, default_value_t = 50)]
    recovery_rounds: u64,
    #[arg(long, default_value_t = 3)]
    recovery_kills: u64,
    /// Transactions in the log replayed by every start of the recovery scenario.
    #[arg(long, default_value_t = 500_000)]
    recovery_log_tx: u64,
    /// Deaths under an address-space limit.
    #[arg(long, default_value_t = 50)]
    oom_rounds: u64,
    /// Seed of the workload and kill times (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the data directories go (a failing one is kept there).
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
}

fn main() {
    let args = Args::parse();
    let bin = match ledger_bench::process::server_binary() {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("crash-matrix: {e}");
            std::process::exit(2);
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    println!("server {}, seed {seed}", bin.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let all = [
        Scenario::Kill9,
        Scenario::Snapshot,
        Scenario::Rotation,
        Scenario::Recovery,
        Scenario::Oom,
    ];
    let chosen = if args.only.is_empty() {
        all.to_vec()
    } else {
        args.only.clone()
    };
    let mut failed = false;
    for scenario in chosen {
        let dir = tempfile::Builder::new()
            .prefix(&format!("crash-matrix-{scenario:?}-").to_lowercase())
            .tempdir_in(&args.dir)
            .expect("a data directory");
        let server_args = match scenario {
            Scenario::Kill9 => args::KILL9,
            Scenario::Snapshot => args::SNAPSHOT,
            Scenario::Rotation => args::ROTATION,
            Scenario::Recovery => args::RECOVERY,
            Scenario::Oom => args::OOM,
        };
        let mut h = Harness::new(bin.clone(), dir.path(), server_args, seed);
        let started = Instant::now();
        let max_delay = Duration::from_millis(args.max_delay_ms);
        let result = runtime.block_on(async {
            match scenario {
                Scenario::Kill9 => crash::kill9_cycles(&mut h, args.cycles, max_delay).await,
                Scenario::Snapshot => crash::snapshot_kills(&mut h, args.snapshot_cycles).await,
                Scenario::Rotation => {
                    crash::rotation_kills(&mut h, args.rotation_cycles, max_delay).await
                }
                Scenario::Recovery => {
                    crash::recovery_kills(
                        &mut h,
                        args.recovery_log_tx,
                        args.recovery_rounds,
                        args.recovery_kills,
                    )
                    .await
                }
                Scenario::Oom => crash::oom_kills(&mut h, args.oom_rounds).await,
            }
        });
        report(scenario, &h, started.elapsed());
        if let Err(e) = result {
            failed = true;
            let kept = dir.keep();
            eprintln!(
                "{scenario:?} FAILED (seed {seed}): {e}\ndata kept in {}\nserver log tail:\n{}",
                kept.display(),
                h.log_tail()
            );
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn report(scenario: Scenario, h: &Harness, took: Duration) {
    let s = &h.stats;
    let (p50, max) = s.restart_p50_max();
    println!(
        "{scenario:?}: {} kill cycles in {:.0} s; {} acknowledgements checked ({} read back), \
         {} unacknowledged commits found; retries: {} duplicate, {} committed; \
         {} transactions in the log; restart (spawn to SERVING, {} starts) p50 {:.0} ms, max {:.0} ms",
        s.cycles,
        took.as_secs_f64(),
        s.acks_checked,
        s.acks_read_back,
        s.unacked_found,
        s.retries_duplicate,
        s.retries_committed,
        h.committed(),
        s.restart.len(),
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
    );
    match scenario {
        Scenario::Snapshot | Scenario::Rotation => println!(
            "  temp file present at death: {}, missed (none seen, or renamed first): {}",
            s.temp_caught, s.temp_missed
        ),
        Scenario::Recovery => println!(
            "  kills before serving: {}, too late (already serving): {}",
            s.recovery_kills, s.recovery_kills_late
        ),
        Scenario::Oom => println!(
            "  \"memory allocation of N bytes failed\" in the log: {}; failed in place \
             (SIGKILLed after refusing): {}, never hit the limit: {}",
            h.log_lines_containing("memory allocation of"),
            s.oom_failed_in_place,
            s.oom_never_hit
        ),
        Scenario::Kill9 => {}
    }
    println!("  ends: {:?}", s.ends);
}
