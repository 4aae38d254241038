//! `replay`: rebuilds balances from the WAL (from scratch or from a snapshot), checking
//! as it goes what the engine's recovery checks — contiguous ids, every balance-after,
//! every transaction netting to zero — and that the result equals each snapshot it
//! passes. Stops at `--until` for point-in-time balances.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use ledger_core::ledger::ACCOUNTS_MAX;
use ledger_core::record::FrameDecoder;
use ledger_core::transaction::Outcome;
use ledger_snapshot::list_dir;
use ledger_wal::{FrameKind, SegmentEnd, WalError, WalReader, segment_file_name};

use crate::balances::{ApplyError, Balances};
use crate::data_dir::DataDir;
use crate::exit::{CliError, CliResult};
use crate::output::Sink;
use crate::progress::WalProgress;
use crate::snapshot::{self, BalanceRow, SnapshotChoice};
use crate::wal::record_error;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Stop after this transaction: balances as of that point.
    #[arg(long, value_name = "TX_ID")]
    until: Option<u64>,
    /// Start from the snapshot at this sequence (or the newest that loads) instead of
    /// from scratch.
    #[arg(long, value_name = "SEQ|latest")]
    from_snapshot: Option<SnapshotChoice>,
    /// Print this account's balance (repeat for several).
    #[arg(long = "account", short = 'a', value_name = "ACCOUNT")]
    accounts: Vec<u64>,
    /// Write balances to FILE (`-`: standard output): the --account ones, or else every
    /// non-zero balance.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Format of the balances written.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// The most accounts the balance table may grow to (a bound on memory, 8 bytes each).
    #[arg(long, default_value_t = ACCOUNTS_MAX)]
    max_accounts: u64,
    /// Do not compare with the snapshots the replay passes.
    #[arg(long)]
    no_snapshot_check: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `account,balance` with a header line.
    Csv,
    /// One `{"account": A, "balance": B}` object per line.
    Json,
}

