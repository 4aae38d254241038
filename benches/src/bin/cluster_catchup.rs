//! Follower catch-up: a 3-node cluster of real `ledger-server` processes (the binary beside
//! this one) on loopback; one follower is stopped, the two others take a backlog of
//! transfers (acknowledged at Replicated), then the follower starts again and replays it.
//! Reports the backlog's size and how long the follower took from its start (process
//! start included) and from the moment it listened, to showing the last transaction.
//!
//! Raft snapshots are off (`--raft-snapshot-every 0`) unless `--snapshots` is given: the
//! follower replays the log, entry by entry, as the leader sends it.

use std::time::{Duration, Instant};

use clap::Parser;
use ledger_bench::cluster::{Cluster, Options};
use ledger_client::{Client, ConnectOptions, pb};

#[derive(Parser, Debug)]
#[command(about = "Times a stopped follower replaying a backlog of transfers")]
struct Args {
    /// Transactions in the backlog.
    #[arg(long, default_value_t = 10_000_000)]
    backlog: u64,
    /// Transfers per SubmitBatchAndWait.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// Batches in flight.
    #[arg(long, default_value_t = 4)]
    clients: u64,
    /// Keep Raft snapshots on (every 65,536 entries): a follower that far behind gets one.
    #[arg(long)]
    snapshots: bool,
    /// Where the data directories go.
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(&args)) {
        eprintln!("cluster-catchup: {e}");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let bin = ledger_bench::process::server_binary()?;
    let dir = tempfile::Builder::new()
        .prefix("cluster-catchup-")
        .tempdir_in(&args.dir)
        .map_err(|e| e.to_string())?;
    let mut options = Options::new(3, false);
    if !args.snapshots {
        options.extra_args = vec!["--raft-snapshot-every".into(), "0".into()];
    }
    let mut cluster = Cluster::start(bin, dir.path(), &options).await?;
    let leader = cluster
        .wait_leader(&cluster.ids(), Duration::from_secs(30))
        .await?;
    let follower = cluster
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .ok_or("no follower")?;
    cluster.stop(follower)?;

    let client =
        Client::new(ConnectOptions::new(cluster.direct_addrs())).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let last = load(&client, args).await?;
    let loaded = started.elapsed();
    println!(
        "backlog: {} transactions (last id {last}) acknowledged at Replicated by 2 of 3 nodes in {:.2} s ({:.2}M tx/s)",
        args.backlog,
        loaded.as_secs_f64(),
        args.backlog as f64 / loaded.as_secs_f64() / 1e6
    );

    let started = Instant::now();
    cluster.restart(follower).await?;
    let listening = started.elapsed();
    cluster
        .wait_applied(follower, last, Duration::from_secs(600))
        .await?;
    let total = started.elapsed();
    let replay = total - listening;
    println!(
        "follower {follower}: listening after {:.2} s, showed transaction {last} after {:.2} s: {:.2}M tx/s from its start, {:.2}M tx/s once listening",
        listening.as_secs_f64(),
        total.as_secs_f64(),
        args.backlog as f64 / total.as_secs_f64() / 1e6,
        args.backlog as f64 / replay.as_secs_f64() / 1e6
    );
    cluster.stop_all()?;
    Ok(())
}

/// Funds accounts 1..=999, then submits transfers among them until the backlog is
/// acknowledged; returns the last transaction id.
async fn load(client: &Client, args: &Args) -> Result<u64, String> {
    let accounts = 999u64; // the harness runs nodes with --max-accounts 1000
    let deposits = (1..=accounts)
        .map(|a| {
            op(pb::submit_and_wait_request::Operation::Deposit(
                pb::Deposit {
                    account: a,
                    amount: 1 << 40,
                    user_ref: 0,
                },
            ))
        })
        .collect();
    submit(client, deposits).await?;
    let batches = args.backlog.saturating_sub(accounts).div_ceil(args.batch);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, next, batch) = (client.clone(), next.clone(), args.batch);
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= batches {
                    return Ok::<u64, String>(last);
                }
                let ops = (0..batch)
                    .map(|i| {
                        let from = 1 + (n * batch + i) % accounts;
                        let to = 1 + (from + 7 * i) % accounts;
                        op(pb::submit_and_wait_request::Operation::Transfer(
                            pb::Transfer {
                                from,
                                to: if to == from { 1 + to % accounts } else { to },
                                amount: 1,
                                user_ref: 0,
                            },
                        ))
                    })
                    .collect();
                last = last.max(submit(&client, ops).await?);
            }
        }));
    }
    let mut last = 0;
    for task in tasks {
        last = last.max(task.await.map_err(|e| e.to_string())??);
    }
    Ok(last)
}

fn op(operation: pb::submit_and_wait_request::Operation) -> pb::SubmitAndWaitRequest {
    pb::SubmitAndWaitRequest {
        operation: Some(operation),
        wait_level: 0,
    }
}

/// One batch, acknowledged at Replicated; the last id it got.
async fn submit(client: &Client, operations: Vec<pb::SubmitAndWaitRequest>) -> Result<u64, String> {
    let reply = client
        .submit_batch_and_wait(pb::SubmitBatchAndWaitRequest {
            operations,
            wait_level: pb::WaitLevel::Replicated.into(),
        })
        .await
        .map_err(|e| format!("a batch: {e}"))?;
    Ok(reply
        .results
        .iter()
        .map(|r| r.transaction_id)
        .max()
        .unwrap_or(0))
}
