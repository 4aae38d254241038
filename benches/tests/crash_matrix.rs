//! The crash matrix, CI-sized: a real `ledger-server` killed in each way the long run
//! (`crash-matrix` binary) uses, a few times each, every acknowledgement checked after
//! every restart. Needs the server built with the same profile (`cargo test --workspace`
//! does; else `cargo build -p ledger-server`).

use std::path::Path;
use std::time::{Duration, Instant};

use ledger_bench::crash::{self, Harness, args};

fn harness(root: &Path, args: &[&str]) -> Harness {
    let bin = ledger_bench::process::server_binary().unwrap_or_else(|e| panic!("{e}"));
    // A fixed seed: the same workload and kill points (as far as timing allows) each run.
    Harness::new(bin, root, args, 18)
}

/// Runs `scenario`; on failure the message carries the server's log and the data
/// directory is kept for a post-mortem.
fn run(
    name: &str,
    args: &[&str],
    scenario: impl AsyncFnOnce(&mut Harness) -> Result<(), String>,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    if let Err(e) = runtime.block_on(scenario(&mut h)) {
        let kept = dir.keep();
        panic!(
            "{name}: {e}\ndata kept in {}\nserver log tail:\n{}",
            kept.display(),
            h.log_tail()
        );
    }
    eprintln!(
        "{name}: {} cycles, {} acknowledgements checked in {:.1} s; {:?}",
        h.stats.cycles,
        h.stats.acks_checked,
        started.elapsed().as_secs_f64(),
        h.stats.ends
    );
    assert!(h.stats.acks_checked > 0, "{name}: nothing was acknowledged");
    h
}

#[test]
fn kill_9_at_random_moments_under_committed_load() {
    let h = run("kill -9", args::KILL9, async |h| {
        crash::kill9_cycles(h, 15, Duration::from_millis(500)).await
    });
    assert_eq!(h.stats.cycles, 15);
    assert_eq!(h.stats.ends.get("SIGKILL"), Some(&15));
}

#[test]
fn kill_9_while_a_snapshot_is_written() {
    let h = run("snapshot", args::SNAPSHOT, async |h| {
        crash::snapshot_kills(h, 4).await
    });
    // A snapshot of a million accounts takes long enough to be caught nearly always;
    // one caught and cleaned up is the point of the test.
    assert!(h.stats.temp_caught >= 1, "{:?}", h.stats);
}

#[test]
fn kill_9_with_tiny_segments_and_during_a_rotation() {
    let h = run("rotation", args::ROTATION, async |h| {
        crash::rotation_kills(h, 6, Duration::from_millis(500)).await
    });
    assert_eq!(h.stats.cycles, 6);
}

#[test]
fn kill_9_during_recovery_several_times_in_a_row() {
    let h = run("recovery", args::RECOVERY, async |h| {
        crash::recovery_kills(h, 100_000, 2, 3).await
    });
    assert!(h.committed() >= 100_000);
    assert!(h.stats.recovery_kills >= 1, "{:?}", h.stats);
}

#[test]
fn dying_for_memory_under_load() {
    let h = run("memory", args::OOM, async |h| crash::oom_kills(h, 3).await);
    assert_eq!(h.stats.cycles, 3);
}

/// The checks catch a loss: the newest WAL segment cut back to its header after a kill
/// must fail the next start's check with LOST.
#[test]
fn the_harness_reports_a_lost_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dir.path(), args::KILL9);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let err = runtime.block_on(async {
        let (mut server, channel) = h.start().await.unwrap();
        let load = h.load(&channel, 2, 1, 20);
        let deadline = Instant::now() + Duration::from_secs(60);
        while load.acked() < 500 {
            assert!(Instant::now() < deadline, "no load acknowledged");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        h.kill(&mut server, load).await.unwrap();
        let wal = h.data().join("wal");
        let newest = crash::files_ending(&wal, ".seg").into_iter().max().unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(wal.join(newest))
            .unwrap();
        file.set_len(64).unwrap();
        h.start().await.err()
    });
    let err = err.expect("a cut WAL went unnoticed");
    assert!(err.contains("LOST"), "{err}");
}
