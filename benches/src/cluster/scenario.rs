//! The runs: a leader SIGKILLed under load ([`kill_leader_under_load`], timed), a leader
//! cut off from both followers while a client keeps writing to it ([`isolate_leader`]),
//! a follower SIGKILLed and restarted, the whole cluster stopped and started again, a
//! node added that catches up from a Raft snapshot ([`join_from_snapshot`]); and the
//! full check at the end of any of them ([`check_logs`], [`check_logs_joined`]). What every run acknowledged
//! accumulates in a [`History`] that the log comparison checks against.

mod failover;
mod join;
mod partition;

pub use failover::{Failover, kill_leader_under_load};
pub use join::{Join, join_from_snapshot};
pub use partition::{Partition, isolate_leader};

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::load::{Ack, Load, LoadLog, LoadOptions};
use super::{Cluster, PATIENCE, checks, wal};
use crate::crash::{ACCOUNTS, Op};
use crate::workload::Rng;

/// Acknowledgements a load must make before a fault, and after a restart.
const WARMUP_ACKS: usize = 20;

/// Everything the runs so far submitted and were told.
#[derive(Debug)]
pub struct History {
    pub acks: Vec<Ack>,
    /// Sent, never answered: each committed at most once (the log check sees to it).
    pub unresolved: Vec<(u64, Op)>,
    /// Sent only to an isolated node: must be in no log.
    pub forbidden_refs: HashSet<u64>,
    pub next_ref: Arc<AtomicU64>,
    /// Calls the load clients saw fail (then resent).
    pub load_errors: u64,
    /// Failover probes a node refused (not the leader yet): never executed.
    pub probes_refused: u64,
    pub rng: Rng,
}

impl History {
    pub fn new(seed: u64) -> History {
        History {
            acks: Vec::new(),
            unresolved: Vec::new(),
            forbidden_refs: HashSet::new(),
            next_ref: Arc::new(AtomicU64::new(1)),
            load_errors: 0,
            probes_refused: 0,
            rng: Rng::new(seed),
        }
    }

    pub(super) fn take(&mut self, log: LoadLog) -> Vec<Ack> {
        self.unresolved.extend(log.unresolved);
        self.load_errors += log.errors;
        self.acks.extend(log.acks.iter().cloned());
        log.acks
    }

    pub(super) fn start_load(&mut self, cluster: &Cluster, clients: usize) -> Result<Load, String> {
        let options = LoadOptions::new(clients, cluster.direct_addrs(), self.rng.next_u64());
        Load::start(&options, &self.next_ref)
    }

    /// What the logs must hold: every acknowledgement; no forbidden user_ref.
    pub fn expect(&self) -> wal::Expect {
        wal::Expect {
            acks: self
                .acks
                .iter()
                .map(|a| (a.tx_id, (a.user_ref, a.fail_reason)))
                .collect(),
            forbidden_refs: self.forbidden_refs.clone(),
        }
    }
}

/// Stops `load`, waits until every running node holds the same log, then reads back
/// `acks` and the load's (one in `every`) on every node and compares their balances.
async fn settle(
    cluster: &Cluster,
    history: &mut History,
    load: Load,
    mut acks: Vec<Ack>,
    every: usize,
) -> Result<(Vec<Ack>, u64), String> {
    acks.extend(history.take(load.finish().await?));
    let tip = cluster.wait_converged(PATIENCE).await?;
    let ids = cluster.running();
    checks::acks_everywhere(cluster, &ids, &acks, every).await?;
    checks::same_balances(cluster, &ids, tip).await?;
    Ok((acks, tip))
}

/// Kills a follower with SIGKILL under load, lets the others go on, restarts it and
/// checks it caught up: every acknowledgement and the same balances on every node.
pub async fn restart_follower(
    cluster: &mut Cluster,
    history: &mut History,
    clients: usize,
) -> Result<(u64, u64), String> {
    let all = cluster.ids();
    let leader = cluster.wait_leader(&all, PATIENCE).await?;
    let follower = all
        .iter()
        .copied()
        .find(|&id| id != leader)
        .ok_or("no follower")?;
    let load = history.start_load(cluster, clients)?;
    load.wait_acks(WARMUP_ACKS, PATIENCE).await?;
    cluster.kill9(follower)?;
    // The other two are a majority: writes go on without it.
    load.wait_acks(3 * WARMUP_ACKS, PATIENCE).await?;
    cluster.restart(follower).await?;
    load.wait_acks(WARMUP_ACKS, PATIENCE).await?;
    let (_, tip) = settle(cluster, history, load, Vec::new(), 1).await?;
    Ok((follower, tip))
}

