//! A leader SIGKILLed under load: the failover timed by probing the survivors (and as
//! the load's clients see it), the killed node restarted, the run checked.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ledger_client::pb;
use tonic::Code;

use super::{History, WARMUP_ACKS, settle};
use crate::cluster::load::{Ack, Pinned};
use crate::cluster::{Cluster, PATIENCE, describe};
use crate::crash::{ACCOUNTS, Op};

/// A probe's call: a new leader answers within it once it takes writes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Between rounds of probes and status polls after a kill.
const PROBE_PAUSE: Duration = Duration::from_millis(5);

/// What one leader kill measured.
#[derive(Clone, Debug)]
pub struct Failover {
    pub old_leader: u64,
    /// The node that acknowledged the first probe after the kill.
    pub new_leader: u64,
    /// From the SIGKILL to the first write acknowledged by a survivor, probing each
    /// directly in turn (no client backoff in the way): the cluster's failover.
    pub first_ack: Duration,
    /// From the SIGKILL to the first acknowledgement the load's `ledger_client` clients
    /// got from another node: the failover as an application sees it.
    pub client_ack: Duration,
    /// From the SIGKILL to a writable leader in a status poll (`None`: a probe was
    /// acknowledged before a poll saw one).
    pub elected: Option<Duration>,
    pub acks: usize,
}

/// A probe: one deposit at REPLICATED under a new user_ref, straight to one node.
async fn probe(
    history: &mut History,
    node: &mut Pinned,
    addr: &str,
) -> Result<Option<Ack>, String> {
    let user_ref = history.next_ref.fetch_add(1, Ordering::Relaxed);
    let op = Op::Deposit {
        account: 1 + history.rng.below(ACCOUNTS),
        amount: 1 + history.rng.below(1000),
    };
    match node
        .get()?
        .submit_and_wait(op.wire_at(user_ref, pb::WaitLevel::Replicated))
        .await
    {
        Ok(r) => {
            let ack = Ack::of(&r, user_ref, op, addr.to_owned());
            history.acks.push(ack.clone());
            Ok(Some(ack))
        }
        Err(e) => {
            // Refused by a follower or during an election: never executed. Anything else
            // may have executed (at most once: the log check sees to it).
            let refused = match &e {
                ledger_client::Error::Connect { .. } => true,
                ledger_client::Error::Status { status, .. } => {
                    matches!(status.code(), Code::FailedPrecondition | Code::Unavailable)
                }
                _ => false,
            };
            if refused {
                history.probes_refused += 1;
            } else {
                history.unresolved.push((user_ref, op));
            }
            Ok(None)
        }
    }
}

/// Kills the leader with SIGKILL under load and times the failover (probing the
/// survivors meanwhile, and watching the load's acknowledgements), restarts the killed
/// node, then checks the run's acknowledgements (one in `every`) and the balances on
/// every node.
pub async fn kill_leader_under_load(
    cluster: &mut Cluster,
    history: &mut History,
    clients: usize,
    every: usize,
) -> Result<Failover, String> {
    let all = cluster.ids();
    cluster.wait_leader(&all, PATIENCE).await?;
    let load = history.start_load(cluster, clients)?;
    load.wait_acks(WARMUP_ACKS, PATIENCE).await?;
    let old_leader = cluster.wait_leader(&all, PATIENCE).await?;
    let old_addrs = cluster.addrs_of(old_leader);
    let survivors: Vec<u64> = all.iter().copied().filter(|&id| id != old_leader).collect();
    let mut probes_to = survivors
        .iter()
        .map(|&id| {
            let addr = cluster.node(id).listen.to_string();
            Ok((id, Pinned::new(addr.clone(), PROBE_TIMEOUT)?, addr))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let seen = load.acked();
    let killed_at = Instant::now();
    cluster.kill9(old_leader)?;

    let deadline = killed_at + PATIENCE;
    let (mut elected, mut first, mut client_ack) = (None, None, None);
    let mut scanned = seen;
    let mut probes = Vec::new();
    while first.is_none() || client_ack.is_none() {
        if client_ack.is_none() {
            let fresh = load.acks_from(scanned);
            scanned += fresh.len();
            client_ack = fresh
                .into_iter()
                .find(|a| a.at > killed_at && !old_addrs.contains(&a.by))
                .map(|a| a.at.duration_since(killed_at));
        }
        if first.is_none() {
            for (id, node, addr) in &mut probes_to {
                if let Some(ack) = probe(history, node, addr).await? {
                    first = Some((*id, ack.at.duration_since(killed_at)));
                    probes.push(ack);
                    break;
                }
            }
        }
        if elected.is_none() && first.is_none() {
            let statuses = cluster.statuses(&survivors).await;
            if statuses.values().any(|s| s.writable) {
                elected = Some(killed_at.elapsed());
            }
        }
        if Instant::now() > deadline {
            let statuses = cluster.statuses(&survivors).await;
            return Err(format!(
                "no write acknowledged (probe: {first:?}, load: {client_ack:?}) within {PATIENCE:?} of killing leader {old_leader} (last load error: {:?}):{}",
                load.last_error(),
                describe(&statuses)
            ));
        }
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    let (Some((new_leader, first_ack)), Some(client_ack)) = (first, client_ack) else {
        unreachable!("the loop ends once both are known");
    };

    cluster.restart(old_leader).await?;
    load.wait_acks(WARMUP_ACKS, PATIENCE).await?;
    let (acks, _) = settle(cluster, history, load, probes, every).await?;
    Ok(Failover {
        old_leader,
        new_leader,
        first_ack,
        client_ack,
        elected,
        acks: acks.len(),
    })
}
