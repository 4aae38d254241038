//! Leader failover, long run: a cluster of real `ledger-server` processes (the binary
//! beside this one, or `$LEDGER_SERVER_BIN`) whose leader is SIGKILLed under load, run
//! after run; each run times the failover (kill to the first write acknowledged by a new
//! leader), restarts the killed node and checks every node; every `--log-check-every`
//! runs, and at the end, the nodes are stopped and their WALs compared.
//! `cargo run --release -p ledger-bench --bin cluster-failover -- --help`.

use std::time::{Duration, Instant};

use clap::Parser;
use ledger_bench::cluster::scenario::{self, Failover, History};
use ledger_bench::cluster::{Cluster, Options};

#[derive(Parser, Debug)]
#[command(
    name = "cluster-failover",
    about = "SIGKILLs a real cluster's leader under load, run after run: failover times, every acknowledgement and the nodes' logs checked"
)]
struct Args {
    /// Leader kills.
    #[arg(long, default_value_t = 200)]
    runs: u64,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Load client tasks (one operation in flight each).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Read back one in this many acknowledgements on every node after each run.
    #[arg(long, default_value_t = 1)]
    read_back_every: usize,
    /// Stop the nodes and compare their WALs every this many runs (and at the end).
    #[arg(long, default_value_t = 25)]
    log_check_every: u64,
    /// Node-to-node traffic through the TCP proxy.
    #[arg(long)]
    proxy: bool,
    /// With --proxy: hold every byte between nodes this long, each way.
    #[arg(long, default_value_t = 0, requires = "proxy")]
    delay_ms: u64,
    /// Seed of the workload (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// On failure, leave the nodes running this long (for a debugger) before exiting.
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
    /// Where the data directories go (kept there on failure).
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
}

fn main() {
    let args = Args::parse();
    let bin = match ledger_bench::process::server_binary() {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("cluster-failover: {e}");
            std::process::exit(2);
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    println!(
        "server {}, {} nodes{}, {} clients, seed {seed}",
        bin.display(),
        args.nodes,
        if args.proxy {
            format!(" behind the proxy ({} ms each way)", args.delay_ms)
        } else {
            String::new()
        },
        args.clients
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::Builder::new()
        .prefix("cluster-failover-")
        .tempdir_in(&args.dir)
        .expect("a data directory");
    let started = Instant::now();
    let mut runs: Vec<Failover> = Vec::new();
    let mut history = History::new(seed);
    let result = runtime.block_on(async {
        let options = Options::new(args.nodes, args.proxy);
        let mut cluster = Cluster::start(bin, dir.path(), &options).await?;
        if let Some(proxy) = &cluster.proxy {
            for from in cluster.ids() {
                for to in cluster.ids().into_iter().filter(|&to| to != from) {
                    proxy.delay(from, to, Duration::from_millis(args.delay_ms));
                }
            }
        }
        let outcome = run_all(&args, &mut cluster, &mut history, &mut runs).await;
        if let Err(e) = &outcome {
            let processes = cluster.processes();
            if args.hold_secs > 0 {
                eprintln!(
                    "{e}\nholding the nodes for {} s: {processes}",
                    args.hold_secs
                );
                tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
            }
            return Err(format!("{e}\n{processes}\n{}", cluster.log_tails()));
        }
        outcome
    });
    report(&runs, result.is_err(), &history, started.elapsed());
    if let Err(e) = result {
        let kept = dir.keep();
        eprintln!(
            "FAILED after {} runs (seed {seed}): {e}\ndata kept in {}",
            runs.len(),
            kept.display()
        );
        std::process::exit(1);
    }
}

async fn run_all(
    args: &Args,
    cluster: &mut Cluster,
    history: &mut History,
    runs: &mut Vec<Failover>,
) -> Result<(), String> {
    for run in 1..=args.runs {
        let f =
            scenario::kill_leader_under_load(cluster, history, args.clients, args.read_back_every)
                .await
                .map_err(|e| format!("run {run}: {e}"))?;
        println!(
            "run {run}: leader {} killed; node {} acknowledged a probe after {:.0} ms, the load's clients after {:.0} ms (writable leader polled: {}); {} acks",
            f.old_leader,
            f.new_leader,
            f.first_ack.as_secs_f64() * 1e3,
            f.client_ack.as_secs_f64() * 1e3,
            f.elected.map_or("-".to_owned(), |e| format!(
                "{:.0} ms",
                e.as_secs_f64() * 1e3
            )),
            f.acks
        );
        runs.push(f);
        let last = run == args.runs;
        if last || run % args.log_check_every.max(1) == 0 {
            let r = scenario::check_logs(cluster, history, !last)
                .await
                .map_err(|e| format!("log check after run {run}: {e}"))?;
            println!(
                "  logs: {} transactions, {} compared on several nodes, ranges {:?}",
                r.records, r.compared, r.ranges
            );
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn report(runs: &[Failover], failed: bool, history: &History, took: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut first: Vec<Duration> = runs.iter().map(|r| r.first_ack).collect();
    first.sort_unstable();
    let mut client: Vec<Duration> = runs.iter().map(|r| r.client_ack).collect();
    client.sort_unstable();
    println!(
        "{} runs ok, {} failed, in {:.0} s; {} acknowledgements, {} unresolved at a stop, {} load errors (resent), {} probes refused",
        runs.len(),
        u8::from(failed),
        took.as_secs_f64(),
        history.acks.len(),
        history.unresolved.len(),
        history.load_errors,
        history.probes_refused
    );
    println!(
        "kill -9 -> first write acknowledged by the new leader (probing each survivor every {} ms): p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        5,
        ms(percentile(&first, 0.5)),
        ms(percentile(&first, 0.9)),
        ms(percentile(&first, 1.0))
    );
    println!(
        "kill -9 -> first acknowledgement to the load's ledger_client clients: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        ms(percentile(&client, 0.5)),
        ms(percentile(&client, 0.9)),
        ms(percentile(&client, 1.0))
    );
}
