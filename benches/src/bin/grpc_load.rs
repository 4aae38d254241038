//! gRPC load generator: drives a `ledger-server` over loopback (unary, batched or
//! streaming submissions from concurrent clients) and prints committed tx/s and latency
//! percentiles. `cargo run --release -p ledger-bench --bin grpc-load -- --help`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use ledger_bench::latency;
use ledger_bench::process;
use ledger_bench::workload::{Rng, funding};
use ledger_client::pb;
use ledger_client::pb::ledger_client::LedgerClient;
use ledger_core::transaction::Operation;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One SubmitAndWait per operation.
    Unary,
    /// SubmitBatchAndWait of --batch operations.
    Batch,
    /// One SubmitStream per client, --batch operations in flight.
    Stream,
    /// One SubmitBatchStream per client, --in-flight batches of --batch operations.
    BatchStream,
    /// Reads: one GetBalance of a random funded account per request (nothing submitted).
    Balance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Level {
    Processed,
    Committed,
    Snapshot,
    /// Durable on a majority of a cluster (--nodes 3); a single node's Committed.
    Replicated,
}

impl Level {
    fn wire(self) -> i32 {
        match self {
            Level::Processed => pb::WaitLevel::Processed.into(),
            Level::Committed => pb::WaitLevel::Committed.into(),
            Level::Snapshot => pb::WaitLevel::Snapshot.into(),
            Level::Replicated => pb::WaitLevel::Replicated.into(),
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "grpc-load",
    about = "Drives a ledger-server with transfers between funded accounts over gRPC; starts \
             one (a fresh data directory, the ledger-server binary beside this one) unless \
             --addr is given"
)]
struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Batch)]
    mode: Mode,
    /// Concurrent clients (tasks), sharing --connections HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Connections to the server.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Operations per request (batch) or in flight per stream (stream).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, value_enum, default_value_t = Level::Committed)]
    wait: Level,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Funded accounts (transfers between random pairs).
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Start a cluster of this many nodes (the replicated path: all on this machine, each
    /// with its own data directory) instead of one server; the load goes to its leader.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// An already running server (host:port); otherwise one is started.
    #[arg(long)]
    addr: Option<String>,
    /// Offered operations per second over all clients (0: closed loop, as fast as
    /// acknowledgements come back). Latency is then measured from when each request was
    /// due, so a stalled server cannot hide its queueing (unary and batch modes); tokio's
    /// timer wakes up to 1 ms late, and that lateness is counted too.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Batches each client keeps in flight (batch-stream mode).
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Runtime worker threads of the client.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Subscribers to the change stream (`SubscribeTransactions`, every committed
    /// transaction from the run's start), each counting what it receives.
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// Subscribers read each batch with its transactions left as bytes, not decoded:
    /// what a consumer on another machine costs this one.
    #[arg(long)]
    light_subscribers: bool,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("grpc-load: {e}");
        std::process::exit(1);
    }
}

/// A server this run started, killed at the end.
struct Spawned {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(accounts: u64) -> Result<(Spawned, String), String> {
    spawn_node(accounts, &["--listen", "127.0.0.1:0"])
}

/// Starts `nodes` servers as one cluster on loopback ports picked free just before.
fn spawn_cluster(accounts: u64, nodes: usize) -> Result<(Vec<Spawned>, Vec<String>), String> {
    let ports: Vec<u16> = (0..nodes)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| format!("a free port: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut spawned = Vec::new();
    let mut addrs = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let listen = format!("127.0.0.1:{port}");
        let id = (i + 1).to_string();
        let (s, addr) = spawn_node(
            accounts,
            &["--listen", &listen, "--node-id", &id, "--peers", &peers],
        )?;
        spawned.push(s);
        addrs.push(addr);
    }
    Ok((spawned, addrs))
}

/// The address of the cluster's writable leader, once every node follows it (so no
/// election from the start-up is still under way), at most 30 s.
async fn leader_of(addrs: &[String]) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut leaders = Vec::new();
        let mut writable = None;
        for addr in addrs {
            let Ok(mut c) = LedgerClient::connect(format!("http://{addr}")).await else {
                break;
            };
            let Ok(s) = c.get_cluster_status(pb::GetClusterStatusRequest {}).await else {
                break;
            };
            let s = s.into_inner();
            leaders.push(s.leader_id);
            if s.writable {
                writable = Some((s.node_id, addr.clone()));
            }
        }
        if let Some((id, addr)) = writable
            && leaders.len() == addrs.len()
            && leaders.iter().all(|l| *l == Some(id))
        {
            return Ok(addr);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the cluster elected no writable leader within 30 s".into())
}

fn spawn_node(accounts: u64, flags: &[&str]) -> Result<(Spawned, String), String> {
    let bin = ledger_bench::process::server_binary()?;
    let dir = tempfile::Builder::new()
        .prefix("ledger-grpc-load-")
        .tempdir_in(".")
        .map_err(|e| format!("temporary data directory: {e}"))?;
    let mut child = Command::new(&bin)
        .args(flags)
        .args(["--log", "warn"])
        .arg("--max-accounts")
        .arg((accounts + 1).to_string())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "{}: {e} (build it: cargo build --release -p ledger-server)",
                bin.display()
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(a) = line.strip_prefix("listening on ") {
                    break a.to_owned();
                }
            }
            _ => return Err("the server exited before listening".into()),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((Spawned { child, _dir: dir }, addr))
}

