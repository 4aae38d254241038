//! Read latency of the query API on a large log: `get_transaction` from memory and from
//! disk (page cache), history pages of a busy account from disk, and the memory the read
//! indexes take. `cargo run --release -p ledger-bench --bin queries -- --help`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use hdrhistogram::Histogram;
use ledger_bench::workload::{Generator, Rng, Workload, funding};
use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::transaction::{Operation, WaitLevel};

/// The account that takes part in one transfer of every `--hot-every`.
const HOT_ACCOUNT: u64 = 1;

#[derive(Parser, Debug)]
#[command(
    about = "Builds a log of --transactions transfers (one in --hot-every involving account 1), \
             then times get_transaction from memory and, after a restart with no read cache, \
             from disk, and 20-entry history pages of account 1 from disk"
)]
struct Args {
    /// Transfers in the log.
    #[arg(long, default_value_t = 10_000_000)]
    transactions: u64,
    /// Funded accounts (uniformly random transfers between them).
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u64,
    /// One transfer in this many involves account 1 (its history is what pages read).
    #[arg(long, default_value_t = 100)]
    hot_every: u64,
    /// Lookups per measurement.
    #[arg(long, default_value_t = 100_000)]
    samples: u64,
    /// History pages to read.
    #[arg(long, default_value_t = 20_000)]
    pages: u64,
    /// Data directory (default: a fresh temporary one under the current directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("queries: {e}");
        std::process::exit(1);
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds")
}

fn report(name: &str, hist: &Histogram<u64>) {
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    println!(
        "{name}: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us (n = {})",
        us(0.5),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1e3,
        hist.len()
    );
}

