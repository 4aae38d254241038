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
use crate::state_rows::{StateRows, Summary};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List the snapshot files: sequence, size, whether their checksums verify.
    Ls(LsArgs),
    /// Check every snapshot (or one): header, checksums, and the payload as the engine's
    /// state. Exits 1 naming the first file that fails.
    Verify(VerifyArgs),
    /// Print one snapshot's state as JSON lines: a summary, configured accounts, system
    /// balances per currency, balances (non-zero ones), holds, reversals.
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

fn dump(dir: &Path, args: &DumpArgs) -> CliResult {
    let loaded = choose(dir, args.sequence)?;
    let holds = loaded
        .holds()
        .map_err(|e| CliError::verification(format!("{}: {e}", loaded.path().display())))?;
    let accounts = loaded.accounts();
    let reversals = loaded.reversals();
    let summary = Summary {
        file: Some(loaded.path().display().to_string()),
        sequence: Some(loaded.sequence()),
        format: Some(loaded.format()),
        last_tx_id: loaded.last_tx_id(),
        now_ns: loaded.now_ns(),
        accounts: loaded.balances().len(),
        configured_accounts: accounts.len(),
        dedup_entries: loaded.dedup().len(),
        holds: holds.len(),
        reversals: reversals.len(),
    };
    let balances = loaded.balances().iter().map(|b| b.to_native());
    let rows = StateRows {
        summary,
        accounts,
        system_balances: loaded.system_balances(),
        balances: (0u64..)
            .zip(balances)
            .filter(|&(_, balance)| balance != 0 || args.all)
            .collect(),
        holds,
        reversals,
        dedup: match args.dedup {
            true => (loaded.dedup().iter())
                .map(|e| {
                    let user_ref = e.user_ref.to_native();
                    (user_ref, e.tx_id.to_native(), e.timestamp_ns.to_native())
                })
                .collect(),
            false => Vec::new(),
        },
    };
    let mut sink = Sink::stdout();
    rows.write(&mut sink)?;
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