fn wire(op: Operation) -> pb::submit_and_wait_request::Operation {
    match op {
        Operation::Deposit {
            account,
            amount,
            user_ref,
        } => pb::submit_and_wait_request::Operation::Deposit(pb::Deposit {
            account,
            amount,
            user_ref,
        }),
        Operation::Transfer {
            from,
            to,
            amount,
            user_ref,
        } => pb::submit_and_wait_request::Operation::Transfer(pb::Transfer {
            from,
            to,
            amount,
            user_ref,
        }),
        _ => unreachable!("the generator makes deposits and transfers only"),
    }
}

fn transfer(rng: &mut Rng, accounts: u64, level: i32) -> pb::SubmitAndWaitRequest {
    let from = 1 + rng.below(accounts);
    let to = 1 + (from + rng.below(accounts - 1)) % accounts;
    pb::SubmitAndWaitRequest {
        operation: Some(pb::submit_and_wait_request::Operation::Transfer(
            pb::Transfer {
                from,
                to: if to == 0 { accounts } else { to },
                amount: 1 + rng.below(100),
                user_ref: 0,
            },
        )),
        wait_level: level,
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.accounts < 2 || args.concurrency == 0 || args.batch == 0 {
        return Err("--accounts must be >= 2, --concurrency and --batch >= 1".into());
    }
    let (_spawned, addr) = match &args.addr {
        Some(addr) => (Vec::new(), addr.clone()),
        None if args.nodes > 1 => {
            let (s, addrs) = spawn_cluster(args.accounts, args.nodes)?;
            let leader = leader_of(&addrs).await?;
            println!("{} nodes, leader at {leader}", args.nodes);
            (s, leader)
        }
        None => {
            let (s, a) = spawn_server(args.accounts)?;
            (vec![s], a)
        }
    };
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?,
        );
    }
    let mut admin = LedgerClient::new(channels[0].clone()).max_decoding_message_size(64 << 20);
    // Fund every account, durably.
    let deposits: Vec<_> = funding(args.accounts).collect();
    for chunk in deposits.chunks(2000) {
        admin
            .submit_batch_and_wait(pb::SubmitBatchAndWaitRequest {
                operations: chunk
                    .iter()
                    .map(|op| pb::SubmitAndWaitRequest {
                        operation: Some(wire(op.clone())),
                        wait_level: 0,
                    })
                    .collect(),
                wait_level: pb::WaitLevel::Committed.into(),
            })
            .await
            .map_err(|e| format!("funding: {e}"))?;
    }
    println!("funded {} accounts", args.accounts);
    let index = |mut c: LedgerClient<Channel>| async move {
        c.get_pipeline_index(pb::GetPipelineIndexRequest {})
            .await
            .map(|r| r.into_inner().committed_index)
            .map_err(|e| e.to_string())
    };
    let before = index(admin.clone()).await?;
    let usage_before = process::usage();
    let done = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let subscribers: Vec<_> = (0..args.subscribers)
        .map(|i| {
            tokio::spawn(subscribe(
                channels[i % channels.len()].clone(),
                before + 1,
                args.light_subscribers,
                Arc::clone(&done),
            ))
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.concurrency {
        let client = LedgerClient::new(channels[i % channels.len()].clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let (done, errors) = (Arc::clone(&done), Arc::clone(&errors));
        let (mode, batch, in_flight, level, accounts) = (
            args.mode,
            args.batch,
            args.in_flight,
            args.wait.wire(),
            args.accounts,
        );
        // Each client's share of the offered rate, as the interval between its requests.
        let per_request = match mode {
            Mode::Batch | Mode::BatchStream => batch as f64,
            _ => 1.0,
        };
        let interval = (args.rate > 0.0)
            .then(|| Duration::from_secs_f64(per_request * args.concurrency as f64 / args.rate));
        tasks.push(tokio::spawn(async move {
            drive(
                client, mode, batch, in_flight, level, accounts, i as u64, interval, done, errors,
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    done.store(true, Ordering::Release);
    let mut hist = latency::histogram();
    let mut ops = 0;
    for t in tasks {
        let (h, n) = t.await.map_err(|e| e.to_string())?;
        hist.add(&h).map_err(|e| e.to_string())?;
        ops += n;
    }
    let secs = started.elapsed().as_secs_f64();
    let after = index(admin).await?;
    let usage = process::usage();
    // A cluster's leader may change during a run (its replacement's index is its own).
    let committed = after.saturating_sub(before);
    println!(
        "mode {:?}, {} client(s) on {} connection(s), batch {}, wait {:?}, {}",
        args.mode,
        args.concurrency,
        args.connections,
        args.batch,
        args.wait,
        if args.rate > 0.0 {
            format!("offered {:.0} ops/s", args.rate)
        } else {
            "closed loop".to_owned()
        }
    );
    if args.mode == Mode::Balance {
        println!(
            "reads: {ops} in {secs:.2} s = {:.0} reads/s",
            ops as f64 / secs
        );
    }
    println!(
        "committed: {committed} tx in {secs:.2} s = {:.0} tx/s ({ops} acknowledged, {} errors)",
        committed as f64 / secs,
        errors.load(Ordering::Relaxed)
    );
    println!(
        "latency per request (us): p10 {} p50 {} p90 {} p99 {} p99.9 {} max {} (n = {})",
        hist.value_at_quantile(0.1),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.9),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
        hist.len()
    );
    println!(
        "client process: {:.2} cores busy",
        (usage.cpu - usage_before.cpu).as_secs_f64() / secs
    );
    for (i, s) in subscribers.into_iter().enumerate() {
        let (received, next) = s.await.map_err(|e| e.to_string())??;
        println!(
            "subscriber {i}: {received} tx = {:.0} tx/s, {} behind the committed index at the end",
            received as f64 / secs,
            (after + 1).saturating_sub(next)
        );
    }
    Ok(())
}

/// `TransactionBatch` with each transaction left as its bytes (the same wire type as an
/// embedded message): counted, never decoded.
#[derive(Clone, PartialEq, prost::Message)]
struct LightBatch {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    transactions: Vec<bytes::Bytes>,
    #[prost(uint64, tag = "2")]
    next_tx_id: u64,
}

/// One change-stream subscriber from `from`, until `done`: what it received, and the
/// id it would resume from. `light`: batches read as [`LightBatch`].
async fn subscribe(
    channel: Channel,
    from: u64,
    light: bool,
    done: Arc<AtomicBool>,
) -> Result<(u64, u64), String> {
    let request = pb::SubscribeTransactionsRequest {
        from_tx_id: from,
        ..Default::default()
    };
    if light {
        let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
        grpc.ready().await.map_err(|e| format!("subscribe: {e}"))?;
        let codec =
            tonic_prost::ProstCodec::<pb::SubscribeTransactionsRequest, LightBatch>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/roda.ledger.v1.Ledger/SubscribeTransactions",
        );
        let stream = grpc
            .server_streaming(tonic::Request::new(request), path, codec)
            .await
            .map_err(|e| format!("subscribe: {e}"))?
            .into_inner();
        count(stream, from, done, |b: &LightBatch| {
            (b.transactions.len(), b.next_tx_id)
        })
        .await
    } else {
        let mut client = LedgerClient::new(channel).max_decoding_message_size(64 << 20);
        let stream = client
            .subscribe_transactions(request)
            .await
            .map_err(|e| format!("subscribe: {e}"))?
            .into_inner();
        count(stream, from, done, |b: &pb::TransactionBatch| {
            (b.transactions.len(), b.next_tx_id)
        })
        .await
    }
}

/// Reads `stream` until `done`: transactions received, and the last `next_tx_id`.
async fn count<M>(
    mut stream: tonic::Streaming<M>,
    from: u64,
    done: Arc<AtomicBool>,
    sizes: impl Fn(&M) -> (usize, u64),
) -> Result<(u64, u64), String> {
    let (mut received, mut next) = (0u64, from);
    while !done.load(Ordering::Acquire) {
        match tokio::time::timeout(Duration::from_millis(100), stream.message()).await {
            Ok(Ok(Some(batch))) => {
                let (n, batch_next) = sizes(&batch);
                received += n as u64;
                next = batch_next;
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(format!("subscriber: {e}")),
            Err(_) => {}
        }
    }
    Ok((received, next))
}

/// One client's loop; returns its latency histogram and acknowledged operations.
#[allow(clippy::too_many_arguments)]
async fn drive(
    mut client: LedgerClient<Channel>,
    mode: Mode,
    batch: usize,
    in_flight: usize,
    level: i32,
    accounts: u64,
    seed: u64,
    interval: Option<Duration>,
    done: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
) -> (Histogram<u64>, u64) {
    let mut hist = latency::histogram();
    let mut rng = Rng::new(seed + 1);
    let mut ops = 0u64;
    let mut due = Instant::now();
    // The time the next request is measured from: when it was due (open loop), or now.
    let mut next_start = || match interval {
        Some(interval) => {
            let at = due;
            due += interval;
            at
        }
        None => Instant::now(),
    };
    match mode {
        Mode::Balance => {
            while !done.load(Ordering::Acquire) {
                let t = next_start();
                if interval.is_some() && t > Instant::now() {
                    tokio::time::sleep_until(t.into()).await;
                }
                let account_id = 1 + rng.below(accounts);
                match client
                    .get_balance(pb::GetBalanceRequest {
                        account_id,
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => ops += 1,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latency::record(&mut hist, t.elapsed(), 1);
            }
        }
        Mode::Unary => {
            while !done.load(Ordering::Acquire) {
                let t = next_start();
                // Only an open loop sleeps: the timer's 1 ms resolution would pace a
                // closed loop.
                if interval.is_some() && t > Instant::now() {
                    tokio::time::sleep_until(t.into()).await;
                }
                match client
                    .submit_and_wait(transfer(&mut rng, accounts, level))
                    .await
                {
                    Ok(_) => ops += 1,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latency::record(&mut hist, t.elapsed(), 1);
            }
        }
        Mode::Batch => {
            while !done.load(Ordering::Acquire) {
                let operations = (0..batch)
                    .map(|_| transfer(&mut rng, accounts, 0))
                    .collect();
                let t = next_start();
                // Only an open loop sleeps: the timer's 1 ms resolution would pace a
                // closed loop.
                if interval.is_some() && t > Instant::now() {
                    tokio::time::sleep_until(t.into()).await;
                }
                match client
                    .submit_batch_and_wait(pb::SubmitBatchAndWaitRequest {
                        operations,
                        wait_level: level,
                    })
                    .await
                {
                    Ok(r) => ops += r.into_inner().results.len() as u64,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latency::record(&mut hist, t.elapsed(), 1);
            }
        }
        Mode::Stream => {
            // Keep `batch` requests in flight: send in chunks as responses come back.
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::SubmitAndWaitRequest>(batch);
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            let mut responses = match client.submit_stream(stream).await {
                Ok(r) => r.into_inner(),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return (hist, 0);
                }
            };
            let mut sent_at = std::collections::VecDeque::new();
            for _ in 0..batch {
                sent_at.push_back(Instant::now());
                if tx.send(transfer(&mut rng, accounts, level)).await.is_err() {
                    break;
                }
            }
            while let Ok(Some(_)) = responses.message().await {
                ops += 1;
                if let Some(t) = sent_at.pop_front() {
                    latency::record(&mut hist, t.elapsed(), 1);
                }
                if done.load(Ordering::Acquire) {
                    if sent_at.is_empty() {
                        break;
                    }
                    continue;
                }
                sent_at.push_back(Instant::now());
                if tx.send(transfer(&mut rng, accounts, level)).await.is_err() {
                    break;
                }
            }
            drop(tx);
        }
        Mode::BatchStream => {
            // Keep `in_flight` batches outstanding: send the next as each answer arrives.
            let in_flight = in_flight.max(1);
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::SubmitBatchAndWaitRequest>(in_flight);
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            let mut responses = match client.submit_batch_stream(stream).await {
                Ok(r) => r.into_inner(),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return (hist, 0);
                }
            };
            let mut next_batch = || pb::SubmitBatchAndWaitRequest {
                operations: (0..batch)
                    .map(|_| transfer(&mut rng, accounts, 0))
                    .collect(),
                wait_level: level,
            };
            let mut sent_at = std::collections::VecDeque::new();
            for _ in 0..in_flight {
                let request = next_batch();
                sent_at.push_back(Instant::now());
                if tx.send(request).await.is_err() {
                    break;
                }
            }
            loop {
                match responses.message().await {
                    Ok(Some(r)) => ops += r.results.len() as u64,
                    Ok(None) => break,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                if let Some(t) = sent_at.pop_front() {
                    latency::record(&mut hist, t.elapsed(), 1);
                }
                if done.load(Ordering::Acquire) {
                    if sent_at.is_empty() {
                        break;
                    }
                    continue;
                }
                let request = next_batch();
                sent_at.push_back(Instant::now());
                if tx.send(request).await.is_err() {
                    break;
                }
            }
            drop(tx);
        }
    }
    (hist, ops)
}
