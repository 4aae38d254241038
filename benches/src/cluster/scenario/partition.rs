//! A leader cut off from both followers while a client of the minority side keeps
//! writing to it: nothing it executes then may be acknowledged or survive the heal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledger_client::pb;

use super::{History, WARMUP_ACKS, settle};
use crate::cluster::load::Pinned;
use crate::cluster::{Cluster, PATIENCE};
use crate::crash::ACCOUNTS;

/// The minority client's calls: short, never retried (a client of the isolated side).
const MINORITY_TIMEOUT: Duration = Duration::from_millis(1500);
const MINORITY_CALLS_MAX: u64 = 1_000;
/// Long enough to outlast the heal: the deposed leader ends it, not the timeout.
const STRADDLER_TIMEOUT: Duration = Duration::from_secs(30);

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