pub fn run(data: &DataDir, args: &ReplayArgs) -> CliResult {
    let wal_dir = data.wal_dir()?;
    let limit = usize::try_from(args.max_accounts).unwrap_or(usize::MAX);
    let until = args.until.unwrap_or(u64::MAX);

    // The starting state.
    let (mut balances, start, origin) = match args.from_snapshot {
        None => (Balances::new(limit), 0, "scratch".to_owned()),
        Some(choice) => {
            let loaded = snapshot::choose(data.snapshot_dir()?, choice)?;
            let state = loaded.archived();
            let balances =
                Balances::from_slice(state.balances.iter().map(|b| b.to_native()), limit);
            (
                balances,
                loaded.sequence(),
                format!("snapshot {}", loaded.path().display()),
            )
        }
    };
    if until < start {
        return Err(CliError::usage(format!(
            "--until {until} is before the starting snapshot at {start}"
        )));
    }

    // Snapshots to compare with on the way: those strictly after the start.
    let mut checks: Vec<(u64, PathBuf)> = match data.snapshot_dir_if_any() {
        Some(dir) if !args.no_snapshot_check => list_dir(dir)?
            .into_iter()
            .filter(|l| l.sequence > start && l.sequence <= until)
            .map(|l| (l.sequence, l.path))
            .collect(),
        _ => Vec::new(),
    };
    checks.reverse(); // popped in ascending order
    let mut checked = 0usize;

    let reader = WalReader::open(wal_dir)?;
    let mut frames = match reader.first_seq() {
        None => reader.frames(),
        Some(first) if first > start + 1 => {
            return Err(CliError::usage(format!(
                "the WAL starts at transaction {first} (older segments were removed by \
                 retention); replay from a snapshot at or after {} (--from-snapshot)",
                first - 1
            )));
        }
        Some(_) => reader.frames_from(start + 1).map_err(|e| match e {
            WalError::NotRetained { .. } => CliError::usage(e),
            e => CliError::from(e),
        })?,
    };

    let progress = WalProgress::new(wal_dir, !args.no_progress);
    let started = Instant::now();
    let mut last = start;
    let mut next_check = checks.last().map_or(u64::MAX, |c| c.0);
    'frames: while let Some(frame) = frames.next_frame()? {
        progress.at(frame.segment, frame.offset);
        if frame.kind != FrameKind::Records || frame.next_seq() <= last + 1 {
            continue;
        }
        if frame.first_seq > until {
            break;
        }
        let segment = || wal_dir.join(segment_file_name(frame.segment));
        let offset = frame.offset;
        let mut decoder = FrameDecoder::new(frame.payload, frame.first_seq, frame.record_count)
            .map_err(|e| record_error(&segment(), offset, e))?;
        while let Some(record) = decoder
            .next_record()
            .map_err(|e| record_error(&segment(), offset, e))?
        {
            let tx_id = record.tx_id;
            if tx_id <= last {
                continue; // the part of the first frame the snapshot already holds
            }
            if tx_id > until {
                break 'frames;
            }
            if tx_id != last + 1 {
                return Err(CliError::verification(format!(
                    "{} offset {offset}: transaction {tx_id} follows {last}",
                    segment().display()
                )));
            }
            if let Outcome::Committed = record.outcome {
                balances.apply(tx_id, record.entries).map_err(|e| match e {
                    ApplyError::Mismatch(e) => CliError::verification(format!(
                        "{} offset {offset}: {e}",
                        segment().display()
                    )),
                    ApplyError::TooManyAccounts { tx_id, account_id } => CliError::usage(format!(
                        "{} offset {offset}: transaction {tx_id} names account \
                             {account_id}, at or above --max-accounts {limit}",
                        segment().display()
                    )),
                })?;
            }
            last = tx_id;
            if last == next_check {
                if let Some((seq, path)) = checks.pop() {
                    compare(&path, seq, balances.as_slice())?;
                    checked += 1;
                }
                next_check = checks.last().map_or(u64::MAX, |c| c.0);
            }
        }
    }
    let elapsed = started.elapsed();
    progress.finish();

    if args.until.is_some() && last < until {
        return Err(CliError::usage(format!(
            "the WAL ends at transaction {last}, before --until {until}"
        )));
    }
    if let Some((seq, path)) = checks.pop().filter(|c| c.0 > last) {
        return Err(CliError::verification(format!(
            "{} is at transaction {seq}, but the WAL ends at {last}",
            path.display()
        )));
    }
    let replayed = last - start;
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "replayed {replayed} transactions ({}..={last}) from {origin} in {secs:.3} s: \
         {:.0} tx/s; {checked} snapshot(s) matched",
        start + 1,
        if secs > 0.0 {
            replayed as f64 / secs
        } else {
            0.0
        }
    );
    if let (Some(SegmentEnd::Torn { offset, .. }), Some(segment)) =
        (frames.end(), frames.current_segment())
    {
        eprintln!(
            "ledger-cli: note: {} offset {offset}: torn tail after the last complete frame \
             (not replayed, as the engine's recovery would cut it)",
            segment.display()
        );
    }
    write_balances(args, &balances)
}

/// The replayed state must equal a snapshot taken at the same transaction.
fn compare(path: &Path, seq: u64, balances: &[i64]) -> CliResult {
    let loaded = snapshot::load(path)?;
    match snapshot::first_difference(balances, &loaded) {
        None => Ok(()),
        Some(difference) => Err(CliError::verification(format!(
            "{} disagrees with the WAL at transaction {seq}: {difference}",
            path.display()
        ))),
    }
}

fn write_balances(args: &ReplayArgs, balances: &Balances) -> CliResult {
    let mut sink = match &args.output {
        Some(path) => Sink::create(path)?,
        None if !args.accounts.is_empty() => Sink::stdout(),
        None => return Ok(()),
    };
    if args.format == Format::Csv {
        sink.line("account,balance")?;
    }
    let mut row = |account: u64, balance: i64| match args.format {
        Format::Csv => sink.line(format_args!("{account},{balance}")),
        Format::Json => sink.json(&BalanceRow { account, balance }),
    };
    if args.accounts.is_empty() {
        for (account, &balance) in balances.as_slice().iter().enumerate() {
            if balance != 0 {
                row(account as u64, balance)?;
            }
        }
    } else {
        for &account in &args.accounts {
            row(account, balances.get(account))?;
        }
    }
    sink.finish()
}
