//! `snapshot ls | verify | dump`, and reading a snapshot as the engine's payload type
//! (`ledger_core::ledger::SnapshotState`) for replay.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ledger_core::ledger::{LoadedSnapshot, open_snapshot};
use ledger_snapshot::{file_name, list_dir};
use serde::Serialize;

use crate::data_dir::DataDir;
use crate::exit::{CliError, CliResult};
use crate::output::{Sink, Table};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List the snapshot files: sequence, size, whether their checksums verify.
    Ls(LsArgs),
    /// Check every snapshot (or one): header, checksums, and the payload as the engine's
    /// state. Exits 1 naming the first file that fails.
    Verify(VerifyArgs),
    /// Print one snapshot's state: a summary line, then balances (non-zero ones) as JSON
    /// lines.
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// One JSON object per snapshot instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only the snapshot at this sequence (transaction id).
    #[arg(value_name = "SEQ")]
    sequence: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The snapshot's sequence (transaction id), or `latest`.
    #[arg(value_name = "SEQ|latest", default_value = "latest")]
    sequence: SnapshotChoice,
    /// Also print zero balances.
    #[arg(long)]
    all: bool,
    /// Also print the idempotency window (user_ref, tx_id, timestamp).
    #[arg(long)]
    dedup: bool,
}

/// Which snapshot: a sequence number, or the newest one that loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotChoice {
    Latest,
    Sequence(u64),
}

impl std::str::FromStr for SnapshotChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<SnapshotChoice, String> {
        if s == "latest" {
            return Ok(SnapshotChoice::Latest);
        }
        s.parse()
            .map(SnapshotChoice::Sequence)
            .map_err(|_| format!("`{s}` is neither a sequence number nor `latest`"))
    }
}

pub fn run(data: &DataDir, command: SnapshotCommand) -> CliResult {
    let dir = data.snapshot_dir()?;
    match command {
        SnapshotCommand::Ls(args) => ls(dir, &args),
        SnapshotCommand::Verify(args) => verify(dir, &args),
        SnapshotCommand::Dump(args) => dump(dir, &args),
    }
}

#[derive(Debug, Serialize)]
struct SnapshotRow {
    sequence: u64,
    file: String,
    bytes: u64,
    /// `ok` or the first failed check.
    status: String,
}

fn ls(dir: &Path, args: &LsArgs) -> CliResult {
    let mut sink = Sink::stdout();
    let mut table = Table::new(&["SEQUENCE", "FILE", "BYTES", "STATUS"]);
    for listing in list_dir(dir)? {
        let row = SnapshotRow {
            sequence: listing.sequence,
            file: file_name(listing.sequence),
            bytes: listing.file_bytes,
            status: match &listing.status {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.to_string(),
            },
        };
        if args.json {
            sink.json(&row)?;
        } else {
            table.row(vec![
                row.sequence.to_string(),
                row.file,
                row.bytes.to_string(),
                row.status,
            ]);
        }
    }
    if !args.json {
        table.print(&mut sink)?;
    }
    sink.finish()
}

fn verify(dir: &Path, args: &VerifyArgs) -> CliResult {
    let paths: Vec<(u64, PathBuf)> = match args.sequence {
        Some(seq) => vec![(seq, existing(dir, seq)?)],
        None => list_dir(dir)?
            .into_iter()
            .map(|l| (l.sequence, l.path))
            .collect(),
    };
    let mut sink = Sink::stdout();
    let mut first_failure = None;
    for (seq, path) in &paths {
        let status = load(path).and_then(|loaded| {
            check_zero_sum(&loaded)?;
            Ok(format!(
                "ok: {} accounts ({} configured), {} dedup entries, last transaction {}",
                loaded.balances().len(),
                loaded.accounts().len(),
                loaded.dedup().len(),
                loaded.last_tx_id()
            ))
        });
        match status {
            Ok(line) => sink.line(format_args!("{seq}  {line}"))?,
            Err(error) => {
                sink.line(format_args!("{seq}  FAILED: {}", error.message()))?;
                first_failure.get_or_insert(error);
            }
        }
    }
    sink.line(format_args!(
        "{} snapshot(s), {}",
        paths.len(),
        if first_failure.is_some() {
            "FAILED"
        } else {
            "ok"
        }
    ))?;
    sink.finish()?;
    first_failure.map_or(Ok(()), Err)
}

/// The engine's invariants, checked on the stored state: balances sum to zero, in all
/// currencies together and in each (the restore a recovery would do).
fn check_zero_sum(loaded: &LoadedSnapshot) -> CliResult {
    let sum: i128 = loaded
        .balances()
        .iter()
        .map(|b| i128::from(b.to_native()))
        .sum();
    if sum != 0 {
        return Err(CliError::verification(format!(
            "{}: balances sum to {sum}, not zero",
            loaded.path().display()
        )));
    }
    let max_accounts = loaded.balances().len().max(1) as u64;
    let config = ledger_core::transactor::TransactorConfig {
        max_accounts,
        ..Default::default()
    };
    loaded
        .restore(config)
        .map_err(|e| CliError::verification(format!("{}: {e}", loaded.path().display())))?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct DumpHeader<'a> {
    file: &'a str,
    sequence: u64,
    last_tx_id: u64,
    now_ns: u64,
    format: u32,
    accounts: usize,
    configured_accounts: usize,
    dedup_entries: usize,
}

