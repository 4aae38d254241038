//! Checks over gRPC on running nodes: every acknowledged transaction is on every node,
//! the same, as acknowledged; every node shows the same balances, summing to zero.
//! Reads carry `min_tx_id`, so a follower first waits until it has applied the id.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ledger_client::{Client, ConnectOptions, pb};

use super::Cluster;
use super::load::Ack;
use crate::crash::ACCOUNTS;

/// The FailReason code of a duplicate user_ref.
pub const DUPLICATE: u32 = 7;
/// Reads in flight per node.
const READS_IN_FLIGHT: usize = 4;

/// A reader of one node, straight to its listen address, with retries (a follower
/// still applying answers UNAVAILABLE after a bounded wait).
fn reader(cluster: &Cluster, id: u64) -> Result<Client, String> {
    Client::new(ConnectOptions {
        timeout: Duration::from_secs(10),
        retry_budget: Duration::from_secs(20),
        ..ConnectOptions::new([cluster.node(id).listen.to_string()])
    })
    .map_err(|e| e.to_string())
}

/// GetTransaction of each id on one node, waiting until the node has applied it.
async fn fetch(
    client: &Client,
    id: u64,
    tx_ids: &[u64],
) -> Result<HashMap<u64, pb::GetTransactionResponse>, String> {
    let mut tasks = Vec::new();
    for part in 0..READS_IN_FLIGHT {
        let mine: Vec<u64> = tx_ids
            .iter()
            .skip(part)
            .step_by(READS_IN_FLIGHT)
            .copied()
            .collect();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(mine.len());
            for tx_id in mine {
                let mut tx = client
                    .get_transaction(pb::GetTransactionRequest {
                        tx_id,
                        min_tx_id: tx_id,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("LOST? node {id}: GetTransaction({tx_id}): {e}"))?;
                // The node's applied index when it answered: not part of the transaction.
                tx.applied_tx_id = 0;
                out.push((tx_id, tx));
            }
            Ok::<_, String>(out)
        }));
    }
    let mut all = HashMap::with_capacity(tx_ids.len());
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// One transaction read back agrees with its acknowledgement.
fn agrees(ack: &Ack, tx: &pb::GetTransactionResponse) -> Result<(), String> {
    let mismatch = |what: &str| {
        Err(format!(
            "transaction {}: {what} differs from its acknowledgement {ack:?}: {tx:?}",
            ack.tx_id
        ))
    };
    if tx.tx_id != ack.tx_id || tx.user_ref != ack.user_ref {
        return mismatch("id or user_ref");
    }
    if tx.fail_reason != ack.fail_reason {
        return mismatch("outcome");
    }
    let mut entries: Vec<(u64, u64, bool)> = tx
        .entries
        .iter()
        .map(|e| (e.account_id, e.amount, e.kind() == pb::EntryKind::Debit))
        .collect();
    entries.sort_unstable();
    let expected = if ack.fail_reason == 0 {
        ack.op.entries()
    } else {
        Vec::new()
    };
    if entries != expected {
        return mismatch("entries");
    }
    if ack.fail_reason == DUPLICATE && tx.links.first().map(|l| l.to_tx_id) != Some(ack.original) {
        return mismatch("duplicate link");
    }
    if ack.fail_reason != 0 && !ack.op.may_fail_with(ack.fail_reason) {
        return mismatch("an outcome this operation cannot have");
    }
    Ok(())
}

/// Every acknowledgement (or one in `every`) read back on each of `ids`: there, the same
/// on every node, as acknowledged. Returns how many were read back.
pub async fn acks_everywhere(
    cluster: &Cluster,
    ids: &[u64],
    acks: &[Ack],
    every: usize,
) -> Result<u64, String> {
    let mut by_id: BTreeMap<u64, &Ack> = BTreeMap::new();
    for ack in acks {
        if let Some(other) = by_id.insert(ack.tx_id, ack) {
            return Err(format!(
                "two acknowledgements name transaction {}: {other:?} and {ack:?}",
                ack.tx_id
            ));
        }
    }
    let sample: Vec<u64> = by_id
        .keys()
        .copied()
        .enumerate()
        .filter(|(i, _)| i % every.max(1) == 0)
        .map(|(_, id)| id)
        .collect();
    let mut read: Vec<(u64, HashMap<u64, pb::GetTransactionResponse>)> = Vec::new();
    for &id in ids {
        read.push((id, fetch(&reader(cluster, id)?, id, &sample).await?));
    }
    for &tx_id in &sample {
        let ack = by_id[&tx_id];
        let Some((first_node, first)) = read.first().map(|(n, r)| (*n, &r[&tx_id])) else {
            break;
        };
        agrees(ack, first).map_err(|e| format!("node {first_node}: {e}"))?;
        for (node, txs) in &read[1..] {
            if txs[&tx_id] != *first {
                return Err(format!(
                    "transaction {tx_id} differs between nodes {first_node} and {node}:\n {first:?}\n {:?}",
                    txs[&tx_id]
                ));
            }
        }
    }
    Ok(sample.len() as u64)
}

/// The balances of accounts 0..=ACCOUNTS on each of `ids` once it has applied `at_tx`:
/// the same everywhere, summing to zero. Returns them.
pub async fn same_balances(cluster: &Cluster, ids: &[u64], at_tx: u64) -> Result<Vec<i64>, String> {
    let mut seen: Option<(u64, Vec<i64>)> = None;
    for &id in ids {
        let r = reader(cluster, id)?
            .get_balances(pb::GetBalancesRequest {
                account_ids: (0..=ACCOUNTS).collect(),
                min_tx_id: at_tx,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("node {id}: GetBalances at {at_tx}: {e}"))?;
        if r.last_snapshot_tx_id < at_tx {
            return Err(format!(
                "node {id}: GetBalances with min_tx_id {at_tx} answered as of {}",
                r.last_snapshot_tx_id
            ));
        }
        if r.balances.iter().sum::<i64>() != 0 {
            return Err(format!(
                "node {id}: balances do not sum to zero: {:?}",
                r.balances
            ));
        }
        match &seen {
            Some((other, balances)) if *balances != r.balances => {
                return Err(format!(
                    "balances at {at_tx} differ between nodes {other} and {id}:\n {balances:?}\n {:?}",
                    r.balances
                ));
            }
            Some(_) => {}
            None => seen = Some((id, r.balances)),
        }
    }
    Ok(seen.map(|(_, b)| b).unwrap_or_default())
}
