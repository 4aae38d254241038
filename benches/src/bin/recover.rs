//! Times recovery of an existing data directory: `recover DIR [MAX_ACCOUNTS]`.
//! Starts a `Ledger` on it (snapshot + WAL replay), prints the report, and stops without
//! writing a snapshot, so the same directory can be timed again.

use std::time::Instant;

use ledger_core::ledger::{Ledger, LedgerConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: recover DATA_DIR [MAX_ACCOUNTS]");
        std::process::exit(2);
    };
    let defaults = LedgerConfig::default();
    let max_accounts = match args.next().map(|s| s.parse::<u64>()) {
        None => defaults.max_accounts,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("MAX_ACCOUNTS: {e}");
            std::process::exit(2);
        }
    };
    let mut ledger = Ledger::new(LedgerConfig {
        max_accounts,
        snapshot_on_stop: false,
        ..LedgerConfig::in_dir(dir)
    });
    let t = Instant::now();
    if let Err(e) = ledger.start() {
        eprintln!("recover: {e}");
        std::process::exit(1);
    }
    let took = t.elapsed();
    let report = ledger.recovery_report().expect("started");
    println!(
        "started in {:.3} s: snapshot {:?}, replayed {} tx in {:.3} s ({:.0} tx/s), last id {}",
        took.as_secs_f64(),
        report.snapshot.as_ref().map(|(_, id)| *id),
        report.replayed,
        report.elapsed.as_secs_f64(),
        report.replayed as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.last_tx_id
    );
}
