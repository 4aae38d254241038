//! Real-process cluster tests, CI-sized: three `ledger-server` processes on loopback
//! (the binary built with the same profile: `cargo build -p ledger-server`), their leader
//! SIGKILLed under load, cut off by the proxy, a follower SIGKILLed, a fourth node added
//! that catches up from a Raft snapshot; after each, every acknowledgement is read back
//! on every node, balances compared, and at the end the nodes' WALs compared record by
//! record. One test at a time: three clusters at once on
//! two cores would mostly test the scheduler.

use std::sync::Mutex;
use std::time::Instant;

use ledger_bench::cluster::scenario::{self, History};
use ledger_bench::cluster::{Cluster, Options, PATIENCE};
use ledger_wal::WalReader;

/// Serialises the tests of this file.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Starts a cluster and runs `scenario` on it; on failure the message carries every
/// node's log tail and the data directories are kept for a post-mortem.
fn run(
    name: &str,
    options: Options,
    scenario: impl AsyncFnOnce(&mut Cluster, &mut History) -> Result<(), String>,
) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bin = ledger_bench::process::server_binary().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    // A fixed seed: the same workload each run (as far as timing allows).
    let mut history = History::new(21);
    let result = runtime.block_on(async {
        let mut cluster = Cluster::start(bin, dir.path(), &options).await?;
        let outcome = scenario(&mut cluster, &mut history).await;
        outcome.map_err(|e| format!("{e}\n{}\n{}", cluster.processes(), cluster.log_tails()))
    });
    if let Err(e) = result {
        let kept = dir.keep();
        panic!("{name}: {e}\ndata kept in {}", kept.display());
    }
    eprintln!(
        "{name}: {} acknowledgements, {} load errors (resent), in {:.1} s",
        history.acks.len(),
        history.load_errors,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn leader_killed_under_load_three_times() {
    run(
        "leader kill -9",
        Options::new(3, false),
        async |cluster, history| {
            for cycle in 1..=3 {
                let f = scenario::kill_leader_under_load(cluster, history, 4, 1)
                    .await
                    .map_err(|e| format!("cycle {cycle}: {e}"))?;
                eprintln!("cycle {cycle}: {f:?}");
                assert_ne!(f.new_leader, f.old_leader);
            }
            let report = scenario::check_logs(cluster, history, false).await?;
            eprintln!("logs: {report:?}");
            assert!(report.compared > 0);
            Ok(())
        },
    );
}

#[test]
fn an_isolated_leader_acknowledges_nothing_and_its_writes_vanish() {
    run(
        "partition",
        Options::new(3, true),
        async |cluster, history| {
            let p = scenario::isolate_leader(cluster, history, 3).await?;
            eprintln!("{p:?}");
            assert_ne!(p.new_leader, p.old_leader);
            assert!(!p.stranded_ids.is_empty());
            let report = scenario::check_logs(cluster, history, false).await?;
            eprintln!("logs: {report:?}");
            Ok(())
        },
    );
}

#[test]
fn a_killed_follower_catches_up() {
    run(
        "follower kill -9",
        Options::new(3, false),
        async |cluster, history| {
            let (follower, tip) = scenario::restart_follower(cluster, history, 4).await?;
            eprintln!("follower {follower} caught up to {tip}");
            scenario::check_logs(cluster, history, false).await?;
            Ok(())
        },
    );
}

#[test]
fn the_whole_cluster_restarts_and_takes_writes_again() {
    run(
        "whole-cluster restart",
        Options::new(3, false),
        async |cluster, history| {
            let (before, after) = scenario::restart_whole_cluster(cluster, history, 4).await?;
            eprintln!("leader {before} before the restart, {after} after");
            scenario::check_logs(cluster, history, false).await?;
            Ok(())
        },
    );
}

#[test]
fn a_new_node_joins_from_a_snapshot() {
    let mut options = Options::new(3, false);
    // A Raft snapshot every 8 entries, 2 kept behind it: the log a new node would need
    // from the start is long gone. The engine's own snapshots (what a Raft snapshot is
    // built from) come every 10 transactions.
    options.extra_args = [
        "--raft-snapshot-every",
        "8",
        "--raft-keep-entries",
        "2",
        "--snapshot-interval-tx",
        "10",
    ]
    .map(String::from)
    .to_vec();
    run("join from a snapshot", options, async |cluster, history| {
        let join = scenario::join_from_snapshot(cluster, history, 4, 4, 60).await?;
        eprintln!("{join:?}");
        let report = scenario::check_logs_joined(cluster, history, &[4]).await?;
        eprintln!("logs: {report:?}");
        // It came from a snapshot: its WAL starts after transaction 1 (and after
        // every transaction written before it joined but those its log replayed).
        let wal_dir = cluster.node(4).data_dir().join("wal");
        let first_seq = WalReader::open(&wal_dir)
            .map_err(|e| format!("{}: {e}", wal_dir.display()))?
            .first_seq();
        let range = report.ranges.get(&4).copied().flatten();
        match range {
            Some((first, last)) if first > 1 && last == join.tip_after => {
                eprintln!(
                    "node 4's WAL: transactions {first}..={last} (first segment from {first_seq:?})"
                );
                Ok(())
            }
            _ => Err(format!(
                "node 4's WAL holds transactions {range:?} (first segment from {first_seq:?}): \
                     not caught up from a snapshot to {}",
                join.tip_after
            )),
        }
    });
}

/// A node started with a setting the others do not share (here the closed holds'
/// retention; the idempotency window alike) is refused by them, and refuses them: both
/// sides log why, naming the setting. The other two form the cluster and take writes;
/// the odd node follows no leader and applies nothing.
#[test]
fn a_node_with_other_rules_is_refused_and_says_why() {
    let mut options = Options::new(3, false);
    let odd = ["--closed-hold-retention-secs", "1"]
        .map(String::from)
        .to_vec();
    options.node_args.insert(3, odd);
    run("other rules", options, async |cluster, _history| {
        // A writable leader that nodes 1 and 2 both follow.
        let leader = cluster.wait_leader(&[1, 2], PATIENCE).await?;
        let log = |id| std::fs::read_to_string(cluster.node(id).log_path()).unwrap_or_default();
        // Node 3 refuses the leader's messages, and the leader hears so; nodes 1 and 2
        // refuse node 3's (its votes, once it gives up waiting for a leader).
        let said = "closed_hold_retention_ns: the sender has 60000000000, this node 1000000000";
        let heard = "closed_hold_retention_ns: the sender has 1000000000, this node 60000000000";
        let deadline = Instant::now() + PATIENCE;
        while !(log(3).contains(said)
            && log(leader).contains("a peer refuses this node's messages")
            && (log(1).contains(heard) || log(2).contains(heard)))
        {
            if Instant::now() > deadline {
                return Err(format!("no refusal logged:\n{}", cluster.log_tails()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let odd = cluster.status(3).await?;
        if odd.leader_id.is_some() || odd.applied_index != 0 {
            return Err(format!("node 3 follows: {odd:?}"));
        }
        Ok(())
    });
}