/// Stops every node cleanly, the leader first (so none is elected meanwhile), after a
/// load; starts them all again and checks the cluster takes writes, and that every
/// acknowledgement and the balances are the same on every node. Returns the leader
/// before and after.
pub async fn restart_whole_cluster(
    cluster: &mut Cluster,
    history: &mut History,
    clients: usize,
) -> Result<(u64, u64), String> {
    let all = cluster.ids();
    cluster.wait_leader(&all, PATIENCE).await?;
    let load = history.start_load(cluster, clients)?;
    load.wait_acks(WARMUP_ACKS, PATIENCE).await?;
    settle(cluster, history, load, Vec::new(), 1).await?;
    let before = cluster.wait_leader(&all, PATIENCE).await?;
    cluster.stop(before)?;
    cluster.stop_all()?;
    cluster.restart_all().await?;
    let after = cluster.wait_leader(&all, PATIENCE).await?;
    let load = history.start_load(cluster, clients)?;
    load.wait_acks(WARMUP_ACKS, PATIENCE).await?;
    settle(cluster, history, load, Vec::new(), 1).await?;
    Ok((before, after))
}

/// The full check: waits for one log everywhere, compares the balances over gRPC, stops
/// every node, compares their WALs against each other and against `history`, and the
/// balances the logs add up to against the served ones. Restarts the nodes (and waits
/// for a leader) if `restart`.
pub async fn check_logs(
    cluster: &mut Cluster,
    history: &History,
    restart: bool,
) -> Result<wal::WalReport, String> {
    check_logs_of(cluster, history, restart, &[]).await
}

/// [`check_logs`] for a cluster that nodes `joined` were added to, catching up from a
/// snapshot: their WALs start later (where the snapshot ends, never restarted here) and
/// end where the others' do.
pub async fn check_logs_joined(
    cluster: &mut Cluster,
    history: &History,
    joined: &[u64],
) -> Result<wal::WalReport, String> {
    check_logs_of(cluster, history, false, joined).await
}

async fn check_logs_of(
    cluster: &mut Cluster,
    history: &History,
    restart: bool,
    joined: &[u64],
) -> Result<wal::WalReport, String> {
    let tip = cluster.wait_converged(PATIENCE).await?;
    let ids = cluster.running();
    let served = checks::same_balances(cluster, &ids, tip).await?;
    cluster.stop_all()?;
    let wals: Vec<_> = ids
        .iter()
        .map(|&id| (id, cluster.node(id).data_dir().join("wal")))
        .collect();
    let report = tokio::task::block_in_place(|| wal::compare(&wals, &history.expect()))?;
    let whole: HashSet<_> = report
        .ranges
        .iter()
        .filter(|(id, _)| !joined.contains(id))
        .map(|(_, range)| range)
        .collect();
    let ends: HashSet<_> = report.ranges.values().map(|r| r.map(|r| r.1)).collect();
    if whole.len() != 1 || ends.len() != 1 {
        return Err(format!(
            "the converged nodes' logs end apart: {:?}",
            report.ranges
        ));
    }
    if ends.iter().next().copied().flatten() != Some(tip) {
        return Err(format!(
            "the logs end at {:?}, the nodes showed {tip}",
            report.ranges
        ));
    }
    let from_log = report.balances_up_to(ACCOUNTS);
    if from_log != served {
        return Err(format!(
            "the logs add up to other balances than the nodes serve:\n log    {from_log:?}\n served {served:?}"
        ));
    }
    if restart {
        cluster.restart_all().await?;
        cluster.wait_leader(&cluster.ids(), PATIENCE).await?;
    }
    Ok(report)
}