#[derive(Debug, Serialize)]
pub struct BalanceRow {
    pub account: u64,
    pub balance: i64,
}

#[derive(Debug, Serialize)]
struct AccountRow {
    configured: u64,
    currency: u32,
    flags: u32,
    overdraft_limit: u64,
    max_balance: Option<i64>,
    moved: bool,
}

#[derive(Debug, Serialize)]
struct SystemBalanceRow {
    currency: u32,
    system_balance: i64,
}

#[derive(Debug, Serialize)]
struct DedupRow {
    user_ref: u64,
    tx_id: u64,
    timestamp_ns: u64,
}

fn dump(dir: &Path, args: &DumpArgs) -> CliResult {
    let loaded = choose(dir, args.sequence)?;
    let mut sink = Sink::stdout();
    let accounts = loaded.accounts();
    sink.json(&DumpHeader {
        file: &loaded.path().display().to_string(),
        sequence: loaded.sequence(),
        format: loaded.format(),
        last_tx_id: loaded.last_tx_id(),
        now_ns: loaded.now_ns(),
        accounts: loaded.balances().len(),
        configured_accounts: accounts.len(),
        dedup_entries: loaded.dedup().len(),
    })?;
    for (account, state) in &accounts {
        let c = &state.config;
        sink.json(&AccountRow {
            configured: *account,
            currency: c.currency,
            flags: c.flags,
            overdraft_limit: c.overdraft_limit,
            max_balance: c.max_balance,
            moved: state.moved,
        })?;
    }
    for (currency, system_balance) in loaded.system_balances() {
        sink.json(&SystemBalanceRow {
            currency,
            system_balance,
        })?;
    }
    for (account, balance) in loaded.balances().iter().enumerate() {
        let balance = balance.to_native();
        if balance != 0 || args.all {
            sink.json(&BalanceRow {
                account: account as u64,
                balance,
            })?;
        }
    }
    if args.dedup {
        for entry in loaded.dedup().iter() {
            sink.json(&DedupRow {
                user_ref: entry.user_ref.to_native(),
                tx_id: entry.tx_id.to_native(),
                timestamp_ns: entry.timestamp_ns.to_native(),
            })?;
        }
    }
    sink.finish()
}

fn existing(dir: &Path, seq: u64) -> Result<PathBuf, CliError> {
    let path = dir.join(file_name(seq));
    if !path.is_file() {
        return Err(CliError::usage(format!(
            "no snapshot at sequence {seq} ({} does not exist)",
            path.display()
        )));
    }
    Ok(path)
}

/// Opens a snapshot as the engine's state: every check of the snapshot format, the archive
/// validated as the payload type its header names, and the state's own format and
/// sequence.
pub fn load(path: &Path) -> Result<LoadedSnapshot, CliError> {
    let loaded = open_snapshot(path)?;
    loaded
        .check()
        .map_err(|e| CliError::verification(format!("{}: {e}", path.display())))?;
    Ok(loaded)
}

/// The snapshot the user chose; `latest` is the newest that loads (as the engine's
/// recovery picks it), without opening the store (which would take its lock and write).
pub fn choose(dir: &Path, choice: SnapshotChoice) -> Result<LoadedSnapshot, CliError> {
    match choice {
        SnapshotChoice::Sequence(seq) => load(&existing(dir, seq)?),
        SnapshotChoice::Latest => {
            let mut listings = list_dir(dir)?;
            listings.reverse();
            for listing in listings {
                match load(&listing.path) {
                    Ok(loaded) => return Ok(loaded),
                    Err(error) => eprintln!(
                        "ledger-cli: note: passing over {}: {}",
                        listing.path.display(),
                        error.message()
                    ),
                }
            }
            Err(CliError::usage(format!(
                "no snapshot in {} loads",
                dir.display()
            )))
        }
    }
}

/// Compares a replayed balance table with a snapshot's; `None` when equal (an account
/// missing from the shorter table is zero).
pub fn first_difference(replayed: &[i64], snapshot: &LoadedSnapshot) -> Option<String> {
    let stored = snapshot.balances();
    let len = replayed.len().max(stored.len());
    (0..len).find_map(|account| {
        let ours = replayed.get(account).copied().unwrap_or(0);
        let theirs = stored.get(account).map_or(0, |b| b.to_native());
        (ours != theirs).then(|| {
            format!("account {account}: the WAL gives {ours}, the snapshot holds {theirs}")
        })
    })
}
