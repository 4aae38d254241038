//! The runs: a leader SIGKILLed under load (failover timed), a leader cut off from both
//! followers while a client keeps writing to it, a follower SIGKILLed and restarted; and
//! the full check at the end of any of them. What every run acknowledged accumulates in
//! a [`History`] that the log comparison checks against.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledger_client::pb;
use tonic::Code;

use super::load::{Ack, Load, LoadLog, LoadOptions, Pinned};
use super::{Cluster, PATIENCE, checks, describe, wal};
use crate::crash::{ACCOUNTS, Op};
use crate::workload::Rng;

/// Acknowledgements a load must make before a fault, and after a restart.
const WARMUP_ACKS: usize = 20;
/// The minority client's calls: short, never retried (a client of the isolated side).
const MINORITY_TIMEOUT: Duration = Duration::from_millis(1500);
const MINORITY_CALLS_MAX: u64 = 1_000;
/// Long enough to outlast the heal: the deposed leader ends it, not the timeout.
const STRADDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// A probe's call: a new leader answers within it once it takes writes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Between rounds of probes and status polls after a kill.
const PROBE_PAUSE: Duration = Duration::from_millis(5);

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

    fn take(&mut self, log: LoadLog) -> Vec<Ack> {
        self.unresolved.extend(log.unresolved);
        self.load_errors += log.errors;
        self.acks.extend(log.acks.iter().cloned());
        log.acks
    }

    fn start_load(&mut self, cluster: &Cluster, clients: usize) -> Result<Load, String> {
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
/// `acks` of this run (one in `every`) on every node and compares their balances.
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
            let ack = Ack {
                tx_id: r.transaction_id,
                user_ref,
                op,
                fail_reason: r.fail_reason,
                original: r.original_transaction_id,
                at: Instant::now(),
                by: addr.to_owned(),
            };
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

/// What a partition run saw.
#[derive(Clone, Debug, Default)]
pub struct Partition {
    pub old_leader: u64,
    pub new_leader: u64,
    /// Transaction ids the isolated leader issued (SubmitOperation) while cut off.
    pub stranded_ids: Vec<u64>,
    /// The minority client's REPLICATED writes, by how each ended ("DeadlineExceeded",
    /// "Aborted", ...): none may have been acknowledged.
    pub minority_ends: BTreeMap<String, u64>,
    /// Acknowledgements the majority gave while the old leader was cut off.
    pub majority_acks: usize,
    pub acks: usize,
}

/// The minority client: writes to the isolated leader, straight to it, never retried,
/// until `stop`. Returns the user_refs it sent, the ids it was issued, and how its
/// waited writes ended; an acknowledged one is an error.
async fn minority_writes(
    addr: String,
    next_ref: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(Vec<u64>, Vec<u64>, BTreeMap<String, u64>), String> {
    let mut node = Pinned::new(addr.clone(), MINORITY_TIMEOUT)?;
    let (mut refs, mut ids, mut ends) = (Vec::new(), Vec::new(), BTreeMap::new());
    for call in 0..MINORITY_CALLS_MAX {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let user_ref = next_ref.fetch_add(1, Ordering::Relaxed);
        refs.push(user_ref);
        let deposit = pb::Deposit {
            account: 1 + call % ACCOUNTS,
            amount: 1,
            user_ref,
        };
        if call % 2 == 0 {
            // Not waited: the id the isolated leader issues for it.
            let request = pb::SubmitOperationRequest {
                operation: Some(pb::submit_operation_request::Operation::Deposit(deposit)),
            };
            if let Ok(r) = node.get()?.submit_operation(request).await {
                ids.push(r.transaction_id);
            }
            continue;
        }
        let end = waited_deposit(&mut node, deposit).await?;
        *ends.entry(end).or_insert(0) += 1;
    }
    Ok((refs, ids, ends))
}

/// A deposit at REPLICATED to the node `node` is pinned to, which must not acknowledge
/// it: how it ended ("DeadlineExceeded", "Aborted", ...).
async fn waited_deposit(node: &mut Pinned, deposit: pb::Deposit) -> Result<String, String> {
    let user_ref = deposit.user_ref;
    let request = pb::SubmitAndWaitRequest {
        operation: Some(pb::submit_and_wait_request::Operation::Deposit(deposit)),
        wait_level: pb::WaitLevel::Replicated.into(),
    };
    match node.get()?.submit_and_wait(request).await {
        Ok(r) => Err(format!(
            "the isolated leader acknowledged user_ref {user_ref} at REPLICATED: {r:?}"
        )),
        Err(e) => Ok(e
            .status()
            .map_or_else(|| "no connection".to_owned(), |s| format!("{:?}", s.code()))),
    }
}

/// Cuts the leader off from both followers (both ways) while the minority client writes
/// to it and the load writes to the cluster. Once the majority has a leader taking
/// writes: one more write to the isolated leader, and while it waits, the heal, which
/// must end it ABORTED. Then checks the run's acknowledgements and balances on every
/// node. What the minority client sent goes into [`History::forbidden_refs`].
pub async fn isolate_leader(
    cluster: &mut Cluster,
    history: &mut History,
    clients: usize,
) -> Result<Partition, String> {
    let all = cluster.ids();
    let old_leader = cluster.wait_leader(&all, PATIENCE).await?;
    let old_addr = cluster.node(old_leader).listen.to_string();
    let followers: Vec<u64> = all.iter().copied().filter(|&id| id != old_leader).collect();
    let load = history.start_load(cluster, clients)?;
    load.wait_acks(WARMUP_ACKS, PATIENCE).await?;

    cluster
        .proxy
        .as_ref()
        .ok_or("a partition needs the proxy")?
        .isolate(old_leader, &followers);
    let cut_at = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let minority = tokio::spawn(minority_writes(
        old_addr.clone(),
        Arc::clone(&history.next_ref),
        Arc::clone(&stop),
    ));

    let new_leader = cluster.wait_leader(&followers, PATIENCE).await?;
    let new_addrs = cluster.addrs_of(new_leader);
    // The majority takes writes from the load.
    let deadline = Instant::now() + PATIENCE;
    let majority_acks = loop {
        let n = load
            .acks_from(0)
            .iter()
            .filter(|a| a.at > cut_at && new_addrs.contains(&a.by))
            .count();
        if n >= WARMUP_ACKS {
            break n;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the majority's leader {new_leader} acknowledged {n} writes within {PATIENCE:?} (last error: {:?})",
                load.last_error()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let (refs, stranded_ids, mut minority_ends) = tokio::time::timeout(PATIENCE, minority)
        .await
        .map_err(|_| "the minority client hung".to_owned())?
        .map_err(|e| e.to_string())??;
    history.forbidden_refs.extend(refs);
    if stranded_ids.is_empty() {
        return Err("the isolated leader issued no transaction id while cut off".into());
    }

    // A write waiting on the isolated leader when the partition heals: it steps down,
    // and the write must end ABORTED (its outcome unknown to the client), never acked.
    let computed = cluster.status(old_leader).await?.computed_index;
    let user_ref = history.next_ref.fetch_add(1, Ordering::Relaxed);
    history.forbidden_refs.insert(user_ref);
    let mut node = Pinned::new(old_addr, STRADDLER_TIMEOUT)?;
    let straddler = tokio::spawn(async move {
        let deposit = pb::Deposit {
            account: 1,
            amount: 1,
            user_ref,
        };
        waited_deposit(&mut node, deposit).await
    });
    let deadline = Instant::now() + PATIENCE;
    while cluster.status(old_leader).await?.computed_index <= computed {
        if Instant::now() > deadline || straddler.is_finished() {
            return Err("the isolated leader did not execute the last write".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(proxy) = &cluster.proxy {
        proxy.heal_all();
    }
    let end = tokio::time::timeout(PATIENCE, straddler)
        .await
        .map_err(|_| "the write waiting on the deposed leader hung".to_owned())?
        .map_err(|e| e.to_string())??;
    if end != "Aborted" {
        return Err(format!(
            "a write waiting on the isolated leader when it was deposed ended {end}, not ABORTED"
        ));
    }
    *minority_ends.entry(end).or_insert(0) += 1;

    cluster.wait_leader(&all, PATIENCE).await?;
    let (acks, _) = settle(cluster, history, load, Vec::new(), 1).await?;
    Ok(Partition {
        old_leader,
        new_leader,
        stranded_ids,
        minority_ends,
        majority_acks,
        acks: acks.len(),
    })
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
    let tip = cluster.wait_converged(PATIENCE).await?;
    let ids = cluster.running();
    let served = checks::same_balances(cluster, &ids, tip).await?;
    cluster.stop_all()?;
    let wals: Vec<_> = ids
        .iter()
        .map(|&id| (id, cluster.node(id).data_dir().join("wal")))
        .collect();
    let report = tokio::task::block_in_place(|| wal::compare(&wals, &history.expect()))?;
    let ranges: HashSet<_> = report.ranges.values().collect();
    if ranges.len() != 1 {
        return Err(format!(
            "the converged nodes' logs end apart: {:?}",
            report.ranges
        ));
    }
    if report
        .ranges
        .values()
        .next()
        .copied()
        .flatten()
        .map(|r| r.1)
        != Some(tip)
    {
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
