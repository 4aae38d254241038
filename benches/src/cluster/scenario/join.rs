//! A node added to a running cluster whose log no longer starts at the first entry (Raft
//! snapshots taken, the entries they cover forgotten): it catches up from a snapshot
//! (InstallSnapshot), then follows the log like any follower.

use std::time::Instant;

use super::{History, WARMUP_ACKS, settle};
use crate::cluster::load::Load;
use crate::cluster::{Cluster, PATIENCE, POLL, checks, describe};

/// Writes, one at a time, after the new node caught up: they reach it through the log.
const FOLLOW_ACKS: usize = 10;

/// What a join run saw.
#[derive(Clone, Debug, Default)]
pub struct Join {
    pub leader: u64,
    /// The leader's last log index when the node was added.
    pub log_index: u64,
    /// The last transaction when the node was added, after the load that followed, and
    /// after the last writes.
    pub tip_before: u64,
    pub tip_loaded: u64,
    pub tip_after: u64,
    /// The voters `AddNode` answered with.
    pub members: Vec<u64>,
}

/// Writes until the leader's log holds more than `entries` entries (each acknowledged
/// write at `REPLICATED` is in one), settles, starts node `new_id` with `--join`, adds it,
/// and checks it shows the same balances as the others. Then a load from `clients`
/// again: every node, the new one included, ends with the same log and balances (the
/// new node may take more snapshots meanwhile: each one it installs restarts it, and
/// behind a log purged this often it can fall behind the log again). Last, writes one
/// at a time, read back on every node: the new node has them in its own WAL.
pub async fn join_from_snapshot(
    cluster: &mut Cluster,
    history: &mut History,
    clients: usize,
    new_id: u64,
    entries: u64,
) -> Result<Join, String> {
    let all = cluster.ids();
    let leader = cluster.wait_leader(&all, PATIENCE).await?;
    let load = history.start_load(cluster, clients)?;
    load.wait_acks(WARMUP_ACKS, PATIENCE).await?;
    let log_index = wait_log(cluster, leader, entries, &load).await?;
    let (_, tip_before) = settle(cluster, history, load, Vec::new(), 1).await?;

    cluster.start_joining(new_id).await?;
    let members = cluster.add_member(new_id).await?;
    if !members.contains(&new_id) {
        return Err(format!(
            "AddNode({new_id}) answered without it among the voters: {members:?}"
        ));
    }
    cluster.wait_applied(new_id, tip_before, PATIENCE).await?;
    // The same balances on every node, the new one included.
    checks::same_balances(cluster, &cluster.running(), tip_before).await?;

    // Writes under load reach it too. Their records are read back on the nodes that
    // hold the whole history: the new node's may be in a later snapshot instead.
    let load = history.start_load(cluster, clients)?;
    load.wait_acks(WARMUP_ACKS, PATIENCE).await?;
    let acks = history.take(load.finish().await?);
    let tip_loaded = cluster.wait_converged(PATIENCE).await?;
    checks::acks_everywhere(cluster, &all, &acks, 1).await?;
    checks::same_balances(cluster, &cluster.running(), tip_loaded).await?;

    // Caught up and still: the next writes come to it through the log.
    let load = history.start_load(cluster, 1)?;
    load.wait_acks(FOLLOW_ACKS, PATIENCE).await?;
    let (_, tip_after) = settle(cluster, history, load, Vec::new(), 1).await?;
    if tip_after <= tip_loaded || tip_loaded <= tip_before {
        return Err(format!(
            "writes after the join did not all commit: the tip went {tip_before}, {tip_loaded}, {tip_after}"
        ));
    }
    Ok(Join {
        leader,
        log_index,
        tip_before,
        tip_loaded,
        tip_after,
        members,
    })
}

/// Waits (under `load`) until `leader`'s last log index passes `entries`; returns it.
async fn wait_log(
    cluster: &Cluster,
    leader: u64,
    entries: u64,
    load: &Load,
) -> Result<u64, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = cluster.status(leader).await;
        if let Ok(s) = &status
            && let Some(index) = s.last_log_index
            && index > entries
        {
            return Ok(index);
        }
        if Instant::now() > deadline {
            let seen = status
                .map(|s| describe(&[(leader, s)].into()))
                .unwrap_or_else(|e| e);
            return Err(format!(
                "node {leader}'s log did not pass {entries} entries within {PATIENCE:?} ({} acknowledgements, last load error {:?}): {seen}",
                load.acked(),
                load.last_error()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