/// The change stream's read (`read_transactions`, pages of 4096, every committed
/// transaction) over the last `count` ids up to `last`: transactions per second.
fn stream_rate(ledger: &Ledger, tier: &str, count: u64, last: u64) -> Result<(), String> {
    let filter = ledger_core::ledger::StreamFilter::default();
    let t = Instant::now();
    let mut from = last + 1 - count;
    let mut read = 0usize;
    while from <= last {
        let page = ledger
            .read_transactions(from, 4096, &filter)
            .map_err(|e| format!("read_transactions from {from}: {e}"))?;
        read += page.transactions.len();
        from = page.next_tx_id;
        std::hint::black_box(page);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "read_transactions, {tier}: {read} transactions in {secs:.2} s = {:.2}M tx/s",
        read as f64 / secs / 1e6
    );
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let temp;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("ledger-queries-")
                .tempdir_in(".")
                .map_err(|e| format!("temporary data directory: {e}"))?;
            temp.path().to_owned()
        }
    };
    let config = LedgerConfig {
        max_accounts: args.accounts + 1,
        history_retention_tx: u64::MAX,
        snapshot_interval_tx: 5_000_000,
        ..LedgerConfig::in_dir(&data_dir)
    };
    let mut ledger = Ledger::new(config.clone());
    ledger.start().map_err(|e| format!("start: {e}"))?;

    // Build: funding, then the transfers.
    let t = Instant::now();
    let mut ops: Vec<Operation> = Vec::with_capacity(1000);
    let mut deposits = funding(args.accounts).peekable();
    while deposits.peek().is_some() {
        ops.extend(deposits.by_ref().take(1000));
        ledger
            .try_submit_batch(std::mem::take(&mut ops))
            .map_err(|e| format!("funding: {e}"))?;
    }
    let funded = args.accounts;
    let mut generator = Generator::new(Workload::Transfer, args.accounts, 7);
    let mut written = 0;
    let mut last = 0;
    while written < args.transactions {
        let n = 1000.min(args.transactions - written);
        for i in 0..n {
            let mut op = generator.next_op();
            if (written + i) % args.hot_every.max(1) == 0
                && let Operation::Transfer { from, to, .. } = &mut op
            {
                if ((written + i) / args.hot_every.max(1)).is_multiple_of(2) {
                    *from = HOT_ACCOUNT;
                } else {
                    *to = HOT_ACCOUNT;
                }
                if from == to {
                    *to = HOT_ACCOUNT + 1;
                }
            }
            ops.push(op);
        }
        let ids = ledger
            .try_submit_batch(std::mem::take(&mut ops))
            .map_err(|e| format!("submit: {e}"))?;
        last = ids.last().copied().unwrap_or(last);
        written += n;
    }
    ledger
        .try_wait_for(last, WaitLevel::Snapshotted)
        .map_err(|e| format!("wait: {e}"))?;
    let m = ledger.metrics();
    println!(
        "built {last} transactions in {:.1} s; WAL {:.1} MiB",
        t.elapsed().as_secs_f64(),
        m.wal_bytes as f64 / f64::from(1 << 20)
    );
    println!(
        "read index: {} points, {} bytes = {:.0} bytes per million transactions; read cache {:.1} MiB",
        m.read_index_points,
        m.read_index_bytes,
        m.read_index_bytes as f64 / (last as f64 / 1e6),
        m.read_cache_bytes as f64 / f64::from(1 << 20)
    );

    // From memory: ids among the most recent ones, which the read cache holds.
    let mut rng = Rng::new(11);
    let recent = 1_000_000.min(last);
    let before = ledger.metrics();
    let mut hist = histogram();
    for _ in 0..args.samples {
        let id = last - rng.below(recent);
        let t = Instant::now();
        let tx = ledger
            .get_transaction(id)
            .map_err(|e| format!("get {id}: {e}"))?;
        hist.saturating_record(t.elapsed().as_nanos() as u64);
        std::hint::black_box(tx);
    }
    let after = ledger.metrics();
    report("get_transaction, memory (last 1M ids)", &hist);
    println!(
        "  records read from memory {}, from disk {}",
        after.records_read_memory - before.records_read_memory,
        after.records_read_disk - before.records_read_disk
    );
    stream_rate(&ledger, "memory", recent, last)?;
    ledger.stop().map_err(|e| format!("stop: {e}"))?;
    drop(ledger);

    // From disk: restart with no read cache (the index is rebuilt; the page cache is warm).
    let mut ledger = Ledger::new(LedgerConfig {
        read_cache_bytes: 0,
        ..config
    });
    let t = Instant::now();
    ledger.start().map_err(|e| format!("restart: {e}"))?;
    println!(
        "restart (index rebuilt): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut hist = histogram();
    for _ in 0..args.samples {
        let id = 1 + rng.below(last);
        let t = Instant::now();
        let tx = ledger
            .get_transaction(id)
            .map_err(|e| format!("get {id}: {e}"))?;
        hist.saturating_record(t.elapsed().as_nanos() as u64);
        std::hint::black_box(tx);
    }
    report("get_transaction, disk (any id)", &hist);
    stream_rate(&ledger, "disk", last, last)?;

    let first_page = ledger
        .get_account_history(HOT_ACCOUNT, 0, 20)
        .map_err(|e| format!("history: {e}"))?;
    let mut cursors = vec![first_page.next_tx_id];
    let mut hist = histogram();
    let mut entries = 0;
    for _ in 0..args.pages {
        // From a random id after the funding (where account 1 moves every --hot-every):
        // the page starts at the account's latest entry before it.
        let from = funded + 1 + rng.below(last - funded);
        let t = Instant::now();
        let page = ledger
            .get_account_history(HOT_ACCOUNT, from, 20)
            .map_err(|e| format!("history from {from}: {e}"))?;
        let took = t.elapsed();
        hist.saturating_record(took.as_nanos() as u64);
        entries += page.entries.len();
        if page.next_tx_id != 0 && cursors.len() < 1000 {
            cursors.push(page.next_tx_id);
        }
    }
    report("history page of 20, disk, from a random id", &hist);
    let mut hist = histogram();
    for _ in 0..args.pages {
        let from = cursors[rng.below(cursors.len() as u64) as usize];
        let t = Instant::now();
        let page = ledger
            .get_account_history(HOT_ACCOUNT, from, 20)
            .map_err(|e| format!("history from {from}: {e}"))?;
        hist.saturating_record(t.elapsed().as_nanos() as u64);
        entries += page.entries.len();
    }
    report("history page of 20, disk, from a cursor", &hist);
    let mut hist = histogram();
    for _ in 0..args.pages {
        let at = funded + 1 + rng.below(last - funded);
        let t = Instant::now();
        let balance = ledger
            .get_balance_at(HOT_ACCOUNT, at)
            .map_err(|e| format!("balance at {at}: {e}"))?;
        hist.saturating_record(t.elapsed().as_nanos() as u64);
        std::hint::black_box(balance);
    }
    report("get_balance_at, disk, random id", &hist);
    let history = ledger
        .get_account_history(HOT_ACCOUNT, 0, 1)
        .map_err(|e| e.to_string())?;
    println!(
        "account {HOT_ACCOUNT}: latest entry at {:?}; {entries} entries read",
        history.entries.first().map(|e| e.tx_id)
    );
    ledger.stop().map_err(|e| format!("stop: {e}"))?;
    Ok(())
}
